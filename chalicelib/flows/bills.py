"""Importing a courier's monthly bill: read it, check it against our parcels and the tariffs,
keep each parcel's actual fee, store the bill with its findings and totals (the rules are
chalicelib/warehouse/bills.py and settlement.py; the admin command line and the console call
`import_bill` and `show_bill`).

Reads, never a Scan: our parcels of each (courier, month) the bill covers from the shipments
table's `by-carrier-month` index (one paged Query each: it holds what the check needs, so
most lines are matched from it); the lines it leaves unmatched (other months, foreign
numbers, a parcel too new for the index) by key (BatchGetItem, 100 a call); the bill itself
by its key. Writes: each parcel's fee in transactions of 100, the bill's items 25 a batch.

The same file imported again is the same bill (its id is the file's hash): it is shown as
stored and nothing is written. An import cut off half-way is done again in full: every write
is keyed by the bill's content, and the bill's HEAD, written last, is what marks it imported.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from chalicelib.core.dynamodb import Action, retrying, transact
from chalicelib.tracking import parcel_store
from chalicelib.tracking.parcel_store import MonthParcel
from chalicelib.tracking.parcels import BilledFee, Parcel
from chalicelib.warehouse import bill_store
from chalicelib.warehouse.bill_formats import FORMATS, bill_format
from chalicelib.warehouse.bill_store import BillHead, BillListing, StoredBill
from chalicelib.warehouse.bills import BillError, ParsedBill, Problem, parse_bill
from chalicelib.warehouse.jobs import protocol_rules
from chalicelib.warehouse.settlement import (
    Charge,
    Key,
    OurShipment,
    Settlement,
    Total,
    periods,
    settle,
)
from chalicelib.warehouse.tariffs import TariffRules, tariff_rules

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Imported:
    bill: StoredBill
    new: bool  # False: this file was imported before, and nothing was written now
    fees_kept: int = 0  # parcels whose actual fee was written (or changed) by this import


_FEES_PER_TRANSACTION = 100  # DynamoDB's limit of items per transaction
_WRITERS = 8


def _ours(parcel: Parcel | MonthParcel) -> OurShipment:
    billed = parcel.billed
    return OurShipment(carrier_code=parcel.carrier_code, tracking_number=parcel.tracking_number,
                       order_id=parcel.order_id, region=parcel.region,
                       billed_in=billed.bill_id if billed else "",
                       billed_line=billed.line if billed else 0)


def _fee(bill_id: str, charge: Charge) -> BilledFee:
    return BilledFee(bill_id=bill_id, line=charge.line, month=charge.month,
                     weight_kg=charge.weight_kg, fee=charge.fee, surcharges=charge.surcharges,
                     billed=charge.billed, expected=charge.expected)


def _keep_fees(bill_id: str, charges: Sequence[Charge],
               known: dict[Key, BilledFee | None]) -> int:
    """Each charged parcel carries its actual fee; one already carrying it is not written."""
    actions = []
    for charge in charges:
        key = (charge.carrier_code, charge.tracking_number)
        fee = _fee(bill_id, charge)
        if known.get(key) != fee:
            actions.append(parcel_store.billed_action(*key, fee))
    chunks = [actions[start:start + _FEES_PER_TRANSACTION]
              for start in range(0, len(actions), _FEES_PER_TRANSACTION)]
    if len(chunks) <= 1:
        for chunk in chunks:
            _write_fees(chunk)
        return len(actions)
    # 150 transactions for a 15,000-line bill: a few at once (each in a copy of the caller's
    # context: its deadline and log keys), or the writes would be most of the import's time.
    with ThreadPoolExecutor(_WRITERS, thread_name_prefix="bill_fees") as pool:
        for done in [pool.submit(contextvars.copy_context().run, _write_fees, chunk)
                     for chunk in chunks]:
            done.result()  # the first failure is raised: the import is done again whole
    return len(actions)


def _write_fees(chunk: Sequence[Action]) -> None:
    # Setting a value is the same however often it is done: a conflict is simply retried.
    retrying(lambda: transact(chunk), "bill fees", reread=False)


def parse(format_name: str, filename: str, data: bytes) -> ParsedBill:
    """The bill's lines, or BillError (an unknown format is one too, naming the known ones)."""
    fmt = bill_format(format_name)
    if fmt is None:
        raise BillError([Problem(line=0, column="", message=(
            f"unknown bill format {format_name!r}; known: {', '.join(sorted(FORMATS))}"))])
    return parse_bill(fmt, filename, data)


