"""Shop access that expires: what a platform's refresh answer gives (`Tokens`), when a shop's
stored access token is due for renewal, and how the renewed tokens are kept in the shop's
credentials (its SSM parameter, chalicelib/marketplaces/credentials_store.py). Pure.

A platform whose access tokens expire declares `refresh` (contract.TokenRefresh): its pure
part builds the refresh request from the stored refresh token and reads the answer into
`Tokens`. The refresh tokens of these platforms rotate: the one sent is spent (Shopee: "can be
used once only"; Shopify replaces it on every use), so the answer's new refresh token must be
written back before anything else, and two refreshers must never send the same one (the I/O
side, chalicelib/flows/shop_access.py, holds a lease per shop).

Kept beside the shop's other credentials, as text (every credential is a string):
- the access token under the platform's own name (`access_token`; Taobao's `session`);
- `access_token_expires_at`: when it stops working (ISO 8601, UTC);
- `refresh_token`, and `refresh_token_expires_at` when the platform says (else absent).
A shop whose credentials carry no refresh token is used as its credentials say (a token set by
hand, or a platform account whose tokens do not expire); one with a refresh token but no known
expiry is renewed at its first use, which teaches us the expiry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.marketplaces.calls import PlatformError

ACCESS_EXPIRES = "access_token_expires_at"
REFRESH_TOKEN = "refresh_token"
REFRESH_EXPIRES = "refresh_token_expires_at"
# A refresh token with less than this left: the seller must authorise us again before it
# ends (CS is told once; every platform's own warning comes 48 h ahead or less).
REAUTHORISE_WITHIN = timedelta(days=7)
_EPOCH_FLOOR = 10**9  # a number this large is a moment (unix seconds), not a lifetime
_EPOCH_MILLIS = 10**12  # ... and this large, in milliseconds


class Tokens(BaseModel):
    """A refresh answer: the new access token and when it ends, the new refresh token (it
    replaces the one sent) and when it ends, where the platform says."""

    model_config = ConfigDict(frozen=True)

    access_token: str = Field(min_length=1, repr=False)
    access_expires_at: datetime
    refresh_token: str = Field(min_length=1, repr=False)
    refresh_expires_at: datetime | None = None


class RefreshRefused(PlatformError):
    """The platform refused the refresh token for good (expired, spent, revoked, the shop's
    authorisation ended or was cancelled): only the seller authorising our app again, in the
    platform's seller centre, gives a new one. Not retryable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, False)


def expires_at(value: Any, now: datetime) -> datetime:
    """When a token ends, from what a platform sends: a lifetime in seconds from `now`, or a
    moment (unix seconds or milliseconds, as TikTok Shop and some Douyin answers send it).
    ValueError for anything else (a negative or non-numeric value)."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a token lifetime: {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"not a token lifetime: {value!r}") from None
    if number < 0:
        raise ValueError(f"not a token lifetime: {value!r}")
    if number >= _EPOCH_MILLIS:
        return datetime.fromtimestamp(number / 1000, UTC)
    if number >= _EPOCH_FLOOR:
        return datetime.fromtimestamp(number, UTC)
    return now + timedelta(seconds=number)


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None  # unreadable: treated as unknown (renewed at first use)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def access_expiry(credentials: Mapping[str, str]) -> datetime | None:
    return _moment(credentials.get(ACCESS_EXPIRES))


def refresh_expiry(credentials: Mapping[str, str]) -> datetime | None:
    return _moment(credentials.get(REFRESH_EXPIRES))


def renewable(credentials: Mapping[str, str]) -> bool:
    """The credentials carry a refresh token (else they are used as they are)."""
    return bool(credentials.get(REFRESH_TOKEN, "").strip())


def due(credentials: Mapping[str, str], now: datetime, ahead: timedelta) -> bool:
    """Renew now: the access token ends within `ahead`, or when it ends is not known."""
    ends = access_expiry(credentials)
    return ends is None or ends - ahead <= now


def usable(credentials: Mapping[str, str], now: datetime) -> bool:
    """The stored access token still works (known, not yet ended)."""
    ends = access_expiry(credentials)
    return ends is not None and now < ends


def stored(credentials: Mapping[str, str], tokens: Tokens, access_key: str,
           now: datetime) -> dict[str, str]:
    """The shop's credentials with the renewed tokens in place (everything else kept)."""
    kept = {k: v for k, v in credentials.items() if k != REFRESH_EXPIRES}
    renewed = {
        **kept,
        access_key: tokens.access_token,
        ACCESS_EXPIRES: _iso(tokens.access_expires_at),
        REFRESH_TOKEN: tokens.refresh_token,
        "tokens_refreshed_at": _iso(now),
    }
    if tokens.refresh_expires_at is not None:
        renewed[REFRESH_EXPIRES] = _iso(tokens.refresh_expires_at)
    return renewed


def ending(credentials: Mapping[str, str], now: datetime) -> datetime | None:
    """When the refresh token ends, if that is within REAUTHORISE_WITHIN (else None)."""
    ends = refresh_expiry(credentials)
    return ends if ends is not None and ends - REAUTHORISE_WITHIN <= now else None


def fingerprint(token: str) -> str:
    """Recognises a refresh token without keeping it (a refused one is not sent again)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:24]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")
