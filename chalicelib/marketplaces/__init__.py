"""Marketplace adapters, one module each (two for Shopify), loaded only when a request needs one.

Each platform declares the contract of chalicelib/marketplaces/contract.py: its inbound half
(`INBOUND`, what a notification needs) and the whole platform (`MARKETPLACE`: fetch, writeback,
listing, token exchange, each None where the platform lacks it). The registry below finds them
by scheme: `inbound_for` loads only the module of the inbound half, so a webhook's cold start
compiles no API calls (Shopify's Admin API half, shopify_admin.py, stays unloaded);
`adapter_for` loads the module that declares the whole platform.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple, TypeVar

from chalicelib.marketplaces.contract import Inbound, Marketplace

_Declared = TypeVar("_Declared", Inbound, Marketplace)


class Halves(NamedTuple):
    inbound: str  # the module declaring INBOUND
    api: str  # the module declaring MARKETPLACE (the same one but for Shopify)


def _one(module: str) -> Halves:
    return Halves(module, module)


# Scheme -> modules. A new marketplace is one new module plus its fixtures.
PLATFORMS: dict[str, Halves] = {
    "shopify": Halves("chalicelib.marketplaces.shopify", "chalicelib.marketplaces.shopify_admin"),
    "standard": _one("chalicelib.marketplaces.standard_webhooks"),
    "woocommerce": _one("chalicelib.marketplaces.woocommerce"),
    "douyin": _one("chalicelib.marketplaces.douyin"),
    "tiktok_shop": _one("chalicelib.marketplaces.tiktok_shop"),
    "shopee": _one("chalicelib.marketplaces.shopee"),
    "lazada": _one("chalicelib.marketplaces.lazada"),
    # Not over HTTP: Amazon's notifications come from an SQS queue, Taobao's from TMC polling
    # (chalicelib/flows/feeds.py); their `accept` refuses a webhook with 404.
    "amazon": _one("chalicelib.marketplaces.amazon"),
    "taobao": _one("chalicelib.marketplaces.taobao"),
}


def known_schemes() -> frozenset[str]:
    return frozenset(PLATFORMS)


def inbound_for(scheme: str) -> Inbound:
    """The platform's notifications half (loads no API calls)."""
    return _checked(importlib.import_module(_halves(scheme).inbound).INBOUND, Inbound)


def adapter_for(scheme: str) -> Marketplace:
    """The whole platform: its notifications and its API's capabilities."""
    return _checked(importlib.import_module(_halves(scheme).api).MARKETPLACE, Marketplace)


def _halves(scheme: str) -> Halves:
    try:
        return PLATFORMS[scheme]
    except KeyError:
        raise LookupError(f"no adapter for scheme {scheme!r}") from None


def _checked(declared: object, kind: type[_Declared]) -> _Declared:
    if not isinstance(declared, kind):  # a platform module that does not keep the contract
        raise TypeError(f"{declared!r} is not the contract's {kind.__name__}")
    return declared
