"""Static checks on infra/resources.yaml and the IAM policy files: no AWS, no network."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from devstack.provision import load_template, references

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
STAGES = ("dev", "prod")
PSEUDO_PARAMETERS = {"AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix"}


def of_type(type_name: str) -> dict[str, Any]:
    return {lid: r for lid, r in RESOURCES.items() if r["Type"] == type_name}


TABLES = of_type("AWS::DynamoDB::Table")
QUEUES = of_type("AWS::SQS::Queue")
TOPICS = of_type("AWS::SNS::Topic")
FUNCTIONS = of_type("AWS::Serverless::Function")


def events(kind: str) -> list[dict[str, Any]]:
    """Properties of every `kind` event source declared on a function."""
    return [event["Properties"] for function in FUNCTIONS.values()
            for event in function["Properties"].get("Events", {}).values()
            if event["Type"] == kind]


def physical_name(value: Any, stage: str) -> str:
    # The convention the policies rely on: every name is !Sub "...${Stage}...".
    assert isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str), value
    return str(value["Fn::Sub"]).replace("${Stage}", stage)


def policy(stage: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / ".chalice" / f"policy-{stage}.json").read_text()))


def statements(stage: str) -> list[dict[str, Any]]:
    return list(policy(stage)["Statement"])


def as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allows(stage: str, action: str, arn: str) -> bool:
    return any(
        s["Effect"] == "Allow"
        and any(fnmatchcase(action, a) for a in as_list(s["Action"]))
        and any(fnmatchcase(arn, r) for r in as_list(s["Resource"]))
        for s in statements(stage)
    )


def arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:us-east-1:123456789012:{resource}"


# --- DynamoDB -----------------------------------------------------------------------------------


def test_every_table_has_point_in_time_recovery() -> None:
    assert TABLES
    for lid, table in TABLES.items():
        spec = table["Properties"].get("PointInTimeRecoverySpecification", {})
        assert spec.get("PointInTimeRecoveryEnabled") is True, lid


def test_only_delivery_records_and_raw_pushes_expire() -> None:
    # Orders, jobs and cases are records of what happened: never expired. The inbox's dedupe
    # records and the shipments table's raw pushes (the parcels themselves carry no expires_at).
    with_ttl = [lid for lid, t in TABLES.items() if "TimeToLiveSpecification" in t["Properties"]]
    assert with_ttl == ["InboxTable", "ShipmentsTable"]


def test_tables_are_retained_on_delete_and_replace_and_protected_from_deletion() -> None:
    for lid, table in TABLES.items():
        assert table.get("DeletionPolicy") == table.get("UpdateReplacePolicy") == "Retain", lid
        assert table["Properties"]["DeletionProtectionEnabled"] is True, lid


# --- Queues and event sources -------------------------------------------------------------------


def test_every_consumed_queue_has_a_dead_letter_queue_or_is_one() -> None:
    consumed = set().union(*(references(e["Queue"]) for e in events("SQS"))) & set(QUEUES)
    failure_targets = [q["Properties"].get("RedrivePolicy", {}) for q in QUEUES.values()]
    failure_targets += [e.get("DestinationConfig", {}) for e in events("DynamoDB")]
    dlqs = references(failure_targets) & set(QUEUES)
    assert consumed == {"InboxDeadLetterQueue", "AlertsQueue", "AlertsDeadLetterQueue",
                        "AmazonNotificationsQueue", "AmazonNotificationsDeadLetterQueue"}
    for lid in consumed:
        assert "RedrivePolicy" in QUEUES[lid]["Properties"] or lid in dlqs, lid


def test_stream_consumers_retry_bounded_then_dead_letter() -> None:
    assert events("DynamoDB")
    for event in events("DynamoDB"):
        assert references(event["Stream"]) == {"InboxTable"}
        assert event["MaximumRetryAttempts"] > 0
        assert event["BisectBatchOnFunctionError"] is True
        assert references(event["DestinationConfig"]["OnFailure"]["Destination"]) <= set(QUEUES)


def test_batch_consumers_report_item_failures() -> None:
    for event in events("SQS") + events("DynamoDB"):
        assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_overrides_name_the_event_sources_chalice_generates_for_app_py() -> None:
    from chalice.app import DynamoDBEventConfig, SQSEventConfig
    from chalice.utils import to_cfn_resource_name

    import app

    suffixes = {SQSEventConfig: "-sqs-event-source", DynamoDBEventConfig: "-dynamodb-event-source"}
    expected = {
        to_cfn_resource_name(source.name): to_cfn_resource_name(source.name + suffix)
        for source in app.app.event_sources
        for kind, suffix in suffixes.items() if isinstance(source, kind)
    }
    declared = {lid: set(f["Properties"]["Events"]) for lid, f in FUNCTIONS.items()}
    # Each queue/stream handler is rewired (its decorator holds a placeholder) and each override
    # merges into a resource Chalice really generates (a stale one would add a broken function).
    assert declared == {lid: {event} for lid, event in expected.items()}


# --- Globals ------------------------------------------------------------------------------------


def test_globals_reference_only_declared_resources_and_parameters() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    known = set(RESOURCES) | set(TEMPLATE["Parameters"]) | PSEUDO_PARAMETERS
    assert references(variables)
    assert references(variables) <= known


def test_globals_name_every_table_queue_and_topic() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    unnamed = {"AlertsDeadLetterQueue", "AmazonNotificationsDeadLetterQueue"}  # no code sends
    assert set(TABLES) | set(QUEUES) - unnamed | set(TOPICS) <= references(variables)


# --- IAM policy files ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES)
def test_policy_has_no_wildcard_actions(stage: str) -> None:
    for statement in statements(stage):
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), action


def test_policies_differ_only_by_stage() -> None:
    assert json.dumps(policy("dev")).replace("dev", "prod") == json.dumps(policy("prod"))


@pytest.mark.parametrize("stage", STAGES)
def test_policy_covers_every_table(stage: str) -> None:
    item_actions = ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "BatchGetItem",
                    "BatchWriteItem", "ConditionCheckItem")
    stream_actions = ("DescribeStream", "GetRecords", "GetShardIterator", "ListStreams")
    for table in TABLES.values():
        props = table["Properties"]
        table_arn = arn("dynamodb", "table/" + physical_name(props["TableName"], stage))
        for action in item_actions:
            assert allows(stage, f"dynamodb:{action}", table_arn), (action, table_arn)
        for index in props.get("GlobalSecondaryIndexes", []):
            assert allows(stage, "dynamodb:Query", f"{table_arn}/index/{index['IndexName']}")
        if "StreamSpecification" in props:
            for action in stream_actions:
                assert allows(stage, f"dynamodb:{action}", f"{table_arn}/stream/2024-01-01T00")


@pytest.mark.parametrize("stage", STAGES)
def test_policy_covers_every_queue_and_topic(stage: str) -> None:
    for queue in QUEUES.values():
        queue_arn = arn("sqs", physical_name(queue["Properties"]["QueueName"], stage))
        for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes", "SendMessage",
                       "ChangeMessageVisibility"):
            assert allows(stage, f"sqs:{action}", queue_arn), (action, queue_arn)
    for topic in TOPICS.values():
        topic_arn = arn("sns", physical_name(topic["Properties"]["TopicName"], stage))
        assert allows(stage, "sns:Publish", topic_arn)


@pytest.mark.parametrize("stage", STAGES)
def test_policy_covers_logs_and_reads_only_this_stages_shop_credentials(stage: str) -> None:
    # Webhook secrets live in the directory table; per-shop marketplace credentials in SSM.
    ssm = [s for s in statements(stage) if any(a.startswith("ssm:") for a in as_list(s["Action"]))]
    assert sorted(a for s in ssm for a in as_list(s["Action"])) == [
        "ssm:GetParameter", "ssm:GetParametersByPath"]
    assert allows(stage, "ssm:GetParameter",
                  arn("ssm", f"parameter/order-backbone/{stage}/shops/douyin/123"))
    other = "prod" if stage == "dev" else "dev"
    assert not allows(stage, "ssm:GetParameter",
                      arn("ssm", f"parameter/order-backbone/{other}/shops/douyin/123"))
    kms = [s for s in statements(stage) if any(a.startswith("kms:") for a in as_list(s["Action"]))]
    assert all(s.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService") for s in kms)
    for group in of_type("AWS::Logs::LogGroup").values():
        name = physical_name(group["Properties"]["LogGroupName"], stage)
        stream = arn("logs", f"log-group:{name}:log-stream:2024/01/01/[$LATEST]abc")
        assert allows(stage, "logs:PutLogEvents", stream)
        assert allows(stage, "logs:CreateLogStream", stream)
