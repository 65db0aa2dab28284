"""Seed policy 000: a services platform (THE AO PLANET, policy of August 8, 2023)."""
from datetime import date

from .base import Profile, Promise

POLICY_TEXT = """THE AO PLANET -- Privacy Policy (Last Updated: August 8, 2023)
Summary of the consent practices, in the policy's own words where quoted.

Article 8 (Social sharing features): the Services may offer social sharing features and
other integrated tools (such as the Facebook "Like" button). By associating an account
managed by a third party with your THE AO PLANET account and authorizing THE AO PLANET to
have access to this information, you agree that THE AO PLANET may collect, store, and use
this information in accordance with this Privacy Policy.

Article 9 (Zoom third-party services): "THE AO PLANET uses an access token to communicate
with your account. When you deauthorize THE AO PLANET from your Zoom account, your token
and related data is deleted."

Article 10 (Advertising and analytics services provided by others): "We may allow others
to provide analytics services and serve advertisements on our behalf." These entities may
use cookies, web beacons, device identifiers and other technologies. "You may be able to
opt out of having third parties use your web browsing information for behavioral
advertising purposes, by visiting www.aboutads.info/choices."

Article 12 (Promotional communications): "You may opt out of receiving promotional
communications from THE AO PLANET by following the instructions in those messages. Please
note that if you opt out, we may still send you transactional or relationship messages,
such as those about your account or our ongoing business relations."

Article 13 (Location information): "If you initially consent to the collection of precise
location information by THE AO PLANET via our mobile app, you should be able to
subsequently stop this collection". Disabling location information may limit the
Services available to you.

Article 14 (Cookies and local storage): rejecting these technologies could affect the
availability and functionality of the Services.

Article 16 (Mobile push notifications): "With your consent, we may send promotional and
non-promotional push notifications or alerts to your mobile device."

Article 17: questions to planetsupport@altig.com.
"""

