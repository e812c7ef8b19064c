"""The warehouse's report sections (chalicelib/reports/warehouse_kpis.py) over hand-built jobs,
each moved through the real transitions at fixed Shanghai clocks. Each test writes down what
it planted (the cut-off a job must meet, how the factory answered, what was intercepted) and
recomputes the figures from that plan, never from the code under test."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from chalicelib.reports import warehouse_kpis
from chalicelib.reports.model import Period, Section
from chalicelib.warehouse import job_store, jobs, returns
from chalicelib.warehouse.dispatch import DEFAULT_DISPATCH_RULES as RULES
from chalicelib.warehouse.dispatch import (
    DispatchRules,
    acceptance_deadlines,
    shift_at,
    ship_by,
)
from chalicelib.warehouse.jobs import (
    ChangeKind,
    ChangeRequest,
    Job,
    JobLine,
    Package,
    PackedItem,
    PackedPackage,
    RejectReason,
)
from chalicelib.warehouse.returns import DamageLocation, ReturnRecord, ReturnReport
from tests.unit.test_jobs import offered

DAY = date(2026, 12, 7)  # a Monday; Shanghai is UTC+8
LEASE = "lease_kpi"
_ids = itertools.count(1)


def local(clock: str, day: date = DAY) -> datetime:
    """A wall-clock time in Shanghai, as an aware UTC moment."""
    return RULES.at(day, time.fromisoformat(clock))


# Building jobs through the real transitions --------------------------------------------------


def paid_job(paid: datetime, offered_after: timedelta = timedelta(minutes=1),
             partner: str = "factory-1") -> Job:
    """A job offered `offered_after` its order was paid, its deadlines as new_job sets them."""
    created = paid + offered_after
    deadlines = acceptance_deadlines(created, RULES)
    return offered().model_copy(update={
        "job_id": f"job_kpi{next(_ids)}", "partner_id": partner, "paid_at": paid,
        "created_at": created, "updated_at": created, "accept_by": deadlines.alert_at,
        "deemed_accepted_at": deadlines.deemed_accepted_at, "ship_by": ship_by(paid, RULES)})


def take(job: Job, at: datetime) -> Job:
    """The factory claims and accepts the job at `at`."""
    claimed = jobs.claim(job, LEASE, at + timedelta(minutes=10), at).job
    return jobs.accept(claimed, LEASE, at).job


def deemed(job: Job) -> Job:
    """The factory stays silent: the deadline sweep counts the job accepted at 72 h."""
    return jobs.overdue(job, job.deemed_accepted_at).job


def reject(job: Job, at: datetime, reason: RejectReason) -> Job:
    claimed = jobs.claim(job, LEASE, at + timedelta(minutes=10), at).job
    return jobs.reject(claimed, LEASE, reason, "", at).job


def printed(job: Job, at: datetime) -> Job:
    return jobs.pick(jobs.print_job(job, at).job, at).job


def ship(job: Job, at: datetime, packages: tuple[PackedPackage, ...] = (),
         anyway: bool = False) -> Job:
    """Print (unless printed), pick, pack and ship the whole job at `at`."""
    if job.work is jobs.Work.QUEUED:
        job = printed(job, at)
    job = jobs.pack(job, 640, 1, at, packages, ship_anyway=anyway, reason="no stock left").job
    package = Package(carrier_code="STO", tracking_number=f"7730{next(_ids):08d}")
    return jobs.ship(job, "s1", (package,), True, at).job


def cancel(job: Job, at: datetime) -> Job:
    return jobs.request_change(job, ChangeRequest(kind=ChangeKind.CANCEL), "cs", at).job


def stock_up(job: Job, at: datetime) -> Job:
    """CS marks the first line stocked up for next-day dispatch (before print)."""
    lines = (job.lines[0].model_copy(update={"stock_up": True}), *job.lines[1:])
    return jobs.request_change(job, ChangeRequest(kind=ChangeKind.ATTRIBUTES, lines=lines),
                               "cs", at).job


def intercept(job: Job, at: datetime, kind: ChangeKind, succeeded: bool | None) -> Job:
    """A change asked for after print: an intercept request, then resolved (None: left open)."""
    request = ChangeRequest(kind=kind, reason="buyer asked",
                            lines=job.lines if kind is ChangeKind.ATTRIBUTES else None,
                            address=job.ship_to if kind is ChangeKind.ADDRESS else None)
    job = jobs.request_change(job, request, "cs", at).job
    if succeeded is None:
        return job
    change = job.changes[-1].change_id
    return jobs.resolve_change(job, change, succeeded, False, "", "factory",
                               at + timedelta(hours=1)).job


def contents(lines: Iterable[JobLine]) -> tuple[PackedPackage, ...]:
    return (PackedPackage(items=tuple(PackedItem(sku=line.sku, quantity=line.quantity)
                                      for line in lines)),)


def short_pack(job: Job) -> tuple[PackedPackage, ...]:
    """Every line but the first: one item left out."""
    return contents(job.lines[1:])


def wrong_pack(job: Job) -> tuple[PackedPackage, ...]:
    """Every line, and an item not ordered."""
    return contents([*job.lines, JobLine(sku="MUG-RED", quantity=1)])


def rate(part: int, whole: int) -> Decimal | None:
    """The expected percentage, to one decimal, computed here."""
    return None if whole == 0 else round(Decimal(100) * part / whole, 1)


def figures(section: Section) -> dict[str, object]:
    return {figure.key: figure.value for figure in section.figures}


# The shifts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("clock", "shift"), [
    ("11:00", "A"), ("14:29", "A"), ("14:30", "B"), ("19:30", "B"), ("08:59", "B")])
def test_each_cut_off_belongs_to_the_shift_on_duty(clock: str, shift: str) -> None:
    assert shift_at(time.fromisoformat(clock), RULES) == shift


def test_shifts_are_configured_by_name_and_start() -> None:
    one = DispatchRules.model_validate({"shifts": [{"name": "day", "starts": "08:00"}]})
    assert [shift_at(cut, one) for cut in one.cutoffs] == ["day", "day", "day"]
    with pytest.raises(ValidationError):
        DispatchRules.model_validate({"shifts": []})
    with pytest.raises(ValidationError):
        DispatchRules.model_validate({"shifts": [{"name": "A", "starts": "08:00"},
                                                 {"name": "A", "starts": "15:00"}]})


# The daily report --------------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    job: Job
    cutoff: str  # the cut-off it must meet, worked out by hand from the rules
    where: str  # on_time, late, overdue, to_go, stock_up, closed


def day_plan() -> list[Planted]:
    """A Monday's orders, read at 21:00. Cut-offs 11:00, 15:00, 19:30, two hours' handling."""
    def shipped(paid: str, out: str) -> Job:
        return ship(take(paid_job(local(paid)), local(paid)), local(out))

    return [
        Planted(shipped("00:00", "10:00"), "11:00", "on_time"),  # the day's first instant
        Planted(shipped("07:00", "10:40"), "11:00", "on_time"),
        Planted(shipped("08:10", "11:20"), "11:00", "late"),
        Planted(printed(take(paid_job(local("08:30")), local("08:40")), local("09:00")),
                "11:00", "overdue"),
        Planted(shipped("09:00", "11:00"), "11:00", "on_time"),  # 2 h exactly; at the cut-off
        Planted(shipped("09:01", "15:00"), "15:00", "on_time"),  # a minute too late for 11:00
        Planted(cancel(paid_job(local("12:00")), local("12:30")), "15:00", "closed"),
        Planted(shipped("13:01", "19:31"), "19:30", "late"),
        Planted(take(paid_job(local("17:31")), local("17:40")), "later", "to_go"),
        # Stocked up at 10:30: ships tomorrow, counted apart and never late, though not out.
        Planted(stock_up(take(paid_job(local("10:00")), local("10:05")), local("10:30")),
                "later", "stock_up"),
    ]


SHIFT_OF = {"11:00": "A", "15:00": "B", "19:30": "B", "later": "later"}  # A 09:00, B 14:30


def expected_row(planted: list[Planted]) -> tuple[object, ...]:
    seen = Counter(p.where for p in planted)
    return (len(planted), seen["on_time"], seen["late"], seen["overdue"] + seen["to_go"],
            seen["overdue"], seen["stock_up"], seen["closed"],
            rate(seen["on_time"], seen["on_time"] + seen["late"] + seen["overdue"]))


def test_the_daily_report_counts_each_cut_off_and_shift() -> None:
    plan = day_plan()
    elsewhere = [ship(take(paid_job(local("23:59", DAY - timedelta(days=1))), local("00:10")),
                      local("10:00")),  # paid the day before: not this day's
                 paid_job(local("00:00", DAY + timedelta(days=1)))]
    period = Period(kind="daily", start=DAY, end=DAY + timedelta(days=1))
    (section,) = warehouse_kpis.sections(period, [p.job for p in plan] + elsewhere, [],
                                         local("21:00"), RULES)

    by_cutoff = section.table("by_cutoff")
    assert [row[0] for row in by_cutoff.rows] == ["11:00", "15:00", "19:30", "later"]
    for row in by_cutoff.rows:
        assert row[1:] == (SHIFT_OF[str(row[0])],
                           *expected_row([p for p in plan if p.cutoff == row[0]]))
    by_shift = {row[0]: row[1:] for row in section.table("by_shift").rows}
    assert by_shift == {shift: expected_row([p for p in plan if SHIFT_OF[p.cutoff] == shift])
                        for shift in ("A", "B", "later")}
    total = expected_row(plan)
    assert figures(section) == {"paid": total[0], "on_time": total[1], "late": total[2],
                                "pending": total[3], "stock_up": total[5],
                                "on_time_rate": total[7]}
    (chart,) = section.charts
    parts = ("on_time", "late", "pending", "stock_up", "closed")
    assert chart.kind == "stacked" and len(chart.parts) == len(parts)
    for label, values in chart.rows:
        seen = Counter("pending" if p.where in ("overdue", "to_go") else p.where
                       for p in plan if p.cutoff == label)
        assert values == tuple(seen[part] for part in parts)


def test_a_stocked_up_job_shipped_next_day_after_the_days_cut_offs_is_not_late() -> None:
    job = stock_up(take(paid_job(local("10:00")), local("10:05")), local("10:30"))
    out = ship(job, local("18:00", DAY + timedelta(days=1)))
    period = Period(kind="daily", start=DAY, end=DAY + timedelta(days=1))
    (section,) = warehouse_kpis.sections(period, [out], [], local("21:00", DAY + timedelta(
        days=1)), RULES)
    assert figures(section)["late"] == 0 and figures(section)["stock_up"] == 1


def test_an_empty_day_has_no_rate() -> None:
    period = Period(kind="daily", start=DAY, end=DAY + timedelta(days=1))
    (section,) = warehouse_kpis.sections(period, [], [], local("21:00"), RULES)
    assert figures(section)["paid"] == 0 and figures(section)["on_time_rate"] is None
    assert all(row[-1] is None for row in section.table("by_cutoff").rows)


# Weekly and monthly ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Story:
    """One job of the month and what was done to it, as the figures should see it."""

    job: Job
    quick_intake: bool
    answer: str  # confirmed, confirmed_late, deemed, rejected, waiting
    reason: str | None = None
    breach: bool = False
    intercept: str | None = None  # kind:intercepted|intercept_failed|intercept_requested
    mismatch: str | None = None  # wrong or short, shipped anyway
    shipped: bool = False
    on_time: bool | None = None


def month_plan(first: date = date(2026, 12, 1),
               partners: tuple[str, str] = ("factory-1", "factory-2")) -> list[Story]:
    """Jobs paid over the month of `first`, each on its own day, at 08:00 (ship by 11:00): the
    first partner's with every answer and intercept, the second's with pack checks."""
    first_partner, second = partners
    stories: list[Story] = []

    def day(n: int) -> date:
        return first.replace(day=n)

    def base(n: int, offered_after: timedelta = timedelta(minutes=1),
             partner: str = "") -> Job:
        return paid_job(local("08:00", day(n)), offered_after, partner or first_partner)

    def answered(n: int, after: timedelta, **kw: timedelta | str) -> Job:
        job = base(n, **kw)  # type: ignore[arg-type]
        return take(job, job.created_at + after)

    on_day = answered(1, timedelta(hours=2))
    stories.append(Story(ship(on_day, local("10:30", day(1))), True, "confirmed", shipped=True,
                         on_time=True))
    late = answered(2, timedelta(hours=30))  # accepted the next day: confirmed late
    stories.append(Story(ship(late, late.created_at + timedelta(hours=31)), True,
                         "confirmed_late", shipped=True, on_time=False))
    slow = answered(3, timedelta(minutes=5), offered_after=timedelta(minutes=25))
    stories.append(Story(ship(slow, local("10:59", day(3))), False, "confirmed", shipped=True,
                         on_time=True))
    stories.append(Story(ship(deemed(base(4)), local("12:00", day(7))), True, "deemed",
                         shipped=True, on_time=False))
    stories.append(Story(reject(base(5), local("09:00", day(5)), RejectReason.OUT_OF_STOCK),
                         True, "rejected", reason="out_of_stock"))
    stories.append(Story(reject(base(6), local("09:00", day(6)), RejectReason.OUT_OF_STOCK),
                         True, "rejected", reason="out_of_stock"))
    given_back = jobs.reject(answered(8, timedelta(hours=1)), LEASE, RejectReason.CAPACITY, "",
                             local("12:00", day(8)), breach=True).job
    stories.append(Story(given_back, True, "confirmed", reason="capacity", breach=True))
    stories.append(Story(base(9, offered_after=timedelta(minutes=10)), True, "waiting"))
    for n, (kind, outcome) in enumerate([(ChangeKind.ADDRESS, True), (ChangeKind.CANCEL, True),
                                         (ChangeKind.ADDRESS, False),
                                         (ChangeKind.ATTRIBUTES, None)], start=10):
        job = printed(answered(n, timedelta(hours=1)), local("09:30", day(n)))
        job = intercept(job, local("09:40", day(n)), kind, outcome)
        status = {True: "intercepted", False: "intercept_failed", None: "intercept_requested"}
        stories.append(Story(job, True, "confirmed",
                             intercept=f"{kind.value}:{status[outcome]}"))
    for n, fault in ((15, "wrong"), (16, "short")):
        job = answered(n, timedelta(hours=1), partner=second)
        packages = wrong_pack(job) if fault == "wrong" else short_pack(job)
        stories.append(Story(ship(job, local("10:00", day(n)), packages, anyway=True), True,
                             "confirmed", mismatch=fault, shipped=True, on_time=True))
    checked = answered(17, timedelta(hours=1), partner=second)
    stories.append(Story(ship(checked, local("10:00", day(17)), contents(checked.lines)), True,
                         "confirmed", shipped=True, on_time=True))
    return stories


def return_record(tracking: str, partner: str, at: datetime,
                  **changes: object) -> ReturnRecord:
    report = ReturnReport.model_validate({
        "return_tracking_number": tracking, "buyer_name": "王芳", "reason": "质量问题",
        "items": [{"sku": "LS-WHT-M", "quantity": 1}], "packaging": "intact", **changes})
    return ReturnRecord.model_validate(returns.record(report, partner, at, RULES,
                                                      returns.DEFAULT_RETURNS_RULES))


def month_returns(first: date = date(2026, 12, 1), prefix: str = "RT",
                  partners: tuple[str, str] = ("factory-1", "factory-2"),
                  ) -> list[tuple[ReturnRecord, str]]:
    """Returns in the month's windows and their liability under the contract, by hand."""
    first_partner, second = partners
    return [
        (return_record(f"{prefix}0001", first_partner, local("10:00", first.replace(day=3)),
                       complaint="衣服有破洞"), "factory"),  # intact packaging: the factory's
        (return_record(f"{prefix}0002", first_partner, local("10:00", first.replace(day=4)),
                       packaging="damaged", complaint="破损",
                       damage_location=DamageLocation.IN_TRANSIT), "courier"),
        (return_record(f"{prefix}0003", second, local("11:00", first.replace(day=4)),
                       packaging="damaged", complaint="破损",
                       damage_location=DamageLocation.AT_WAREHOUSE), "factory"),
        (return_record(f"{prefix}0004", second, local("11:00", first.replace(day=5))),
         "none"),
    ]


