"""A courier bill checked against our shipments and the tariffs (每月快递费用对账结算). Pure: the
flow (chalicelib/flows/bills.py) reads the shipments and stores the outcome.

Each line is matched to our parcel by (courier, waybill number) and priced by the tariff
(chalicelib/warehouse/tariffs.py) for the destination's region and the billed weight: our own
record of the region when the parcel has one (the region its job was routed for), else the
bill's destination. Findings:
- overcharge: billed (fee, plus surcharges unless the rules say otherwise) above the tariff by
  more than the tolerance;
- not_ours: a waybill we have no parcel for;
- duplicate: a waybill billed again in the same bill (every later line; the first is matched),
  or a parcel another bill already charged for (a month billed twice, or a line carried over);
- missing: our parcel of a courier and month the bill covers that the bill does not list (the
  bill's month is the month most of its lines were sent in, so a few lines from the days
  around the turn of the month do not pull in a whole other month).
Nothing else is flagged: a line at or under the tariff is fine (couriers discount with volume).
Totals are per courier, region and month, billed against expected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chalicelib.orders.order import Address
from chalicelib.warehouse.bills import BillLine
from chalicelib.warehouse.regions import DEFAULT_REGION_RULES, Region, RegionRules, region_of
from chalicelib.warehouse.tariffs import TariffRules

FindingKind = Literal["overcharge", "not_ours", "duplicate", "missing"]
Key = tuple[str, str]  # (carrier code, waybill number)


class OurShipment(BaseModel):
    """What the check needs of one of our parcels."""

    model_config = ConfigDict(frozen=True)

    carrier_code: str
    tracking_number: str
    order_id: str
    region: str = ""  # as routed ("" for parcels tracked before the region was kept)
    billed_in: str = ""  # the bill that already charged for it ("" if none)
    billed_line: int = 0


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: FindingKind
    carrier_code: str
    waybill: str
    line: int = 0  # the bill's line (0: missing from the bill)
    order_id: str = ""
    billed: Decimal | None = None
    expected: Decimal | None = None
    note: str = ""

    @property
    def key(self) -> str:
        """Unique within a bill: a finding stored twice is one item."""
        return f"{self.kind}#{self.carrier_code}#{self.waybill}#{self.line:06d}"


class Charge(BaseModel):
    """What the courier charged for one of our parcels (kept on the parcel)."""

    model_config = ConfigDict(frozen=True)

    carrier_code: str
    tracking_number: str
    line: int
    month: str
    region: Region
    weight_kg: Decimal
    fee: Decimal
    surcharges: Decimal
    billed: Decimal
    expected: Decimal | None


class Total(BaseModel):
    model_config = ConfigDict(frozen=True)

    carrier_code: str
    region: Region
    month: str
    lines: int
    billed: Decimal
    expected: Decimal  # of the priced lines
    unpriced: int  # lines without a tariff (international)

    @property
    def difference(self) -> Decimal:
        return self.billed - self.expected


class Settlement(BaseModel):
    model_config = ConfigDict(frozen=True)

    periods: tuple[Key, ...]  # (carrier, month) the bill covers: where missing parcels are looked
    findings: tuple[Finding, ...]
    charges: tuple[Charge, ...]
    totals: tuple[Total, ...]


def month_of(line: BillLine) -> str:
    return line.shipped_on.strftime("%Y-%m")


def periods(lines: Sequence[BillLine]) -> tuple[Key, ...]:
    """(courier, month) the bill covers: per courier, the month most of its lines fall in."""
    per_carrier: dict[str, Counter[str]] = {}
    for line in lines:
        per_carrier.setdefault(line.carrier_code, Counter())[month_of(line)] += 1
    return tuple(sorted((carrier, months.most_common(1)[0][0])
                        for carrier, months in per_carrier.items()))


def _region(line: BillLine, ours: OurShipment | None, rules: RegionRules) -> Region:
    if ours is not None and ours.region in set(Region):
        return Region(ours.region)
    return region_of(Address(province=line.province, city=line.city, country_code="CN"), rules)


def _billed(line: BillLine, tariffs: TariffRules) -> Decimal:
    return line.total if tariffs.surcharges_count else line.fee


class _Sums:
    def __init__(self) -> None:
        self.lines: Counter[tuple[str, Region, str]] = Counter()
        self.unpriced: Counter[tuple[str, Region, str]] = Counter()
        self.billed: dict[tuple[str, Region, str], Decimal] = {}
        self.expected: dict[tuple[str, Region, str], Decimal] = {}

    def add(self, key: tuple[str, Region, str], billed: Decimal,
            expected: Decimal | None) -> None:
        self.lines[key] += 1
        self.billed[key] = self.billed.get(key, Decimal(0)) + billed
        if expected is None:
            self.unpriced[key] += 1
        else:
            self.expected[key] = self.expected.get(key, Decimal(0)) + expected

    def totals(self) -> tuple[Total, ...]:
        return tuple(Total(carrier_code=c, region=r, month=m, lines=self.lines[(c, r, m)],
                           billed=self.billed[(c, r, m)],
                           expected=self.expected.get((c, r, m), Decimal(0)),
                           unpriced=self.unpriced[(c, r, m)])
                     for c, r, m in sorted(self.lines))


def _overcharge(line: BillLine, ours: OurShipment, billed: Decimal, expected: Decimal,
                tariffs: TariffRules) -> Finding | None:
    allowed = tariffs.tolerance.allowed(expected)
    if billed <= expected + allowed:
        return None
    return Finding(kind="overcharge", carrier_code=line.carrier_code, waybill=line.waybill,
                   line=line.line, order_id=ours.order_id, billed=billed, expected=expected,
                   note=f"{billed - expected} over the tariff for {line.weight_kg} kg "
                        f"(tolerance {allowed})")


def _billed_elsewhere(line: BillLine, mine: OurShipment, billed: Decimal,
                     bill_id: str) -> Finding | None:
    if not mine.billed_in or mine.billed_in == bill_id:
        return None
    return Finding(kind="duplicate", carrier_code=line.carrier_code, waybill=line.waybill,
                   line=line.line, billed=billed, order_id=mine.order_id,
                   note=f"already billed in {mine.billed_in} line {mine.billed_line}")


def settle(lines: Sequence[BillLine], ours: Mapping[Key, OurShipment],
           in_period: Iterable[OurShipment], tariffs: TariffRules,
           regions: RegionRules = DEFAULT_REGION_RULES, bill_id: str = "") -> Settlement:
    """The bill (`bill_id`) checked: `ours` are our parcels among the bill's waybills,
    `in_period` our parcels of the bill's (courier, month) periods (see `periods`)."""
    findings: list[Finding] = []
    charges: list[Charge] = []
    sums = _Sums()
    seen: dict[Key, int] = {}
    for line in lines:
        key = (line.carrier_code, line.waybill)
        mine = ours.get(key)
        region = _region(line, mine, regions)
        billed = _billed(line, tariffs)
        expected = tariffs.price(line.carrier_code, region, line.weight_kg)
        sums.add((line.carrier_code, region, month_of(line)), billed, expected)
        if key in seen:
            findings.append(Finding(kind="duplicate", carrier_code=line.carrier_code,
                                    waybill=line.waybill, line=line.line, billed=billed,
                                    order_id=mine.order_id if mine else "",
                                    note=f"already billed on line {seen[key]}"))
            continue
        seen[key] = line.line
        if mine is None:
            findings.append(Finding(kind="not_ours", carrier_code=line.carrier_code,
                                    waybill=line.waybill, line=line.line, billed=billed,
                                    expected=expected, note="no parcel of ours has this number"))
            continue
        elsewhere = _billed_elsewhere(line, mine, billed, bill_id)
        if elsewhere is not None:
            findings.append(elsewhere)  # the parcel keeps the fee it was first charged
            continue
        charges.append(Charge(
            carrier_code=line.carrier_code, tracking_number=line.waybill, line=line.line,
            month=month_of(line), region=region, weight_kg=line.weight_kg, fee=line.fee,
            surcharges=line.surcharges, billed=billed, expected=expected))
        over = None if expected is None else _overcharge(line, mine, billed, expected, tariffs)
        if over is not None:
            findings.append(over)
    for parcel in sorted(in_period, key=lambda p: (p.carrier_code, p.tracking_number)):
        if (parcel.carrier_code, parcel.tracking_number) not in seen:
            findings.append(Finding(kind="missing", carrier_code=parcel.carrier_code,
                                    waybill=parcel.tracking_number, order_id=parcel.order_id,
                                    note="our parcel of this month is not on the bill"))
    return Settlement(periods=periods(lines), findings=tuple(findings), charges=tuple(charges),
                      totals=sums.totals())
