"""Courier tracking providers, one module each, loaded only when a request needs one.

Each provider module offers a pure part and a thin I/O part:
- `read_push(headers, raw, secret) -> TrackingPush`: verify the push over what the provider signed
  and normalise it (raises ApiError 401 invalid/missing signature, 400 malformed push);
- `push_reply() -> PushReply`: the exact answer the provider expects;
- code tables mapping provider codes onto the two axes of `chalicelib.tracking`;
- a client class (`requests`) with timeouts, retries with backoff and a per-process rate limit.
Adding a provider is one module plus its fixtures.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Literal, NamedTuple, Protocol, cast

from pydantic import BaseModel, ConfigDict

from chalicelib.tracking import ExceptionKind, ShipmentStatus, TrackingEvent

# Provider name -> module.
_MODULES = {
    "kuaidi100": "chalicelib.couriers.kuaidi100",
    "17track": "chalicelib.couriers.seventeen_track",
    "webhook": "chalicelib.couriers.standard_webhooks",
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


class Pacer:
    """At most `rate` calls per second after a burst of `burst`, by waiting (GCRA).

    Per process, like chalicelib.ratelimit: N warm instances may reach N times the rate, which
    the providers' own 429s then slow down. The schedule is computed, not polled, so a fake
    clock in tests cannot spin on a wait too small to advance it.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._interval, self._burst = 1.0 / rate, burst
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")  # theoretical arrival time of the next call
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            arrival = max(self._next, now)
            allowed_at = arrival - (self._burst - 1) * self._interval
            self._next = arrival + self._interval
        if allowed_at > now:
            self._sleep(allowed_at - now)


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
