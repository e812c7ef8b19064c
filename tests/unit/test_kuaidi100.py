from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
import requests
import responses

from chalicelib.access.accounts import WebhookSource
from chalicelib.core import http
from chalicelib.core.errors import ApiError
from chalicelib.tracking import couriers
from chalicelib.tracking.couriers import known_providers, provider_class
from chalicelib.tracking.couriers import kuaidi100 as k100
from chalicelib.tracking.model import ExceptionKind, Journey, ShipmentStatus, TrackingEvent
from chalicelib.tracking.thresholds import update

S, K = ShipmentStatus, ExceptionKind
FIXTURES = Path(__file__).parent.parent / "fixtures" / "couriers" / "kuaidi100"
CUSTOMER, KEY, SALT = "C0FFEE0123456789ABCDEF0123456789", "kEyKeYkEy12", "s4lt-for-pushes"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def fixture(name: str) -> Any:
    return json.loads(fixture_text(name))


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def signed_form(param: str, salt: str = SALT) -> dict[str, str]:
    return {"param": param, "sign": md5_upper(param + salt)}


def push_body(name: str, salt: str = SALT) -> bytes:
    """The push exactly as Kuaidi100 posts it: a urlencoded form, `param` verbatim."""
    return urlencode(signed_form(fixture_text(name), salt)).encode("utf-8")


# Carrier codes and the state table --------------------------------------------------------------

def test_our_carrier_codes_map_to_kuaidi100_com_values() -> None:
    assert k100.CARRIERS == {"STO": "shentong", "SF": "shunfeng", "YTO": "yuantong",
                             "ZTO": "zhongtong", "YUNDA": "yunda", "JD": "jd", "EMS": "ems"}
    assert k100.com_for("yunda") == "yunda" and k100.carrier_for("shunfeng") == "SF"
    assert k100.carrier_for("debangwuliu") == "DEBANGWULIU"
    with pytest.raises(ValueError, match="no code"):
        k100.com_for("DHL")


# Every documented `state` / `statusCode` (protocols.md §3, checked against the official table).
EXPECTED_STATES: dict[str, tuple[ShipmentStatus, set[ExceptionKind], bool]] = {
    "0": (S.IN_TRANSIT, set(), False),
    "1001": (S.IN_TRANSIT, set(), False),
    "1002": (S.IN_TRANSIT, set(), False),
    "1003": (S.IN_TRANSIT, {K.REDIRECTED}, False),
    "1": (S.PICKED_UP, set(), False),
    "101": (S.INFO_RECEIVED, set(), False),
    "102": (S.INFO_RECEIVED, set(), False),
    "103": (S.PICKED_UP, set(), False),
    "5": (S.OUT_FOR_DELIVERY, set(), False),
    "501": (S.AVAILABLE_FOR_PICKUP, set(), False),
    "3": (S.DELIVERED, set(), False),
    "301": (S.DELIVERED, set(), False),
    "302": (S.DELIVERED, set(), False),
    "303": (S.DELIVERED, set(), False),
    "304": (S.DELIVERED, set(), False),
    "6": (S.RETURNING, {K.RETURN_TO_SENDER}, False),
    "4": (S.RETURNED, {K.RETURN_TO_SENDER}, False),
    "401": (S.CANCELLED, set(), False),
    "14": (S.RETURNED, {K.REFUSED_RETURNED}, False),
    "7": (S.IN_TRANSIT, {K.CARRIER_TRANSFER}, False),
    "8": (S.IN_TRANSIT, set(), True),
    "10": (S.IN_TRANSIT, set(), True),
    "11": (S.IN_TRANSIT, set(), True),
    "12": (S.IN_TRANSIT, set(), False),
    "13": (S.EXCEPTION, {K.CUSTOMS_ISSUE}, True),
    "2": (S.EXCEPTION, {K.OTHER}, False),
    "201": (S.OUT_FOR_DELIVERY, {K.CARRIER_DELAY}, False),
    "202": (S.EXCEPTION, {K.CARRIER_DELAY}, False),
    "203": (S.EXCEPTION, {K.REFUSAL_INITIATED}, False),
    "204": (S.DELIVERY_FAILED, {K.DELIVERY_FAILED}, False),
    "205": (S.AVAILABLE_FOR_PICKUP, {K.PICKUP_UNCOLLECTED}, False),
    "206": (S.DELIVERY_FAILED, {K.RECIPIENT_UNREACHABLE}, False),
    "207": (S.EXCEPTION, {K.ADDRESS_ISSUE}, False),
    "208": (S.EXCEPTION, {K.HELD_AT_FACILITY}, False),
    "209": (S.EXCEPTION, {K.DAMAGED}, False),
    "210": (S.CANCELLED, set(), False),
}


