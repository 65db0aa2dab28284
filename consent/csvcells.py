"""CSV cells that a spreadsheet will not run: the one writer of every CSV the product makes.

A cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to Excel,
LibreOffice and Google Sheets (CSV/formula injection): a webhook named
`=HYPERLINK(...)` or `=cmd|'/C calc'!A0` would act when an auditor opens the export. Such
a cell is written with a leading apostrophe, which spreadsheets show as text.

The escape is reversible, so exports stay verifiable: a cell that already starts with
apostrophes followed by one of those characters gets one apostrophe more, and
`unescape_cell` removes exactly one from any cell of that shape. Every other cell is
written as it is. Hashes always cover the original value; the verifier reads cells back
through `read_row`.
"""
from __future__ import annotations

import csv
import io
from typing import Iterable

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _needs_mark(text: str) -> bool:
    rest = text.lstrip("'")
    return bool(rest) and rest[0] in TRIGGERS


def escape_cell(value):
    """VALUE as written to a CSV cell (text a spreadsheet would run gets an apostrophe)."""
    if isinstance(value, str) and value and (value[0] in TRIGGERS or value[0] == "'") \
            and _needs_mark(value):
        return "'" + value
    return value


def unescape_cell(text: str) -> str:
    """The original value of a cell written by escape_cell."""
    if text[:1] == "'" and _needs_mark(text):
        return text[1:]
    return text


class SafeWriter:
    """csv.writer whose cells go through escape_cell."""

    def __init__(self, out, **kwargs):
        kwargs.setdefault("lineterminator", "\n")
        self._writer = csv.writer(out, **kwargs)

    def writerow(self, row: Iterable) -> None:
        """Write one row."""
        self._writer.writerow([escape_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable]) -> None:
        """Write many rows."""
        self._writer.writerows([[escape_cell(v) for v in row] for row in rows])


def writer(out, **kwargs) -> SafeWriter:
    """A CSV writer for OUT that neutralises formula cells (LF line ends by default)."""
    return SafeWriter(out, **kwargs)


def format_row(row: Iterable) -> str:
    """One CSV line (with its line end) of ROW, cells escaped."""
    buf = io.StringIO()
    writer(buf).writerow(row)
    return buf.getvalue()


def read_row(text: str) -> list[str]:
    """The original cell values of one CSV record written by this module."""
    return [unescape_cell(cell) for cell in next(csv.reader([text]))]


def pg_marked(expr: str, utf8: bool = False) -> str:
    """PostgreSQL expression of the text EXPR as escape_cell writes it, for COPY's CSV
    writer to quote (the rules of sql_cell; an empty text becomes NULL, which COPY prints
    as an empty cell, as SafeWriter does, rather than as ""). UTF8: the database's
    encoding is UTF8 or SQL_ASCII, where ascii() reads any first character."""
    # The first character tested first: a regular expression on every cell costs more.
    # ascii() gives an integer (nothing allocated), cheaper than left() compared with
    # texts; in other multibyte encodings it refuses a non-ASCII character.
    first = (f"ascii({expr}) IN (9, 13, 39, 43, 45, 61, 64)" if utf8 else
             f"""left({expr}, 1) IN ('-', '=', '+', '@', '\t', '\r', '''')""")
    return (f"""NULLIF(CASE WHEN {first} """
            f"""AND ltrim({expr}, '''') ~ '^[-=+@\t\r]' THEN '''' || {expr} """
            f"""ELSE {expr} END, '')""")


def sql_cell(expr: str) -> str:
    """SQLite expression rendering the text EXPR as one CSV cell exactly as SafeWriter
    would (escaped, quoted only when needed); NULL renders as an empty cell."""
    quoted = f"""'"' || replace({expr}, '"', '""') || '"'"""
    # GLOB: one character class match each, cheaper than several instr() calls. A '-'
    # first in a class is literal.
    needs_quotes = f"""{expr} GLOB '*[,"\n\r]*'"""
    needs_mark = f"""ltrim({expr}, '''') GLOB '[-=+@\t\r]*'"""
    return (f"""CASE WHEN {needs_mark} THEN (CASE WHEN {needs_quotes} """
            f"""THEN '"''' || replace({expr}, '"', '""') || '"' ELSE '''' || {expr} END) """
            f"""WHEN {needs_quotes} THEN {quoted} ELSE ifnull({expr}, '') END""")
