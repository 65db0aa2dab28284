"""The Open Cookie Database: the shipped snapshot's proposals, and `ocd-refresh`
replacing it from a file (checked first; a bad file changes nothing)."""
from __future__ import annotations

from consent.scanner import ocd
from consent.scanner.service import cookie_database


def test_the_shipped_snapshot_proposes_categories(app, tmp_path):
    app.config["CONSENT_OCD_FILE"] = str(tmp_path / "ocd.csv")
    database = cookie_database()
    assert database.source == "shipped snapshot" and len(database) > 2000
    assert database.match_name("_ga")["category"] == "analytics"
    assert database.match_name("IDE", "doubleclick.net")["category"] == "advertising"
    assert database.match_name("_ga_3XYZ12AB")["platform"] == "Google Analytics"
    assert database.match_name("no-such-cookie-anywhere") is None
    assert "Apache License" in (ocd.DATA_DIR / "LICENSE").read_text()
    assert "Apache" in (ocd.DATA_DIR / "SOURCE.md").read_text()


def test_a_sites_own_plain_cookie_is_not_labelled_as_a_vendors(app, tmp_path):
    # An outside review: a site's own `lang` or `token` cookie was proposed as LinkedIn's
    # or Adform's (their only OCD entries, listed for linkedin.com and adform.net), and
    # Apply filed the site's language cookie under that vendor.
    app.config["CONSENT_OCD_FILE"] = str(tmp_path / "ocd.csv")
    database = cookie_database()
    for name in ("lang", "token", "uid", "locale"):
        assert database.match_name(name, "shop.example") is None, name
    # on the vendor's own domain (or a subdomain of it) it is the vendor's
    assert database.match_name("lang", "www.linkedin.com")["platform"] == "LinkedIn"
    assert database.match_name("uid", "adform.net")["platform"] == "Adform"
    # distinctive names stay recognised where the vendor's script sets them first-party
    assert database.match_name("_fbp", "shop.example")["category"] == "advertising"
    assert database.match_name("_ga", "shop.example")["category"] == "analytics"
    assert database.match_name("_gid", "shop.example")["category"] == "analytics"
    assert database.match_name("IDE", "localhost")["category"] == "advertising"


def test_ocd_refresh_installs_a_checked_file(app, runner, tmp_path):
    installed = tmp_path / "instance" / "ocd.csv"
    app.config["CONSENT_OCD_FILE"] = str(installed)
    shipped = ocd.SHIPPED.read_text(encoding="utf-8")
    changed = tmp_path / "new.csv"
    # the same file with _ga said to be marketing
    lines = [line.replace(",Analytics,_ga,", ",Marketing,_ga,") for line in shipped.splitlines()]
    changed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = runner.invoke(args=["consent", "ocd-refresh", str(changed)])
    assert result.exit_code == 0, result.output
    assert "installed at" in result.output
    assert cookie_database().match_name("_ga")["category"] == "advertising"
    assert cookie_database().source == f"installed {installed}"
    assert (installed.parent / "open-cookie-database.LICENSE").is_file()

    for content, message in ((b"name,category\n_ga,Analytics\n", "missing column"),
                             (shipped.splitlines()[0].encode() + b"\n", "only 0 entries"),
                             (b"\xff\xfe\x00", "not UTF-8")):
        bad = tmp_path / "bad.csv"
        bad.write_bytes(content)
        result = runner.invoke(args=["consent", "ocd-refresh", str(bad)])
        assert result.exit_code != 0 and message in result.output, result.output
        assert cookie_database().match_name("_ga")["category"] == "advertising"  # kept
    result = runner.invoke(args=["consent", "ocd-refresh", str(tmp_path / "missing.csv")])
    assert result.exit_code != 0 and "cannot read" in result.output
