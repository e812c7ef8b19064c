"""The generic signed tracking webhook (Standard Webhooks, our vocabulary).

Signatures are computed by tests.support.standard_headers (hmac + base64 here), not by the
library under test.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib.core.errors import ApiError
from chalicelib.tracking.couriers import known_providers, provider_class
from chalicelib.tracking.couriers import standard_webhooks as wh
from chalicelib.tracking.model import ExceptionKind, Journey, ShipmentStatus
from chalicelib.tracking.thresholds import update
from tests.support import dumps, standard_headers

S, K = ShipmentStatus, ExceptionKind
FIXTURES = Path(__file__).parent.parent / "fixtures" / "couriers" / "webhook"
SECRET = "whsec_" + base64.b64encode(b"courier-relay-secret-32-bytes!!!").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the-previous-relay-secret-32-byt").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody-elses-secret-32-bytes!!").decode()


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> Any:
    return json.loads(raw(name))


def event(**changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = {"occurred_at": "2026-11-20T08:15:00+08:00",
                            "status": "out_for_delivery", "code": "DISPATCHING",
                            "description": "派件中", "location": "上海市"}
    line.update(changes)
    return line


def envelope(*events: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {"type": "tracking.updated",
            "data": {"carrier_code": "STO", "tracking_number": "773298415606271",
                     "events": list(events), **data}}


def signed(body: bytes, secret: str = SECRET, **kwargs: Any) -> dict[str, str]:
    return standard_headers(body, secret=secret, **kwargs)


def read(body: bytes, headers: dict[str, str] | None = None, secret: str = SECRET) -> Any:
    return wh.read_push(signed(body) if headers is None else headers, body, secret)


def refused(body: bytes, headers: dict[str, str], secret: str = SECRET) -> ApiError:
    with pytest.raises(ApiError) as error:
        wh.read_push(headers, body, secret)
    return error.value


# Valid pushes -----------------------------------------------------------------------------------

def test_a_delivered_journey_reads_into_our_events() -> None:
    body = raw("push_delivered.json")
    push = provider_class("webhook").read_push(signed(body), body, SECRET)
    assert (push.provider, push.carrier_code, push.tracking_number) == (
        "webhook", "STO", "773298415606271")
    assert push.monitoring == "finished"
    assert push.message == "signed for, tracking complete"
    assert push.skipped == 0 and push.resubscribe_after is None
    assert [e.status for e in push.events] == [
        S.DELIVERED, S.OUT_FOR_DELIVERY, S.IN_TRANSIT, S.IN_TRANSIT, S.PICKED_UP, S.INFO_RECEIVED]
    newest = push.events[0]
    assert newest.occurred_at == datetime(2026, 11, 20, 3, 42, 8, tzinfo=UTC)  # +08:00 -> UTC
    assert (newest.provider, newest.carrier_code, newest.tracking_number) == (
        "webhook", "STO", "773298415606271")
    assert newest.raw_code == "SIGNED" and newest.exceptions == ()
    assert newest.description.startswith("【上海市】快件已签收")
    assert newest.location == "上海市 徐汇区"
    assert not any(e.customs for e in push.events)
    assert push.events[-1].location == ""


def test_the_delivered_journey_finishes_the_shipment() -> None:
    body = raw("push_delivered.json")
    push = read(body)
    shipment = Journey(carrier_code="STO", tracking_number="773298415606271")
    shipment, _ = update(shipment, push.events, datetime(2026, 11, 20, 4, 0, tzinfo=UTC))
    assert shipment.status is S.DELIVERED and shipment.finished
    assert shipment.delivered_at == datetime(2026, 11, 20, 3, 42, 8, tzinfo=UTC)
    assert shipment.picked_up_at == datetime(2026, 11, 19, 10, 40, 55, tzinfo=UTC)
    assert shipment.open_kinds == frozenset()


def test_an_exception_push_feeds_the_domain_rules() -> None:
    body = raw("push_exception.json")
    push = read(body)
    assert push.carrier_code == "ZTO"  # sent as "zto": codes are ours, upper-case
    assert push.monitoring == "active" and push.message == ""
    failed = [e for e in push.events if e.status is S.DELIVERY_FAILED]
    assert [e.exceptions for e in failed] == [
        (K.ADDRESS_ISSUE, K.DELIVERY_FAILED, K.HELD_AT_FACILITY), (K.RECIPIENT_UNREACHABLE,)]
    assert {e.carrier_code for e in push.events} == {"ZTO"}
    shipment = Journey(carrier_code="ZTO", tracking_number="78912345678901")
    shipment, _ = update(shipment, push.events, datetime(2026, 11, 22, 6, 10, tzinfo=UTC))
    assert shipment.status is S.DELIVERY_FAILED
    assert len(shipment.failed_attempts) == 2  # one on each local day
    # The second day's failure escalates; the first day's unreachable recipient was cleared by
    # the next morning's dispatch scan.
    assert {K.ADDRESS_ISSUE, K.HELD_AT_FACILITY, K.REPEATED_DELIVERY_FAILURE} <= shipment.open_kinds
    assert K.RECIPIENT_UNREACHABLE not in shipment.open_kinds


def test_events_come_out_newest_first_whatever_order_they_were_sent_in() -> None:
    body = dumps(envelope(event(occurred_at="2026-11-20T08:15:00+08:00"),
                          event(occurred_at="2026-11-20T11:00:00+08:00", status="delivered",
                                code="SIGNED"),
                          event(occurred_at="2026-11-19T23:00:00Z", status="in_transit",
                                code="ARRIVED")))
    push = read(body)
    assert [e.raw_code for e in push.events] == ["SIGNED", "DISPATCHING", "ARRIVED"]


def test_optional_event_fields_and_raw_code_fallback() -> None:
    body = dumps(envelope({"occurred_at": "2026-11-21T01:00:00Z", "status": "in_transit",
                           "customs": True}))
    (only,) = read(body).events
    assert only.customs is True
    assert only.raw_code == "in_transit"  # no code: the status stands in for it
    assert (only.description, only.location, only.exceptions) == ("", "", ())
    # A corrected status for the same scan is a new event, not a silent repeat of the old one.
    fixed = dumps(envelope({"occurred_at": "2026-11-21T01:00:00Z", "status": "exception",
                            "customs": True}))
    assert read(fixed).events[0].event_id != only.event_id


def test_a_redelivery_is_the_same_events_and_carries_its_webhook_id() -> None:
    body = raw("push_delivered.json")
    first = signed(body, msg_id="msg_2nN0xQ7rEL1ZtVw8gH4pkfA9sBd")
    again = signed(body, msg_id="msg_2nN0xQ7rEL1ZtVw8gH4pkfA9sBd", timestamp=int(time.time()) - 90)
    assert read(body, first).events == read(body, again).events
    assert wh.delivery_id(first) == "msg_2nN0xQ7rEL1ZtVw8gH4pkfA9sBd"
    assert wh.delivery_id({"Webhook-Id": " msg_x "}) == "msg_x"
    assert wh.delivery_id({}) == ""


def test_header_names_are_case_insensitive() -> None:
    body = raw("push_delivered.json")
    headers = {name.title(): value for name, value in signed(body).items()}
    assert "Webhook-Signature" in headers
    assert read(body, headers).tracking_number == "773298415606271"


def test_unknown_envelope_fields_are_ignored_and_an_empty_push_is_valid() -> None:
    value = envelope(monitoring="aborted", message="no scans for 30 days")
    value |= {"id": "evt_123", "timestamp": "2026-11-20T03:42:31Z", "attempt": 3}
    push = read(dumps(value))
    assert push.events == () and push.monitoring == "aborted"
    assert push.message == "no scans for 30 days"


# Every value of our vocabulary --------------------------------------------------------------------

@pytest.mark.parametrize("status", list(ShipmentStatus))
def test_every_status_is_accepted(status: ShipmentStatus) -> None:
    (only,) = read(dumps(envelope(event(status=status.value)))).events
    assert only.status is status


@pytest.mark.parametrize("kind", list(ExceptionKind))
def test_every_exception_kind_is_accepted(kind: ExceptionKind) -> None:
    (only,) = read(dumps(envelope(event(status="exception", exceptions=[kind.value])))).events
    assert only.exceptions == (kind,)


# Signatures -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("case", "reason"), [
    ("tampered_body", "invalid_signature"),
    ("wrong_secret", "invalid_signature"),
    ("replayed_on_another_id", "invalid_signature"),
    ("garbled_signature", "invalid_signature"),
    ("unknown_version", "invalid_signature"),
    ("stale_timestamp", "stale_or_invalid_timestamp"),
    ("future_timestamp", "stale_or_invalid_timestamp"),
    ("unreadable_timestamp", "stale_or_invalid_timestamp"),
])
def test_bad_signatures_are_refused(case: str, reason: str) -> None:
    body = raw("push_delivered.json")
    now = int(time.time())
    headers = signed(body)
    sent = body
    if case == "tampered_body":
        sent = body.replace(b"773298415606271", b"773298415606272", 1)
        assert sent != body
    elif case == "wrong_secret":
        headers = signed(body, secret=OTHER_SECRET)
    elif case == "replayed_on_another_id":
        headers["webhook-id"] = "msg_another"
    elif case == "garbled_signature":
        headers["webhook-signature"] = "nonsense"
    elif case == "unknown_version":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    elif case == "stale_timestamp":
        headers = signed(body, timestamp=now - 6 * 60)
    elif case == "future_timestamp":
        headers = signed(body, timestamp=now + 6 * 60)
    elif case == "unreadable_timestamp":
        headers["webhook-timestamp"] = "yesterday"
    error = refused(sent, headers)
    assert (error.status, error.reason) == (401, reason)


def test_a_timestamp_inside_the_tolerance_is_accepted() -> None:
    body = raw("push_delivered.json")
    assert read(body, signed(body, timestamp=int(time.time()) - 4 * 60)).events


@pytest.mark.parametrize("dropped", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_each_missing_header_is_named(dropped: str) -> None:
    body = raw("push_delivered.json")
    headers = signed(body)
    del headers[dropped]
    error = refused(body, headers)
    assert (error.status, error.reason) == (401, "missing_signature")
    assert error.details["missing"] == [dropped]


def test_no_headers_or_empty_ones_are_missing_signature() -> None:
    body = raw("push_delivered.json")
    error = refused(body, {"Content-Type": "application/json"})
    assert (error.status, error.reason) == (401, "missing_signature")
    assert error.details["missing"] == ["webhook-id", "webhook-timestamp", "webhook-signature"]
    blank = signed(body) | {"webhook-signature": "  "}
    assert refused(body, blank).details["missing"] == ["webhook-signature"]


def test_the_sender_rotating_its_key_sends_two_signatures() -> None:
    body = raw("push_delivered.json")
    now = int(time.time())
    old = signed(body, secret=OLD_SECRET, msg_id="msg_rot", timestamp=now)
    new = signed(body, secret=SECRET, msg_id="msg_rot", timestamp=now)
    both = new | {"webhook-signature": f"{old['webhook-signature']} {new['webhook-signature']}"}
    assert read(body, both).tracking_number == "773298415606271"
    assert refused(body, old).reason == "invalid_signature"  # the old one alone is not ours


def test_we_rotate_by_holding_several_secrets() -> None:
    body = raw("push_delivered.json")
    held = f"{SECRET} {OLD_SECRET}"
    assert read(body, signed(body, secret=OLD_SECRET), secret=held).events
    assert read(body, signed(body, secret=SECRET), secret=f"{OLD_SECRET}\n{SECRET}").events
    assert refused(body, signed(body, secret=OTHER_SECRET), held).reason == "invalid_signature"
    assert wh.secrets_of(f"  {SECRET}  {OLD_SECRET} ") == (SECRET, OLD_SECRET)


@pytest.mark.parametrize("secret", ["", "   ", "whsec_", "whsec_=="])
def test_no_usable_secret_refuses_rather_than_fails(secret: str) -> None:
    body = raw("push_delivered.json")
    error = refused(body, signed(body), secret)
    assert (error.status, error.reason) == (401, "invalid_signature")


# Bodies -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"not json", b"{", b"[1, 2]", b'"tracking.updated"', b""])
def test_a_signed_body_that_is_not_a_json_object_is_400(body: bytes) -> None:
    error = refused(body, signed(body))
    assert (error.status, error.reason) == (400, "malformed_json")


def _problems(value: dict[str, Any]) -> dict[str, str]:
    body = dumps(value)
    error = refused(body, signed(body))
    assert (error.status, error.reason) == (422, "invalid_payload")
    return {p["field"]: p["problem"] for p in error.details["problems"]}


def test_an_unknown_status_is_422_naming_the_field() -> None:
    problems = _problems(envelope(event(), event(status="in_transit_maybe")))
    assert list(problems) == ["data.events.1.status"]


def test_a_naive_scan_time_is_422() -> None:
    problems = _problems(envelope(event(occurred_at="2026-11-20T08:15:00")))
    assert list(problems) == ["data.events.0.occurred_at"]
    assert "timezone" in problems["data.events.0.occurred_at"]


@pytest.mark.parametrize(("change", "field"), [
    ({"exceptions": ["lost", "stolen"]}, "data.events.0.exceptions.1"),
    ({"exception": ["lost"]}, "data.events.0.exception"),  # a typo must not drop the exception
    ({"occurred_at": "soon"}, "data.events.0.occurred_at"),
    ({"status": "DELIVERED"}, "data.events.0.status"),  # our values are lower-case
])
def test_event_fields_are_validated(change: dict[str, Any], field: str) -> None:
    assert list(_problems(envelope(event(**change)))) == [field]


@pytest.mark.parametrize(("value", "field"), [
    ({"type": "order.paid"}, "type"),
    ({"version": 2}, "version"),
    ({"timestamp": "2026-11-20T03:42:31"}, "timestamp"),
])
def test_the_envelope_is_versioned_and_typed(value: dict[str, Any], field: str) -> None:
    assert field in _problems(envelope(event()) | value)


@pytest.mark.parametrize(("data", "field"), [
    ({"tracking_number": "  "}, "data.tracking_number"),
    ({"carrier_code": ""}, "data.carrier_code"),
    ({"monitoring": "paused"}, "data.monitoring"),
    ({"shop": "erp-main"}, "data.shop"),
])
def test_data_fields_are_validated(data: dict[str, Any], field: str) -> None:
    assert field in _problems(envelope(event(), **data))


def test_data_is_required_and_events_are_capped() -> None:
    assert "data" in _problems({"type": "tracking.updated"})
    value = envelope(*[event(occurred_at=f"2026-11-20T08:{m % 60:02d}:{m // 60:02d}Z")
                       for m in range(wh.MAX_EVENTS + 1)])
    assert "data.events" in _problems(value)
    fits = copy.deepcopy(value)
    fits["data"]["events"] = fits["data"]["events"][:wh.MAX_EVENTS]
    assert len(read(dumps(fits)).events) == wh.MAX_EVENTS


# Reply and registry -----------------------------------------------------------------------------

def test_the_reply_is_200_ok_json() -> None:
    reply = provider_class("webhook").push_reply()
    assert (reply.status, reply.content_type) == (200, "application/json")
    assert json.loads(reply.body) == {"ok": True}


def test_the_adapter_is_registered() -> None:
    assert "webhook" in known_providers()
    assert provider_class("webhook") is wh.StandardWebhooks and wh.NAME == "webhook"
