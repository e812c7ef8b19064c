"""Webhook acknowledgement latency, as a ratio of one bare conditional PutItem.

What is timed: `app(event, context)`, the Lambda entry point chalice gives API Gateway, with the
API Gateway proxy event of a signed Shopify orders/paid delivery (built before the clock
starts). That is everything our code does per request in AWS: chalice's routing and Request,
the `endpoint` wrapper, `webhooks.receive` (size check, cached secrets, HMAC, JSON, pydantic
validation) and the conditional PutItem through the app's client. `chalice.test.Client` is not
used for timing because its local gateway (HTTP -> event -> HTTP emulation) is work API Gateway
does outside our function, and it would be billed to the webhook here.

The baseline is one PutItem through a plain boto3 client: same table, an item of the same
size and shape, `ConditionExpression="attribute_not_exists(pk)"`. Each iteration times one of
each, in alternating order, so noise on this shared machine hits both alike. The ratio of the
medians and the ratio of the 99th percentiles are both held to the budget.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

from bench.stack import (
    Delivery,
    LambdaContext,
    Orders,
    api_gateway_event,
    app_output_discarded,
    bare_item,
    local_stack,
    median,
    ms,
    percentile,
    verdict,
)

NAME = "webhook_ack_latency"
ORDERS = 500
WARMUP = 25
BUDGET = 1.5


class CallTimer:
    """Time spent inside the app's PutItem calls (botocore's whole _make_api_call)."""

    def __init__(self, client: Any) -> None:
        self.durations: list[float] = []
        self._started = 0.0
        client.meta.events.register("provide-client-params.dynamodb.PutItem", self._start)
        client.meta.events.register("after-call.dynamodb.PutItem", self._stop)

    def _start(self, **_: Any) -> None:
        self._started = time.perf_counter()

    def _stop(self, **_: Any) -> None:
        self.durations.append(time.perf_counter() - self._started)


def main() -> int:
    with local_stack() as env:
        import boto3

        from app import app
        from chalicelib.core import aws

        table = env["INBOX_TABLE"]
        bare = boto3.session.Session().client("dynamodb")
        orders = Orders()

        def webhook(delivery: Delivery) -> float:
            event, context = api_gateway_event(delivery), LambdaContext()
            started = time.perf_counter()
            response = app(event, context)
            elapsed = time.perf_counter() - started
            if response["statusCode"] != 200 or '"accepted"' not in response["body"]:
                raise RuntimeError(f"webhook answered {response}")
            return elapsed

        def put(delivery: Delivery) -> float:
            item = bare_item(delivery)
            started = time.perf_counter()
            bare.put_item(TableName=table, Item=item,
                          ConditionExpression="attribute_not_exists(pk)")
            return time.perf_counter() - started

        with app_output_discarded():
            for _ in range(WARMUP):  # clients, secrets, first-use caches, connection pools
                webhook(orders.delivery())
                put(orders.delivery())
            with aws.deadline():  # the client a webhook uses: its timeouts fit the deadline
                timer = CallTimer(aws.client("dynamodb"))

            hook_times: list[float] = []
            put_times: list[float] = []
            gc.collect()
            for i in range(ORDERS):
                first, second = orders.delivery(), orders.delivery()
                if i % 2:
                    put_times.append(put(first))
                    hook_times.append(webhook(second))
                else:
                    hook_times.append(webhook(first))
                    put_times.append(put(second))

    inner = timer.durations[-ORDERS:]
    own = [total - call for total, call in zip(hook_times, inner, strict=True)]
    body_size = len(orders.delivery().body)
    print(f"{ORDERS} webhooks (signed Shopify orders/paid, {body_size} byte body) interleaved "
          f"with {ORDERS} bare PutItems, after {WARMUP} warm-up pairs; timed in process at "
          "app(event, context), Lambda's entry point")
    print(f"  {'':<34}{'median':>12}{'p90':>12}{'p99':>12}{'max':>12}")
    for label, values in (("bare conditional PutItem", put_times),
                          ("webhook acknowledgement", hook_times),
                          ("  of which app's PutItem call", inner),
                          ("  of which our code (the rest)", own)):
        print(f"  {label:<34}{ms(median(values)):>12}{ms(percentile(values, 90)):>12}"
              f"{ms(percentile(values, 99)):>12}{ms(max(values)):>12}")
    median_ratio = median(hook_times) / median(put_times)
    p99_ratio = percentile(hook_times, 99) / percentile(put_times, 99)
    within = median_ratio <= BUDGET and p99_ratio <= BUDGET
    print(f"BENCH {NAME}: median {median_ratio:.2f}x, p99 {p99_ratio:.2f}x of bare PutItem "
          f"(budget {BUDGET:g}x) {verdict(within)}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
