"""CS cases delivered: alerts become one case each, the notifier sends them to IM (the local IM
sink stands in for WeCom and DingTalk and captures the exact requests) and to email (SES on the
local endpoint), with retries, fallback, dead letters, digests, the rota and reminders."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.access.keys import Role
from chalicelib.core.settings import settings
from chalicelib.cs import outbox_store as outbox
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.flows import alert_dispatch, notifier
from devstack.im_sink import ImSink

# Wednesday 2 December 2026, 10:00 in Shanghai: CS is online.
IN_HOURS = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
DOMAIN = "backbone.test"
CONSOLE = "http://localhost:8000"  # make run's console


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(IN_HOURS)


@pytest.fixture
def sink(clock: Clock) -> Iterator[ImSink]:
    with ImSink({"mgr-token": "SECmanager"}, clock=clock) as running:
        yield running


@pytest.fixture
def team(stack: dict[str, str], sink: ImSink, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's own CS team: a WeCom robot, a mailbox and a manager on DingTalk."""
    uid = uuid.uuid4().hex[:8]
    channels = {"wecom": f"wecom:team-{uid}", "email": f"email:team-{uid}",
                "manager": f"dingtalk:mgr-{uid}", "robot": f"key-{uid}",
                "to": f"cs-{uid}@{DOMAIN}"}
    boto3.client("ses").verify_domain_identity(Domain=DOMAIN)
    notifier.configure_channels({
        channels["wecom"]: {"webhook_url": sink.url_for("wecom", channels["robot"])},
        channels["email"]: {"sender": f"CS alerts <alerts@{DOMAIN}>",
                            "verified_identities": [DOMAIN], "to": [channels["to"]]},
        channels["manager"]: {"webhook_url": sink.url_for("dingtalk", "mgr-token"),
                              "secret": "SECmanager"},
    })
    routing = {
        "rota": {"team_channels": [channels["wecom"], channels["email"]],
                 "people": {"cs-manager": {"name": "Manager", "mobile": "13800138000",
                                           "channels": [channels["manager"]]}}},
        "fallback_channel": channels["email"], "max_attempts": 3,
        "noise": {"threshold": 5, "window": "PT5M", "digest_after": "PT2M"},
    }
    monkeypatch.setenv("CS_ROUTING_JSON", json.dumps(routing))
    monkeypatch.setenv("CONSOLE_URL", CONSOLE)  # this stage's console (make run's, here)
    notifier.routing.cache_clear()
    settings.cache_clear()
    return channels


def raise_alert(order: str, at: datetime, kind: str = "order.invalid",
                severity: Severity = Severity.HIGH, subject: str | None = None) -> Any:
    alert = Alert(kind=kind, severity=severity, subject=subject or f"order:{order}", at=at,
                  summary=f"{order}: no shipping address",
                  facts={"order_id": f"ord_{order}", "order_name": order})
    return alert_dispatch.handle(alert.model_dump_json(), at)


def emails_to(address: str) -> list[dict[str, Any]]:
    import requests

    from chalicelib.core import aws

    del aws
    data = requests.get(f"{boto3.client('ses').meta.endpoint_url}/moto-api/data.json",
                        timeout=10).json()
    return [m for m in data.get("ses", {}).get("Message", [])
            if address in json.dumps(m.get("destinations", m))]


def robot_messages(sink: ImSink, robot: str) -> list[str]:
    return [r.shown_text or "" for r in sink.received("wecom")
            if r.robot == robot and r.outcome == "accepted"]


def test_a_case_reaches_im_and_email_once_and_an_escalation_again(
        team: dict[str, str], sink: ImSink) -> None:
    order = f"#{uuid.uuid4().int % 10**6}"
    assert raise_alert(order, IN_HOURS).outcome == "opened"
    notifier.run(IN_HOURS + timedelta(seconds=1))
    (shown,) = robot_messages(sink, team["robot"])
    assert order in shown
    (request,) = [r for r in sink.received("wecom") if r.robot == team["robot"]]
    assert request.json["msgtype"] in ("markdown", "text") and request.params["key"] == team[
        "robot"]
    (mail,) = emails_to(team["to"])
    assert order in json.dumps(mail, ensure_ascii=False)

    # The same alert again, and the same problem reported later: counted, not sent.
    raise_alert(order, IN_HOURS)
    assert raise_alert(order, IN_HOURS + timedelta(minutes=1)).outcome == "repeated"
    notifier.run(IN_HOURS + timedelta(minutes=2))
    assert len(robot_messages(sink, team["robot"])) == 1
    # Worse news about the same case is sent again.
    escalated = raise_alert(order, IN_HOURS + timedelta(minutes=3), severity=Severity.CRITICAL)
    assert escalated.outcome == "escalated"
    notifier.run(IN_HOURS + timedelta(minutes=4))
    assert len(robot_messages(sink, team["robot"])) == 2


