"""Console sessions: a CS person signs in with their personal key once and the browser holds a
random session token in a cookie; the key itself never reaches a page or a cookie.

Server-side sessions (chalicelib/access/session_store.py keeps them by the token's hash): an
entry can be ended (sign-out) and is checked against its key on every request, so the session of
a revoked key ends with the key (within the key cache's minute, as for the API). The cookie is
HttpOnly (no script reads it), Secure (HTTPS only; browsers treat http://localhost as secure, so
the local stack works), SameSite=Lax (another site's form posts carry no session) and expires
with the session. Every form carries the session's CSRF token, compared in constant time; the
sign-in form, before there is a session, a token doubled in a short-lived cookie. Pure.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from http.cookies import CookieError, SimpleCookie

from pydantic import BaseModel, ConfigDict

from chalicelib.access.keys import STAFF_RANK, Principal, Role

SESSION_COOKIE = "obk_session"
SIGN_IN_COOKIE = "obk_sign_in"  # the sign-in form's CSRF token, before a session exists
LANGUAGE_COOKIE = "lang"
SIGN_IN_SECONDS = 30 * 60


class Session(BaseModel):
    model_config = ConfigDict(frozen=True)

    token_hash: str
    key_hash: str  # the key it was opened with: its revocation ends the session
    staff_id: str
    role: Role
    csrf: str
    created_at: datetime
    expires_at: datetime

    def can(self, at_least: Role) -> bool:
        return STAFF_RANK.get(self.role, 0) >= STAFF_RANK[at_least]

    def live(self, now: datetime) -> bool:
        return now < self.expires_at


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(principal: Principal, key_hash: str, now: datetime,
                 lifetime: timedelta) -> tuple[str, Session]:
    """A new session for a staff principal: the token for the cookie, and what is stored."""
    token = secrets.token_urlsafe(32)
    return token, Session(token_hash=token_hash(token), key_hash=key_hash,
                          staff_id=principal.id, role=principal.role,
                          csrf=secrets.token_urlsafe(24), created_at=now,
                          expires_at=now + lifetime)


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def same_token(expected: str, given: str | None) -> bool:
    """Constant-time comparison; an empty expectation never matches."""
    return bool(expected) and given is not None and hmac.compare_digest(
        expected.encode(), given.encode())


def cookies(header: str | None) -> dict[str, str]:
    """The Cookie header's values by name; a malformed header is no cookie at all."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header or "")
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def set_cookie(name: str, value: str, max_age: int, *, http_only: bool = True,
               path: str = "/") -> str:
    """A Set-Cookie value; max_age 0 ends the cookie."""
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "Secure",
             "SameSite=Lax"]
    if http_only:
        parts.append("HttpOnly")
    return "; ".join(parts)


def end_cookie(name: str, path: str = "/") -> str:
    return set_cookie(name, "", 0, path=path)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header by name, whatever its case (API Gateway and Chalice's local gateway
    differ)."""
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)
