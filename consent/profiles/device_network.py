"""Seed policy 001: a device and network service (DASSET, policy of February 26, 2024)."""
from datetime import date

from .base import Profile, Promise

POLICY_TEXT = """DASSET Services -- Privacy Policy (Update and Effective Date: February 26, 2024)
Summary of the consent practices, in the policy's own words where quoted.

I.1 Core business functions (User Account Registration, Device Binding, Login to the
virtual network): "You will not be able to use the Services if you refuse to provide such
information."

I.2 Auxiliary functions (User Avatar, Nickname, Scan QR Code): "Your refusal to provide
such information will not affect your normal use of the core business functions of the
Services".

I.5.3 Personalisation and advertising: we extract preferences and behavioural
characteristics to "display and push information and possible commercial
advertisements. If you do not want to receive commercial advertisements sent by us, you
may unsubscribe via SMS reply (following the SMS prompt) or through other methods
provided by us."

V. Cookies: cookies simplify repeated steps (registration, login), show your history of
use, provide more relevant information, protect your account and improve our products;
you may refuse them, which may affect related services.

VI. Minors: "If you are a minor aged 14 or above, please be sure to read this Policy in
the company of your legal guardian and obtain the explicit consent of your guardian
before using the Services and providing us with your personal information."

VII.1.3 Withdrawal: "once you withdraw your consent or authorization, we cannot continue
to provide you with the Services corresponding to the canceled consent or authorization,
nor will we deal with your corresponding personal information anymore. Notwithstanding
the foregoing, your decision to withdraw your consent or authorization will not affect
the processing of your personal information previously carried out based on your
authorization."

VII.1.4 Requests: "We will handle your request within thirty (30) days after receiving
your request and verifying your identity."

VIII. Updates: "If we make any material changes to this Policy, we will inform you
through client-side push notification, pop-up window or email before such changes take
effect". "We will archive the old version of this Policy for your review."

IX. Contact: info@planetxlabs.io ("Privacy Policy Request"); reply within thirty (30) days.
"""

AGE_QUOTE = ("If you are a minor aged 14 or above, please be sure to read this Policy in "
             "the company of your legal guardian and obtain the explicit consent of your "
             "guardian before using the Services and providing us with your personal "
             "information.")

