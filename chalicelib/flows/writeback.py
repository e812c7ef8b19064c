"""Shipment writeback: the marketplaces learn what we shipped. The I/O around
chalicelib/marketplaces/writeback.py and each adapter's pure calls (reconciliation, the other
way of keeping marketplaces and us in step, is chalicelib/flows/reconciliation.py).

A writeback is created in the ship report's transaction (`writeback_actions`); the `write_back`
schedule sends what is due (`run_writebacks`): per package, the call of the platform's declared
writeback with the shop's credentials from SSM; a platform without idempotency is asked first
whether it already has the package when this is a retry (its `existing` read; one whose write
needs a read first, its `prepare`, on every attempt); the outcome goes on the order's timeline;
a writeback given up is a CS case. A platform that declares no writeback gets none.

A run is bounded, exclusive and sends each writeback once: it works to a budget from the Lambda
context (chalicelib/core/runs.py), under the `write_back` lease (one run at a time), and claims
each writeback before calling the platform (writeback_store.claim: in hand until the run's end
and a grace), so an overlapping or retried run cannot send it too; the outcome's write ends the
claim. A claim left by a run that stopped mid-writeback makes the next attempt a retry: the
platform is asked first. What the budget does not reach stays due for the next tick. Writebacks
go out a few at a time per marketplace on a small pool, each platform's pace kept by core.http.
"""

from __future__ import annotations

import logging
import secrets
import threading
from datetime import datetime
from typing import Any

from chalicelib.core import observability, runs
from chalicelib.core.clock import utcnow
from chalicelib.core.dynamodb import Action, TransactionConflict, retrying, transact
from chalicelib.core.errors import Busy
from chalicelib.cs import alert_topic, alerts
from chalicelib.flows import marketplace_calls
from chalicelib.flows.marketplace_calls import credentials_for, send_json
from chalicelib.marketplaces import adapter_for, writeback, writeback_store
from chalicelib.marketplaces import credentials_store as shop_credentials
from chalicelib.marketplaces.calls import (
    PlatformError,
    PlatformUnavailable,
    Shipped,
    WritebackResult,
)
from chalicelib.marketplaces.contract import PackageCheck, ShipmentWrite
from chalicelib.marketplaces.writeback import Writeback
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import OrderEvent
from chalicelib.warehouse.jobs import Job
from chalicelib.warehouse.jobs import Shipment as JobShipment

log = logging.getLogger(__name__)


def _writer(marketplace: str) -> ShipmentWrite | None:
    """How the marketplace takes a shipment, if it does (a Standard Webhooks source's orders
    carry the source's own name, which is no platform)."""
    try:
        return adapter_for(marketplace).writeback
    except LookupError:
        return None


def writeback_actions(job: Job, shipment: JobShipment, now: datetime) -> list[Action]:
    """The writeback of a shipment, for the ship report's transaction (none for a marketplace
    we cannot write back to, e.g. a generic Standard Webhooks source)."""
    if _writer(job.marketplace) is None:
        return []
    return [writeback_store.put(writeback.plan(job, shipment, now), None)]


# The run: at most RUN_SECONDS (the next tick comes a minute later), and nothing new in the last
# RUN_MARGIN seconds before Lambda would stop write_back (its timeout, .chalice/config.json): a
# writeback in hand makes one to three calls. Writebacks go out WORKERS at a time, at most
# PER_MARKETPLACE of them to one marketplace (across its shops: the platforms' rate limits are
# per shop or app, kept by core.http's pace where an adapter declares one); write_back has
# 1 GB (.chalice/config.json) for its threads.
RUN_SECONDS = 57.0
RUN_MARGIN = 20.0
WORKERS = 32
PER_MARKETPLACE = 16
LIMIT = 5000  # due writebacks one run reads at most (it reads them as it gets to them)


