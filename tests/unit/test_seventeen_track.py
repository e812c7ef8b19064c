from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from chalicelib.access.accounts import WebhookSource
from chalicelib.core import http
from chalicelib.core.errors import ApiError
from chalicelib.tracking import couriers
from chalicelib.tracking.couriers import provider_class
from chalicelib.tracking.couriers import seventeen_track as t17
from chalicelib.tracking.model import ExceptionKind, Journey, ShipmentStatus
from chalicelib.tracking.thresholds import update

S, K = ShipmentStatus, ExceptionKind
FIXTURES = Path(__file__).parent.parent / "fixtures" / "couriers" / "seventeen_track"
KEY = "9A1B2C3D4E5F60718293A4B5C6D7E8F9"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> Any:
    return json.loads(raw(name))


def signature(body: bytes, key: str = KEY) -> str:
    return hashlib.sha256(body + b"/" + key.encode()).hexdigest()


# The status table -------------------------------------------------------------------------------

EXPECTED_SUB: dict[str, tuple[ShipmentStatus, set[ExceptionKind], bool]] = {
    "NotFound_Other": (S.PENDING, set(), False),
    "NotFound_InvalidCode": (S.PENDING, {K.INVALID_TRACKING}, False),
    "InfoReceived": (S.INFO_RECEIVED, set(), False),
    "InTransit_PickedUp": (S.PICKED_UP, set(), False),
    "InTransit_Other": (S.IN_TRANSIT, set(), False),
    "InTransit_Departure": (S.IN_TRANSIT, set(), False),
    "InTransit_Arrival": (S.IN_TRANSIT, set(), False),
    "InTransit_CustomsProcessing": (S.IN_TRANSIT, set(), True),
    "InTransit_CustomsReleased": (S.IN_TRANSIT, set(), False),
    "InTransit_CustomsRequiringInformation": (S.IN_TRANSIT, {K.CUSTOMS_ISSUE}, True),
    "Expired_Other": (S.TRACKING_STOPPED, {K.PROVIDER_STALLED}, False),
    "AvailableForPickup_Other": (S.AVAILABLE_FOR_PICKUP, set(), False),
    "OutForDelivery_Other": (S.OUT_FOR_DELIVERY, set(), False),
    "DeliveryFailure_Other": (S.DELIVERY_FAILED, {K.DELIVERY_FAILED}, False),
    "DeliveryFailure_NoBody": (S.DELIVERY_FAILED, {K.RECIPIENT_UNREACHABLE}, False),
    "DeliveryFailure_Security": (S.DELIVERY_FAILED, {K.CUSTOMS_ISSUE}, False),
    "DeliveryFailure_Rejected": (S.DELIVERY_FAILED, {K.REFUSAL_INITIATED}, False),
    "DeliveryFailure_InvalidAddress": (S.DELIVERY_FAILED, {K.ADDRESS_ISSUE}, False),
    "Delivered_Other": (S.DELIVERED, set(), False),
    "Exception_Other": (S.EXCEPTION, {K.OTHER}, False),
    "Exception_Returning": (S.RETURNING, {K.RETURN_TO_SENDER}, False),
    "Exception_Returned": (S.RETURNED, {K.RETURN_TO_SENDER}, False),
    "Exception_NoBody": (S.EXCEPTION, {K.ADDRESS_ISSUE}, False),
    "Exception_Security": (S.EXCEPTION, {K.CUSTOMS_ISSUE}, False),
    "Exception_Damage": (S.EXCEPTION, {K.DAMAGED}, False),
    "Exception_Rejected": (S.EXCEPTION, {K.REFUSAL_INITIATED}, False),
    "Exception_Delayed": (S.EXCEPTION, {K.CARRIER_DELAY}, False),
    "Exception_Lost": (S.EXCEPTION, {K.LOST}, False),
    "Exception_Destroyed": (S.EXCEPTION, {K.LOST}, False),
    "Exception_Cancel": (S.CANCELLED, set(), False),
}


