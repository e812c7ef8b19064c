"""Marketplace adapters, one module each, loaded only when a request needs one.

Each adapter module offers two pure functions:
- `accept(headers, raw, secrets, now) -> Accepted`: verify the signature over the raw bytes and
  validate the payload (raises ApiError with a reason code);
- `normalise(raw, headers, source) -> Order` (raises InvalidOrder): used by the order worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, cast

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from chalicelib.orders import Order

# Scheme name -> module. A new marketplace is one new module plus its fixtures.
_MODULES = {
    "shopify": "chalicelib.marketplaces.shopify",
    "standard": "chalicelib.marketplaces.standard_webhooks",
}


class Accepted(BaseModel):
    """A verified, valid delivery, ready to be stored."""

    model_config = ConfigDict(frozen=True)

    delivery_id: str
    topic: str
    shop: str = ""
    # Headers the worker needs later (normalise gets them back from the stored delivery).
    headers: dict[str, str] = {}
    # False for a correctly signed delivery we do not act on (e.g. a topic we do not handle).
    actionable: bool = True


class Adapter(Protocol):
    def accept(self, headers: Mapping[str, str], raw: bytes, secrets: Sequence[str],
               now: datetime) -> Accepted: ...

    def normalise(self, raw: bytes, headers: Mapping[str, str], source: str) -> Order: ...


def adapter_for(scheme: str) -> Adapter:
    try:
        module_name = _MODULES[scheme]
    except KeyError:
        raise LookupError(f"no adapter for scheme {scheme!r}") from None
    return cast(Adapter, importlib.import_module(module_name))


def known_schemes() -> frozenset[str]:
    return frozenset(_MODULES)
