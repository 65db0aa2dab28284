"""Seed policy 004: a care platform (AloPal, undated policy)."""
from .base import Profile, Promise, US_OPT_OUT

POLICY_TEXT = """AloPal -- Privacy Policy (undated)
Summary of the consent practices, in the policy's own words where quoted.

Legal bases: we may process personal information for marketing purposes on the basis of
your consent. "If we rely on your consent for us to use your personal information in a
particular way, but you later change your mind, you may withdraw your consent by visiting
your profile page and clicking the box to remove consent or delete your account and we
will stop doing so."

Cookies and Web Beacons: cookies and web beacons enable the technical operation of the
Platform, administer your log-in and collect the Log Data. "We may also use third party
cookies for the purposes of web analytics, attribution and error management." "We also
use Google Analytics, Google Tag Manager, Google AdWords (Conversion Tracking), LinkedIn
(Conversion Tracking), Optimize, and Yoast."

Our commitment: "We do not knowingly collect any personal information from children under
the age of 18 without parental consent and the services offered by AloPal are not
intended for use by children without parental consent."

Commercial email: "If you receive commercial emails from us, you may opt-out or
unsubscribe at any time by following the instructions contained within the email ...
it may take up to ten (10) business days for us to process your request. Additionally,
even after you opt-out from receiving commercial messages from us, you will continue to
receive administrative messages from us regarding any service or online platform that
AloPal operates and with which you maintain a current user account." Marketing by email or
text message is sent "with your consent, where required by law".

Right to Request Deletion of Information: "Once we receive your request and verify who you
are, we will delete (and direct our service providers to delete) your personal
information from our records, unless an exception applies." We may deny a deletion
request where retaining the information is necessary for the exceptions the policy lists.
"""

AGE_QUOTE = ("We do not knowingly collect any personal information from children under the "
              "age of 18 without parental consent")

