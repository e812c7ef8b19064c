"""Signature and payload helpers shared by the inbound adapters (marketplace notifications,
courier pushes). Pure.

Every reader of what a caller sends is total: each kind of check has ONE helper here, and every
adapter uses it, so a hostile value is refused with a reason (or compares false) and never
raises something unexpected:
- `same_signature`: signatures compared as bytes, whatever characters a header holds;
- `loads_json`: JSON, strict UTF-8, nesting at most MAX_JSON_DEPTH, no NaN/Infinity;
- `bounded_id` / `BoundedId` / `delivery_id`: a caller's id, non-empty and at most MAX_ID_BYTES
  in UTF-8 (as DynamoDB counts a key), so it can always be stored;
- `epoch_moment` / `EpochSeconds` / `sane_moment`: a time inside a sane window
  (EARLIEST..LATEST), with its zone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError

from chalicelib.core.errors import ApiError

M = TypeVar("M", bound=BaseModel)

# No platform nests its JSON more than a dozen levels; this is far beyond, and far below what
# would exhaust Python's recursion (a RecursionError is a 500, not the caller's 400).
MAX_JSON_DEPTH = 64
# Any id a caller gives us that may become (part of) a storage key. DynamoDB limits a partition
# key to 2,048 bytes; a split push's delivery is keyed source#delivery id#order id, so each part
# stays well within. Real ids are tens of bytes (UUIDs, 19-digit numbers, hashes).
MAX_ID_BYTES = 512
# Epoch times a platform may send for an order or a push: anything outside is garbage (or a
# unit mistake: 10**12 is milliseconds) and would overflow datetime arithmetic later.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _utf8(value: str | bytes) -> bytes:
    # surrogatepass: even a lone surrogate (which JSON "\ud800" can carry) has bytes.
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def same_signature(expected: str | bytes, given: str | bytes) -> bool:
    """Constant-time equality of two signatures as bytes: a header with any character (non-ASCII
    included, which `hmac.compare_digest` refuses for str) compares false, never raises."""
    return hmac.compare_digest(_utf8(expected), _utf8(given))


def loads_json(data: bytes | bytearray | str) -> Any:
    """JSON as a caller sent it: strict UTF-8 for bytes (RFC 8259; json.loads would also guess
    UTF-16/32), at most MAX_JSON_DEPTH levels of arrays and objects, no NaN or Infinity and no
    unpaired surrogate escape (neither is text any store or JSON parser downstream takes).
    Anything else is a ValueError naming the problem."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8: {exc}") from None
    else:
        text = data
    # Cheap first: a text with few brackets cannot nest deeply, and is parsed straight away.
    deep = text.count("[") + text.count("{") > MAX_JSON_DEPTH
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    if deep and _depth(value) > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    # An escape \uDxxx may be half of a surrogate pair, or a lone one.
    if ("\\ud" in text or "\\uD" in text) and not _all_text(value):
        raise ValueError("JSON text holds an unpaired surrogate escape")
    return value


def _all_text(value: Any) -> bool:
    """Every string (keys included) is encodable text, without recursion."""
    stack = [value]
    try:
        while stack:
            node = stack.pop()
            if isinstance(node, str):
                node.encode("utf-8")
            elif isinstance(node, dict):
                stack.extend(node.keys())
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    except UnicodeEncodeError:
        return False
    return True


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e400: too large for a float
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _depth(value: Any) -> int:
    """Nesting of arrays and objects, without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(
            node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children
                     if isinstance(child, dict | list))
    return deepest


def bounded_id(value: str, what: str = "id") -> str:
    """A caller's id that will be stored or keyed: non-empty, at most MAX_ID_BYTES in UTF-8
    (bytes, as DynamoDB counts a key). ValueError otherwise."""
    if not value:
        raise ValueError(f"{what} is empty")
    size = len(_utf8(value))
    if size > MAX_ID_BYTES:
        raise ValueError(f"{what} is {size} bytes; at most {MAX_ID_BYTES}")
    return value


BoundedId = Annotated[str, AfterValidator(bounded_id)]


def delivery_id(value: str, what: str = "delivery id") -> str:
    """The delivery id an adapter keys a notification by (the dedupe key), checked as
    `bounded_id`; a bad one is the caller's mistake: 400 `invalid_delivery_id`."""
    try:
        return bounded_id(value, what)
    except ValueError as exc:
        raise ApiError(400, "invalid_delivery_id", str(exc)) from None