def check(parsed: ParsedBill,
          tariffs: TariffRules) -> tuple[Settlement, dict[Key, BilledFee | None]]:
    """The bill against our parcels (reads only); also each matched parcel's fee as read."""
    bill_periods = periods(parsed.lines)
    in_period = [p for carrier, month in bill_periods
                 for p in parcel_store.in_month(carrier, month)]
    found: dict[Key, Parcel | MonthParcel] = {
        (p.carrier_code, p.tracking_number): p for p in in_period}
    others = list(dict.fromkeys(key for line in parsed.lines
                                if (key := (line.carrier_code, line.waybill)) not in found))
    found.update({(p.carrier_code, p.tracking_number): p
                  for p in parcel_store.get_many(others)})
    ours = {key: _ours(parcel) for key, parcel in found.items()}
    result = settle(parsed.lines, ours, (_ours(p) for p in in_period), tariffs,
                    protocol_rules().carriers.regions, bill_id=parsed.bill_id)
    return result, {key: parcel.billed for key, parcel in found.items()}


def import_bill(format_name: str, filename: str, data: bytes, actor: str, now: datetime,
                tariffs: TariffRules | None = None) -> Imported:
    """Import a bill (BillError if it cannot be read: nothing is written then)."""
    parsed = parse(format_name, filename, data)
    stored = bill_store.get(parsed.bill_id)
    if stored is not None:
        return Imported(bill=stored, new=False)
    result, known = check(parsed, tariffs or tariff_rules())
    kept = _keep_fees(parsed.bill_id, result.charges, known)
    counts = {kind: sum(1 for f in result.findings if f.kind == kind)
              for kind in ("overcharge", "not_ours", "duplicate", "missing")}
    head = BillHead(bill_id=parsed.bill_id, format=parsed.format, filename=filename,
                    imported_at=now, imported_by=actor, lines=len(parsed.lines),
                    periods=result.periods, counts=counts)
    bill_store.put_details(parsed.bill_id, result.findings, result.totals)
    bill_store.put_head(head)
    log.info("bill %s (%s, %d lines) imported by %s: %s", parsed.bill_id, filename,
             len(parsed.lines), actor, counts)
    findings = tuple(sorted(result.findings, key=bill_store.finding_order))
    return Imported(bill=StoredBill(head=head, findings=findings, totals=result.totals),
                    new=True, fees_kept=kept)


def show_bill(bill_id: str) -> StoredBill | None:
    return bill_store.get(bill_id)


def bills_of(carrier_code: str, limit: int = 24) -> list[BillListing]:
    """A courier's imported bills, newest month first (one Query)."""
    return bill_store.bills_of(carrier_code, limit)


def month_totals(month: str, carriers: Iterable[str]) -> list[Total]:
    """Billed against expected per courier and region for a month (YYYY-MM), over every bill
    imported for it (a bill's lines dated in other months are left out): for the monthly
    report's courier cost per region against tariff."""
    summed: dict[tuple[str, str], Total] = {}
    for carrier in carriers:
        for listing in bill_store.bills_for_month(carrier, month):
            stored = bill_store.get(listing.bill_id)
            for total in stored.totals if stored else ():
                if total.month != month or total.carrier_code != carrier.upper():
                    continue
                key = (total.carrier_code, total.region.value)
                before = summed.get(key)
                summed[key] = total if before is None else before.model_copy(update={
                    "lines": before.lines + total.lines,
                    "billed": before.billed + total.billed,
                    "expected": before.expected + total.expected,
                    "unpriced": before.unpriced + total.unpriced})
    return [summed[key] for key in sorted(summed)]
