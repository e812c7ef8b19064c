"""Events as Lambda builds them (pure: boto3 responses in, Lambda event dicts out), the
partial batch responses handlers give back, and the context object handlers get."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from devstack.events.clock import as_utc, utcnow

Json = dict[str, Any]


def _iso(moment: datetime, millis: bool = False) -> str:
    moment = as_utc(moment)
    fraction = f".{moment.microsecond // 1000:03d}" if millis else ""
    return f"{moment:%Y-%m-%dT%H:%M:%S}{fraction}Z"


def sqs_event(messages: Sequence[Mapping[str, Any]], queue_arn: str, region: str) -> Json:
    return {"Records": [sqs_record(message, queue_arn, region) for message in messages]}


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> Json:
    """One ReceiveMessage message in the shape of a Lambda SQS event record."""
    record: Json = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _lambda_message_attribute(value: Mapping[str, Any]) -> Json:
    # Lambda uses lower-camel keys and base64 text where boto3 has already decoded to bytes.
    attribute: Json = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = _b64(value["BinaryValue"])
    attribute["stringListValues"] = list(value.get("StringListValues", []))
    attribute["binaryListValues"] = [_b64(item) for item in value.get("BinaryListValues", [])]
    attribute["dataType"] = value["DataType"]
    return attribute


def dynamodb_record(record: Mapping[str, Any], stream_arn: str, region: str) -> Json:
    """One GetRecords record in the shape of a Lambda DynamoDB stream event record."""
    change = record["dynamodb"]
    body: Json = {
        "ApproximateCreationDateTime": epoch_seconds(change["ApproximateCreationDateTime"]),
        "Keys": _wire_json(change["Keys"]),
    }
    for image in ("NewImage", "OldImage"):
        if image in change:
            body[image] = _wire_json(change[image])
    body["SequenceNumber"] = change["SequenceNumber"]
    body["SizeBytes"] = change["SizeBytes"]
    body["StreamViewType"] = change["StreamViewType"]
    event: Json = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": body,
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in record:  # TTL deletions carry the DynamoDB service principal
        event["userIdentity"] = dict(record["userIdentity"])
    return event


def epoch_seconds(value: datetime | float | int) -> int:
    """Stream records carry whole epoch seconds; boto3 hands them over as datetimes."""
    if isinstance(value, datetime):
        return int(as_utc(value).timestamp())
    return int(value)


def _wire_json(value: Any) -> Any:
    """DynamoDB JSON as it is on the wire: boto3 decodes B and BS values to bytes."""
    if isinstance(value, bytes | bytearray):
        return _b64(value)
    if isinstance(value, Mapping):
        return {key: _wire_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_wire_json(item) for item in value]
    return value


def _b64(value: bytes | bytearray | str) -> str:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    return base64.b64encode(raw).decode("ascii")


def scheduled_event(
    *, rule_arn: str, account: str, region: str, time: datetime, event_id: str
) -> Json:
    """The EventBridge "Scheduled Event" a rule delivers to its Lambda target."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": _iso(time),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def stream_failure_record(
    records: Sequence[Mapping[str, Any]],
    *,
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    invoke_count: int,
    request_id: str,
    now: datetime,
) -> Json:
    """Lambda's on-failure invocation record for a stream batch (Lambda-shaped ``records``)."""
    first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
    return {
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "version": "1.0",
        "timestamp": _iso(now, millis=True),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first["SequenceNumber"],
            "endSequenceNumber": last["SequenceNumber"],
            "approximateArrivalOfFirstRecord": _arrival(first),
            "approximateArrivalOfLastRecord": _arrival(last),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


def _arrival(change: Mapping[str, Any]) -> str:
    return _iso(datetime.fromtimestamp(change["ApproximateCreationDateTime"], UTC))


def failed_item_ids(response: Any, batch_ids: Sequence[str]) -> list[str] | None:
    """The ids a partial batch response reports as failed.

    [] means success. None means Lambda would count the whole batch as failed: a malformed
    response, or an itemIdentifier that is missing, empty or not in the batch.
    """
    if not isinstance(response, dict) or response.get("batchItemFailures") is None:
        return []
    items = response["batchItemFailures"]
    if not isinstance(items, list):
        return None
    failed: list[str] = []
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return None
        failed.append(identifier)
    return failed


class LambdaContext:
    """The parts of Lambda's Python context object that handlers and Powertools read."""

    def __init__(
        self, *, function_name: str, function_arn: str, memory_mb: int, timeout_seconds: float
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = function_arn
        # A string, as in the Lambda Python runtime (it comes from an environment variable).
        self.memory_limit_in_mb = str(memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{utcnow():%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
