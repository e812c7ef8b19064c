"""Marketplace adapters, one module each, loaded only when a request needs one.

Each adapter module offers pure functions:
- `accept(headers, raw, secrets, now) -> Accepted`: verify the signature over the raw bytes and
  validate the payload (raises ApiError with a reason code);
- a full-payload platform: `normalise(raw, headers, source) -> Order` (raises InvalidOrder);
- a thin one: `ref(raw, headers) -> OrderRef`, `fetch_call(ref, credentials, now) -> ApiCall`,
  `parse_order(answer, ref, source) -> Order`; `read_order` below does the re-fetch;
- optionally `REPLY = (status, content type, body)`: the platform's documented answer;
- and the writeback and reconciliation calls of chalicelib/marketplaces/calls.py.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, cast

from chalicelib.orders.deliveries import REF_HEADER, Accepted

if TYPE_CHECKING:
    from chalicelib.marketplaces.calls import OrderRef
    from chalicelib.orders.order import Order

# Scheme name -> module. A new marketplace is one new module plus its fixtures.
MODULES = {
    "shopify": "chalicelib.marketplaces.shopify",
    "standard": "chalicelib.marketplaces.standard_webhooks",
    "woocommerce": "chalicelib.marketplaces.woocommerce",
    "douyin": "chalicelib.marketplaces.douyin",
    "tiktok_shop": "chalicelib.marketplaces.tiktok_shop",
    "shopee": "chalicelib.marketplaces.shopee",
    "lazada": "chalicelib.marketplaces.lazada",
    # Not over HTTP: Amazon's notifications come from an SQS queue, Taobao's from TMC polling
    # (chalicelib/flows/feeds.py); their `accept` refuses a webhook with 404.
    "amazon": "chalicelib.marketplaces.amazon",
    "taobao": "chalicelib.marketplaces.taobao",
}


class Adapter(Protocol):
    def accept(self, headers: Mapping[str, str], raw: bytes, secrets: Sequence[str],
               now: datetime) -> Accepted: ...

    def normalise(self, raw: bytes, headers: Mapping[str, str], source: str) -> Order: ...


def adapter_for(scheme: str) -> Adapter:
    try:
        module_name = MODULES[scheme]
    except KeyError:
        raise LookupError(f"no adapter for scheme {scheme!r}") from None
    return cast(Adapter, importlib.import_module(module_name))


def known_schemes() -> frozenset[str]:
    return frozenset(MODULES)


def reply_of(scheme: str) -> tuple[int, str, str] | None:
    """The platform's documented answer to a notification, if it prescribes one."""
    reply: tuple[int, str, str] | None = getattr(adapter_for(scheme), "REPLY", None)
    return reply


def refs_of(scheme: str, raw: bytes, headers: Mapping[str, str]) -> list[OrderRef]:
    """Every order a notification names, for a platform whose pushes batch several (its
    adapter offers `refs`); [] for the others."""
    module = importlib.import_module(MODULES[scheme])
    if headers.get(REF_HEADER) or not hasattr(module, "refs"):
        return []
    found: list[OrderRef] = module.refs(raw, headers)
    return found