PROFILE = Profile(
    name="care_platform",
    seed="004_47d29a1ae782588f.txt",
    title="Care platform: withdrawal from the profile page, commercial e-mail opt-out within "
          "10 business days, Google and LinkedIn tracking by consent, parental consent under "
          "18, deletion with exceptions",
    site_name="AloPal",
    site_key="alopal",
    policy_label="1",
    policy_date=None,
    policy_text=POLICY_TEXT,
    policy_summary="Privacy Policy as collected (undated; summary of its consent practices).",
    categories=(
        {"key": "essential",
         "titles": {"en": "Technical operation and log-in"},
         "descriptions": {"en": "Cookies that enable the technical operation of the Platform, "
                                "administer your log-in to your account and keep the Log "
                                "Data. Always on."},
         "services": [
             {"name": "Platform session", "provider": "AloPal",
              "purpose": "Administers your log-in to your account",
              "cookies": [{"name": "session"}]},
             {"name": "Consent record", "provider": "AloPal",
              "purpose": "Remembers the choices you make here", "cookies": [{"name": "consent"}]},
         ]},
        {"key": "analytics",
         "titles": {"en": "Web analytics and error management"},
         "descriptions": {"en": "Third-party cookies for web analytics and error management: "
                                "Google Analytics, Google Tag Manager and Optimize."},
         "services": [
             {"name": "Google Analytics", "provider": "Google",
              "purpose": "Pages visited, their order and time spent; broad demographics",
              "privacy_url": "https://policies.google.com/privacy",
              "cookies": [{"pattern": "^_ga(_.+)?$"}, {"name": "_gid"}, {"pattern": "^_gat"}]},
             {"name": "Google Tag Manager", "provider": "Google",
              "purpose": "Loads the analytics and conversion tags above and below",
              "privacy_url": "https://policies.google.com/privacy",
              "cookies": [{"pattern": "^_dc_gtm_"}]},
             {"name": "Optimize", "provider": "Google",
              "purpose": "Tests variants of pages",
              "cookies": [{"name": "_gaexp"}, {"pattern": "^_opt_"}]},
             # Listed with the tools used "to collect information", not as technical
             # operation: it waits for consent with them.
             {"name": "Yoast", "provider": "Yoast", "purpose": "Website analytics"},
         ]},
        {"key": "advertising",
         "titles": {"en": "Attribution and conversion tracking"},
         "descriptions": {"en": "Third-party cookies for attribution: Google AdWords "
                                "(Conversion Tracking) and LinkedIn (Conversion Tracking), "
                                "used to deliver and measure targeted offers and ads."},
         "services": [
             {"name": "Google AdWords (Conversion Tracking)", "provider": "Google",
              "purpose": "Measures which ads led to sign-ups",
              "privacy_url": "https://policies.google.com/privacy",
              "cookies": [{"pattern": "^_gcl_"}]},
             {"name": "LinkedIn (Conversion Tracking)", "provider": "LinkedIn",
              "purpose": "Measures which LinkedIn campaigns led to sign-ups",
              "privacy_url": "https://www.linkedin.com/legal/privacy-policy",
              "cookies": [{"name": "li_fat_id"}, {"name": "lidc", "domain": ".linkedin.com"},
                          {"name": "bcookie", "domain": ".linkedin.com"}]},
         ]},
    ),
    # Marketing "with your consent, where required by law": nothing promotional by default.
    channel_defaults={"email.promotional": False, "sms.promotional": False,
                      "push.promotional": False, "push.service": False},
    # The ten business days are the policy's for commercial e-mail opt-outs only
    # (opt_out_deadline below); it names none for access or deletion.
    request_deadline={"days": 30},
    deadline_source="The policy names no deadline for access or deletion requests; the "
                    "product default of 30 days applies. Its \u201cup to ten (10) business "
                    "days\u201d is for commercial e-mail opt-outs (opt_out_deadline).",
    opt_out_deadline={"business_days": 10},
    gpc_note="The policy does not mention browser privacy signals. The product honours "
             "Global Privacy Control for conversion tracking and targeted ads.",
    # "We do not knowingly collect ... under the age of 18 without parental consent": ask
    # on every first visit; a parent confirms through a signed link (consent.guardians).
    age_rule={"adult_age": 18, "guardian": "parent", "ask": "always",
              "guardian_verification": "link",
              "categories": ["analytics", "advertising"],
              "channels": ["email.promotional", "sms.promotional", "push.promotional"],
              "quote": AGE_QUOTE},
    texts={"en": {
        # "AloPal will never rent or sell your Personal Information": no "sale" here.
        "gpc": "Your browser sent a Global Privacy Control signal, so attribution and "
               "conversion tracking is turned off.",
        "text": "AloPal uses cookies for the technical operation of the Platform and your "
                "log-in. With your consent we also use Google Analytics, Google Tag Manager "
                "and Optimize, and Google AdWords and LinkedIn conversion tracking. You can "
                "remove your consent at any time on your profile page.",
        "prefs.channels_intro": "Commercial messages are sent only with your consent. Opting "
                                "out applies at once (the policy allows us up to ten "
                                "business days).",
        "channel.transactional.description": "Administrative messages about any service or "
                                             "online platform AloPal operates and with which "
                                             "you maintain a current user account continue "
                                             "after you opt out of commercial messages.",
        "unsub.transactional_note": "Even after you opt out of commercial messages, you will "
                                    "continue to receive administrative messages about any "
                                    "service or online platform AloPal operates with which "
                                    "you maintain a current user account.",
    }},
    controller={"name": "AloPal", "email": "privacy@alopal.net", "jurisdiction": "US"},
    deletion_exceptions=(
        "Complete the transaction for which we collected the personal information, provide "
        "a good or service that you requested, or otherwise perform our contract with you.",
        "Detect security incidents, protect against malicious, deceptive, fraudulent, or "
        "illegal activity, or prosecute those responsible for such activities.",
        "Debug products to identify and repair errors that impair existing intended "
        "functionality.",
        "Exercise free speech, ensure the right of another consumer to exercise their free "
        "speech rights or exercise another right provided for by law.",
        "Engage in public or peer-reviewed scientific, historical, or statistical research in "
        "the public interest.",
        "Enable solely internal uses that are reasonably aligned with consumer expectations "
        "based on your relationship with us.",
        "Comply with a legal obligation.",
        "Make other internal and lawful uses of that information that are compatible with "
        "the context in which you provided it.",
    ),
    notes=(
        "Opt-outs apply at once; each promotional opt-out is also recorded as a completed "
        "opt-out request with its 10-business-day deadline (admin: Requests).",
        "Refusing a deletion request: reject it in the admin naming the exception (one of "
        "the reasons listed in the profile); the note is kept with the request.",
    ),
    promises=(
        Promise(
            id="withdraw-on-profile-page",
            section="Legal bases",
            quote="you may withdraw your consent by visiting your profile page and clicking "
                  "the box to remove consent",
            does="The site's login link opens the preference center as the person's profile "
                 "page; unticking a box and saving records the withdrawal at once (one "
                 "`preferences` event), and the site's backend sees it for the account "
                 "(GET /users/<id>, \"may I send?\").",
            test="test_consent_is_withdrawn_on_the_profile_page_by_clicking_the_box"),
        Promise(
            id="commercial-email-opt-out-10-business-days",
            section="Commercial email",
            quote="you may opt-out or unsubscribe at any time by following the instructions "
                  "contained within the email ... it may take up to ten (10) business days",
            does="One-click unsubscribe applies at once (\"may I send?\" refuses the next "
                 "commercial e-mail) and records an opt-out request completed at that moment "
                 "with its 10-business-day deadline; administrative (transactional) messages "
                 "still go out. Deleting the account keeps the opt-out (a suppression record), "
                 "so earlier consent is never revived.",
            test="test_commercial_email_opt_out_applies_at_once_within_10_business_days"),
        Promise(
            id="tracking-services-by-consent",
            section="Cookies and Web Beacons",
            quote="We also use Google Analytics, Google Tag Manager, Google AdWords "
                  "(Conversion Tracking), LinkedIn (Conversion Tracking)",
            does="These tools are listed with their cookies under analytics and advertising "
                 "in the banner; their tags run only with consent to their category, and "
                 "withdrawing deletes their first-party cookies.",
            test="test_google_and_linkedin_tracking_are_listed_and_wait_for_consent"),
        Promise(
            id="parental-consent-under-18",
            section="Our commitment to protecting your personal information",
            quote=AGE_QUOTE,
            does="When the site flags that a visitor may be under 18, the banner and the "
                 "preference center ask; analytics, conversion tracking and commercial "
                 "messages chosen by a minor alone are withheld, and a parent's consent is "
                 "recorded as such (meta guardian: true).",
            test="test_under_18_needs_parental_consent_recorded_as_such"),
        Promise(
            id="deletion-with-exceptions",
            section="Right to Request Deletion of Information",
            quote="we will delete (and direct our service providers to delete) your personal "
                  "information from our records, unless an exception applies",
            does="A deletion request is carried out by crypto-shredding (the ledger still "
                 "verifies) or refused with the exception recorded in its note; both are "
                 "due within 10 business days and shown overdue past it.",
            test="test_deletion_requests_are_carried_out_or_refused_with_the_exception_recorded"),
    ),
    region_rules=US_OPT_OUT,
)
