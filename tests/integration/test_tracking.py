"""Courier tracking end to end on the local stack: the warehouse ships, the tracker subscribes,
Kuaidi100 pushes (through the real route) and is queried (answered by `responses` with the
recorded answer shapes), cases open once per problem and delivered orders complete."""

from __future__ import annotations

import json
import urllib.parse
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import responses
from chalice.test import Client

from chalicelib.access import accounts_store as accounts
from chalicelib.access.keys import Role
from chalicelib.cs import case_store as cases_store
from chalicelib.flows import alert_dispatch, tracker
from chalicelib.tracking import couriers
from chalicelib.tracking import parcel_store as shipments_store
from chalicelib.tracking.couriers import kuaidi100
from tests.integration.flow import alerts_received
from tests.integration.test_warehouse_api import Api, accepted_jobs

SALT = "salt-" + uuid.uuid4().hex[:8]
QUERY_URL = "https://k100.test/poll/query.do"
SUBSCRIBE_URL = "https://k100.test/poll"
CHINA = timezone(timedelta(hours=8))



@pytest.fixture
def api(client: Client, partner: str, make_key: Any) -> Api:
    return Api(client, make_key("partner", partner), make_key("staff", "ann", Role.BACK_OFFICE))


@pytest.fixture
def kuaidi100_account(stack: dict[str, str]) -> None:
    accounts.register_sources({couriers.source_name("kuaidi100"): {
        "scheme": "kuaidi100", "secrets": [SALT],
        "options": {"customer": "CUST", "key": "KEY", "query_url": QUERY_URL,
                    "subscribe_url": SUBSCRIBE_URL,
                    "callback_url": "https://api.test/couriers/kuaidi100/push"}}})
    couriers.forget_providers()


def shipped(api: Api, client: Client, stack: dict[str, str]) -> tuple[dict[str, Any], str]:
    job = accepted_jobs(api, client, stack, 1)[0]
    number = str(uuid.uuid4().int)[:14]
    api.post(f"/jobs/{job['job_id']}/print", {"waybill_numbers": [number]})
    api.post(f"/jobs/{job['job_id']}/pick", {})
    api.post(f"/jobs/{job['job_id']}/pack", {"weight_grams": 640, "package_count": 1})
    report = {"shipment_id": "s1", "packages": [{"carrier_code": "STO",
                                                  "tracking_number": number}]}
    api.post(f"/jobs/{job['job_id']}/ship", report)
    return job, number


def line(at: datetime, code: str, context: str) -> dict[str, str]:
    local = at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")
    return {"time": local, "ftime": local, "context": context, "statusCode": code,
            "status": "", "areaName": "浙江,杭州市"}


def result(carrier: str, number: str, lines: list[dict[str, str]]) -> dict[str, Any]:
    newest_first = sorted(lines, key=lambda x: x["time"], reverse=True)
    return {"message": "ok", "nu": number, "ischeck": "0", "com": kuaidi100.com_for(carrier),
            "status": "200", "state": newest_first[0]["statusCode"] if lines else "0",
            "data": newest_first}


def answer_for(request: Any, journeys: dict[str, list[dict[str, str]]],
               ) -> tuple[int, dict[str, str], str]:
    """Kuaidi100's query answer for the number asked: its scans, or 500 "no result"."""
    param = json.loads(urllib.parse.parse_qs(request.body)["param"][0])
    lines = journeys.get(param["num"])
    body = result("STO", param["num"], lines) if lines else {
        "result": False, "returnCode": "500", "message": "查询无结果，请隔段时间再查"}
    return 200, {}, json.dumps(body, ensure_ascii=False)


def push_body(carrier: str, number: str, lines: list[dict[str, str]], status: str = "polling",
              salt: str = SALT) -> bytes:
    param = json.dumps({"status": status, "message": "", "lastResult": result(
        carrier, number, lines)}, ensure_ascii=False)
    sign = kuaidi100._md5_upper(param + salt)
    return urllib.parse.urlencode({"param": param, "sign": sign}).encode()


