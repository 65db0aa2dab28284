"""Seed policy 003: a scheduling service (Allset, policy effective October 21, 2022)."""
from datetime import date

from .base import Profile, Promise, US_OPT_OUT

POLICY_TEXT = """Allset -- Privacy Policy (Effective date: October 21, 2022)
Summary of the consent practices, in the policy's own words where quoted.

Information Collected Automatically: "Please note that because of our use of Cookies, the
Services do not support "Do Not Track" requests sent from a browser at this time."
"We use the following types of Cookies:"
- Essential Cookies: "required for providing you with features or services that you have
  requested", e.g. logging into secure areas.
- Functional Cookies: "used to record your choices and settings regarding our Services,
  maintain your preferences over time and recognize you when you return".
- Performance/Analytical Cookies: "allow us to understand how visitors use our Services"
  and "help us measure the performance of our advertising campaigns"; for example Google
  Analytics.

Information about Interest-Based Advertisements: "We may allow third-party ad networks,
including third-party ad servers, ad agencies, ad technology vendors and research firms,
to serve advertisements regarding the Services", including through web beacons.

How We Use Your Personal Data: "if you've given us your email address, we may send you
promotional email offers or email you about your use of the Services. ... If you do not
want to receive communications from us, please indicate your preference by emailing us
at hello@Allset.day."

Sales of Personal Data: "We do not sell your Personal Data and have never sold your
Personal Data."

Exercising Your Rights: "We will work to respond to your Valid Request within 45 days of
receipt."
"""

