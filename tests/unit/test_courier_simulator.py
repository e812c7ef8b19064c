"""The local Kuaidi100 simulator, checked through OUR parser and tracking fold (not its own)."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.core.errors import ApiError
from chalicelib.tracking.couriers import TrackingPush
from chalicelib.tracking.couriers import kuaidi100 as k100
from chalicelib.tracking.model import ExceptionKind, Journey, ShipmentStatus
from chalicelib.tracking.thresholds import update
from devstack.courier import SCRIPTS, CourierSimulator, Script, Step
from tests.sim_support import Receiver

S, K = ShipmentStatus, ExceptionKind
FIXTURES = Path(__file__).parent.parent / "fixtures" / "couriers" / "kuaidi100"
CUSTOMER, KEY, SALT = "C0FFEE0123456789ABCDEF0123456789", "kEyKeYkEy12", "s4lt-for-pushes"
HANDOVER = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)  # 14:00 in China, as the scripts assume
CHINA = k100.CHINA


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class Clock:
    def __init__(self, now: datetime = HANDOVER) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, span: timedelta) -> None:
        self.now += span


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def query_form(com: str, num: str, *, key: str = KEY, customer: str = CUSTOMER,
               **extra: str) -> dict[str, str]:
    """A query signed here, independently of kuaidi100.sign."""
    param = json.dumps({"com": com, "num": num, **extra, "resultv2": "4"}, ensure_ascii=False)
    return {"customer": customer, "sign": md5_upper(param + key + customer), "param": param}


def subscribe_form(com: str, num: str, *, key: str = KEY, callback: str = "http://127.0.0.1:9/cb",
                   salt: str = SALT, phone: str | None = None) -> dict[str, str]:
    parameters = {"callbackurl": callback, "salt": salt, "resultv2": "4"}
    if phone:
        parameters["phone"] = phone
    param = {"company": com, "number": num, "key": key, "parameters": parameters}
    return {"schema": "json", "param": json.dumps(param, ensure_ascii=False)}


def make_sim(clock: Clock, **kwargs: Any) -> CourierSimulator:
    return CourierSimulator(customer=CUSTOMER, key=KEY, clock=clock, **kwargs)


def journey_end(script: str) -> timedelta:
    return SCRIPTS[script].steps[-1].after


def query_events(sim: CourierSimulator, com: str, num: str, **extra: str) -> k100.QueryAnswer:
    return k100.parse_query_answer(sim.query(query_form(com, num, **extra)))


# A push receiver: a real HTTP endpoint, so the wire format is what our push handler reads --------

ACKNOWLEDGED = json.dumps(k100.PUSH_REPLY, ensure_ascii=False)


class PushReceiver(Receiver):
    def __init__(self) -> None:
        super().__init__("/push/kuaidi100", answer=ACKNOWLEDGED.encode())

    def answer_with(self, reply: tuple[int, str]) -> None:
        self.status, self.answer = reply[0], reply[1].encode()

    @property
    def bodies(self) -> list[bytes]:
        return [body for _, body in self.received]

    def pushes(self) -> list[TrackingPush]:
        """Every push received, verified and parsed by our adapter with the salt."""
        return [k100.read_push(h, b, SALT) for h, b in self.received]

    def params(self) -> list[dict[str, Any]]:
        return [json.loads(k100._form(body)["param"]) for body in self.bodies]


@pytest.fixture
def receiver() -> Iterator[PushReceiver]:
    with PushReceiver() as found:
        yield found


@pytest.fixture
def served() -> Iterator[tuple[CourierSimulator, Clock]]:
    clock = Clock()
    sim = make_sim(clock)
    sim.start()
    yield sim, clock
    sim.stop()


# Scripts ----------------------------------------------------------------------------------------

def test_the_scripts_the_system_relies_on_exist() -> None:
    assert {"delivered", "refused", "stalled", "failed_twice", "not_picked_up", "uncollected",
            "returned", "damaged", "redirected", "poll_only"} <= set(SCRIPTS)
    assert SCRIPTS["poll_only"].pushes is False
    assert SCRIPTS["poll_only"].steps == SCRIPTS["delivered"].steps


@pytest.mark.parametrize("name", [n for n, s in SCRIPTS.items() if s.steps])
def test_journeys_have_realistic_timing(name: str) -> None:
    steps = SCRIPTS[name].steps
    gaps = [b.after - a.after for a, b in itertools.pairwise(steps)]
    # No scripted gap may itself look like a stall (24 h in transit, 12 h out for delivery).
    assert all(timedelta(0) < gap < timedelta(hours=24) for gap in gaps)
    for step, gap in zip(steps, gaps, strict=False):
        if step.state == "5":
            assert gap < timedelta(hours=12)
    assert max(s.after for s in steps) <= timedelta(days=4)
    for step in steps:  # out for delivery in the morning, China time
        if step.state == "5":
            hour = (HANDOVER + step.after).astimezone(CHINA).hour
            assert 7 <= hour < 10, (name, step)
    if steps[-1].state in {"3", "301", "302"}:
        assert steps[-2].state == "5"
        assert steps[-1].after - steps[-2].after <= timedelta(hours=4)
        assert timedelta(days=1) <= steps[-1].after


EXPECTED_CODES = {
    "delivered": (["103", "1002", "1001", "5"], "301"),
    "poll_only": (["103", "1002", "1001", "5"], "301"),
    "refused": (["103", "5", "203", "6"], "14"),
    "stalled": (["103"], "1002"),
    "failed_twice": (["103", "1001", "5", "204", "206"], "302"),
    "not_picked_up": (["101"], "102"),
    "uncollected": (["103", "1001", "5"], "501"),
    "returned": (["103", "5", "206", "6"], "4"),
    "damaged": (["103", "209", "5"], "3"),
    "redirected": (["103", "1001", "1003", "5"], "301"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_CODES))
def test_each_script_reaches_its_codes_through_our_parser(name: str) -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.assign("YTO", "YT" + name, name)
    sim.query(query_form("yuantong", "YT" + name))  # first contact anchors the journey
    clock.advance(journey_end(name) + timedelta(hours=1))
    answer = query_events(sim, "yuantong", "YT" + name)
    codes = [e.raw_code for e in reversed(answer.events)]  # oldest first
    in_order, last = EXPECTED_CODES[name]
    assert codes[-1] == last and answer.state == last
    assert answer.is_check is (last in {"3", "301", "302", "4", "14"})
    rest = iter(codes)
    assert all(code in rest for code in in_order), codes  # a subsequence, in this order
    if name == "not_picked_up":
        assert set(codes) == {"101", "102"}
    if name == "failed_twice":
        failures = [e.occurred_at.astimezone(CHINA).date() for e in answer.events
                    if e.raw_code in ("204", "206")]
        assert len(set(failures)) == 2


# What each script is meant to make our system see: (script, judged at, status, opened, absent).
INTENT: list[tuple[str, timedelta, ShipmentStatus, set[ExceptionKind]]] = [
    ("delivered", timedelta(hours=1), S.DELIVERED, set()),
    ("refused", timedelta(hours=1), S.RETURNED, {K.REFUSED_RETURNED, K.RETURN_TO_SENDER}),
    ("stalled", timedelta(hours=25), S.IN_TRANSIT, {K.STALLED_NO_SCAN}),
    ("stalled", timedelta(days=5), S.IN_TRANSIT, {K.PROBABLY_LOST}),
    ("not_picked_up", timedelta(hours=23), S.INFO_RECEIVED, {K.NOT_PICKED_UP}),
    ("uncollected", timedelta(hours=48), S.AVAILABLE_FOR_PICKUP, {K.PICKUP_UNCOLLECTED}),
    ("returned", timedelta(hours=1), S.RETURNED, {K.RETURN_TO_SENDER}),
    ("damaged", timedelta(hours=1), S.DELIVERED, {K.DAMAGED}),
    ("redirected", timedelta(hours=1), S.DELIVERED, {K.REDIRECTED}),
    ("failed_twice", timedelta(hours=1), S.DELIVERED, set()),
]


@pytest.mark.parametrize(("name", "later", "status", "kinds"), INTENT)
def test_each_script_triggers_its_case_in_our_tracking(
        name: str, later: timedelta, status: ShipmentStatus, kinds: set[ExceptionKind]) -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.assign("STO", "77301", name)
    sim.query(query_form("shentong", "77301"))
    clock.advance(journey_end(name))
    answer = query_events(sim, "shentong", "77301")
    shipment = Journey(carrier_code="STO", tracking_number="77301", handed_over_at=HANDOVER)
    judged, _ = update(shipment, answer.events, clock.now + later)
    assert judged.status is status
    assert judged.open_kinds == kinds


def test_failed_twice_opens_repeated_failure_before_it_is_signed() -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.assign("YUNDA", "4310001", "failed_twice")
    sim.query(query_form("yunda", "4310001"))
    second = next(s for s in SCRIPTS["failed_twice"].steps if s.state == "206")
    clock.advance(second.after)
    answer = query_events(sim, "yunda", "4310001")
    shipment = Journey(carrier_code="YUNDA", tracking_number="4310001", handed_over_at=HANDOVER)
    judged, _ = update(shipment, answer.events, clock.now)
    assert judged.status is S.DELIVERY_FAILED
    assert K.REPEATED_DELIVERY_FAILURE in judged.open_kinds


def test_scripts_reject_steps_out_of_order_and_unknown_codes() -> None:
    with pytest.raises(ValueError, match="state"):
        Step(timedelta(hours=1), "999", "?")
    with pytest.raises(ValueError, match="time order"):
        Script("x", (Step(timedelta(hours=2), "103", "a"), Step(timedelta(hours=1), "0", "b")))
    with pytest.raises(ValueError, match="last step"):
        Script("x", (Step(timedelta(hours=1), "3", "a"), Step(timedelta(hours=2), "0", "b")))


# Query ------------------------------------------------------------------------------------------

def test_a_query_answer_round_trips_through_our_parser() -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.assign("YTO", "YT2400000000001", "delivered")
    assert sim.query(query_form("yuantong", "YT2400000000001")) == fixture(
        "query_errors.json")["500"]  # no scan yet at hand-over
    clock.advance(timedelta(hours=20))  # day 2 10:00 China: on the trunk to Beijing
    raw = sim.query(query_form("yuantong", "YT2400000000001"))
    expected = fixture("query_answer.json")
    assert set(raw) == set(expected) - {"routeInfo"}
    assert all(set(line) == set(expected["data"][0]) for line in raw["data"])
    answer = k100.parse_query_answer(raw)
    assert (answer.carrier_code, answer.tracking_number, answer.state, answer.is_check) == (
        "YTO", "YT2400000000001", "1002", False)
    assert answer.skipped == 0 and len(answer.events) == 5
    newest, oldest = answer.events[0], answer.events[-1]
    assert newest.occurred_at == HANDOVER + timedelta(hours=12, minutes=30)
    assert newest.description == "【杭州转运中心】已发出 下一站【北京转运中心】"
    assert newest.location == "浙江,杭州市,萧山区" and newest.status is S.IN_TRANSIT
    assert oldest.raw_code == "101" and oldest.status is S.INFO_RECEIVED
    assert raw["data"][0]["time"] == "2026-05-02 02:30:00"  # China time
    assert raw["data"][0]["status"] == "干线" and raw["data"][0]["areaCode"] == "330109000000"
    assert sim.queries[("yuantong", "YT2400000000001")] == 2


def test_signature_errors_answer_503() -> None:
    sim = make_sim(Clock())
    bad_key = query_form("yuantong", "YT1", key="not-the-key")
    wrong_customer = query_form("yuantong", "YT1", customer="SOMEONE-ELSE")
    tampered = query_form("yuantong", "YT1") | {"param": '{"com":"yuantong","num":"YT2"}'}
    other_customer = query_form("yuantong", "YT1") | {"customer": "SOMEONE-ELSE"}
    for form in (bad_key, wrong_customer, tampered, other_customer):
        assert sim.query(form) == fixture("query_errors.json")["503"]
        with pytest.raises(k100.SignatureError):
            k100.parse_query_answer(sim.query(form))
    assert sim.parcels() == []  # a refused request is not a first contact


def test_an_unknown_carrier_answers_400() -> None:
    sim = make_sim(Clock())
    assert sim.query(query_form("dhl", "1234567890")) == fixture("query_errors.json")["400"]
    with pytest.raises(k100.BadRequest):
        query_events(sim, "dhl", "1234567890")


@pytest.mark.parametrize(("com", "carrier"), [("shunfeng", "SF"), ("zhongtong", "ZTO")])
def test_sf_and_zto_check_the_phone_tail(com: str, carrier: str) -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.assign(carrier, "N1", "delivered", phone="138-0000-1234")
    assert sim.query(query_form(com, "N1", phone="1234"))["returnCode"] == "500"  # anchors
    clock.advance(timedelta(days=1))
    for form in (query_form(com, "N1"), query_form(com, "N1", phone="5678"),
                 query_form(com, "N1", phone="12")):
        assert sim.query(form) == fixture("query_errors.json")["408"]
        with pytest.raises(k100.PhoneCheckFailed):
            k100.parse_query_answer(sim.query(form))
    # Our client sends the last four digits; the full number works too.
    ours = k100.query_request(carrier, "N1", customer=CUSTOMER, key=KEY, phone="13800001234")
    assert k100.parse_query_answer(sim.query(ours)).tracking_number == "N1"


def test_an_unassigned_sf_parcel_keeps_the_first_phone_it_hears() -> None:
    clock = Clock()
    sim = make_sim(clock)
    assert sim.query(query_form("shunfeng", "SF1", phone="4321"))["returnCode"] == "500"
    clock.advance(timedelta(days=1))
    assert sim.query(query_form("shunfeng", "SF1", phone="9999"))["returnCode"] == "408"
    assert sim.query(query_form("shunfeng", "SF1", phone="4321"))["state"]
    assert sim.query(query_form("yuantong", "YT1"))["returnCode"] == "500"  # no check for YTO


def test_the_30_minute_lock_is_scaled_and_runs_from_the_last_answer() -> None:
    clock = Clock()
    sim = make_sim(clock, time_scale=60)  # the lock lasts 30 s
    sim.assign("STO", "L1", "delivered")
    sim.query(query_form("shentong", "L1"))
    clock.advance(timedelta(hours=1))
    assert "data" in sim.query(query_form("shentong", "L1"))
    clock.advance(timedelta(seconds=29))
    with pytest.raises(k100.NoResult):
        query_events(sim, "shentong", "L1")
    clock.advance(timedelta(seconds=1, microseconds=1))  # 30 s after the last answer
    assert "data" in sim.query(query_form("shentong", "L1"))
    assert sim.queries[("shentong", "L1")] == 4  # locked ones count: they cost a query


# Time -------------------------------------------------------------------------------------------

def test_time_scale_compresses_the_journey_and_the_reported_times() -> None:
    clock = Clock()
    sim = make_sim(clock, time_scale=360)  # one scripted hour in 10 s
    sim.assign("YTO", "T1", "delivered")
    sim.query(query_form("yuantong", "T1"))
    steps = SCRIPTS["delivered"].steps
    collected = steps[1].after / 360  # 2.5 h scripted -> 25 s
    assert collected == timedelta(seconds=25)
    clock.now = HANDOVER + collected - timedelta(microseconds=1)
    assert [line["statusCode"] for line in sim.parcels()[0]["steps"]] == ["101"]
    clock.now = HANDOVER + collected
    answer = query_events(sim, "yuantong", "T1")
    assert [e.raw_code for e in answer.events] == ["103", "101"]
    assert answer.events[0].occurred_at == HANDOVER + collected
    clock.now = HANDOVER + steps[-1].after / 360
    assert query_events(sim, "yuantong", "T1").state == "301"  # the lock is 5 s here


def test_the_anchor_is_the_first_contact_not_the_assignment() -> None:
    clock = Clock(HANDOVER - timedelta(days=2))
    sim = make_sim(clock)
    sim.assign("YTO", "A1", "delivered")
    clock.now = HANDOVER
    sim.subscribe(subscribe_form("yuantong", "A1"))
    clock.advance(timedelta(hours=3))
    answer = query_events(sim, "yuantong", "A1")
    assert answer.events[0].occurred_at == HANDOVER + timedelta(hours=2, minutes=30)


def test_unassigned_parcels_take_the_rotation_in_order_of_first_contact() -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.assign("YTO", "pinned", "damaged")
    for n in range(5):
        sim.query(query_form("yuantong", f"R{n}"))
    sim.subscribe(subscribe_form("yuantong", "pinned"))
    scripts = {p["num"]: p["script"] for p in sim.parcels()}
    assert [scripts[f"R{n}"] for n in range(5)] == [
        "delivered", "refused", "stalled", "failed_twice", "not_picked_up"]
    assert scripts["pinned"] == "damaged"  # an assigned parcel does not use up a turn

    wrap = make_sim(clock, rotation=("refused", "stalled"))
    for n in range(3):
        wrap.subscribe(subscribe_form("ems", f"E{n}"))
    assert [p["script"] for p in wrap.parcels()] == ["refused", "stalled", "refused"]
    with pytest.raises(ValueError, match="rotation"):
        make_sim(clock, rotation=("delivered", "teleported"))


# Subscribe --------------------------------------------------------------------------------------

def test_subscribe_answers_like_kuaidi100() -> None:
    clock = Clock()
    sim = make_sim(clock)
    answers = fixture("subscribe_answers.json")
    first = sim.subscribe(subscribe_form("yuantong", "S1"))
    assert first == answers["accepted"]
    assert k100.parse_subscribe_answer(first).accepted
    again = sim.subscribe(subscribe_form("yuantong", "S1"))
    assert again == answers["duplicate"] and k100.parse_subscribe_answer(again).duplicate
    assert sim.subscribe(subscribe_form("yuantong", "S1", key="wrong")) == answers["bad_key"]
    with pytest.raises(k100.AccountError):
        k100.parse_subscribe_answer(sim.subscribe(subscribe_form("yuantong", "S1", key="x")))
    for bad in (subscribe_form("dhl", "S1"), subscribe_form("yuantong", ""),
                subscribe_form("yuantong", "S1", callback="not a url")):
        assert sim.subscribe(bad) == answers["bad_data"]


def test_more_than_four_subscriptions_per_number_hit_the_limit() -> None:
    clock = Clock()
    sim = make_sim(clock, time_scale=10)
    answers = [sim.subscribe(subscribe_form("yuantong", "S2")) for _ in range(5)]
    assert [a["returnCode"] for a in answers] == ["200", "501", "501", "501", "700"]
    with pytest.raises(k100.SubscriptionRejected):
        k100.parse_subscribe_answer(answers[-1])
    clock.advance(timedelta(days=3, seconds=1))  # the 30-day window, scaled by 10
    assert sim.subscribe(subscribe_form("yuantong", "S2"))["returnCode"] == "501"


def test_our_client_talks_to_the_simulator_over_http(
        served: tuple[CourierSimulator, Clock]) -> None:
    sim, clock = served
    assert sim.query_url == sim.url + "/poll/query.do" and sim.subscribe_url == sim.url + "/poll"
    client = k100.Kuaidi100Client(CUSTOMER, KEY, query_url=sim.query_url,
                                  subscribe_url=sim.subscribe_url, retries=0)
    sim.assign("SF", "SF1400123456789", "delivered", phone="13800001234")
    accepted = client.subscribe("SF", "SF1400123456789", callback_url="http://127.0.0.1:9/cb",
                                salt=SALT, phone="13800001234")
    assert accepted.accepted and not accepted.duplicate
    clock.advance(timedelta(days=3))
    answer = client.query("SF", "SF1400123456789", phone="13800001234")
    assert answer.state == "301" and answer.is_check and len(answer.events) == 10
    other = k100.Kuaidi100Client(CUSTOMER, KEY, query_url=sim.query_url, retries=0)
    with pytest.raises(k100.PhoneCheckFailed):
        other.query("SF", "SF1400123456789", phone="13800005678")


def test_the_sim_api_assigns_and_lists_parcels(served: tuple[CourierSimulator, Clock]) -> None:
    sim, clock = served
    http = requests.Session()
    made = http.post(sim.url + "/_sim/parcels",
                     json={"carrier_code": "JD", "num": "JDVA1", "script": "redirected"})
    assert made.status_code == 200
    assert http.post(sim.url + "/_sim/parcels", json={"com": "ems", "num": "E1",
                     "script": "uncollected", "pushes": False}).status_code == 200
    refused = http.post(sim.url + "/_sim/parcels", json={"com": "ems", "num": "E2",
                        "script": "teleported"})
    assert refused.status_code == 400 and "teleported" in refused.json()["error"]
    assert http.post(sim.url + "/_sim/parcels", data=b"[]").status_code == 400
    assert http.get(sim.url + "/nowhere").status_code == 404

    sim.query(query_form("jd", "JDVA1"))
    clock.advance(timedelta(hours=21))
    listed = {p["num"]: p for p in http.get(sim.url + "/_sim/parcels").json()["parcels"]}
    assert listed["JDVA1"]["script"] == "redirected" and listed["JDVA1"]["carrier_code"] == "JD"
    assert [s["statusCode"] for s in listed["JDVA1"]["steps"]] == [
        "1003", "1001", "1002", "1002", "103"]
    assert listed["E1"]["pushes"] is False and listed["E1"]["steps"] == []
    assert listed["E1"]["anchor"] is None


def test_the_server_is_quiet(served: tuple[CourierSimulator, Clock],
                             capfd: pytest.CaptureFixture[str]) -> None:
    sim, _ = served
    form = query_form("yuantong", "Q1")
    assert requests.post(sim.query_url, data=form).json()["returnCode"] == "500"
    assert requests.post(sim.url + "/poll", data=subscribe_form("yuantong", "Q1")).ok
    assert capfd.readouterr().err == ""


# Pushes -----------------------------------------------------------------------------------------

def test_pushes_verify_and_parse_with_our_adapter(receiver: PushReceiver) -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.assign("SF", "SF1400123456789", "delivered", phone="13800001234")
    sim.subscribe(subscribe_form("shunfeng", "SF1400123456789", callback=receiver.url,
                                 phone="1234"))
    assert sim.deliver_pushes() == 0  # nothing scanned yet
    clock.advance(timedelta(hours=3))  # 101 and 103 became visible since the subscription
    assert sim.deliver_pushes() == 2
    assert sim.deliver_pushes() == 0  # nothing new: nothing resent
    first, second = receiver.pushes()
    assert [e.raw_code for e in first.events] == ["101"]
    assert [e.raw_code for e in second.events] == ["103", "101"]  # the whole history each time
    assert second.carrier_code == "SF" and second.monitoring == "active"
    assert receiver.params()[0].keys() == fixture("push_in_transit.json").keys()
    assert receiver.params()[0]["lastResult"].keys() == fixture(
        "push_in_transit.json")["lastResult"].keys()
    with pytest.raises(ApiError) as refused:
        k100.read_push({}, receiver.bodies[0], "another-salt")
    assert (refused.value.status, refused.value.reason) == (401, "invalid_signature")

    clock.advance(journey_end("delivered"))
    assert sim.deliver_pushes() == len(SCRIPTS["delivered"].steps) - 2
    last = receiver.pushes()[-1]
    assert last.monitoring == "finished" and len(last.events) == 10
    assert receiver.params()[-1]["status"] == "shutdown"
    assert receiver.params()[-1]["lastResult"]["ischeck"] == "1"
    assert [p["status"] for p in receiver.params()[:-1]] == ["polling"] * 9
    clock.advance(timedelta(days=90))
    assert sim.deliver_pushes() == 0  # shut down: no abort, nothing more


@pytest.mark.parametrize("reply", [
    (500, json.dumps(k100.PUSH_REPLY)),
    (200, '{"result":false,"returnCode":"500","message":"失败"}'),
    (200, "OK"),
])
def test_an_unacknowledged_push_is_retried_later_in_order(receiver: PushReceiver,
                                                          reply: tuple[int, str]) -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.assign("YTO", "P1", "stalled")
    sim.subscribe(subscribe_form("yuantong", "P1", callback=receiver.url))
    clock.advance(timedelta(hours=7))  # 103 and 0
    receiver.answer_with(reply)
    assert sim.deliver_pushes() == 0
    assert len(receiver.bodies) == 1  # the second waits for the first to be acknowledged
    receiver.answer_with((200, ACKNOWLEDGED))
    assert sim.deliver_pushes() == 2
    assert receiver.bodies[1] == receiver.bodies[0]  # the same push again
    assert [len(p.events) for p in receiver.pushes()] == [1, 1, 2]


def test_an_unreachable_receiver_is_retried_too() -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.subscribe(subscribe_form("yuantong", "P2", callback="http://127.0.0.1:9/closed"))
    clock.advance(timedelta(hours=3))
    assert sim.deliver_pushes() == 0
    assert sim.parcels()[0]["subscriptions"] == [
        {"callbackurl": "http://127.0.0.1:9/closed", "pushed": 0, "ended": None}]


def test_poll_only_parcels_are_subscribed_but_never_pushed(receiver: PushReceiver) -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.assign("YTO", "PO1", "poll_only")
    sim.assign("YTO", "PO2", "refused", pushes=False)
    for num in ("PO1", "PO2"):
        answer = sim.subscribe(subscribe_form("yuantong", num, callback=receiver.url))
        assert answer["returnCode"] == "200"
    clock.advance(timedelta(days=100))
    assert sim.deliver_pushes() == 0 and receiver.bodies == []
    assert query_events(sim, "yuantong", "PO1").state == "301"


def test_a_resubscription_gets_the_history_in_one_push(receiver: PushReceiver) -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.assign("YTO", "RS1", "failed_twice")
    sim.query(query_form("yuantong", "RS1"))
    clock.advance(timedelta(hours=20))
    sim.subscribe(subscribe_form("yuantong", "RS1", callback=receiver.url))
    assert sim.deliver_pushes() == 1
    assert [e.raw_code for e in receiver.pushes()[0].events] == ["5", "1001", "1002", "1002",
                                                                 "103"]


def test_abort_after_three_days_without_any_record(receiver: PushReceiver) -> None:
    clock = Clock()
    sim = make_sim(clock, time_scale=24)  # three scripted days in three real hours
    sim.assign("STO", "773000000000", "no_record")
    sim.subscribe(subscribe_form("shentong", "773000000000", callback=receiver.url))
    clock.advance(timedelta(hours=3) - timedelta(seconds=1))
    assert sim.deliver_pushes() == 0
    clock.advance(timedelta(seconds=1))
    assert sim.deliver_pushes() == 1
    (push,) = receiver.pushes()
    assert push.monitoring == "aborted" and push.events == ()
    assert push.resubscribe_after == k100.RESUBSCRIBE_AFTER_ABORT
    assert receiver.params()[0]["message"] == fixture("push_abort.json")["message"]
    assert sim.deliver_pushes() == 0
    assert sim.subscribe(subscribe_form("shentong", "773000000000",
                                        callback=receiver.url))["returnCode"] == "200"
    with pytest.raises(k100.NoResult):
        query_events(sim, "shentong", "773000000000")


def test_a_stalled_parcel_is_aborted_after_60_quiet_days(receiver: PushReceiver) -> None:
    clock = Clock()
    sim = make_sim(clock, time_scale=360)
    sim.assign("STO", "773000000001", "stalled")
    sim.subscribe(subscribe_form("shentong", "773000000001", callback=receiver.url))
    quiet_from = HANDOVER + journey_end("stalled") / 360
    clock.now = quiet_from + timedelta(days=60) / 360 - timedelta(seconds=1)
    assert sim.deliver_pushes() == len(SCRIPTS["stalled"].steps)
    clock.advance(timedelta(seconds=1))
    assert sim.deliver_pushes() == 1
    last = receiver.pushes()[-1]
    assert last.monitoring == "aborted" and len(last.events) == 4
    assert receiver.params()[-1]["message"] == "60天无变化"


def test_run_pushes_delivers_in_the_background(receiver: PushReceiver) -> None:
    clock = Clock()
    sim = make_sim(clock)
    sim.subscribe(subscribe_form("yuantong", "BG1", callback=receiver.url))
    clock.advance(timedelta(hours=3))
    sim.start()
    sim.run_pushes(every_seconds=0.01)
    try:
        assert receiver.arrived.wait(5)
    finally:
        sim.stop()
    assert receiver.pushes()[0].tracking_number == "BG1"
