"""The local event runner against moto's server: Lambda-shaped events, retries, dead letters.

Each test builds a tiny Chalice app and its own queues/tables with boto3 (not from infra/), so
the runner is checked on its own. Retry delays are shortened to keep the module fast.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from chalice import Chalice, Cron
from chalice.app import CloudWatchEvent, DynamoDBEvent, SQSEvent

from devstack.events import EventRunner

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
LOGGER = "devstack.events"
FAST = {
    "sqs_wait_seconds": 0,
    "retry_visibility_seconds": 0,
    "stream_retry_backoff": 0.01,
    "stream_retry_backoff_max": 0.02,
    "schedule_retry_delays": (0.0, 0.0),
}


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def session() -> Iterator[Any]:
    """moto's server in-process for this module; the environment points boto3 at it."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    patch = pytest.MonkeyPatch()
    patch.delenv("AWS_PROFILE", raising=False)
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        patch.setenv(name, value)
    try:
        yield boto3.session.Session()
    finally:
        server.stop()
        patch.undo()


@pytest.fixture
def sqs(session: Any) -> Any:
    return session.client("sqs")


@pytest.fixture
def dynamodb(session: Any) -> Any:
    return session.client("dynamodb")


@pytest.fixture
def runners() -> Iterator[list[EventRunner]]:
    """Runners a test started; stopped even if the test fails."""
    started: list[EventRunner] = []
    yield started
    for runner in started:
        runner.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def module_with(**handlers: Any) -> ModuleType:
    """A stand-in for app.py: Chalice's handler strings are 'app.<function name>'."""
    module = ModuleType("app")
    for name, handler in handlers.items():
        setattr(module, name, handler)
    return module


def make_queue(sqs: Any, name: str, **attributes: str) -> tuple[str, str]:
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return url, arn["QueueArn"]


def make_queue_with_dlq(sqs: Any, name: str, max_receives: int) -> tuple[str, str, str]:
    dlq_url, dlq_arn = make_queue(sqs, f"{name}-dlq")
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}
    url, arn = make_queue(sqs, name, RedrivePolicy=json.dumps(redrive), VisibilityTimeout="30")
    return url, arn, dlq_url


