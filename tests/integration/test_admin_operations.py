"""The admin's pipeline commands (pending, replay, redrive) against the local endpoint, and the
command line on a fresh machine (no AWS_* variables) against it and against AWS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.admin import cli as admin
from tests.integration.flow import inbox_item, process
from tests.support import FIXTURES, dumps, shopify_headers, shopify_order

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def environment_restored() -> Iterator[None]:
    """The command line settles its environment (stage names, APP_STAGE) in os.environ, as a
    process does: put it back for the tests that follow."""
    from chalicelib.core import aws
    from chalicelib.core.settings import settings

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    aws.reset()
    settings.cache_clear()


def post_order(client: Client, **changes: Any) -> str:
    """A Shopify order webhook, stored and pending; returns its delivery id."""
    body = dumps(shopify_order(id=uuid.uuid4().int % 10**13, **changes))
    headers = shopify_headers(body)
    response = client.http.post("/webhooks/shopify", headers=headers, body=body)
    assert response.status_code == 200, response.body
    return headers["X-Shopify-Webhook-Id"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """admin.main in this process: (exit status, stdout, stderr). The app's JSON log lines
    share stdout here once a test has imported app (its logger is installed process-wide),
    so they are left out: the command's own lines are what is checked."""
    capsys.readouterr()  # what came before (the webhook posted by the test) is not ours
    status = 0
    try:
        admin.main(["--stage", "test", *argv])
    except SystemExit as exc:
        status = 1 if isinstance(exc.code, str) else int(exc.code or 0)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    out, err = capsys.readouterr()
    return status, _without_logs(out), _without_logs(err)


def _without_logs(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith(("{\"timestamp\"", "{\"_aws\"")))


# --- pending ---------------------------------------------------------------------------------


def _plant(stack: dict[str, str], source: str, delivery_id: str, received_at: str,
           **extra: Any) -> None:
    from chalicelib.core.dynamodb import to_attrs

    boto3.client("dynamodb").put_item(TableName=stack["INBOX_TABLE"], Item=to_attrs({
        "pk": f"{source}#{delivery_id}", "source": source, "delivery_id": delivery_id,
        "scheme": "shopify", "topic": "orders/paid", "headers": {},
        "body": '{"email": "buyer-secret@example.com"}', "received_at": received_at,
        "pending": "pending", **extra}))


