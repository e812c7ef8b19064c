"""What a console page takes from its request (the session, the form, the CSRF token, the
language) and gives back (HTML with its security headers, or a redirect). Errors become a page
in the visitor's language with the status the APIs would give (chalicelib.api.guarded)."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any, ParamSpec
from urllib.parse import parse_qs, quote, urlsplit

from chalice.app import Response

from chalicelib.access import sessions
from chalicelib.access.keys import Role
from chalicelib.access.sessions import Session
from chalicelib.api import raw_body
from chalicelib.console import uploads
from chalicelib.console.i18n import language_of
from chalicelib.console.render import render
from chalicelib.console.uploads import Upload
from chalicelib.core.clock import utcnow
from chalicelib.core.errors import ApiError
from chalicelib.core.settings import settings
from chalicelib.cs.channels import Language

P = ParamSpec("P")

MAX_FORM_BYTES = 64 * 1024  # an address and a note are a few hundred bytes
SESSION_HOURS = 12  # a shift, and then some: sign in again the next day
# No script runs on these pages, none is loaded and no other site may frame them.
SECURITY_HEADERS: dict[str, str | list[str]] = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
ERROR_WORDS = {401: "bad_key", 403: "forbidden", 404: "not_found", 413: "too_large"}


class SignInNeeded(ApiError):
    """No live session: the browser goes to the sign-in page, and comes back after."""

    def __init__(self, back_to: str) -> None:
        super().__init__(303, "sign_in_needed", location=back_to)


@cache
def root() -> str:
    """The console's base path: the path of the stage's CONSOLE_URL (API Gateway's stage
    name, `/api`, when the stage has no domain of its own; nothing locally)."""
    return urlsplit(settings().console_url).path.rstrip("/")


def href(path: str) -> str:
    return root() + path


@dataclass
class Visit:
    """One request to the console: who (if signed in), in which language, with what."""

    request: Any
    session: Session | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    set_cookies: list[str] = field(default_factory=list)
    fields: dict[str, str] | None = None
    files: dict[str, Upload] = field(default_factory=dict)  # a multipart form's files

    @property
    def query(self) -> dict[str, str]:
        return {k: v for k, v in (self.request.query_params or {}).items() if len(v) <= 200}

    @property
    def language(self) -> Language:
        return language_of(self.query.get("lang") or self.cookies.get(sessions.LANGUAGE_COOKIE))

    def form(self) -> dict[str, str]:
        """The posted form's fields (the last value of each); 413 for an oversized body."""
        if self.fields is None:
            self.fields = self._parse()
        return self.fields

    def _parse(self) -> dict[str, str]:
        body = raw_body(self.request) or b""
        content_type = sessions.header(self.request.headers or {}, "content-type") or ""
        if uploads.is_multipart(content_type):  # a file's form: its own cap (uploads.py)
            posted = uploads.parse(body, content_type)
            self.files = posted.files
            return posted.fields
        if len(body) > MAX_FORM_BYTES:
            raise ApiError(413, "payload_too_large", f"a form is at most {MAX_FORM_BYTES} bytes")
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "malformed_form", "the form is not UTF-8 form data") from None
        return {name: values[-1] for name, values in fields.items()}

    def page(self, template: str, status: int = 200, **context: Any) -> Response:
        html = render(template, self.language, session=self.session, root=root(),
                      path=self.request.context.get("path", ""), query_values=self.query,
                      csrf=self.session.csrf if self.session else "", **context)
        return Response(body=html, status_code=status, headers=self._headers())

    def redirect(self, location: str) -> Response:
        return Response(body="", status_code=303,
                        headers={**self._headers(), "Location": location})

    def _headers(self) -> dict[str, str | list[str]]:
        headers = dict(SECURITY_HEADERS)
        chosen = self.query.get("lang")
        if chosen in (Language.ZH.value, Language.EN.value):
            self.set_cookies.append(sessions.set_cookie(sessions.LANGUAGE_COOKIE, chosen,
                                                        365 * 86400, path=root() or "/"))
        if self.set_cookies:
            headers["Set-Cookie"] = list(dict.fromkeys(self.set_cookies))
        return headers


# The request being served, for its error page (its language, its session).
_visit: ContextVar[Visit | None] = ContextVar("console_visit", default=None)


def visit(request: Any) -> Visit:
    current = Visit(request=request,
                    cookies=sessions.cookies(sessions.header(request.headers or {}, "cookie")))
    _visit.set(current)
    return current


def signed_in(request: Any, at_least: Role = Role.READ_ONLY) -> Visit:
    """The visit of a signed-in person whose key is still active and whose role is at least
    `at_least`; a form post must carry the session's CSRF token. Else: to the sign-in page
    (no session), 403 (a role too low, a missing or wrong token)."""
    from chalicelib.access import directory_store, session_store

    current = visit(request)
    token = current.cookies.get(sessions.SESSION_COOKIE, "")
    now = utcnow()
    session = session_store.get(sessions.token_hash(token), now) if token else None
    if session is not None and directory_store.known_principal(session.key_hash) is None:
        session_store.end(session.token_hash)  # the key was revoked: so is its session
        session = None
    if session is None:
        raise SignInNeeded(href("/console/sign-in") + "?next=" + quote(_here(request), safe=""))
    current.session = session
    if not session.can(at_least):
        raise ApiError(403, "forbidden", f"needs the {at_least} role or higher")
    if request.method == "POST" and not sessions.same_token(
            session.csrf, current.form().get("csrf_token")):
        raise ApiError(403, "csrf_failed", "the form is stale or not ours: reload the page")
    return current


def _here(request: Any) -> str:
    """Where the visitor was going, to come back after signing in (our own path only)."""
    path = href(request.context.get("path", "/console/cases")) if request.method == "GET" \
        else href("/console/cases")
    query = request.query_params or {}
    return path + ("?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in query.items())
                   if query else "")


def safe_next(value: str | None) -> str:
    """A `next` that stays on this console (no other host, no scheme, no `//`)."""
    if value and value.startswith(href("/console")) and not value.startswith("//") \
            and "\\" not in value:
        return value
    return href("/console/cases")


def session_lifetime() -> timedelta:
    return timedelta(hours=SESSION_HOURS)


def error_page(error: ApiError) -> Response:
    """An error as a page in the visitor's language, with the APIs' status; a missing
    session as the redirect to the sign-in page."""
    if isinstance(error, SignInNeeded):
        return Response(body="", status_code=303,
                        headers={**SECURITY_HEADERS, "Location": error.details["location"]})
    current = _visit.get() or Visit(request=None)
    headers = dict(SECURITY_HEADERS)
    if error.status in (429, 503) and "retry_after" in error.details:
        headers["Retry-After"] = str(error.details["retry_after"])
    html = render("error.html", current.language, session=current.session, root=root(),
                  path="", query_values={},
                  csrf=current.session.csrf if current.session else "", error=error,
                  word=ERROR_WORDS.get(error.status, "try_again"))
    return Response(body=html, status_code=error.status, headers=headers)


def form_value(fields: Mapping[str, str], name: str, limit: int = 2000) -> str:
    value = fields.get(name, "").strip()
    if len(value) > limit:
        raise ApiError(400, "invalid_form", f"{name} is at most {limit} characters")
    return value