def test_the_table_covers_exactly_the_documented_codes() -> None:
    assert set(k100.STATES) == set(EXPECTED_STATES)


@pytest.mark.parametrize("code", list(EXPECTED_STATES))
def test_every_documented_code_maps_onto_both_axes(code: str) -> None:
    status, kinds, customs = EXPECTED_STATES[code]
    mapped = k100.map_state(code)
    assert mapped is not None
    assert (mapped.status, set(mapped.exceptions), mapped.customs) == (status, kinds, customs)


def test_status_names_map_to_the_same_codes() -> None:
    assert set(k100.STATE_NAMES.values()) == set(k100.STATES)
    assert k100.map_state("派件异常") == k100.map_state("204")
    assert k100.map_state("拒签") == k100.map_state("14")
    assert k100.map_state("no such state") is None


# Requests ---------------------------------------------------------------------------------------

def test_sign_is_upper_case_md5_of_param_key_customer() -> None:
    param = '{"com":"yuantong","num":"YT2400000000001"}'
    expected = hashlib.md5((param + KEY + CUSTOMER).encode()).hexdigest().upper()
    assert k100.sign(param, KEY, CUSTOMER) == expected
    # A fixed vector, so a change of algorithm or order cannot pass unnoticed.
    assert k100.sign("p", "k", "c") == "F03D9E418EE2C11B40BEA3923C12A51D"


def test_query_request_signs_the_exact_param_it_sends() -> None:
    form = k100.query_request("YTO", "YT2400000000001", customer=CUSTOMER, key=KEY,
                              to="上海市浦东新区")
    assert set(form) == {"customer", "sign", "param"}
    assert form["sign"] == md5_upper(form["param"] + KEY + CUSTOMER)
    assert json.loads(form["param"]) == {"com": "yuantong", "num": "YT2400000000001",
                                         "to": "上海市浦东新区", "resultv2": "4", "show": "0",
                                         "order": "desc"}
    assert "上海" in form["param"]  # UTF-8 as is, not \\u escapes: the signature covers it


@pytest.mark.parametrize("carrier", ["SF", "ZTO", "sf"])
def test_sf_and_zto_require_a_phone(carrier: str) -> None:
    with pytest.raises(ValueError, match="phone"):
        k100.query_request(carrier, "SF1400123456789", customer=CUSTOMER, key=KEY)
    form = k100.query_request(carrier, "SF1400123456789", customer=CUSTOMER, key=KEY,
                              phone="+86 138-0013-8000")
    assert json.loads(form["param"])["phone"] == "8000"


@pytest.mark.parametrize(("phone", "tail"), [
    ("13800138000", "8000"), ("+86 138 0013 8123", "8123"), ("0571-88886666", "6666"),
    ("13800138000-5678", "5678"),  # a marketplace's virtual number: the extension is checked
])
def test_only_the_last_four_digits_are_sent(phone: str, tail: str) -> None:
    assert k100.phone_tail(phone) == tail


def test_a_phone_too_short_to_check_is_refused() -> None:
    with pytest.raises(ValueError, match="four digits"):
        k100.phone_tail("12-3")


