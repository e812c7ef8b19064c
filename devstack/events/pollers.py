"""Local event runner: Lambda's event source mappings and EventBridge schedules, without AWS.

`chalice local` serves only HTTP and moto's server invokes nothing, so this module does locally
what AWS does in the cloud: it polls the app's SQS queues and DynamoDB streams, fires its
schedules, and calls the same handlers with the event shapes Lambda would give them.

Failures are handled as in the cloud, so retries and dead letters can be exercised locally:

* SQS: a raising handler deletes nothing; a ``batchItemFailures`` response deletes all but the
  listed messages (``ReportBatchItemFailures``). Failed messages become visible again after
  ``retry_visibility_seconds`` (default 2 s) rather than after the queue's full visibility
  timeout, so local retries are quick. The queue's RedrivePolicy, applied by the SQS endpoint
  on receive, moves a message to its dead-letter queue after ``maxReceiveCount`` receives.
* DynamoDB streams: as a mapping with ``ReportBatchItemFailures``, ``MaximumRetryAttempts``
  (``max_retry_attempts``) and an on-failure SQS destination (``stream_failure_queue_url``).
  Batches are not bisected (``BisectBatchOnFunctionError``): a failing batch is retried whole,
  or from the checkpoint a partial batch response names.
* Schedules: EventBridge invokes asynchronously and Lambda retries a failed async invocation
  twice; so does the runner, after ``schedule_retry_delays`` (seconds here, minutes in AWS).

Handlers get JSON-decoded events and must return JSON-serializable results, as in Lambda.
The pure parts (rate expressions, event builders) do no I/O and are unit-tested on their own.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from types import ModuleType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import (
    BaseEventSourceConfig,
    Chalice,
    DynamoDBEventConfig,
    ScheduledEventConfig,
    ScheduleExpression,
    SQSEventConfig,
)

logger = logging.getLogger(__name__)

Json = dict[str, Any]
Handler = Callable[[Json, Any], Any]

# moto's default account; used only if STS cannot be asked.
_DEFAULT_ACCOUNT = "123456789012"
_DESCRIBE_INTERVAL = 10.0  # seconds between looks for new stream shards
_MISSING_RETRY = 1.0  # seconds between looks for a queue or stream that does not exist yet
_ERROR_BACKOFF = 1.0  # pause of a background loop after an unexpected error
_QUEUE_IDLE = 0.2  # pause of a queue loop whose receive returned at once with nothing
_SCHEDULE_TICK = 0.25
_STOP_TIMEOUT = 1.8
_MAX_SQS_BATCH = 10  # ReceiveMessage's limit
_MAX_STREAM_READ = 1000  # GetRecords' limit
_NON_EXISTENT_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


def utcnow() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# Schedule expressions (EventBridge's rate syntax; times are UTC)
# --------------------------------------------------------------------------------------------

_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)")
_RATE_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True)
class RateSchedule:
    """``rate(N unit)``: every ``interval``, counted from the rule's creation (the anchor)."""

    interval: timedelta

    def next_fire(self, after: datetime, anchor: datetime) -> datetime:
        """The first ``anchor + k * interval`` (k >= 1) strictly after ``after``."""
        after, anchor = _utc(after), _utc(anchor)
        periods = max(1, (after - anchor) // self.interval + 1)
        return anchor + periods * self.interval


def parse_schedule(expression: str | ScheduleExpression) -> RateSchedule:
    """Parse an EventBridge ``rate(...)`` expression; ValueError for anything else.

    app.py schedules with rate(...) only, so the runner has no cron parser. A cron(...) schedule
    is refused here, when the runner reads the app, rather than left never to fire.
    """
    text = (expression if isinstance(expression, str) else expression.to_string()).strip()
    if text.startswith("cron("):
        raise ValueError(
            f"{text!r}: the local event runner runs rate(...) schedules only, not cron(...)"
        )
    if not text.startswith("rate("):
        raise ValueError(f"{text!r} is not a rate(...) expression")
    return _parse_rate(text)


def _parse_rate(text: str) -> RateSchedule:
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r}: expected rate(<positive integer> <minute|hour|day>[s])")
    value, unit = int(match[1]), match[2]
    base = unit.removesuffix("s")
    if base not in _RATE_UNITS or value < 1:
        raise ValueError(f"{text!r}: expected rate(<positive integer> <minute|hour|day>[s])")
    # EventBridge rejects "rate(1 minutes)" and "rate(5 minute)"; fail here rather than deploying.
    if (value == 1) != (unit == base):
        raise ValueError(f"{text!r}: use the singular unit for 1 and the plural otherwise")
    return RateSchedule(interval=value * _RATE_UNITS[base])


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC (EventBridge schedules and boto3 both use UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime, millis: bool = False) -> str:
    moment = _utc(moment)
    fraction = f".{moment.microsecond // 1000:03d}" if millis else ""
    return f"{moment:%Y-%m-%dT%H:%M:%S}{fraction}Z"


