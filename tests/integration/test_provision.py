"""provision() against a fresh in-process moto server: what infra/ declares is what exists."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from devstack.provision import created_locally, load_template, provision

STAGE = "local"
TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
VARIABLES: dict[str, Any] = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
TABLES = {lid: r["Properties"] for lid, r in RESOURCES.items()
          if r["Type"] == "AWS::DynamoDB::Table"}


@pytest.fixture(scope="module")
def session() -> Iterator[Any]:
    """A session on a moto server of this module's own. moto's backends are process-wide, so
    resources other test modules create are visible here too: counts filter on the stage."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield boto3.session.Session()
    server.stop()


@pytest.fixture(scope="module")
def env(session: Any) -> dict[str, str]:
    return provision(session, stage=STAGE)


def table_name(env: dict[str, str], logical_id: str) -> str:
    """The table's name as the functions see it (its Globals variable is a Ref to it)."""
    (variable,) = (name for name, value in VARIABLES.items() if value == {"Ref": logical_id})
    return env[variable]


def key_schema(keys: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(key["AttributeName"], key["KeyType"]) for key in keys]


def test_every_table_has_the_declared_keys_indexes_and_stream(
        session: Any, env: dict[str, str]) -> None:
    dynamodb = session.client("dynamodb")
    for lid, declared in TABLES.items():
        table = dynamodb.describe_table(TableName=table_name(env, lid))["Table"]
        assert key_schema(table["KeySchema"]) == key_schema(declared["KeySchema"]), lid
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        indexes = {i["IndexName"]: (key_schema(i["KeySchema"]), i["Projection"]["ProjectionType"])
                   for i in table.get("GlobalSecondaryIndexes", [])}
        assert indexes == {
            i["IndexName"]: (key_schema(i["KeySchema"]), i["Projection"]["ProjectionType"])
            for i in declared.get("GlobalSecondaryIndexes", [])
        }, lid
        view = declared.get("StreamSpecification", {}).get("StreamViewType")
        assert table.get("StreamSpecification", {}).get("StreamViewType") == view, lid


def test_ttl_only_where_items_may_expire_and_pitr_everywhere(
        session: Any, env: dict[str, str]) -> None:
    dynamodb = session.client("dynamodb")
    for lid in TABLES:
        name = table_name(env, lid)
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        # delivery records, raw pushes, feed entries, done notes, console sessions
        if lid in ("InboxTable", "ShipmentsTable", "JobsTable", "CasesTable", "DirectoryTable"):
            assert ttl["TimeToLiveStatus"] == "ENABLED"
            assert ttl["AttributeName"] == "expires_at"
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED", lid
        backups = dynamodb.describe_continuous_backups(TableName=name)
        recovery = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
        assert recovery["PointInTimeRecoveryStatus"] == "ENABLED", lid


def test_alerts_queue_redrives_to_its_dead_letter_queue(session: Any, env: dict[str, str]) -> None:
    sqs = session.client("sqs")
    alerts = sqs.get_queue_url(QueueName=env["ALERTS_QUEUE_NAME"])["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=env["ALERTS_QUEUE_NAME"] + "-dlq")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=alerts, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
    assert attributes["VisibilityTimeout"] == "120"


def test_a_message_published_to_the_topic_arrives_raw_in_the_alerts_queue(
        session: Any, env: dict[str, str]) -> None:
    sqs = session.client("sqs")
    alerts = sqs.get_queue_url(QueueName=env["ALERTS_QUEUE_NAME"])["QueueUrl"]
    body = json.dumps({"alert": "probe", "severity": "low"})
    session.client("sns").publish(TopicArn=env["ALERTS_TOPIC_ARN"], Message=body)
    received = sqs.receive_message(QueueUrl=alerts, WaitTimeSeconds=1)["Messages"]
    assert [message["Body"] for message in received] == [body]
    sqs.delete_message(QueueUrl=alerts, ReceiptHandle=received[0]["ReceiptHandle"])


def test_environment_has_every_globals_variable_resolved(
        session: Any, env: dict[str, str]) -> None:
    assert set(env) == set(VARIABLES)
    # CONSOLE_URL is the ConsoleUrl parameter, empty unless the stage gives one (below).
    assert all(isinstance(value, str) and value for name, value in env.items()
               if name != "CONSOLE_URL")
    assert env["CONSOLE_URL"] == ""
    assert not any("${" in value for value in env.values())
    inbox = session.client("dynamodb").describe_table(TableName=env["INBOX_TABLE"])["Table"]
    assert env["INBOX_STREAM_ARN"] == inbox["LatestStreamArn"]
    assert env["INBOX_DLQ_URL"].endswith("/" + env["INBOX_DLQ_NAME"])


def inventory(session: Any) -> dict[str, list[str]]:
    """Everything of this stage on the endpoint, by kind."""
    sns = session.client("sns")
    found = {
        "tables": session.client("dynamodb").list_tables()["TableNames"],
        "queues": session.client("sqs").list_queues()["QueueUrls"],
        "topics": [t["TopicArn"] for t in sns.list_topics()["Topics"]],
        "subscriptions": [s["SubscriptionArn"] for s in sns.list_subscriptions()["Subscriptions"]],
    }
    prefix = f"order-backbone-{STAGE}-"
    return {kind: sorted(n for n in names if prefix in n) for kind, names in found.items()}


def test_provisioning_again_changes_nothing(session: Any, env: dict[str, str]) -> None:
    before = inventory(session)
    assert provision(session, stage=STAGE) == env
    assert inventory(session) == before
    declared = [r["Type"] for r in created_locally(TEMPLATE).values()]
    kinds = ("DynamoDB::Table", "SQS::Queue", "SNS::Topic", "SNS::Subscription")
    assert [len(names) for names in before.values()] == [
        declared.count(f"AWS::{kind}") for kind in kinds]


def test_what_only_a_deploy_can_create_is_left_out() -> None:
    """Alarms and the dashboard (CloudWatch: nothing watches the local stack) are not of a type
    provision() creates, and the alarm e-mail subscription needs the OpsEmail a deploy gives."""
    local = created_locally(TEMPLATE)
    assert "OpsEmailSubscription" not in local
    assert "OpsTopic" in local and "AlertsQueueSubscription" in local
    assert not any(r["Type"].startswith("AWS::CloudWatch::") for r in local.values())
    assert any(r["Type"] == "AWS::CloudWatch::Alarm" for r in RESOURCES.values())


def test_a_parameter_given_reaches_the_functions_environment(session: Any) -> None:
    """make run gives ConsoleUrl as a deploy's --parameter-overrides does: every IM and mail
    link then points at the local console."""
    given = provision(session, stage=STAGE, parameters={"ConsoleUrl": "http://localhost:8123"})
    assert given["CONSOLE_URL"] == "http://localhost:8123"