PROFILE = Profile(
    name="services_platform",
    seed="000_c4d658dc72ba0ae8.txt",
    title="Services platform: promotional opt-out, push by consent, ads and analytics by "
          "others, precise location, linked third-party accounts",
    site_name="THE AO PLANET",
    site_key="ao-planet",
    policy_label="2023-08-08",
    policy_date=date(2023, 8, 8),
    policy_text=POLICY_TEXT,
    policy_summary="Privacy Policy, last updated August 8, 2023 (summary of its consent "
                   "practices).",
    categories=(
        {"key": "essential",
         "descriptions": {"en": "Cookies and local storage the Services need to sign you in, "
                                "keep your account secure and remember this choice "
                                "(Article 14). Always on."},
         "services": [
             {"name": "Account session", "provider": "THE AO PLANET",
              "purpose": "Keeps you signed in to your account", "cookies": [{"name": "session"}]},
             {"name": "Consent record", "provider": "THE AO PLANET",
              "purpose": "Remembers the choices you make here", "cookies": [{"name": "consent"}]},
         ]},
        {"key": "functional",
         "titles": {"en": "Social sharing and integrated tools"},
         "descriptions": {"en": "Social sharing features and integrated tools, such as the "
                                "Facebook \u201cLike\u201d button (Article 8)."},
         "services": [
             {"name": "Facebook \u201cLike\u201d button", "provider": "Meta Platforms",
              "purpose": "Shares actions you take on the Services",
              "cookies": [{"name": "fr", "domain": ".facebook.com"}]},
         ]},
        {"key": "analytics",
         "titles": {"en": "Analytics by others"},
         "descriptions": {"en": "Others provide analytics services on our behalf, using "
                                "cookies, web beacons and device identifiers (Article 10)."},
         "services": [
             # The policy names no tool: the first-party cookies such services commonly
             # set (Google Analytics), so that withdrawing deletes them.
             {"name": "Analytics services provided by others", "provider": "Analytics partners",
              "purpose": "Pages viewed, time spent, links clicked",
              "cookies": [{"pattern": "^_ga(_.+)?$"}, {"name": "_gid"}]},
         ]},
        {"key": "advertising",
         "titles": {"en": "Advertising by others"},
         "descriptions": {"en": "Others serve advertisements on our behalf, targeted to your "
                                "interests here and on other websites (Article 10). See also "
                                "www.aboutads.info/choices."},
         "services": [
             {"name": "Advertising services provided by others", "provider": "Ad partners",
              "purpose": "Targeted advertising and conversion information",
              "cookies": [{"pattern": "^_gcl_"}, {"name": "li_fat_id"}, {"name": "_fbp"}]},
         ]},
        {"key": "location",
         "titles": {"en": "Precise location"},
         "descriptions": {"en": "Collection of your precise location (Article 13). You can "
                                "stop it at any time; some Services may then be limited."},
         "services": [
             {"name": "Precise location", "provider": "THE AO PLANET",
              "purpose": "Location-based features of the Services"},
         ]},
    ),
    # Article 12 describes an opt-out model for promotional communications; Article 16
    # makes push notifications of both kinds consent-based.
    channel_defaults={"email.promotional": True, "sms.promotional": True,
                      "push.promotional": False, "push.service": False},
    request_deadline={"days": 30},
    deadline_source="The policy states no deadline for requests; the product default of 30 "
                    "days applies.",
    gpc_note="The policy does not mention browser privacy signals. The product honours "
             "Global Privacy Control for advertising by others (Article 10): it is turned off "
             "and recorded with source gpc.",
    texts={"en": {
        "text": "THE AO PLANET uses essential cookies and local storage to run the Services. "
                "With your consent, others provide analytics and serve advertisements on our "
                "behalf, social sharing tools load, and we collect your precise location. "
                "Choose per purpose; you can change your mind at any time.",
        "prefs.channels_intro": "Promotional messages can be stopped here or by following "
                                "the instructions in any of them. Push notifications, "
                                "promotional or not, are sent only with your consent.",
        "channel.transactional.description": "Transactional and relationship messages, such "
                                             "as those about your account or our ongoing "
                                             "business relations, are still sent after you "
                                             "opt out of promotional communications "
                                             "(Article 12).",
        "unsub.transactional_note": "We may still send you transactional or relationship "
                                    "messages, such as those about your account or our "
                                    "ongoing business relations.",
    }},
    controller={"name": "THE AO PLANET", "email": "planetsupport@altig.com",
                "jurisdiction": "US"},
    linked_accounts={"zoom": "Zoom", "social_login": "Social media sign-in"},
    # Article 12 speaks of "promotional communications" as one thing: following the
    # instructions in any of them opts out of all (e-mail, SMS and push promotions).
    unsubscribe_scope="all_promotional",
    notes=(
        "Promotional e-mail and SMS are allowed until the person opts out, as Article 12 "
        "describes; set channel_defaults to false where the law requires an opt-in.",
        "Linked accounts: the site's backend reports authorisations and deauthorisations "
        "through /api/v1/sites/<key>/linked-accounts; tokens are kept encrypted and deleted "
        "on deauthorisation.",
    ),
    promises=(
        Promise(
            id="promotional-opt-out",
            section="Article 12",
            quote="You may opt out of receiving promotional communications from THE AO PLANET "
                  "by following the instructions in those messages. ... we may still send you "
                  "transactional or relationship messages",
            does="Every promotional e-mail carries a signed one-click unsubscribe link (RFC "
                 "8058) and SMS answers STOP; either records an `unsubscribe` event at once "
                 "for every promotional channel of the person (e-mail, SMS and push: one "
                 "opt-out of promotional communications). \"May I send?\" then refuses "
                 "promotional messages and still allows transactional ones. The opt-out outlives the erasure of the person (a "
                 "suppression record): \"may I send?\" still refuses by address and user id.",
            test="test_promotional_opt_out_from_the_message_keeps_transactional_messages"),
        Promise(
            id="push-by-consent",
            section="Article 16",
            quote="With your consent, we may send promotional and non-promotional push "
                  "notifications or alerts to your mobile device.",
            does="Promotional and service push notifications are two separate choices, both "
                 "off until the person turns them on in the preference center; each can be "
                 "stopped again on its own.",
            test="test_push_notifications_of_each_kind_need_their_own_consent"),
        Promise(
            id="ads-and-analytics-by-others",
            section="Article 10",
            quote="We may allow others to provide analytics services and serve advertisements "
                  "on our behalf. ... You may be able to opt out",
            does="Analytics and advertising tags of others stay blocked (Consent Mode "
                 "denied) until the visitor accepts them in the banner; the visitor can opt "
                 "out later from the cookie settings, which stops the tags from the next "
                 "page on and is recorded as a ledger event.",
            test="test_analytics_and_advertising_by_others_wait_for_consent_and_can_be_opted_out"),
        Promise(
            id="precise-location",
            section="Article 13",
            quote="If you initially consent to the collection of precise location information "
                  "... you should be able to subsequently stop this collection",
            does="Precise location is its own custom category `location`: location code runs "
                 "only after consent to it, and withdrawing it is recorded and stops the code "
                 "on the next page.",
            test="test_precise_location_is_its_own_choice_and_can_be_stopped"),
        Promise(
            id="deauthorised-token-deleted",
            section="Article 9",
            quote="When you deauthorize THE AO PLANET from your Zoom account, your token and "
                  "related data is deleted.",
            does="A linked Zoom account's token is kept encrypted; deauthorising deletes it at "
                 "once (the backend gets 410 Gone afterwards) and appends a `withdraw` event "
                 "whose meta names the integration and says the token was deleted.",
            test="test_deauthorising_a_linked_account_deletes_its_token_and_records_a_withdrawal"),
    ),
)
