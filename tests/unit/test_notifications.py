"""Routing, outbox notes and their failure path, reminders: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.cs.alerts import Alert, Severity
from chalicelib.cs.cases import Case, acknowledge, open_case, reminded, reported_again
from chalicelib.cs.notes import escalates, failed, plan, reminder_due
from chalicelib.cs.rota import Person, RotaRules
from chalicelib.cs.routing import Route, Routing, message_for, targets

IN_HOURS = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)  # Wednesday 10:00 in Shanghai
EVENING = IN_HOURS + timedelta(hours=8, minutes=11)  # 18:11
ROTA = RotaRules(team_channels=("wecom:team", "email:team"),
                 people={"cs-manager": Person(name="M", channels=("dingtalk:mgr",))})
ROUTING = Routing(rota=ROTA, routes=(
    Route(types=("courier.*",), channels=("feishu:logistics",), use_rota=False),
    Route(types=("*",), marketplaces=("tiktok",), min_severity=Severity.HIGH,
          channels=("slack:tiktok",)),
    Route(),
), fallback_channel="email:team", max_attempts=3)


def case(kind: str = "order.invalid", severity: Severity = Severity.HIGH,
         marketplace: str = "shopify", at: datetime = IN_HOURS) -> object:
    return open_case(Alert(kind=kind, severity=severity, subject="order:ord_1", at=at,
                           summary="no address", facts={"order_id": "ord_1",
                                                        "order_name": "#1001",
                                                        "marketplace": marketplace}))


def test_routes_add_channels_by_type_severity_and_marketplace_each_once() -> None:
    def channels(c: object, at: datetime = IN_HOURS) -> list[str]:
        return [t.channel for t in targets(c, at, ROUTING)]  # type: ignore[arg-type]

    assert channels(case()) == ["wecom:team", "email:team"]
    assert channels(case("courier.stalled")) == ["feishu:logistics", "wecom:team", "email:team"]
    assert channels(case(marketplace="tiktok")) == ["slack:tiktok", "wecom:team", "email:team"]
    assert channels(case(marketplace="tiktok", severity=Severity.MEDIUM)) == [
        "wecom:team", "email:team"]


def test_outside_hours_high_goes_to_the_manager_now_and_medium_waits() -> None:
    (urgent,) = targets(case(at=EVENING), EVENING, ROUTING)  # type: ignore[arg-type]
    assert (urgent.channel, urgent.deliver_at) == ("dingtalk:mgr", EVENING)
    later = targets(case(severity=Severity.MEDIUM, at=EVENING), EVENING,  # type: ignore[arg-type]
                    ROUTING)
    assert {t.channel for t in later} == {"wecom:team", "email:team"}
    assert all(t.deliver_at == IN_HOURS + timedelta(days=1, minutes=-70) for t in later)


def test_a_note_per_case_channel_and_severity() -> None:
    first = case()
    again = reported_again(first, Alert(kind="order.invalid", severity=Severity.HIGH,  # type: ignore[arg-type]
                                        subject="order:ord_1", at=IN_HOURS + timedelta(hours=1),
                                        summary="again"))
    worse = reported_again(first, Alert(kind="order.invalid", severity=Severity.CRITICAL,  # type: ignore[arg-type]
                                        subject="order:ord_1", at=IN_HOURS + timedelta(hours=1),
                                        summary="worse"))
    ids = {n.note_id for n in plan(first, IN_HOURS, ROUTING)}  # type: ignore[arg-type]
    assert ids == {n.note_id for n in plan(again, IN_HOURS + timedelta(hours=1), ROUTING)}
    assert not ids & {n.note_id for n in plan(worse, IN_HOURS, ROUTING)}


def test_failures_retry_with_back_off_then_fall_back_then_die() -> None:
    (note, _email) = plan(case(), IN_HOURS, ROUTING)  # type: ignore[arg-type]
    once, fallback = failed(note, "server_error", True, IN_HOURS, ROUTING)
    assert fallback is None and once.due_at == IN_HOURS + timedelta(seconds=30)
    twice, _ = failed(once, "server_error", True, IN_HOURS, ROUTING, retry_after=300)
    assert twice.due_at == IN_HOURS + timedelta(seconds=300)  # the platform said wait longer
    gone, fallback = failed(twice, "server_error", True, IN_HOURS, ROUTING)
    assert gone.status == "failed" and fallback is not None
    assert (fallback.channel, fallback.fallback_of, fallback.attempts) == (
        "email:team", note.note_id, 0)
    dead, nothing = failed(fallback, "MessageRejected", False, IN_HOURS, ROUTING)
    assert dead.status == "dead" and nothing is None
    refused, fallback = failed(note, "security", False, IN_HOURS, ROUTING)
    assert refused.status == "failed" and fallback is not None  # no retry for a bad config


def test_reminders_for_unacknowledged_high_cases_then_escalation() -> None:
    c = case()
    assert reminder_due(c, IN_HOURS + timedelta(minutes=29), ROUTING) is None  # type: ignore[arg-type]
    assert reminder_due(c, IN_HOURS + timedelta(minutes=31), ROUTING) == 1  # type: ignore[arg-type]
    assert not escalates(c, IN_HOURS + timedelta(minutes=31), ROUTING)  # type: ignore[arg-type]
    assert escalates(c, IN_HOURS + timedelta(hours=2), ROUTING)  # type: ignore[arg-type]
    taken = acknowledge(c, "cs ann", "", IN_HOURS)  # type: ignore[arg-type]
    assert reminder_due(taken, IN_HOURS + timedelta(hours=3), ROUTING) is None
    low = case(severity=Severity.MEDIUM)
    assert reminder_due(low, IN_HOURS + timedelta(hours=3), ROUTING) is None  # type: ignore[arg-type]


def test_reminders_are_counted_on_the_case_not_listed_in_its_history() -> None:
    """A high case nobody acknowledges is reminded every 30 minutes for as long as it stays
    open: months of that must not grow its item towards DynamoDB's 400 KB."""
    c = case()
    assert isinstance(c, Case)
    for serial in range(1, 2001):
        at = IN_HOURS + timedelta(minutes=30 * serial)
        c = reminded(c, serial, escalated=serial >= 4, now=at)
    assert c.reminders == 2000
    assert c.last_reminded_at == IN_HOURS + timedelta(minutes=30 * 2000)
    assert c.escalated_to_manager_at == IN_HOURS + timedelta(hours=2)
    assert [(s.action, s.note) for s in c.history] == [
        ("opened", "order.invalid"), ("reminded", "escalated to the on-duty manager")]