def run_writebacks(now: datetime, limit: int = LIMIT,
                   budget: runs.Budget | None = None) -> dict[str, int]:
    """Send what is due at `now`, within the budget (default RUN_SECONDS), under the run's
    lease; a run that finds the lease held does nothing (`busy`)."""
    budget = budget or runs.Budget.seconds(RUN_SECONDS)
    counts = {"done": 0, "retry": 0, "failed": 0, "errors": 0}
    owner = secrets.token_hex(8)
    until = budget.hold_until(now)
    if not writeback_store.take_run_lease(owner, now, until):
        log.info("write_back: another run holds the lease")
        return {**counts, "busy": 1}
    lock = threading.Lock()

    def one(item: tuple[str, str, writeback_store.Stored | None]) -> None:
        partner_id, key, stored = item
        with observability.unit(partner_id=partner_id, writeback=key):
            try:
                outcome = _send(partner_id, key, stored, now, owner, until)
            except Exception:  # it stays due (or in hand until the claim ends): tried again
                log.exception("writeback %s/%s failed", partner_id, key)
                outcome = "errors"
        if outcome is not None:
            with lock:
                counts[outcome] += 1

    try:
        # Each due writeback is read as the pool gets to it: its marketplace is its lane.
        due = ((partner_id, key, writeback_store.read(partner_id, key))
               for partner_id, key in writeback_store.due(now, limit))
        runs.work_through("write_back", due, one, budget=budget, lane=_lane,
                          workers=WORKERS, per_lane=PER_MARKETPLACE)
    finally:
        writeback_store.release_run_lease(owner)
    return counts


def _lane(item: tuple[str, str, writeback_store.Stored | None]) -> str:
    return item[2].writeback.marketplace if item[2] is not None else ""


def send(partner_id: str, key: str, now: datetime) -> str | None:
    """One writeback, on its own (outside a run): read, claimed for RUN_SECONDS, sent."""
    owner = secrets.token_hex(8)
    until = runs.Budget.seconds(RUN_SECONDS).hold_until(now)
    return _send(partner_id, key, writeback_store.read(partner_id, key), now, owner, until)


def _send(partner_id: str, key: str, found: writeback_store.Stored | None, now: datetime,
          owner: str, until: datetime) -> str | None:
    if found is None or found.writeback.status != "pending" or found.writeback.due_at > now \
            or found.in_hand(now):
        return None  # done, not yet due, or in another run's hands
    old, version = found.writeback, found.version
    if not writeback_store.claim(partner_id, key, version, owner, now, until):
        return None  # another run took it (or changed it) since it was read
    version += 1  # the claim's write
    observability.tag(order_id=old.order_id, job_id=old.job_id, marketplace=old.marketplace)
    writer = _writer(old.marketplace)
    # A claim left on it: the run that took it stopped mid-way, maybe after telling the
    # platform. So this is a retry: a platform that does not deduplicate is asked first.
    new = _attempt(old, writer, now, retry=bool(old.attempts) or found.interrupted) \
        if writer else writeback.failed(old, "no adapter", False, now)
    events = _timeline(old, new, now)
    try:
        retrying(lambda: transact([writeback_store.put(new, version),
                                   *orders_store.put_events(new.order_id, events)]),
                 "writeback", reread=False)
    except TransactionConflict:
        raise Busy("writeback") from None
    _counted(new)
    if new.status == "failed":
        alert_topic.raise_case(
            "marketplace.writeback_failed", f"writeback:{new.key}", alerts.Severity.HIGH,
            f"{new.order_name} ({new.marketplace}): the marketplace was not told of shipment "
            f"{new.shipment_id}: {new.last_error}", now,
            {"order_id": new.order_id, "order_name": new.order_name,
             "marketplace": new.marketplace, "job_id": new.job_id})
    return "done" if new.status == "done" else "failed" if new.status == "failed" else "retry"


_METRICS = {"done": "WritebacksSent", "failed": "WritebacksGivenUp",
            "pending": "WritebacksRetried"}


def _counted(wb: Writeback) -> None:
    """Counted by marketplace; the line says the outcome, never the platform's error text (it
    may echo a token: it stays on the writeback and the order's timeline)."""
    observability.count(_METRICS[wb.status], marketplace=wb.marketplace)
    level = logging.WARNING if wb.status == "failed" else logging.INFO
    log.log(level, "writeback %s to %s: %s (%d failed attempt(s))", wb.key, wb.marketplace,
            {"done": "sent", "failed": "given up", "pending": "retried later"}[wb.status],
            wb.attempts)


