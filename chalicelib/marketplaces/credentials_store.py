"""Per-shop marketplace credentials (app keys and secrets, access tokens) in SSM Parameter Store:
one SecureString JSON object per shop at /order-backbone/<stage>/shops/<marketplace>/<shop>.
Read only when a thin notification must be re-fetched or a shipment written back; cached per
process for SECRETS_CACHE_SECONDS. Read as every secret is (chalicelib.core.parameters: in
Lambda through the Parameters and Secrets extension), so a worker re-fetching a thin
notification on a cold start builds no SSM client; listing the shops (reconciliation) needs
GetParametersByPath, which only the SSM client offers. Locally the same API answers on the
local endpoint.

Where a platform's access expires, the functions that use a shop keep its tokens current in
its parameter (chalicelib/flows/shop_access.py): `reread` the parameter as it is now (past the
cache) under the shop's refresh lease, and `put` the renewed tokens back at once, since the
refresh token sent to the platform is spent (ssm:PutParameter on the shop parameters only).
"""

from __future__ import annotations

import json
import time
from typing import Any

from chalicelib.core import aws, parameters
from chalicelib.core.settings import settings

_cache: dict[str, tuple[float, dict[str, str]]] = {}


class MissingCredentials(Exception):
    def __init__(self, marketplace: str, shop: str) -> None:
        super().__init__(f"no credentials for {marketplace} shop {shop!r}")
        self.marketplace, self.shop = marketplace, shop


def parameter_name(marketplace: str, shop: str) -> str:
    return f"/order-backbone/{settings().stage}/shops/{marketplace}/{shop}"


def get(marketplace: str, shop: str) -> dict[str, str]:
    name = parameter_name(marketplace, shop)
    cached = _cache.get(name)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    value = parameters.get(name)
    if value is None:
        raise MissingCredentials(marketplace, shop)
    found: dict[str, Any] = json.loads(value)
    credentials = {str(k): str(v) for k, v in found.items()}
    _cache[name] = (time.monotonic() + settings().secrets_cache_seconds, credentials)
    return credentials


def reread(marketplace: str, shop: str) -> dict[str, str]:
    """The shop's credentials as the parameter holds them now (this process's cached copy
    may predate another function's token refresh)."""
    _cache.pop(parameter_name(marketplace, shop), None)
    return get(marketplace, shop)


def put(marketplace: str, shop: str, credentials: dict[str, str]) -> None:
    """Write the shop's credentials (the whole document); this process reads them from now."""
    name = parameter_name(marketplace, shop)
    aws.client("ssm").put_parameter(Name=name, Type="SecureString",
                                    Value=json.dumps(credentials), Overwrite=True)
    _cache[name] = (time.monotonic() + settings().secrets_cache_seconds, dict(credentials))


def forget() -> None:
    _cache.clear()


def shops() -> list[tuple[str, str]]:
    """(marketplace, shop) of every shop with credentials in this stage."""
    prefix = f"/order-backbone/{settings().stage}/shops/"
    found: list[tuple[str, str]] = []
    pages = aws.client("ssm").get_paginator("get_parameters_by_path").paginate(
        Path=prefix, Recursive=True)
    for page in pages:
        for parameter in page.get("Parameters", []):
            marketplace, _, shop = parameter["Name"].removeprefix(prefix).partition("/")
            if shop:
                found.append((marketplace, shop))
    return found
