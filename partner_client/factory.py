"""A simulated factory warehouse that works jobs through `WarehouseClient`, and nothing else.

It walks each job through accept -> print (in waves) -> pick -> pack -> ship, waiting a
configurable time in every stage so that a person watching can cancel an order before it is
printed or change an address after it is printed, and answers the intercepts that follow.

Everything it knows lives in memory. After a restart it rebuilds that from
`GET /jobs?updated_since=` (jobs in progress) and then follows the change feed; offers it held
before the restart come back through `claim` once their leases expire.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from partner_client.client import (
    Change,
    Job,
    Package,
    PackedItem,
    WarehouseClient,
    WarehouseError,
    Wave,
    WaveMethod,
    new_shipment_id,
)
from partner_client.labels import save_labels

log = logging.getLogger("partner_client.factory")

STAGES = ("accept", "print", "relabel", "pick", "pack", "ship")
DEFAULT_STEP_SECONDS: dict[str, float] = {
    "accept": 1.0, "print": 8.0, "relabel": 2.0, "pick": 4.0, "pack": 4.0, "ship": 4.0}
# Changes that alter what the label or the parcel says: an intercepted one needs a new label.
REPRINT_KINDS = frozenset({"address", "attributes", "courier"})
DEFAULT_CARRIER = "STO"

TrackingFormat = Callable[[random.Random], str]


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


# Plausible-looking fakes, shaped like each courier's real waybill numbers.
TRACKING_FORMATS: dict[str, TrackingFormat] = {
    "STO": lambda rng: "773" + _digits(rng, 9),        # 773012345678
    "SF": lambda rng: "SF" + _digits(rng, 13),         # SF1234567890123
    "YTO": lambda rng: "YT" + _digits(rng, 13),        # YT7512345678901
    "ZTO": lambda rng: "75" + _digits(rng, 10),        # 12 digits
    "YUNDA": lambda rng: "43" + _digits(rng, 11),      # 13 digits
    "JD": lambda rng: "JDV" + _digits(rng, 12),        # JDV012345678901
    "EMS": lambda rng: "98" + _digits(rng, 11),        # 13 characters
}


def stage_of(job: Job) -> str | None:
    """The stage a job waits in, from the server's state; None once the factory is done."""
    if job.get("handshake") == "offered":
        return "accept"
    if job.get("handshake") != "accepted":
        return None
    if job.get("reprint_required") and job.get("work") in ("printed", "picked", "packed"):
        return "relabel"  # an intercepted change made the label wrong: print a new one
    return {"queued": "print", "printed": "pick", "picked": "pack",
            "packed": "ship"}.get(job.get("work", ""))


def open_changes(job: Job) -> list[Change]:
    """Change requests the factory still has to answer (made after the job was printed)."""
    return [c for c in job.get("changes") or [] if c.get("status") == "intercept_requested"]


def carrier_code(job: Job) -> str:
    carrier = job.get("carrier")
    return (carrier.get("carrier_code") if carrier else None) or DEFAULT_CARRIER


@dataclass
class Tracked:
    """What the factory knows about one job, and since when it sits in its stage."""

    job: Job
    stage: str
    since: float
    lease_id: str | None = None
    not_before: float = 0.0  # after a refusal: leave the job alone until then
    waybill: str | None = None  # printed with the label, shipped under it
    shipment_id: str | None = None  # chosen once, so a retried ship is the same shipment