def _attempt(wb: Writeback, writer: ShipmentWrite, now: datetime,
             retry: bool | None = None) -> Writeback:
    """Tell the platform of each package not yet confirmed. `retry` (default: an attempt
    failed before) makes a platform that does not deduplicate be asked first."""
    retry = bool(wb.attempts) if retry is None else retry
    try:
        credentials = credentials_for(wb.marketplace, wb.shop, now)
    except shop_credentials.MissingCredentials as exc:
        return writeback.failed(wb, str(exc), False, now)
    except PlatformUnavailable as exc:
        return writeback.failed(wb, str(exc), True, now)
    except PlatformError as exc:  # e.g. a revoked refresh token: a person must act
        return writeback.failed(wb, str(exc), exc.retryable, now)
    for package in wb.remaining:
        try:
            there, prepared = _existing(writer, package, credentials, now, retry)
            result = WritebackResult(ok=True) if there else _write(
                writer, package, credentials, now, prepared)
        except ValueError as exc:  # the platform cannot take this (no carrier code, no lines)
            return writeback.failed(wb, str(exc), False, now)
        except PlatformUnavailable as exc:
            return writeback.failed(wb, str(exc), True, now)
        except PlatformError as exc:  # a read before or after the write answered an error
            return writeback.failed(wb, str(exc), exc.retryable, now)
        if not result.ok:
            return writeback.failed(wb, f"{result.code} {result.detail}".strip(),
                                    result.retryable, now)
        wb = writeback.confirmed(wb, package.package_id)
    return wb


def _write(writer: ShipmentWrite, package: Shipped, credentials: dict[str, str], now: datetime,
           prepared: Any) -> WritebackResult:
    answer = marketplace_calls.send(writer.call(package, credentials, now, prepared))
    result = writer.parse(answer.status, answer.body)
    if not result.already_done:
        return result
    # "Shipped already" may also mean closed, refunded, or shipped by hand with another
    # waybill: where the platform can be asked, only its record of our number counts.
    if writer.existing and not _shown(writer.existing, package, credentials, now):
        return WritebackResult(ok=False, code=result.code, detail=f"{result.detail}: the "
                               f"platform has no shipment {package.tracking_number}")
    return result.model_copy(update={"ok": True})


def _shown(check: PackageCheck, package: Shipped, credentials: dict[str, str],
           now: datetime) -> bool:
    """Does the platform show this package (our tracking number) already?"""
    return check.already_shipped(send_json(check.call(package, credentials, now)), package)


def _existing(writer: ShipmentWrite, package: Shipped, credentials: dict[str, str],
              now: datetime, retry: bool) -> tuple[bool, Any]:
    """Is the package on the platform already, and the answer the write needs first (None for
    a write that needs none).

    A platform whose write needs a read first (`prepare`: Shopify's fulfillment orders) is read
    on every attempt and the answer both says whether the package is there and goes to the
    write. Otherwise a platform that does not deduplicate (`existing`) is asked only before a
    retry."""
    if writer.prepare:
        prepared = send_json(writer.prepare.call(package, credentials, now))
        return writer.prepare.already_shipped(prepared, package), prepared
    if retry and writer.existing:
        return _shown(writer.existing, package, credentials, now), None
    return False, None


def _timeline(old: Writeback, new: Writeback, now: datetime) -> list[OrderEvent]:
    actor = f"marketplace {new.marketplace}"
    told = [p for p in new.packages if p.package_id in new.done and p.package_id not in old.done]
    events = [OrderEvent(type="marketplace.shipped", at=now, actor=actor,
                         summary=f"{new.marketplace} told: shipped {p.carrier_code} "
                                 f"{p.tracking_number}",
                         data={"package_id": p.package_id, "tracking_number": p.tracking_number})
              for p in told]
    if new.status == "failed" and old.status != "failed":
        events.append(OrderEvent(type="marketplace.writeback_failed", at=now, actor=actor,
                                 summary=f"{new.marketplace} could not be told of the shipment: "
                                         f"{new.last_error}"))
    return events


def on_schedule(context: Any = None) -> None:
    """The 1-minute run (app.py `write_back`), to the time its Lambda context leaves."""
    counts = run_writebacks(utcnow(), budget=runs.Budget.of(context, most=RUN_SECONDS,
                                                            margin=RUN_MARGIN))
    if any(counts.values()):
        log.info("writebacks: %s", counts)
