"""Drive the app the way Lambda would: HTTP through chalice.test.Client, stream records built
from what the webhook actually stored (Chalice has no stream-event generator)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
from chalice.test import Client

from chalicelib.core.dynamodb import from_attrs


def stream_event(keys: list[dict[str, Any]], table: str, stream_arn: str,
                 event_name: str = "INSERT") -> dict[str, Any]:
    """A Lambda DynamoDB-stream event for the inbox items with these keys, as stored now."""
    ddb = boto3.client("dynamodb")
    records = []
    for n, key in enumerate(keys):
        image = ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
        records.append({
            "eventID": uuid.uuid4().hex,
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": int(datetime.now(UTC).timestamp()),
                "Keys": key,
                "NewImage": image,
                "SequenceNumber": str(10**20 + n),
                "SizeBytes": len(json.dumps(image)),
                "StreamViewType": "NEW_IMAGE",
            },
            "eventSourceARN": stream_arn,
        })
    return {"Records": records}


def inbox_key(source: str, delivery_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"{source}#{delivery_id}"}}


def inbox_item(env: dict[str, str], source: str, delivery_id: str) -> dict[str, Any] | None:
    answer = boto3.client("dynamodb").get_item(
        TableName=env["INBOX_TABLE"], Key=inbox_key(source, delivery_id), ConsistentRead=True)
    return from_attrs(answer["Item"]) if "Item" in answer else None


def process(client: Client, env: dict[str, str], source: str, *delivery_ids: str) -> Any:
    event = stream_event([inbox_key(source, d) for d in delivery_ids], env["INBOX_TABLE"],
                         env["INBOX_STREAM_ARN"])
    return client.lambda_.invoke("order_worker", event).payload


def alerts_received(env: dict[str, str]) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=env["ALERTS_QUEUE_NAME"])["QueueUrl"]
    found: list[dict[str, Any]] = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