PROFILE = Profile(
    name="scheduling",
    seed="003_d852f94304fd9c75.txt",
    title="Scheduling service: essential, functional and performance/analytical cookies, "
          "interest-based ads, promotional e-mail opt-out, 45-day requests, GPC honoured "
          "though Do Not Track is not",
    site_name="Allset",
    site_key="allset",
    policy_label="2022-10-21",
    policy_date=date(2022, 10, 21),
    policy_text=POLICY_TEXT,
    policy_summary="Privacy Policy effective October 21, 2022 (summary of its consent "
                   "practices).",
    categories=(
        {"key": "essential",
         "titles": {"en": "Essential Cookies"},
         "descriptions": {"en": "Required for providing you with features or services that "
                                "you have requested, for example logging into secure areas "
                                "of our Services. Always on."},
         "services": [
             {"name": "Secure login", "provider": "Allset",
              "purpose": "Lets you log into secure areas", "cookies": [{"name": "session"}]},
             {"name": "Consent record", "provider": "Allset",
              "purpose": "Remembers the choices you make here", "cookies": [{"name": "consent"}]},
         ]},
        {"key": "functional",
         "titles": {"en": "Functional Cookies"},
         "descriptions": {"en": "Record your choices and settings, maintain your preferences "
                                "over time and recognize you when you return, for example "
                                "your choice of language or region."},
         "services": [
             {"name": "Preferences", "provider": "Allset",
              "purpose": "Remembers your language, region and settings",
              "cookies": [{"name": "prefs"}]},
         ]},
        {"key": "analytics",
         "titles": {"en": "Performance/Analytical Cookies"},
         "descriptions": {"en": "Help us understand how visitors use our Services and measure "
                                "the performance of our advertising campaigns, e.g. Google "
                                "Analytics."},
         "services": [
             {"name": "Google Analytics", "provider": "Google",
              "purpose": "Number of visitors, pages viewed and time spent on them",
              "privacy_url": "https://policies.google.com/privacy",
              "cookies": [{"pattern": "^_ga(_.+)?$"}, {"name": "_gid"}]},
         ]},
        {"key": "advertising",
         "titles": {"en": "Interest-Based Advertising"},
         "descriptions": {"en": "Third-party ad networks, ad servers, ad agencies, ad "
                                "technology vendors and research firms serving "
                                "advertisements regarding the Services, including through "
                                "web beacons that track activity across time and sites."},
         "services": [
             {"name": "Third-party ad networks and web beacons", "provider": "Ad networks",
              "purpose": "Interest-Based Ads and anonymized, aggregated ad reporting"},
         ]},
    ),
    # "we may send you promotional email offers": an opt-out model for e-mail.
    channel_defaults={"email.promotional": True, "sms.promotional": False,
                      "push.promotional": False, "push.service": False},
    request_deadline={"days": 45},
    deadline_source="\u201cWe will work to respond to your Valid Request within 45 days of "
                    "receipt.\u201d (Exercising Your Rights)",
    gpc_note="The policy says the Services do not support \u201cDo Not Track\u201d requests. "
             "The product nevertheless honours the Global Privacy Control signal for "
             "interest-based advertising: it is turned off without asking, recorded with "
             "source gpc, and the banner says so. A Do Not Track header alone changes "
             "nothing, as the policy states.",
    texts={"en": {
        "text": "Allset uses Essential Cookies to provide the Services. With your consent we "
                "also use Functional and Performance/Analytical Cookies, and let ad networks "
                "serve interest-based ads. Choose per type; you can change your mind at any "
                "time.",
        "gpc": "Your browser sent a Global Privacy Control signal, so interest-based "
               "advertising is turned off. (We do not act on Do Not Track, but we honour "
               "this signal.)",
    }},
    controller={"name": "Allset", "email": "hello@allset.day", "jurisdiction": "US"},
    notes=(
        "Promotional e-mail offers are allowed until the person opts out, as the policy "
        "describes; set channel_defaults to false where the law requires an opt-in.",
    ),
    promises=(
        Promise(
            id="cookie-types",
            section="Information Collected Automatically",
            quote="We use the following types of Cookies: Essential Cookies ... Functional "
                  "Cookies ... Performance/Analytical Cookies",
            does="The banner's preferences list exactly these types under the policy's names "
                 "(plus interest-based advertising), Essential always on; functional and "
                 "performance/analytical code runs only once its type is chosen.",
            test="test_the_banner_offers_the_policys_cookie_types_and_blocks_them_until_chosen"),
        Promise(
            id="interest-based-ads",
            section="Information about Interest-Based Advertisements",
            quote="We may allow third-party ad networks ... to serve advertisements regarding "
                  "the Services",
            does="Ad network tags and web beacons are blocked (Consent Mode ad_storage "
                 "denied) until the visitor accepts interest-based advertising, and stop "
                 "again when it is withdrawn.",
            test="test_interest_based_ads_wait_for_consent"),
        Promise(
            id="promotional-email-opt-out",
            section="How We Use Your Personal Data",
            quote="we may send you promotional email offers ... If you do not want to receive "
                  "communications from us, please indicate your preference",
            does="Promotional e-mail carries a one-click unsubscribe link and the preference "
                 "center has the same switch; either records an `unsubscribe` at once and "
                 "\"may I send?\" refuses promotional e-mail, while service e-mail about "
                 "the person's use of the Services (transactional) still goes out. Deleting "
                 "the person's data keeps the opt-out (a suppression record).",
            test="test_promotional_email_can_be_opted_out"),
        Promise(
            id="requests-within-45-days",
            section="Exercising Your Rights",
            quote="We will work to respond to your Valid Request within 45 days of receipt.",
            does="Access and erasure requests are due 45 days after receipt; past that an "
                 "open request is shown as overdue on the dashboard and the requests page.",
            test="test_valid_requests_are_due_within_45_days_and_shown_overdue"),
        Promise(
            id="gpc-though-no-dnt",
            section="Information Collected Automatically",
            quote="the Services do not support \u201cDo Not Track\u201d requests sent from a "
                  "browser at this time",
            does="Do Not Track is not acted on, as the policy says; the Global Privacy "
                 "Control signal is nevertheless honoured for interest-based advertising "
                 "(turned off, recorded with source gpc, and the banner says so).",
            test="test_gpc_is_honoured_for_advertising_though_do_not_track_is_not"),
    ),
    region_rules=US_OPT_OUT,
)
