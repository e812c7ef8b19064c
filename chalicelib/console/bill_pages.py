"""The console's courier-bill pages: the bills imported, one bill's totals per courier, month
and region against the tariff and its flagged lines, and the import form (admins only: an
import writes each parcel's actual fee). The work is chalicelib/flows/bills.py's, the same the
admin command line calls; a file that cannot be read is refused whole, and its problems are
shown by line and column as the bills code names them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

from chalice.app import Response

from chalicelib.access.keys import Role
from chalicelib.console.web import Visit, form_value, href
from chalicelib.core.clock import utcnow
from chalicelib.core.errors import ApiError, NotFound
from chalicelib.warehouse.bill_formats import FORMATS
from chalicelib.warehouse.carriers import Carrier

FINDINGS_PAGE = 100  # flagged lines a page shows (a bad month can flag thousands)
LISTED_PER_CARRIER = 24  # two years of monthly bills
FINDING_KINDS = ("overcharge", "not_ours", "duplicate", "missing")
SHOWN_PROBLEMS = 200  # of a refused file's problems; the count says how many more


def can_import(current: Visit) -> bool:
    return current.session is not None and current.session.can(Role.ADMIN)


def bills(current: Visit, *, status: int = 200, problems: tuple[Any, ...] = (),
          refused: str = "") -> Response:
    """The bills imported (of one courier, or of each), newest month first, and the form."""
    carrier = current.query.get("carrier", "").upper()
    if carrier and carrier not in {c.value for c in Carrier}:
        raise ApiError(400, "invalid_carrier", f"carrier is one of {', '.join(Carrier)}")
    return current.page("bills.html", status=status, listed=_listed(carrier), carrier=carrier,
                        carriers=[c.value for c in Carrier], formats=sorted(FORMATS),
                        can_import=can_import(current), problems=problems[:SHOWN_PROBLEMS],
                        more_problems=max(len(problems) - SHOWN_PROBLEMS, 0), refused=refused)


def _listed(carrier: str) -> list[dict[str, Any]]:
    """One row per bill (a bill covering two months or couriers is listed under each): one
    Query per courier."""
    from chalicelib.flows import bills as bill_flow

    rows: dict[str, dict[str, Any]] = {}
    for code in [carrier] if carrier else [c.value for c in Carrier]:
        for listing in bill_flow.bills_of(code, LISTED_PER_CARRIER):
            row = rows.setdefault(listing.bill_id, {
                "bill_id": listing.bill_id, "filename": listing.filename,
                "imported_at": listing.imported_at, "periods": []})
            row["periods"].append(f"{listing.carrier_code} {listing.month}")
    for row in rows.values():
        row["periods"].sort(reverse=True)
    return sorted(rows.values(), key=lambda r: (r["periods"][0].split()[-1], r["imported_at"]),
                  reverse=True)


def bill(current: Visit, bill_id: str) -> Response:
    from chalicelib.flows import bills as bill_flow

    stored = bill_flow.show_bill(bill_id)
    if stored is None:
        raise NotFound("bill")
    kind = current.query.get("kind", "")
    if kind and kind not in FINDING_KINDS:
        raise ApiError(400, "invalid_kind", f"kind is one of {', '.join(FINDING_KINDS)}")
    page = _page_number(current.query.get("page", "1"))
    chosen = [f for f in stored.findings if not kind or f.kind == kind]
    start = (page - 1) * FINDINGS_PAGE
    totals = sorted(stored.totals, key=lambda t: (t.carrier_code, t.month, t.region.value))
    return current.page(
        "bill.html", head=stored.head, totals=totals, sums=_sums(totals), kind=kind,
        kinds=FINDING_KINDS, findings=chosen[start:start + FINDINGS_PAGE], page=page,
        shown_from=start + 1 if chosen else 0, shown_to=min(start + FINDINGS_PAGE, len(chosen)),
        of=len(chosen), more=start + FINDINGS_PAGE < len(chosen),
        imported=current.query.get("imported", ""))


def _page_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise ApiError(400, "invalid_page", "page is a whole number from 1")
    return int(text)


def _sums(totals: list[Any]) -> dict[str, Decimal | int]:
    billed = sum((t.billed for t in totals), Decimal(0))
    expected = sum((t.expected for t in totals), Decimal(0))
    return {"lines": sum(t.lines for t in totals), "billed": billed, "expected": expected,
            "difference": billed - expected, "unpriced": sum(t.unpriced for t in totals)}


def import_bill(current: Visit) -> Response:
    """An uploaded bill checked and stored; its page. A file that cannot be read: the bills
    page again, with every problem by line and column (nothing is written then)."""
    from chalicelib.flows import bills as bill_flow
    from chalicelib.warehouse.bills import BillError, Problem

    fields = current.form()
    upload = current.files.get("file")
    if upload is None or not upload.data:
        problem = Problem(line=0, column="", message="no file chosen, or the file is empty")
        return bills(current, status=400, problems=(problem,), refused="")
    staff = current.session.staff_id if current.session else ""
    try:
        done = bill_flow.import_bill(form_value(fields, "format", 40), upload.filename,
                                     upload.data, staff, utcnow())
    except BillError as error:
        return bills(current, status=400, problems=error.problems, refused=upload.filename)
    return current.redirect(href(f"/console/bills/{quote(done.bill.head.bill_id)}")
                            + f"?imported={'new' if done.new else 'again'}")