def test_the_table_covers_exactly_the_documented_sub_statuses() -> None:
    assert set(t17.SUB_STATUSES) == set(EXPECTED_SUB)


@pytest.mark.parametrize("sub", sorted(EXPECTED_SUB))
def test_every_sub_status_maps_onto_both_axes(sub: str) -> None:
    main = sub.split("_")[0]
    mapped = t17.map_status(main, sub)
    assert mapped is not None
    assert (mapped.status, set(mapped.exceptions), mapped.customs) == EXPECTED_SUB[sub]


@pytest.mark.parametrize(("main", "status"), [
    ("NotFound", S.PENDING), ("InfoReceived", S.INFO_RECEIVED), ("InTransit", S.IN_TRANSIT),
    ("Expired", S.TRACKING_STOPPED), ("AvailableForPickup", S.AVAILABLE_FOR_PICKUP),
    ("OutForDelivery", S.OUT_FOR_DELIVERY), ("DeliveryFailure", S.DELIVERY_FAILED),
    ("Delivered", S.DELIVERED), ("Exception", S.EXCEPTION),
])
def test_a_main_status_alone_reads_as_its_other_case(main: str, status: ShipmentStatus) -> None:
    mapped = t17.map_status(main, "SomethingNew_Unknown")
    assert mapped is not None and mapped.status is status
    assert t17.map_status("Nonsense") is None


# Pushes -----------------------------------------------------------------------------------------

def test_sign_is_sha256_of_the_raw_body_slash_key() -> None:
    body = raw("push_tracking_updated.json")
    assert t17.sign(body, KEY) == hashlib.sha256(body + b"/" + KEY.encode()).hexdigest()
    # A fixed vector, so a change of algorithm or separator cannot pass unnoticed.
    assert t17.sign(b"{}", "k") == (
        "b46c2b8292d50affff807248811c13b4"
        "48cb2b46949460bc740284221257a064")


def test_verify_push_over_the_raw_bytes() -> None:
    body = raw("push_tracking_updated.json")
    sig = signature(body)
    assert t17.verify_push(body, sig, KEY)
    assert t17.verify_push(body, sig.upper(), KEY)
    assert not t17.verify_push(body + b"\n", sig, KEY)  # re-serialised JSON would hide this
    assert not t17.verify_push(body, signature(body, "other-key"), KEY)
    assert not t17.verify_push(body, None, KEY)
    assert not t17.verify_push(body, sig, "")


def test_read_push_normalises_every_provider_leg() -> None:
    body = raw("push_tracking_updated.json")
    push = provider_class("17track").read_push({"Sign": signature(body)}, body, KEY)
    assert (push.provider, push.carrier_code, push.tracking_number) == (
        "17track", "EMS", "LX123456789CN")
    assert push.monitoring == "active"
    assert len(push.events) == 8  # both legs: China EMS and Deutsche Post
    newest = push.events[0]
    assert newest.status is S.DELIVERY_FAILED and newest.exceptions == (K.RECIPIENT_UNREACHABLE,)
    assert newest.occurred_at == datetime(2026, 5, 9, 13, 20, tzinfo=UTC)
    customs = [e for e in push.events if e.customs]
    assert [e.raw_code for e in customs] == ["InTransit_CustomsProcessing"]
    assert push.events[-1].status is S.INFO_RECEIVED


@pytest.mark.parametrize(("headers", "body", "status", "reason"), [
    ({}, b"{}", 401, "missing_signature"),
    ({"sign": "0" * 64}, b"{}", 401, "invalid_signature"),
    ({"sign": signature(b"[1]")}, b"[1]", 400, "malformed_push"),
    ({"sign": signature(b"{")}, b"{", 400, "malformed_push"),
    ({"sign": signature(b'{"data":{}}')}, b'{"data":{}}', 400, "malformed_push"),
])
def test_bad_pushes_are_refused(headers: dict[str, str], body: bytes, status: int,
                                reason: str) -> None:
    with pytest.raises(ApiError) as error:
        t17.read_push(headers, body, KEY)
    assert (error.value.status, error.value.reason) == (status, reason)


