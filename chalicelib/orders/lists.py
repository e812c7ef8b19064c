"""The CS supervisor's daily lists (the handbook: orders in refund and in dispute are checked
every day, unpaid orders are chased): which list an order is on, and since when. Pure.

An order is on at most one list, the most pressing first: a dispute (the platform judges, a
deadline runs), then a refund, then unpaid. It leaves the list when its state does (a refund
done or closed, a dispute closed, the order paid or cancelled). The orders table keeps the
list on the order's current view (orders.order_store, index `by-list`), so a list is one paged
Query.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from chalicelib.core.clock import iso
from chalicelib.orders.order import AfterSale, Order, OrderStatus


class WorkList(StrEnum):
    REFUND = "refund"
    DISPUTE = "dispute"
    UNPAID = "unpaid"


_REFUND = frozenset({AfterSale.REFUND_REQUESTED, AfterSale.REFUNDING})


def list_of(order: Order) -> WorkList | None:
    """The list `order` belongs on, or None."""
    if order.after_sale is AfterSale.DISPUTE_OPEN:
        return WorkList.DISPUTE
    if order.after_sale in _REFUND:
        return WorkList.REFUND
    # Created but not paid: a platform's "paid, may not ship yet" (TikTok's ON_HOLD, Taobao's
    # PAID_FORBID_CONSIGN) is pending payment to the warehouse but carries its payment time,
    # and nobody should chase that buyer for money.
    if order.status is OrderStatus.PENDING_PAYMENT and order.paid_at is None:
        return WorkList.UNPAID
    return None


def entered_at(order: Order, previous: Order | None, previous_since: str | None,
               now: datetime) -> str | None:
    """When `order` entered its list (ISO, UTC), None when it is on none. Staying on the same
    list keeps the first moment; entering one takes the marketplace's time of the version
    that put it there (an unpaid order: when it was placed), never later than `now`."""
    listed = list_of(order)
    if listed is None:
        return None
    if previous is not None and previous_since and list_of(previous) is listed:
        return previous_since
    moment = order.placed_at if listed is WorkList.UNPAID else order.updated_at
    return iso(min(moment, now))
