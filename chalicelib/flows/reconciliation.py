"""Reconciliation: what the marketplaces' notifications missed. Each shop with credentials is
listed over a sliding window (`run_reconciliation`, the `reconcile_shops` schedule), and every
order we do not have at the listed version is queued as an inbox delivery carrying its
reference, so it takes the same idempotent path as a notification (the order worker re-fetches
it). The I/O around each adapter's pure list calls.

A run is bounded, exclusive, fair across shops and lists each page once: it works to a budget
from the Lambda context (chalicelib/core/runs.py), under the `reconcile_shops` lease, through a
round that lists every shop once (chalicelib/marketplaces/reconcile_store.py). It goes on where
the last run stopped (the shops half listed, at their page, then those not yet begun, and logs
"reconciliation resumes at shop X page N"), so the shops listed last are reached however many
there are; a new round begins once every shop is done. Each page is claimed (the shop's item at
the version read) before the platform is called, so an overlapping or retried run cannot list
it too; the shop's next page goes to the back of the line, a few shops per marketplace at a
time. A shop's window reaches back to where its last complete listing ended (at least WINDOW,
at most CATCH_UP), so a round that spans several runs leaves no gap.
"""

from __future__ import annotations

import logging
import secrets
import threading
from datetime import datetime, timedelta
from typing import Any

from chalicelib.core import observability, runs
from chalicelib.core.clock import utcnow
from chalicelib.core.settings import settings
from chalicelib.flows.marketplace_calls import credentials_for, send_json
from chalicelib.marketplaces import adapter_for
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces import reconcile_store as store
from chalicelib.marketplaces.calls import OrderRef
from chalicelib.marketplaces.contract import Listing
from chalicelib.marketplaces.reconcile_store import ShopState
from chalicelib.orders import inbox_store as inbox
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.deliveries import REF_HEADER, Accepted
from chalicelib.orders.order import order_id_for

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=2)  # each listing re-reads at least the last two hours: overlaps are free
CATCH_UP = timedelta(days=1)  # and at most a day (a shop whose platform was down longer)
MAX_PAGES = 20  # of one shop in one round
# The run: at most RUN_SECONDS (the next tick comes 15 minutes later), and no new page in the
# last RUN_MARGIN seconds before Lambda would stop reconcile_shops (.chalice/config.json).
# WORKERS pages at once, at most PER_MARKETPLACE of one marketplace (each platform's pace is
# kept by core.http anyway).
RUN_SECONDS = 14 * 60.0
RUN_MARGIN = 45.0
WORKERS = 8
PER_MARKETPLACE = 4


def run_reconciliation(now: datetime, budget: runs.Budget | None = None,
                       pages: int | None = None) -> dict[str, int]:
    """Go on with the round, within the budget (default RUN_SECONDS) and at most `pages` pages
    (default the RECONCILE_PAGES_PER_RUN setting; 0: no limit but the budget), under the run's
    lease; a run that finds the lease held does nothing (`busy`)."""
    budget = budget or runs.Budget.seconds(RUN_SECONDS)
    cap = settings().reconcile_pages_per_run if pages is None else pages
    counts = {"shops": 0, "pages": 0, "listed": 0, "queued": 0, "errors": 0, "busy": 0}
    owner = secrets.token_hex(8)
    until = budget.hold_until(now)
    if not store.take_run_lease(owner, now, until):
        log.info("reconcile_shops: another run holds the lease")
        return {**counts, "busy": 1}
    lock = threading.Lock()
    taken = 0

    def one(state: ShopState) -> ShopState | None:
        nonlocal taken
        with lock:
            if cap and taken >= cap:
                return None  # left where it is, for the next run
            taken += 1
        with observability.unit(marketplace=state.marketplace, shop=state.shop):
            following, done = _page(state, owner, now, until)
        with lock:
            for name, value in done.items():
                counts[name] += value
        return following

    try:
        runs.work_through("reconcile_shops", _round(now), one, budget=budget,
                          lane=lambda state: state.marketplace, workers=WORKERS,
                          per_lane=PER_MARKETPLACE)
    finally:
        store.release_run_lease(owner)
    return counts


