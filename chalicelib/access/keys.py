"""API keys: personal (CS staff) or per partner, stored only as SHA-256 hashes.

Keys are random 256-bit tokens, so a plain hash is the right store (no password stretching
needed). A partner or person may hold several active keys: rotate by issuing a new key, then
revoking the old one. Lookups are cached briefly per process; a revocation takes effect within
`KEY_CACHE_SECONDS`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chalicelib.core.errors import ApiError
from chalicelib.core.settings import settings

KEY_PREFIX = "obk_"


class Role(StrEnum):
    PARTNER = "partner"
    READ_ONLY = "read_only"
    BACK_OFFICE = "back_office"
    ADMIN = "admin"


STAFF_RANK = {Role.READ_ONLY: 1, Role.BACK_OFFICE: 2, Role.ADMIN: 3}


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: Literal["partner", "staff"]
    id: str
    role: Role
    key_id: str


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_from_headers(headers: Mapping[str, str]) -> str:
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return headers.get("x-api-key", "").strip()


_cache: dict[str, tuple[float, Principal | None]] = {}


def authenticate(headers: Mapping[str, str]) -> Principal:
    from chalicelib.access import directory_store as directory

    key = key_from_headers(headers)
    if not key:
        raise ApiError(401, "missing_credentials",
                       "send your API key as 'Authorization: Bearer <key>'")
    digest = hash_key(key)
    cached = _cache.get(digest)
    if cached and cached[0] > time.monotonic():
        principal = cached[1]
    else:
        principal = directory.principal_for(digest)
        _cache[digest] = (time.monotonic() + settings().key_cache_seconds, principal)
    if principal is None:
        raise ApiError(401, "invalid_credentials", "unknown or revoked API key")
    return principal


def require_partner(principal: Principal) -> str:
    if principal.kind != "partner":
        raise ApiError(403, "forbidden", "this API is for warehouse partners")
    return principal.id


def require_staff(principal: Principal, at_least: Role) -> Principal:
    if principal.kind != "staff" or STAFF_RANK.get(principal.role, 0) < STAFF_RANK[at_least]:
        raise ApiError(403, "forbidden", f"needs the {at_least} role or higher")
    return principal


def forget() -> None:
    _cache.clear()