def push(client: Client, body: bytes) -> Any:
    return client.http.post("/couriers/kuaidi100/push", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded"})


def settle_alerts(stack: dict[str, str], number: str) -> list[str]:
    """Feed the queued alerts to the dispatcher; the outcomes for this parcel's cases."""
    recorded = [alert_dispatch.handle(json.dumps(a)) for a in alerts_received(stack)]
    return [r.outcome for r in recorded if r.case and r.case.subject.endswith(f":{number}")]


def parcel_cases(carrier: str, number: str) -> list[Any]:
    subject = f"parcel:{carrier}:{number}"
    return [c for c in cases_store.open_cases() if c.subject == subject]


def test_shipping_starts_tracking_once(api: Api, client: Client, stack: dict[str, str]) -> None:
    job, number = shipped(api, client, stack)
    found = shipments_store.get("STO", number)
    assert found is not None
    parcel, _version = found
    assert (parcel.order_id, parcel.job_id, parcel.provider) == (
        job["order_id"], job["job_id"], "kuaidi100")
    assert parcel.watch.subscription == "pending" and parcel.watch.next_check_at is not None
    # A courier's bill prices it by the region its job was routed for, and finds it by month.
    assert parcel.region == job["carrier"]["region"] != ""
    month = parcel.started_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    assert number in [p.tracking_number for p in shipments_store.in_month("STO", month)]
    report = {"shipment_id": "s1", "packages": [{"carrier_code": "STO",
                                                  "tracking_number": number}]}
    api.post(f"/jobs/{job['job_id']}/ship", report)  # the factory retries its report
    assert api.timeline(job["order_id"]).count("shipment.tracking_started") == 1


@responses.activate
def test_subscribe_then_pushes_move_the_parcel_and_delivered_completes_the_order(
        api: Api, client: Client, stack: dict[str, str], kuaidi100_account: None) -> None:
    responses.post(SUBSCRIBE_URL, json={"result": True, "returnCode": "200", "message": "ok"})
    job, number = shipped(api, client, stack)
    now = datetime.now(UTC)
    report = tracker.run_due(now + timedelta(seconds=1))
    assert report.subscribed >= 1
    # Other tests' parcels due now are subscribed by the same run, in no set order.
    subscribed = [json.loads(urllib.parse.parse_qs(c.request.body)["param"][0])["number"]
                  for c in responses.calls if c.request.url == SUBSCRIBE_URL]
    assert subscribed.count(number) == 1
    assert shipments_store.get("STO", number)[0].watch.subscription == "active"  # type: ignore[index]

    lines = [line(now - timedelta(hours=3), "103", "已揽收"),
             line(now - timedelta(hours=2), "1002", "快件离开杭州转运中心")]
    answer = push(client, push_body("STO", number, lines))
    assert answer.status_code == 200
    assert json.loads(answer.body) == kuaidi100.PUSH_REPLY
    assert push(client, push_body("STO", number, lines)).status_code == 200  # redelivered
    lines.append(line(now - timedelta(minutes=30), "3", "已签收"))
    assert push(client, push_body("STO", number, lines, status="shutdown")).status_code == 200

    parcel = shipments_store.get("STO", number)[0]  # type: ignore[index]
    assert parcel.shipment.status == "delivered" and parcel.watch.next_check_at is None
    timeline = api.timeline(job["order_id"])
    assert timeline.count("shipment.in_transit") == 1  # the redelivered push changed nothing
    assert timeline[-2:] == ["shipment.delivered", "order.completed"]
    view = api.call("get", f"/cs/v1/orders/{job['order_id']}", key=api.cs_key)
    assert view["fulfilment"] == "delivered"
    assert view["parcels"][0]["status"] == "delivered"


def test_pushes_with_a_bad_signature_or_for_unknown_providers_are_refused(
        api: Api, client: Client, stack: dict[str, str], kuaidi100_account: None) -> None:
    _job, number = shipped(api, client, stack)
    lines = [line(datetime.now(UTC), "103", "已揽收")]
    forged = push(client, push_body("STO", number, lines, salt="not-the-salt"))
    assert forged.status_code == 401
    assert json.loads(forged.body)["error"] == "invalid_signature"
    unknown = client.http.post("/couriers/nobody/push", body=b"x=1", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert unknown.status_code == 404
    assert json.loads(unknown.body)["error"] == "courier_provider_not_found"
    garbled = push(client, b"param=%7Bnot-json&sign=" + kuaidi100._md5_upper(
        "{not-json" + SALT).encode())
    assert garbled.status_code == 400
    assert shipments_store.get("STO", number)[0].shipment.events == ()  # type: ignore[index]


def test_a_refused_parcel_opens_exactly_one_after_sales_case(
        api: Api, client: Client, stack: dict[str, str], kuaidi100_account: None) -> None:
    _job, number = shipped(api, client, stack)
    now = datetime.now(UTC)
    lines = [line(now - timedelta(hours=30), "103", "已揽收"),
             line(now - timedelta(hours=3), "5", "派件中"),
             line(now - timedelta(hours=2), "203", "收件人拒收")]
    push(client, push_body("STO", number, lines))
    push(client, push_body("STO", number, lines))
    lines += [line(now - timedelta(hours=1), "6", "退回中"),
              line(now - timedelta(minutes=10), "14", "拒签已退回")]
    push(client, push_body("STO", number, lines))
    outcomes = settle_alerts(stack, number)
    assert outcomes.count("opened") == 1
    cases = parcel_cases("STO", number)
    assert [c.type for c in cases] == ["after_sales.return"]
    assert cases[0].occurrences >= 2
    listed = api.call("get", "/cs/v1/cases?type=after_sales.return", key=api.cs_key)["cases"]
    assert [c["case_id"] for c in listed if c["subject"] == cases[0].subject] == [
        cases[0].case_id]
    view = api.call("get", f"/cs/v1/orders/{_job['order_id']}", key=api.cs_key)
    assert [c["type"] for c in view["cases"]] == ["after_sales.return"]
    assert view["fulfilment"] == "returning"


@responses.activate
def test_a_stalled_parcel_opens_one_case_and_a_new_scan_resolves_it(
        api: Api, client: Client, stack: dict[str, str], kuaidi100_account: None) -> None:
    responses.post(SUBSCRIBE_URL, json={"result": True, "returnCode": "200", "message": "ok"})
    _job, number = shipped(api, client, stack)
    t0 = datetime.now(UTC)
    tracker.run_due(t0 + timedelta(seconds=1))
    lines = [line(t0 + timedelta(hours=1), "103", "已揽收"),
             line(t0 + timedelta(hours=2), "1002", "快件离开杭州转运中心")]
    responses.add_callback(responses.POST, QUERY_URL, callback=lambda request: answer_for(
        request, {number: lines}))
    # The parcel is not push-fed (none came); past the 24 h stall the tracker asks and judges.
    for hours in (6, 12, 18, 24, 26, 27):
        tracker.run_due(t0 + timedelta(hours=hours))
    assert settle_alerts(stack, number) == ["opened"]
    assert [c.type for c in parcel_cases("STO", number)] == ["courier.stalled"]
    queries = [c for c in responses.calls if c.request.url == QUERY_URL and json.loads(
        urllib.parse.parse_qs(c.request.body)["param"][0])["num"] == number]
    assert 2 <= len(queries) < 6  # asked when due (a trunk interval, the stall), not each tick

    lines.append(line(t0 + timedelta(hours=27, minutes=30), "1001", "到达成都"))
    tracker.receive_push("kuaidi100", {}, push_body("STO", number, lines),
                         t0 + timedelta(hours=28))
    assert settle_alerts(stack, number) == ["resolved"]
    assert parcel_cases("STO", number) == []


def test_a_second_failed_delivery_on_another_day_opens_one_case(
        api: Api, client: Client, stack: dict[str, str], kuaidi100_account: None) -> None:
    _job, number = shipped(api, client, stack)
    # Tomorrow 10:00 and the day after, China time; each push arrives minutes after its scan.
    day1 = (datetime.now(UTC).astimezone(CHINA) + timedelta(days=1)).replace(
        hour=10, minute=0, second=0, microsecond=0)
    lines = [line(day1 - timedelta(hours=20), "103", "已揽收"),
             line(day1, "5", "派件中"), line(day1 + timedelta(hours=2), "204", "无人在家")]
    first = push_body("STO", number, lines)
    tracker.receive_push("kuaidi100", {}, first, day1 + timedelta(hours=2, minutes=5))
    assert settle_alerts(stack, number) == []  # one failed attempt is not yet a case
    day2 = day1 + timedelta(days=1)
    lines += [line(day2, "5", "再次派件"), line(day2 + timedelta(hours=1), "206", "电话无人接听")]
    second = push_body("STO", number, lines)
    tracker.receive_push("kuaidi100", {}, second, day2 + timedelta(hours=1, minutes=5))
    tracker.receive_push("kuaidi100", {}, second, day2 + timedelta(hours=1, minutes=9))
    assert settle_alerts(stack, number) == ["opened"]
    assert [c.type for c in parcel_cases("STO", number)] == ["courier.repeated_delivery_failure"]


def test_a_tracking_number_already_used_by_another_order_ships_but_is_not_tracked_twice(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    first, number = shipped(api, client, stack)
    alerts_received(stack)  # only this test's alerts from here
    job = accepted_jobs(api, client, stack, 1)[0]
    api.post(f"/jobs/{job['job_id']}/print", {"waybill_numbers": [number]})
    api.post(f"/jobs/{job['job_id']}/pick", {})
    api.post(f"/jobs/{job['job_id']}/pack", {"weight_grams": 500, "package_count": 1})
    report = {"shipment_id": "s1", "packages": [{"carrier_code": "STO",
                                                  "tracking_number": number}]}
    assert api.post(f"/jobs/{job['job_id']}/ship", report)["work"] == "shipped"
    parcel = shipments_store.get("STO", number)[0]  # type: ignore[index]
    assert parcel.order_id == first["order_id"]  # still the first order's parcel
    assert "shipment.tracking_started" not in api.timeline(job["order_id"])
    kinds = [a["kind"] for a in alerts_received(stack)]
    assert kinds.count("courier.tracking_number_reused") == 1