def test_subscribe_request_has_the_documented_shape() -> None:
    form = k100.subscribe_request("ZTO", "78300000000001", key=KEY,
                                  callback_url="https://api.example.com/couriers/kuaidi100/push",
                                  salt=SALT, phone="13800138000")
    assert form["schema"] == "json"
    assert json.loads(form["param"]) == {
        "company": "zhongtong", "number": "78300000000001", "key": KEY,
        "parameters": {"callbackurl": "https://api.example.com/couriers/kuaidi100/push",
                       "salt": SALT, "resultv2": "4", "phone": "8000"}}
    with pytest.raises(ValueError, match="salt"):
        k100.subscribe_request("STO", "773012345678901", key=KEY, callback_url="https://x",
                               salt="")


# Pushes -----------------------------------------------------------------------------------------

def test_verify_push_is_md5_of_param_plus_salt() -> None:
    param = fixture_text("push_in_transit.json")
    form = signed_form(param)
    assert k100.verify_push(form, SALT)
    assert k100.verify_push(form | {"sign": form["sign"].lower()}, SALT)
    assert not k100.verify_push(form, "another-salt")
    assert not k100.verify_push(form | {"param": param.replace("杭州", "苏州", 1)}, SALT)
    assert not k100.verify_push(form | {"param": param + " "}, SALT)  # bytes, not JSON meaning
    assert not k100.verify_push({"param": param}, SALT)
    assert not k100.verify_push(form, "")  # an empty salt would verify anyone's md5(param)


def test_read_push_verifies_and_normalises_a_push() -> None:
    push = provider_class("kuaidi100").read_push({}, push_body("push_in_transit.json"), SALT)
    assert (push.provider, push.carrier_code, push.tracking_number) == (
        "kuaidi100", "STO", "773012345678901")
    assert push.monitoring == "active" and push.skipped == 0
    assert [e.raw_code for e in push.events] == ["1002", "1002", "0", "103", "101"]
    newest = push.events[0]
    # 2026-05-02 06:12:40 in China is 2026-05-01 22:12:40 UTC.
    assert newest.occurred_at == datetime(2026, 5, 1, 22, 12, 40, tzinfo=UTC)
    assert newest.location == "浙江,杭州市,余杭区" and "杭州转运中心" in newest.description


@pytest.mark.parametrize(("body", "status", "reason"), [
    (urlencode({"param": "{}"}).encode(), 401, "missing_signature"),
    (urlencode({"param": "{}", "sign": "0" * 32}).encode(), 401, "invalid_signature"),
    (urlencode(signed_form("not json")).encode(), 400, "malformed_push"),
    (urlencode(signed_form('{"status":"polling","lastResult":{}}')).encode(), 400,
     "malformed_push"),
    (b"\xff\xfe", 400, "malformed_push"),
])
def test_bad_pushes_are_refused(body: bytes, status: int, reason: str) -> None:
    with pytest.raises(ApiError) as error:
        k100.read_push({}, body, SALT)
    assert (error.value.status, error.value.reason) == (status, reason)


def test_the_push_reply_is_exactly_what_kuaidi100_expects() -> None:
    assert k100.PUSH_REPLY == {"result": True, "returnCode": "200", "message": "成功"}
    reply = k100.push_reply()
    assert reply.status == 200 and json.loads(reply.body) == k100.PUSH_REPLY
    assert "成功" in reply.body


@pytest.mark.parametrize(("name", "monitoring", "newest"), [
    ("push_in_transit.json", "active", S.IN_TRANSIT),
    ("push_out_for_delivery.json", "active", S.OUT_FOR_DELIVERY),
    ("push_signed.json", "finished", S.DELIVERED),
    ("push_refused_203.json", "active", S.EXCEPTION),
    ("push_refused_14.json", "finished", S.RETURNED),
    ("push_delivery_problem_twice.json", "active", S.DELIVERY_FAILED),
    ("push_locker_uncollected.json", "active", S.AVAILABLE_FOR_PICKUP),
    ("push_damaged.json", "active", S.EXCEPTION),
    ("push_redirected.json", "active", S.IN_TRANSIT),
])
def test_every_recorded_journey_parses(name: str, monitoring: str,
                                       newest: ShipmentStatus) -> None:
    push = k100.read_push({}, push_body(name), SALT)
    assert push.monitoring == monitoring and push.events[0].status is newest
    assert push.carrier_code in k100.CARRIERS