def epoch_moment(seconds: float) -> datetime:
    """An epoch time in seconds as a UTC datetime, refused (ValueError) outside EARLIEST..LATEST
    (a non-number, NaN, infinity or an overflow included): it never raises anything else."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"not an epoch time: {seconds!r}")
    if not EARLIEST.timestamp() <= seconds < LATEST.timestamp():  # False for NaN
        raise ValueError(f"epoch time {seconds!r} is outside {EARLIEST.year}-{LATEST.year}")
    return datetime.fromtimestamp(seconds, UTC)


def _epoch_seconds(value: int) -> int:
    if value:  # 0: the platforms' "not set"
        epoch_moment(value)
    return value


# An epoch time in seconds as a platform sends it: 0 (not set) or inside the sane window.
EpochSeconds = Annotated[int, AfterValidator(_epoch_seconds)]


def sane_moment(moment: datetime) -> datetime:
    """A time an order carries: with its zone (a naive time cannot be compared with the next
    version's) and inside EARLIEST..LATEST (so converting zones and adding days cannot
    overflow). ValueError otherwise."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a time needs its zone")
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"{moment.isoformat()} is outside {EARLIEST.year}-{LATEST.year}")
    return moment

# The Standard Webhooks headers (https://www.standardwebhooks.com), all required.
STANDARD_WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def matches_base64_hmac(signature_b64: str, raw: bytes, secrets: Sequence[str]) -> bool:
    """True when `signature_b64` is base64(HMAC-SHA256(secret, raw)) for one of the secrets.

    Several secrets are tried so a secret can be rotated without rejecting in-flight deliveries.
    """
    try:
        given = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):  # also any non-ASCII character
        return False
    return any(same_signature(hmac_sha256(secret.encode(), raw), given) for secret in secrets)


def matches_hex(signature: str, raw: bytes, secrets: Sequence[str],
                sign: Callable[[str, bytes], str]) -> bool:
    """True when `signature` (hex, any case) is `sign(secret, raw)` for one of the secrets."""
    given = signature.strip().lower()
    return any(same_signature(sign(secret, raw), given) for secret in secrets)


def key_hmac_hex(app_key: str, app_secret: str, raw: bytes) -> str:
    """hex(HMAC-SHA256(app_secret, app_key + raw)): TikTok Shop's and Lazada's push signature."""
    return hmac.new(app_secret.encode("utf-8"), app_key.encode("utf-8") + raw,
                    hashlib.sha256).hexdigest()


def split_secret(secret: str, separator: str, form: str) -> tuple[str, str]:
    """A two-part secret as configured, e.g. "app_key:app_secret"; ValueError naming `form`."""
    first, sep, second = secret.partition(separator)
    if not (sep and first and second):
        raise ValueError(f"the secret must be {form!r}")
    return first, second


def sent_in_time(epoch_seconds: float, now: datetime, max_age: timedelta,
                 max_ahead: timedelta) -> bool:
    """A push's own timestamp is neither too old (a replay) nor too far ahead."""
    try:
        sent = epoch_moment(epoch_seconds)
    except ValueError:
        return False
    return now - max_age <= sent <= now + max_ahead


def standard_webhook_failure(headers: Mapping[str, str], raw: bytes,
                             secrets: Sequence[str]) -> str:
    """Empty when one secret verifies a Standard Webhooks delivery; otherwise the reason code.

    `headers` has lower-case names and carries every STANDARD_WEBHOOK_HEADERS value (callers
    answer `missing_signature` first). Verification is the `standardwebhooks` library's: HMAC-SHA256
    over `{id}.{timestamp}.{raw body}`, any `v1,` signature of the space-separated list, and a
    timestamp within 5 minutes of now. Reasons: "invalid_signature" (no secret verifies, garbled
    header, non-UTF-8 body) or "stale_or_invalid_timestamp".
    """
    # Imported here: only the Standard Webhooks routes need the library on a cold start.
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    wanted = {name: headers[name] for name in STANDARD_WEBHOOK_HEADERS}
    reason = "invalid_signature"
    for secret in secrets:
        try:
            Webhook(secret).verify(raw, wanted, json_parse=False)
            return ""
        except WebhookVerificationError as exc:
            if "timestamp" in str(exc) or "Headers" in str(exc):
                reason = "stale_or_invalid_timestamp"
        except (ValueError, UnicodeDecodeError):
            # The library raises these for a garbled signature header or a non-UTF-8 body.
            pass
    return reason


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = loads_json(raw)
    except ValueError as exc:
        raise ApiError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "malformed_json", "body must be a JSON object")
    return value


def validate_payload(model: type[M], value: Any) -> M:
    """Validate with pydantic; a failure is the caller's mistake, answered 422 with the fields."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors()[:20]
        ]
        raise ApiError(422, "invalid_payload", "payload failed validation",
                       problems=problems) from None
