"""The fault layer itself (tests/faults.py): each fault reaches the app as AWS's would, through
botocore's parsing and retries, on the app's clients only."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from chalicelib.core import aws
from chalicelib.core.dynamodb import Action, classify, contention, to_attrs, transact
from tests.faults import OUTLASTS_BOTOCORE, Faults


def _put(table: str, pk: str, **condition: Any) -> Action:
    return Action("thing", {"Put": {"TableName": table, "Item": to_attrs({"pk": pk}),
                                    **condition}})


def _exists(table: str, pk: str) -> bool:
    return "Item" in boto3.client("dynamodb").get_item(TableName=table,
                                                       Key=to_attrs({"pk": pk}))


@pytest.mark.parametrize(("kind", "code", "status", "reason"), [
    ("conflict", "TransactionCanceledException", 503, "busy"),
    ("throttled_transaction", "TransactionCanceledException", 503, "storage_throttled"),
    ("throughput", "ProvisionedThroughputExceededException", 503, "storage_throttled"),
    ("throttling", "ThrottlingException", 503, "storage_throttled"),
    ("request_limit", "RequestLimitExceeded", 503, "storage_throttled"),
    ("internal", "InternalServerError", 503, "storage_unavailable"),
])
def test_each_error_arrives_as_awss_own(faults: Faults, stack: dict[str, str], kind: str,
                                        code: str, status: int, reason: str) -> None:
    table, pk = stack["INBOX_TABLE"], f"faults#{uuid.uuid4().hex}"
    faults.add(kind, tables={"inbox"}, count=OUTLASTS_BOTOCORE)
    with pytest.raises(ClientError) as raised:
        transact([_put(table, pk), _put(table, pk + "-2")])
    assert raised.value.response["Error"]["Code"] == code
    answer = classify(raised.value)
    assert answer is not None and (answer.status, answer.reason) == (status, reason)
    if kind == "conflict":
        reasons = {r["Code"] for r in raised.value.response["CancellationReasons"]}
        assert reasons == {"None", "TransactionConflict"}
        assert contention(raised.value) == "conflict"
    retried_by_botocore = kind not in ("conflict", "throttled_transaction")
    assert faults.calls["TransactWriteItems"] == (4 if retried_by_botocore else 1)
    assert not _exists(table, pk)


def test_a_single_item_write_in_conflict_is_transaction_conflict_exception(
        faults: Faults, stack: dict[str, str]) -> None:
    faults.add("conflict", tables={"inbox"}, count=1)
    with pytest.raises(ClientError) as raised:
        aws.client("dynamodb").put_item(TableName=stack["INBOX_TABLE"],
                                        Item=to_attrs({"pk": f"faults#{uuid.uuid4().hex}"}))
    assert contention(raised.value) == "conflict"


def test_botocore_cures_what_it_retries_when_the_fault_passes(faults: Faults,
                                                               stack: dict[str, str]) -> None:
    table = stack["INBOX_TABLE"]
    for kind in ("throughput", "internal", "timeout", "connection"):
        pk = f"faults#{uuid.uuid4().hex}"
        faults.add(kind, tables={"inbox"}, count=3)
        transact([_put(table, pk)])
        assert _exists(table, pk)
    assert faults.total() == 12


def test_a_timeout_after_commit_writes_and_botocore_sends_it_again(
        faults: Faults, stack: dict[str, str]) -> None:
    table, pk = stack["INBOX_TABLE"], f"faults#{uuid.uuid4().hex}"
    faults.add("timeout_after_commit", operations={"PutItem"}, count=1)
    with pytest.raises(ClientError) as raised:  # the second attempt meets the first's write
        aws.client("dynamodb").put_item(TableName=table, Item=to_attrs({"pk": pk}),
                                        ConditionExpression="attribute_not_exists(pk)")
    assert raised.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert _exists(table, pk) and faults.calls["PutItem"] == 2


def test_network_faults_that_outlast_botocore_are_botocores_errors(
        faults: Faults, stack: dict[str, str]) -> None:
    faults.add("timeout", operations={"GetItem"}, count=OUTLASTS_BOTOCORE)
    with pytest.raises(ReadTimeoutError):
        aws.client("dynamodb").get_item(TableName=stack["INBOX_TABLE"],
                                        Key=to_attrs({"pk": "x"}))
    faults.add("connection", operations={"GetItem"}, count=OUTLASTS_BOTOCORE)
    with pytest.raises(EndpointConnectionError):
        aws.client("dynamodb").get_item(TableName=stack["INBOX_TABLE"],
                                        Key=to_attrs({"pk": "x"}))
    for exc in (ReadTimeoutError(endpoint_url="x"), EndpointConnectionError(endpoint_url="x")):
        answer = classify(exc)
        assert answer is not None and answer.reason == "storage_unavailable"


def test_choosing_calls_by_count_skip_probability_and_predicate(
        faults: Faults, stack: dict[str, str]) -> None:
    table = stack["INBOX_TABLE"]
    faults.add("conflict", operations={"TransactWriteItems"}, skip=1, count=1,
               where=lambda call: len(call.params["TransactItems"]) == 2)
    transact([_put(table, f"faults#{uuid.uuid4().hex}")])  # one item: not chosen
    transact([_put(table, f"faults#{uuid.uuid4().hex}") for _ in range(2)])  # skipped
    with pytest.raises(ClientError):
        transact([_put(table, f"faults#{uuid.uuid4().hex}") for _ in range(2)])
    transact([_put(table, f"faults#{uuid.uuid4().hex}") for _ in range(2)])  # count spent
    assert faults.injected == {("conflict", "TransactWriteItems"): 1}
    faults.clear()
    faults.add("internal", operations={"GetItem"}, probability=0.5)
    for _ in range(200):
        with contextlib.suppress(ClientError):
            aws.client("dynamodb").get_item(TableName=table, Key=to_attrs({"pk": "x"}))
    assert 150 < faults.total("internal") < 500  # about half of the attempts


def test_only_the_apps_clients_see_faults(faults: Faults, stack: dict[str, str]) -> None:
    faults.add("internal")
    boto3.client("dynamodb").get_item(TableName=stack["INBOX_TABLE"],
                                      Key=to_attrs({"pk": "x"}))
    with faults.paused():
        aws.client("dynamodb").get_item(TableName=stack["INBOX_TABLE"],
                                        Key=to_attrs({"pk": "x"}))
    assert faults.total() == 0


def test_uninstalled_it_leaves_no_hook(stack: dict[str, str]) -> None:
    faults = Faults()
    with faults.installed():
        faults.add("internal", count=100)
        hooked = aws.client("dynamodb")
    hooked.get_item(TableName=stack["INBOX_TABLE"], Key=to_attrs({"pk": "x"}))
    assert faults.total() == 0


def test_a_storm_fails_a_share_of_attempts_with_kinds_that_fit_each_call(
        faults: Faults, stack: dict[str, str]) -> None:
    table = stack["INBOX_TABLE"]
    faults.storm(0.3)
    for _ in range(150):
        with contextlib.suppress(ClientError, ReadTimeoutError, EndpointConnectionError):
            aws.client("dynamodb").get_item(TableName=table, Key=to_attrs({"pk": "x"}))
    reads = faults.calls["GetItem"]
    assert 0.2 * reads < faults.total() < 0.4 * reads
    kinds = {kind for kind, _ in faults.injected}
    assert "conflict" not in kinds and "throttled_transaction" not in kinds  # not for a read
    assert {"throughput", "internal", "timeout", "connection"} <= kinds
    before = faults.total()
    for _ in range(60):
        with contextlib.suppress(ClientError, ReadTimeoutError, EndpointConnectionError):
            transact([_put(table, f"faults#{uuid.uuid4().hex}")])
    assert {kind for kind, op in faults.injected if op == "TransactWriteItems"} >= {
        "conflict", "throttled_transaction"}
    assert faults.total() > before
    made = faults.total()
    faults.clear()
    for _ in range(50):
        aws.client("dynamodb").get_item(TableName=table, Key=to_attrs({"pk": "x"}))
    assert faults.total() == made  # cleared: the storm is over
    with pytest.raises(ValueError):
        faults.storm(0.1, kinds=["flood"])