def test_an_abort_asks_for_a_resubscription_after_30_minutes() -> None:
    push = k100.read_push({}, push_body("push_abort.json"), SALT)
    assert push.monitoring == "aborted" and push.events == ()
    assert push.message == "3天查询无记录"
    assert push.resubscribe_after == timedelta(minutes=30)


def test_a_corrected_carrier_code_is_taken_from_com_new() -> None:
    param = fixture("push_in_transit.json") | {"autoCheck": "1", "comOld": "yuantong",
                                               "comNew": "shentong"}
    param["lastResult"]["com"] = "yuantong"
    result = k100.parse_push(signed_form(json.dumps(param, ensure_ascii=False)))
    assert result.auto_check and result.carrier_code == "STO"
    assert {e.carrier_code for e in result.events} == {"STO"}


def test_lines_without_a_code_fall_back_to_the_name_then_the_state() -> None:
    answer = fixture("query_answer.json")
    for line in answer["data"]:
        del line["statusCode"]
    answer["data"][0]["status"] = "?"  # neither code nor a known name: the answer's state
    parsed = k100.parse_query_answer(answer)
    assert [e.raw_code for e in parsed.events] == ["1001", "1002", "1002", "103"]


def test_an_unreadable_line_is_counted_not_fatal() -> None:
    answer = fixture("query_answer.json")
    answer["data"][1]["ftime"] = answer["data"][1]["time"] = "yesterday"
    parsed = k100.parse_query_answer(answer)
    assert parsed.skipped == 1 and len(parsed.events) == 3


# Whole journeys through the domain rules --------------------------------------------------------

def shipment_for(number: str, carrier: str) -> Journey:
    return Journey(carrier_code=carrier, tracking_number=number,
                   handed_over_at=datetime(2026, 5, 1, 0, 0, tzinfo=UTC))


def events_of(*names: str) -> Iterator[tuple[TrackingEvent, ...]]:
    for name in names:
        yield k100.read_push({}, push_body(name), SALT).events


def alerts_opened(shipment: Journey, *names: str) -> list[ExceptionKind]:
    """Each push judged a few minutes after its newest scan, as the push handler would."""
    opened = []
    for events in events_of(*names):
        now = max(e.occurred_at for e in events) + timedelta(minutes=5)
        shipment, changes = update(shipment, events, now)
        opened += [c.exception.kind for c in changes
                   if c.type == "exception_opened" and c.exception and c.exception.alerts]
    return opened


def test_a_refused_parcel_is_one_case_escalated_not_two() -> None:
    now = datetime(2026, 5, 5, 7, 0, tzinfo=UTC)
    start = shipment_for("78300000000001", "ZTO")
    assert alerts_opened(start, "push_refused_203.json", "push_refused_14.json") == [
        K.REFUSAL_INITIATED, K.REFUSED_RETURNED]
    final = update(start, [e for events in events_of("push_refused_14.json") for e in events],
                   now)[0]
    assert final.status is S.RETURNED
    assert final.open_kinds == {K.REFUSED_RETURNED, K.RETURN_TO_SENDER}
    assert [(e.kind, e.supersedes) for e in final.open_exceptions if e.alerts] == [
        (K.REFUSED_RETURNED, K.REFUSAL_INITIATED)]


def test_the_second_failed_delivery_opens_exactly_one_alert() -> None:
    opened = alerts_opened(shipment_for("4310000000001", "YUNDA"),
                           "push_delivery_problem_twice.json")
    assert opened == [K.REPEATED_DELIVERY_FAILURE]


