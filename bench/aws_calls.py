"""AWS calls per order, from webhook to job queued, counted with botocore's event hooks.

Every botocore client created in this process gets a `before-call` handler (one per API call,
whatever the retries) and a `before-send` handler (one per HTTP attempt). Calls are counted
only inside a measured phase and only on the main thread, so what the benchmark itself reads
(the local stream, the final check) is never counted, and neither is anything moto does.

The real handlers run in process: the webhook route through `chalice.test.Client` (HTTP POST),
the order worker through `client.lambda_.invoke` with events built from the inbox table's real
local stream, batched as the event source mapping does (25), including the worker's own
"applied" updates coming back through the stream, as they do in AWS.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.stack import WEBHOOK_PATH, Orders, app_output_discarded, local_stack, verdict

NAME = "aws_calls_per_order"
ORDERS = 50
STREAM_BATCH = 25  # app.py: @app.on_dynamodb_record(batch_size=25)
BUDGET_TOTAL = 4.0
BUDGET_WEBHOOK = 1.0


@dataclass
class Phase:
    calls: Counter[str] = field(default_factory=Counter)  # "dynamodb.PutItem" -> n
    attempts: int = 0  # HTTP requests sent, retries included

    @property
    def total(self) -> int:
        return sum(self.calls.values())


class CallCounter:
    """Counts API calls of every botocore client created after `install()`."""

    def __init__(self) -> None:
        self.phases: dict[str, Phase] = {}
        self._phase: Phase | None = None
        self._main = threading.get_ident()
        self.clients = 0

    def install(self) -> None:
        import botocore.session

        original = botocore.session.Session.create_client
        counter = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            client.meta.events.register("before-call", counter._on_call)
            client.meta.events.register("before-send", counter._on_send)
            counter.clients += 1
            return client

        botocore.session.Session.create_client = create_client

    def _current(self) -> Phase | None:
        return self._phase if threading.get_ident() == self._main else None

    def _on_call(self, event_name: str, **kwargs: Any) -> None:
        # Must return None: a before-call handler that returns a value replaces the call.
        phase = self._current()
        if phase is not None:
            _, service, operation = event_name.split(".", 2)
            phase.calls[f"{service}.{operation}"] += 1

    def _on_send(self, **_: Any) -> None:
        phase = self._current()
        if phase is not None:
            phase.attempts += 1

    @contextmanager
    def counting(self, name: str) -> Iterator[Phase]:
        phase = self.phases.setdefault(name, Phase())
        self._phase = phase
        try:
            yield phase
        finally:
            self._phase = None


class StreamReader:
    """Reads the inbox table's local stream from where it last stopped, as Lambda's poller."""

    def __init__(self, stream_arn: str) -> None:
        import boto3

        self.arn = stream_arn
        self._streams = boto3.session.Session().client("dynamodbstreams")
        self._iterators: dict[str, str] = {}

    def read(self) -> list[dict[str, Any]]:
        shards = self._streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        records: list[dict[str, Any]] = []
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self.arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON",
                )["ShardIterator"]
            while True:
                answer = self._streams.get_records(ShardIterator=self._iterators[shard_id],
                                                   Limit=1000)
                self._iterators[shard_id] = answer["NextShardIterator"]
                records.extend(answer["Records"])
                if not answer["Records"]:
                    break
        return records

    def lambda_events(self, batch: int) -> list[dict[str, Any]]:
        """New records as Lambda DynamoDB-stream events of at most `batch` records."""
        records = [self._lambda_record(record) for record in self.read()]
        return [{"Records": records[i:i + batch]} for i in range(0, len(records), batch)]

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        change = dict(record["dynamodb"])
        created = change.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            change["ApproximateCreationDateTime"] = int(created.timestamp())
        event = {
            "eventID": record["eventID"], "eventName": record["eventName"],
            "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": record.get("awsRegion", "us-east-1"), "dynamodb": change,
            "eventSourceARN": self.arn,
        }
        return dict(json.loads(json.dumps(event)))  # what Lambda hands over is plain JSON


def _post_orders(client: Any, orders: Orders, count: int) -> list[str]:
    delivered = []
    for _ in range(count):
        delivery = orders.delivery()
        response = client.http.post(WEBHOOK_PATH, headers=delivery.headers, body=delivery.body)
        answer = json.loads(response.body)
        if response.status_code != 200 or answer.get("status") != "accepted":
            raise RuntimeError(f"webhook answered {response.status_code}: {response.body!r}")
        delivered.append(delivery.delivery_id)
    return delivered


def _run_worker(client: Any, stream: StreamReader, counter: CallCounter,
                phase: str) -> tuple[int, int]:
    """Feed the worker everything new on the stream until the stream is quiet.

    Returns (invocations, records)."""
    invocations = records = 0
    while True:
        events = stream.lambda_events(STREAM_BATCH)
        if not events:
            return invocations, records
        for event in events:
            with counter.counting(phase):
                answer = client.lambda_.invoke("order_worker", event).payload
            if answer != {"batchItemFailures": []}:
                raise RuntimeError(f"order worker reported failures: {answer}")
            invocations += 1
            records += len(event["Records"])


def _jobs_queued(env: dict[str, str]) -> int:
    import boto3

    ddb = boto3.session.Session().client("dynamodb")
    # The jobs table also holds feed entries, waves and returns: count job items only.
    pages = ddb.get_paginator("scan").paginate(
        TableName=env["JOBS_TABLE"], Select="COUNT", FilterExpression="begins_with(sk, :job)",
        ExpressionAttributeValues={":job": {"S": "job_"}})
    return sum(int(page["Count"]) for page in pages)


def _breakdown(title: str, phase: Phase, orders: int) -> None:
    print(f"  {title}: {phase.total} calls ({phase.attempts} HTTP attempts) for {orders} "
          f"order(s) = {phase.total / orders:.2f} per order")
    for operation, count in sorted(phase.calls.items()):
        print(f"    {operation:<40} {count:>5}   {count / orders:.2f}/order")


def main() -> int:
    counter = CallCounter()
    counter.install()  # before anything creates a client
    with local_stack() as env:
        from chalice.test import Client

        from app import app

        orders = Orders()
        stream = StreamReader(env["INBOX_STREAM_ARN"])
        with Client(app, stage_name="local") as client, app_output_discarded():
            # Warm-up: one order through a fresh process (clients created, secrets fetched).
            with counter.counting("warm-up webhook"):
                _post_orders(client, orders, 1)
            _run_worker(client, stream, counter, "warm-up worker")
            # Steady state: secrets cached (5 minutes), clients created.
            with counter.counting("webhook"):
                _post_orders(client, orders, ORDERS)
            invocations, records = _run_worker(client, stream, counter, "worker")
        queued = _jobs_queued(env)

    warm_hook, warm_worker = counter.phases["warm-up webhook"], counter.phases["warm-up worker"]
    webhook, worker = counter.phases["webhook"], counter.phases["worker"]
    print(f"{ORDERS} orders after 1 warm-up order; worker: {invocations} invocations of up to "
          f"{STREAM_BATCH} stream records ({records} records: inserts and the worker's own "
          f"updates); jobs queued: {queued} of {ORDERS + 1}")
    print("Warm-up (first order in a fresh process):")
    _breakdown("webhook path", warm_hook, 1)
    _breakdown("order worker", warm_worker, 1)
    print("Steady state:")
    _breakdown("webhook path", webhook, ORDERS)
    _breakdown("order worker", worker, ORDERS)
    total = webhook.calls + worker.calls
    print(f"  total by operation ({ORDERS} orders):")
    for operation, count in sorted(total.items()):
        print(f"    {operation:<40} {count:>5}   {count / ORDERS:.2f}/order")

    per_webhook = webhook.total / ORDERS
    per_order = (webhook.total + worker.total) / ORDERS
    if queued != ORDERS + 1:
        print(f"FAILED: expected {ORDERS + 1} jobs queued, found {queued}")
    within = per_webhook <= BUDGET_WEBHOOK and per_order <= BUDGET_TOTAL and queued == ORDERS + 1
    print(f"BENCH {NAME}: {per_order:.2f} total, {per_webhook:.2f} on webhook path "
          f"(budget {BUDGET_TOTAL:g} total, {BUDGET_WEBHOOK:g} webhook) {verdict(within)}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
