"""Courier tracking providers: one contract (`Provider`), one registry, one module each.

The contract, one class per provider:
- `name`: in /couriers/{name}/push, in the account's name (`source_name`) and on every event;
- `read_push(headers, raw, secret) -> TrackingPush` (static: it needs only the push secret):
  verify the push over what the provider signed and normalise it (raises ApiError 401
  invalid/missing signature, 400 malformed push);
- `push_reply() -> PushReply` (static): the exact answer the provider expects;
- `subscribe(parcel) -> bool`, optional: ask the provider to push news of a number (False: it
  refused the number, and will not push);
- `query(parcel) -> events`, optional: ask for the number's scans now;
- `can_push` / `can_query`: whether the class implements `subscribe` / `query`, derived from
  it, never declared apart, so the watch subscribes first only where a subscription makes the
  provider push, and polls only where it can ask (`chalicelib.tracking.watch.start_watch`).
An instance holds the provider's account (`chalicelib.access.accounts.WebhookSource`: the push
secrets and the client's settings). A failed call raises `ProviderError`, which says whether
the provider counted it (its lock or quota then applies) and what CS must hear.

Each provider module holds its pure part (requests built and signed, answers and pushes read,
code tables mapping provider codes onto the two axes of `chalicelib.tracking.model`, its
errors mapped onto `ProviderError`) and its thin I/O part (a client sending through
`chalicelib.core.http` with the provider's pace, timeouts and retries), as karrio's carrier
packages do. Adding a provider is one module, one line in `_CLASSES` and its fixtures.

The registry, by provider name: `provider_class(name)` imports a provider's module the first
time it is needed (a push for one provider loads no other); `provider(name, account)` is the
process's instance for an account, built again when the account's settings change;
`provider_for(carrier_code)` chooses: Kuaidi100 covers the domestic carriers, 17TRACK the rest.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cache
from typing import ClassVar, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict

from chalicelib.access.accounts import WebhookSource
from chalicelib.tracking.model import ExceptionKind, ShipmentStatus, TrackingEvent

DOMESTIC = "kuaidi100"
CROSS_BORDER = "17track"
# Provider name -> (module, class): a module is imported when its provider is first needed.
_CLASSES: Mapping[str, tuple[str, str]] = {
    DOMESTIC: ("chalicelib.tracking.couriers.kuaidi100", "Kuaidi100"),
    CROSS_BORDER: ("chalicelib.tracking.couriers.seventeen_track", "SeventeenTrack"),
    "webhook": ("chalicelib.tracking.couriers.standard_webhooks", "StandardWebhooks"),
}
# The alert kinds a failed call raises to CS.
ACCOUNT_ALERT = "courier.provider_account"  # ours to fix: the account, its key or its quota
WAYBILL_ALERT = "courier.waybill_rejected"  # the provider refuses the number as we sent it


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


class TrackedParcel(Protocol):
    """What a provider is told of a parcel (chalicelib.tracking.parcels.Parcel is one)."""

    @property
    def carrier_code(self) -> str: ...

    @property
    def tracking_number(self) -> str: ...

    @property
    def phone(self) -> str: ...  # "" when unknown; SF and ZTO check it

    @property
    def destination(self) -> str: ...  # "" when unknown

    @property
    def label(self) -> str: ...


class ProviderError(Exception):
    """A failed call. `counted`: the provider may have counted it (its lock then applies);
    `alert`: the alert kind CS must hear, None when backing off is all there is to do."""

    def __init__(self, message: str, *, counted: bool, alert: str | None = None) -> None:
        super().__init__(message)
        self.counted, self.alert = counted, alert


class Provider(ABC):
    """One courier tracking provider with its account; see the module's docstring."""

    name: ClassVar[str]
    can_push: ClassVar[bool] = False
    can_query: ClassVar[bool] = False

    def __init__(self, account: WebhookSource) -> None:
        self.account = account

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # What a provider can do is what it implements: no second table to keep in step.
        cls.can_push = cls.subscribe is not Provider.subscribe
        cls.can_query = cls.query is not Provider.query

    @staticmethod
    @abstractmethod
    def read_push(headers: Mapping[str, str], raw: bytes, secret: str) -> TrackingPush:
        """A push verified with `secret` and normalised; ApiError 401 or 400 when refused."""
        raise NotImplementedError

    @staticmethod
    @abstractmethod
    def push_reply() -> PushReply:
        """The answer the provider expects to a push it may consider delivered."""
        raise NotImplementedError

    def subscribe(self, parcel: TrackedParcel) -> bool:
        """Optional. Ask for pushes about the parcel; False: refused, nothing will come."""
        raise NotImplementedError(f"{self.name} takes no subscriptions")

    def query(self, parcel: TrackedParcel) -> Sequence[TrackingEvent]:
        """Optional. The parcel's scans as the provider knows them now (none yet: empty)."""
        raise NotImplementedError(f"{self.name} cannot be asked")


@cache
def provider_class(name: str) -> type[Provider]:
    """The provider named `name`; LookupError when there is none."""
    try:
        module_name, class_name = _CLASSES[name]
    except KeyError:
        raise LookupError(f"no courier provider {name!r}") from None
    found = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(found, type) and issubclass(found, Provider) and found.name == name):
        raise TypeError(f"{module_name}.{class_name} is not the Provider {name!r}")
    return found


def known_providers() -> frozenset[str]:
    return frozenset(_CLASSES)


def provider_for(carrier_code: str) -> str:
    """Kuaidi100 covers the domestic carriers; 17TRACK the cross-border rest."""
    from chalicelib.tracking.couriers.kuaidi100 import CARRIERS

    return DOMESTIC if carrier_code.upper() in CARRIERS else CROSS_BORDER


def source_name(provider_name: str) -> str:
    """A provider's account lives beside the webhook sources; '/' keeps it out of /webhooks/."""
    return f"courier/{provider_name}"


# name -> the process's instance, so that a tick does not build a client per parcel.
_instances: dict[str, Provider] = {}


def provider(name: str, account: WebhookSource) -> Provider:
    """The process's provider for this account, built again when the account's settings change
    (an administrator rotated the key). LookupError for an unknown name."""
    found = _instances.get(name)
    if found is None or found.account != account:
        found = _instances[name] = provider_class(name)(account)
    return found


def forget_providers() -> None:
    _instances.clear()
