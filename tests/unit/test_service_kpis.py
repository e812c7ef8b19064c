"""The service's KPIs (chalicelib/reports/service_kpis.py) over hand-built parcels and cases:
each figure is recomputed here from what was planted, with the period's edges in Asia/Shanghai
time (a week of Shanghai days starts at 16:00 UTC the evening before)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.cs.alerts import Severity
from chalicelib.cs.cases import Case, CaseStatus, CaseStep
from chalicelib.reports import service_kpis as kpis
from chalicelib.reports.model import Period, Section
from chalicelib.tracking.model import ExceptionKind
from chalicelib.tracking.parcels import BilledFee, HandedOver
from chalicelib.warehouse.tariffs import Tolerance

WEEK = Period(kind="weekly", start=date(2026, 11, 2), end=date(2026, 11, 9))
MONTH = Period(kind="monthly", start=date(2026, 11, 1), end=date(2026, 12, 1))
FIRST = datetime(2026, 11, 1, 16, 0, tzinfo=UTC)  # 2 Nov 00:00 in Shanghai: the week's start
AFTER = datetime(2026, 11, 8, 16, 0, tzinfo=UTC)  # 9 Nov 00:00 in Shanghai: just after it
K = ExceptionKind


def _middle(values: list[Decimal]) -> Decimal | None:
    """The median by hand: the middle of the sorted values, or the mean of the two middle."""
    if not values:
        return None
    ordered, n = sorted(values), len(values)
    mid = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return mid.quantize(Decimal("0.1"))


def _ninetieth(values: list[Decimal]) -> Decimal | None:
    """Nearest rank by counting: the smallest value with at least 90 % of values at or under."""
    for value in sorted(values):
        if 10 * sum(1 for v in values if v <= value) >= 9 * len(values):
            return value
    return None


def _hours(start: datetime, end: datetime) -> Decimal:
    return (Decimal(int((end - start).total_seconds())) / Decimal(3600)).quantize(Decimal("0.1"))


def _parcel(n: int, handed: datetime, delivered: datetime | None = None, region: str = "jzh",
            destination: str = "上海", carrier: str = "STO", kinds: tuple[K, ...] = (),
            billed: BilledFee | None = None) -> HandedOver:
    return HandedOver(carrier_code=carrier, tracking_number=f"T{n}", region=region,
                      destination=destination, handed_over_at=handed, delivered_at=delivered,
                      exception_kinds=kinds, billed=billed)


def _rows(section: Section, key: str) -> dict[Any, tuple[Any, ...]]:
    return {row[0]: row[1:] for row in section.table(key).rows}


# Delivery ---------------------------------------------------------------------------------------

def test_delivery_time_per_region_counts_parcels_delivered_in_the_shanghai_week() -> None:
    rng = random.Random(7)
    parcels: list[HandedOver] = []
    expected: dict[str, list[Decimal]] = defaultdict(list)
    by_province: dict[str, list[Decimal]] = defaultdict(list)
    places = {"jzh": ("杭州", "ZJ"), "tier12": ("Beijing", "BJ"), "remote": ("乌鲁木齐", "XJ")}
    for n in range(60):
        region = rng.choice(sorted(places))
        delivered = FIRST + timedelta(minutes=rng.randrange(-3 * 24 * 60, 10 * 24 * 60))
        handed = delivered - timedelta(minutes=rng.randrange(6 * 60, 120 * 60))
        city, province = places[region]
        parcels.append(_parcel(n, handed, delivered, region=region, destination=city))
        if FIRST <= delivered < AFTER:
            expected[region].append(_hours(handed, delivered))
            by_province[province].append(_hours(handed, delivered))
    # The edges: a minute after the start counts, the first minute of the next Monday does not.
    parcels.append(_parcel(100, FIRST - timedelta(hours=30), FIRST, region="jzh",
                           destination="苏州"))
    expected["jzh"].append(Decimal("30.0"))
    by_province["JS"].append(Decimal("30.0"))
    parcels.append(_parcel(101, AFTER - timedelta(hours=5), AFTER, region="jzh"))
    parcels.append(_parcel(102, FIRST, None, region="remote"))  # still travelling

    section = kpis.delivery(WEEK, parcels)

    every = [v for values in expected.values() for v in values]
    assert section.figure("delivered").value == len(every)
    assert section.figure("delivery_hours_median").value == _middle(every)
    assert section.figure("delivery_hours_p90").value == _ninetieth(every)
    assert _rows(section, "delivery_by_region") == {
        region: (len(values), _middle(values), _ninetieth(values))
        for region, values in expected.items()}
    assert _rows(section, "delivery_by_province") == {
        province: (len(values), _middle(values), _ninetieth(values))
        for province, values in by_province.items()}


def test_median_and_p90_of_a_known_list() -> None:
    values = [Decimal(v) for v in ("10", "20", "30", "40")]
    assert kpis.median(values) == Decimal("25.0")
    assert kpis.p90(values) == Decimal("40")
    assert kpis.p90([Decimal(v) for v in range(1, 11)]) == Decimal(9)
    assert kpis.median([]) is None and kpis.p90([]) is None


# Courier exceptions ------------------------------------------------------------------------------

def test_exceptions_per_carrier_and_kind_count_parcels_handed_over_in_the_period() -> None:
    rng = random.Random(11)
    kinds = [K.LOST, K.DAMAGED, K.REPEATED_DELIVERY_FAILURE, K.STALLED_NO_SCAN]
    parcels: list[HandedOver] = []
    shipped: Counter[str] = Counter()
    troubled: Counter[str] = Counter()
    by_kind: Counter[tuple[str, str]] = Counter()
    for n in range(80):
        carrier = rng.choice(["STO", "SF", "YTO"])
        handed = FIRST + timedelta(minutes=rng.randrange(-2 * 24 * 60, 9 * 24 * 60))
        had = tuple(rng.sample(kinds, rng.choice([0, 0, 1, 2])))
        parcels.append(_parcel(n, handed, carrier=carrier, kinds=had))
        if FIRST <= handed < AFTER:
            shipped[carrier] += 1
            troubled[carrier] += bool(had)
            for kind in had:
                by_kind[(carrier, kind.value)] += 1

    section = kpis.exceptions(WEEK, parcels)

    assert section.figure("parcels").value == sum(shipped.values())
    assert section.figure("with_exceptions").value == sum(troubled.values())
    share = Decimal(100 * sum(troubled.values())) / sum(shipped.values())
    assert section.figure("exception_rate").value == share.quantize(Decimal("0.1"))
    assert {row[0]: row[1:3] for row in section.table("exceptions_by_carrier").rows} == {
        carrier: (count, troubled[carrier]) for carrier, count in shipped.items()}
    assert {(row[0], row[1]): row[2] for row in section.table("exceptions_by_kind").rows} == \
        dict(by_kind)


# Courier cost ------------------------------------------------------------------------------------

def _fee(billed: str, expected: str | None) -> BilledFee:
    return BilledFee(bill_id="b1", line=1, month="2026-11", weight_kg=Decimal("1"),
                     fee=Decimal(billed), surcharges=Decimal(0), billed=Decimal(billed),
                     expected=None if expected is None else Decimal(expected))


def test_cost_against_tariff_per_courier_and_region_flags_beyond_the_tolerance() -> None:
    tolerance = Tolerance(amount=Decimal("0.50"), share=Decimal("0.05"))
    planted = [  # (carrier, region, billed, expected, over the tolerance?)
        ("STO", "jzh", "4.50", "4.50", False), ("STO", "jzh", "5.00", "4.50", False),
        ("STO", "jzh", "5.01", "4.50", True), ("STO", "remote", "13.10", "12.50", False),
        ("STO", "remote", "13.20", "12.50", True), ("SF", "tier12", "9.00", None, False)]
    parcels = [_parcel(n, FIRST + timedelta(days=1), region=region, carrier=carrier,
                       billed=_fee(billed, expected))
               for n, (carrier, region, billed, expected, _) in enumerate(planted)]
    parcels.append(_parcel(50, FIRST + timedelta(days=2)))  # not billed yet
    parcels.append(_parcel(51, FIRST - timedelta(minutes=1), billed=_fee("99", "4.5")))  # before

    section = kpis.cost(WEEK, parcels, tolerance)

    want: dict[tuple[str, str], list[Any]] = {}
    for carrier, region, billed, expected, over in planted:
        row = want.setdefault((carrier, region), [0, Decimal(0), Decimal(0), 0, 0])
        row[0] += 1
        row[1] += Decimal(billed)
        row[2] += Decimal(expected or 0)
        row[3] += over
        row[4] += expected is None
    got = {(r[0], r[1]): r[2:] for r in section.table("cost_by_region").rows}
    assert got == {key: (n, billed, expected, billed - expected, over, unpriced)
                   for key, (n, billed, expected, over, unpriced) in want.items()}
    assert section.figure("overcharged").value == sum(p[4] for p in planted)
    assert section.figure("billed_total").value == sum(Decimal(p[2]) for p in planted)
    assert section.figure("unbilled").value == 1


# Cases and actions --------------------------------------------------------------------------------

def _case(n: int, case_type: str, opened: datetime,
          steps: tuple[tuple[str, str, datetime], ...] = (), reminders: int = 0,
          facts: dict[str, Any] | None = None) -> Case:
    history = (CaseStep(at=opened, actor="system", action="opened"),
               *(CaseStep(at=at, actor=actor, action=action)
                 for actor, action, at in steps))
    resolved = any(action == "resolved" for _, action, _ in steps)
    return Case(case_id=f"case_{n}", type=case_type, subject=f"s{n}", severity=Severity.HIGH,
                status=CaseStatus.RESOLVED if resolved else CaseStatus.OPEN, summary="x",
                opened_at=opened, last_seen_at=opened, history=history, reminders=reminders,
                facts=facts or {})


def _planted_cases(seed: int) -> list[Case]:
    rng = random.Random(seed)
    found = []
    for n in range(120):
        opened = FIRST + timedelta(minutes=rng.randrange(-20 * 24 * 60, 8 * 24 * 60))
        steps: list[tuple[str, str, datetime]] = []
        who = rng.choice(["cs ana", "cs bo", "cs cy"])
        if rng.random() < 0.8:
            acked = opened + timedelta(minutes=rng.randrange(5, 600))
            steps.append((who, "acknowledged", acked))
            if rng.random() < 0.75:
                steps.append((rng.choice([who, "cs dee", "system"]), "resolved",
                              acked + timedelta(minutes=rng.randrange(30, 5 * 24 * 60))))
        facts = {"reported_by": who} if rng.random() < 0.2 else {}
        found.append(_case(n, rng.choice(["courier.lost", "wrong_items", "refund.due"]), opened,
                           tuple(steps), reminders=rng.choice([0, 0, 0, 2]), facts=facts))
    return found


def test_cases_opened_resolved_and_open_at_the_end_per_type() -> None:
    window = _planted_cases(3)
    older = ["courier.lost", "courier.lost", "refund.due"]

    section = kpis.cases(WEEK, window, older)

    opened: Counter[str] = Counter()
    resolved: Counter[str] = Counter()
    still_open: Counter[str] = Counter(older)
    taken: dict[str, list[Decimal]] = defaultdict(list)
    for case in window:
        done = next((s.at for s in case.history if s.action == "resolved"), None)
        opened[case.type] += FIRST <= case.opened_at < AFTER
        if done is not None and FIRST <= done < AFTER:
            resolved[case.type] += 1
            taken[case.type].append(_hours(case.opened_at, done))
        still_open[case.type] += case.opened_at < AFTER and (done is None or done >= AFTER)
    assert _rows(section, "cases_by_type") == {
        name: (opened[name], resolved[name], still_open[name], _middle(taken[name]),
               _ninetieth(taken[name])) for name in set(opened) | set(still_open)}
    assert section.figure("open_at_end").value == sum(still_open.values())
    assert section.figure("resolve_hours_median").value == _middle(
        [v for values in taken.values() for v in values])


def test_a_case_resolved_in_the_first_shanghai_minute_after_the_week_is_open_at_its_end() -> None:
    case = _case(1, "courier.lost", FIRST, (("cs ana", "resolved", AFTER),))
    section = kpis.cases(WEEK, [case], [])
    assert _rows(section, "cases_by_type") == {"courier.lost": (1, 0, 1, None, None)}
    earlier = _case(2, "courier.lost", FIRST, (("cs ana", "resolved",
                                                 AFTER - timedelta(seconds=1)),))
    assert _rows(kpis.cases(WEEK, [earlier], []), "cases_by_type")["courier.lost"][:3] == (1, 1, 0)


def test_actions_per_person_count_their_steps_and_reports_in_the_period() -> None:
    window = _planted_cases(5)
    window.append(_case(500, "refund.due", FIRST + timedelta(hours=1),
                        facts={"cancelled_by": "cs bo"}))

    section = kpis.actions(WEEK, window)

    want: Counter[tuple[str, str]] = Counter()
    for case in window:
        for step in case.history:
            if step.actor.startswith("cs ") and FIRST <= step.at < AFTER:
                want[(step.actor[3:], step.action)] += 1
        if FIRST <= case.opened_at < AFTER:
            for name, fact in (("complaints", "reported_by"), ("cancellations", "cancelled_by")):
                if str(case.facts.get(fact, "")).startswith("cs "):
                    want[(str(case.facts[fact])[3:], name)] += 1
    names = ("acknowledged", "resolved", "note", "complaints", "cancellations")
    people = {who for who, _ in want}
    assert _rows(section, "actions_by_person") == {
        who: (*(want[(who, n)] for n in names), sum(want[(who, n)] for n in names))
        for who in people}
    assert "system" not in _rows(section, "actions_by_person")


def test_score_sheet_per_person_in_the_month() -> None:
    window = _planted_cases(9)
    month_start = datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    month_end = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)

    section = kpis.score_sheet(MONTH, window)

    handled: dict[str, set[str]] = defaultdict(set)
    ack: dict[str, list[Decimal]] = defaultdict(list)
    res: dict[str, list[Decimal]] = defaultdict(list)
    reminded: Counter[str] = Counter()
    for case in window:
        seen: set[str] = set()
        for step in case.history:
            if not (step.actor.startswith("cs ") and month_start <= step.at < month_end):
                continue
            who = step.actor[3:]
            handled[who].add(case.case_id)
            (ack if step.action == "acknowledged" else res)[who].append(
                _hours(case.opened_at, step.at))
            seen.add(who)
        for who in seen:
            reminded[who] += case.reminders > 0
    assert _rows(section, "score_sheet") == {
        who: (len(ids), len(ack[who]), _middle(ack[who]), len(res[who]), _middle(res[who]),
              reminded[who], 0) for who, ids in handled.items()}


@pytest.mark.parametrize(("kind", "keys"), [
    ("daily", []),
    ("weekly", ["delivery", "courier_exceptions", "courier_cost", "cases", "cs_actions"]),
    ("monthly", ["delivery", "courier_exceptions", "courier_cost", "cases", "cs_actions",
                 "cs_score_sheet"]),
])
def test_the_sections_each_kind_of_report_carries(kind: str, keys: list[str]) -> None:
    period = Period(kind=kind, start=date(2026, 11, 1), end=date(2026, 11, 2))
    found = kpis.service_sections(period, [], [], [], Tolerance())
    assert [s.key for s in found] == keys
