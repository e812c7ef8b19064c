"""Reconciliation: what the marketplaces' notifications missed. Each shop with credentials is
listed over a sliding window (`run_reconciliation`, the `reconcile_shops` schedule), and every
order we do not have at the listed version is queued as an inbox delivery carrying its
reference, so it takes the same idempotent path as a notification (the order worker re-fetches
it). The I/O around each adapter's pure list calls.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from chalicelib.core import observability
from chalicelib.core.clock import utcnow
from chalicelib.flows.marketplace_calls import credentials_for, send_json
from chalicelib.marketplaces import adapter_for
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces.calls import OrderRef
from chalicelib.marketplaces.contract import Listing
from chalicelib.orders import inbox_store as inbox
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.deliveries import REF_HEADER, Accepted
from chalicelib.orders.order import order_id_for

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=2)  # each run re-reads the last two hours: overlaps are free
MAX_PAGES = 20


def run_reconciliation(now: datetime) -> dict[str, int]:
    """Every shop with credentials, over the sliding window: what the notifications missed."""
    counts = {"shops": 0, "listed": 0, "queued": 0, "errors": 0}
    for marketplace, shop in shop_credentials.shops():
        try:
            with observability.unit(marketplace=marketplace, shop=shop):
                listed, queued = reconcile(marketplace, shop, now - WINDOW, now, now)
        except Exception:  # one shop's platform down must not stop the others
            log.exception("reconciliation of %s %s failed", marketplace, shop)
            counts["errors"] += 1
            continue
        counts["shops"] += 1
        counts["listed"] += listed
        counts["queued"] += queued
    return counts


def reconcile(marketplace: str, shop: str, since: datetime, until: datetime,
              now: datetime) -> tuple[int, int]:
    """List the shop's orders changed in the window; queue each one we do not have at that
    version as an inbox delivery, so it takes the same idempotent path as a notification.
    Returns (listed, queued)."""
    listing = _listing(marketplace)
    if listing is None:
        return 0, 0
    credentials = credentials_for(marketplace, shop, now)
    listed = queued = 0
    cursor: str | None = None
    for _page in range(MAX_PAGES):
        answer = send_json(listing.call(shop, since, until, cursor, credentials, now))
        refs, cursor = _parse_list(listing, answer, shop, cursor)
        listed += len(refs)
        queued += sum(_queue(marketplace, ref, now) for ref in refs)
        if cursor is None:
            break
    return listed, queued


def _listing(marketplace: str) -> Listing | None:
    """How the marketplace lists a shop's orders, if it does (a listed order is re-read like a
    thin notification: the contract makes a platform with a listing declare `fetch` too)."""
    try:
        return adapter_for(marketplace).listing
    except LookupError:
        return None


def _parse_list(listing: Listing, answer: Any, shop: str,
                cursor: str | None) -> tuple[list[OrderRef], str | None]:
    # Told the shop and the cursor used: some platforms' list answers name neither.
    refs, following = listing.parse(answer, shop, cursor)
    # Every order listed is the listed shop's, whatever name its links carry.
    return [r.model_copy(update={"shop": shop}) for r in refs], following


def _queue(marketplace: str, ref: OrderRef, now: datetime) -> bool:
    stored = orders_store.get_current(order_id_for(marketplace, ref.shop, ref.external_id))
    if stored is not None and ref.updated_at is not None \
            and stored.order.updated_at >= ref.updated_at:
        return False  # we have this version (or a newer one)
    # A listing without update times (Shopee) is keyed by the status it shows, so the next
    # run's listing of an unchanged order is a duplicate delivery, not another re-fetch.
    version = (ref.updated_at.isoformat() if ref.updated_at
               else f"status:{ref.status}" if ref.status else now.isoformat())
    accepted = Accepted(delivery_id=f"{ref.shop}:{ref.external_id}:{version}",
                        topic="reconciliation", shop=ref.shop, headers={REF_HEADER: "1"})
    return inbox.put_delivery(f"reconcile-{marketplace}", marketplace, accepted,
                              ref.model_dump_json().encode(), now)


def on_schedule() -> None:
    """The 15-minute run (app.py `reconcile_shops`)."""
    counts = run_reconciliation(utcnow())
    if counts["queued"] or counts["errors"]:
        log.info("reconciliation: %s", counts)
