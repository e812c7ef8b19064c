"""The warehouse's report sections: dispatch against the cut-offs and shifts, intake, the
factory's confirmations and rejects, intercepts, wrong or short shipments, returns and their
liability, the factory scorecard and CS's changes. Pure: no I/O.

Every figure counts the jobs of the orders paid in the period (a cohort: what happened to them
since, up to `now`), so a past period's report is the same whenever it is computed once its
jobs have ended. Returns count by the registration window day they belong to. A job is late
against its own ship-by (one of the cut-offs, or a pre-sale's or stock-up's later one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import NamedTuple

from chalicelib.reports.model import (
    Cell,
    Chart,
    Figure,
    Period,
    Section,
    Table,
    local_day,
    rate,
)
from chalicelib.warehouse.day_dispatch import LATER, PaidJob, cutoff_of, state
from chalicelib.warehouse.dispatch import DispatchRules, shift_at
from chalicelib.warehouse.jobs import ChangeStatus, Handshake, Job, Work
from chalicelib.warehouse.returns import Liability, ReturnRecord

INTAKE_WITHIN = timedelta(minutes=10)  # the handbook: an order is seen within 10 minutes
STOCK_UP = "stock_up"
PARTS = ("on time", "late", "pending", "stock-up", "closed")  # the daily chart's bars
DISPATCH_COLUMNS = ("paid", "on time", "late", "pending", "of which overdue", "stock-up",
                    "closed", "on-time rate %")
INTERCEPTS = (ChangeStatus.INTERCEPT_REQUESTED, ChangeStatus.INTERCEPTED,
              ChangeStatus.INTERCEPT_FAILED)


# Dispatch ------------------------------------------------------------------------------------


def dispatch_state(job: Job, now: datetime) -> str:
    """on_time, late, overdue, to_go (chalicelib/warehouse/day_dispatch.py), closed, or
    stock_up: a job with a line stocked up for next-day dispatch is counted apart, never late
    (its goods could not leave with the day's cut-offs)."""
    found = state(PaidJob(paid_at=job.paid_at or job.created_at, ship_by=job.ship_by,
                          work=job.work.value, shipped_at=job.shipped_at), now)
    if found != "closed" and any(line.stock_up for line in job.lines):
        return STOCK_UP
    return found


class Dispatch(NamedTuple):
    paid: int
    on_time: int
    late: int
    overdue: int
    to_go: int
    stock_up: int
    closed: int

    @property
    def pending(self) -> int:
        return self.overdue + self.to_go

    @property
    def on_time_rate(self) -> Decimal | None:
        """On time over those whose deadline has come: shipped, or still pending past it."""
        return rate(self.on_time, self.on_time + self.late + self.overdue)

    def row(self) -> tuple[Cell, ...]:
        return (self.paid, self.on_time, self.late, self.pending, self.overdue, self.stock_up,
                self.closed, self.on_time_rate)


def dispatch_of(states: Iterable[str]) -> Dispatch:
    seen = Counter(states)
    return Dispatch(paid=sum(seen.values()), on_time=seen["on_time"], late=seen["late"],
                    overdue=seen["overdue"], to_go=seen["to_go"], stock_up=seen[STOCK_UP],
                    closed=seen["closed"])


def _label(cut: time) -> str:
    return cut.strftime("%H:%M")


def _dispatch_figures(total: Dispatch) -> tuple[Figure, ...]:
    return (Figure(key="paid", label="Orders paid", value=total.paid),
            Figure(key="on_time", label="Shipped on time", value=total.on_time),
            Figure(key="late", label="Shipped late", value=total.late),
            Figure(key="pending", label="Not shipped yet", value=total.pending),
            Figure(key="stock_up", label="Stocked up, ship next day", value=total.stock_up),
            Figure(key="on_time_rate", label="On-time dispatch rate",
                   value=total.on_time_rate, unit="percent"))


def daily_dispatch(day: date, jobs: Sequence[Job], now: datetime,
                   rules: DispatchRules) -> Section:
    """The day's paid orders under the cut-off each must ship by (then "later": paid too late
    for the last one, pre-sales, stock-ups) and under the shift on duty at that cut-off."""
    labels = [*(_label(cut) for cut in rules.cutoffs), LATER]
    shift_of = {_label(cut): shift_at(cut, rules) for cut in rules.cutoffs} | {LATER: LATER}
    by_cutoff: dict[str, list[str]] = {label: [] for label in labels}
    for job in jobs:
        by_cutoff[cutoff_of(job.ship_by, day, rules)].append(dispatch_state(job, now))
    cutoffs = {label: dispatch_of(found) for label, found in by_cutoff.items()}
    shifts = [*dict.fromkeys(shift_of[label] for label in labels)]
    per_shift = {name: dispatch_of(s for label in labels if shift_of[label] == name
                                   for s in by_cutoff[label]) for name in shifts}
    total = dispatch_of(s for found in by_cutoff.values() for s in found)
    return Section(
        key="dispatch", title="Dispatch by cut-off and shift", figures=_dispatch_figures(total),
        tables=(
            Table(key="by_cutoff", title="Per cut-off", columns=("cut-off", "shift",
                                                                 *DISPATCH_COLUMNS),
                  rows=tuple((label, shift_of[label], *cutoffs[label].row())
                             for label in labels)),
            Table(key="by_shift", title="Per shift", columns=("shift", *DISPATCH_COLUMNS),
                  rows=tuple((name, *per_shift[name].row()) for name in shifts))),
        charts=(Chart(key="by_cutoff", title="Orders per cut-off", kind="stacked", parts=PARTS,
                      rows=tuple((label, (f.on_time, f.late, f.pending, f.stock_up, f.closed))
                                 for label, f in cutoffs.items())),),
        notes=("Each order counts under the cut-off it must ship by; 'later' holds orders paid "
               "too late for the day's last cut-off, pre-sales and stock-ups.",
               "Stock-up orders ship the next day: counted apart, never late.",
               "The on-time rate counts pending orders past their cut-off as misses."))


def dispatch_totals(period: Period, jobs: Sequence[Job], now: datetime) -> Section:
    by_day: dict[date, list[str]] = {day: [] for day in period.days()}
    for job in jobs:
        by_day.setdefault(local_day(job.paid_at or job.created_at), []).append(
            dispatch_state(job, now))
    total = dispatch_of(s for found in by_day.values() for s in found)
    return Section(
        key="dispatch", title="Dispatch", figures=_dispatch_figures(total),
        tables=(Table(key="by_day", title="Per day paid", columns=("day", *DISPATCH_COLUMNS),
                      rows=tuple((day.isoformat(), *dispatch_of(found).row())
                                 for day, found in sorted(by_day.items()))),),
        notes=("Stock-up orders ship the next day: counted apart, never late.",))


# Intake and the factory's answer -----------------------------------------------------------


def taken_in(job: Job, within: timedelta = INTAKE_WITHIN) -> bool:
    """The job was offered to the factory within `within` of the payment."""
    return job.created_at - (job.paid_at or job.created_at) <= within


def intake(jobs: Sequence[Job]) -> Section:
    quick = sum(taken_in(job) for job in jobs)
    return Section(key="intake", title="Intake", figures=(
        Figure(key="orders", label="Orders paid", value=len(jobs)),
        Figure(key="within_10_min", label="Offered to the factory within 10 minutes",
               value=quick),
        Figure(key="intake_rate", label="10-minute intake rate", value=rate(quick, len(jobs)),
               unit="percent")))


def answer_of(job: Job, rules: DispatchRules) -> str:
    """How the factory answered the offer: confirmed (within `confirm_within`), confirmed_late,
    deemed (silent until the contract counted it accepted), rejected, waiting, or unknown (an
    acceptance from before its moment was kept)."""
    if job.accepted_at is not None:
        in_time = job.accepted_at - job.created_at <= rules.confirm_within
        return "confirmed" if in_time else "confirmed_late"
    if job.deemed_accepted:
        return "deemed"
    if job.handshake is Handshake.REJECTED:
        return "rejected"
    if job.handshake is Handshake.OFFERED:
        return "waiting"
    return "unknown"


class Answers(NamedTuple):
    seen: Counter[str]

    @property
    def known(self) -> int:
        return sum(self.seen.values()) - self.seen["unknown"]

    @property
    def confirmation_rate(self) -> Decimal | None:
        return rate(self.seen["confirmed"], self.known)


def answers_of(jobs: Iterable[Job], rules: DispatchRules) -> Answers:
    return Answers(Counter(answer_of(job, rules) for job in jobs))


def factory(jobs: Sequence[Job], rules: DispatchRules) -> Section:
    answers = answers_of(jobs, rules)
    hours = int(rules.confirm_within.total_seconds() // 3600)
    deemed_hours = int(rules.deemed_accepted_after.total_seconds() // 3600)
    return Section(key="factory", title="Factory confirmation", figures=(
        Figure(key="offered", label="Jobs offered", value=len(jobs)),
        Figure(key="confirmed", label=f"Confirmed within {hours} h",
               value=answers.seen["confirmed"]),
        Figure(key="confirmed_late", label=f"Confirmed after {hours} h",
               value=answers.seen["confirmed_late"]),
        Figure(key="deemed", label=f"Deemed accepted ({deemed_hours} h silence)",
               value=answers.seen["deemed"]),
        Figure(key="rejected", label="Rejected the offer", value=answers.seen["rejected"]),
        Figure(key="waiting", label="Still unanswered", value=answers.seen["waiting"]),
        Figure(key="confirmation_rate", label=f"Confirmation rate within {hours} h",
               value=answers.confirmation_rate, unit="percent")),
        notes=(("Accepted before the acceptance time was kept, so left out of the rate: "
                f"{answers.seen['unknown']}.",) if answers.seen["unknown"] else ()))


def rejects(jobs: Sequence[Job]) -> Section:
    rejected = [job for job in jobs if job.handshake is Handshake.REJECTED]
    reasons = Counter(str(job.reject_reason or "other") for job in rejected)
    breaches = Counter(str(job.reject_reason or "other") for job in rejected if job.breach)
    return Section(key="rejects", title="Rejects by reason", figures=(
        Figure(key="rejected", label="Jobs rejected", value=len(rejected)),
        Figure(key="breaches", label="Given back after accepting (breach)",
               value=sum(breaches.values())),
        Figure(key="reject_rate", label="Reject rate", value=rate(len(rejected), len(jobs)),
               unit="percent")),
        tables=(Table(key="by_reason", title="Rejects by reason",
                      columns=("reason", "rejected", "of which breach"),
                      rows=tuple((reason, count, breaches[reason])
                                 for reason, count in sorted(reasons.items()))),))


# Intercepts, wrong or short shipments, returns ---------------------------------------------


class Intercepts(NamedTuple):
    requested: int
    succeeded: int
    failed: int

    @property
    def success_rate(self) -> Decimal | None:
        return rate(self.succeeded, self.succeeded + self.failed)


def intercepts_of(jobs: Iterable[Job]) -> tuple[Intercepts, dict[str, Counter[ChangeStatus]]]:
    by_kind: dict[str, Counter[ChangeStatus]] = {}
    for job in jobs:
        for change in job.changes:
            if change.status in INTERCEPTS:
                by_kind.setdefault(change.kind.value, Counter())[change.status] += 1
    seen: Counter[ChangeStatus] = sum(by_kind.values(), Counter())
    return Intercepts(requested=sum(seen.values()), succeeded=seen[ChangeStatus.INTERCEPTED],
                      failed=seen[ChangeStatus.INTERCEPT_FAILED]), by_kind


def intercepts(jobs: Sequence[Job]) -> Section:
    total, by_kind = intercepts_of(jobs)
    return Section(key="intercepts", title="Intercepts", figures=(
        Figure(key="requested", label="Intercepts requested", value=total.requested),
        Figure(key="succeeded", label="Intercepted", value=total.succeeded),
        Figure(key="failed", label="Could not intercept", value=total.failed),
        Figure(key="success_rate", label="Intercept success rate", value=total.success_rate,
               unit="percent")),
        tables=(Table(key="by_kind", title="Intercepts by change",
                      columns=("change", "requested", "intercepted", "failed", "open"),
                      rows=tuple((kind, sum(seen.values()), seen[ChangeStatus.INTERCEPTED],
                                  seen[ChangeStatus.INTERCEPT_FAILED],
                                  seen[ChangeStatus.INTERCEPT_REQUESTED])
                                 for kind, seen in sorted(by_kind.items()))),))


class Mismatches(NamedTuple):
    shipped: int
    mismatched: int  # jobs shipped with a pack mismatch (shipped anyway)
    wrong: int  # of which with wrong or extra items
    short: int  # of which with too few

    @property
    def mismatch_rate(self) -> Decimal | None:
        return rate(self.mismatched, self.shipped)


def mismatches_of(jobs: Iterable[Job]) -> Mismatches:
    shipped = [job for job in jobs if job.work is Work.SHIPPED]
    kinds = [{d.kind for d in job.pack_mismatch} for job in shipped if job.pack_mismatch]
    return Mismatches(shipped=len(shipped), mismatched=len(kinds),
                      wrong=sum(bool(found & {"wrong", "extra"}) for found in kinds),
                      short=sum("short" in found for found in kinds))


def wrong_short(jobs: Sequence[Job], complaints: Mapping[str, int] | None) -> Section:
    """Pack mismatches shipped anyway, from the jobs; buyer complaint cases by type when the
    caller could count them (None: not counted, and the section says so)."""
    found = mismatches_of(jobs)
    return Section(key="wrong_short", title="Wrong or short shipments", figures=(
        Figure(key="shipped", label="Jobs shipped", value=found.shipped),
        Figure(key="packed_anyway", label="Shipped despite a pack mismatch",
               value=found.mismatched),
        Figure(key="wrong_items", label="With wrong or extra items", value=found.wrong),
        Figure(key="short", label="With too few items", value=found.short),
        Figure(key="mismatch_rate", label="Wrong/short rate (of jobs shipped)",
               value=found.mismatch_rate, unit="percent"),
        Figure(key="complaints", label="Buyer complaints (wrong, short, missing)",
               value=None if complaints is None else sum(complaints.values()))),
        tables=(Table(key="complaints", title="Buyer complaint cases by type",
                      columns=("case type", "cases"),
                      rows=tuple(sorted((complaints or {}).items()))),),
        notes=("Buyer complaint cases are not counted in this report yet.",)
        if complaints is None else ())


def returns_section(records: Sequence[ReturnRecord]) -> Section:
    liable = Counter(record.liability.value for record in records)
    damaged = [record for record in records if record.packaging == "damaged"]
    where = Counter(record.damage_location.value for record in damaged)
    return Section(key="returns", title="Returns and damage", figures=(
        Figure(key="returns", label="Returns registered", value=len(records)),
        Figure(key="complained", label="With a complaint about the goods",
               value=sum(record.complained for record in records)),
        Figure(key="damaged_packaging", label="Packaging damaged", value=len(damaged)),
        Figure(key="factory_liable", label="Factory liable",
               value=liable[Liability.FACTORY.value])),
        tables=(Table(key="by_liability", title="Returns by liability",
                      columns=("liability", "returns"),
                      rows=tuple((party.value, liable[party.value]) for party in Liability)),
                Table(key="damage_location", title="Damaged packaging: where the goods were "
                                                   "damaged", columns=("where", "returns"),
                      rows=tuple(sorted(where.items())))),
        notes=("Counted by the registration window day each return belongs to.",))


# Monthly only ------------------------------------------------------------------------------


SCORECARD_COLUMNS = ("factory", "jobs", "on-time rate %", "confirmation rate %",
                     "reject rate %", "wrong/short rate %", "factory-liable returns",
                     "intercept success %")


def scorecard(jobs: Sequence[Job], records: Sequence[ReturnRecord], now: datetime,
              rules: DispatchRules) -> Section:
    """The handbook's factory assessment inputs, per warehouse partner (no wrong pick, nothing
    missing, no delay; confirmation; damage it is liable for)."""
    partners = sorted({job.partner_id for job in jobs} | {r.partner_id for r in records})
    rows: list[tuple[Cell, ...]] = []
    for partner in partners:
        theirs = [job for job in jobs if job.partner_id == partner]
        rejected = sum(job.handshake is Handshake.REJECTED for job in theirs)
        liable = sum(r.partner_id == partner and r.liability is Liability.FACTORY
                     for r in records)
        rows.append((partner, len(theirs),
                     dispatch_of(dispatch_state(job, now) for job in theirs).on_time_rate,
                     answers_of(theirs, rules).confirmation_rate, rate(rejected, len(theirs)),
                     mismatches_of(theirs).mismatch_rate, liable,
                     intercepts_of(theirs)[0].success_rate))
    return Section(key="scorecard", title="Factory scorecard", tables=(
        Table(key="factories", title="Factory assessment inputs", columns=SCORECARD_COLUMNS,
              rows=tuple(rows)),))


CHANGE_STATUSES = tuple(ChangeStatus)


def cs_changes(jobs: Sequence[Job]) -> Section:
    """CS's amendment requests by kind and what became of them."""
    seen: dict[str, Counter[ChangeStatus]] = {}
    for job in jobs:
        for change in job.changes:
            seen.setdefault(change.kind.value, Counter())[change.status] += 1
    return Section(key="cs_changes", title="CS changes", figures=(
        Figure(key="changes", label="Changes requested",
               value=sum(sum(found.values()) for found in seen.values())),),
        tables=(Table(key="by_kind", title="Changes by kind and outcome",
                      columns=("change", *(status.value for status in CHANGE_STATUSES),
                               "total"),
                      rows=tuple((kind, *(found[status] for status in CHANGE_STATUSES),
                                  sum(found.values())) for kind, found in sorted(seen.items()))),))


# The report's warehouse part ---------------------------------------------------------------


def sections(period: Period, jobs: Sequence[Job], records: Sequence[ReturnRecord],
             now: datetime, rules: DispatchRules,
             complaints: Mapping[str, int] | None = None) -> tuple[Section, ...]:
    """The warehouse's sections of a report over `period`: `jobs` are those paid in it (others
    are left out here too), `records` the returns of its window days."""
    paid = [job for job in jobs if period.contains(job.paid_at or job.created_at)]
    returned = [r for r in records if period.start <= r.window.day < period.end]
    if period.kind == "daily":
        return (daily_dispatch(period.start, paid, now, rules),)
    found: tuple[Section, ...] = (
        dispatch_totals(period, paid, now), intake(paid), factory(paid, rules), rejects(paid),
        intercepts(paid), wrong_short(paid, complaints), returns_section(returned))
    if period.kind == "monthly":
        found += (scorecard(paid, returned, now, rules), cs_changes(paid))
    return found
