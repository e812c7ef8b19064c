"""Calling a marketplace's API: the shop's credentials (with a current access token where the
platform lends short-lived ones, or renews expiring ones: chalicelib/flows/shop_access.py), one
request sent, and the re-fetch of the order a thin notification names. The I/O around each
adapter's pure calls (chalicelib/marketplaces/).

A platform in trouble (no answer, 429, 5xx, an answer that is not JSON) raises the retryable
`PlatformUnavailable`: the caller (the order worker's stream, the writeback and reconciliation
schedules) tries again later; the platforms' rate limits are not ours to hammer from inside one
invocation.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from chalicelib import marketplaces
from chalicelib.core import http
from chalicelib.flows import shop_access
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces.calls import OrderRef, PlatformUnavailable
from chalicelib.orders.deliveries import REF_HEADER
from chalicelib.orders.order import InvalidOrder, Order


def send(request: http.Request) -> http.Answer:
    """The platform's answer to one request; PlatformUnavailable when it had none to give."""
    try:
        answer = http.send(request)
    except http.Unreachable as exc:
        raise PlatformUnavailable(exc.kind) from None
    if answer.status >= 500 or answer.status == 429:
        raise PlatformUnavailable(f"HTTP {answer.status}")
    return answer


def send_json(request: http.Request) -> Any:
    answer = send(request)
    try:
        return answer.json()
    except ValueError:
        raise PlatformUnavailable(f"not JSON ({answer.status}): {answer.body[:200]!r}") from None


def read_order(scheme: str, raw: bytes, headers: Mapping[str, str], source: str,
               now: datetime) -> Order:
    """The order a stored notification stands for: its payload, or, for a thin notification,
    the order re-fetched from the platform with the shop's credentials.

    Raises InvalidOrder for what will never become an order (CS hears of it) and
    PlatformUnavailable (or the adapter's retryable error) for what may work later."""
    if headers.get(REF_HEADER):  # queued by reconciliation or a split push: the ref itself
        return _fetch(scheme, OrderRef.model_validate_json(raw), source, now)
    inbound = marketplaces.inbound_for(scheme)  # a whole payload needs no API half loaded
    if inbound.normalise is not None:
        return inbound.normalise(raw, headers, source)
    if inbound.ref is not None:
        return _fetch(scheme, inbound.ref(raw, headers), source, now)
    raise InvalidOrder("unreadable_notification", f"{scheme}: neither whole nor a reference")


def _fetch(scheme: str, ref: OrderRef, source: str, now: datetime) -> Order:
    """The order `ref` names, read from the platform. (Every platform whose notifications or
    listings name orders declares `fetch`: the contract checks it when the module loads.)"""
    fetch = marketplaces.adapter_for(scheme).fetch
    if fetch is None:
        raise InvalidOrder("not_refetchable", f"{scheme} offers no way to read an order")
    try:
        credentials = credentials_for(scheme, ref.shop, now)
    except shop_credentials.MissingCredentials as exc:
        raise InvalidOrder("missing_shop_credentials", str(exc)) from None
    try:
        return fetch.read(ref, credentials, now, send_json, source)
    except PlatformUnavailable:
        raise
    except InvalidOrder:
        raise
    except Exception as exc:
        # A platform's own error says whether to retry (PlatformError, LazadaError, TaobaoError;
        # a malformed answer is one, retryable). Anything else is the adapter failing to read
        # an answer the platform did give (a time out of range, a shape it refuses): reading
        # it again would fail again, so it is an unreadable order, not a retry loop.
        retryable = getattr(exc, "retryable", None)
        if retryable is True:
            raise PlatformUnavailable(f"{scheme}: {exc}") from exc
        if retryable is None:
            raise InvalidOrder("unreadable_answer", f"{scheme}: {type(exc).__name__}: "
                               f"{exc}") from exc
        raise InvalidOrder("platform_refused", f"{scheme}: {exc}") from exc


# (scheme, shop) -> (access token, valid until): tokens the platform lends for an hour (Amazon).
_tokens: dict[tuple[str, str], tuple[str, datetime]] = {}


def credentials_for(scheme: str, shop: str, now: datetime) -> dict[str, str]:
    """The shop's credentials from SSM, with a current access token for a platform whose
    adapter exchanges a long-lived refresh token for short-lived ones (its `token`: Amazon), or
    renews expiring shop access and keeps it in the shop's parameter (its `refresh`). Raises
    MissingCredentials, PlatformUnavailable, tokens.RefreshRefused (the seller must authorise us
    again: CS has a case), or the adapter's error."""
    credentials = shop_credentials.get(scheme, shop)
    adapter = marketplaces.adapter_for(scheme)
    if adapter.refresh is not None:
        return shop_access.current(scheme, shop, credentials, adapter.refresh, now, send_json)
    exchange = adapter.token
    call = exchange.call(credentials) if exchange is not None else None
    if exchange is None or call is None:
        return credentials
    cached = _tokens.get((scheme, shop))
    if cached is None or cached[1] <= now:
        token, lifetime = exchange.parse(send_json(call))
        cached = (token, now + timedelta(seconds=max(lifetime - 120, 60)))  # renew early
        _tokens[(scheme, shop)] = cached
    return {**credentials, "access_token": cached[0]}