def messages_in(sqs: Any, url: str) -> int:
    """Visible plus in-flight messages: what has not been deleted."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
    ).get("Messages", [])
    return list(messages)


def make_table(dynamodb: Any, name: str) -> str:
    table = dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    return str(table["TableDescription"]["LatestStreamArn"])


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def pk(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["Keys"]["pk"]["S"])


ISO_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# -- SQS --------------------------------------------------------------------------------------


def test_sqs_handler_gets_lambda_records_and_success_deletes_them(session: Any, sqs: Any) -> None:
    name = unique("alerts")
    url, arn = make_queue(sqs, name)
    app = Chalice(app_name="runner-test")
    batches: list[dict[str, Any]] = []
    contexts: list[Any] = []

    @app.on_sqs_message(queue=name, batch_size=10)
    def consume(event: SQSEvent) -> None:
        batches.append(event.to_dict())
        contexts.append(event.context)
        assert [record.body for record in event] == [r["body"] for r in event.to_dict()["Records"]]

    attributes = {
        "kind": {"DataType": "String", "StringValue": "alert"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
    }
    sqs.send_message(QueueUrl=url, MessageBody="first", MessageAttributes=attributes)
    sqs.send_message(QueueUrl=url, MessageBody="second")
    sqs.send_message(QueueUrl=url, MessageBody="third")

    runner = EventRunner(app, module_with(consume=consume), session, **FAST)
    runner.drain()

    records = [record for batch in batches for record in batch["Records"]]
    assert sorted(r["body"] for r in records) == ["first", "second", "third"]
    assert len({r["messageId"] for r in records}) == 3
    assert messages_in(sqs, url) == 0
    for record in records:
        assert set(record) >= {
            "messageId",
            "receiptHandle",
            "body",
            "attributes",
            "messageAttributes",
            "md5OfBody",
            "eventSource",
            "eventSourceARN",
            "awsRegion",
        }
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == arn
        assert record["awsRegion"] == REGION
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
        assert set(record["attributes"]) >= {
            "ApproximateReceiveCount",
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
        }
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
    first = next(r for r in records if r["body"] == "first")
    assert first["messageAttributes"] == {
        "kind": {
            "stringValue": "alert",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "blob": {
            "binaryValue": base64.b64encode(b"\x00\x01\xff").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    assert "md5OfMessageAttributes" in first

    context = contexts[0]
    assert context.function_name == "runner-test-local-consume"
    assert context.invoked_function_arn == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:runner-test-local-consume"
    )
    assert context.memory_limit_in_mb == "128"
    assert context.log_group_name == "/aws/lambda/runner-test-local-consume"
    assert 0 < context.get_remaining_time_in_millis() <= 60_000
    assert len({c.aws_request_id for c in contexts}) == len(contexts)


def test_raising_handler_keeps_the_message_until_redrive_moves_it_to_the_dlq(
    session: Any, sqs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("inbox")
    url, _, dlq_url = make_queue_with_dlq(sqs, name, max_receives=3)
    app = Chalice(app_name="runner-test")
    receive_counts: list[str] = []

    @app.on_sqs_message(queue=name)
    def explode(event: SQSEvent) -> None:
        for record in event.to_dict()["Records"]:
            receive_counts.append(record["attributes"]["ApproximateReceiveCount"])
        raise RuntimeError("handler is broken")

    message_id = sqs.send_message(QueueUrl=url, MessageBody="poison")["MessageId"]
    # A 1 s retry delay instead of the queue's 30 s visibility timeout.
    runner = EventRunner(
        app, module_with(explode=explode), session, **{**FAST, "retry_visibility_seconds": 1}
    )
    caplog.set_level(logging.INFO, logger=LOGGER)

    assert runner.poll_once() == 1
    assert runner.poll_once() == 0  # invisible for the retry delay, not deleted
    assert messages_in(sqs, url) == 1
    failure = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert failure.exc_info is not None and "handler is broken" in caplog.text

    started = time.monotonic()
    runner.drain(timeout=10)
    assert time.monotonic() - started < 5  # the retry delay, not the visibility timeout

    assert receive_counts == ["1", "2", "3"]  # maxReceiveCount receives, then the redrive
    assert messages_in(sqs, url) == 0
    dead = receive_all(sqs, dlq_url)
    assert [(m["MessageId"], m["Body"]) for m in dead] == [(message_id, "poison")]


def test_partial_batch_response_deletes_only_the_successful_messages(
    session: Any, sqs: Any
) -> None:
    name = unique("alerts")
    url, _, dlq_url = make_queue_with_dlq(sqs, name, max_receives=2)
    app = Chalice(app_name="runner-test")
    handled: list[str] = []

    @app.on_sqs_message(queue=name, batch_size=10)
    def deliver(event: SQSEvent) -> dict[str, Any]:
        failures = []
        for record in event.to_dict()["Records"]:
            if record["body"].startswith("fail"):
                failures.append({"itemIdentifier": record["messageId"]})
            else:
                handled.append(record["body"])
        return {"batchItemFailures": failures}

    for body in ("ok-1", "fail-2", "ok-3", "fail-4"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    runner = EventRunner(app, module_with(deliver=deliver), session, **FAST)

    assert runner.poll_once() == 4
    assert messages_in(sqs, url) == 2  # the two reported failures stay
    runner.drain()

    assert sorted(handled) == ["ok-1", "ok-3"]  # each success handled once
    assert messages_in(sqs, url) == 0
    assert sorted(m["Body"] for m in receive_all(sqs, dlq_url)) == ["fail-2", "fail-4"]


def test_an_invalid_partial_batch_response_fails_the_whole_batch(session: Any, sqs: Any) -> None:
    name = unique("alerts")
    url, _ = make_queue(sqs, name)
    app = Chalice(app_name="runner-test")

    @app.on_sqs_message(queue=name, batch_size=10)
    def deliver(event: SQSEvent) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}

    sqs.send_message(QueueUrl=url, MessageBody="a")
    sqs.send_message(QueueUrl=url, MessageBody="b")
    runner = EventRunner(app, module_with(deliver=deliver), session, **FAST)
    assert runner.poll_once() == 2
    assert messages_in(sqs, url) == 2  # as Lambda: nothing deleted


def test_a_queue_created_after_the_runner_is_picked_up(session: Any, sqs: Any) -> None:
    name = unique("late")
    app = Chalice(app_name="runner-test")
    bodies: list[str] = []

    @app.on_sqs_message(queue=name)
    def consume(event: SQSEvent) -> None:
        bodies.extend(record.body for record in event)

    runner = EventRunner(app, module_with(consume=consume), session, **FAST)
    assert runner.poll_once() == 0  # the queue does not exist yet: no error
    url, _ = make_queue(sqs, name)
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    wait_for(lambda: runner.poll_once() > 0)
    assert bodies == ["hello"]


# -- DynamoDB streams -------------------------------------------------------------------------


def test_stream_handler_gets_lambda_records_in_order(session: Any, dynamodb: Any) -> None:
    table = unique("inbox")
    stream_arn = make_table(dynamodb, table)
    app = Chalice(app_name="runner-test")
    batches: list[list[dict[str, Any]]] = []

    @app.on_dynamodb_record(stream_arn=stream_arn, batch_size=2, starting_position="TRIM_HORIZON")
    def worker(event: DynamoDBEvent) -> None:
        batches.append(event.to_dict()["Records"])
        for record in event:  # Chalice can read what the runner built
            assert isinstance(record.timestamp, datetime)
            assert record.table_name == table

    before = int(time.time())
    dynamodb.put_item(
        TableName=table, Item={"pk": {"S": "a"}, "n": {"N": "1"}, "b": {"B": b"\x00\xff"}}
    )
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "2"}},
    )
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "b"}, "tags": {"SS": ["x", "y"]}})
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "b"}})

    runner = EventRunner(app, module_with(worker=worker), session, **FAST)
    runner.drain()

    assert [len(batch) for batch in batches] == [2, 2]
    records = [record for batch in batches for record in batch]
    assert [(r["eventName"], pk(r)) for r in records] == [
        ("INSERT", "a"),
        ("MODIFY", "a"),
        ("INSERT", "b"),
        ("REMOVE", "b"),
    ]
    sequences = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequences == sorted(sequences)
    insert, modify, _, remove = records
    for record in records:
        assert record["eventVersion"] == "1.1"
        assert record["eventSource"] == "aws:dynamodb"
        assert record["eventSourceARN"] == stream_arn
        assert record["awsRegion"] == REGION
        assert isinstance(record["eventID"], str) and record["eventID"]
        change = record["dynamodb"]
        assert type(change["ApproximateCreationDateTime"]) is int
        assert before - 1 <= change["ApproximateCreationDateTime"] <= time.time() + 1
        assert change["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(change["SizeBytes"], int)
    assert insert["dynamodb"]["NewImage"] == {
        "pk": {"S": "a"},
        "n": {"N": "1"},
        "b": {"B": base64.b64encode(b"\x00\xff").decode()},
    }
    assert "OldImage" not in insert["dynamodb"]
    assert modify["dynamodb"]["NewImage"]["n"] == {"N": "2"}
    assert modify["dynamodb"]["OldImage"]["n"] == {"N": "1"}
    assert "NewImage" not in remove["dynamodb"]
    assert remove["dynamodb"]["OldImage"]["tags"] == {"SS": ["x", "y"]}

    dynamodb.put_item(TableName=table, Item={"pk": {"S": "c"}})
    runner.drain()
    assert [(r["eventName"], pk(r)) for r in batches[-1]] == [("INSERT", "c")]
    assert len(batches) == 3  # nothing delivered twice


def test_a_stream_record_that_keeps_failing_goes_to_the_on_failure_queue(
    session: Any, sqs: Any, dynamodb: Any
) -> None:
    table = unique("inbox")
    stream_arn = make_table(dynamodb, table)
    failure_url, _ = make_queue(sqs, unique("stream-failures"))
    app = Chalice(app_name="runner-test")
    attempts: list[str] = []
    done: list[str] = []

    @app.on_dynamodb_record(stream_arn=stream_arn, batch_size=1, starting_position="TRIM_HORIZON")
    def worker(event: DynamoDBEvent) -> None:
        for record in event:
            key = record.keys["pk"]["S"]
            attempts.append(key)
            if key == "bad":
                raise ValueError("cannot handle this order")
            done.append(key)

    for key in ("good-1", "bad", "good-2"):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": key}})
    runner = EventRunner(
        app,
        module_with(worker=worker),
        session,
        stream_failure_queue_url=failure_url,
        max_retry_attempts=2,
        **FAST,
    )
    runner.drain()

    assert attempts == ["good-1", "bad", "bad", "bad", "good-2"]  # 1 try + 2 retries
    assert done == ["good-1", "good-2"]  # later records still processed
    [message] = receive_all(sqs, failure_url)
    failure = json.loads(message["Body"])
    shard_id = session.client("dynamodbstreams").describe_stream(StreamArn=stream_arn)[
        "StreamDescription"
    ]["Shards"][0]["ShardId"]
    info = failure["DDBStreamBatchInfo"]
    assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 3
    assert failure["requestContext"]["functionArn"] == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:runner-test-local-worker"
    )
    assert failure["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert failure["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", failure["timestamp"])
    assert info["shardId"] == shard_id
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert info["batchSize"] == 1
    assert info["streamArn"] == stream_arn
    assert ISO_SECONDS.fullmatch(info["approximateArrivalOfFirstRecord"])
    assert ISO_SECONDS.fullmatch(info["approximateArrivalOfLastRecord"])


def test_a_partial_stream_failure_retries_from_the_checkpoint(
    session: Any, sqs: Any, dynamodb: Any
) -> None:
    table = unique("inbox")
    stream_arn = make_table(dynamodb, table)
    failure_url, _ = make_queue(sqs, unique("stream-failures"))
    app = Chalice(app_name="runner-test")
    batches: list[list[str]] = []

    @app.on_dynamodb_record(stream_arn=stream_arn, batch_size=10, starting_position="TRIM_HORIZON")
    def worker(event: DynamoDBEvent) -> dict[str, Any]:
        records = list(event)
        batches.append([record.keys["pk"]["S"] for record in records])
        failed = [r.sequence_number for r in records if r.keys["pk"]["S"] == "bad"]
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in failed]}

    for key in ("g1", "bad", "g2"):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": key}})
    runner = EventRunner(
        app,
        module_with(worker=worker),
        session,
        stream_failure_queue_url=failure_url,
        max_retry_attempts=1,
        **FAST,
    )
    runner.drain()

    # g1 succeeded in the first batch; retries start at the failed record.
    assert batches == [["g1", "bad", "g2"], ["bad", "g2"]]
    [message] = receive_all(sqs, failure_url)
    info = json.loads(message["Body"])["DDBStreamBatchInfo"]
    assert info["batchSize"] == 2  # the batch it gave up on: bad and g2
    assert int(info["endSequenceNumber"]) == int(info["startSequenceNumber"]) + 1

    dynamodb.put_item(TableName=table, Item={"pk": {"S": "g3"}})
    runner.drain()
    assert batches[-1] == ["g3"]  # the stream moved on


def test_without_an_on_failure_queue_exhausted_records_are_dropped(
    session: Any, dynamodb: Any, caplog: pytest.LogCaptureFixture
) -> None:
    table = unique("inbox")
    stream_arn = make_table(dynamodb, table)
    app = Chalice(app_name="runner-test")
    calls: list[int] = []

    @app.on_dynamodb_record(stream_arn=stream_arn, starting_position="TRIM_HORIZON")
    def worker(event: DynamoDBEvent) -> None:
        calls.append(len(list(event)))
        raise RuntimeError("down")

    dynamodb.put_item(TableName=table, Item={"pk": {"S": "x"}})
    runner = EventRunner(app, module_with(worker=worker), session, max_retry_attempts=0, **FAST)
    runner.drain()
    assert calls == [1]
    assert "no on-failure destination, dropped" in caplog.text


# -- schedules --------------------------------------------------------------------------------


def test_schedules_fire_exactly_when_due(session: Any) -> None:
    created = datetime(2025, 1, 3, 8, 0, tzinfo=UTC)  # a Friday
    app = Chalice(app_name="runner-test")
    rate_events: list[dict[str, Any]] = []

    @app.schedule("rate(5 minutes)")
    def every_five(event: CloudWatchEvent) -> None:
        rate_events.append(event.to_dict())

    runner = EventRunner(app, module_with(every_five=every_five), session, clock=lambda: created)

    def fire(minutes: float) -> int:
        return runner.fire_schedules(created + timedelta(minutes=minutes))

    assert fire(0) == 0
    assert fire(4 + 59 / 60) == 0
    assert fire(5) == 1
    assert fire(5) == 0  # once per due time
    assert fire(9.99) == 0
    assert fire(10) == 1
    assert [e["time"] for e in rate_events] == ["2025-01-03T08:05:00Z", "2025-01-03T08:10:00Z"]
    assert fire(89) == 1  # missed fires collapse into one, as for a late rule
    assert fire(90) == 1  # 09:30 is on its grid
    assert fire(91) == 0
    assert runner.fire_schedules(datetime(2025, 1, 4, 9, 30, tzinfo=UTC)) == 1
    assert runner.fire_schedules(datetime(2025, 1, 6, 9, 29, tzinfo=UTC)) == 1

    event = rate_events[0]
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert event["version"] == "0"
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["account"] == ACCOUNT
    assert event["region"] == REGION
    assert event["detail"] == {}
    assert event["resources"] == [
        f"arn:aws:events:{REGION}:{ACCOUNT}:rule/runner-test-local-every_five-event"
    ]
    assert len({e["id"] for e in rate_events}) == len(rate_events)


def test_a_cron_schedule_is_refused_when_the_runner_reads_the_app(session: Any) -> None:
    app = Chalice(app_name="runner-test")

    @app.schedule(Cron(30, 9, "?", "*", "MON-FRI", "*"))
    def weekdays(event: CloudWatchEvent) -> None:
        raise AssertionError("never fired")

    with pytest.raises(ValueError, match=r"weekdays: .*rate\(\.\.\.\) schedules only"):
        EventRunner(app, module_with(weekdays=weekdays), session)


def test_a_failed_scheduled_invocation_is_retried_twice(session: Any) -> None:
    created = datetime(2025, 1, 3, 8, 0, tzinfo=UTC)
    app = Chalice(app_name="runner-test")
    flaky_ids: list[str] = []
    broken_ids: list[str] = []

    @app.schedule("rate(1 minute)")
    def flaky(event: CloudWatchEvent) -> None:
        flaky_ids.append(event.event_id)
        if len(flaky_ids) < 3:
            raise RuntimeError("not yet")

    @app.schedule("rate(1 hour)")
    def broken(event: CloudWatchEvent) -> None:
        broken_ids.append(event.event_id)
        raise RuntimeError("never")

    runner = EventRunner(
        app,
        module_with(flaky=flaky, broken=broken),
        session,
        clock=lambda: created,
        schedule_retry_delays=(0.0, 0.0),
    )
    assert runner.fire_schedules(created + timedelta(hours=1)) == 2
    assert runner.fire_schedules(created + timedelta(hours=1)) == 2  # first retries
    assert runner.fire_schedules(created + timedelta(hours=1)) == 2  # second retries
    assert runner.fire_schedules(created + timedelta(hours=1)) == 0  # given up / succeeded
    assert len(flaky_ids) == 3 and len(set(flaky_ids)) == 1  # the same event each time
    assert len(broken_ids) == 3 and len(set(broken_ids)) == 1


def test_each_function_gets_its_configured_timeout_and_memory_in_its_context(
    session: Any,
) -> None:
    """A scheduled run works to the time its context says is left: the runner gives each
    function the timeout and memory .chalice/config.json gives it in the cloud."""
    created = datetime(2025, 1, 3, 8, 0, tzinfo=UTC)
    app = Chalice(app_name="runner-test")
    seen: dict[str, tuple[float, str]] = {}

    @app.schedule("rate(1 minute)")
    def long_run(event: CloudWatchEvent) -> None:
        seen["long_run"] = (event.context.get_remaining_time_in_millis() / 1000,
                            event.context.memory_limit_in_mb)

    @app.schedule("rate(1 minute)")
    def plain(event: CloudWatchEvent) -> None:
        seen["plain"] = (event.context.get_remaining_time_in_millis() / 1000,
                         event.context.memory_limit_in_mb)

    config = {"lambda_timeout": 30, "lambda_memory_size": 512,
              "lambda_functions": {"long_run": {"lambda_timeout": 300,
                                                "lambda_memory_size": 1024}}}
    runner = EventRunner(app, module_with(long_run=long_run, plain=plain), session,
                         clock=lambda: created, chalice_config=config)
    assert runner.fire_schedules(created + timedelta(minutes=1)) == 2
    assert 299 < seen["long_run"][0] <= 300 and seen["long_run"][1] == "1024"
    assert 29 < seen["plain"][0] <= 30 and seen["plain"][1] == "512"


# -- background mode --------------------------------------------------------------------------


def test_start_runs_every_source_in_the_background_and_stop_is_prompt(
    session: Any, sqs: Any, dynamodb: Any, runners: list[EventRunner]
) -> None:
    name = unique("alerts")
    url, _ = make_queue(sqs, name)
    stream_arn = make_table(dynamodb, unique("inbox"))
    app = Chalice(app_name="runner-test")
    seen: list[str] = []
    lock = threading.Lock()

    @app.on_sqs_message(queue=name)
    def consume(event: SQSEvent) -> None:
        with lock:
            seen.extend(f"sqs:{record.body}" for record in event)

    @app.on_dynamodb_record(stream_arn=stream_arn, starting_position="TRIM_HORIZON")
    def worker(event: DynamoDBEvent) -> None:
        with lock:
            seen.extend(f"ddb:{record.keys['pk']['S']}" for record in event)

    @app.schedule("rate(1 minute)")
    def tick(event: CloudWatchEvent) -> None:
        with lock:
            seen.append("tick")

    now = [datetime.now(UTC)]
    # The real defaults (1 s long polls), so stop() is measured against them.
    runner = EventRunner(
        app,
        module_with(consume=consume, worker=worker, tick=tick),
        session,
        clock=lambda: now[0],
        stream_poll_interval=0.05,
    )
    runners.append(runner)
    runner.start()
    with pytest.raises(RuntimeError):
        runner.start()
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    dynamodb.put_item(TableName=stream_arn.split("/")[1], Item={"pk": {"S": "k1"}})
    now[0] += timedelta(minutes=1)
    wait_for(lambda: {"sqs:hello", "ddb:k1", "tick"} <= set(seen))

    started = time.monotonic()
    runner.stop()
    assert time.monotonic() - started < 2
    assert not [t for t in threading.enumerate() if t.name.startswith("events: ")]

    sqs.send_message(QueueUrl=url, MessageBody="after stop")
    time.sleep(0.3)
    assert "sqs:after stop" not in seen
    assert messages_in(sqs, url) == 1


def test_a_missing_or_broken_source_does_not_stop_the_others(
    session: Any, sqs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("alerts")
    url, _ = make_queue(sqs, name)
    app = Chalice(app_name="runner-test")
    bodies: list[str] = []

    @app.on_dynamodb_record(
        stream_arn=f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/missing/stream/2025-01-01T00:00:00"
    )
    def waiting(event: DynamoDBEvent) -> None:
        raise AssertionError("no stream, no records")

    @app.on_dynamodb_record(stream_arn="not-an-arn")
    def broken(event: DynamoDBEvent) -> None:
        raise AssertionError("no stream, no records")

    @app.on_sqs_message(queue=name)
    def consume(event: SQSEvent) -> None:
        bodies.extend(record.body for record in event)

    sqs.send_message(QueueUrl=url, MessageBody="still works")
    runner = EventRunner(
        app, module_with(waiting=waiting, broken=broken, consume=consume), session, **FAST
    )
    caplog.set_level(logging.WARNING, logger=LOGGER)
    runner.drain()
    assert bodies == ["still works"]
    assert "does not exist (yet)" in caplog.text  # the missing stream is waited for
    assert "event source not-an-arn: polling failed" in caplog.text


def test_endpoint_comes_from_the_environment(session: Any) -> None:
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    app = Chalice(app_name="runner-test")
    runner = EventRunner(app, module_with(), session)
    assert runner.sqs.meta.endpoint_url == os.environ["AWS_ENDPOINT_URL"]