PROFILE = Profile(
    name="device_network",
    seed="001_5a921af1abcbe76c.txt",
    title="Device and network service: core vs auxiliary functions, commercial advertising "
          "and SMS unsubscribe, withdrawal, material changes by pop-up, guardian consent for "
          "minors, 30-day requests",
    site_name="DASSET",
    site_key="dasset",
    policy_label="2024-02-26",
    policy_date=date(2024, 2, 26),
    policy_text=POLICY_TEXT,
    policy_summary="Privacy Policy effective February 26, 2024 (summary of its consent "
                   "practices).",
    categories=(
        {"key": "essential",
         "titles": {"en": "Core functions"},
         "descriptions": {"en": "Account registration and login, device binding and login to "
                                "the virtual network (Policy I.1). The Services cannot work "
                                "without them, so they are always on."},
         "services": [
             {"name": "Account login", "provider": "DASSET",
              "purpose": "Keeps you logged in and protects your account security",
              "cookies": [{"name": "session"}]},
             {"name": "Consent record", "provider": "DASSET",
              "purpose": "Remembers the choices you make here", "cookies": [{"name": "consent"}]},
         ]},
        {"key": "functional",
         "titles": {"en": "Auxiliary functions"},
         "descriptions": {"en": "Simplifying repeated steps such as registration and login, "
                                "your history of use, avatar, nickname and QR-code scanning "
                                "(Policy I.2, V). Refusing them does not affect the core "
                                "functions."},
         "services": [
             {"name": "Remembered steps and history", "provider": "DASSET",
              "purpose": "Simplifies repeated steps and shows your history of use",
              "cookies": [{"name": "prefs"}]},
         ]},
        {"key": "analytics",
         "titles": {"en": "Product improvement"},
         "descriptions": {"en": "Cookies that help us understand how the Services are used "
                                "so that we can improve our products and services (Policy V)."},
         "services": [
             {"name": "Usage measurement", "provider": "DASSET",
              "purpose": "Improves our products and services"},
         ]},
        {"key": "advertising",
         "titles": {"en": "Personalised content and commercial advertising"},
         "descriptions": {"en": "Feature tags drawn from your browsing history, device and "
                                "location information, used to show more relevant content "
                                "and commercial advertisements (Policy I.5.3)."},
         "services": [
             {"name": "Personalised advertising", "provider": "DASSET",
              "purpose": "Displays and pushes commercial advertisements"},
         ]},
    ),
    # I.5.3: commercial advertisements are sent by SMS until the person unsubscribes.
    channel_defaults={"email.promotional": False, "sms.promotional": True,
                      "push.promotional": False, "push.service": False},
    # I.5.3 "unsubscribe via SMS reply (following the SMS prompt)": a company in China
    # prompts "回复TD退订" (reply TD to unsubscribe), so TD and 退订 count as STOP.
    sms_keywords={"stop": ["TD", "T", "退订", "取消订阅"]},
    request_deadline={"days": 30},
    deadline_source="\u201cWe will handle your request within thirty (30) days after "
                    "receiving your request and verifying your identity.\u201d (VII.1.4)",
    gpc_note="The policy does not mention browser privacy signals. The product honours "
             "Global Privacy Control for personalised commercial advertising.",
    # VI applies to every user: the age question is asked on every first visit, and a
    # guardian confirms through a signed link (consent.guardians).
    age_rule={"adult_age": 18, "from_age": 14, "guardian": "guardian", "ask": "always",
              "guardian_verification": "link",
              "categories": ["functional", "analytics", "advertising"],
              "channels": ["email.promotional", "sms.promotional", "push.promotional"],
              "quote": AGE_QUOTE},
    texts={"en": {
        "gpc": "Your browser sent a Global Privacy Control signal, so personalised "
               "commercial advertising is turned off.",
        "text": "DASSET uses cookies for its core functions, which are always on. With your "
                "consent we also use them for auxiliary functions, to improve our products "
                "and to show personalised commercial advertising. Refusing does not affect "
                "the core functions.",
        "prefs.withdrawal_note": "Once you withdraw your consent we stop the Services and "
                                 "the processing that depended on it. Your withdrawal does "
                                 "not affect processing carried out earlier on the basis of "
                                 "your authorisation.",
    }},
    controller={"name": "DASSET Services Provider and Operator", "email": "info@planetxlabs.io",
                "jurisdiction": "US"},
    notes=(
        "Commercial SMS are sent until the person replies STOP, as Policy I.5.3 describes; "
        "minors' promotional channels are switched off until a guardian consents.",
        "Material changes: publish the new version as material (admin or `flask consent "
        "publish-policy --material`); every visitor sees the banner again before the change "
        "applies to them.",
    ),
    promises=(
        Promise(
            id="core-and-auxiliary",
            section="I.1, I.2",
            quote="Your refusal to provide such information will not affect your normal use "
                  "of the core business functions of the Services",
            does="Core functions are the locked `essential` category (cannot be refused: the "
                 "API answers 422); auxiliary functions are a separate optional category. "
                 "Rejecting everything keeps the core functions and the page working while "
                 "auxiliary content stays blocked.",
            test="test_refusing_auxiliary_functions_keeps_the_core_functions"),
        Promise(
            id="commercial-advertising-and-sms-unsubscribe",
            section="I.5.3",
            quote="If you do not want to receive commercial advertisements sent by us, you "
                  "may unsubscribe via SMS reply (following the SMS prompt)",
            does="Personalised commercial advertising is an optional category refused in "
                 "the banner; a STOP reply to the SMS gateway webhook records an "
                 "`unsubscribe` event (source sms) and \"may I send?\" refuses promotional "
                 "SMS from then on, also after the person's data is deleted (a suppression "
                 "record keeps the opt-out as a keyed hash of the number).",
            test="test_commercial_advertising_can_be_refused_and_sms_unsubscribed_by_reply"),
        Promise(
            id="withdrawal-not-retroactive",
            section="VII.1.3",
            quote="your decision to withdraw your consent or authorization will not affect "
                  "the processing of your personal information previously carried out",
            does="Withdrawing in the preference center appends a new event and stops the "
                 "tags from the next page; the earlier grant stays in the ledger unchanged "
                 "(the chain still verifies) and the page says so.",
            test="test_withdrawal_stops_future_processing_and_keeps_the_earlier_record"),
        Promise(
            id="material-change-pop-up",
            section="VIII",
            quote="If we make any material changes to this Policy, we will inform you through "
                  "... pop-up window ... before such changes take effect",
            does="Publishing a material version makes every stored choice stop counting: the "
                 "returning visitor's tags stay blocked and the banner pops up again, and "
                 "their next choice is recorded under the new version.",
            test="test_material_policy_change_pops_up_before_it_applies"),
        Promise(
            id="advance-notice-of-material-change",
            section="VIII",
            quote="we will inform you through client-side push notification, pop-up window "
                  "or email before such changes take effect, so that you can keep abreast "
                  "of such changes",
            does="A material version published with a later effective date is announced "
                 "from publication on: the banner and the preference center say when it "
                 "takes effect and link to the archived diff, a returning visitor gets it "
                 "once as a pop-up, and the site's backend is told by a policy.published "
                 "webhook (to push or e-mail its users); until that date choices keep the "
                 "version in force, and server answers name the upcoming one.",
            test="test_a_material_change_is_announced_before_it_takes_effect"),
        Promise(
            id="old-versions-archived",
            section="VIII",
            quote="We will archive the old version of this Policy for your review.",
            does="Every version stays readable at its own URL and in the policy index; each "
                 "event names the version it was given under.",
            test="test_old_policy_versions_stay_archived_and_readable"),
        Promise(
            id="guardian-consent-for-minors",
            section="VI",
            quote=AGE_QUOTE,
            does="When the site flags that a visitor may be a minor, the banner and the "
                 "preference center ask; a minor's grants of optional categories and "
                 "promotional messages are withheld unless a guardian consents, and a "
                 "guardian's consent is recorded as such (meta guardian: true). Other paths "
                 "are refused with 403.",
            test="test_minors_need_their_guardians_explicit_consent"),
        Promise(
            id="requests-within-30-days",
            section="VII.1.4",
            quote="We will handle your request within thirty (30) days after receiving your "
                  "request",
            does="Access and erasure requests are due 30 days after receipt; an open request "
                 "past its deadline is shown as overdue on the dashboard and the requests "
                 "page.",
            test="test_requests_are_due_within_30_days_and_shown_overdue"),
    ),
)
