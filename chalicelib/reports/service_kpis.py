"""The service's KPIs for the weekly and monthly reports: delivery time per region, courier
exceptions per carrier, courier cost against tariff, cases by type and time to resolve, CS
actions per person and (monthly) the CS supervisor's score-sheet inputs. Pure: the flow
(chalicelib/flows/report_service.py) reads the parcels and cases.

Which items count where (every time an Asia/Shanghai period's bounds, `Period.contains`):
- delivery: parcels delivered in the period (handed over up to `LOOKBACK` before it), hours
  from hand-over to delivery;
- exceptions and cost: parcels handed over in the period (a courier bills by hand-over month);
- cases: opened, resolved (the resolution step's time) and open at the period's end, whatever
  the case was opened; cases opened before the lookback are known only while still open;
- actions: the steps a CS person (actor "cs <id>") took in the period; complaints are the
  cases they reported (`reported_by`), cancellations the refund tasks their cancel opened.
Hours are to one decimal; the median is the middle value (the mean of the two middle ones), the
p90 the nearest rank (the smallest value at least 90 % of the values do not exceed).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from chalicelib.cs.cases import Case, CaseStep
from chalicelib.reports.model import Chart, Figure, Period, Section, Table, rate
from chalicelib.tracking.parcels import HandedOver
from chalicelib.warehouse.regions import province_of
from chalicelib.warehouse.tariffs import Tolerance

LOOKBACK = timedelta(days=31)  # how long before a period a parcel or case it counts may start
TENTH = Decimal("0.1")
UNKNOWN = "unknown"
CS_ACTOR = "cs "  # what the CS API signs a person's steps with (chalicelib/api/cs.py)


# Numbers -----------------------------------------------------------------------------------------

def hours(start: datetime, end: datetime) -> Decimal:
    return (Decimal((end - start).total_seconds()) / 3600).quantize(TENTH)


def median(values: Sequence[Decimal]) -> Decimal | None:
    return None if not values else Decimal(statistics.median(values)).quantize(TENTH)


def p90(values: Sequence[Decimal]) -> Decimal | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def _spread(key: str, values: Sequence[Decimal]) -> tuple[Figure, Figure]:
    return (Figure(key=f"{key}_median", label="median", value=median(values), unit="hours"),
            Figure(key=f"{key}_p90", label="90th percentile", value=p90(values), unit="hours"))


def _rows_by(groups: dict[str, list[Decimal]]) -> tuple[tuple[str, int, Decimal | None,
                                                              Decimal | None], ...]:
    return tuple((name, len(values), median(values), p90(values))
                 for name, values in sorted(groups.items()))


# Delivery ---------------------------------------------------------------------------------------

def delivery(period: Period, parcels: Iterable[HandedOver]) -> Section:
    by_region: dict[str, list[Decimal]] = defaultdict(list)
    by_province: dict[str, list[Decimal]] = defaultdict(list)
    for parcel in parcels:
        if parcel.delivered_at is None or not period.contains(parcel.delivered_at):
            continue
        taken = hours(parcel.handed_over_at, parcel.delivered_at)
        by_region[parcel.region or UNKNOWN].append(taken)
        by_province[province_of(parcel.destination) or UNKNOWN].append(taken)
    every = [value for values in by_region.values() for value in values]
    columns = ("parcels", "median hours", "p90 hours")
    return Section(
        key="delivery", title="Delivery time per region",
        figures=(Figure(key="delivered", label="parcels delivered", value=len(every)),
                 *_spread("delivery_hours", every)),
        tables=(Table(key="delivery_by_region", title="Hand-over to delivery, by region",
                      columns=("region", *columns), rows=_rows_by(by_region)),
                Table(key="delivery_by_province", title="Hand-over to delivery, by province",
                      columns=("province", *columns), rows=_rows_by(by_province))),
        charts=(Chart(key="delivery_median_by_region", title="Median hours by region",
                      rows=tuple((name, (int(median(values) or 0),))
                                 for name, values in sorted(by_region.items()))),),
        notes=("Parcels delivered in the period, from hand-over to the courier's delivery "
               "scan; a parcel handed over more than 31 days earlier is not counted.",))


# Courier exceptions -----------------------------------------------------------------------------

def exceptions(period: Period, parcels: Iterable[HandedOver]) -> Section:
    shipped: Counter[str] = Counter()
    troubled: Counter[str] = Counter()
    kinds: Counter[tuple[str, str]] = Counter()
    for parcel in parcels:
        if not period.contains(parcel.handed_over_at):
            continue
        shipped[parcel.carrier_code] += 1
        if parcel.exception_kinds:
            troubled[parcel.carrier_code] += 1
        for kind in set(parcel.exception_kinds):
            kinds[(parcel.carrier_code, kind.value)] += 1
    return Section(
        key="courier_exceptions", title="Courier exceptions per carrier",
        figures=(Figure(key="parcels", label="parcels handed over", value=sum(shipped.values())),
                 Figure(key="with_exceptions", label="parcels with an exception",
                        value=sum(troubled.values())),
                 Figure(key="exception_rate", label="share with an exception",
                        value=rate(sum(troubled.values()), sum(shipped.values())),
                        unit="percent")),
        tables=(Table(key="exceptions_by_carrier", title="Parcels with exceptions, by carrier",
                      columns=("carrier", "parcels", "with exceptions", "percent"),
                      rows=tuple((carrier, count, troubled[carrier], rate(troubled[carrier], count))
                                 for carrier, count in sorted(shipped.items()))),
                Table(key="exceptions_by_kind", title="Parcels by carrier and exception kind",
                      columns=("carrier", "kind", "parcels"),
                      rows=tuple((carrier, kind, count)
                                 for (carrier, kind), count in sorted(kinds.items())))),
        charts=(Chart(key="exceptions_by_carrier", title="Parcels with an exception",
                      rows=tuple((carrier, (troubled[carrier],)) for carrier in sorted(shipped))),),
        notes=("Parcels handed over in the period, by every exception kind they had (a parcel "
               "counts once per kind); a computed stall that a later scan ended is counted in "
               "the cases, not here.",))


# Courier cost -----------------------------------------------------------------------------------

def cost(period: Period, parcels: Iterable[HandedOver], tolerance: Tolerance) -> Section:
    billed: Counter[tuple[str, str]] = Counter()
    fees: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    over: Counter[tuple[str, str]] = Counter()
    unpriced: Counter[tuple[str, str]] = Counter()
    unbilled = 0
    for parcel in parcels:
        if not period.contains(parcel.handed_over_at):
            continue
        fee = parcel.billed
        if fee is None:
            unbilled += 1
            continue
        key = (parcel.carrier_code, parcel.region or UNKNOWN)
        billed[key] += 1
        fees[key] += fee.billed
        if fee.expected is None:
            unpriced[key] += 1
            continue
        expected[key] += fee.expected
        if fee.billed > fee.expected + tolerance.allowed(fee.expected):
            over[key] += 1
    rows = tuple((carrier, region, billed[(carrier, region)], fees[(carrier, region)],
                  expected[(carrier, region)],
                  fees[(carrier, region)] - expected[(carrier, region)],
                  over[(carrier, region)], unpriced[(carrier, region)])
                 for carrier, region in sorted(billed))
    return Section(
        key="courier_cost", title="Courier cost per region against tariff",
        figures=(Figure(key="billed_parcels", label="parcels billed", value=sum(billed.values())),
                 Figure(key="billed_total", label="billed", value=sum(fees.values(), Decimal(0)),
                        unit="CNY"),
                 Figure(key="expected_total", label="tariff",
                        value=sum(expected.values(), Decimal(0)), unit="CNY"),
                 Figure(key="overcharged", label="above tariff", value=sum(over.values())),
                 Figure(key="unbilled", label="not billed yet", value=unbilled)),
        tables=(Table(key="cost_by_region", title="Billed against tariff, by courier and region",
                      columns=("carrier", "region", "parcels", "billed CNY", "tariff CNY",
                               "difference CNY", "above tariff", "no tariff"),
                      rows=rows),),
        notes=("Parcels handed over in the period that a reconciled bill charged; above "
               "tariff: beyond the tariff's tolerance (as the bill reconciliation flags). "
               "Tariff totals leave out lines with no tariff.",))


# Cases ------------------------------------------------------------------------------------------

def _step_at(case: Case, action: str) -> datetime | None:
    return next((step.at for step in case.history if step.action == action), None)


def resolved_at(case: Case) -> datetime | None:
    return None if case.is_open else _step_at(case, "resolved")


def _open_at(case: Case, moment: datetime) -> bool:
    done = resolved_at(case)
    return case.opened_at < moment and (done is None or done >= moment)


def cases(period: Period, window: Iterable[Case], older_open: Iterable[str]) -> Section:
    """`window`: the cases opened from the lookback to the period's end; `older_open`: the type
    of each case opened before that and still open."""
    opened: Counter[str] = Counter()
    resolved: Counter[str] = Counter()
    still_open: Counter[str] = Counter(older_open)
    taken: dict[str, list[Decimal]] = defaultdict(list)
    for case in window:
        if period.contains(case.opened_at):
            opened[case.type] += 1
        done = resolved_at(case)
        if done is not None and period.contains(done):
            resolved[case.type] += 1
            taken[case.type].append(hours(case.opened_at, done))
        if _open_at(case, period.end_at):
            still_open[case.type] += 1
    types = sorted(set(opened) | set(resolved) | set(still_open))
    every = [value for values in taken.values() for value in values]
    return Section(
        key="cases", title="Cases by type and time to resolve",
        figures=(Figure(key="opened", label="opened", value=sum(opened.values())),
                 Figure(key="resolved", label="resolved", value=sum(resolved.values())),
                 Figure(key="open_at_end", label="open at the end",
                        value=sum(still_open.values())),
                 *_spread("resolve_hours", every)),
        tables=(Table(key="cases_by_type", title="Cases by type",
                      columns=("type", "opened", "resolved", "open at end",
                               "median hours to resolve", "p90 hours to resolve"),
                      rows=tuple((name, opened[name], resolved[name], still_open[name],
                                  median(taken[name]), p90(taken[name])) for name in types)),),
        charts=(Chart(key="cases_by_type", title="Cases opened and resolved", kind="stacked",
                      parts=("opened", "resolved"),
                      rows=tuple((name, (opened[name], resolved[name])) for name in types)),),
        notes=("Time to resolve: from opening to resolution, for the cases resolved in the "
               "period.",))


# CS actions per person --------------------------------------------------------------------------

def person(actor: str) -> str | None:
    """The CS person who signed a step or a report; None for the system, a courier, ..."""
    return actor.removeprefix(CS_ACTOR) if actor.startswith(CS_ACTOR) else None


def _steps(case: Case, period: Period) -> Iterable[tuple[str, CaseStep]]:
    for step in case.history:
        who = person(step.actor)
        if who is not None and period.contains(step.at):
            yield who, step


def _reported(case: Case, fact: str) -> str | None:
    value = case.facts.get(fact)
    return person(value) if isinstance(value, str) else None


ACTIONS = ("acknowledged", "resolved", "note")
REPORTS = (("complaints", "reported_by"), ("cancellations", "cancelled_by"))


def actions(period: Period, window: Iterable[Case]) -> Section:
    counts: Counter[tuple[str, str]] = Counter()
    for case in window:
        for who, step in _steps(case, period):
            counts[(who, step.action)] += 1
        if period.contains(case.opened_at):
            for name, fact in REPORTS:
                who_reported = _reported(case, fact)
                if who_reported is not None:
                    counts[(who_reported, name)] += 1
    names = (*ACTIONS, *(name for name, _ in REPORTS))
    people = sorted({who for who, _ in counts})
    return Section(
        key="cs_actions", title="CS actions per person",
        figures=(Figure(key="people", label="people who acted", value=len(people)),
                 Figure(key="actions", label="actions", value=sum(counts.values()))),
        tables=(Table(key="actions_by_person", title="Actions per person",
                      columns=("person", *names, "total"),
                      rows=tuple((who, *(counts[(who, name)] for name in names),
                                  sum(counts[(who, name)] for name in names))
                                 for who in people)),),
        charts=(Chart(key="actions_by_person", title="Actions per person", kind="stacked",
                      parts=names, rows=tuple((who, tuple(counts[(who, name)] for name in names))
                                              for who in people)),),
        notes=("Steps on cases signed by a CS person in the period; complaints: buyer "
               "complaints they took; cancellations: the refund tasks their cancellations "
               "opened. Other amendments are on the orders' timelines, not counted here.",))


# The CS score sheet (monthly) -------------------------------------------------------------------

def _first_by(case: Case, action: str, who: str, period: Period) -> datetime | None:
    return next((step.at for name, step in _steps(case, period)
                 if name == who and step.action == action), None)


def score_sheet(period: Period, window: Iterable[Case]) -> Section:
    """Per person: the cases they handled (acknowledged or resolved in the period), the median
    hours from opening to their acknowledgement and to their resolution, and how many of those
    cases were reminded before anyone acknowledged them, or escalated to the manager."""
    handled: dict[str, set[str]] = defaultdict(set)
    to_ack: dict[str, list[Decimal]] = defaultdict(list)
    to_resolve: dict[str, list[Decimal]] = defaultdict(list)
    overdue: dict[str, set[str]] = defaultdict(set)
    escalated: dict[str, set[str]] = defaultdict(set)
    cases_by_id = {case.case_id: case for case in window}
    for case in cases_by_id.values():
        for who in {name for name, step in _steps(case, period)
                    if step.action in ("acknowledged", "resolved")}:
            handled[who].add(case.case_id)
            _time_to(to_ack[who], case, _first_by(case, "acknowledged", who, period))
            _time_to(to_resolve[who], case, _first_by(case, "resolved", who, period))
            if case.reminders > 0:
                overdue[who].add(case.case_id)
            if case.escalated_to_manager_at is not None:
                escalated[who].add(case.case_id)
    rows = tuple((who, len(ids), len(to_ack[who]), median(to_ack[who]), len(to_resolve[who]),
                  median(to_resolve[who]), len(overdue[who]), len(escalated[who]))
                 for who, ids in sorted(handled.items()))
    return Section(
        key="cs_score_sheet", title="CS score sheet inputs",
        tables=(Table(key="score_sheet", title="Per person, this month",
                      columns=("person", "cases handled", "acknowledged",
                               "median hours to acknowledge", "resolved",
                               "median hours to resolve", "reminded before acknowledgement",
                               "escalated to the manager"),
                      rows=rows),),
        notes=("Inputs for the CS supervisor's monthly reward/penalty sheet: hours from a "
               "case's opening to the person's acknowledgement or resolution; reminded: "
               "nobody acknowledged the case within the reminder interval.",))


def _time_to(into: list[Decimal], case: Case, at: datetime | None) -> None:
    if at is not None:
        into.append(hours(case.opened_at, at))


# All of them ------------------------------------------------------------------------------------

def service_sections(period: Period, parcels: Sequence[HandedOver], window: Sequence[Case],
                     older_open: Sequence[str], tolerance: Tolerance) -> tuple[Section, ...]:
    """The service's sections for a weekly or monthly report (none for a day)."""
    if period.kind == "daily":
        return ()
    found = [delivery(period, parcels), exceptions(period, parcels),
             cost(period, parcels, tolerance), cases(period, window, older_open),
             actions(period, window)]
    if period.kind == "monthly":
        found.append(score_sheet(period, window))
    return tuple(found)
