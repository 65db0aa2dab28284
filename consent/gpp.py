"""IAB Global Privacy Platform (GPP) and US Privacy (uspv1) strings, encoded on the server.

The server encodes, the widget only answers `__gpp`/`__uspapi` with what the server sent:
the strings are recorded with each event and the site's backend reads the same ones, so
there is one encoder, tested against IAB Tech Lab's own decoder (@iabgpp/cmpapi).

Encoding (IAB GPP consolidated string spec): sections are bit fields written as
base64url without padding characters; the header (section 3) lists the section ids as a
Fibonacci-coded range; sections follow in id order, joined by `~`. A US section with a
Global Privacy Control sub-section appends it after a `.`.
"""
from __future__ import annotations

from dataclasses import dataclass

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

HEADER_ID, USPV1_ID, USNAT_ID, USCA_ID = 3, 6, 7, 8
# Section names as the GPP API and @iabgpp/cmpapi call them, by id.
SECTION_NAMES = {USPV1_ID: "uspv1", USNAT_ID: "usnat", USCA_ID: "usca"}

# 2-bit values of the US sections: 0 not applicable, 1 yes / opted out, 2 no / did not.
NA, YES, NO = 0, 1, 2


def _int(value: int, bits: int) -> str:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{value} does not fit in {bits} bits")
    return format(value, f"0{bits}b")


def _fibonacci(value: int) -> str:
    """VALUE (>= 1) in Fibonacci coding: Zeckendorf bits from F(2)=1 upwards, then a 1."""
    if value < 1:
        raise ValueError("Fibonacci coding needs a positive integer")
    fibs = [1, 2]
    while fibs[-1] <= value:
        fibs.append(fibs[-1] + fibs[-2])
    bits = ["0"] * len(fibs)
    rest = value
    for i in range(len(fibs) - 1, -1, -1):
        if fibs[i] <= rest:
            bits[i] = "1"
            rest -= fibs[i]
    return "".join(bits).rstrip("0") + "1"


def _base64url(bits: str) -> str:
    # Padded to whole bytes, then to whole base64 characters (as IAB's encoder does).
    bits += "0" * (-len(bits) % 8)
    bits += "0" * (-len(bits) % 6)
    return "".join(_B64[int(bits[i:i + 6], 2)] for i in range(0, len(bits), 6))


def encode_header(section_ids: list[int]) -> str:
    """The GPP header section naming SECTION_IDS (ascending, as ranges)."""
    ids = sorted(set(section_ids))
    runs: list[list[int]] = []
    for i in ids:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    bits = _int(HEADER_ID, 6) + _int(1, 6) + _int(len(runs), 12)
    last = 0
    for start, end in runs:
        if start == end:
            bits += "0" + _fibonacci(start - last)
        else:
            bits += "1" + _fibonacci(start - last) + _fibonacci(end - start)
        last = end
    return _base64url(bits)


@dataclass(frozen=True)
class UsChoice:
    """What a US visitor's signals say: the inputs of every US section."""

    opted_out: bool        # of sale, sharing and targeted advertising
    gpc: bool = False      # the browser sent Global Privacy Control
    minor: bool = False    # a known minor under 16: sale needs opt-in, none was given


def usnat_fields(choice: UsChoice) -> dict:
    """The usnat (section 7, version 2) field values for CHOICE, named as IAB names them."""
    out = YES if choice.opted_out or choice.gpc or choice.minor else NO
    return {
        "Version": 2,
        # The notices: the widget's notice at collection and its "Your Privacy Choices" link.
        "SharingNotice": YES, "SaleOptOutNotice": YES, "SharingOptOutNotice": YES,
        "TargetedAdvertisingOptOutNotice": YES,
        "SensitiveDataProcessingOptOutNotice": NA, "SensitiveDataLimitUseNotice": NA,
        "SaleOptOut": out, "SharingOptOut": out, "TargetedAdvertisingOptOut": out,
        # Sensitive categories stay opt-in and are not sold: not applicable here.
        "SensitiveDataProcessing": [NA] * 16,
        # A known child's data: no consent to sale or sharing (1 = no consent).
        "KnownChildSensitiveDataConsents": [YES if choice.minor else NA] * 3,
        "PersonalDataConsents": NA,
        "MspaCoveredTransaction": NO, "MspaOptOutOptionMode": NA,
        "MspaServiceProviderMode": NA,
        "GpcSegmentType": 1, "Gpc": choice.gpc,
    }