def test_a_redirect_and_damage_are_cases_a_signature_completes() -> None:
    now = datetime(2026, 5, 2, 4, 0, tzinfo=UTC)
    assert alerts_opened(shipment_for("JDVA00000000001", "JD"), "push_redirected.json") == [
        K.REDIRECTED]
    assert alerts_opened(shipment_for("SF1400123456790", "SF"), "push_damaged.json") == [
        K.DAMAGED]
    signed = update(shipment_for("SF1400123456789", "SF"),
                    next(events_of("push_signed.json")), now)[0]
    assert signed.status is S.DELIVERED and signed.open_kinds == frozenset()


def test_the_locker_reports_uncollected() -> None:
    assert alerts_opened(shipment_for("1100000000001", "EMS"),
                         "push_locker_uncollected.json") == [K.PICKUP_UNCOLLECTED]


# Answers ----------------------------------------------------------------------------------------

def test_a_query_answer_parses_into_events() -> None:
    answer = k100.parse_query_answer(fixture("query_answer.json"))
    assert (answer.carrier_code, answer.tracking_number, answer.state) == (
        "YTO", "YT2400000000001", "1001")
    assert [e.status for e in answer.events] == [S.IN_TRANSIT] * 3 + [S.PICKED_UP]


ERRORS: dict[str, tuple[type[k100.Kuaidi100Error], bool]] = {
    "400": (k100.BadRequest, False), "408": (k100.PhoneCheckFailed, False),
    "500": (k100.NoResult, True), "501": (k100.ServerError, True),
    "502": (k100.ServerBusy, True), "503": (k100.SignatureError, False),
    "601": (k100.QuotaExhausted, False),
}


@pytest.mark.parametrize("code", sorted(ERRORS))
def test_every_query_error_code_is_a_typed_error(code: str) -> None:
    error_type, retryable = ERRORS[code]
    with pytest.raises(error_type) as error:
        k100.parse_query_answer(fixture("query_errors.json")[code])
    assert error.value.code == code and error.value.retryable is retryable


@pytest.mark.parametrize(("case", "outcome"), [
    ("accepted", (True, False)), ("duplicate", (True, True)),
    ("server_error", k100.ServerError), ("bad_key", k100.AccountError),
    ("expired", k100.QuotaExhausted), ("bad_data", k100.SubscriptionRejected),
    ("refused_carrier", k100.SubscriptionRejected),
    ("unknown_carrier", k100.SubscriptionRejected),
])
def test_subscribe_answers(case: str, outcome: object) -> None:
    answer = fixture("subscribe_answers.json")[case]
    if isinstance(outcome, tuple):
        parsed = k100.parse_subscribe_answer(answer)
        assert (parsed.accepted, parsed.duplicate) == outcome
    else:
        assert isinstance(outcome, type)
        with pytest.raises(outcome):
            k100.parse_subscribe_answer(answer)


# The thin I/O part ------------------------------------------------------------------------------

class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
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
def client(fake_time: FakeTime) -> k100.Kuaidi100Client:
    return k100.Kuaidi100Client(CUSTOMER, KEY, sleep=fake_time.sleep, clock=fake_time.clock,
                                pace=http.Pace(key="test.kuaidi100", rate=100.0, burst=100))