class SimulatedFactory:
    """`step_seconds`: how long a job sits in each stage (accept, print, pick, pack, ship)
    before the factory acts on it. `intercept_failure_rate`: the fraction of intercept requests
    answered `failed` (the parcel could not be pulled back). `carriers`: tracking number
    makers per carrier code. `clock` measures stage time; `now` (wall clock) is only for
    `updated_since` when resyncing."""

    def __init__(self, client: WarehouseClient, *, clock: Callable[[], float] = time.monotonic,
                 step_seconds: Mapping[str, float] | None = None, wave_size: int = 20,
                 method: WaveMethod = "batch",
                 carriers: Mapping[str, TrackingFormat] = TRACKING_FORMATS,
                 intercept_failure_rate: float = 0.1, rng: random.Random | None = None,
                 lease_seconds: int = 300, max_in_flight: int = 200,
                 idle_wait_seconds: int = 5, retry_seconds: float = 5.0,
                 resync_lookback: timedelta = timedelta(days=7),
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 labels_dir: Path | None = None, own_numbers: bool = True) -> None:
        """`labels_dir`: where the labels the print gate issues are written (none: not kept).
        `own_numbers`: the factory brings its own tracking numbers (printed and shipped under
        them); False when the print gate issues electronic waybills: it prints and relabels
        without numbers and ships what was issued (a ship report without packages)."""
        unknown = set(step_seconds or {}) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; stages are {STAGES}")
        if not 1 <= wave_size <= 49:
            raise ValueError("wave_size must be 1-49 (the API's limit per wave)")
        self.client = client
        self.clock = clock
        self.steps = {**DEFAULT_STEP_SECONDS, **(step_seconds or {})}
        self.wave_size = wave_size
        self.method: WaveMethod = method
        self.carriers = dict(carriers)
        self.intercept_failure_rate = intercept_failure_rate
        self.rng = rng or random.Random()
        # The lease only has to outlive the accept delay; short, so a crash frees offers soon.
        self.lease_seconds = min(43200, max(30, lease_seconds, int(self.steps["accept"]) * 2))
        self.max_in_flight = max_in_flight
        self.idle_wait_seconds = idle_wait_seconds
        self.retry_seconds = retry_seconds
        self.resync_lookback = resync_lookback
        self.now = now
        self.labels_dir = labels_dir
        self.own_numbers = own_numbers
        self.jobs: dict[str, Tracked] = {}
        self.cursor: str | None = None
        self.synced = False

    # One pass ---------------------------------------------------------------------------------

    def run_once(self) -> None:
        """One pass. A failing step is logged and retried next pass; the others still run."""
        if not self.synced:
            self._guarded("resync", self.resync)
        self._guarded("change feed", self.follow_changes)
        self.resolve_open_changes()
        self._advance("accept", self._accept)
        self.print_waves()
        self._advance("relabel", self._relabel)
        self._advance("pick", self._pick)
        self._advance("pack", self._pack)
        self._advance("ship", self._ship)
        self._guarded("claim", self.claim)

    def _guarded(self, what: str, step: Callable[[], None]) -> None:
        try:
            step()
        except WarehouseError as exc:
            log.warning("%s failed: %s; retrying next pass", what, exc)

    def run_forever(self, stop_event: threading.Event, tick_seconds: float = 1.0) -> None:
        log.info("factory running (method %s, waves of up to %d)", self.method, self.wave_size)
        while not stop_event.is_set():
            try:
                self.run_once()
            except Exception:  # a bad pass must not stop the factory; the next one retries
                log.exception("pass failed")
            stop_event.wait(tick_seconds)
        log.info("factory stopped with %d jobs in progress", len(self.jobs))

    # Learning what changed ---------------------------------------------------------------------

    def resync(self) -> None:
        """Pick up the jobs in progress (after a restart the factory remembers nothing)."""
        since = self.now() - self.resync_lookback
        for job in self.client.iter_jobs(updated_since=since):
            self._adopt(job)
        self.synced = True
        log.info("resynced: %d jobs in progress", len(self.jobs))

    def follow_changes(self, max_pages: int = 10) -> None:
        for _ in range(max_pages):
            try:
                page = self.client.changes(self.cursor, limit=100)
            except WarehouseError as exc:
                if exc.error != "invalid_cursor":
                    raise
                # The server forgot our cursor (e.g. a fresh local stack): start over.
                log.warning("change feed cursor no longer valid; resyncing from scratch")
                self.cursor, self.synced = None, False
                return
            entries = page.get("entries") or []
            stale: dict[str, None] = {}  # ordered set: refresh each job once per page
            for entry in entries:
                job_id = entry["job_id"]
                # An intercept for a job not in memory still needs an answer: fetch it.
                if job_id in self.jobs or entry["type"] == "change.intercept_requested":
                    log.info("change feed: %s on %s%s", entry["type"], job_id,
                             _kind(entry.get("change")))
                    stale[job_id] = None
            self.cursor = page.get("next_cursor") or self.cursor
            for job_id in stale:
                self._refresh(job_id)
            if len(entries) < 100:
                return

    # Stages -------------------------------------------------------------------------------------

    def claim(self) -> None:
        room = min(100, self.max_in_flight - len(self.jobs))
        if room <= 0:
            return
        # Long-poll only when idle: a waiting claim would hold up the jobs in progress.
        wait = 0 if self.jobs else self.idle_wait_seconds
        result = self.client.claim(room, lease_seconds=self.lease_seconds, wait_seconds=wait)
        for job in result.get("jobs") or []:
            lease = result.get("lease_id") or job.get("lease_id")
            self.jobs[job["job_id"]] = Tracked(job, "accept", self.clock(), lease_id=lease)
        if result.get("jobs"):
            log.info("claimed %d offers", len(result["jobs"]))

    def resolve_open_changes(self) -> None:
        for tracked in list(self.jobs.values()):
            for change in open_changes(tracked.job):
                try:
                    self._resolve(tracked, change)
                except WarehouseError as exc:
                    self._on_error(tracked, "resolve", exc)
                    break

    def print_waves(self) -> None:
        ready = [t for t in self.jobs.values() if t.stage == "print" and self._ready(t)]
        for start in range(0, len(ready), self.wave_size):
            self._print_wave(ready[start:start + self.wave_size])

    def _advance(self, stage: str, action: Callable[[Tracked], None]) -> None:
        for tracked in [t for t in self.jobs.values() if t.stage == stage and self._ready(t)]:
            try:
                action(tracked)
            except WarehouseError as exc:
                self._on_error(tracked, stage, exc)

    def _ready(self, tracked: Tracked) -> bool:
        now = self.clock()
        return (now - tracked.since >= self.steps[tracked.stage] and now >= tracked.not_before
                and not open_changes(tracked.job))

    # Actions ----------------------------------------------------------------------------------

    def _accept(self, tracked: Tracked) -> None:
        job_id = tracked.job["job_id"]
        if not tracked.lease_id:
            self._forget(job_id, "no lease to accept it with")
            return
        try:
            job = self.client.accept(job_id, tracked.lease_id)
        except WarehouseError as exc:
            if exc.status == 409 or exc.status == 404:
                # The lease is gone (expired, or the offer was withdrawn): claim will re-offer.
                self._forget(job_id, f"accept refused: {exc.error}")
                return
            raise
        log.info("accepted %s (%s)", job_id, job.get("order_name", "?"))
        self._adopt(job)

    def _print_wave(self, batch: Sequence[Tracked]) -> None:
        ids = [t.job["job_id"] for t in batch]
        try:
            wave = self.client.create_wave(ids, self.method)
        except WarehouseError as exc:
            self._wave_refused(batch, exc)
            return
        count = len(wave["job_ids"])
        log.info("printed wave %s (%d job%s, %s)", wave["wave_id"], count,
                 "" if count == 1 else "s", _pick_summary(wave))
        issued = wave.get("waybills") or {}  # electronic waybills the print gate took
        for job_id in wave["job_ids"]:
            tracked = self.jobs.get(job_id)
            if tracked is None:
                continue
            tracked.job["work"] = "printed"  # the wave printed it; saves a GET per job
            self._enter(tracked, "pick")
            numbers = [w["waybill_number"] for w in issued.get(job_id, [])]
            tracked.waybill = numbers[0] if numbers else self._own_number(tracked.job)
        if issued and self.labels_dir is not None:
            paths = save_labels((w for ws in issued.values() for w in ws), self.labels_dir)
            log.info("saved %d label(s) in %s", len(paths), self.labels_dir)

    def _wave_refused(self, batch: Sequence[Tracked], exc: WarehouseError) -> None:
        ids = [t.job["job_id"] for t in batch]
        if exc.status != 409:
            log.warning("wave of %d jobs failed: %s; retrying later", len(ids), exc)
            for tracked in batch:
                tracked.not_before = self.clock() + self.retry_seconds
            return
        blocked = _named_jobs(exc.details) & set(ids) or set(ids)
        log.info("wave refused (%s) for %s; retrying later", exc.error, ", ".join(sorted(blocked)))
        for job_id in blocked:
            self._hold(job_id)
        rest = [t for t in batch if t.job["job_id"] not in blocked]
        if rest:
            self._print_wave(rest)  # all or nothing: the others can go without the blocked

    def _relabel(self, tracked: Tracked) -> None:
        own = self._own_number(tracked.job)
        job = self.client.print_job(tracked.job["job_id"],
                                    waybill_numbers=[own] if own else None)
        # The print gate's new waybill (it gave the old one back), when it issues them.
        issued: list[dict[str, Any]] = cast(dict[str, Any], job).get("waybills") or []
        if issued and self.labels_dir is not None:
            save_labels(issued, self.labels_dir)
        waybill = own or _printed_waybill(job)
        log.info("relabelled %s (new waybill %s)", job["job_id"], waybill)
        tracked.waybill = waybill
        self._adopt(job)

    def _pick(self, tracked: Tracked) -> None:
        job = self.client.pick(tracked.job["job_id"])
        log.info("picked %s (%d items)", job["job_id"], _units(job))
        self._adopt(job)

    def _pack(self, tracked: Tracked) -> None:
        grams = self._weight(tracked.job)
        job = self.client.pack(tracked.job["job_id"], grams,
                               packages=[_packed_items(tracked.job)])
        log.info("packed %s (%d g, 1 parcel)", job["job_id"], grams)
        self._adopt(job)

    def _ship(self, tracked: Tracked) -> None:
        carrier = carrier_code(tracked.job)
        tracked.shipment_id = tracked.shipment_id or new_shipment_id()
        if not self.own_numbers:
            # The electronic waybills the print gate issued ship as they are: no numbers of ours.
            job = self.client.ship(tracked.job["job_id"], None,
                                   shipment_id=tracked.shipment_id, final=True)
            numbers = [p["tracking_number"] for s in job.get("shipments") or []
                       for p in s.get("packages") or []]
            log.info("shipped %s %s %s (issued at print)", job["job_id"], carrier,
                     ", ".join(numbers))
            self._adopt(job)
            return
        tracking = (tracked.waybill or _printed_waybill(tracked.job)
                    or self._tracking_number(carrier))
        tracked.waybill = tracking
        package: Package = {"carrier_code": carrier, "tracking_number": tracking}
        job = self.client.ship(tracked.job["job_id"], [package],
                               shipment_id=tracked.shipment_id, final=True)
        log.info("shipped %s %s %s", job["job_id"], carrier, tracking)
        self._adopt(job)

    def _resolve(self, tracked: Tracked, change: Change) -> None:
        job_id = tracked.job["job_id"]
        failed = self.rng.random() < self.intercept_failure_rate
        reprint = not failed and change.get("kind") in REPRINT_KINDS
        note = ("simulated: parcel already with the courier" if failed
                else "simulated: pulled back from the line")
        job = self.client.resolve_change(job_id, change["change_id"],
                                         "failed" if failed else "intercepted",
                                         reprint=reprint, note=note)
        log.info("%s %s change %s on %s%s", "intercept failed for" if failed else "intercepted",
                 change.get("kind"), change["change_id"], job_id, "; reprint" if reprint else "")
        self._adopt(job)

    # Bookkeeping ------------------------------------------------------------------------------

    def _adopt(self, job: Job) -> None:
        """Take the server's view of a job; a new stage restarts that stage's clock."""
        job_id = job["job_id"]
        stage = stage_of(job)
        tracked = self.jobs.get(job_id)
        if stage is None:
            if tracked is not None:
                del self.jobs[job_id]
                if job.get("work") != "shipped":
                    log.info("dropped %s (%s, %s)", job_id, job.get("handshake"),
                             job.get("work"))
            return
        if tracked is None:
            # Only claim brings in offers: accepting one needs the lease that claimed it.
            if stage != "accept":
                self.jobs[job_id] = Tracked(job, stage, self.clock())
            return
        tracked.job = job
        if tracked.stage != stage:
            self._enter(tracked, stage)

    def _enter(self, tracked: Tracked, stage: str) -> None:
        tracked.stage = stage
        tracked.since = self.clock()
        if stage == "print":
            tracked.waybill = None  # a reprint gets a new label

    def _refresh(self, job_id: str) -> None:
        try:
            job = self.client.get_job(job_id)
        except WarehouseError as exc:
            if exc.status == 404:
                self._forget(job_id, "not found")
            else:
                log.warning("could not refresh %s: %s", job_id, exc)
            return
        self._adopt(job)

    def _hold(self, job_id: str) -> None:
        self._refresh(job_id)
        tracked = self.jobs.get(job_id)
        if tracked is not None:
            tracked.not_before = self.clock() + self.retry_seconds

    def _on_error(self, tracked: Tracked, stage: str, exc: WarehouseError) -> None:
        job_id = tracked.job["job_id"]
        log.warning("%s %s refused: %s; retrying later", stage, job_id, exc)
        if exc.status == 404:
            self._forget(job_id, "not found")
        elif exc.status == 409:
            self._hold(job_id)  # the server knows better: take its state, try again later
        else:
            tracked.not_before = self.clock() + self.retry_seconds

    def _forget(self, job_id: str, why: str) -> None:
        if self.jobs.pop(job_id, None) is not None:
            log.info("forgot %s (%s)", job_id, why)

    def _own_number(self, job: Job) -> str | None:
        """A number of the factory's own for the job's label, or None when the print gate
        issues them."""
        return self._tracking_number(carrier_code(job)) if self.own_numbers else None

    def _tracking_number(self, carrier: str) -> str:
        make = self.carriers.get(carrier) or (lambda rng: _digits(rng, 12))
        return make(self.rng)

    def _weight(self, job: Job) -> int:
        """Carton plus a few hundred grams per unit: plausible for garments."""
        return 150 + sum(self.rng.randint(250, 450) for _ in range(max(1, _units(job))))


