"""Static checks on infra/resources.yaml: no AWS, no network (the functions' IAM policies:
tests/unit/test_policies.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from devstack.provision import load_template, references

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
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


# --- DynamoDB -----------------------------------------------------------------------------------


def test_every_table_has_point_in_time_recovery() -> None:
    assert TABLES
    for lid, table in TABLES.items():
        spec = table["Properties"].get("PointInTimeRecoverySpecification", {})
        assert spec.get("PointInTimeRecoveryEnabled") is True, lid


def test_housekeeping_items_expire_on_expires_at() -> None:
    # Orders, jobs and cases are records of what happened: they carry no expires_at. What does
    # expire: the inbox's dedupe records, the shipments table's raw pushes, the jobs table's
    # change-feed entries, the cases table's done outbox notes, dead alerts and lapsed lease
    # (tests/unit/test_retention.py), the directory's console sessions. The orders table holds
    # only records.
    with_ttl = {lid: t["Properties"]["TimeToLiveSpecification"] for lid, t in TABLES.items()
                if "TimeToLiveSpecification" in t["Properties"]}
    assert sorted(with_ttl) == ["CasesTable", "DirectoryTable", "InboxTable", "JobsTable",
                                "ShipmentsTable"]
    assert all(spec == {"AttributeName": "expires_at", "Enabled": True}
               for spec in with_ttl.values())


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
    declared = {lid: set(f["Properties"]["Events"]) for lid, f in FUNCTIONS.items()
                if "Events" in f["Properties"]}
    # Each queue/stream handler is rewired (its decorator holds a placeholder) and each override
    # merges into a resource Chalice really generates (a stale one would add a broken function).
    assert declared == {lid: {event} for lid, event in expected.items()}
    generated = {"APIHandler"} | {to_cfn_resource_name(s.name) for s in app.app.event_sources}
    assert set(FUNCTIONS) == generated  # every function described (and alarmed), no stale one


# --- Globals ------------------------------------------------------------------------------------


def test_globals_reference_only_declared_resources_and_parameters() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    known = set(RESOURCES) | set(TEMPLATE["Parameters"]) | PSEUDO_PARAMETERS
    assert references(variables)
    assert references(variables) <= known


def test_globals_name_every_table_queue_and_topic() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    # No code sends to these: the alerts DLQ's consumer is its only reader; alarms use OpsTopic.
    unnamed = {"AlertsDeadLetterQueue", "OpsTopic"}
    assert (set(TABLES) | set(QUEUES) | set(TOPICS)) - unnamed <= references(variables)


# --- Operations: alarms and the dashboard -------------------------------------------------------

ALARMS = of_type("AWS::CloudWatch::Alarm")


def alarms_on(namespace: str, metric: str) -> dict[str, dict[str, Any]]:
    """Alarms on `metric`, by what their dimensions refer to (a logical ID, or the text)."""
    found: dict[str, dict[str, Any]] = {}
    for alarm in ALARMS.values():
        props = alarm["Properties"]
        if (props["Namespace"], props["MetricName"]) != (namespace, metric):
            continue
        subject = references(props["Dimensions"]) - {"Stage"}
        key = next(iter(subject)) if len(subject) == 1 else str(len(props["Dimensions"]))
        found[key] = props
    return found


def test_every_alarm_goes_to_the_ops_topic_and_it_mails_the_operators() -> None:
    assert len(ALARMS) > 40
    for lid, alarm in ALARMS.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == props["OKActions"] == [{"Ref": "OpsTopic"}], lid
        assert "${Stage}" in props["AlarmName"]["Fn::Sub"], lid
    (subscription,) = [s["Properties"] for s in of_type("AWS::SNS::Subscription").values()
                       if s["Properties"]["TopicArn"] == {"Ref": "OpsTopic"}]
    assert subscription["Protocol"] == "email"
    assert subscription["Endpoint"] == {"Ref": "OpsEmail"}
    assert "Default" not in TEMPLATE["Parameters"]["OpsEmail"]  # a deploy must say where


def test_every_dead_letter_queue_alarms_when_a_message_waits() -> None:
    dlqs = references([q["Properties"].get("RedrivePolicy", {}) for q in QUEUES.values()])
    dlqs |= references([e.get("DestinationConfig", {}) for e in events("DynamoDB")])
    assert dlqs == {"InboxDeadLetterQueue", "AlertsDeadLetterQueue",
                    "AmazonNotificationsDeadLetterQueue"}
    depth = alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert set(depth) == dlqs
    for props in depth.values():
        assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)


def test_every_function_alarms_on_errors_and_throttles_and_each_schedule_when_it_stops() -> None:
    from chalice.app import ScheduledEventConfig
    from chalice.utils import to_cfn_resource_name

    import app

    for metric in ("Errors", "Throttles"):
        assert set(alarms_on("AWS/Lambda", metric)) == set(FUNCTIONS), metric
    scheduled = {to_cfn_resource_name(s.name): s.schedule_expression.to_string()
                 for s in app.app.event_sources if isinstance(s, ScheduledEventConfig)}
    not_running = alarms_on("AWS/Lambda", "Invocations")
    assert set(not_running) == set(scheduled)
    minutes = {"rate(1 minute)": 1, "rate(5 minutes)": 5, "rate(15 minutes)": 15}
    for lid, props in not_running.items():
        assert (props["ComparisonOperator"], props["Threshold"]) == ("LessThanThreshold", 1)
        assert props["TreatMissingData"] == "breaching"  # no invocation, no data point
        window = props["Period"] * props["EvaluationPeriods"]
        assert window >= 3 * 60 * minutes[scheduled[lid]], lid  # a late run is not an alarm
    (age,) = alarms_on("AWS/Lambda", "IteratorAge").items()
    assert age[0] == "OrderWorker"


def test_the_api_alarms_on_5xx_and_p99_latency() -> None:
    assert alarms_on("AWS/ApiGateway", "5XXError")
    latency = alarms_on("AWS/ApiGateway", "Latency")
    assert len(latency) == 2  # the whole API, and the webhooks (their own method metrics)
    for props in latency.values():
        assert props["ExtendedStatistic"] == "p99"
        api_name = [d["Value"] for d in props["Dimensions"] if d["Name"] == "ApiName"]
        assert api_name == [RESOURCES["RestAPI"]["Properties"]["Name"]]


def test_the_dashboard_shows_every_function_and_dead_letter_queue() -> None:
    (dashboard,) = of_type("AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert references(dashboard["Properties"]["DashboardBody"]) >= set(FUNCTIONS) | {
        "InboxDeadLetterQueue", "AlertsDeadLetterQueue", "AmazonNotificationsDeadLetterQueue"}
    assert json.loads(body.replace("${", "{"))["widgets"]