def test_a_failing_channel_is_retried_and_what_it_held_arrives_on_recovery(
        team: dict[str, str], sink: ImSink) -> None:
    order = f"#{uuid.uuid4().int % 10**6}"
    sink.fail("wecom", "http_500", count=2)
    raise_alert(order, IN_HOURS)
    notifier.run(IN_HOURS + timedelta(seconds=1))
    notifier.run(IN_HOURS + timedelta(minutes=1))
    assert robot_messages(sink, team["robot"]) == []
    notifier.run(IN_HOURS + timedelta(minutes=3))  # back-off 30 s, then 60 s
    assert [order in text for text in robot_messages(sink, team["robot"])] == [True]
    assert len(emails_to(team["to"])) == 1  # email had it from the start; no fallback copy


def test_a_channel_that_keeps_failing_falls_back_to_email_and_all_down_is_dead_lettered(
        team: dict[str, str], sink: ImSink, client: Client, make_key: Any) -> None:
    order = f"#{uuid.uuid4().int % 10**6}"
    sink.fail("wecom", "down")
    raise_alert(order, IN_HOURS)
    for minutes in (0, 1, 3, 6):
        notifier.run(IN_HOURS + timedelta(minutes=minutes, seconds=1))
    assert len(emails_to(team["to"])) == 2  # its own email, and the WeCom message's fallback
    failed = [n for n in outbox.undelivered("failed") if n.channel == team["wecom"]]
    assert len(failed) == 1 and failed[0].attempts == 3

    # Email broken too (an unverified sender): nothing delivers; it is kept and listed.
    notifier.configure_channels({team["email"]: {
        "sender": "alerts@unverified.example", "verified_identities": ["unverified.example"],
        "to": [team["to"]]}})
    other = f"#{uuid.uuid4().int % 10**6}"
    raise_alert(other, IN_HOURS + timedelta(minutes=10))
    for minutes in range(10, 40, 3):
        notifier.run(IN_HOURS + timedelta(minutes=minutes, seconds=1))
    key = make_key("staff", "ann", Role.READ_ONLY)
    answer = client.http.get("/cs/v1/notifications?status=dead",
                             headers={"Authorization": f"Bearer {key}"})
    dead = [n for n in json.loads(answer.body)["notifications"]
            if n["channel"] == team["email"]]
    assert dead and all(n["status"] == "dead" for n in dead)


def test_a_burst_is_a_few_messages_and_a_digest_and_every_case_is_counted(
        team: dict[str, str], sink: ImSink) -> None:
    orders = [f"#B{uuid.uuid4().int % 10**6}" for _ in range(30)]
    for n, order in enumerate(orders):
        raise_alert(order, IN_HOURS + timedelta(seconds=n), kind="courier.stalled_no_scan",
                    severity=Severity.MEDIUM, subject=f"parcel:STO:{order}")
    notifier.run(IN_HOURS + timedelta(seconds=40))
    notifier.run(IN_HOURS + timedelta(minutes=3))
    messages = robot_messages(sink, team["robot"])
    digests = [m for m in messages if "异常汇总" in m]
    alone = [m for m in messages if m not in digests]
    assert len(alone) == 5 and len(digests) == 1
    assert "共 25 条" in digests[0]  # the other 25 cases, counted in the digest
    # ... and linked to the console's queue of that type, where every one of them is.
    assert digests[0].splitlines()[-1] == \
        f"  打开处理 ({CONSOLE}/console/cases?type=courier.stalled_no_scan)"
    assert all(f"({CONSOLE}/console/cases/case_" in m.splitlines()[-1] for m in alone)
    assert len(messages) <= len(orders)


