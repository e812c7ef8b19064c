"""The console's one search box: find orders by our id, the marketplace's order number, a
tracking number, or a phone's last four digits (with a name to narrow).

`orders.search.parse` says which lookups the text can be; each is one DynamoDB call, and they
run at once (threads: the calls are I/O), so a search takes about one call's time, plus one
more when a tracking number matched:

  our id               1 GetItem (the CURRENT item's row attributes)
  order number         1 Query on orders `by-external-id`
  tracking number      1 Query on shipments `by-tracking-number`, then 1 BatchGetItem of the
                       rows of the orders it named that no other lookup found
  phone (+ name)       1 Query on orders `by-buyer-phone` (begins_with on the name when given)

So at most 4 calls (e.g. `13800138000`: order number, tracking number and phone at once, then
the rows of the tracked orders), in 2 round trips. Never a Scan.

Hits are deduplicated by order (one order found two ways lists both in `matched_by`), newest
first (paid, else placed), at most `limit`. A phone's last four digits without a name may
match more orders than `limit`: the first `limit` the index holds are shown, and a name
narrows.

Orders whose CURRENT item was last written before these attributes existed are found by our id
(and by the order number: that attribute was there before) with what their item holds, but not
by phone until their next write (an update or an amendment): the indexes are sparse and there is
no backfill (README, Deploying: upgrading to the search).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel

from chalicelib.orders import order_store as orders_store
from chalicelib.orders.search import KINDS, Kind, Lookup, parse
from chalicelib.tracking import parcel_store as shipments_store

MAX_LIMIT = 50


class Match(BaseModel):
    """How a hit was found: the kind, and for a tracking number the parcel's carrier and
    number."""

    kind: Kind
    carrier_code: str = ""
    tracking_number: str = ""


class OrderHit(BaseModel):
    order_id: str
    marketplace: str
    shop: str
    external_id: str
    buyer_name: str = ""
    status: str = ""
    paid_at: str | None = None  # ISO, UTC
    placed_at: str | None = None
    matched_by: list[Match]


class SearchResult(BaseModel):
    query: str  # the text as normalised
    tried: list[Kind]  # the kinds of lookup the text was tried as
    hits: list[OrderHit]


Found = dict[str, tuple[dict[str, Any], list[Match]]]  # order id -> its row, how it was found


def search(text: str, limit: int = 20) -> SearchResult:
    """The orders `text` finds; ApiError 400 `invalid_query` when it can be no lookup."""
    query = parse(text)
    limit = max(1, min(limit, MAX_LIMIT))
    found: Found = {}
    tracked: list[tuple[str, Match]] = []  # order ids a parcel named, rows still to read
    for lookup, answer in _each(query.lookups, lambda lookup: _lookup(lookup, limit)):
        if lookup.kind == "tracking_number":
            tracked += [(order_id, Match(kind="tracking_number", carrier_code=carrier,
                                        tracking_number=lookup.value))
                        for carrier, order_id in answer]
        else:
            for row in answer:
                _add(found, row, Match(kind=lookup.kind))
    _add_tracked(found, tracked)
    hits = [_hit(row, matches) for row, matches in found.values()]
    hits.sort(key=lambda hit: (hit.paid_at or hit.placed_at or "", hit.order_id), reverse=True)
    return SearchResult(query=query.text, tried=query.kinds, hits=hits[:limit])


def _add_tracked(found: Found, tracked: list[tuple[str, Match]]) -> None:
    """The orders parcels named, with the rows of those no other lookup found (one read)."""
    unread = [order_id for order_id, _ in tracked if order_id not in found]
    rows = {orders_store.order_id_of(row): row
            for row in (orders_store.rows(unread) if unread else [])}
    for order_id, match in tracked:
        known = found[order_id][0] if order_id in found else rows.get(order_id)
        if known is not None:  # a parcel whose order has no current view is left out
            _add(found, known, match)


def _lookup(lookup: Lookup, limit: int) -> list[Any]:
    """One lookup's single call: rows for the order kinds, (carrier, order id) for a parcel."""
    if lookup.kind == "order_id":
        row = orders_store.row(lookup.value)
        return [row] if row else []
    if lookup.kind == "external_id":
        return orders_store.by_external_id(lookup.value, limit)
    if lookup.kind == "tracking_number":
        return shipments_store.by_tracking_number(lookup.value, limit)
    return orders_store.by_phone(lookup.value, lookup.name, limit)


def _add(found: Found, row: Mapping[str, Any], match: Match) -> None:
    order_id = orders_store.order_id_of(row)
    if order_id not in found:
        found[order_id] = (dict(row), [])
    if match not in found[order_id][1]:
        found[order_id][1].append(match)


def _hit(row: Mapping[str, Any], matches: list[Match]) -> OrderHit:
    return OrderHit(
        order_id=orders_store.order_id_of(row), marketplace=str(row.get("marketplace", "")),
        shop=str(row.get("shop", "")), external_id=str(row.get("external_id", "")),
        buyer_name=str(row.get("buyer_name", "")), status=str(row.get("status", "")),
        paid_at=row.get("paid_at"), placed_at=row.get("placed_at"),
        matched_by=sorted(matches, key=lambda match: KINDS.index(match.kind)))


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    """Kept between requests of a warm function; a search makes at most 3 calls at once."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(4, thread_name_prefix="order_search")
        return _pool


def _each(lookups: tuple[Lookup, ...],
          call: Callable[[Lookup], list[Any]]) -> list[tuple[Lookup, list[Any]]]:
    """`call` for every lookup, at once when there are several (each in a copy of the caller's
    context: its deadline and log keys); answers in the lookups' order."""
    if len(lookups) == 1:
        return [(lookups[0], call(lookups[0]))]
    futures: list[Future[list[Any]]] = [
        _threads().submit(contextvars.copy_context().run, call, lookup) for lookup in lookups]
    return [(lookup, future.result()) for lookup, future in zip(lookups, futures, strict=True)]