def usca_fields(choice: UsChoice) -> dict:
    """The usca (section 8, California, version 1) field values for CHOICE."""
    out = YES if choice.opted_out or choice.gpc or choice.minor else NO
    return {
        "Version": 1, "SaleOptOutNotice": YES, "SharingOptOutNotice": YES,
        "SensitiveDataLimitUseNotice": NA, "SaleOptOut": out, "SharingOptOut": out,
        "SensitiveDataProcessing": [NA] * 9,
        "KnownChildSensitiveDataConsents": [YES if choice.minor else NA] * 2,
        "PersonalDataConsents": NA, "MspaCoveredTransaction": NO,
        "MspaOptOutOptionMode": NA, "MspaServiceProviderMode": NA,
        "GpcSegmentType": 1, "Gpc": choice.gpc,
    }


_USNAT_CORE = [("Version", 6), "SharingNotice", "SaleOptOutNotice", "SharingOptOutNotice",
               "TargetedAdvertisingOptOutNotice", "SensitiveDataProcessingOptOutNotice",
               "SensitiveDataLimitUseNotice", "SaleOptOut", "SharingOptOut",
               "TargetedAdvertisingOptOut", "SensitiveDataProcessing",
               "KnownChildSensitiveDataConsents", "PersonalDataConsents",
               "MspaCoveredTransaction", "MspaOptOutOptionMode", "MspaServiceProviderMode"]
_USCA_CORE = [("Version", 6), "SaleOptOutNotice", "SharingOptOutNotice",
              "SensitiveDataLimitUseNotice", "SaleOptOut", "SharingOptOut",
              "SensitiveDataProcessing", "KnownChildSensitiveDataConsents",
              "PersonalDataConsents", "MspaCoveredTransaction", "MspaOptOutOptionMode",
              "MspaServiceProviderMode"]


def _us_section(fields: dict, layout: list) -> str:
    bits = ""
    for item in layout:
        name, width = item if isinstance(item, tuple) else (item, 2)
        value = fields[name]
        bits += "".join(_int(v, 2) for v in value) if isinstance(value, list) \
            else _int(value, width)
    gpc = _int(fields["GpcSegmentType"], 2) + ("1" if fields["Gpc"] else "0")
    return f"{_base64url(bits)}.{_base64url(gpc)}"


def uspv1_string(choice: UsChoice) -> str:
    """The US Privacy string (`1YYN` style): version, notice given, opted out, LSPA."""
    return "1Y" + ("Y" if choice.opted_out or choice.gpc or choice.minor else "N") + "N"


def us_strings(choice: UsChoice, *, state_sections: tuple[str, ...] = ()) -> dict:
    """The GPP string, its applicable section ids and each section's fields, and the
    US Privacy string, for a US visitor whose signals are CHOICE.

    STATE_SECTIONS names state sections the site enabled for this visitor's state
    (only `usca` today); usnat and uspv1 are always there.
    """
    sections = {USPV1_ID: uspv1_string(choice),
                USNAT_ID: _us_section(usnat_fields(choice), _USNAT_CORE)}
    fields = {"uspv1": {"Version": 1, "Notice": "Y",
                        "OptOutSale": uspv1_string(choice)[2], "LspaCovered": "N"},
              "usnat": usnat_fields(choice)}
    if "usca" in state_sections:
        sections[USCA_ID] = _us_section(usca_fields(choice), _USCA_CORE)
        fields["usca"] = usca_fields(choice)
    ids = sorted(sections)
    gpp = "~".join([encode_header(ids)] + [sections[i] for i in ids])
    return {"gpp": gpp, "sid": ids, "usp": sections[USPV1_ID], "sections": fields}
