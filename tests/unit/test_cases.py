"""Cases: one per problem; repeats counted, severity only rises, lifecycle with who and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.cs.alerts import Alert, Severity
from chalicelib.cs.cases import (
    CaseStatus,
    acknowledge,
    case_id_for,
    open_case,
    reported_again,
    resolve,
)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def alert(kind: str = "courier.stalled_no_scan", severity: Severity = Severity.MEDIUM,
          at: datetime = T0, **kw: object) -> Alert:
    return Alert(kind=kind, severity=severity, subject="parcel:STO:7730001", at=at,
                 summary=f"{kind} at {at:%H:%M}", facts={"order_id": "ord_1"}, **kw)  # type: ignore[arg-type]


def test_a_case_opens_with_the_alert_and_belongs_to_its_order() -> None:
    case = open_case(alert())
    assert (case.type, case.status, case.order_id, case.occurrences) == (
        "courier.stalled_no_scan", CaseStatus.OPEN, "ord_1", 1)
    assert case.case_id == case_id_for(alert())  # a redelivered alert names the same case
    assert case.case_id != case_id_for(alert(at=T0 + timedelta(seconds=1)))


def test_kinds_of_one_problem_share_a_case_type() -> None:
    stalled = alert(case="courier.stalled")
    lost = alert(kind="courier.probably_lost", case="courier.stalled")
    assert stalled.dedupe_key == lost.dedupe_key
    assert stalled.alert_id != lost.alert_id


def test_repeats_are_counted_and_severity_only_rises() -> None:
    case = open_case(alert(severity=Severity.HIGH))
    again = reported_again(case, alert(severity=Severity.LOW, at=T0 + timedelta(hours=1)))
    assert (again.occurrences, again.severity, again.summary) == (2, Severity.HIGH, case.summary)
    assert again.last_seen_at == T0 + timedelta(hours=1)
    assert len(again.history) == 1  # repeats are not listed one by one
    worse = reported_again(again, alert(kind="courier.probably_lost", severity=Severity.CRITICAL,
                                        at=T0 + timedelta(days=4)))
    assert worse.severity is Severity.CRITICAL and worse.summary.startswith("courier.probably")
    assert [s.action for s in worse.history] == ["opened", "escalated"]


def test_lifecycle_records_who_when_and_why() -> None:
    case = open_case(alert())
    acked = acknowledge(case, "cs alice", "calling the courier", T0 + timedelta(minutes=5))
    done = resolve(acked, "cs alice", "courier found it", T0 + timedelta(hours=2))
    assert done.status is CaseStatus.RESOLVED and not done.is_open
    assert [(s.action, s.actor) for s in done.history] == [
        ("opened", "system"), ("acknowledged", "cs alice"), ("resolved", "cs alice")]
    assert resolve(done, "cs bob", "again", T0 + timedelta(hours=3)) == done
    assert acknowledge(done, "cs bob", "", T0 + timedelta(hours=3)) == done


def test_a_refund_task_ends_refunded_or_not_needed_and_says_which() -> None:
    from chalicelib.cs.cases import OUTCOMES, REFUND_DUE, outcome_problem

    assert OUTCOMES[REFUND_DUE] == ("refunded", "not_needed")
    assert outcome_problem(REFUND_DUE, None) is not None
    assert outcome_problem(REFUND_DUE, "later") is not None
    assert outcome_problem(REFUND_DUE, "refunded") is None
    assert outcome_problem("job.rejected", None) is None
    assert outcome_problem("job.rejected", "refunded") is not None
    task = open_case(alert(kind=REFUND_DUE))
    done = resolve(task, "cs alice", "refunded on Taobao", T0, "refunded")
    assert done.outcome == "refunded" and done.status is CaseStatus.RESOLVED
    assert done.history[-1].note == "refunded: refunded on Taobao"
    assert resolve(open_case(alert()), "cs alice", "fixed", T0).outcome is None
