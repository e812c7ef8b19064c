"""The search flow's own mechanics, with its stores replaced (no I/O): the lookups run at once,
hits found two ways are one hit, newest first, at most `limit`, and only tracked orders cost
the extra read."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chalicelib.flows import order_search
from chalicelib.orders import order_store
from chalicelib.tracking import parcel_store


def row(order_id: str, paid_at: str | None, placed_at: str = "2026-11-01T00:00:00.000000Z",
        **extra: str) -> dict[str, Any]:
    found = {"pk": f"ORDER#{order_id}", "marketplace": "shopify", "shop": "s",
             "external_id": order_id[-4:], "buyer_name": "Lin", "status": "paid",
             "placed_at": placed_at, **extra}
    if paid_at:
        found["paid_at"] = paid_at
    return found


class Stores:
    """What each store call answers, and the calls made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, external: list[dict[str, Any]],
                 phone: list[dict[str, Any]], tracking: list[tuple[str, str]],
                 rows: list[dict[str, Any]], barrier: threading.Barrier | None = None) -> None:
        self.calls: list[str] = []

        def answer(name: str, value: Any) -> Any:
            self.calls.append(name)
            if barrier is not None:
                barrier.wait(timeout=2)  # each waits for the others: only at once do all pass
            return value

        monkeypatch.setattr(order_store, "by_external_id",
                            lambda v, n: answer("external", external))
        monkeypatch.setattr(order_store, "by_phone", lambda v, k, n: answer("phone", phone))
        monkeypatch.setattr(parcel_store, "by_tracking_number",
                            lambda v, n: answer("tracking", tracking))
        monkeypatch.setattr(order_store, "rows", lambda ids: (self.calls.append("rows"), [
            r for r in rows if order_store.order_id_of(r) in ids])[1])


def test_every_kind_is_looked_up_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stores = Stores(monkeypatch, external=[], phone=[], tracking=[], rows=[],
                    barrier=threading.Barrier(3))
    result = order_search.search("13800138000")  # order number, tracking number, phone
    assert sorted(stores.calls) == ["external", "phone", "tracking"]
    assert result.tried == ["external_id", "tracking_number", "phone"]
    assert result.hits == []


def test_one_order_found_two_ways_is_one_hit_with_both_matches(
        monkeypatch: pytest.MonkeyPatch) -> None:
    same = row("ord_a", "2026-11-02T00:00:00.000000Z")
    stores = Stores(monkeypatch, external=[same], phone=[dict(same)],
                    tracking=[("STO", "ord_a")], rows=[same])
    (hit,) = order_search.search("13800138000").hits
    assert [m.kind for m in hit.matched_by] == ["external_id", "tracking_number", "phone"]
    assert hit.matched_by[1].carrier_code == "STO"
    assert hit.matched_by[1].tracking_number == "13800138000"
    assert "rows" not in stores.calls  # the order's row was in hand already


def test_a_tracked_order_no_other_lookup_found_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    tracked = row("ord_t", "2026-11-02T00:00:00.000000Z")
    stores = Stores(monkeypatch, external=[], phone=[], tracking=[("STO", "ord_t")],
                    rows=[tracked])
    (hit,) = order_search.search("13800138000").hits
    assert (hit.order_id, hit.buyer_name, stores.calls.count("rows")) == ("ord_t", "Lin", 1)


def test_newest_first_by_paid_else_placed_and_at_most_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = row("ord_old", "2026-11-01T00:00:00.000000Z")
    new = row("ord_new", "2026-11-03T00:00:00.000000Z")
    unpaid = row("ord_unpaid", None, placed_at="2026-11-02T00:00:00.000000Z")
    Stores(monkeypatch, external=[], phone=[old, new, unpaid], tracking=[], rows=[])
    assert [h.order_id for h in order_search.search("1234 lin").hits] == [
        "ord_new", "ord_unpaid", "ord_old"]
    assert [h.order_id for h in order_search.search("1234 lin", limit=1).hits] == ["ord_new"]


def test_rows_are_read_only_for_tracked_orders_and_a_vanished_one_is_left_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    stores = Stores(monkeypatch, external=[], phone=[], tracking=[], rows=[])
    order_search.search("SF1234567890")
    assert "rows" not in stores.calls  # nothing tracked: no second round trip
    stores = Stores(monkeypatch, external=[], phone=[], tracking=[("SF", "ord_gone")], rows=[])
    assert order_search.search("SF1234567890").hits == []
    assert stores.calls.count("rows") == 1
