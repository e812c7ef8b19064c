"""API keys: personal (CS staff) or per partner, stored only as SHA-256 hashes.

Keys are random 256-bit tokens, so a plain hash is the right store (no password stretching
needed). A partner or person may hold several active keys: rotate by issuing a new key, then
revoking the old one. Pure: the lookup is chalicelib/access/directory_store.py's.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chalicelib.core.errors import ApiError

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


def require_partner(principal: Principal) -> str:
    if principal.kind != "partner":
        raise ApiError(403, "forbidden", "this API is for warehouse partners")
    return principal.id


def require_staff(principal: Principal, at_least: Role) -> Principal:
    if principal.kind != "staff" or STAFF_RANK.get(principal.role, 0) < STAFF_RANK[at_least]:
        raise ApiError(403, "forbidden", f"needs the {at_least} role or higher")
    return principal
