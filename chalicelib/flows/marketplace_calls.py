"""Calling a marketplace's API: the shop's credentials (with a current access token where the
platform lends short-lived ones), one request sent, and the re-fetch of the order a thin
notification names. The I/O around each adapter's pure calls (chalicelib/marketplaces/).

A platform in trouble (no answer, 429, 5xx, an answer that is not JSON) raises the retryable
`PlatformUnavailable`: the caller (the order worker's stream, the writeback and reconciliation
schedules) tries again later; the platforms' rate limits are not ours to hammer from inside one
invocation.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from chalicelib.core import http
from chalicelib.marketplaces import MODULES, Adapter
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
    module = importlib.import_module(MODULES[scheme])
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
            return cast("Order", module.read(ref, credentials, now, send_json, source))
        if hasattr(module, "fetch_calls"):  # an order and its items, in separate calls
            answers = [send_json(c) for c in module.fetch_calls(ref, credentials, now)]
            return cast("Order", module.parse_order(answers, ref, source))
        return cast("Order", module.parse_order(send_json(module.fetch_call(
            ref, credentials, now)), ref, source))
    except PlatformUnavailable:
        raise
    except InvalidOrder:
        raise
    except Exception as exc:
        if getattr(exc, "retryable", True):
            raise PlatformUnavailable(f"{scheme}: {exc}") from exc
        raise InvalidOrder("platform_refused", f"{scheme}: {exc}") from exc


# (scheme, shop) -> (access token, valid until): tokens the platform lends for an hour (Amazon).
_tokens: dict[tuple[str, str], tuple[str, datetime]] = {}


def credentials_for(scheme: str, shop: str, now: datetime) -> dict[str, str]:
    """The shop's credentials from SSM, with a current access token for a platform whose
    adapter exchanges a long-lived refresh token for short-lived ones (`token_call`). Raises
    MissingCredentials, PlatformUnavailable, or the adapter's error."""
    credentials = shop_credentials.get(scheme, shop)
    module = importlib.import_module(MODULES[scheme])
    call = module.token_call(credentials) if hasattr(module, "token_call") else None
    if call is None:
        return credentials
    cached = _tokens.get((scheme, shop))
    if cached is None or cached[1] <= now:
        token, lifetime = module.parse_token(send_json(call))
        cached = (token, now + timedelta(seconds=max(lifetime - 120, 60)))  # renew early
        _tokens[(scheme, shop)] = cached
    return {**credentials, "access_token": cached[0]}