MONTH = Period(kind="monthly", start=date(2026, 12, 1), end=date(2027, 1, 1))
READ_AT = datetime(2027, 1, 1, 2, 0, tzinfo=MONTH.start_at.tzinfo)  # the 1st, 10:00 Shanghai


def test_the_monthly_report_recomputes_from_the_planted_stories() -> None:
    stories = month_plan()
    planted_returns = month_returns()
    assert MONTH.end_at < READ_AT
    # A return in November's last window and a job paid on January 1st are not December's.
    outside_return = return_record("RT0009", "factory-1", local("10:00", date(2026, 11, 30)))
    outside_job = paid_job(local("00:01", date(2027, 1, 1)))
    found = {s.key: s for s in warehouse_kpis.sections(
        MONTH, [s.job for s in stories] + [outside_job],
        [r for r, _ in planted_returns] + [outside_return], READ_AT, RULES)}
    assert_month(found, stories, planted_returns, MONTH)


def assert_month(found: dict[str, Section], stories: list[Story],
                 planted_returns: list[tuple[ReturnRecord, str]], month: Period,
                 partners: tuple[str, str] = ("factory-1", "factory-2"),
                 complaints: dict[str, int] | None = None) -> None:
    """A month's sections against the figures recomputed from the planted stories (and the
    buyer complaint cases, when the caller counted them)."""
    first_partner, second = partners
    assert list(found) == ["dispatch", "intake", "factory", "rejects", "intercepts",
                           "wrong_short", "returns", "scorecard", "cs_changes"]

    shipped = [s for s in stories if s.shipped]
    on_time = sum(bool(s.on_time) for s in shipped)
    # Unshipped and not closed: past their 11:00 cut-off on their day, so overdue by now.
    open_jobs = [s for s in stories if not s.shipped and s.answer != "rejected"
                 and not s.breach and not (s.intercept or "").startswith("cancel:intercepted")]
    assert figures(found["dispatch"]) == {
        "paid": len(stories), "on_time": on_time, "late": len(shipped) - on_time,
        "pending": len(open_jobs), "stock_up": 0,
        "on_time_rate": rate(on_time, len(shipped) + len(open_jobs))}
    per_day = {row[0]: int(row[1] or 0) for row in found["dispatch"].table("by_day").rows}
    assert list(per_day) == [day.isoformat() for day in month.days()]
    assert sum(per_day.values()) == len(stories)
    assert per_day[month.start.replace(day=9).isoformat()] == 1
    assert per_day[month.days()[-1].isoformat()] == 0

    quick = sum(s.quick_intake for s in stories)
    assert figures(found["intake"]) == {"orders": len(stories), "within_10_min": quick,
                                        "intake_rate": rate(quick, len(stories))}

    answers = Counter(s.answer for s in stories)
    assert figures(found["factory"]) == {
        "offered": len(stories), "confirmed": answers["confirmed"],
        "confirmed_late": answers["confirmed_late"], "deemed": answers["deemed"],
        "rejected": answers["rejected"], "waiting": answers["waiting"],
        "confirmation_rate": rate(answers["confirmed"], len(stories))}

    reasons = Counter(s.reason for s in stories if s.reason)
    breaches = Counter(s.reason for s in stories if s.breach)
    assert figures(found["rejects"]) == {
        "rejected": sum(reasons.values()), "breaches": sum(breaches.values()),
        "reject_rate": rate(sum(reasons.values()), len(stories))}
    assert found["rejects"].table("by_reason").rows == tuple(
        (reason, count, breaches[reason]) for reason, count in sorted(reasons.items()))

    outcomes = Counter(str(s.intercept).split(":")[1] for s in stories if s.intercept)
    assert figures(found["intercepts"]) == {
        "requested": sum(outcomes.values()), "succeeded": outcomes["intercepted"],
        "failed": outcomes["intercept_failed"],
        "success_rate": rate(outcomes["intercepted"],
                             outcomes["intercepted"] + outcomes["intercept_failed"])}

    mismatched = Counter(s.mismatch for s in shipped if s.mismatch)
    assert figures(found["wrong_short"]) == {
        "shipped": len(shipped), "packed_anyway": sum(mismatched.values()),
        "wrong_items": mismatched["wrong"], "short": mismatched["short"],
        "mismatch_rate": rate(sum(mismatched.values()), len(shipped)),
        "complaints": None if complaints is None else sum(complaints.values())}
    assert found["wrong_short"].table("complaints").rows == tuple(sorted((complaints or
                                                                          {}).items()))

    liable = Counter(party for _, party in planted_returns)
    assert figures(found["returns"]) == {
        "returns": len(planted_returns), "complained": 3, "damaged_packaging": 2,
        "factory_liable": liable["factory"]}
    assert dict((str(k), v) for k, v in found["returns"].table("by_liability").rows
                if v) == dict(liable)

    scorecard = {row[0]: row[1:] for row in found["scorecard"].table("factories").rows}
    theirs = [s for s in stories if s.job.partner_id == second]
    assert scorecard[second] == (
        len(theirs), rate(3, 3), rate(3, 3), rate(0, 3), rate(2, 3),
        sum(p == "factory" for r, p in planted_returns if r.partner_id == second), None)
    mine = [s for s in stories if s.job.partner_id == first_partner]
    assert scorecard[first_partner][0] == len(mine)
    assert scorecard[first_partner][-1] == rate(outcomes["intercepted"],
                                              outcomes["intercepted"]
                                              + outcomes["intercept_failed"])

    by_kind = {row[0]: row for row in found["cs_changes"].table("by_kind").rows}
    columns = found["cs_changes"].table("by_kind").columns
    for story in stories:
        if story.intercept:
            kind, status = story.intercept.split(":")
            assert by_kind[kind][columns.index(status)] >= 1  # type: ignore[operator]
    assert sum(int(row[-1] or 0) for row in by_kind.values()) == sum(
        len(s.job.changes) for s in stories)