def _packed_items(job: Job) -> list[PackedItem]:
    """One parcel holding exactly the job's lines (a careful packer), summed per SKU."""
    counts: dict[str, int] = {}
    for line in job.get("lines") or []:
        counts[line["sku"]] = counts.get(line["sku"], 0) + int(line["quantity"])
    return [{"sku": sku, "quantity": quantity} for sku, quantity in counts.items()]


def _units(job: Job) -> int:
    return sum(int(line.get("quantity", 0)) for line in job.get("lines") or [])


def _printed_waybill(job: Job) -> str | None:
    printed = job.get("printed") or None
    numbers = printed.get("waybill_numbers") if printed else None
    return numbers[0] if numbers else None


def _pick_summary(wave: Wave) -> str:
    if wave["method"] == "batch":
        return f"batch pick list of {len(wave.get('pick_list') or [])} SKUs"
    lines = sum(len(slot.get("lines") or []) for slot in wave.get("sort_list") or [])
    return f"pick-by-order list of {lines} lines"


def _kind(change: Change | None) -> str:
    return f" ({change.get('kind')})" if change else ""


def _named_jobs(details: Mapping[str, Any]) -> set[str]:
    """The job ids a 409 names. The contract says it names them, not under which key."""
    named: set[str] = set()
    for key in ("job_ids", "jobs", "blocked", "blocked_job_ids"):
        named.update(_ids(details.get(key)))
    return named


def _ids(value: object) -> Iterable[str]:
    if isinstance(value, dict):  # {job_id: reason}
        return [str(key) for key in value]
    if not isinstance(value, list):
        return []
    return [item if isinstance(item, str) else str(item.get("job_id"))
            for item in value if isinstance(item, str | dict)]