def test_outside_hours_high_goes_to_the_manager_and_medium_waits_for_the_opening(
        team: dict[str, str], sink: ImSink, clock: Clock) -> None:
    evening = IN_HOURS + timedelta(hours=8, minutes=11)  # 18:11 in Shanghai
    clock.now = evening
    urgent, later = f"#{uuid.uuid4().int % 10**6}", f"#{uuid.uuid4().int % 10**6}"
    raise_alert(urgent, evening, severity=Severity.HIGH)
    raise_alert(later, evening, severity=Severity.MEDIUM)
    notifier.run(evening + timedelta(seconds=1))
    (manager_request,) = [r for r in sink.received("dingtalk") if r.outcome == "accepted"
                          and urgent in (r.shown_text or "")]
    assert {"timestamp", "sign", "access_token"} <= set(manager_request.params)
    assert robot_messages(sink, team["robot"]) == []  # the team is offline
    opening = IN_HOURS + timedelta(days=1, minutes=-70)  # Thursday 08:50
    clock.now = opening
    notifier.run(opening - timedelta(minutes=1))
    assert robot_messages(sink, team["robot"]) == []
    notifier.run(opening + timedelta(seconds=1))
    assert [later in m for m in robot_messages(sink, team["robot"])] == [True]


def test_unacknowledged_high_cases_are_reminded_until_cs_takes_them(
        team: dict[str, str], sink: ImSink, client: Client, make_key: Any) -> None:
    order = f"#{uuid.uuid4().int % 10**6}"
    case = raise_alert(order, IN_HOURS).case
    notifier.run(IN_HOURS + timedelta(seconds=1))
    notifier.run(IN_HOURS + timedelta(minutes=31))
    messages = robot_messages(sink, team["robot"])
    assert len(messages) == 2 and "提醒" in messages[1]
    key = make_key("staff", "bo", Role.BACK_OFFICE)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    acked = client.http.post(f"/cs/v1/cases/{case.case_id}/acknowledge", headers=headers,
                             body=json.dumps({"note": "calling the buyer"}))
    assert json.loads(acked.body)["status"] == "acknowledged"
    notifier.run(IN_HOURS + timedelta(minutes=61))
    assert len(robot_messages(sink, team["robot"])) == 2  # no reminder once acknowledged
    no_note = client.http.post(f"/cs/v1/cases/{case.case_id}/resolve", headers=headers,
                               body=json.dumps({}))
    assert no_note.status_code == 422
    done = client.http.post(f"/cs/v1/cases/{case.case_id}/resolve", headers=headers,
                            body=json.dumps({"note": "address added by the buyer"}))
    body = json.loads(done.body)
    assert body["status"] == "resolved"
    assert [(s["action"], s["actor"]) for s in body["history"]][-2:] == [
        ("acknowledged", "cs bo"), ("resolved", "cs bo")]
    reader = make_key("staff", "ro", Role.READ_ONLY)
    refused = client.http.post(f"/cs/v1/cases/{case.case_id}/acknowledge", headers={
        "Authorization": f"Bearer {reader}", "Content-Type": "application/json"}, body=b"{}")
    assert refused.status_code == 403


