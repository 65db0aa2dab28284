"""One-click unsubscribe (RFC 8058): the signed URL in List-Unsubscribe.

POST with the body `List-Unsubscribe=One-Click` (what mail providers send, without
cookies) opts out at once and answers 200 without a redirect. GET (a person, or a link
scanner, opening the URL) only shows a confirmation page whose button sends that POST.
The token in the URL is the credential, so the POST is exempt from CSRF tokens and the
pages set no cookie.
"""
from __future__ import annotations

from flask import Blueprint, make_response, render_template, request

from ..channels import read_unsubscribe_token, unsubscribe
from ..csrf import exempt, protect
from ..errors import DomainError
from ..i18n import SUPPORTED, page_strings, pick_locale
from .common import request_context, token_page

bp = protect(Blueprint("unsubscribe", __name__))


@bp.after_request
def _private(response):
    # Every answer at a link's URL, a refusal or an invalid form too: the URL carries it.
    return token_page(response)

ONE_CLICK = "One-Click"


class NotOneClick(DomainError):
    """A POST without the RFC 8058 body."""

    status = 400
    title = "Not a one-click unsubscribe request"


def _strings(site) -> tuple[str, dict]:
    available = [loc for loc in site.locales if loc in SUPPORTED] or ["en"]
    locale = pick_locale(request.args.get("lang"), available, site.default_locale,
                         request.headers.get("Accept-Language"))
    return locale, page_strings(site, locale)


@bp.get("/unsubscribe/<site_key>/<token>")
def confirm_page(site_key: str, token: str):
    """Ask the recipient to confirm; nothing changes on GET."""
    ticket = read_unsubscribe_token(site_key, token)
    locale, strings = _strings(ticket.site)
    html = render_template("unsubscribe.html", site=ticket.site, channel=ticket.channel,
                           t=strings, lang=locale, done=False, changed=False,
                           action=request.path)
    return token_page(make_response(html))


@exempt
@bp.post("/unsubscribe/<site_key>/<token>")
def one_click(site_key: str, token: str):
    """Opt out of the token's channel now (RFC 8058 one-click, or the confirm button)."""
    if request.form.get("List-Unsubscribe") != ONE_CLICK:
        raise NotOneClick("Send the body List-Unsubscribe=One-Click "
                          "(application/x-www-form-urlencoded or multipart/form-data).")
    via = "page" if request.form.get("via") == "page" else "one-click"
    ticket, event = unsubscribe(site_key, token, request_context(), via=via)
    locale, strings = _strings(ticket.site)
    html = render_template("unsubscribe.html", site=ticket.site, channel=ticket.channel,
                           t=strings, lang=locale, done=True, changed=event is not None,
                           action=request.path)
    return token_page(make_response(html, 200))
