"""What a site profile is: a seed policy turned into site configuration and promises."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone


@dataclass(frozen=True)
class Promise:
    """One thing the policy promises, what the product does about it, and its proof."""

    id: str
    section: str   # where in the policy
    quote: str     # the policy's own words (short)
    does: str      # what the product does
    test: str      # name of the test function in the profile's end-to-end module


# US practice (seed policies 003 and 004): interest-based advertising the visitor may opt
# out of, under the US state laws' opt-out rules; the EU/EEA, UK and Switzerland keep the
# opt-in banner, as does every region without a rule (consent.regions).
US_OPT_OUT = {"rules": {"EEA": "opt-in", "GB": "opt-in", "CH": "opt-in", "US": "opt-out"},
              "default": "opt-in", "sensitive": [], "gpp_states": ["usca"]}


@dataclass(frozen=True)
class Profile:
    """A ready-made site configuration carrying out one seed privacy policy."""

    name: str
    seed: str                       # file name in the seed policies
    title: str                      # what kind of service it is
    site_name: str
    site_key: str                   # default key of the site it creates
    policy_label: str
    policy_date: date | None        # the date the policy itself gives (None: undated)
    policy_text: str                # faithful summary of the consent practices, quoted
    policy_summary: str             # one line, shown in the policy archive
    categories: tuple[dict, ...]    # create_site specs: key, titles, descriptions, services
    channel_defaults: dict[str, bool]
    request_deadline: dict          # consent.requests rule: {"days": N} | {"business_days": N}
    deadline_source: str            # the policy's words for it, or why the default applies
    gpc_note: str
    promises: tuple[Promise, ...]
    texts: dict = field(default_factory=dict)       # {locale: {string key: text}}
    age_rule: dict | None = None                    # consent.minors rule
    opt_out_deadline: dict | None = None            # recorded with every opt-out
    controller: dict = field(default_factory=dict)  # shown in consent receipts
    linked_accounts: dict = field(default_factory=dict)  # integration: title
    deletion_exceptions: tuple[str, ...] = ()       # reasons the policy gives to refuse
    sms_keywords: dict | None = None                # consent.sms: the site's own reply words
    notes: tuple[str, ...] = ()                     # operator notes (defaults chosen, ...)
    unsubscribe_scope: str | None = None            # "all_promotional" (consent.channels)
    region_rules: dict | None = None                # consent.regions: rules by region

    @property
    def test_module(self) -> str:
        """Where the end-to-end proof of this profile lives."""
        return f"tests/e2e/test_profile_{self.name}.py"

    @property
    def effective_at(self) -> datetime | None:
        """The policy's own date as the version's effective time (UTC midnight)."""
        if self.policy_date is None:
            return None
        return datetime(self.policy_date.year, self.policy_date.month, self.policy_date.day,
                        tzinfo=timezone.utc)

    def promise(self, promise_id: str) -> Promise:
        """One promise by id (KeyError when unknown)."""
        for p in self.promises:
            if p.id == promise_id:
                return p
        raise KeyError(promise_id)

    def settings(self) -> dict:
        """The Site.settings a loaded site starts with."""
        out = {
            "profile": {"name": self.name, "seed": self.seed, "policy": self.policy_label},
            "request_deadline": dict(self.request_deadline),
            "channel_defaults": dict(self.channel_defaults),
            "gpc_categories": ["advertising"],
            "gpc_note": self.gpc_note,
        }
        if self.texts:
            out["texts"] = {loc: dict(t) for loc, t in self.texts.items()}
        if self.age_rule:
            out["age_rule"] = dict(self.age_rule)
        if self.opt_out_deadline:
            out["opt_out_deadline"] = dict(self.opt_out_deadline)
        if self.controller:
            out["controller"] = dict(self.controller)
        if self.linked_accounts:
            out["linked_accounts"] = dict(self.linked_accounts)
        if self.deletion_exceptions:
            out["deletion_exceptions"] = list(self.deletion_exceptions)
        if self.unsubscribe_scope:
            out["unsubscribe_scope"] = self.unsubscribe_scope
        if self.region_rules:
            out["regions"] = {k: (dict(v) if isinstance(v, dict) else list(v)
                                  if isinstance(v, (list, tuple)) else v)
                              for k, v in self.region_rules.items()}
        if self.sms_keywords:
            out["sms_keywords"] = {k: (list(v) if isinstance(v, (list, tuple)) else v)
                                   for k, v in self.sms_keywords.items()}
        return out