def test_reminders_are_counted_on_the_case_and_one_failing_does_not_stop_the_tick(
        team: dict[str, str], sink: ImSink, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.cs import case_store

    broken_order, other_order = (f"#{uuid.uuid4().int % 10**6}" for _ in range(2))
    broken = raise_alert(broken_order, IN_HOURS).case
    other = raise_alert(other_order, IN_HOURS).case
    notifier.run(IN_HOURS + timedelta(seconds=1))
    change = case_store.change

    def failing(case_id: str, update: Any, now: datetime) -> Any:
        if case_id == broken.case_id:
            raise RuntimeError("the cases table refused this one")
        return change(case_id, update, now)

    monkeypatch.setattr(case_store, "change", failing)
    report = notifier.run(IN_HOURS + timedelta(minutes=31))  # the tick goes on
    assert report.reminded >= 1
    reminders = [m for m in robot_messages(sink, team["robot"]) if "提醒" in m]
    assert any(other_order in m for m in reminders)
    monkeypatch.setattr(case_store, "change", change)

    for minutes in (61, 91, 121, 151):
        notifier.run(IN_HOURS + timedelta(minutes=minutes))
    stored = case_store.get(other.case_id)
    assert stored is not None
    assert stored.reminders == 5
    assert stored.last_reminded_at == IN_HOURS + timedelta(minutes=151)
    assert stored.escalated_to_manager_at == IN_HOURS + timedelta(minutes=121)
    assert [s.action for s in stored.history] == ["opened", "reminded"]  # the escalation only


def test_our_own_500_is_a_case_once_per_route_and_error(
        stack: dict[str, str], client: Client, make_key: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.flows import order_view
    from tests.integration.flow import alerts_received

    def broken(order_id: str) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(order_view, "order_view", broken)
    key = make_key("staff", "ann", Role.READ_ONLY)
    alerts_received(stack)  # start from an empty queue
    for _ in range(2):
        answer = client.http.get("/cs/v1/orders/ord_x", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 500
        assert json.loads(answer.body)["error"] == "internal_error"
    outcomes = [alert_dispatch.handle(json.dumps(a)).outcome for a in alerts_received(stack)
                if a["kind"] == "system.fault"]
    assert outcomes == ["opened", "repeated"]


# Text from outside: data in every channel, never in a log line --------------------------------

EVIL = "#77 <@all> [付款链接](http://evil.example/pay) 紧急"


def test_an_order_name_with_markup_reaches_im_and_email_as_typed(
        team: dict[str, str], sink: ImSink) -> None:
    """The sink showed '订单 #77 <@all> 付款链接 (http://evil.example/pay) 紧急' (issue 12)."""
    case = raise_alert(EVIL, IN_HOURS).case
    notifier.run(IN_HOURS + timedelta(seconds=1))
    (shown,) = robot_messages(sink, team["robot"])
    assert shown.splitlines()[0] == (f"[WeCom robot {team['robot']}] 【高】订单无效 · 订单 "
                                     "#77 ＜＠all＞ [付款链接]（http：//evil.example/pay) 紧急")
    assert "<@all>" not in shown and "http://evil" not in shown
    assert shown.splitlines()[-1] == f"  打开处理 ({CONSOLE}/console/cases/{case.case_id})"
    (mail,) = emails_to(team["to"])
    sent = json.dumps(mail, ensure_ascii=False)
    assert "http://evil" not in sent and "&lt;@all&gt;" in sent  # the HTML part: text, not a tag


def test_log_lines_name_the_case_by_ids_not_the_buyer(
        team: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    """A partner's return report carries the buyer's name, phone and address: the case has them
    (the CS API shows them to staff), the log line does not."""
    caplog.set_level(logging.INFO, logger="chalicelib.cs.alerts")
    buyer = "王小明 13912345678 上海市浦东新区世纪大道100号"
    tracking = f"SF{uuid.uuid4().int % 10**10}"
    alert = Alert(kind="return.received", severity=Severity.MEDIUM, subject=f"return:{tracking}",
                  at=IN_HOURS, summary=f"Return {tracking} from {buyer} received by factory-1: "
                                       "不想要了; liability: buyer",
                  facts={"order_name": "#1001", "order_id": "ord_r1", "packaging": "intact"})
    recorded = alert_dispatch.handle(alert.model_dump_json(), IN_HOURS)
    assert recorded.case is not None and buyer in recorded.case.summary
    alert_dispatch.dead_letter(alert.model_dump_json(), "msg-1", IN_HOURS)
    alert_dispatch.dead_letter('{"summary": "' + buyer + '"}', "msg-2", IN_HOURS)
    lines = [r.getMessage() for r in caplog.records if r.name == "chalicelib.cs.alerts"]
    assert lines == [
        f"CS CASE opened {recorded.case.case_id} [medium/return.received] return:{tracking} "
        "order ord_r1",
        f"CS ALERT UNDELIVERABLE msg-1: [medium/return.received] return:{tracking} order ord_r1",
        f"CS ALERT UNDELIVERABLE msg-2: not an alert ({len(buyer) + 15} characters)",
    ]
    for line in lines:
        assert not any(part in line for part in ("王小明", "13912345678", "浦东", "不想要了"))