CONSOLE = "https://ops.brand.cn"


def test_messages_name_the_order_and_link_the_case_on_the_console() -> None:
    """The link is the console's page for the case, absolute: a phone's IM client opens it."""
    c = case()
    assert isinstance(c, Case)
    message = message_for(c, ROUTING, CONSOLE)
    assert "#1001" in message.title
    assert message.link == f"{CONSOLE}/console/cases/{c.case_id}"
    assert message_for(c, ROUTING, CONSOLE, reminder=True).title.startswith("【提醒")
    assert message_for(c, ROUTING, CONSOLE + "/").link == message.link  # one slash


def test_a_digest_links_the_queue_filtered_to_its_type() -> None:
    from chalicelib.cs.noise import CaseBrief
    from chalicelib.cs.routing import digest_for

    stalled = [CaseBrief(case_id=f"case_{n}", kind="shipment.stalled") for n in range(3)]
    one_kind = digest_for(stalled, IN_HOURS, IN_HOURS, ROUTING, CONSOLE)
    assert one_kind.link == f"{CONSOLE}/console/cases?type=shipment.stalled"
    mixed = [*stalled, CaseBrief(case_id="case_x", kind="order.invalid")]
    assert digest_for(mixed, IN_HOURS, IN_HOURS, ROUTING, CONSOLE).link == \
        f"{CONSOLE}/console/cases"


def test_an_email_that_fails_is_dead_whichever_mailbox_and_other_platforms_fall_back() -> None:
    """Email is where failures go (its adapter's delivery says SES, not its name): a personal
    mailbox from the rota is not sent on to the team's; a robot, known or not, is."""
    (note, _email) = plan(case(), IN_HOURS, ROUTING)  # type: ignore[arg-type]
    mailbox = note.model_copy(update={"channel": "email:ann"})
    dead, nothing = failed(mailbox, "MessageRejected", False, IN_HOURS, ROUTING)
    assert (dead.status, nothing) == ("dead", None)
    for channel in ("dingtalk:mgr", "pager:ops"):
        gone, fallback = failed(note.model_copy(update={"channel": channel}), "gone", False,
                                IN_HOURS, ROUTING)
        assert gone.status == "failed" and fallback is not None
        assert fallback.channel == "email:team"
