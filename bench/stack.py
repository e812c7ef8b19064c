"""Shared by the benchmarks: a local AWS endpoint holding the app's resources, realistic signed
Shopify deliveries, Lambda-shaped events, and the figures' arithmetic.

The endpoint is the local AWS endpoint (moto) in this process, provisioned from infra/ by
`devstack.provision`, with the Parameters and Secrets extension beside it
(devstack/parameters_extension.py) and the webhook sources registered as tests/conftest.py does.
This module imports neither moto nor the app at import time: benchmarks decide what loads when.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import random
import statistics
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "shopify" / "orders_paid.json"

BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    # As tests/conftest.py: the local endpoint serialises DynamoDB, and a scan of a burst's
    # 10,000 cases on a busy machine outlasts the 4 s a webhook may wait (cs_burst died so).
    "AWS_READ_TIMEOUT_SECONDS": "60",
}
SHOPIFY_SECRET = "shpss_bench_5d1c0e9a7b3f4a62"
SHOP = "demo-brand.myshopify.com"
SOURCE = "shopify"
WEBHOOK_PATH = f"/webhooks/{SOURCE}"
WEBHOOK_SOURCES = {SOURCE: {"scheme": "shopify", "secrets": [SHOPIFY_SECRET]}}


# --- The app's own output ---------------------------------------------------------------------


@cache
def _devnull() -> TextIO:
    return open(os.devnull, "w")  # open for the whole run


@contextmanager
def app_output_discarded() -> Iterator[None]:
    """The app writes its log lines (JSON) and metrics (EMF) to stdout, as Lambda wants: while
    a benchmark drives it they go to /dev/null, still written (so still paid for), and the
    benchmark's report stays readable."""
    with redirect_stdout(_devnull()):
        yield


# --- The local endpoint ------------------------------------------------------------------------


@contextmanager
def local_stack(stage: str = "bench") -> Iterator[dict[str, str]]:
    """Start moto in this process and the Parameters and Secrets extension beside it, create
    every resource from infra/, store the webhook secrets.

    Sets the environment of this process (children started later inherit it) and yields it:
    the AWS settings, AWS_ENDPOINT_URL and the functions' environment from the template, with
    a session token and the extension's port as Lambda's would have.
    """
    import logging

    import boto3

    from chalicelib.access import accounts_store as accounts
    from devstack.endpoint import LocalAWS
    from devstack.parameters_extension import start_beside
    from devstack.provision import provision

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = LocalAWS(port=0)
    server.start()
    host, port = server.get_host_and_port()
    saved = dict(os.environ)
    extension = None
    try:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                     "AWS_SECURITY_TOKEN"):  # nothing of a developer's real AWS setup
            os.environ.pop(name, None)
        os.environ.update({**BASE_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                           "APP_STAGE": stage})
        functions_env = {**os.environ, **provision(boto3.session.Session(), stage=stage)}
        extension = start_beside(functions_env)
        os.environ.update(functions_env)
        reset_app_caches()
        accounts.register_sources(WEBHOOK_SOURCES)
        yield dict(os.environ)
    finally:
        if extension is not None:
            extension.stop()
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


def reset_app_caches() -> None:
    """Forget clients, settings and secrets the app cached (if it is loaded at all)."""
    import sys

    if "chalicelib.core.aws" in sys.modules:
        sys.modules["chalicelib.core.aws"].reset()
    if "chalicelib.core.settings" in sys.modules:
        sys.modules["chalicelib.core.settings"].settings.cache_clear()
    if "chalicelib.access.directory_store" in sys.modules:
        sys.modules["chalicelib.access.directory_store"].forget()
    if "chalicelib.access.accounts_store" in sys.modules:
        sys.modules["chalicelib.access.accounts_store"].forget()


# --- Deliveries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One signed Shopify orders/paid notification, as the marketplace would send it."""

    body: bytes
    headers: dict[str, str]

    @property
    def delivery_id(self) -> str:
        return self.headers["X-Shopify-Webhook-Id"]


class Orders:
    """Fresh orders from the realistic fixture: a new order `id` and webhook id each time."""

    def __init__(self, seed: int | None = None) -> None:
        self._template: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
        self._random = random.Random(seed)
        self._next_id = self._random.randrange(10**12, 9 * 10**12)

    def payload(self) -> dict[str, Any]:
        order = copy.deepcopy(self._template)
        self._next_id += 1
        order["id"] = self._next_id
        order["admin_graphql_api_id"] = f"gid://shopify/Order/{self._next_id}"
        return order

    def delivery(self) -> Delivery:
        body = json.dumps(self.payload(), ensure_ascii=False).encode()
        return Delivery(body=body, headers=shopify_headers(body))


def shopify_headers(body: bytes, *, topic: str = "orders/paid",
                    secret: str = SHOPIFY_SECRET) -> dict[str, str]:
    """Headers as Shopify sends them; the HMAC is computed here, not by the code under test."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
        "X-Shopify-API-Version": "2026-10",
    }


def api_gateway_event(delivery: Delivery) -> dict[str, Any]:
    """The API Gateway (REST, proxy) event Lambda hands to `app` for this delivery: the same
    shape chalice's local gateway builds, so `app(event, context)` is Lambda's entry point."""
    return {
        "resource": "/webhooks/{source}",
        "path": WEBHOOK_PATH,
        "httpMethod": "POST",
        "requestContext": {
            "httpMethod": "POST",
            "resourcePath": "/webhooks/{source}",
            "path": WEBHOOK_PATH,
            "stage": "api",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.10"},
        },
        "headers": {name.lower(): value for name, value in delivery.headers.items()},
        "multiValueQueryStringParameters": None,
        "pathParameters": {"source": SOURCE},
        "stageVariables": None,
        "body": delivery.body.decode(),
        "isBase64Encoded": False,
    }


def bare_item(delivery: Delivery) -> dict[str, Any]:
    """The item the webhook stores for this delivery, under another key: same size and shape."""
    from boto3.dynamodb.types import TypeSerializer

    now = datetime.now(UTC)
    lowered = {k.lower(): v for k, v in delivery.headers.items()}
    kept = {k: v for k, v in lowered.items()
            if k.startswith("x-shopify-") and k not in ("x-shopify-hmac-sha256",
                                                        "x-shopify-webhook-id")}
    delivery_id = str(uuid.uuid4())
    values = {
        "pk": f"{SOURCE}#{delivery_id}", "source": SOURCE, "scheme": "shopify",
        "delivery_id": delivery_id, "topic": lowered["x-shopify-topic"],
        "shop": lowered["x-shopify-shop-domain"], "headers": kept,
        "body": delivery.body.decode(),
        "received_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "expires_at": int((now + timedelta(days=30)).timestamp()), "pending": "pending",
    }
    serializer = TypeSerializer()
    return {key: serializer.serialize(value) for key, value in values.items()}


class LambdaContext:
    """Enough of Lambda's context object for chalice and the batch processor."""

    function_name = "order-backbone-bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:order-backbone-bench"
    memory_limit_in_mb = 512
    log_group_name = "/aws/lambda/order-backbone-bench"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# --- Figures -----------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * pct / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def verdict(within: bool) -> str:
    return "ok" if within else "over"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"
