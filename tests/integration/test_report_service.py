"""The service's sections of a monthly report, through the real stores on the local stack:
parcels written by the tracker's store (with a bill's fee kept on two), cases opened, acknowledged
and resolved through the case store, then `build_report` for May 2019 in Asia/Shanghai days. The
figures are recomputed here from what was planted, edges included; the reads are the Queries'
pages (no Scan). 2019: before anything another test of the shared stack writes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from chalicelib.core.dynamodb import transact
from chalicelib.cs import case_store, cases
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.flows.report_service import service
from chalicelib.flows.reports import build_report
from chalicelib.reports.model import Period, Report
from chalicelib.tracking import parcel_store
from chalicelib.tracking.model import ExceptionKind, Journey, ShipmentStatus, TrackingEvent
from chalicelib.tracking.parcels import BilledFee, Parcel
from chalicelib.tracking.watch import Watch

MAY = Period(kind="monthly", start=date(2019, 5, 1), end=date(2019, 6, 1))
START = datetime(2019, 4, 30, 16, 0, tzinfo=UTC)  # 1 May 00:00 in Shanghai
END = datetime(2019, 5, 31, 16, 0, tzinfo=UTC)  # 1 June 00:00 in Shanghai
NOW = datetime(2019, 6, 1, 2, 0, tzinfo=UTC)
K = ExceptionKind
M = timedelta(minutes=1)

# number -> (carrier, region, destination, handed over, delivered or None, courier's exceptions)
PARCELS: dict[str, tuple[str, str, str, datetime, datetime | None, tuple[ExceptionKind, ...]]] = {
    "P01": ("STO", "jzh", "杭州", START, START + timedelta(hours=20), ()),
    "P02": ("STO", "jzh", "上海", START + timedelta(days=3), START + timedelta(days=4, hours=6),
            (K.DAMAGED,)),
    "P03": ("STO", "remote", "乌鲁木齐", START + timedelta(days=10), None, (K.LOST,)),
    "P04": ("SF", "tier12", "Beijing", START + timedelta(days=12),
            START + timedelta(days=13, hours=2), ()),
    # Handed over in April (Shanghai), delivered in May: delivery yes, exceptions and cost no.
    "P05": ("SF", "tier12", "Beijing", START - M, START + timedelta(hours=30),
            (K.ADDRESS_ISSUE,)),
    # Delivered on 1 June in Shanghai (31 May in UTC): not May's delivery.
    "P06": ("STO", "jzh", "杭州", END - timedelta(days=1), END, ()),
    "P07": ("YTO", "remote", "西宁", END - M, END - M + timedelta(hours=50), ()),
}
# number -> (billed, expected): the bill's fee kept on the parcel
BILLED = {"P01": ("4.50", "4.50"), "P02": ("7.20", "4.50"), "P04": ("9.00", "9.00")}
# case -> (type, opened, steps (actor, action, at), reported_by)
CASES: dict[str, tuple[str, datetime, tuple[tuple[str, str, datetime], ...], str | None]] = {
    "c1": ("courier.lost", START + timedelta(days=1),
           (("cs ana", "acknowledged", START + timedelta(days=1, hours=1)),
            ("cs ana", "resolved", START + timedelta(days=2))), "cs bo"),
    "c2": ("courier.lost", START - timedelta(days=5),  # opened in April, resolved in May
           (("cs bo", "acknowledged", START - timedelta(days=5) + timedelta(hours=3)),
            ("cs bo", "resolved", START + timedelta(hours=4))), None),
    "c3": ("wrong_items", START + timedelta(days=20),
           (("cs ana", "acknowledged", START + timedelta(days=20, minutes=30)),), None),
    "c4": ("wrong_items", END - timedelta(days=1),  # resolved in the first minute of June
           (("cs bo", "resolved", END),), "cs ana"),
    "c5": ("refund.due", END, (), None),  # opened on 1 June in Shanghai: not May's
}


def _parcel(number: str) -> Parcel:
    carrier, region, destination, handed, delivered, kinds = PARCELS[number]
    events = tuple(TrackingEvent(provider="kuaidi100", carrier_code=carrier,
                                 tracking_number=number, occurred_at=handed + timedelta(hours=2),
                                 status=ShipmentStatus.IN_TRANSIT, exceptions=(kind,),
                                 raw_code=kind.value) for kind in kinds)
    journey = Journey(carrier_code=carrier, tracking_number=number, handed_over_at=handed,
                      events=events, delivered_at=delivered,
                      status=ShipmentStatus.DELIVERED if delivered else ShipmentStatus.IN_TRANSIT)
    return Parcel(carrier_code=carrier, tracking_number=number, provider="kuaidi100",
                  order_id=f"ord_r{number}", order_name=f"#R{number}", marketplace="shopify",
                  partner_id="factory-1", job_id=f"job_r{number}", shipment_id="s1",
                  destination=destination, region=region, started_at=handed, shipment=journey,
                  watch=Watch(provider="kuaidi100", can_query=True))


def _plant_parcels() -> None:
    missing = [n for n in PARCELS if parcel_store.get(PARCELS[n][0], n) is None]
    if not missing:
        return
    transact([parcel_store.put(_parcel(n), None) for n in missing])
    for number, (billed, expected) in BILLED.items():
        fee = BilledFee(bill_id="sto-2019-05", line=1, month="2019-05", weight_kg=Decimal(1),
                        fee=Decimal(billed), surcharges=Decimal(0), billed=Decimal(billed),
                        expected=Decimal(expected))
        transact([parcel_store.billed_action(PARCELS[number][0], number, fee)])


def _plant_cases() -> None:
    for name, (case_type, opened, steps, reported_by) in CASES.items():
        facts = {"reported_by": reported_by} if reported_by else {}
        recorded = case_store.record(Alert(kind=case_type, severity=Severity.HIGH,
                                           subject=f"report:{name}", summary=name, at=opened,
                                           facts=facts))
        if recorded.outcome != "opened" or recorded.case is None:
            continue  # planted by an earlier test of this session
        for actor, action, at in steps:
            def step(case: cases.Case, actor: str = actor, action: str = action,
                     at: datetime = at) -> cases.Case:
                if action == "acknowledged":
                    return cases.acknowledge(case, actor, "", at)
                return cases.resolve(case, actor, "", at)
            case_store.change(recorded.case.case_id, step, at)


@pytest.fixture
def report(stack: dict[str, str]) -> Report:
    _plant_parcels()
    _plant_cases()
    return build_report(MAY, NOW)


def test_delivery_exceptions_and_cost_of_mays_parcels(report: Report) -> None:
    delivered = {n: p for n, p in PARCELS.items() if p[4] is not None and START <= p[4] < END}
    assert sorted(delivered) == ["P01", "P02", "P04", "P05"]  # the plan, checked
    section = report.section("delivery")
    assert section.figure("delivered").value == len(delivered)
    by_region: dict[str, list[Decimal]] = {}
    for _, region, _, handed, done, _ in delivered.values():
        assert done is not None
        by_region.setdefault(region, []).append(
            Decimal((done - handed).total_seconds() / 3600).quantize(Decimal("0.1")))
    rows = {row[0]: row[1:] for row in section.table("delivery_by_region").rows}
    assert {region: row[0] for region, row in rows.items()} == {
        region: len(values) for region, values in by_region.items()}
    assert rows["jzh"][1] == (sum(by_region["jzh"], Decimal(0)) / 2).quantize(Decimal("0.1"))

    in_may = {n: p for n, p in PARCELS.items() if START <= p[3] < END}
    exceptions = report.section("courier_exceptions")
    assert exceptions.figure("parcels").value == len(in_may)
    assert exceptions.figure("with_exceptions").value == sum(1 for p in in_may.values() if p[5])
    kinds = Counter((p[0], k.value) for p in in_may.values() for k in p[5])
    assert {(r[0], r[1]): r[2] for r in exceptions.table("exceptions_by_kind").rows} == \
        dict(kinds)

    cost = report.section("courier_cost")
    billed = {n: BILLED[n] for n in in_may if n in BILLED}
    assert cost.figure("billed_parcels").value == len(billed)
    assert cost.figure("billed_total").value == sum(Decimal(b) for b, _ in billed.values())
    assert cost.figure("expected_total").value == sum(Decimal(e) for _, e in billed.values())
    assert cost.figure("overcharged").value == 1  # P02: 7.20 against 4.50
    assert cost.figure("unbilled").value == len(in_may) - len(billed)


def test_cases_and_actions_of_may(report: Report) -> None:
    def resolved(name: str) -> datetime | None:
        return next((at for _, action, at in CASES[name][2] if action == "resolved"), None)

    section = report.section("cases")
    opened = Counter(c[0] for c in CASES.values() if START <= c[1] < END)
    done = Counter(CASES[n][0] for n in CASES if (r := resolved(n)) and START <= r < END)
    still = Counter(CASES[n][0] for n in CASES
                    if CASES[n][1] < END and ((r := resolved(n)) is None or r >= END))
    rows = {row[0]: row[1:4] for row in section.table("cases_by_type").rows}
    assert rows == {t: (opened[t], done[t], still[t]) for t in set(opened) | set(done) | set(still)}

    actions: Counter[tuple[str, str]] = Counter()
    for _, opened_at, steps, reported_by in CASES.values():
        for actor, action, at in steps:
            if START <= at < END:
                actions[(actor[3:], action)] += 1
        if reported_by and START <= opened_at < END:
            actions[(reported_by[3:], "complaints")] += 1
    table = report.section("cs_actions").table("actions_by_person")
    got = {(row[0], name): value for row in table.rows
           for name, value in zip(table.columns[1:-1], row[1:-1], strict=True) if value}
    assert got == dict(actions)
    assert "cs_score_sheet" in [s.key for s in report.sections]


def test_the_reads_are_one_page_per_month_queried(report: Report) -> None:
    # Parcels and cases: March (the lookback), April and May each; the still-open cases: one.
    found = service(MAY, NOW)
    assert found.reads == 3 + 3 + 1
    assert report.reads >= found.reads  # the warehouse's sections read theirs beside