def _round(now: datetime) -> list[ShopState]:
    """The pages to list, in turn: of the round under way, the shops half listed (at their
    page), then those not yet begun; a new round when every shop is done."""
    shops = {store.shop_key(m, s): (m, s) for m, s in shop_credentials.shops()
             if _listing(m) is not None}
    states = {s.key: s for s in store.shop_states() if s.key in shops}
    round_id = store.current_round()

    def left(round_id: str | None) -> list[str]:
        return sorted(key for key in shops if round_id is None or key not in states
                      or not (states[key].in_round(round_id) and states[key].done))

    resumed = round_id is not None and bool(left(round_id))
    if not resumed:
        round_id = store.start_round(now, round_id)
        log.info("reconciliation begins a round of %d shops", len(shops))
    assert round_id is not None
    todo = left(round_id)
    begun = [states[key] for key in todo if key in states and states[key].started(round_id)]
    fresh = [_first_page(shops[key], states.get(key), round_id, now) for key in todo
             if not (key in states and states[key].started(round_id))]
    work = begun + fresh
    if work and resumed:
        log.info("reconciliation resumes at shop %s page %d (round begun %s, %d of %d shops "
                 "left)", work[0].key, work[0].page, round_id.split("#")[0], len(todo),
                 len(shops))
    return work


def _first_page(shop: tuple[str, str], state: ShopState | None, round_id: str,
                now: datetime) -> ShopState:
    """The shop's first page of the round: its window reaches back to where its last complete
    listing ended (at least WINDOW, at most CATCH_UP)."""
    marketplace, name = shop
    since = now - WINDOW
    if state is not None and state.listed_until is not None:
        since = max(now - CATCH_UP, min(since, state.listed_until))
    return ShopState(marketplace=marketplace, shop=name,
                     version=state.version if state else 0, round=round_id, page=1,
                     cursor=None, since=since, until=now,
                     listed_until=state.listed_until if state else None)


def _page(state: ShopState, owner: str, now: datetime,
          until: datetime) -> tuple[ShopState | None, dict[str, int]]:
    """One page: claimed, listed, the shop moved on. (The shop's next page, or None; counts.)"""
    held = store.claim(state, owner, now, until)
    if held is None:
        return None, {"busy": 1}  # another run has it in hand, or listed it since it was read
    assert held.since is not None and held.until is not None
    try:
        listed, queued, following = list_page(held.marketplace, held.shop, held.since,
                                              held.until, held.cursor, now)
    except Exception:  # one shop's platform down must not stop the others
        log.exception("reconciliation of %s page %d failed", held.key, held.page)
        # Over for this round; its next window reaches back to its last complete listing.
        store.advance(held, owner, None, done=True, listed=False)
        return None, {"errors": 1, "shops": 1}
    last = following is None or held.page >= MAX_PAGES
    if following is not None and last:
        log.warning("reconciliation of %s: more than %d pages; the rest next round", held.key,
                    MAX_PAGES)
    new = store.advance(held, owner, following, done=last, listed=following is None)
    counts = {"pages": 1, "listed": listed, "queued": queued, "shops": int(last)}
    return (None if last else new), counts


def list_page(marketplace: str, shop: str, since: datetime, until: datetime,
              cursor: str | None, now: datetime) -> tuple[int, int, str | None]:
    """One page of the shop's orders changed in the window; each one we do not have at that
    version queued. Returns (listed, queued, the next page's cursor or None)."""
    listing = _listing(marketplace)
    if listing is None:
        return 0, 0, None
    credentials = credentials_for(marketplace, shop, now)
    answer = send_json(listing.call(shop, since, until, cursor, credentials, now))
    refs, following = _parse_list(listing, answer, shop, cursor)
    return len(refs), sum(_queue(marketplace, ref, now) for ref in refs), following


def reconcile(marketplace: str, shop: str, since: datetime, until: datetime,
              now: datetime) -> tuple[int, int]:
    """List the shop's orders changed in the window, every page (at most MAX_PAGES), outside
    any round; queue each one we do not have at that version as an inbox delivery, so it
    takes the same idempotent path as a notification. Returns (listed, queued)."""
    listed = queued = 0
    cursor: str | None = None
    for _page_number in range(MAX_PAGES):
        page_listed, page_queued, cursor = list_page(marketplace, shop, since, until, cursor,
                                                     now)
        listed += page_listed
        queued += page_queued
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


def on_schedule(context: Any = None) -> None:
    """The 15-minute run (app.py `reconcile_shops`), to the time its Lambda context leaves."""
    counts = run_reconciliation(utcnow(), budget=runs.Budget.of(context, most=RUN_SECONDS,
                                                                margin=RUN_MARGIN))
    if counts["pages"] or counts["errors"]:
        log.info("reconciliation: %s", counts)