# --------------------------------------------------------------------------------------------
# Events as Lambda builds them (pure: boto3 responses in, Lambda event dicts out)
# --------------------------------------------------------------------------------------------


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
        return int(_utc(value).timestamp())
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


# --------------------------------------------------------------------------------------------
# Invocation
# --------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Function:
    function_name: str  # the Lambda function's name, as Chalice names it
    handler: Handler


def _resolve_handler(
    app: Chalice, app_module: ModuleType, config: BaseEventSourceConfig
) -> Handler:
    """The callable Lambda would run for ``handler_string`` (``app.name`` or a blueprint's)."""
    module_name, _, attribute = config.handler_string.rpartition(".")
    module = app_module if module_name in ("", "app") else importlib.import_module(module_name)
    handler = getattr(module, attribute, None) or app.handler_map.get(config.name)
    if not callable(handler):
        raise ValueError(f"{config.handler_string}: no such handler in {module.__name__}")
    return handler


# --------------------------------------------------------------------------------------------
# Event sources
# --------------------------------------------------------------------------------------------


class _QueuePoller:
    """One ``on_sqs_message`` mapping."""

    def __init__(self, runner: EventRunner, config: SQSEventConfig, function: _Function) -> None:
        self._runner = runner
        self._function = function
        self.name, self._owner = _queue_identity(config)
        self._max_messages = max(1, min(config.batch_size, _MAX_SQS_BATCH))
        self._url: str | None = None
        self._arn = ""
        self._next_lookup = 0.0
        self._missing_logged = False
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def retry_pending(self) -> float | None:
        """Seconds until failed messages are visible again, if they are not yet."""
        remaining = self._retry_at - time.monotonic()
        return remaining if remaining > 0 else None

    def poll(self, wait_seconds: int) -> int:
        with self._lock:
            if not self._resolve():
                return 0
            try:
                messages = self._receive(wait_seconds)
            except ClientError as exc:
                if _error_code(exc) not in _NON_EXISTENT_QUEUE:
                    raise
                self._url = None  # deleted under us; look it up again later
                return 0
            if messages:
                self._handle(messages)
            return len(messages)

    def _resolve(self) -> bool:
        # Looked up lazily: the local stack may create the queue after the runner exists.
        if self._url is not None:
            return True
        if time.monotonic() < self._next_lookup:
            return False
        sqs = self._runner.sqs
        owner = {"QueueOwnerAWSAccountId": self._owner} if self._owner else {}
        try:
            url = str(sqs.get_queue_url(QueueName=self.name, **owner)["QueueUrl"])
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        except ClientError as exc:
            if _error_code(exc) not in _NON_EXISTENT_QUEUE:
                raise
            if not self._missing_logged:
                logger.warning("queue %s does not exist (yet); waiting for it", self.name)
                self._missing_logged = True
            self._next_lookup = time.monotonic() + _MISSING_RETRY
            return False
        self._url, self._arn = url, str(attributes["Attributes"]["QueueArn"])
        return True

    def _receive(self, wait_seconds: int) -> list[Json]:
        response = self._runner.sqs.receive_message(
            QueueUrl=self._url,
            WaitTimeSeconds=wait_seconds,
            MaxNumberOfMessages=self._max_messages,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def _handle(self, messages: list[Json]) -> None:
        event = sqs_event(messages, self._arn, self._runner.region)
        what = f"{len(messages)} message(s) from {self.name}"
        ok, result = self._runner.invoke(self._function, event, what)
        ids = [message["MessageId"] for message in messages]
        failed = failed_item_ids(result, ids) if ok else None
        if ok and failed is None:
            logger.error("%s: invalid batchItemFailures %r; whole batch failed", what, result)
        failed_ids = set(ids if failed is None else failed)
        self._delete([m for m in messages if m["MessageId"] not in failed_ids])
        self._release([m for m in messages if m["MessageId"] in failed_ids])

    def _delete(self, messages: list[Json]) -> None:
        if not messages:
            return
        entries = [
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
            for index, message in enumerate(messages)
        ]
        response = self._runner.sqs.delete_message_batch(QueueUrl=self._url, Entries=entries)
        for failure in response.get("Failed", []):
            logger.error("queue %s: could not delete a handled message: %s", self.name, failure)

    def _release(self, messages: list[Json]) -> None:
        # Lambda leaves failed messages to the queue's visibility timeout; shortening it keeps
        # local retries quick while the receive count (and so the redrive) stays as in AWS.
        if not messages:
            return
        seconds = self._runner.retry_visibility_seconds
        entries = [
            {
                "Id": str(index),
                "ReceiptHandle": message["ReceiptHandle"],
                "VisibilityTimeout": seconds,
            }
            for index, message in enumerate(messages)
        ]
        response = self._runner.sqs.change_message_visibility_batch(
            QueueUrl=self._url, Entries=entries
        )
        for failure in response.get("Failed", []):
            logger.error("queue %s: could not release a failed message: %s", self.name, failure)
        self._retry_at = time.monotonic() + seconds
        logger.warning(
            "queue %s: %d message(s) failed; visible again in %d s",
            self.name,
            len(messages),
            seconds,
        )


def _stream_label(arn: str) -> str:
    """'<table> stream' for logs; stream ARNs are long."""
    resource = arn.split(":", 5)[-1]
    if resource.startswith("table/") and "/stream/" in resource:
        return f"{resource.split('/')[1]} stream"
    return arn


def _queue_identity(config: SQSEventConfig) -> tuple[str, str | None]:
    """Queue name and owning account (only known from an ARN)."""
    if config.queue:
        return config.queue, None
    arn = config.queue_arn or ""
    parts = arn.split(":")
    if len(parts) != 6:
        raise ValueError(f"{config.name}: {arn!r} is not an SQS queue ARN")
    return parts[5], parts[4]


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    iterator_type: str  # where reading starts the first time
    iterator: str | None = None
    buffer: list[Json] = field(default_factory=list)  # read, not yet handled; in shard order
    last_read: str | None = None  # sequence number of the newest record read
    closed: bool = False  # the shard has ended: nothing beyond ``buffer``
    finished: bool = False
    failing_sequence: str | None = None  # the record the current failures are about
    failures: int = 0
    retry_at: float = 0.0


class _StreamPoller:
    """One ``on_dynamodb_record`` mapping."""

    def __init__(
        self, runner: EventRunner, config: DynamoDBEventConfig, function: _Function
    ) -> None:
        self._runner = runner
        self._function = function
        self.arn = config.stream_arn
        self.name = _stream_label(config.stream_arn)
        self._batch_size = max(1, config.batch_size)
        self._starting_position = config.starting_position or "TRIM_HORIZON"
        self._shards: dict[str, _Shard] = {}
        self._described = False
        self._next_describe = 0.0
        self._missing_logged = False
        self._lock = threading.Lock()

    def retry_pending(self) -> float | None:
        now = time.monotonic()
        waits = [s.retry_at - now for s in self._shards.values() if s.retry_at > now]
        return min(waits) if waits else None

    def poll(self) -> int:
        with self._lock:
            self._discover()
            return sum(self._poll_shard(shard) for shard in self._ready_shards())

    def _discover(self) -> None:
        now = time.monotonic()
        if now < self._next_describe:
            return
        try:
            shards = self._describe()
        except ClientError as exc:
            if _error_code(exc) != "ResourceNotFoundException":
                raise
            if not self._missing_logged:
                logger.warning("%s does not exist (yet); waiting for it", self.arn)
                self._missing_logged = True
            self._next_describe = now + _MISSING_RETRY
            return
        # The mapping's starting position applies to the shards it starts with; shards that
        # appear later are read from their beginning, as Lambda does.
        position = "TRIM_HORIZON" if self._described else self._starting_position
        for shard in shards:
            if shard["ShardId"] not in self._shards:
                self._shards[shard["ShardId"]] = _Shard(
                    shard["ShardId"], shard.get("ParentShardId"), position
                )
        self._described = True
        self._next_describe = now + _DESCRIBE_INTERVAL

    def _describe(self) -> list[Json]:
        shards: list[Json] = []
        request: Json = {"StreamArn": self.arn}
        while True:
            description = self._runner.streams.describe_stream(**request)["StreamDescription"]
            shards.extend(description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            request["ExclusiveStartShardId"] = last

    def _ready_shards(self) -> list[_Shard]:
        # A child shard waits until its parent is read to the end, which keeps item order.
        def parent_done(shard: _Shard) -> bool:
            parent = self._shards.get(shard.parent_id or "")
            return parent is None or parent.finished

        return [s for s in list(self._shards.values()) if not s.finished and parent_done(s)]

    def _poll_shard(self, shard: _Shard) -> int:
        if time.monotonic() < shard.retry_at:
            return 0
        if len(shard.buffer) < self._batch_size and not shard.closed:
            self._read(shard)
        if not shard.buffer:
            shard.finished = shard.closed
            return 0
        batch = shard.buffer[: self._batch_size]
        records = [dynamodb_record(r, self.arn, self._runner.region) for r in batch]
        what = f"{len(records)} record(s) from {self.name}"
        ok, result = self._runner.invoke(self._function, {"Records": records}, what)
        sequences = [r["dynamodb"]["SequenceNumber"] for r in records]
        failed = failed_item_ids(result, sequences) if ok else None
        if failed == []:
            del shard.buffer[: len(batch)]
            shard.failing_sequence, shard.failures = None, 0
            return len(batch)
        if ok and failed is None:
            logger.error("%s: invalid batchItemFailures %r; whole batch failed", what, result)
        # Lambda checkpoints just before the lowest failed sequence number and retries from it.
        checkpoint = 0 if failed is None else min(sequences.index(s) for s in failed)
        del shard.buffer[:checkpoint]
        self._failed(shard, records[checkpoint:])
        return len(batch)

    def _failed(self, shard: _Shard, records: list[Json]) -> None:
        head = records[0]["dynamodb"]["SequenceNumber"]
        shard.failures = shard.failures + 1 if shard.failing_sequence == head else 1
        shard.failing_sequence = head
        limit = self._runner.max_retry_attempts
        if 0 <= limit < shard.failures:  # -1 means retry until the record expires, as in AWS
            self._give_up(shard, records)
            del shard.buffer[: len(records)]
            shard.failing_sequence, shard.failures = None, 0
            return
        delay = self._runner.stream_backoff(shard.failures)
        shard.retry_at = time.monotonic() + delay
        logger.warning(
            "%s: retrying from sequence number %s in %.2f s (failed %d time(s))",
            self.name,
            head,
            delay,
            shard.failures,
        )

    def _give_up(self, shard: _Shard, records: list[Json]) -> None:
        runner = self._runner
        failure = stream_failure_record(
            records,
            shard_id=shard.shard_id,
            stream_arn=self.arn,
            function_arn=runner.function_arn(self._function),
            invoke_count=shard.failures,
            request_id=str(uuid.uuid4()),
            now=runner.now(),
        )
        batch_info = failure["DDBStreamBatchInfo"]
        span = f"{batch_info['startSequenceNumber']}..{batch_info['endSequenceNumber']}"
        if runner.stream_failure_queue_url is None:
            logger.error(
                "%s: retries exhausted for %s; no on-failure destination, dropped",
                self.name,
                span,
            )
            return
        try:
            runner.sqs.send_message(
                QueueUrl=runner.stream_failure_queue_url, MessageBody=json.dumps(failure)
            )
        except (BotoCoreError, ClientError):
            logger.exception("%s: could not send the on-failure record for %s", self.name, span)
            return
        logger.error(
            "%s: retries exhausted for %s; on-failure record sent to %s",
            self.name,
            span,
            runner.stream_failure_queue_url,
        )

    def _read(self, shard: _Shard) -> None:
        streams = self._runner.streams
        if shard.iterator is None:
            shard.iterator = self._iterator(shard)
        try:
            response = streams.get_records(ShardIterator=shard.iterator, Limit=_MAX_STREAM_READ)
        except ClientError as exc:
            if _error_code(exc) != "ExpiredIteratorException":
                raise
            shard.iterator = None  # iterators last 15 minutes in AWS; get a new one next pass
            return
        records = list(response.get("Records", []))
        shard.buffer.extend(records)
        if records:
            shard.last_read = records[-1]["dynamodb"]["SequenceNumber"]
        shard.iterator = response.get("NextShardIterator")
        shard.closed = shard.iterator is None

    def _iterator(self, shard: _Shard) -> str:
        position: Json = {"ShardIteratorType": shard.iterator_type}
        if shard.last_read is not None:
            position = {
                "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                "SequenceNumber": shard.last_read,
            }
        response = self._runner.streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard.shard_id, **position
        )
        return str(response["ShardIterator"])


@dataclass
class _Rule:
    function: _Function
    schedule: RateSchedule
    expression: str
    rule_name: str
    anchor: datetime  # when the rule "was created": rate schedules count from here
    next_due: datetime


@dataclass
class _ScheduleRetry:
    rule: _Rule
    event: Json
    attempt: int  # retries made so far, including this one
    at: float  # time.monotonic() when due


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------


class EventRunner:
    """Runs an app's queue consumers, stream consumers and schedules against an AWS endpoint.

    Drive it with :meth:`poll_once` / :meth:`drain` (tests) or :meth:`start` / :meth:`stop`
    (the local stack). Clients come from ``session``, so the endpoint comes from the
    environment (``AWS_ENDPOINT_URL``).
    """

    def __init__(
        self,
        app: Chalice,
        app_module: ModuleType,
        session: boto3.session.Session,
        *,
        stream_failure_queue_url: str | None = None,
        max_retry_attempts: int = 5,
        retry_visibility_seconds: int = 2,
        clock: Callable[[], datetime] = utcnow,
        stage: str = "local",
        account_id: str | None = None,
        sqs_wait_seconds: int = 1,
        stream_poll_interval: float = 0.5,
        stream_retry_backoff: float = 0.5,
        stream_retry_backoff_max: float = 8.0,
        schedule_retry_delays: Sequence[float] = (1.0, 2.0),
        function_timeout_seconds: float = 60.0,
        function_memory_mb: int = 128,
    ) -> None:
        """Read the event sources of ``app``; nothing is polled until asked.

        ``retry_visibility_seconds``: how long a failed SQS message stays invisible before its
        next try (AWS waits for the queue's visibility timeout). ``max_retry_attempts``: stream
        retries per record before giving up (-1: forever). ``sqs_wait_seconds``: the long poll
        of each receive (0 makes :meth:`drain` fast in tests). ``schedule_retry_delays``: the
        pauses before Lambda's two async retries of a failed scheduled invocation.
        """
        if max_retry_attempts < -1:
            raise ValueError("max_retry_attempts must be -1 (forever) or more")
        if not 0 <= retry_visibility_seconds <= 43200:
            raise ValueError("retry_visibility_seconds must be within 0-43200 (SQS's limit)")
        if not 0 <= sqs_wait_seconds <= 20:
            raise ValueError("sqs_wait_seconds must be within 0-20 (SQS's limit)")
        self.stream_failure_queue_url = stream_failure_queue_url
        self.max_retry_attempts = max_retry_attempts
        self.retry_visibility_seconds = retry_visibility_seconds
        self._clock = clock
        self._app_name = app.app_name
        self._stage = stage
        self._account_id = account_id
        self._sqs_wait_seconds = sqs_wait_seconds
        self._stream_poll_interval = stream_poll_interval
        self._stream_backoff = (stream_retry_backoff, stream_retry_backoff_max)
        self._schedule_retry_delays = tuple(schedule_retry_delays)
        self._timeout = function_timeout_seconds
        self._memory = function_memory_mb
        self.region = str(session.region_name or "us-east-1")
        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5)
        self.sqs = session.client("sqs", config=config)
        self.streams = session.client("dynamodbstreams", config=config)
        self._sts = session.client("sts", config=config)
        self._queues: list[_QueuePoller] = []
        self._streams: list[_StreamPoller] = []
        self._rules: list[_Rule] = []
        self._schedule_retries: list[_ScheduleRetry] = []
        self._schedule_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: dict[str, str] = {}  # last polling error per source, to log it once
        self._load_sources(app, app_module)

    # -- setup --------------------------------------------------------------------------------

    def _load_sources(self, app: Chalice, app_module: ModuleType) -> None:
        created = self.now()
        for config in app.event_sources:
            if isinstance(config, SQSEventConfig):
                self._queues.append(
                    _QueuePoller(self, config, self._function(app, app_module, config))
                )
            elif isinstance(config, DynamoDBEventConfig):
                self._streams.append(
                    _StreamPoller(self, config, self._function(app, app_module, config))
                )
            elif isinstance(config, ScheduledEventConfig):
                self._rules.append(
                    self._rule(config, self._function(app, app_module, config), created)
                )
            else:
                logger.warning("%s (%s) is not run locally", config.name, type(config).__name__)

    def _function(
        self, app: Chalice, app_module: ModuleType, config: BaseEventSourceConfig
    ) -> _Function:
        return _Function(
            function_name=f"{self._app_name}-{self._stage}-{config.name}",
            handler=_resolve_handler(app, app_module, config),
        )

    def _rule(self, config: ScheduledEventConfig, function: _Function, created: datetime) -> _Rule:
        expression = config.schedule_expression
        text = expression if isinstance(expression, str) else expression.to_string()
        try:
            schedule = parse_schedule(text)
        except ValueError as exc:
            # Raised while the runner reads the app, so `make run` stops at start-up and says
            # which handler's schedule it cannot run.
            raise ValueError(f"schedule of {config.name}: {exc}") from None
        return _Rule(
            function=function,
            schedule=schedule,
            expression=text,
            rule_name=f"{function.function_name}-event",  # as `chalice deploy` names rules
            anchor=created,
            next_due=schedule.next_fire(created, created),
        )

    # -- shared helpers used by the pollers ---------------------------------------------------

    def now(self) -> datetime:
        return _utc(self._clock())

    @property
    def account_id(self) -> str:
        if self._account_id is None:
            try:
                self._account_id = str(self._sts.get_caller_identity()["Account"])
            except (BotoCoreError, ClientError):
                logger.warning("could not ask STS for the account id; using %s", _DEFAULT_ACCOUNT)
                self._account_id = _DEFAULT_ACCOUNT
        return self._account_id

    def function_arn(self, function: _Function) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{function.function_name}"

    def stream_backoff(self, failures: int) -> float:
        base, cap = self._stream_backoff
        return float(min(base * 2 ** (failures - 1), cap))

    def invoke(self, function: _Function, event: Json, what: str) -> tuple[bool, Any]:
        """Call the handler as Lambda would; (False, None) if it raised."""
        # Lambda hands the function parsed JSON and serializes its result; doing the same here
        # catches events or results that would not survive the trip in the cloud.
        payload = json.loads(json.dumps(event))
        context = LambdaContext(
            function_name=function.function_name,
            function_arn=self.function_arn(function),
            memory_mb=self._memory,
            timeout_seconds=self._timeout,
        )
        started = time.monotonic()
        try:
            result = json.loads(json.dumps(function.handler(payload, context)))
        except Exception:
            logger.exception(
                "%s failed on %s (request %s)", function.function_name, what, context.aws_request_id
            )
            return False, None
        elapsed = (time.monotonic() - started) * 1000
        logger.info("%s handled %s in %.0f ms", function.function_name, what, elapsed)
        return True, result

    # -- public API ---------------------------------------------------------------------------

    def poll_once(self) -> int:
        """One pass over every queue and stream, then the due schedules; returns records handled."""
        steps: list[tuple[str, Callable[[], int]]] = [
            (q.name, partial(q.poll, self._sqs_wait_seconds)) for q in self._queues
        ]
        steps += [(s.name, s.poll) for s in self._streams]
        steps.append(("schedules", self.fire_schedules))
        return sum(self._safely(name, step) or 0 for name, step in steps)

    def drain(self, timeout: float = 30.0, idle_passes: int = 2) -> None:
        """Poll until ``idle_passes`` passes in a row handle nothing and no retry is pending.

        Raises TimeoutError if that does not happen within ``timeout`` seconds (for example a
        message that always fails on a queue without a dead-letter queue).
        """
        deadline = time.monotonic() + timeout
        idle = 0
        while idle < idle_passes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"event runner still busy after {timeout} s")
            handled = self.poll_once()
            waiting = self._retry_pending()
            idle = 0 if handled or waiting is not None else idle + 1
            if not handled and waiting is not None:
                time.sleep(min(waiting, 0.1))

    def fire_schedules(self, now: datetime | None = None) -> int:
        """Run the retries that are due and every schedule due at ``now``; returns invocations."""
        moment = self.now() if now is None else _utc(now)
        with self._schedule_lock:
            invoked = self._run_schedule_retries()
            for rule in self._rules:
                if rule.next_due > moment:
                    continue
                due = rule.next_due
                # Missed fires (the runner was not running) collapse into one, like a late rule.
                rule.next_due = rule.schedule.next_fire(moment, rule.anchor)
                self._fire(rule, self._scheduled_event(rule, due), attempt=0)
                invoked += 1
            return invoked

    def start(self) -> None:
        """Poll in background threads (one per queue and stream, one for schedules)."""
        if self._threads:
            raise RuntimeError("the event runner is already running")
        self._stop.clear()
        loops: list[tuple[str, Callable[[], int], float]] = [
            (f"sqs {q.name}", partial(q.poll, self._sqs_wait_seconds), _QUEUE_IDLE)
            for q in self._queues
        ]
        loops += [(s.name, s.poll, self._stream_poll_interval) for s in self._streams]
        if self._rules:
            loops.append(("schedules", self.fire_schedules, _SCHEDULE_TICK))
        for name, step, idle in loops:
            thread = threading.Thread(
                target=self._loop, args=(name, step, idle), name=f"events: {name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the background threads; waits at most about 2 s (a long poll ends within 1 s)."""
        self._stop.set()
        deadline = time.monotonic() + _STOP_TIMEOUT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [thread.name for thread in self._threads if thread.is_alive()]
        if busy:
            logger.warning("still finishing after stop (daemon threads): %s", ", ".join(busy))
        self._threads = []

    # -- internals ----------------------------------------------------------------------------

    def _loop(self, name: str, step: Callable[[], int], idle: float) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            handled = self._safely(name, step)
            if handled is None:
                self._stop.wait(_ERROR_BACKOFF)
            elif not handled:
                self._stop.wait(max(0.0, idle - (time.monotonic() - started)))

    def _safely(self, name: str, step: Callable[[], int]) -> int | None:
        """``step()``, or None if it raised: one broken source must not stop the others."""
        try:
            handled = step()
        except Exception as exc:
            # A source that stays broken would log the same traceback on every pass.
            error = f"{type(exc).__name__}: {exc}"
            repeated = self._errors.get(name) == error
            self._errors[name] = error
            level = logging.DEBUG if repeated else logging.ERROR
            logger.log(level, "event source %s: polling failed", name, exc_info=True)
            return None
        if self._errors.pop(name, None) is not None:
            logger.info("event source %s: polling works again", name)
        return handled

    def _retry_pending(self) -> float | None:
        now = time.monotonic()
        waits = [q.retry_pending() for q in self._queues]
        waits += [s.retry_pending() for s in self._streams]
        with self._schedule_lock:
            waits += [max(0.0, r.at - now) for r in self._schedule_retries]
        pending = [wait for wait in waits if wait is not None]
        return min(pending) if pending else None

    def _scheduled_event(self, rule: _Rule, due: datetime) -> Json:
        rule_arn = f"arn:aws:events:{self.region}:{self.account_id}:rule/{rule.rule_name}"
        return scheduled_event(
            rule_arn=rule_arn,
            account=self.account_id,
            region=self.region,
            time=due,
            event_id=str(uuid.uuid4()),
        )

    def _fire(self, rule: _Rule, event: Json, attempt: int) -> None:
        what = f"{rule.expression} at {event['time']}"
        ok, _ = self.invoke(rule.function, event, what)
        if ok:
            return
        if attempt < len(self._schedule_retry_delays):
            at = time.monotonic() + self._schedule_retry_delays[attempt]
            self._schedule_retries.append(_ScheduleRetry(rule, event, attempt + 1, at))
        else:
            logger.error("%s: gave up on %s after %d attempts", rule.rule_name, what, attempt + 1)

    def _run_schedule_retries(self) -> int:
        now = time.monotonic()
        due = [retry for retry in self._schedule_retries if retry.at <= now]
        self._schedule_retries = [retry for retry in self._schedule_retries if retry.at > now]
        for retry in due:
            # Lambda's async retries deliver the same event (same id) again.
            self._fire(retry.rule, retry.event, retry.attempt)
        return len(due)
