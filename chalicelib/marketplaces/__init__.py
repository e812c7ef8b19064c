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

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from chalicelib.marketplaces.calls import OrderRef
    from chalicelib.orders.order import Order

# On an inbox delivery we made ourselves (reconciliation, a split push): its body is an OrderRef
# to re-fetch, not the platform's notification.
REF_HEADER = "x-reconciled"

# Scheme name -> module. A new marketplace is one new module plus its fixtures.
_MODULES = {
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


def reply_of(scheme: str) -> tuple[int, str, str] | None:
    """The platform's documented answer to a notification, if it prescribes one."""
    reply: tuple[int, str, str] | None = getattr(adapter_for(scheme), "REPLY", None)
    return reply


def read_order(scheme: str, raw: bytes, headers: Mapping[str, str], source: str,
               now: datetime) -> Order:
    """The order a stored notification stands for: its payload, or, for a thin notification,
    the order re-fetched from the platform with the shop's credentials.

    Raises InvalidOrder for what will never become an order (CS hears of it) and
    PlatformUnavailable (or the adapter's retryable error) for what may work later."""
    from chalicelib.core import http
    from chalicelib.marketplaces import credentials_store as shop_credentials
    from chalicelib.marketplaces.calls import OrderRef
    from chalicelib.orders.order import InvalidOrder

    module = importlib.import_module(_MODULES[scheme])
    if hasattr(module, "normalise") and not headers.get(REF_HEADER):
        return cast(Adapter, module).normalise(raw, headers, source)
    # A delivery reconciliation queued carries the listed order's reference itself.
    ref = (OrderRef.model_validate_json(raw) if headers.get(REF_HEADER)
           else module.ref(raw, headers))
    try:
        credentials = credentials_for(scheme, ref.shop, now)
    except shop_credentials.MissingCredentials as exc:
        raise InvalidOrder("missing_shop_credentials", str(exc)) from None
    try:
        if hasattr(module, "read"):  # several dependent calls (Amazon: a data token first)
            return cast("Order", module.read(ref, credentials, now,
                                             lambda call: http.send(call).json(), source))
        if hasattr(module, "fetch_calls"):  # an order and its items, in separate calls
            answers = [http.send(c).json() for c in module.fetch_calls(ref, credentials, now)]
            return cast("Order", module.parse_order(answers, ref, source))
        answer = http.send(module.fetch_call(ref, credentials, now))
        return cast("Order", module.parse_order(answer.json(), ref, source))
    except http.PlatformUnavailable:
        raise
    except InvalidOrder:
        raise
    except Exception as exc:
        if getattr(exc, "retryable", True):
            raise http.PlatformUnavailable(f"{scheme}: {exc}") from exc
        raise InvalidOrder("platform_refused", f"{scheme}: {exc}") from exc


# (scheme, shop) -> (access token, valid until): tokens the platform lends for an hour (Amazon).
_tokens: dict[tuple[str, str], tuple[str, datetime]] = {}


def credentials_for(scheme: str, shop: str, now: datetime) -> dict[str, str]:
    """The shop's credentials from SSM, with a current access token for a platform whose
    adapter exchanges a long-lived refresh token for short-lived ones (`token_call`). Raises
    shop_credentials.MissingCredentials, PlatformUnavailable, or the adapter's error."""
    from datetime import timedelta

    from chalicelib.core import http
    from chalicelib.marketplaces import credentials_store as shop_credentials

    credentials = shop_credentials.get(scheme, shop)
    module = importlib.import_module(_MODULES[scheme])
    call = module.token_call(credentials) if hasattr(module, "token_call") else None
    if call is None:
        return credentials
    cached = _tokens.get((scheme, shop))
    if cached is None or cached[1] <= now:
        token, lifetime = module.parse_token(http.send(call).json())
        cached = (token, now + timedelta(seconds=max(lifetime - 120, 60)))  # renew early
        _tokens[(scheme, shop)] = cached
    return {**credentials, "access_token": cached[0]}


def refs_of(scheme: str, raw: bytes, headers: Mapping[str, str]) -> list[OrderRef]:
    """Every order a notification names, for a platform whose pushes batch several (its
    adapter offers `refs`); [] for the others."""
    module = importlib.import_module(_MODULES[scheme])
    if headers.get(REF_HEADER) or not hasattr(module, "refs"):
        return []
    found: list[OrderRef] = module.refs(raw, headers)
    return found