def test_tracking_stopped_without_a_final_status_means_watch_it_yourself() -> None:
    body = raw("push_tracking_stopped.json")
    push = t17.read_push({"sign": signature(body)}, body, KEY)
    assert push.monitoring == "aborted" and push.events == ()
    delivered = fixture("gettrackinfo_answer.json")["data"]["accepted"][0]
    stopped = json.dumps({"event": "TRACKING_STOPPED", "data": delivered}).encode()
    assert t17.read_push({"sign": signature(stopped)}, stopped, KEY).monitoring == "finished"


def test_the_push_reply_is_a_plain_200() -> None:
    assert t17.push_reply().status == 200


def test_a_push_feeds_the_domain_rules() -> None:
    body = raw("push_tracking_updated.json")
    push = t17.read_push({"sign": signature(body)}, body, KEY)
    shipment = Journey(carrier_code="EMS", tracking_number="LX123456789CN",
                       utc_offset_minutes=120)  # the recipient is in Berlin
    shipment, _ = update(shipment, push.events, datetime(2026, 5, 9, 14, 0, tzinfo=UTC))
    assert shipment.status is S.DELIVERY_FAILED
    assert shipment.failed_attempts == (datetime(2026, 5, 9, 13, 20, tzinfo=UTC),)
    assert not shipment.in_customs and shipment.picked_up_at is not None


# Answers ----------------------------------------------------------------------------------------

def test_track_info_answer_parses_accepted_and_rejected() -> None:
    answer = t17.parse_batch_answer(fixture("gettrackinfo_answer.json"))
    assert [r.number for r in answer.rejected] == ["LX000000000CN"]
    assert answer.rejected[0].not_registered and not answer.rejected[0].already_registered
    info = t17.parse_track_info(answer.accepted[0])
    assert (info.number, info.carrier_code, info.carrier_key) == ("LX123456789CN", "EMS", 3013)
    assert info.events[0].status is S.DELIVERED
    assert [e.occurred_at for e in info.events] == sorted(
        (e.occurred_at for e in info.events), reverse=True)


def test_events_without_sub_status_use_their_stage_then_the_latest_status() -> None:
    item = fixture("gettrackinfo_answer.json")["data"]["accepted"][0]
    legs = item["track_info"]["tracking"]["providers"]
    for leg in legs:
        for event in leg["events"]:
            event.pop("sub_status")
    info = t17.parse_track_info(item)
    codes = [e.raw_code for e in info.events]
    assert codes[0] == "Delivered_Other"  # its stage
    assert "InTransit_PickedUp" in codes and "InfoReceived" in codes
    assert codes.count("InTransit_Other") == 3  # no stage: plain transit
    assert "InTransit_Departure" in codes and "OutForDelivery_Other" in codes


def test_a_line_without_a_usable_time_is_counted_not_fatal() -> None:
    item = fixture("gettrackinfo_answer.json")["data"]["accepted"][0]
    event = item["track_info"]["tracking"]["providers"][1]["events"][0]
    event["time_utc"], event["time_iso"] = None, "sometime"
    info = t17.parse_track_info(item)
    assert info.skipped == 1 and len(info.events) == 7


def test_a_request_level_error_is_typed() -> None:
    with pytest.raises(t17.AuthError) as error:
        t17.parse_batch_answer(fixture("error_answer.json"))
    assert error.value.code == "-18010002" and not error.value.retryable
    with pytest.raises(t17.QuotaExhausted):
        t17.parse_batch_answer({"code": -18019908, "data": {"errors": [{"code": -18019908}]}})
    with pytest.raises(t17.ProviderUnavailable):
        t17.parse_batch_answer({"code": -18010003, "data": {"errors": [{"code": -18010003}]}})


