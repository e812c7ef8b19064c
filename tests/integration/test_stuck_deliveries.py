"""Deliveries the worker has not applied: the 5-minute sweep alerts CS once per delivery and
re-drives each through the stream with back-off, however many are stuck; a dead-lettered
stream batch names its deliveries and orders. Against the local endpoint (issue 14, item 4)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.core.clock import iso, parse_iso, utcnow
from chalicelib.flows import order_worker
from chalicelib.orders.order import order_id_for
from tests.integration.flow import alerts_received, inbox_item
from tests.integration.test_admin_operations import _failure_record, _stream_end
from tests.support import SHOP, dumps, shopify_headers, shopify_order


def post_order(client: Client) -> tuple[str, str]:
    """A Shopify order webhook, stored and pending: (delivery id, order id)."""
    external_id = uuid.uuid4().int % 10**13
    body = dumps(shopify_order(id=external_id))
    headers = shopify_headers(body)
    response = client.http.post("/webhooks/shopify", headers=headers, body=body)
    assert response.status_code == 200, response.body
    return headers["X-Shopify-Webhook-Id"], order_id_for("shopify", SHOP, str(external_id))


@pytest.fixture
def stuck_and_alerted(stack: dict[str, str]) -> Iterator[list[str]]:
    """150 deliveries pending since long ago, each alerted already: older than anything else
    pending, so a sweep that reads the oldest 100 sees only these."""
    ddb = boto3.client("dynamodb")
    keys = [f"stuck#{uuid.uuid4().hex}" for _ in range(150)]
    for n, pk in enumerate(keys):
        ddb.put_item(TableName=stack["INBOX_TABLE"], Item={
            "pk": {"S": pk}, "pending": {"S": "pending"}, "source": {"S": "stuck"},
            "received_at": {"S": f"2002-01-01T00:{n // 60:02d}:{n % 60:02d}.000000Z"},
            "alerted_at": {"S": "2002-01-01T00:10:00.000000Z"}})
    yield keys
    for pk in keys:
        ddb.delete_item(TableName=stack["INBOX_TABLE"], Key={"pk": {"S": pk}})


def test_a_new_stuck_delivery_is_alerted_however_many_are_stuck_before_it(
        client: Client, stack: dict[str, str], stuck_and_alerted: list[str]) -> None:
    delivery, _order = post_order(client)
    alerts_received(stack)
    assert order_worker.sweep_unprocessed(utcnow() + timedelta(minutes=11)) >= 1
    subjects = [a["subject"] for a in alerts_received(stack)
                if a["kind"] == "delivery.unprocessed"]
    assert subjects.count(f"shopify#{delivery}") == 1
    assert not set(subjects) & set(stuck_and_alerted)  # alerted before: not again
    assert inbox_item(stack, "shopify", delivery)["alerted_at"]


def test_a_stuck_delivery_is_re_driven_with_back_off_and_alerted_once(
        client: Client, stack: dict[str, str]) -> None:
    delivery, _order = post_order(client)
    received = parse_iso(inbox_item(stack, "shopify", delivery)["received_at"])
    alerts_received(stack)

    def sweep_at(after: timedelta) -> dict[str, Any]:
        order_worker.sweep_unprocessed(received + after)
        item = inbox_item(stack, "shopify", delivery)
        assert item is not None and item["pending"] == "pending"
        return item

    assert "alerted_at" not in sweep_at(timedelta(minutes=9))
    first = sweep_at(timedelta(minutes=11))  # alerted, and touched: through the stream again
    assert first["alerted_at"] == iso(received + timedelta(minutes=11))
    assert first["redrives"] == 1
    assert sweep_at(timedelta(minutes=25))["redrives"] == 1  # not yet: the next is at 30 min
    second = sweep_at(timedelta(minutes=31))
    assert second["redrives"] == 2
    assert second["redriven_at"] == iso(received + timedelta(minutes=31))
    assert sweep_at(timedelta(minutes=90))["redrives"] == 2  # then at 2 h
    assert sweep_at(timedelta(hours=2, minutes=1))["redrives"] == 3
    assert sweep_at(timedelta(hours=6, minutes=1))["redrives"] == 4
    last = sweep_at(timedelta(hours=24, minutes=1))
    assert last["redrives"] == 5 and "redrive_at" not in last  # the last: it stays pending
    assert sweep_at(timedelta(days=3))["redrives"] == 5
    subjects = [a["subject"] for a in alerts_received(stack)
                if a["kind"] == "delivery.unprocessed"]
    assert subjects.count(f"shopify#{delivery}") == 1  # one alert, however many re-drives

    # Each re-drive is a new image on the inbox stream, which the worker applies.
    streams = boto3.client("dynamodbstreams")
    arn = stack["INBOX_STREAM_ARN"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    images = 0
    while iterator:
        answer = streams.get_records(ShardIterator=iterator, Limit=1000)
        if not answer["Records"]:
            break
        images += sum(1 for r in answer["Records"]
                      if r["dynamodb"]["Keys"]["pk"]["S"] == f"shopify#{delivery}"
                      and "pending" in r["dynamodb"].get("NewImage", {}))
        iterator = answer.get("NextShardIterator")
    assert images == 1 + 5  # the insert, then one per re-drive


def test_an_applied_delivery_is_not_re_driven(client: Client, stack: dict[str, str]) -> None:
    from tests.integration.flow import process

    delivery, _order = post_order(client)
    received = parse_iso(inbox_item(stack, "shopify", delivery)["received_at"])
    order_worker.sweep_unprocessed(received + timedelta(minutes=11))
    assert process(client, stack, "shopify", delivery) == {"batchItemFailures": []}
    order_worker.sweep_unprocessed(received + timedelta(minutes=31))
    item = inbox_item(stack, "shopify", delivery)
    assert item is not None and "pending" not in item
    assert item["redrives"] == 1 and "redrive_at" not in item


def test_a_dead_lettered_batch_names_its_deliveries_and_orders(
        client: Client, stack: dict[str, str]) -> None:
    start = _stream_end(stack)
    (first, first_order), (second, second_order) = post_order(client), post_order(client)
    record = _failure_record(stack, [first, second], start)
    alerts_received(stack)
    event = client.events.generate_sqs_event(message_bodies=[record],
                                             queue_name=stack["INBOX_DLQ_NAME"])
    assert client.lambda_.invoke("inbox_dead_letters", event).payload == {
        "batchItemFailures": []}
    (alert,) = [a for a in alerts_received(stack) if a["kind"] == "worker.dead_letter"]
    info = json.loads(record)["DDBStreamBatchInfo"]
    assert alert["subject"] == f"{info['shardId']}:{info['startSequenceNumber']}"
    assert alert["facts"]["deliveries"] == [f"shopify#{first}", f"shopify#{second}"]
    assert alert["facts"]["orders"] == [first_order, second_order]
    assert alert["facts"]["named_by"].startswith("stream records ")
    assert f"shopify#{first}" in alert["summary"] and second_order in alert["summary"]


def test_a_dead_lettered_batch_the_stream_dropped_names_what_is_still_pending(
        client: Client, stack: dict[str, str]) -> None:
    delivery, order = post_order(client)
    ddb = boto3.client("dynamodb")
    ddb.update_item(TableName=stack["INBOX_TABLE"], Key={"pk": {"S": f"shopify#{delivery}"}},
                    UpdateExpression="SET received_at = :t",
                    ExpressionAttributeValues={":t": {"S": "2000-06-01T00:00:00.000000Z"}})
    failure = {"requestContext": {"condition": "RetryAttemptsExhausted",
                                  "approximateInvokeCount": 6},
               "DDBStreamBatchInfo": {
                   "shardId": "shardId-00000001541626099285-00000000",
                   "startSequenceNumber": "100000000000000000100",
                   "endSequenceNumber": "100000000000000000100", "batchSize": 1,
                   "approximateArrivalOfFirstRecord": "2000-06-01T00:00:00.000Z",
                   "approximateArrivalOfLastRecord": "2000-06-01T00:00:01.000Z",
                   "streamArn": stack["INBOX_STREAM_ARN"].replace("inbox", "gone")}}
    alerts_received(stack)
    event = client.events.generate_sqs_event(message_bodies=[json.dumps(failure)],
                                             queue_name=stack["INBOX_DLQ_NAME"])
    try:
        client.lambda_.invoke("inbox_dead_letters", event)
        (alert,) = [a for a in alerts_received(stack) if a["kind"] == "worker.dead_letter"]
        assert f"shopify#{delivery}" in alert["facts"]["deliveries"]
        assert order in alert["facts"]["orders"]
        assert "the stream no longer has records" in alert["facts"]["named_by"]
    finally:
        ddb.delete_item(TableName=stack["INBOX_TABLE"], Key={"pk": {"S": f"shopify#{delivery}"}})
