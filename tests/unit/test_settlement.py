"""A courier bill checked: each kind of finding, and nothing flagged that is fine."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from chalicelib.warehouse.bills import BillLine
from chalicelib.warehouse.regions import Region
from chalicelib.warehouse.settlement import OurShipment, periods, settle
from chalicelib.warehouse.tariffs import DEFAULT_TARIFF_RULES, Tolerance

D = Decimal


def line(n: int, waybill: str, fee: str, weight: str = "1", city: str = "杭州",
         province: str = "浙江", day: date = date(2026, 11, 3), surcharges: str = "0",
         carrier: str = "STO") -> BillLine:
    return BillLine(line=n, waybill=waybill, carrier_code=carrier, shipped_on=day,
                    province=province, city=city, weight_kg=D(weight), fee=D(fee),
                    surcharges=D(surcharges))


def ours(number: str, region: str = "", carrier: str = "STO") -> OurShipment:
    return OurShipment(carrier_code=carrier, tracking_number=number, order_id=f"ord_{number}",
                       region=region)


def test_a_bill_at_or_under_tariff_flags_nothing_and_charges_every_parcel() -> None:
    lines = [line(1, "A", "4"), line(2, "B", "9.5", weight="2", city="深圳", province="广东"),
             line(3, "C", "4.40")]  # within the tolerance (0.50)
    mine = {("STO", n): ours(n) for n in "ABC"}
    result = settle(lines, mine, mine.values(), DEFAULT_TARIFF_RULES)
    assert result.findings == ()
    assert [(c.tracking_number, c.region, c.expected) for c in result.charges] == [
        ("A", Region.JZH, D("4.00")), ("B", Region.TIER12, D("10.00")), ("C", Region.JZH,
                                                                          D("4.00"))]


def test_an_overcharge_is_over_the_tariff_plus_tolerance_surcharges_included() -> None:
    lines = [line(1, "A", "4.51"), line(2, "B", "4", surcharges="1")]
    mine = {("STO", n): ours(n) for n in "AB"}
    found = settle(lines, mine, (), DEFAULT_TARIFF_RULES).findings
    assert [(f.kind, f.waybill, f.billed, f.expected) for f in found] == [
        ("overcharge", "A", D("4.51"), D("4.00")), ("overcharge", "B", D("5"), D("4.00"))]
    lenient = DEFAULT_TARIFF_RULES.model_copy(update={"surcharges_count": False})
    assert [f.waybill for f in settle(lines, mine, (), lenient).findings] == ["A"]
    wider = DEFAULT_TARIFF_RULES.model_copy(update={"tolerance": Tolerance(amount=D("1"))})
    assert settle(lines, mine, (), wider).findings == ()


def test_our_routed_region_prices_the_parcel_over_the_bills_destination() -> None:
    # The bill says Hangzhou (JZH, 4 CNY) but we routed it remote: 10 CNY is the tariff.
    lines = [line(1, "A", "10")]
    assert settle(lines, {("STO", "A"): ours("A", "remote")}, (),
                  DEFAULT_TARIFF_RULES).findings == ()
    assert settle(lines, {("STO", "A"): ours("A")}, (),
                  DEFAULT_TARIFF_RULES).findings[0].kind == "overcharge"


def test_foreign_duplicate_and_missing_waybills() -> None:
    lines = [line(1, "A", "4"), line(2, "X", "4"), line(3, "A", "4"), line(4, "X", "4")]
    mine = {("STO", "A"): ours("A")}
    period = [ours("A"), ours("M")]
    found = settle(lines, mine, period, DEFAULT_TARIFF_RULES).findings
    assert [(f.kind, f.waybill, f.line) for f in found] == [
        ("not_ours", "X", 2), ("duplicate", "A", 3), ("duplicate", "X", 4), ("missing", "M", 0)]
    assert found[1].note == "already billed on line 1" and found[3].order_id == "ord_M"


def test_the_same_number_at_another_courier_is_not_ours() -> None:
    lines = [line(1, "A", "4", carrier="YTO")]
    found = settle(lines, {("STO", "A"): ours("A")}, (), DEFAULT_TARIFF_RULES).findings
    assert [f.kind for f in found] == ["not_ours"]


def test_totals_per_courier_region_and_month() -> None:
    lines = [line(1, "A", "4"), line(2, "B", "5", weight="2"),
             line(3, "C", "12", city="乌鲁木齐", province="新疆", day=date(2026, 10, 31)),
             line(4, "D", "20", province="", city="", carrier="STO")]
    mine = {("STO", n): ours(n) for n in "ABCD"}
    totals = settle(lines, mine, (), DEFAULT_TARIFF_RULES).totals
    assert [(t.region, t.month, t.lines, t.billed, t.expected) for t in totals] == [
        (Region.JZH, "2026-11", 2, D("9"), D("9.00")),
        (Region.REMOTE, "2026-10", 1, D("12"), D("10.00")),
        (Region.REMOTE, "2026-11", 1, D("20"), D("10.00"))]  # unplaceable: remote
    assert totals[1].difference == D("2.00")


def test_the_bills_period_is_its_main_month_per_courier() -> None:
    lines = [line(1, "A", "4", day=date(2026, 10, 31)), line(2, "B", "4"), line(3, "C", "4"),
             line(4, "D", "4", carrier="SF", day=date(2026, 12, 1))]
    assert periods(lines) == (("SF", "2026-12"), ("STO", "2026-11"))


def test_a_parcel_another_bill_charged_for_is_a_duplicate_and_keeps_its_first_fee() -> None:
    earlier = ours("A").model_copy(update={"billed_in": "bill_feb", "billed_line": 7})
    result = settle([line(1, "A", "4")], {("STO", "A"): earlier}, (), DEFAULT_TARIFF_RULES,
                    bill_id="bill_mar")
    assert [(f.kind, f.note) for f in result.findings] == [
        ("duplicate", "already billed in bill_feb line 7")]
    assert result.charges == ()
    # The same bill imported again (after a cut-off import) is not a duplicate of itself.
    again = ours("A").model_copy(update={"billed_in": "bill_mar", "billed_line": 1})
    redone = settle([line(1, "A", "4")], {("STO", "A"): again}, (), DEFAULT_TARIFF_RULES,
                    bill_id="bill_mar")
    assert redone.findings == () and len(redone.charges) == 1