def sent_form(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


@responses.activate
def test_query_posts_the_signed_form_and_parses_the_answer(
        client: k100.Kuaidi100Client) -> None:
    responses.add(responses.POST, k100.QUERY_URL, json=fixture("query_answer.json"))
    answer = client.query("YTO", "YT2400000000001")
    assert len(answer.events) == 4
    form = sent_form(responses.calls[0])
    assert form["customer"] == CUSTOMER
    assert form["sign"] == md5_upper(form["param"] + KEY + CUSTOMER)


@pytest.mark.parametrize(("code", "error_type"), [
    ("503", k100.SignatureError), ("601", k100.QuotaExhausted), ("500", k100.NoResult),
    ("400", k100.BadRequest), ("408", k100.PhoneCheckFailed),
])
@responses.activate
def test_answers_that_a_retry_cannot_fix_are_not_retried(
        client: k100.Kuaidi100Client, code: str, error_type: type[Exception]) -> None:
    responses.add(responses.POST, k100.QUERY_URL, json=fixture("query_errors.json")[code])
    with pytest.raises(error_type):
        client.query("STO", "773012345678901")
    assert len(responses.calls) == 1


@responses.activate
def test_5xx_and_busy_answers_are_retried_with_backoff(client: k100.Kuaidi100Client,
                                                       fake_time: FakeTime) -> None:
    responses.add(responses.POST, k100.QUERY_URL, status=502, body="Bad Gateway")
    responses.add(responses.POST, k100.QUERY_URL, json=fixture("query_errors.json")["502"])
    responses.add(responses.POST, k100.QUERY_URL, json=fixture("query_answer.json"))
    assert client.query("YTO", "YT2400000000001").tracking_number == "YT2400000000001"
    assert len(responses.calls) == 3
    assert fake_time.sleeps == [0.5, 1.0]


@responses.activate
def test_retries_are_bounded(client: k100.Kuaidi100Client) -> None:
    responses.add(responses.POST, k100.SUBSCRIBE_URL, status=503)
    with pytest.raises(k100.ProviderUnavailable) as error:
        client.subscribe("STO", "773012345678901", callback_url="https://x/push", salt=SALT)
    assert error.value.retryable and error.value.code == "http_503"
    assert len(responses.calls) == 3


@responses.activate
def test_connection_errors_are_retried(client: k100.Kuaidi100Client) -> None:
    responses.add(responses.POST, k100.QUERY_URL, body=requests.ConnectionError("refused"))
    responses.add(responses.POST, k100.QUERY_URL, json=fixture("query_answer.json"))
    client.query("YTO", "YT2400000000001")
    assert len(responses.calls) == 2


@responses.activate
def test_a_query_timeout_is_not_retried_the_lock_would_bite(
        client: k100.Kuaidi100Client) -> None:
    responses.add(responses.POST, k100.QUERY_URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(k100.RequestTimedOut) as error:
        client.query("YTO", "YT2400000000001")
    assert error.value.retryable and len(responses.calls) == 1


@responses.activate
def test_a_query_that_could_not_connect_is_retried_it_never_arrived(
        client: k100.Kuaidi100Client) -> None:
    responses.add(responses.POST, k100.QUERY_URL, body=requests.ConnectTimeout("no route"))
    responses.add(responses.POST, k100.QUERY_URL, json=fixture("query_answer.json"))
    assert client.query("YTO", "YT2400000000001").events
    assert len(responses.calls) == 2


@responses.activate
def test_a_subscribe_timeout_is_retried_a_repeat_is_harmless(
        client: k100.Kuaidi100Client) -> None:
    answers = fixture("subscribe_answers.json")
    responses.add(responses.POST, k100.SUBSCRIBE_URL, body=requests.ReadTimeout("slow"))
    responses.add(responses.POST, k100.SUBSCRIBE_URL, json=answers["duplicate"])
    answer = client.subscribe("ZTO", "78300000000001", callback_url="https://x/push", salt=SALT,
                              phone="13800138000")
    assert answer.accepted and answer.duplicate and len(responses.calls) == 2
    form = sent_form(responses.calls[1])
    assert form["schema"] == "json" and json.loads(form["param"])["number"] == "78300000000001"


@responses.activate
def test_the_same_number_is_not_queried_twice_within_30_minutes(
        client: k100.Kuaidi100Client, fake_time: FakeTime) -> None:
    responses.add(responses.POST, k100.QUERY_URL, json=fixture("query_answer.json"))
    client.query("YTO", "YT2400000000001")
    fake_time.now += 29 * 60
    with pytest.raises(k100.QueryTooSoon):
        client.query("YTO", "YT2400000000001")
    client.query("STO", "773012345678901")  # another number is fine
    fake_time.now += 60
    client.query("YTO", "YT2400000000001")
    assert len(responses.calls) == 3


@responses.activate
def test_requests_are_paced_by_the_rate_limit(paced_on_fake_time: FakeTime) -> None:
    fake_time = paced_on_fake_time
    client = k100.Kuaidi100Client(CUSTOMER, KEY, sleep=fake_time.sleep, clock=fake_time.clock,
                                  pace=http.Pace(key="test.kuaidi100.slow", rate=2.0, burst=2))
    responses.add(responses.POST, k100.SUBSCRIBE_URL,
                  json=fixture("subscribe_answers.json")["accepted"])
    for number in ("773000000001", "773000000002", "773000000003", "773000000004"):
        client.subscribe("STO", number, callback_url="https://x/push", salt=SALT)
    assert len(responses.calls) == 4
    assert sum(fake_time.sleeps) == pytest.approx(1.0)  # burst of 2, then 2 per second


@responses.activate
def test_our_pace_is_eighty_per_second_after_a_burst_of_ten_by_default(
        paced_on_fake_time: FakeTime) -> None:
    client = k100.Kuaidi100Client(CUSTOMER, KEY, sleep=paced_on_fake_time.sleep,
                                  clock=paced_on_fake_time.clock)
    responses.add(responses.POST, k100.SUBSCRIBE_URL,
                  json=fixture("subscribe_answers.json")["accepted"])
    for number in range(13):
        client.subscribe("STO", f"7730000000{number:02d}", callback_url="https://x/push",
                         salt=SALT)
    assert sum(paced_on_fake_time.sleeps) == pytest.approx(3 / 80)  # burst of 10, then 80/s


@responses.activate
def test_a_non_json_answer_is_malformed(client: k100.Kuaidi100Client) -> None:
    responses.add(responses.POST, k100.QUERY_URL, body="<html>maintenance</html>")
    with pytest.raises(k100.MalformedAnswer):
        client.query("YTO", "YT2400000000001")


# The provider with our account: what a failed call means for the watch and for CS -----------------

@dataclass(frozen=True)
class Waybill:
    carrier_code: str = "YTO"
    tracking_number: str = "YT2400000000001"
    phone: str = ""
    destination: str = "杭州市"

    @property
    def label(self) -> str:
        return f"{self.carrier_code} {self.tracking_number}"


ACCOUNT = WebhookSource(scheme="kuaidi100", secrets=(SALT,), options={
    "customer": CUSTOMER, "key": KEY, "callback_url": "https://api.example.com/push"})


@pytest.fixture
def courier(paced_on_fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch) -> k100.Kuaidi100:
    found = couriers.provider("kuaidi100", ACCOUNT)
    assert isinstance(found, k100.Kuaidi100)
    monkeypatch.setattr(found.client, "_sleep", paced_on_fake_time.sleep)  # no real backoff
    return found


@responses.activate
def test_a_query_read_timeout_counts_as_made_and_is_not_retried(courier: k100.Kuaidi100) -> None:
    responses.add(responses.POST, k100.QUERY_URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(couriers.ProviderError) as error:
        courier.query(Waybill())
    assert error.value.counted and error.value.alert is None
    assert len(responses.calls) == 1


@responses.activate
def test_a_query_that_never_connected_does_not_count(courier: k100.Kuaidi100) -> None:
    responses.add(responses.POST, k100.QUERY_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(couriers.ProviderError) as error:
        courier.query(Waybill())
    assert not error.value.counted and len(responses.calls) == 3


@pytest.mark.parametrize(("code", "counted", "alert"), [
    ("503", True, couriers.ACCOUNT_ALERT), ("601", True, couriers.ACCOUNT_ALERT),
    ("400", True, couriers.WAYBILL_ALERT), ("408", True, couriers.WAYBILL_ALERT),
    ("502", True, None),  # answered (busy) after the retries: it counted
])
@responses.activate
def test_refusals_say_whether_they_counted_and_who_must_hear(
        courier: k100.Kuaidi100, code: str, counted: bool, alert: str | None) -> None:
    responses.add(responses.POST, k100.QUERY_URL, json=fixture("query_errors.json")[code])
    with pytest.raises(couriers.ProviderError) as error:
        courier.query(Waybill())
    assert (error.value.counted, error.value.alert) == (counted, alert)


@responses.activate
def test_no_result_yet_is_an_empty_answer_and_the_watch_keeps_the_lock(
        courier: k100.Kuaidi100) -> None:
    responses.add(responses.POST, k100.QUERY_URL, json=fixture("query_errors.json")["500"])
    assert courier.query(Waybill()) == ()
    assert courier.query(Waybill()) == ()  # no lock guard here: the watch keeps the lock
    assert len(responses.calls) == 2


@responses.activate
def test_an_answer_for_another_number_is_a_counted_failure(courier: k100.Kuaidi100) -> None:
    responses.add(responses.POST, k100.QUERY_URL, json=fixture("query_answer.json"))
    with pytest.raises(couriers.ProviderError, match="wrong_number") as error:
        courier.query(Waybill(tracking_number="YT2499999999999"))
    assert error.value.counted


@responses.activate
def test_subscribe_sends_our_callback_and_salt_and_a_refusal_is_false(
        courier: k100.Kuaidi100) -> None:
    answers = fixture("subscribe_answers.json")
    responses.add(responses.POST, k100.SUBSCRIBE_URL, json=answers["accepted"])
    responses.add(responses.POST, k100.SUBSCRIBE_URL, json=answers["refused_carrier"])
    assert courier.subscribe(Waybill(carrier_code="SF", phone="13800001234"))
    param = json.loads(sent_form(responses.calls[0])["param"])
    assert param["parameters"] == {"callbackurl": "https://api.example.com/push", "salt": SALT,
                                   "resultv2": k100.RESULT_V2, "phone": "1234"}
    assert param["to"] == "杭州市"
    assert courier.subscribe(Waybill()) is False


# The registry -------------------------------------------------------------------------------------

def test_each_provider_can_do_exactly_what_it_implements() -> None:
    capabilities = {name: (provider_class(name).can_push, provider_class(name).can_query)
                    for name in known_providers()}
    assert capabilities == {"kuaidi100": (True, True), "17track": (True, True),
                            "webhook": (False, False)}
    for name in known_providers():
        kind = provider_class(name)
        assert kind.name == name
        assert kind.can_push == (kind.subscribe is not couriers.Provider.subscribe)
        assert kind.can_query == (kind.query is not couriers.Provider.query)


def test_domestic_carriers_go_to_kuaidi100_the_rest_to_17track() -> None:
    assert {code: couriers.provider_for(code) for code in ("sto", "SF", "EMS", "DHL", "UPS")} == {
        "sto": "kuaidi100", "SF": "kuaidi100", "EMS": "kuaidi100", "DHL": "17track",
        "UPS": "17track"}


def test_one_provider_per_process_until_its_account_changes() -> None:
    couriers.forget_providers()
    first = couriers.provider("kuaidi100", ACCOUNT)
    assert couriers.provider("kuaidi100", ACCOUNT) is first
    rotated = ACCOUNT.model_copy(update={"secrets": ("new-salt", SALT)})
    again = couriers.provider("kuaidi100", rotated)
    assert again is not first and isinstance(again, k100.Kuaidi100) and again.salt == "new-salt"
    assert couriers.source_name("kuaidi100") == "courier/kuaidi100"


def test_the_registry_loads_providers_lazily() -> None:
    assert known_providers() == {"kuaidi100", "17track", "webhook"}
    assert provider_class("kuaidi100").name == "kuaidi100"
    with pytest.raises(LookupError):
        provider_class("aftership")
