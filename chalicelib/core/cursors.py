"""Page cursors: opaque, tamper-evident, bound to the list and the query they came from. Pure.

Every list the APIs answer comes a page at a time, and a page's `next_cursor` says where the
next one starts (a DynamoDB key, or one per partition of a merged listing). A cursor is
`<payload>.<check>`, both URL-safe base64 without padding: the payload is that position as
JSON; the check is the first 16 bytes of SHA-256 over a version tag, the list's name, its
scope (whose list, and every filter of the query) and the payload. `decode` refuses
(ValueError, the API's 400 `invalid_cursor`) anything it did not make: garbage, a changed
payload or check, a cursor of another list, caller or filter. Its reader then checks the
position against what the query itself may read (the caller's partition, the filter's values),
so a cursor can never reach beyond the query, and DynamoDB is never sent a key it would refuse.

The check carries no secret key: a key would be one more secret every API function reads (and
a rotation would break every cursor in flight), while what a cursor could do if forged is
already bounded by that second check. It makes a cursor's contents tamper-evident to a client,
and the format ours to change (the version tag).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

VERSION = b"order-backbone cursor v1"
MAX_CURSOR = 2048  # characters: ours are a few hundred
MAX_KEY_VALUE = 1024  # characters of one key attribute (ids and times are far shorter)
_CHECK_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _check(kind: str, scope: Sequence[str], payload: bytes) -> bytes:
    digest = hashlib.sha256(VERSION)
    for part in (kind, *scope):
        encoded = part.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(4, "big") + encoded)
    digest.update(payload)
    return digest.digest()[:_CHECK_BYTES]


def encode(kind: str, scope: Sequence[str], position: Any) -> str:
    """The cursor of `position` in the list `kind` for the query `scope`."""
    payload = json.dumps(position, separators=(",", ":"), sort_keys=True,
                         ensure_ascii=True).encode()
    return f"{_b64(payload)}.{_b64(_check(kind, scope, payload))}"


def decode(cursor: str, kind: str, scope: Sequence[str]) -> Any:
    """The position a cursor of `encode(kind, scope, ...)` holds; ValueError for any other."""
    if not cursor or len(cursor) > MAX_CURSOR or cursor.count(".") != 1:
        raise ValueError("not a cursor")
    payload_text, check_text = cursor.split(".")
    try:
        payload, check = _unb64(payload_text), _unb64(check_text)
    except (binascii.Error, ValueError):
        raise ValueError("not a cursor") from None
    # Canonical text only: a last character whose spare bits differ decodes to the same bytes.
    if (_b64(payload) != payload_text or _b64(check) != check_text
            or len(check) != _CHECK_BYTES or check != _check(kind, scope, payload)):
        raise ValueError("a cursor of another list, or changed")
    try:
        return json.loads(payload)
    except ValueError:
        raise ValueError("not a cursor") from None


def key(value: Any, names: frozenset[str], fixed: Mapping[str, str] | None = None,
        prefixes: Mapping[str, str] | None = None) -> dict[str, str]:
    """A DynamoDB key a cursor carried, as plain strings: exactly the attributes `names`, each
    a non-empty string DynamoDB takes, those in `fixed` equal to the query's own values and
    those in `prefixes` starting as ours do. ValueError for anything else."""
    if not (isinstance(value, dict) and set(value) == names
            and all(isinstance(v, str) and 0 < len(v) <= MAX_KEY_VALUE for v in value.values())):
        raise ValueError("not a key of this list")
    if any(value[name] != expected for name, expected in (fixed or {}).items()):
        raise ValueError("a key of another query")
    if any(not value[name].startswith(prefix) for name, prefix in (prefixes or {}).items()):
        raise ValueError("not a key of this list")
    return dict(value)


def fitting(documents: Sequence[Any], max_bytes: int) -> int:
    """How many of `documents` (JSON values, in order) one answer can carry within `max_bytes`
    of JSON, at least one (a single document is as large as its item allows)."""
    total = 0
    for n, document in enumerate(documents):
        total += len(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass")) + 1
        if total > max_bytes and n > 0:
            return n
    return len(documents)
