"""What the warehouse and CS APIs take from their callers: the key (authenticated and
rate-limited), the JSON body, the ids in the path and the query. Imported by their views only,
so a webhook's cold start compiles none of it (chalicelib/api/__init__.py is the edge's part
every route shares)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from chalicelib.core.errors import ApiError, NotFound
from chalicelib.core.signatures import M, parse_json_object, validate_payload

if TYPE_CHECKING:
    from chalicelib.access.keys import Principal

# No request body of the APIs comes near it (5,000 shelf locations are about 700 KB).
MAX_JSON_BODY_BYTES = 1024 * 1024
# The ids we issue are far shorter; a longer one names nothing (and would be a key DynamoDB
# refuses: 2048 bytes for a partition key, 1024 for a sort key).
MAX_ID_BYTES = 128


def json_body(model: type[M], raw: bytes | None) -> M:
    """The body as `model`: 413 over MAX_JSON_BODY_BYTES, 400 `malformed_json` for what is
    not JSON (nested too deep, a lone surrogate no store can encode), 422 for what fails
    the model. No body is `{}`: a model whose fields all have defaults needs none."""
    if not raw:
        return validate_payload(model, {})
    if len(raw) > MAX_JSON_BODY_BYTES:
        raise ApiError(413, "payload_too_large",
                       f"the body is over {MAX_JSON_BODY_BYTES} bytes", limit=MAX_JSON_BODY_BYTES)
    value = parse_json_object(raw)
    if b"\\ud" in raw or b"\\uD" in raw:  # perhaps a surrogate (\\ud800-\\udfff)
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, "malformed_json", "body holds a lone UTF-16 surrogate "
                           "(\\ud800-\\udfff without its pair)") from None
    return validate_payload(model, value)


def path_id(value: str, what: str) -> str:
    """An id from the path: longer than any we issue, it names nothing (404 `<what>_not_found`)."""
    if not value or len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise NotFound(what)
    return value


def query_value(query: dict[str, str], name: str, reason: str) -> str | None:
    """A query parameter used as a key: at most MAX_ID_BYTES, or 400 `reason`."""
    value = query.get(name)
    if value is not None and len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise ApiError(400, reason, f"{name} is at most {MAX_ID_BYTES} bytes")
    return value


def source_address(request: Any) -> str:
    """The caller's address as API Gateway saw it (the local gateway says 127.0.0.1)."""
    identity = (getattr(request, "context", None) or {}).get("identity") or {}
    return str(identity.get("sourceIp") or "unknown")


def authenticate(request: Any) -> Principal:
    """The caller's principal, rate-limited: an address that keeps failing authentication is
    answered 429 before its next key is looked up; a known key, 429 once its bucket is empty."""
    from chalicelib.access import directory_store as directory
    from chalicelib.core import ratelimit

    address = source_address(request)
    ratelimit.check_failures(address)
    try:
        principal = directory.authenticate(request.headers)
    except ApiError as exc:
        if exc.status == 401:
            ratelimit.record_failure(address)
        raise
    ratelimit.check(principal.key_id)
    return principal
