"""Courier tracking providers, one module each, loaded only when a request needs one.

Each provider module offers a pure part and a thin I/O part:
- `read_push(headers, raw, secret) -> TrackingPush`: verify the push over what the provider signed
  and normalise it (raises ApiError 401 invalid/missing signature, 400 malformed push);
- `push_reply() -> PushReply`: the exact answer the provider expects;
- code tables mapping provider codes onto the two axes of `chalicelib.tracking.model`;
- a client class (`requests`) with timeouts, retries with backoff and a per-process rate limit.
Adding a provider is one module plus its fixtures.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Literal, NamedTuple, Protocol, cast

from pydantic import BaseModel, ConfigDict

from chalicelib.tracking.model import ExceptionKind, ShipmentStatus, TrackingEvent

# Provider name -> module.
_MODULES = {
    "kuaidi100": "chalicelib.tracking.couriers.kuaidi100",
    "17track": "chalicelib.tracking.couriers.seventeen_track",
    "webhook": "chalicelib.tracking.couriers.standard_webhooks",
}


class Mapped(NamedTuple):
    """What one provider code means on the two axes."""

    status: ShipmentStatus
    exceptions: frozenset[ExceptionKind] = frozenset()
    customs: bool = False


class TrackingPush(BaseModel):
    """A verified push, normalised: the scans it carried and what the provider is doing next."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    carrier_code: str
    tracking_number: str
    events: tuple[TrackingEvent, ...] = ()
    # active: the provider keeps pushing; finished: it stopped because the parcel is done;
    # aborted: it gave up (no data / no change) and the number must be re-subscribed or polled.
    monitoring: Literal["active", "finished", "aborted"] = "active"
    message: str = ""
    resubscribe_after: timedelta | None = None
    skipped: int = 0  # lines the provider sent that could not be read (kept out, counted)


class PushReply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    status: int = 200
    content_type: str = "application/json"
    body: str = ""


class Adapter(Protocol):
    NAME: str

    def read_push(self, headers: Mapping[str, str], raw: bytes, secret: str) -> TrackingPush: ...

    def push_reply(self) -> PushReply: ...


def adapter_for(provider: str) -> Adapter:
    try:
        module_name = _MODULES[provider]
    except KeyError:
        raise LookupError(f"no courier adapter for provider {provider!r}") from None
    return cast(Adapter, importlib.import_module(module_name))


def known_providers() -> frozenset[str]:
    return frozenset(_MODULES)