def test_register_bodies_carry_our_carrier_as_tag_40_per_request() -> None:
    items = [t17.Registration(number=f"LX{i:09d}CN", carrier_code="EMS") for i in range(85)]
    bodies = t17.register_bodies(items)
    assert [len(body) for body in bodies] == [40, 40, 5]
    assert bodies[0][0] == {"number": "LX000000000CN", "tag": "EMS"}
    keyed = t17.register_bodies([t17.Registration(number="LX1", carrier_code="EMS",
                                                  carrier_key=3013, param="8000")])
    assert keyed == [[{"number": "LX1", "tag": "EMS", "carrier": 3013, "param": "8000"}]]
    assert [len(b) for b in t17.number_bodies([str(i) for i in range(40)])] == [40]


# The thin I/O part ------------------------------------------------------------------------------

class FakeTime:
    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def paced_on_fake_time(fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """core.http's pacers start afresh and wait on the fake clock."""
    monkeypatch.setattr(http, "_pacers", {})
    monkeypatch.setattr(http.time, "monotonic", fake_time.clock)
    monkeypatch.setattr(http.time, "sleep", fake_time.sleep)
    return fake_time


@pytest.fixture
def client(fake_time: FakeTime) -> t17.SeventeenTrackClient:
    return t17.SeventeenTrackClient(KEY, sleep=fake_time.sleep,
                                    pace=http.Pace(key="test.17track", rate=1000.0, burst=1000))


URL = t17.BASE_URL


@responses.activate
def test_register_sends_the_token_and_merges_batches(client: t17.SeventeenTrackClient) -> None:
    responses.add(responses.POST, f"{URL}/register", json=fixture("register_answer.json"))
    items = [t17.Registration(number=f"LX{i:09d}CN", carrier_code="EMS") for i in range(45)]
    answer = client.register(items)
    assert len(responses.calls) == 2
    assert all(c.request.headers["17token"] == KEY for c in responses.calls)
    assert [len(json.loads(c.request.body or b"[]")) for c in responses.calls] == [40, 5]
    assert len(answer.accepted) == 2 and all(r.already_registered for r in answer.rejected)


@responses.activate
def test_get_track_info_returns_our_events(client: t17.SeventeenTrackClient) -> None:
    responses.add(responses.POST, f"{URL}/gettrackinfo", json=fixture("gettrackinfo_answer.json"))
    infos, rejected = client.get_track_info(["LX123456789CN", "LX000000000CN"])
    assert [i.number for i in infos] == ["LX123456789CN"] and rejected[0].not_registered
    assert infos[0].events[0].provider == "17track"


@responses.activate
def test_rate_limits_5xx_and_timeouts_are_retried_with_backoff(
        client: t17.SeventeenTrackClient, fake_time: FakeTime) -> None:
    responses.add(responses.POST, f"{URL}/stoptrack", status=429)
    responses.add(responses.POST, f"{URL}/stoptrack", body=requests.ReadTimeout("slow"))
    responses.add(responses.POST, f"{URL}/stoptrack",
                  json={"code": 0, "data": {"accepted": [{"number": "LX1"}], "rejected": []}})
    assert len(client.stop_track(["LX1"]).accepted) == 1
    assert len(responses.calls) == 3 and fake_time.sleeps == [0.5, 1.0]


@responses.activate
def test_retries_are_bounded(client: t17.SeventeenTrackClient) -> None:
    responses.add(responses.POST, f"{URL}/retrack", status=500)
    with pytest.raises(t17.ProviderUnavailable):
        client.retrack(["LX1"])
    assert len(responses.calls) == 3


@pytest.mark.parametrize(("status", "error_type"), [
    (401, t17.AuthError), (403, t17.AuthError), (400, t17.BadRequest),
])
@responses.activate
def test_refusals_are_not_retried(client: t17.SeventeenTrackClient, status: int,
                                  error_type: type[Exception]) -> None:
    responses.add(responses.POST, f"{URL}/register", status=status)
    with pytest.raises(error_type):
        client.register([t17.Registration(number="LX1", carrier_code="EMS")])
    assert len(responses.calls) == 1


@responses.activate
def test_a_bad_key_answer_is_not_retried(client: t17.SeventeenTrackClient) -> None:
    responses.add(responses.POST, f"{URL}/gettrackinfo", json=fixture("error_answer.json"))
    with pytest.raises(t17.AuthError):
        client.get_track_info(["LX1"])
    assert len(responses.calls) == 1


@responses.activate
def test_requests_are_paced_at_three_per_second(paced_on_fake_time: FakeTime) -> None:
    fake_time = paced_on_fake_time
    client = t17.SeventeenTrackClient(KEY, sleep=fake_time.sleep)
    responses.add(responses.POST, f"{URL}/gettrackinfo",
                  json={"code": 0, "data": {"accepted": [], "rejected": []}})
    client.get_track_info([f"LX{i:09d}CN" for i in range(200)])  # 5 requests of 40
    assert len(responses.calls) == 5
    assert sum(fake_time.sleeps) == pytest.approx(2 / 3)


# The provider with our account: what a failed call means for the watch and for CS -----------------

@dataclass(frozen=True)
class Waybill:
    carrier_code: str = "EMS"
    tracking_number: str = "LX123456789CN"
    phone: str = ""
    destination: str = ""

    @property
    def label(self) -> str:
        return f"{self.carrier_code} {self.tracking_number}"


@pytest.fixture
def courier(paced_on_fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch) -> t17.SeventeenTrack:
    account = WebhookSource(scheme="17track", secrets=(KEY,), options={"token": KEY})
    found = couriers.provider("17track", account)
    assert isinstance(found, t17.SeventeenTrack)
    monkeypatch.setattr(found.client, "_sleep", paced_on_fake_time.sleep)  # no real backoff
    return found


@responses.activate
def test_registered_or_already_registered_is_subscribed(courier: t17.SeventeenTrack) -> None:
    responses.add(responses.POST, f"{URL}/register", json=fixture("register_answer.json"))
    assert courier.subscribe(Waybill())
    assert json.loads(responses.calls[0].request.body or b"[]") == [
        {"number": "LX123456789CN", "tag": "EMS"}]


@responses.activate
def test_a_query_returns_the_numbers_events(courier: t17.SeventeenTrack) -> None:
    responses.add(responses.POST, f"{URL}/gettrackinfo", json=fixture("gettrackinfo_answer.json"))
    events = courier.query(Waybill())
    assert events and {e.tracking_number for e in events} == {"LX123456789CN"}


@responses.activate
def test_a_bad_key_counts_and_is_the_accounts_problem(courier: t17.SeventeenTrack) -> None:
    responses.add(responses.POST, f"{URL}/gettrackinfo", json=fixture("error_answer.json"))
    with pytest.raises(couriers.ProviderError) as error:
        courier.query(Waybill())
    assert (error.value.counted, error.value.alert) == (True, couriers.ACCOUNT_ALERT)


@responses.activate
def test_what_a_retry_may_fix_was_not_served_and_does_not_count(
        courier: t17.SeventeenTrack) -> None:
    responses.add(responses.POST, f"{URL}/register", status=429)
    with pytest.raises(couriers.ProviderError) as error:
        courier.subscribe(Waybill())
    assert (error.value.counted, error.value.alert) == (False, None)
    assert len(responses.calls) == 3


def test_event_times_keep_their_instant() -> None:
    item = fixture("gettrackinfo_answer.json")["data"]["accepted"][0]
    for leg in item["track_info"]["tracking"]["providers"]:
        for event in leg["events"]:
            event["time_utc"] = None  # only the local time with its offset
    info = t17.parse_track_info(item)
    assert info.events[-1].occurred_at == datetime(2026, 5, 2, 2, 0, tzinfo=UTC)
    assert info.events[0].occurred_at - info.events[1].occurred_at == timedelta(hours=27,
                                                                                minutes=37)