def test_pending_lists_deliveries_oldest_or_newest_first_in_pages_without_bodies(
        stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # Received long ago, so they head the oldest-first list whatever other tests left.
    mine = [f"old-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    for n, delivery in enumerate(mine):
        _plant(stack, "shopify", delivery, f"2001-01-01T00:00:0{n}.000000Z",
               **({"alerted_at": "2001-01-01T00:10:00.000000Z"} if n == 0 else {}))
    try:
        status, out, _ = run(capsys, "pending", "--limit", "2")
        assert status == 0
        header, first, second, footer = out.splitlines()
        assert header.split() == ["SOURCE", "DELIVERY", "ID", "RECEIVED", "(UTC)", "AGE",
                                  "ALERTED", "(UTC)"]
        assert first.split()[:4] == ["shopify", mine[0], "2001-01-01", "00:00:00"]
        assert first.split()[-2:] == ["2001-01-01", "00:10:00"]  # alerted
        assert second.split()[1] == mine[1] and second.split()[-1] == "no"
        assert first.split()[4].endswith("h") and first.split()[4].split("d")[0].isdigit()
        assert footer.startswith("2 shown, oldest first; next page: --after ")
        assert "buyer-secret" not in out

        cursor = footer.rsplit(" ", 1)[1]
        _, out, _ = run(capsys, "pending", "--limit", "2", "--after", cursor)
        assert out.splitlines()[1].split()[1] == mine[2]

        seen: list[str] = []  # newest first: every page, mine come last and reversed
        cursor = ""
        while True:
            _, out, _ = run(capsys, "pending", "--newest-first", "--limit", "100",
                            *(["--after", cursor] if cursor else []))
            lines = out.splitlines()
            seen += [line.split()[1] for line in lines[1:-1]]
            if "next page" not in lines[-1]:
                break
            cursor = lines[-1].rsplit(" ", 1)[1]
        assert [d for d in seen if d in mine] == mine[::-1]

        status, _, err = run(capsys, "pending", "--after", "not-a-cursor")
        assert status == 1 and "not a cursor printed by `pending`" in err
    finally:
        for delivery in mine:
            boto3.client("dynamodb").delete_item(TableName=stack["INBOX_TABLE"],
                                                 Key={"pk": {"S": f"shopify#{delivery}"}})


# --- replay ----------------------------------------------------------------------------------


def test_replay_applies_a_pending_delivery_once(client: Client, stack: dict[str, str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    delivery = post_order(client)
    status, out, _ = run(capsys, "replay", "shopify", delivery, "--dry-run")
    assert (status, out.strip()) == (0, f"shopify#{delivery}: pending; would be applied")
    assert inbox_item(stack, "shopify", delivery)["pending"] == "pending"

    status, out, _ = run(capsys, "replay", "shopify", delivery)
    assert status == 0
    assert out.startswith(f"shopify#{delivery}: applied now: created (ord_")
    item = inbox_item(stack, "shopify", delivery)
    assert "pending" not in item and item["outcome"] == "created"

    # Again, by the inbox key a CS alert names: nothing changes, and it says so.
    status, out, _ = run(capsys, "replay", f"shopify#{delivery}")
    assert status == 0
    assert out.startswith(f"shopify#{delivery}: already applied: created (ord_")
    assert out.rstrip().endswith("; nothing changed")
    assert inbox_item(stack, "shopify", delivery) == item
    # --force re-runs only a delivery the worker could not apply.
    status, out, _ = run(capsys, "replay", "shopify", delivery, "--force")
    assert status == 1 and "--force re-runs only an invalid delivery" in out
    assert inbox_item(stack, "shopify", delivery) == item

    status, out, _ = run(capsys, "replay", "shopify", "no-such-delivery")
    assert status == 1 and "no such delivery" in out


def test_replay_force_reruns_an_invalid_delivery_after_a_fix(
        client: Client, stack: dict[str, str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.flows import marketplace_calls
    from chalicelib.orders.order import InvalidOrder

    delivery = post_order(client)
    read_order = marketplace_calls.read_order

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise InvalidOrder("unreadable_notification", "a bug, fixed in the next release")

    monkeypatch.setattr(marketplace_calls, "read_order", broken)
    process(client, stack, "shopify", delivery)
    assert inbox_item(stack, "shopify", delivery)["outcome"] == "invalid"

    status, out, _ = run(capsys, "replay", "shopify", delivery)
    assert status == 0 and "already applied: invalid (" in out and "--force re-runs it" in out
    status, out, _ = run(capsys, "replay", "shopify", delivery, "--force", "--dry-run")
    assert out.strip() == f"shopify#{delivery}: invalid; would be re-run (--force)"

    monkeypatch.setattr(marketplace_calls, "read_order", read_order)  # the fix
    status, out, _ = run(capsys, "replay", "shopify", delivery, "--force")
    assert status == 0
    assert out.startswith(f"shopify#{delivery}: applied now: created (ord_")
    assert "(was invalid)" in out
    item = inbox_item(stack, "shopify", delivery)
    assert (item["outcome"], item["previous_outcome"]) == ("created", "invalid")
    assert "pending" not in item
    # The stream sees the reopened delivery too: the worker finds it applied, nothing changes.
    assert process(client, stack, "shopify", delivery) == {"batchItemFailures": []}
    assert inbox_item(stack, "shopify", delivery) == item


# --- redrive: queues with a source queue -----------------------------------------------------


def _queue_url(name: str) -> str:
    return str(boto3.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])


def _drain(url: str, marker: str) -> list[dict[str, Any]]:
    """Take the messages whose body carries `marker` off a queue (others are left)."""
    sqs = boto3.client("sqs")
    found, others = [], []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                       VisibilityTimeout=30, MessageAttributeNames=["All"]
                                       ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            if marker in message["Body"]:
                found.append(message)
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:
                others.append(message)
    for message in others:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                      VisibilityTimeout=0)
    return found


def test_redrive_moves_amazon_dead_letters_back_to_their_queue(
        stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    sqs = boto3.client("sqs")
    dlq = _queue_url("order-backbone-test-amazon-notifications-dlq")
    source = _queue_url(stack["AMAZON_QUEUE_NAME"])
    marker = uuid.uuid4().hex
    notification = json.loads((FIXTURES / "amazon" / "order_change_unshipped.json").read_text())
    notification["NotificationMetadata"]["NotificationId"] = f"n-{marker}"
    sent = [sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(notification),
                             MessageAttributes={"trace": {"DataType": "String",
                                                          "StringValue": marker}}),
            sqs.send_message(QueueUrl=dlq, MessageBody=f"not json {marker}")]
    ids = {m["MessageId"] for m in sent}

    status, out, _ = run(capsys, "redrive", "amazon", "--dry-run")
    assert status == 0
    listed = {line.split()[2]: line for line in out.splitlines() if "would move" in line}
    assert ids <= set(listed)
    first, second = (listed[m["MessageId"]] for m in sent)
    assert first.endswith(f"amazon ORDER_CHANGE/OrderStatusChange n-{marker}")
    assert second.endswith(f"unreadable ({len(f'not json {marker}')} characters)")
    assert "(dry run: nothing moved)" in out
    assert "A2Q3Y263D00KWC" not in out  # the seller, the order: not shown

    status, out, _ = run(capsys, "redrive", "amazon")
    assert status == 0
    assert out.splitlines()[0] == ("amazon: order-backbone-test-amazon-notifications-dlq -> "
                                   "order-backbone-test-amazon-notifications")
    assert ids <= {line.split()[1] for line in out.splitlines() if "  moved " in line}
    moved = _drain(source, marker)
    assert sorted(m["Body"] for m in moved) == sorted(
        [json.dumps(notification), f"not json {marker}"])
    (with_attribute,) = [m for m in moved if m.get("MessageAttributes")]
    assert with_attribute["MessageAttributes"]["trace"]["StringValue"] == marker
    assert _drain(dlq, marker) == []


def test_redrive_moves_alert_dead_letters_back(stack: dict[str, str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.core.clock import utcnow
    from chalicelib.cs.alerts import Alert, Severity

    sqs = boto3.client("sqs")
    dlq = _queue_url(stack["ALERTS_DLQ_NAME"])
    subject = f"ord_{uuid.uuid4().hex}"
    alert = Alert(kind="order.invalid", severity=Severity.HIGH, subject=subject, at=utcnow(),
                  summary="Paid order of 王芳 cannot be sent", facts={"phone": "13900139000"})
    sqs.send_message(QueueUrl=dlq, MessageBody=alert.model_dump_json())

    status, out, _ = run(capsys, "redrive", "alerts")
    assert status == 0
    assert f"alert order.invalid high {subject}" in out
    assert "王芳" not in out and "13900139000" not in out
    (moved,) = _drain(_queue_url(stack["ALERTS_QUEUE_NAME"]), subject)
    assert Alert.model_validate_json(moved["Body"]) == alert


# --- redrive: the inbox's on-failure records -------------------------------------------------


def _failure_record(stack: dict[str, str], delivery_ids: list[str], start: str) -> str:
    """Lambda's on-failure record for the stream batch holding these deliveries' inserts."""
    from devstack.events.shapes import dynamodb_record, stream_failure_record

    streams = boto3.client("dynamodbstreams")
    arn = stack["INBOX_STREAM_ARN"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="AT_SEQUENCE_NUMBER",
                                          SequenceNumber=start)["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    wanted = {f"shopify#{d}" for d in delivery_ids}
    batch = [r for r in records if r["dynamodb"]["Keys"]["pk"]["S"] in wanted
             and r["eventName"] == "INSERT"]
    assert len(batch) == len(delivery_ids)
    # The batch is the records from the first of ours to the last (others may sit between).
    first, last = records.index(batch[0]), records.index(batch[-1])
    lambda_records = [dynamodb_record(r, arn, "us-east-1") for r in records[first:last + 1]]
    return json.dumps(stream_failure_record(
        lambda_records, shard_id=shard["ShardId"], stream_arn=arn,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:order-worker",
        invoke_count=6, request_id=uuid.uuid4().hex, now=datetime.now(UTC)))


def _stream_end(stack: dict[str, str]) -> str:
    """The sequence number the next stream record will have (moto numbers them in order)."""
    streams = boto3.client("dynamodbstreams")
    arn = stack["INBOX_STREAM_ARN"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    last = None
    while True:
        answer = streams.get_records(ShardIterator=iterator, Limit=1000)
        if not answer["Records"]:
            break
        last = answer["Records"][-1]["dynamodb"]["SequenceNumber"]
        iterator = answer["NextShardIterator"]
    return str(int(last) + 1) if last else str(shard["SequenceNumberRange"][
        "StartingSequenceNumber"])


def test_redrive_inbox_applies_the_deliveries_a_failed_batch_names(
        client: Client, stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    start = _stream_end(stack)
    deliveries = [post_order(client), post_order(client)]
    process(client, stack, "shopify", deliveries[1])  # applied by a later retry
    sqs = boto3.client("sqs")
    dlq = _queue_url(stack["INBOX_DLQ_NAME"])
    record = sqs.send_message(QueueUrl=dlq, MessageBody=_failure_record(stack, deliveries,
                                                                        start))["MessageId"]

    status, out, _ = run(capsys, "redrive", "inbox", "--dry-run")
    assert status == 0
    assert f"record {record} " in out and "stream batch of 2 record(s)" in out
    assert f"shopify#{deliveries[0]}: pending; would be applied" in out
    assert f"shopify#{deliveries[1]}: already applied: created" in out
    assert inbox_item(stack, "shopify", deliveries[0])["pending"] == "pending"

    status, out, _ = run(capsys, "redrive", "inbox")
    assert status == 0
    assert "deliveries: stream records " in out
    assert f"shopify#{deliveries[0]}: applied now: created" in out
    assert "record deleted: none of its deliveries is pending" in out
    assert "pending" not in inbox_item(stack, "shopify", deliveries[0])
    assert _drain(dlq, deliveries[0]) == [] and _drain(dlq, start) == []


def test_redrive_inbox_after_the_stream_dropped_the_batch_applies_what_is_still_pending(
        client: Client, stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    delivery = post_order(client)
    # Received, for this test, before anything else still pending, so the fallback's
    # "pending and received by the batch's end" is this delivery alone.
    boto3.client("dynamodb").update_item(
        TableName=stack["INBOX_TABLE"], Key={"pk": {"S": f"shopify#{delivery}"}},
        UpdateExpression="SET received_at = :t",
        ExpressionAttributeValues={":t": {"S": "2001-01-01T00:00:00.000000Z"}})
    failure = {"requestContext": {"condition": "RetryAttemptsExhausted",
                                  "approximateInvokeCount": 6},
               "DDBStreamBatchInfo": {
                   "shardId": "shardId-00000001541626099285-00000000",
                   "startSequenceNumber": "100000000000000000100",
                   "endSequenceNumber": "100000000000000000101", "batchSize": 2,
                   "approximateArrivalOfFirstRecord": "2001-01-01T00:00:00.000Z",
                   "approximateArrivalOfLastRecord": "2001-01-01T00:00:01.000Z",
                   "streamArn": stack["INBOX_STREAM_ARN"].replace("inbox", "gone")}}
    sqs = boto3.client("sqs")
    dlq = _queue_url(stack["INBOX_DLQ_NAME"])
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(failure))

    status, out, err = run(capsys, "redrive", "inbox")
    assert status == 0, out + err
    assert ("the stream no longer has records 100000000000000000100..100000000000000000101 "
            "(ResourceNotFoundException)") in out
    assert "every delivery still pending received before 2001-01-01T00:00:06" in out
    assert f"shopify#{delivery}: applied now: created" in out
    assert "pending" not in inbox_item(stack, "shopify", delivery)


def test_redrive_inbox_keeps_a_record_it_cannot_read(stack: dict[str, str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    sqs = boto3.client("sqs")
    dlq = _queue_url(stack["INBOX_DLQ_NAME"])
    marker = uuid.uuid4().hex
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"something": marker}))
    status, out, _ = run(capsys, "redrive", "inbox")
    assert status == 1
    assert "not an on-failure record of the inbox stream" in out
    assert len(_drain(dlq, marker)) == 1  # left where it was


# --- a fresh machine -------------------------------------------------------------------------


def _fresh_env(home: Path, **variables: str) -> dict[str, str]:
    """What a fresh machine has: no AWS_* variables, no ~/.aws. (AWS_EC2_METADATA_DISABLED:
    this machine may be an EC2 instance whose role a fresh laptop would not have.)"""
    return {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
            "AWS_EC2_METADATA_DISABLED": "true", **variables}


def _admin(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chalicelib.admin", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def local_stage(stack_env: dict[str, str]) -> dict[str, str]:
    """The resources `make run` creates (stage local) on the test endpoint."""
    from devstack.provision import provision

    return provision(boto3.session.Session(), stage="local")


def test_a_fresh_machine_talks_to_the_local_stack_with_nothing_set(
        stack: dict[str, str], local_stage: dict[str, str], tmp_path: Path) -> None:
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps({"api": "http://127.0.0.1:8000",
                                    "aws": stack["AWS_ENDPOINT_URL"]}))
    env = _fresh_env(tmp_path, LOCAL_RUN_FILE=str(run_file))

    done = _admin(env, "--stage", "local", "issue", "--partner", "fresh-1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("key id ")
    done = _admin(env, "--stage", "local", "pending", "--limit", "1")
    assert done.returncode == 0, done.stderr

    # AWS_ENDPOINT_URL alone (a loopback address) is enough too, with any stage's names.
    done = _admin(_fresh_env(tmp_path, AWS_ENDPOINT_URL=stack["AWS_ENDPOINT_URL"]),
                  "--stage", "test", "redrive", "alerts", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "order-backbone-test-alerts-dlq -> order-backbone-test-alerts" in done.stdout

    # The stack not running: one line saying so.
    run_file.write_text(json.dumps({"aws": "http://127.0.0.1:9"}))
    done = _admin(env, "--stage", "local", "list", "--partner", "fresh-1")
    assert done.returncode == 1
    assert done.stderr.startswith("cannot reach the local endpoint http://127.0.0.1:9: ")
    assert len(done.stderr.splitlines()) == 1


def test_a_fresh_machine_pointed_at_aws_gets_one_line(tmp_path: Path) -> None:
    for argv in (["--stage", "dev", "list", "--partner", "factory-1"],
                 ["--stage", "prod", "pending"], ["redrive", "inbox", "--dry-run"]):
        done = _admin(_fresh_env(tmp_path), *argv)
        assert done.returncode == 1
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert done.stderr.startswith("no AWS credentials and no region for stage ")
        assert "Traceback" not in done.stderr and done.stdout == ""
    done = _admin(_fresh_env(tmp_path, AWS_REGION="cn-north-1"), "--stage", "prod", "pending")
    assert done.returncode == 1
    assert done.stderr.startswith("no AWS credentials for stage prod: sign in with a profile")
    done = _admin(_fresh_env(tmp_path, LOCAL_RUN_FILE=str(tmp_path / "none.json")),
                  "--stage", "local", "pending")
    assert (done.returncode, len(done.stderr.splitlines())) == (1, 1)
    assert done.stderr.startswith("no local stack: ")
