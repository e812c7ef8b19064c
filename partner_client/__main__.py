"""Command line for the warehouse job API: `python -m partner_client --api URL --key KEY CMD`.

`--api` and `--key` may come from the environment (`WAREHOUSE_API`, `WAREHOUSE_KEY`), which
keeps the key out of the shell history. Exit status: 0 done, 1 the server said no, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from partner_client.client import (
    ChangeEntry,
    Job,
    Outcome,
    Package,
    PackedItem,
    WarehouseClient,
    WarehouseError,
    Wave,
    new_shipment_id,
)
from partner_client.factory import STAGES, SimulatedFactory

DEFAULT_STATE = Path.home() / ".partner_client_state.json"

Command = Callable[[WarehouseClient, argparse.Namespace], int]


# Tables -------------------------------------------------------------------------------------

def _width(text: str) -> int:
    """Columns on a terminal: Chinese titles and names take two per character."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * (width - _width(text))
    return gap + text if right else text + gap


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table; numeric columns are right-aligned."""
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([_width(h)] + [_width(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(cells) and all(r[i].isdigit() or not r[i] for r in cells)
               for i in range(len(headers))]
    lines = ["  ".join(_pad(h, w, n) for h, w, n in zip(headers, widths, numeric, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(_pad(c, w, n) for c, w, n in zip(row, widths, numeric, strict=True))
              for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def render_wave(wave: Wave) -> str:
    """Batch: one pick list over all orders, then the sort list to split it per order.
    By order: the sort list is the pick list, one walk per order."""
    pick_rows = [(p.get("location") or "?", p["sku"], p.get("title", ""), p.get("variant", ""),
                  p["quantity"]) for p in wave.get("pick_list") or []]
    sort_rows = _sort_rows(wave)
    sort_headers = ["SLOT", "ORDER", "JOB", "SKU", "QTY", "LOCATION"]
    head = f"wave {wave['wave_id']}: {len(wave['job_ids'])} jobs printed"
    if wave["method"] != "batch":
        return "\n".join([head + ", pick-by-order", "", "PICK BY ORDER (one walk per order)",
                          render_table(sort_headers, sort_rows)])
    return "\n".join([
        head + ", batch picking", "", "PICK LIST",
        render_table(["LOCATION", "SKU", "TITLE", "VARIANT", "QTY"], pick_rows),
        "", "SORT LIST (put each order's items in its slot)",
        render_table(sort_headers, sort_rows),
    ])


def _sort_rows(wave: Wave) -> list[tuple[object, ...]]:
    sort_rows: list[tuple[object, ...]] = []
    for slot in wave.get("sort_list") or []:
        for i, line in enumerate(slot.get("lines") or []):
            head = (slot["slot"], slot.get("order_name", ""), slot["job_id"]) if i == 0 \
                else ("", "", "")
            sort_rows.append((*head, line["sku"], line["quantity"], line.get("location") or "?"))
    return sort_rows


def _job_line(job: Job) -> str:
    return f"{job['job_id']}  {job.get('order_name', '')}  handshake={job.get('handshake')}  " \
           f"work={job.get('work')}"


# Commands -----------------------------------------------------------------------------------

def cmd_poll(client: WarehouseClient, args: argparse.Namespace) -> int:
    claim = client.claim(args.max, lease_seconds=args.lease_seconds, wait_seconds=args.wait)
    lease = claim.get("lease_id")
    if not claim.get("jobs") or not lease:
        print("no offers")
        return 0
    rows, failed = [], 0
    for job in claim["jobs"]:
        try:
            accepted = client.accept(job["job_id"], lease)
        except WarehouseError as exc:
            failed += 1
            print(f"{job['job_id']}: not accepted: {exc}", file=sys.stderr)
            continue
        choice = accepted.get("carrier")
        carrier = choice["carrier_code"] if choice else ""
        items = sum(line["quantity"] for line in accepted.get("lines") or [])
        rows.append((accepted["job_id"], accepted.get("order_name", ""), items, carrier,
                     accepted.get("ship_by") or ""))
    print(render_table(["JOB", "ORDER", "ITEMS", "CARRIER", "SHIP BY"], rows))
    return 1 if failed else 0


def cmd_wave(client: WarehouseClient, args: argparse.Namespace) -> int:
    wave = client.create_wave(args.job_ids, "by_order" if args.by_order else "batch")
    print(render_wave(wave))
    return 0


def cmd_pack(client: WarehouseClient, args: argparse.Namespace) -> int:
    items: list[PackedItem] = []
    for spec in args.item or []:
        sku, _, quantity = spec.rpartition("=")
        if not sku or not quantity.isdigit():
            print(f"--item {spec!r}: expected SKU=QUANTITY", file=sys.stderr)
            return 2
        items.append({"sku": sku, "quantity": int(quantity)})
    print(_job_line(client.pack(args.job_id, args.weight_grams, args.packages,
                                packages=[items] if items else (),
                                ship_anyway_reason=args.ship_anyway or "")))
    return 0


def cmd_ship(client: WarehouseClient, args: argparse.Namespace) -> int:
    shipment_id = args.shipment_id or new_shipment_id()
    # Shown first: if the answer is lost, re-run with --shipment-id to report the same parcel.
    print(f"shipment {shipment_id}", file=sys.stderr)
    packages: list[Package] = [{"carrier_code": args.carrier, "tracking_number": number}
                               for number in args.tracking]
    job = client.ship(args.job_id, packages, shipment_id=shipment_id, final=not args.partial)
    print(_job_line(job))
    return 0


def cmd_changes(client: WarehouseClient, args: argparse.Namespace) -> int:
    state = _load_state(args.state)
    saved = state.setdefault(args.api, {})
    cursor = None if args.reset else saved.get("changes_cursor")
    entries: list[ChangeEntry] = []
    while True:
        try:
            page = client.changes(cursor, limit=args.limit)
        except WarehouseError as exc:
            if exc.error == "invalid_cursor":
                exc.message += " (the server does not know the saved cursor: use --reset)"
            raise
        entries += page.get("entries") or []
        cursor = page.get("next_cursor") or cursor
        if len(page.get("entries") or []) < args.limit:
            break
    rows = [(e.get("at", ""), e["type"], e["job_id"], *_change_cells(e)) for e in entries]
    print(render_table(["AT", "TYPE", "JOB", "CHANGE", "KIND", "STATUS"], rows)
          if rows else "no new changes")
    saved["changes_cursor"] = cursor
    _save_state(args.state, state)
    return 0


def _change_cells(entry: ChangeEntry) -> tuple[str, str, str]:
    change = entry.get("change")
    if not change:
        return ("", "", "")
    return (change["change_id"], change.get("kind", ""), change.get("status", ""))


def cmd_resolve(client: WarehouseClient, args: argparse.Namespace) -> int:
    outcome: Outcome = "intercepted" if args.intercepted else "failed"
    job = client.resolve_change(args.job_id, args.change_id, outcome, reprint=args.reprint,
                                note=args.note)
    print(_job_line(job))
    return 0


def cmd_show(client: WarehouseClient, args: argparse.Namespace) -> int:
    print(json.dumps(client.get_job(args.job_id), indent=2, ensure_ascii=False))
    return 0


def cmd_simulate(client: WarehouseClient, args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    factory = SimulatedFactory(client, step_seconds=dict(args.step or []),
                               wave_size=args.wave_size,
                               method="by_order" if args.by_order else "batch",
                               intercept_failure_rate=args.fail_rate)
    stop = threading.Event()
    try:
        factory.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()
    return 0


# State file ---------------------------------------------------------------------------------

def _load_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(path: Path, state: dict[str, dict[str, Any]]) -> None:
    # Write then rename, so an interrupted run never leaves half a cursor behind.
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


# Parsing ------------------------------------------------------------------------------------

def _stage_seconds(text: str) -> tuple[str, float]:
    stage, _, seconds = text.partition("=")
    if stage not in STAGES:
        raise argparse.ArgumentTypeError(f"stage must be one of {', '.join(STAGES)}")
    try:
        return stage, float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError("use STAGE=SECONDS, e.g. print=2") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m partner_client",
                                     description="Warehouse job API client for the factory.")
    parser.add_argument("--api", default=os.environ.get("WAREHOUSE_API"),
                        help="API root, e.g. http://127.0.0.1:8000 (env WAREHOUSE_API)")
    parser.add_argument("--key", default=os.environ.get("WAREHOUSE_KEY"),
                        help="partner API key (env WAREHOUSE_KEY)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    sub = parser.add_subparsers(dest="command", required=True)

    poll = sub.add_parser("poll", help="claim and accept up to N offers")
    poll.add_argument("--max", type=int, default=10, help="offers to claim (1-100)")
    poll.add_argument("--lease-seconds", type=int, default=None)
    poll.add_argument("--wait", type=int, default=0, help="long-poll up to this many s (0-20)")
    poll.set_defaults(run=cmd_poll)

    wave = sub.add_parser("wave", help="print a wave; show its pick and sort lists")
    wave.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    wave.add_argument("--by-order", action="store_true", help="pick by order, not in batch")
    wave.set_defaults(run=cmd_wave)

    pack = sub.add_parser("pack", help="report a job packed")
    pack.add_argument("job_id", metavar="JOB_ID")
    pack.add_argument("--weight-grams", type=int, required=True)
    pack.add_argument("--packages", type=int, default=1)
    pack.add_argument("--item", action="append", metavar="SKU=QUANTITY",
                      help="what the (one) package holds, checked against the job; repeat")
    pack.add_argument("--ship-anyway", metavar="REASON",
                      help="ship a package that does not match the job, saying why")
    pack.set_defaults(run=cmd_pack)

    ship = sub.add_parser("ship", help="report a shipment (one package per --tracking)")
    ship.add_argument("job_id", metavar="JOB_ID")
    ship.add_argument("--carrier", required=True, help="carrier code, e.g. STO, SF, YTO")
    ship.add_argument("--tracking", action="append", required=True, metavar="NUMBER")
    ship.add_argument("--partial", action="store_true", help="more shipments will follow")
    ship.add_argument("--shipment-id", help="repeat an earlier attempt (same parcel)")
    ship.set_defaults(run=cmd_ship)

    changes = sub.add_parser("changes", help="show new entries of the change feed")
    changes.add_argument("--reset", action="store_true", help="start again from the beginning")
    changes.add_argument("--limit", type=int, default=100)
    changes.add_argument("--state", type=Path, default=DEFAULT_STATE,
                         help=f"where the cursor is kept (default {DEFAULT_STATE})")
    changes.set_defaults(run=cmd_changes)

    resolve = sub.add_parser("resolve", help="answer an intercept request")
    resolve.add_argument("job_id", metavar="JOB_ID")
    resolve.add_argument("change_id", metavar="CHANGE_ID")
    outcome = resolve.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--intercepted", action="store_true")
    outcome.add_argument("--failed", action="store_true")
    resolve.add_argument("--reprint", action="store_true", help="the label must be reprinted")
    resolve.add_argument("--note")
    resolve.set_defaults(run=cmd_resolve)

    show = sub.add_parser("show", help="print one job as JSON")
    show.add_argument("job_id", metavar="JOB_ID")
    show.set_defaults(run=cmd_show)

    simulate = sub.add_parser("simulate", help="run the simulated factory until Ctrl-C")
    simulate.add_argument("--wave-size", type=int, default=20)
    simulate.add_argument("--by-order", action="store_true")
    simulate.add_argument("--fail-rate", type=float, default=0.1,
                          help="fraction of intercepts that fail")
    simulate.add_argument("--step", type=_stage_seconds, action="append",
                          metavar="STAGE=SECONDS", help="e.g. --step print=2 (repeatable)")
    simulate.set_defaults(run=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.api or not args.key:
        parser.error("--api and --key are required (or set WAREHOUSE_API and WAREHOUSE_KEY)")
    client = WarehouseClient(args.api, args.key, timeout=args.timeout)
    run: Command = args.run
    try:
        return run(client, args)
    except WarehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.details:
            print(json.dumps(exc.details, indent=2, ensure_ascii=False), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
