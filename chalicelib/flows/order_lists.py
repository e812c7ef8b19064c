"""The CS supervisor's lists (chalicelib/orders/lists.py): orders in refund, in dispute, and
unpaid, longest on the list first, a page at a time. Each page is one Query on the orders
table's sparse `by-list` index (never a Scan), of the row a list shows.

Orders whose CURRENT item was last written before the index existed join their list at their
next write (an update from the marketplace or an amendment): no backfill (README, Deploying).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from chalicelib.core import cursors
from chalicelib.core.errors import ApiError
from chalicelib.flows.case_desk import PAGE_BYTES, page_limit
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.lists import WorkList

NAMES = tuple(item.value for item in WorkList)


class ListedOrder(BaseModel):
    """One row of a list: the order, its marketplace and amount, and since when it is there."""

    order_id: str
    marketplace: str
    shop: str
    external_id: str = ""
    name: str = ""
    buyer_name: str = ""
    status: str = ""
    after_sale: str = ""
    total: str = ""
    currency: str = ""
    placed_at: str | None = None
    since: str  # ISO, UTC: when the order entered the list


class OrderList(BaseModel):
    list_name: str
    orders: list[ListedOrder]
    next_cursor: str | None  # the next page's ?cursor=; None: this was the last page


def work_list(name: str, query: dict[str, str]) -> dict[str, Any]:
    """A page of the list `name` (refund, dispute, unpaid); ?limit=, ?cursor= as for cases.
    An unknown list is 404 `unknown_list`; a bad limit or cursor 400."""
    if name not in NAMES:
        raise ApiError(404, "unknown_list", f"the lists are {', '.join(NAMES)}", lists=NAMES)
    listed, limit = WorkList(name), page_limit(query)
    scope = ["orders", name]
    found = orders_store.list_page(listed, limit, _start(query, scope, name))
    rows = [_row(item).model_dump(mode="json") for item in found.items]
    count = cursors.fitting(rows, PAGE_BYTES) if rows else 0
    rest = found.resume[count]
    return {"list_name": name, "orders": rows[:count],
            "next_cursor": cursors.encode("order_list", scope, rest) if rest is not None
            else None}


def _start(query: dict[str, str], scope: list[str], name: str) -> dict[str, str] | None:
    """Where ?cursor= resumes, checked to be a key of this very list; None for the first page."""
    cursor = query.get("cursor")
    if cursor is None:
        return None
    try:
        return cursors.key(cursors.decode(cursor, "order_list", scope),
                           frozenset(orders_store.LIST_KEYS),
                           {"work_list": name, "sk": "CURRENT"}, {"pk": "ORDER#"})
    except ValueError:
        raise ApiError(400, "invalid_cursor", "use the next_cursor of the same list, "
                       "unchanged") from None


def _row(item: dict[str, Any]) -> ListedOrder:
    return ListedOrder(
        order_id=orders_store.order_id_of(item), since=str(item["listed_at"]),
        **{name: str(item[name]) for name in ListedOrder.model_fields
           if name not in ("order_id", "since") and item.get(name) is not None})