def test_a_weekly_report_has_no_scorecard_and_an_empty_week_no_rates() -> None:
    week = Period(kind="weekly", start=date(2027, 3, 1), end=date(2027, 3, 8))
    found = warehouse_kpis.sections(week, [], [], READ_AT, RULES)
    assert [s.key for s in found] == ["dispatch", "intake", "factory", "rejects", "intercepts",
                                      "wrong_short", "returns"]
    rates = {f.key: f.value for s in found for f in s.figures if f.unit == "percent"}
    assert set(rates) == {"on_time_rate", "intake_rate", "confirmation_rate", "reject_rate",
                          "success_rate", "mismatch_rate"}
    assert all(value is None for value in rates.values())


def test_an_acceptance_from_before_its_moment_was_kept_is_left_out_of_the_rate() -> None:
    old = take(paid_job(local("08:00")), local("09:00")).model_copy(update={"accepted_at": None})
    new = take(paid_job(local("08:00")), local("09:00"))
    week = Period(kind="weekly", start=DAY, end=DAY + timedelta(days=7))
    factory = next(s for s in warehouse_kpis.sections(week, [old, new], [], READ_AT, RULES)
                   if s.key == "factory")
    assert figures(factory)["confirmation_rate"] == rate(1, 1)
    assert factory.notes and "1" in factory.notes[0]


# The index a period's jobs are read from -----------------------------------------------------


@pytest.mark.parametrize(("paid", "month"), [
    ("2026-11-30T15:59:59+00:00", "2026-11"),  # 23:59:59 in Shanghai
    ("2026-11-30T16:00:00+00:00", "2026-12"),  # midnight in Shanghai: December already
    ("2026-12-31T16:00:00+00:00", "2027-01")])
def test_a_jobs_item_carries_the_shanghai_month_it_was_paid(paid: str, month: str) -> None:
    job = paid_job(datetime.fromisoformat(paid))
    item = job_store.item_of(job)
    assert item["paid_month"] == month
    assert job_store.job_of(item) == job


def test_the_paid_month_is_the_reports_zone() -> None:
    from chalicelib.reports.model import REPORT_ZONE

    assert job_store.PAID_MONTH_ZONE == REPORT_ZONE


def test_accepting_keeps_when() -> None:
    at = local("09:00")
    assert take(paid_job(local("08:00")), at).accepted_at == at
    assert deemed(paid_job(local("08:00"))).accepted_at is None

