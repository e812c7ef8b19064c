"""Signature and payload helpers shared by the inbound adapters. Pure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from chalicelib.core.errors import ApiError

M = TypeVar("M", bound=BaseModel)

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
    except (binascii.Error, ValueError):
        return False
    return any(
        hmac.compare_digest(hmac_sha256(secret.encode(), raw), given) for secret in secrets
    )


def matches_hex(signature: str, raw: bytes, secrets: Sequence[str],
                sign: Callable[[str, bytes], str]) -> bool:
    """True when `signature` (hex, any case) is `sign(secret, raw)` for one of the secrets."""
    given = signature.strip().lower().encode("utf-8")
    return any(hmac.compare_digest(sign(secret, raw).encode("ascii"), given)
               for secret in secrets)


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
        sent = datetime.fromtimestamp(epoch_seconds, UTC)
    except (OverflowError, OSError, ValueError):
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


# Deeper than any payload we take (marketplaces' orders nest about 8 levels; DynamoDB stores 32);
# json.loads recurses once per level, so 10,000 levels would be a RecursionError, not an answer.
MAX_JSON_DEPTH = 64

# A string from its opening quote to its closing one (or the end of an unterminated one): it
# always matches where it starts, so scanning is linear whatever the text. (Patterns compile on
# first use, in re's own cache: a cold start should not pay for them before it parses.)
_JSON_STRING = r'(?s)"(?:[^"\\]+|\\.)*"?'
_JSON_NESTING = r"[\[\]{}]"


def loads_json(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads, refusing nesting deeper than `max_depth` before parsing; ValueError for
    anything that is not JSON (bytes must be strict UTF-8, RFC 8259: json.loads would also take
    UTF-16/32 bytes). UnicodeDecodeError and json.JSONDecodeError are ValueErrors too."""
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    if len(text) > 2 * max_depth:  # shallower texts cannot be too deep
        depth = 0
        for mark in re.findall(_JSON_NESTING, re.sub(_JSON_STRING, "", text)):
            depth += 1 if mark in "[{" else -1
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
    return json.loads(text)


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
