"""Event source mappings: one poller per SQS queue (``on_sqs_message``) and per DynamoDB stream
(``on_dynamodb_record``), each turning what it reads into Lambda's event and handling the
answer as Lambda does (deletes, retries, checkpoints, on-failure records)."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import DynamoDBEventConfig, SQSEventConfig

from devstack.events.shapes import (
    Json,
    dynamodb_record,
    failed_item_ids,
    sqs_event,
    stream_failure_record,
)

# One logger for the whole runner, as when it was one module: `make run` labels its lines
# devstack.events and tests capture them by that name.
logger = logging.getLogger("devstack.events")

Handler = Callable[[Json, Any], Any]

_DESCRIBE_INTERVAL = 10.0  # seconds between looks for new stream shards
_MISSING_RETRY = 1.0  # seconds between looks for a queue or stream that does not exist yet
_MAX_SQS_BATCH = 10  # ReceiveMessage's limit
_MAX_STREAM_READ = 1000  # GetRecords' limit
_NON_EXISTENT_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


@dataclass(frozen=True)
class Function:
    """A Lambda function as the runner knows it: its name, the handler it runs, and its own
    timeout and memory where its configuration sets them (else the runner's)."""

    function_name: str  # the Lambda function's name, as Chalice names it
    handler: Handler
    timeout_seconds: float | None = None
    memory_mb: int | None = None


class Runner(Protocol):
    """What a poller uses of the runner that owns it (EventRunner): its clients, its retry
    settings and its way of invoking a function. A protocol, so pollers need not import it."""

    sqs: Any
    streams: Any
    region: str
    retry_visibility_seconds: int
    max_retry_attempts: int
    stream_failure_queue_url: str | None

    def now(self) -> datetime: ...

    def function_arn(self, function: Function) -> str: ...

    def stream_backoff(self, failures: int) -> float: ...

    def invoke(self, function: Function, event: Json, what: str) -> tuple[bool, Any]: ...


class QueuePoller:
    """One ``on_sqs_message`` mapping."""

    def __init__(self, runner: Runner, config: SQSEventConfig, function: Function) -> None:
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


class StreamPoller:
    """One ``on_dynamodb_record`` mapping."""

    def __init__(
        self, runner: Runner, config: DynamoDBEventConfig, function: Function
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


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
