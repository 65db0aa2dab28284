"""Consent receipts validate against a JSON Schema written from the Kantara Consent
Receipt v1.1 MUSTs (tests/support/kantara_cr_v1_1.schema.json); the admin asks for the
controller's contact details, and the receipt is refused with a clear message until
they are set."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from consent import requests as rq
from consent.database import run_write
from consent.sites import get_site, invalidate_site_cache
from tests.support.admin import post_form, record_choice as decide

SCHEMA = json.loads((Path(__file__).parent / "support" / "kantara_cr_v1_1.schema.json")
                    .read_text())
VALIDATOR = Draft202012Validator(SCHEMA)

CONTROLLER_FORM = {
    "controller_name": "Shop GmbH", "controller_contact": "Data Protection Officer",
    "controller_email": "privacy@shop.example", "controller_phone": "+49 30 1234567",
    "controller_street": "Hauptstraße 1", "controller_postal_code": "10115",
    "controller_locality": "Berlin", "controller_country": "de",
    "controller_url": "https://shop.example", "controller_jurisdiction": "DE",
}
def errors_of(receipt: dict) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in VALIDATOR.iter_errors(receipt))


def save_settings(admin, site, **fields):
    """Save the settings' data controller section (it saves only its own fields)."""
    return post_form(admin, f"/admin/sites/{site['key']}/settings/controller", fields)


def access_receipt(app, admin, site, visitor):
    r = post_form(admin, f"/admin/sites/{site['key']}/requests",
                  {"kind": "access", "subject": visitor})
    assert r.status_code == 302
    page = admin.get(r.headers["Location"]).data.decode()
    link = page.split('id="access-link">')[1].split("<")[0]
    path = link.split("://", 1)[1].split("/", 1)[1]
    return app.test_client().get(f"/{path}/receipt.json")


def test_the_schema_catches_what_issue_15_found():
    # The receipt as it was: address a string, empty contact/email/phone, an event id
    # that is not a UUID, NOT-REQUIRED as a consent type.
    old = {"version": "KI-CR-v1.1.0", "jurisdiction": "EU", "consentTimestamp": 1,
           "collectionMethod": "banner", "consentReceiptID": "4b1f0c9e8d7a6b5c4d3e2f1a0b9c8d7e",
           "piiPrincipalId": "v", "policyUrl": "https://shop.example/p",
           "piiControllers": [{"piiController": "Shop", "contact": "", "address": "",
                               "email": "", "phone": ""}],
           "services": [{"service": "Shop", "purposes": [{
               "purpose": "Essential", "purposeCategory": ["essential"],
               "consentType": "NOT-REQUIRED", "piiCategory": ["cookies"],
               "termination": "t", "thirdPartyDisclosure": False, "thirdPartyName": ""}]}],
           "sensitive": False, "spiCat": []}
    found = "\n".join(errors_of(old))
    for where in ("consentReceiptID", "piiControllers/0/address", "piiControllers/0/phone",
                  "piiControllers/0/email", "piiControllers/0/contact",
                  "services/0/purposes/0/consentType"):
        assert where in found, where


def test_receipt_is_refused_until_the_controller_is_described(app, admin, site):
    visitor = decide(site["key"], "accept_all")
    r = access_receipt(app, admin, site, visitor)
    assert r.status_code == 409
    text = r.get_data(as_text=True)
    assert "contact" in text and "phone" in text and "postal address" in text
    page = admin.get(f"/admin/sites/{site['key']}/settings/controller").data.decode()
    assert 'id="controller-missing"' in page and 'name="controller_phone"' in page
    assert 'name="controller_street"' in page and 'name="controller_country"' in page


def test_receipt_validates_against_the_kantara_schema(app, admin, site):
    r = save_settings(admin, site, **CONTROLLER_FORM)
    assert r.status_code == 302, r.get_data(as_text=True)
    controller = get_site(site["key"]).settings["controller"]
    assert controller["phone"] == "tel:+49-30-1234567"
    assert controller["address"] == {"streetAddress": "Hauptstraße 1", "postalCode": "10115",
                                     "addressLocality": "Berlin", "addressCountry": "DE"}
    assert 'id="controller-missing"' not in admin.get(
        f"/admin/sites/{site['key']}/settings/controller").data.decode()
    invalidate_site_cache()
    visitor = decide(site["key"], "custom", categories={"analytics": True,
                                                        "advertising": True})
    r = access_receipt(app, admin, site, visitor)
    assert r.status_code == 200
    receipt = r.get_json()
    assert errors_of(receipt) == []
    controller = receipt["piiControllers"][0]
    assert controller["address"]["@type"] == "PostalAddress"
    assert controller["phone"].startswith("tel:+49")
    purposes = {p["purposeCategory"][0]: p for p in receipt["services"][0]["purposes"]}
    assert purposes["essential"]["consentType"] == "IMPLICIT"
    assert purposes["analytics"]["consentType"] == "EXPLICIT"
    assert re.fullmatch(r"[0-9a-f-]{36}", receipt["consentReceiptID"])
    assert receipt["consentReceiptID"].replace("-", "") == rq.read_state(
        get_site(site["key"]).id,
        rq.find_subject(get_site(site["key"]).id, visitor).pseudonym)["last_event_id"]


@pytest.mark.parametrize("field, value", [
    ("controller_phone", "030 1234567"),       # not international
    ("controller_phone", "+49 30 12 ab"),
    ("controller_email", "privacy at shop"),
    ("controller_country", "D"),
])
def test_bad_controller_details_are_refused_and_change_nothing(admin, site, field, value):
    before = dict(get_site(site["key"]).settings)
    r = save_settings(admin, site, **{**CONTROLLER_FORM, field: value})
    assert r.status_code in (400, 422)
    assert get_site(site["key"]).settings == before


def test_tel_uris():
    assert rq.tel_uri("+1 (555) 010-2030") == "tel:+1-(555)-010-2030"
    assert rq.tel_uri("0049 89 123456") == "tel:+49-89-123456"
    assert rq.tel_uri("tel:+44-20-7946-0000") == "tel:+44-20-7946-0000"


def test_profiles_receipts_need_their_address_too(app):
    """A loaded profile names its controller but not a postal address or phone: the
    receipt says so instead of emitting an invalid one."""
    from consent.profiles import load_profile
    from consent.subjects import get_or_create_subject

    load_profile("device_network", site_key="dasset")
    decide("dasset", "accept_all")
    subject = run_write(lambda: get_or_create_subject(get_site("dasset").id, None))
    with pytest.raises(rq.ReceiptUnavailable, match="postal address"):
        rq.consent_receipt("dasset", subject)
