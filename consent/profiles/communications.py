"""Seed policy 002: a communications provider (undated policy, provider not named)."""
from .base import Profile, Promise

POLICY_TEXT = """Communications provider -- Privacy Policy (undated)
Summary of the consent practices, in the policy's own words where quoted.

Information we collect and how it is used: among other uses, "determine your eligibility
for new products and services and contact you with marketing offers." We may measure and
monitor network performance to improve service levels and products.

Information provided to or used by third-party advertisers: we obtain demographic and
interest data from outside companies and combine it "to direct marketing offers that
might be more relevant to you"; we "may share certain information with outside companies,
for example, to assist with the delivery of advertising campaigns".

Changes to the Privacy Policy: "If we elects to use or disclose information that
identifies you as an individual in a manner that is materially different from that stated
in our policy at the time we collected that information from you, we will give you a
choice regarding such use or disclosure by appropriate means, which may include use of an
opt out mechanism."
"""

MATERIAL_QUOTE = ("If we elects to use or disclose information that identifies you as an "
                  "individual in a manner that is materially different ... we will give you "
                  "a choice regarding such use or disclosure by appropriate means, which may "
                  "include use of an opt out mechanism.")

PROFILE = Profile(
    name="communications",
    seed="002_d4aab5214b35a79f.txt",
    title="Communications provider: marketing offers opt-out, a choice before any "
          "materially different use",
    site_name="Communications provider",
    site_key="comms",
    policy_label="1",
    policy_date=None,
    policy_text=POLICY_TEXT,
    policy_summary="Privacy Policy as collected (undated; summary of its consent practices).",
    categories=(
        {"key": "essential",
         "titles": {"en": "Account and service"},
         "descriptions": {"en": "Authenticating you when you sign in, providing and billing "
                                "your services and protecting our networks and users from "
                                "fraudulent or unlawful use. Always on."},
         "services": [
             {"name": "Sign-in", "provider": "Communications provider",
              "purpose": "Authenticates you when you sign in", "cookies": [{"name": "session"}]},
             {"name": "Consent record", "provider": "Communications provider",
              "purpose": "Remembers the choices you make here", "cookies": [{"name": "consent"}]},
         ]},
        {"key": "analytics",
         "titles": {"en": "Service improvement"},
         "descriptions": {"en": "Measuring the performance of our network and of your "
                                "connections and how our sites are used, to improve service "
                                "levels and develop new products."},
         "services": [
             {"name": "Performance measurement", "provider": "Communications provider",
              "purpose": "Improves service levels and products"},
         ]},
        {"key": "advertising",
         "titles": {"en": "Marketing offers and advertising"},
         "descriptions": {"en": "Demographic and interest data from outside companies, "
                                "combined to direct marketing offers that might be more "
                                "relevant to you, and outside companies that help deliver "
                                "advertising campaigns."},
         "services": [
             {"name": "Advertising campaign partners", "provider": "Outside companies",
              "purpose": "Assist with the delivery of advertising campaigns"},
         ]},
    ),
    # The policy contacts customers with marketing offers and speaks of an opt-out
    # mechanism: an opt-out model for promotional e-mail and SMS.
    channel_defaults={"email.promotional": True, "sms.promotional": True,
                      "push.promotional": False, "push.service": False},
    request_deadline={"days": 30},
    deadline_source="The policy states no deadline for requests; the product default of 30 "
                    "days applies.",
    gpc_note="The policy does not mention browser privacy signals. The product honours "
             "Global Privacy Control for marketing offers and advertising.",
    texts={"en": {
        "gpc": "Your browser sent a Global Privacy Control signal, so marketing "
               "offers and advertising are turned off.",
        "text": "We use essential cookies to provide and protect your services. With your "
                "consent we also measure performance to improve them and direct marketing "
                "offers and advertising that might be more relevant to you. You can opt out "
                "at any time.",
    }},
    controller={"name": "Communications provider", "jurisdiction": "US"},
    notes=(
        "Marketing offers by e-mail and SMS are allowed until the person opts out, as the "
        "policy describes; set channel_defaults to false where the law requires an opt-in.",
        "A materially different use: publish the new version as material. Every visitor is "
        "asked again, with Reject all as the opt-out, before the new use applies to them.",
    ),
    promises=(
        Promise(
            id="marketing-offers-opt-out",
            section="Information we collect and how it is used",
            quote="determine your eligibility for new products and services and contact you "
                  "with marketing offers",
            does="Marketing offers by e-mail and SMS may be sent until the person opts out "
                 "(one-click link, STOP, or the preference center); from that event on "
                 "\"may I send?\" refuses them, and they appear on the suppression list, also "
                 "after the person's data is erased (a suppression record).",
            test="test_marketing_offers_stop_when_the_person_opts_out"),
        Promise(
            id="choice-before-materially-different-use",
            section="Changes to the Privacy Policy",
            quote=MATERIAL_QUOTE,
            does="Publishing a material version makes earlier consent stop counting: the "
                 "person's tags stay blocked and the banner offers the choice again (Reject "
                 "all is the opt-out) before the new use applies; the choice is recorded "
                 "under the new version.",
            test="test_a_materially_different_use_offers_a_choice_before_it_applies"),
    ),
)
