"""Couriers' monthly bills on the command line (the logic is chalicelib/flows/bills.py; this
only reads arguments and prints).

    python -m chalicelib.admin --stage local bill import STO bill.csv [--by NAME]
    python -m chalicelib.admin --stage local bill import KUAIDI100 bill.xlsx
    python -m chalicelib.admin --stage local bill show BILL_ID
    python -m chalicelib.admin --stage local bill list STO

`import` checks the bill against our parcels and the tariffs (TARIFF_RULES_JSON), keeps each
parcel's actual fee, stores the bill and prints its findings and totals; the same file
imported again changes nothing and prints the bill as stored. A file that cannot be read is
refused with every problem, by line and column (exit status 1, nothing written).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from chalicelib.admin import connection
from chalicelib.core.clock import utcnow
from chalicelib.flows import bills
from chalicelib.warehouse import bill_store
from chalicelib.warehouse.bill_formats import FORMATS
from chalicelib.warehouse.bill_store import StoredBill
from chalicelib.warehouse.bills import BillError

COMMAND = "bill"


def run(argv: list[str] | None) -> bool:
    """Run `argv` if it is a bill command (False: it is not; the caller parses it)."""
    known = connection.command_word(argv)
    if known.command != COMMAND:
        return False
    args = _parser().parse_args(known.rest)
    connection.connect(known.stage)
    connection.stage_environment(known.stage)
    if args.action == "import":
        _import(args)
    elif args.action == "show":
        _show(args.bill_id)
    else:
        _list(args.carrier)
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.admin [--stage STAGE] bill",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True)
    imports = actions.add_parser("import", help="check a courier's bill and store it")
    imports.add_argument("format", type=str.upper, choices=sorted(FORMATS),
                         help="whose columns the bill is in (a courier, or an aggregator)")
    imports.add_argument("path", type=Path, help="the bill, .csv or .xlsx")
    imports.add_argument("--by", default=None, help="who imports it (default: your login)")
    show = actions.add_parser("show", help="a stored bill's findings and totals")
    show.add_argument("bill_id")
    listing = actions.add_parser("list", help="a courier's bills, newest month first")
    listing.add_argument("carrier", type=str.upper)
    return parser


def _import(args: argparse.Namespace) -> None:
    try:
        data = args.path.read_bytes()
    except OSError as exc:
        sys.exit(f"cannot read {args.path}: {exc.strerror}")
    try:
        done = bills.import_bill(args.format, args.path.name, data,
                                 args.by or getpass.getuser(), utcnow())
    except BillError as exc:
        lines = [f"{args.path.name}: refused, nothing imported ({len(exc.problems)} problems)"]
        sys.exit("\n".join([*lines, *(f"  {p}" for p in exc.problems)]))
    if not done.new:
        print(f"already imported on {done.bill.head.imported_at:%Y-%m-%d %H:%M} UTC by "
              f"{done.bill.head.imported_by}: nothing changed")
    else:
        print(f"imported; actual fee kept on {done.fees_kept} parcels")
    _print(done.bill)


def _show(bill_id: str) -> None:
    stored = bills.show_bill(bill_id)
    if stored is None:
        sys.exit(f"no bill {bill_id}")
    _print(stored)


def _list(carrier: str) -> None:
    for listing in bill_store.bills_of(carrier):
        print(f"{listing.month}  {listing.bill_id}  {listing.filename}  "
              f"imported {listing.imported_at:%Y-%m-%d %H:%M}")


def _print(bill: StoredBill) -> None:
    head = bill.head
    periods = ", ".join(f"{carrier} {month}" for carrier, month in head.periods)
    print(f"bill {head.bill_id}  {head.format}  {head.filename}  {head.lines} lines  ({periods})")
    counts = ", ".join(f"{kind} {count}" for kind, count in head.counts.items())
    print(f"findings: {counts}")
    for f in bill.findings:
        where = f"line {f.line}" if f.line else "not billed"
        money = "" if f.billed is None else f"  billed {f.billed}"
        money += "" if f.expected is None else f"  tariff {f.expected}"
        order = f"  {f.order_id}" if f.order_id else ""
        print(f"  {f.kind:<10} {f.carrier_code} {f.waybill:<20} {where:<10}{money}{order}"
              f"  {f.note}")
    print("totals (CNY):")
    print(f"  {'courier':<8}{'month':<9}{'region':<8}{'lines':>6}{'billed':>11}"
          f"{'expected':>11}{'diff':>10}")
    for t in bill.totals:
        print(f"  {t.carrier_code:<8}{t.month:<9}{t.region.value:<8}{t.lines:>6}{t.billed:>11}"
              f"{t.expected:>11}{t.difference:>10}")
