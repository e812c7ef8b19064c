"""chalicelib.core.observability: the keys a line carries and when they go, exceptions without
their text, metrics counted per invocation and written once as EMF."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

import app  # installs the JSON handler, as Lambda runs the app
from chalicelib.core import observability

log = logging.getLogger("chalicelib.tests")
CONTEXT = SimpleNamespace(aws_request_id="req-1", function_name="order_worker")


def written(capsys: pytest.CaptureFixture[str]) -> tuple[list[dict[str, Any]],
                                                          list[dict[str, Any]]]:
    """(log lines, EMF blobs) written to stdout since the last call."""
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [o for o in out if "_aws" not in o], [o for o in out if "_aws" in o]


def test_the_app_installs_one_json_handler_for_chalicelib_and_its_middleware_for_all() -> None:
    library = logging.getLogger("chalicelib")
    ours = [h for h in library.handlers if type(h).__module__ == observability.__name__]
    assert len(ours) == 1 and not library.propagate  # (pytest adds its own handlers too)
    # Chalice's own text handler is gone: its lines (an unhandled error) are JSON too.
    assert not any(type(h) is logging.StreamHandler for h in app.app.log.handlers)
    assert ours[0] in app.app.log.handlers
    assert (observability.middleware, "all") in app.app.middleware_handlers


def test_a_unit_of_work_keeps_its_keys_to_itself(capsys: pytest.CaptureFixture[str]) -> None:
    with observability.invocation(CONTEXT):
        with observability.unit(record_id="r1", delivery_id="d1"):
            observability.tag(order_id="ord_1", job_id=None, case_id="")  # None, "": left out
            log.info("first")
        with observability.unit(record_id="r2"):
            log.info("second", extra={"order_id": "ord_given"})  # the call's own key wins
        log.warning("after")
    log.info("outside")
    first, second, after, outside = written(capsys)[0]
    assert first["message"] == "first" and first["name"] == "chalicelib.tests"
    assert {k: first[k] for k in ("request_id", "function_request_id", "record_id",
                                  "delivery_id", "order_id")} == {
        "request_id": "req-1", "function_request_id": "req-1", "record_id": "r1",
        "delivery_id": "d1", "order_id": "ord_1"}
    assert "job_id" not in first and "case_id" not in first
    assert second["record_id"] == "r2" and second["order_id"] == "ord_given"
    assert "delivery_id" not in second
    assert after["request_id"] == "req-1" and "record_id" not in after
    assert after["level"] == "WARNING"
    assert not {"request_id", "order_id", "record_id"} & set(outside)


def test_a_key_tagged_outside_any_work_is_not_kept(capsys: pytest.CaptureFixture[str]) -> None:
    observability.tag(order_id="ord_stray")
    log.info("line")
    ((line,), _) = written(capsys)
    assert "order_id" not in line
    assert observability.current_keys() == {}


def test_an_exception_is_logged_by_its_type_and_traceback_never_its_text(
        capsys: pytest.CaptureFixture[str]) -> None:
    def address_check() -> None:
        raise ValueError("上海市观澜湖畔路 4321 号 +86 139 7531 8642")

    try:
        try:
            address_check()
        except ValueError as exc:
            raise RuntimeError("token=abc123secret") from exc
    except RuntimeError:
        log.exception("could not apply")
    ((line,), _) = written(capsys)
    text = json.dumps(line, ensure_ascii=False)
    for secret in ("观澜湖畔路", "7531", "abc123secret"):
        assert secret not in text
    assert line["exception_name"] == "RuntimeError"
    assert "builtins.ValueError (text withheld from logs)" in line["exception"]
    assert "in address_check" in line["exception"]  # where it happened, not the source line
    assert "raise ValueError" not in line["exception"]
    assert "stack_trace" not in line and "exception_notes" not in line


def test_describe_names_an_error_by_type_and_aws_code_only() -> None:
    error = ClientError({"Error": {"Code": "ValidationException",
                                   "Message": "value 13975318642 too long"}}, "PutItem")
    try:
        raise KeyError("ord") from error
    except KeyError as exc:
        assert observability.describe(exc) == "KeyError from ClientError(ValidationException)"


def test_counts_are_written_once_when_the_invocation_ends(
        capsys: pytest.CaptureFixture[str]) -> None:
    observability.count("WebhooksAccepted", source="shopify")  # outside an invocation: nothing
    with pytest.raises(RuntimeError), observability.invocation(CONTEXT):
        observability.count("WebhooksAccepted", source="shopify")
        observability.count("WebhooksAccepted", source="shopify")
        observability.count("WebhooksDuplicate", source="shopify")
        observability.count("JobsClaimed", 3)
        assert written(capsys) == ([], [])  # nothing before the end
        raise RuntimeError("the handler failed")  # counts are still written
    _, blobs = written(capsys)
    assert len(blobs) == 2
    by_source, plain = sorted(blobs, key=lambda b: "source" in b)[::-1]
    (directive,) = by_source["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "OrderBackbone"
    assert directive["Dimensions"] == [["source", "service"], ["service"]]
    assert (by_source["source"], by_source["service"]) == ("shopify", "order-backbone")
    assert (by_source["WebhooksAccepted"], by_source["WebhooksDuplicate"]) == ([2.0], [1.0])
    assert plain["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert plain["JobsClaimed"] == [3.0]


def test_disabled_metrics_write_nothing_and_keep_nothing(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The local stack's default: no blob, and none later (Powertools itself writes a blob
    once a metric holds 100 values, disabled or not, unless each flush is cleared)."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    for _ in range(120):
        with observability.invocation(CONTEXT):
            observability.count("WebhooksAccepted", source="shopify")
    assert written(capsys) == ([], [])
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    with observability.invocation(CONTEXT):
        observability.count("WebhooksAccepted", source="shopify")
    (blob,) = written(capsys)[1]
    assert blob["WebhooksAccepted"] == [1.0]


def test_the_middleware_takes_api_gateways_request_id_for_http_and_lambdas_for_events(
        capsys: pytest.CaptureFixture[str]) -> None:
    def respond(_: Any) -> str:
        log.info("handled")
        return "answer"

    request = SimpleNamespace(context={"requestId": "apigw-1"}, lambda_context=CONTEXT)
    event = SimpleNamespace(context=CONTEXT)
    assert observability.middleware(request, respond) == "answer"
    assert observability.middleware(event, respond) == "answer"
    http, queued = written(capsys)[0]
    assert (http["request_id"], http["function_request_id"]) == ("apigw-1", "req-1")
    assert (queued["request_id"], queued["function_request_id"]) == ("req-1", "req-1")
    assert http["function_name"] == "order_worker" and http["cold_start"] in (True, False)
