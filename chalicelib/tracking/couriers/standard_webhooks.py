"""Any other aggregator, or a courier's own system, pushing tracking in OUR vocabulary.

Signature: the Standard Webhooks scheme (https://www.standardwebhooks.com), verified exactly as
for the marketplaces (`chalicelib.core.signatures.standard_webhook_failure`, the pinned
`standardwebhooks` library): headers `webhook-id`, `webhook-timestamp` (Unix seconds, refused
more than 5 minutes off), `webhook-signature` (`v1,<base64>`, a space-separated list while the
sender rotates its key) over `{webhook-id}.{webhook-timestamp}.{raw body}`, HMAC-SHA256 with the
base64-decoded `whsec_` secret. `secret` may hold several whitespace-separated `whsec_` secrets
so that we can rotate ours too: any one of them verifying is enough.

Errors: no / empty Standard Webhooks header -> 401 `missing_signature` (details.missing names
them); no secret verifies -> 401 `invalid_signature`; timestamp unreadable or more than 5 minutes
off -> 401 `stale_or_invalid_timestamp` (the marketplace adapter's reason for the same scheme);
body not a UTF-8 JSON object -> 400 `malformed_json`; schema not met -> 422 `invalid_payload`
(details.problems lists the fields).

Payload, version 1 (unknown envelope fields are ignored; `data` and the events are strict):

    {
      "type": "tracking.updated",                 required, the only type
      "version": 1,                               optional, 1 when absent; other values -> 422
      "timestamp": "2026-11-20T08:16:02Z",        optional, when the sender sent it (with a zone)
      "data": {
        "carrier_code": "STO",                    required, our code, 1-32 (upper-cased here)
        "tracking_number": "773...",              required, 1-64 characters
        "monitoring": "active",                   active | finished | aborted, default active
        "message": "",                            optional free text
        "events": [                               0-500 scans, any order
          {"occurred_at": "2026-11-20T08:15:00+08:00",   required, must carry a zone
           "status": "out_for_delivery",                 required, a ShipmentStatus value
           "exceptions": ["delivery_failed"],            optional, ExceptionKind values
           "customs": false,                             optional, the scan is in customs
           "code": "provider's own code",                optional, kept as raw_code
           "description": "...", "location": "..."}      optional
        ]
      }
    }

`monitoring`: active = the sender keeps pushing; finished = it stopped because the parcel is
done; aborted = it gave up and we must poll or re-subscribe elsewhere. An event's `raw_code` is
its `code`, or its status when it has none, so the event id (which hashes the raw code) tells a
corrected status apart from a repeat. The dedupe key of a delivery is the `webhook-id` header:
`TrackingPush` has no field for it, so `delivery_id(headers)` gives it to the caller.

`StandardWebhooks` is the provider (chalicelib.tracking.couriers.Provider): it implements no
`subscribe` or `query`, so a parcel it feeds is never subscribed or polled, only judged.

The reply is 200 `{"ok":true}`: Standard Webhooks senders take any 2xx as delivered, and a JSON
body keeps this reply like the other providers' (a 204 would need a renderer without a body or
content type).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from chalicelib.core.errors import ApiError
from chalicelib.core.signatures import (
    STANDARD_WEBHOOK_HEADERS,
    parse_json_object,
    standard_webhook_failure,
    validate_payload,
)
from chalicelib.tracking.couriers import Provider, PushReply, TrackingPush
from chalicelib.tracking.model import ExceptionKind, ShipmentStatus, TrackingEvent

NAME = "webhook"
SCHEMA_VERSION: Final = 1
MAX_EVENTS = 500
_SECRET_PREFIX = "whsec_"


class PushedEvent(BaseModel):
    """One scan as the sender writes it, in our vocabulary."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    occurred_at: AwareDatetime
    status: ShipmentStatus
    exceptions: tuple[ExceptionKind, ...] = ()
    customs: bool = False
    code: str = ""
    description: str = ""
    location: str = ""


class TrackingData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    carrier_code: str = Field(min_length=1, max_length=32)
    tracking_number: str = Field(min_length=1, max_length=64)
    monitoring: Literal["active", "finished", "aborted"] = "active"
    message: str = ""
    events: tuple[PushedEvent, ...] = Field(default=(), max_length=MAX_EVENTS)

    @field_validator("carrier_code")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["tracking.updated"]
    version: Literal[1] = SCHEMA_VERSION
    timestamp: AwareDatetime | None = None
    data: TrackingData

    def to_tracking_push(self) -> TrackingPush:
        data = self.data
        events = tuple(
            TrackingEvent(provider=NAME, carrier_code=data.carrier_code,
                          tracking_number=data.tracking_number, occurred_at=e.occurred_at,
                          status=e.status, exceptions=e.exceptions,
                          raw_code=e.code or e.status.value, description=e.description,
                          location=e.location, customs=e.customs)
            for e in sorted(data.events, key=lambda e: e.occurred_at, reverse=True))
        return TrackingPush(provider=NAME, carrier_code=data.carrier_code,
                            tracking_number=data.tracking_number, events=events,
                            monitoring=data.monitoring, message=data.message)


def secrets_of(secret: str) -> tuple[str, ...]:
    """The usable secrets in `secret` (whitespace-separated; an empty key is never one)."""
    return tuple(s for s in secret.split() if _key_bytes(s))


def _key_bytes(secret: str) -> bytes:
    # As the library reads it: drop the prefix, base64 with padding added.
    try:
        return base64.b64decode(secret.removeprefix(_SECRET_PREFIX) + "==")
    except (binascii.Error, ValueError):
        return b""


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def delivery_id(headers: Mapping[str, str]) -> str:
    """The sender's `webhook-id`: the same on every retry of one delivery (the dedupe key)."""
    return _lower(headers).get("webhook-id", "").strip()


def parse_push(raw: bytes) -> Envelope:
    """Read a (verified) body: 400 `malformed_json`, 422 `invalid_payload`."""
    return validate_payload(Envelope, parse_json_object(raw))


def read_push(headers: Mapping[str, str], raw: bytes, secret: str) -> TrackingPush:
    """`StandardWebhooks.read_push`: verify the signature over the raw bytes, then read."""
    lowered = _lower(headers)
    missing = [name for name in STANDARD_WEBHOOK_HEADERS if not lowered.get(name, "").strip()]
    if missing:
        raise ApiError(401, "missing_signature", "Standard Webhooks headers are required",
                       missing=missing)
    reason = standard_webhook_failure(lowered, raw, secrets_of(secret))
    if reason:
        raise ApiError(401, reason, "webhook signature verification failed")
    return parse_push(raw).to_tracking_push()


def push_reply() -> PushReply:
    return PushReply(status=200, content_type="application/json",
                     body=json.dumps({"ok": True}, separators=(",", ":")))


class StandardWebhooks(Provider):
    """An aggregator pushing on its own (the account's secrets are its `whsec_` keys): nothing
    to subscribe or ask, so the watch only judges against the clock between its pushes."""

    name = NAME
    read_push = staticmethod(read_push)
    push_reply = staticmethod(push_reply)
