"""Courier tracking: the two normalised axes and the pure rules over them. No I/O.

Axes (protocols.md §3): a shipment *status* (where the parcel is) and zero or more open
*exceptions* (what is wrong). Provider adapters map their codes onto both; the rules here add the
exceptions no courier reports (not picked up, stalled, probably lost, ...).

Three pure steps, called by the push handler and the tracking scheduler:
- `apply_events(shipment, events)`: the facts. Events are deduplicated by `event_id`, ordered by
  the courier's scan time and folded from scratch, so any order, batching or repetition of the
  same events gives the same shipment. A status that goes backwards is kept and flagged.
- `computed_exceptions(shipment, now, thresholds)`: the judgement against the clock and the
  counts. Staleness is measured from scan times, never from when a push or poll arrived.
- `next_poll_at(...)`: when to spend the next provider query on this number.
`update(...)` runs the first two and returns every change for the alert and outcome layers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from chalicelib.core.clock import in_utc


class ShipmentStatus(StrEnum):
    PENDING = "pending"
    INFO_RECEIVED = "info_received"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    OUT_FOR_DELIVERY = "out_for_delivery"
    AVAILABLE_FOR_PICKUP = "available_for_pickup"
    DELIVERY_FAILED = "delivery_failed"
    DELIVERED = "delivered"
    RETURNING = "returning"
    RETURNED = "returned"
    CANCELLED = "cancelled"
    EXCEPTION = "exception"
    TRACKING_STOPPED = "tracking_stopped"


class ExceptionKind(StrEnum):
    # Reported by a provider.
    LOST = "lost"
    DAMAGED = "damaged"
    REFUSAL_INITIATED = "refusal_initiated"
    REFUSED_RETURNED = "refused_returned"
    DELIVERY_FAILED = "delivery_failed"
    RECIPIENT_UNREACHABLE = "recipient_unreachable"
    ADDRESS_ISSUE = "address_issue"
    REDIRECTED = "redirected"
    CARRIER_TRANSFER = "carrier_transfer"
    RETURN_TO_SENDER = "return_to_sender"
    PICKUP_UNCOLLECTED = "pickup_uncollected"
    HELD_AT_FACILITY = "held_at_facility"
    CUSTOMS_ISSUE = "customs_issue"
    CARRIER_DELAY = "carrier_delay"
    INVALID_TRACKING = "invalid_tracking"
    PROVIDER_STALLED = "provider_stalled"
    OTHER = "other"
    # Computed by us.
    REPEATED_DELIVERY_FAILURE = "repeated_delivery_failure"
    NOT_PICKED_UP = "not_picked_up"
    STALLED_NO_SCAN = "stalled_no_scan"
    PROBABLY_LOST = "probably_lost"
    LATE_VS_PROMISE = "late_vs_promise"
    STATUS_REGRESSION = "status_regression"


S = ShipmentStatus
K = ExceptionKind

FINISHED = frozenset({S.DELIVERED, S.RETURNED, S.CANCELLED})
# Statuses that say something is wrong or unknown, not where the parcel is.
NEUTRAL = frozenset({S.EXCEPTION, S.TRACKING_STOPPED})
COMPUTED_KINDS = frozenset({
    K.REPEATED_DELIVERY_FAILURE, K.NOT_PICKED_UP, K.STALLED_NO_SCAN, K.PROBABLY_LOST,
    K.LATE_VS_PROMISE, K.STATUS_REGRESSION,
})
# Kinds CS must hear about at once (domain.md: lost, address change, nobody home on the second
# attempt, refused). The rest are kept for the record and escalate through a computed kind: one
# failed attempt is not a case, the second on another day is; a held parcel becomes a stall. A
# return is the after-sales case the returning/returned *status* opens, not a second CS case.
ALERT_KINDS = frozenset(K) - frozenset({
    K.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE, K.HELD_AT_FACILITY, K.CARRIER_TRANSFER,
    K.CARRIER_DELAY, K.PROVIDER_STALLED, K.RETURN_TO_SENDER,
})
# A failed doorstep attempt, counted per local day for the "second attempt" rule.
ATTEMPT_FAILURES = frozenset({K.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE})

_FORWARD_RANK = {
    S.PENDING: 0, S.INFO_RECEIVED: 1, S.PICKED_UP: 2, S.IN_TRANSIT: 3,
    S.OUT_FOR_DELIVERY: 4, S.AVAILABLE_FOR_PICKUP: 4, S.DELIVERY_FAILED: 4, S.DELIVERED: 5,
}
_LAST_MILE_RANK = 4
_PICKED_UP_RANK = 2
# After "returning", couriers report the trip back with ordinary transit scans.
_RETURN_TRIP = frozenset({S.PICKED_UP, S.IN_TRANSIT, S.OUT_FOR_DELIVERY})
# Provider-reported kinds a later movement scan clears (the parcel moved on).
_CLEARED_BY_MOVEMENT = frozenset({
    K.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE, K.HELD_AT_FACILITY, K.CARRIER_DELAY,
    K.CUSTOMS_ISSUE, K.PROVIDER_STALLED, K.INVALID_TRACKING, K.ADDRESS_ISSUE, K.LOST, K.OTHER,
})
_SUPERSEDES = {K.REFUSED_RETURNED: K.REFUSAL_INITIATED}

CHINA_UTC_OFFSET_MINUTES = 8 * 60


# Events ----------------------------------------------------------------------------------------

class TrackingEvent(BaseModel):
    """One courier scan, normalised. `occurred_at` is the courier's scan time."""

    # extra="ignore": the dumped form carries the computed `event_id`, and must load back.
    model_config = ConfigDict(frozen=True, extra="ignore")

    provider: str = Field(min_length=1)
    carrier_code: str
    tracking_number: str = Field(min_length=1)
    occurred_at: datetime
    status: ShipmentStatus
    exceptions: tuple[ExceptionKind, ...] = ()
    raw_code: str = ""
    description: str = ""
    location: str = ""
    customs: bool = False  # the scan places the parcel in customs

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return in_utc(value)

    @field_validator("exceptions")
    @classmethod
    def _sorted_kinds(cls, kinds: tuple[ExceptionKind, ...]) -> tuple[ExceptionKind, ...]:
        return tuple(sorted(set(kinds)))  # stable storage form, whatever order the mapping gave

    @computed_field  # type: ignore[prop-decorator]
    @property
    def event_id(self) -> str:
        """Stable across re-deliveries: pushes repeat the whole history every time."""
        key = "\x1f".join((self.provider, self.tracking_number,
                           self.occurred_at.isoformat(), self.raw_code, self.description))
        return hashlib.sha256(key.encode()).hexdigest()[:32]


def event_order(event: TrackingEvent) -> tuple[datetime, str]:
    return event.occurred_at, event.event_id


# Shipment --------------------------------------------------------------------------------------

class OpenException(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ExceptionKind
    opened_at: datetime  # when the condition began (scan time, or threshold crossing)
    source: Literal["provider", "computed"]
    event_id: str | None = None
    basis_at: datetime | None = None  # computed: the scan or hand-over time it is measured from
    supersedes: ExceptionKind | None = None  # an escalation of this kind (the same CS case)

    @field_validator("opened_at", "basis_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else in_utc(value)

    @property
    def alerts(self) -> bool:
        return self.kind in ALERT_KINDS


class Regression(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    from_status: ShipmentStatus
    to_status: ShipmentStatus
    at: datetime
    event_id: str


class Shipment(BaseModel):
    """A tracked parcel. Fields below `events` are derived from the events by `apply_events`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    carrier_code: str
    tracking_number: str = Field(min_length=1)
    handed_over_at: datetime | None = None
    promised_by: datetime | None = None
    # The recipient's zone: "different days" for failed attempts are local days.
    utc_offset_minutes: int = Field(default=CHINA_UTC_OFFSET_MINUTES, ge=-14 * 60, le=14 * 60)
    events: tuple[TrackingEvent, ...] = ()
    status: ShipmentStatus = S.PENDING
    status_since: datetime | None = None
    last_event_at: datetime | None = None
    picked_up_at: datetime | None = None
    delivered_at: datetime | None = None
    finished_at: datetime | None = None
    in_customs: bool = False
    failed_attempts: tuple[datetime, ...] = ()
    regressions: tuple[Regression, ...] = ()
    reported: tuple[OpenException, ...] = ()  # from the events (providers, regressions)
    computed: tuple[OpenException, ...] = ()  # from the clock and counts

    @field_validator("handed_over_at", "promised_by")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else in_utc(value)

    @property
    def open_exceptions(self) -> tuple[OpenException, ...]:
        by_kind: dict[ExceptionKind, OpenException] = {}
        for exc in sorted(self.reported + self.computed, key=lambda e: e.opened_at):
            by_kind.setdefault(exc.kind, exc)
        return tuple(sorted(by_kind.values(), key=lambda e: e.kind))

    @property
    def open_kinds(self) -> frozenset[ExceptionKind]:
        return frozenset(exc.kind for exc in self.reported + self.computed)

    @property
    def failed_attempts_per_day(self) -> dict[date, int]:
        counts: dict[date, int] = {}
        for at in self.failed_attempts:
            day = local_day(at, self.utc_offset_minutes)
            counts[day] = counts.get(day, 0) + 1
        return counts

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def local_day(moment: datetime, utc_offset_minutes: int) -> date:
    return moment.astimezone(timezone(timedelta(minutes=utc_offset_minutes))).date()


class Change(BaseModel):
    """One thing that changed, for the timeline, the alert layer and the outcome layer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["status", "exception_opened", "exception_resolved"]
    at: datetime
    status: ShipmentStatus | None = None
    previous_status: ShipmentStatus | None = None
    exception: OpenException | None = None
    reason: str = ""


def changes_between(before: Shipment, after: Shipment, reasons: Mapping[ExceptionKind, str],
                    at: datetime) -> tuple[Change, ...]:
    """What changed from `before` to `after`; `reasons` says why a kind ended (else: superseded,
    or "cleared"). Both the fold and the clock's judgement report through this one record."""
    changes: list[Change] = []
    if after.status is not before.status:
        changes.append(Change(type="status", at=after.status_since or at, status=after.status,
                              previous_status=before.status))
    old = {exc.kind: exc for exc in before.open_exceptions}
    new = {exc.kind: exc for exc in after.open_exceptions}
    for kind, exc in old.items():
        if kind not in new:
            reason = reasons.get(kind) or superseded_reason(kind, new.values()) or "cleared"
            changes.append(Change(type="exception_resolved", at=at, exception=exc, reason=reason))
    for kind, exc in new.items():
        if kind not in old:
            changes.append(Change(type="exception_opened", at=exc.opened_at, exception=exc))
    return tuple(changes)


def superseded_reason(kind: ExceptionKind, opened: Iterable[OpenException]) -> str | None:
    """The reason an exception ended when an escalation of it opened (the same CS case)."""
    for exc in opened:
        if exc.supersedes is kind:
            return f"superseded by {exc.kind.value}"
    return None



# apply_events: the fold -------------------------------------------------------------------------

@dataclass
class _Fold:
    """Accumulator while replaying the history in scan-time order."""

    status: ShipmentStatus = S.PENDING
    progress: ShipmentStatus | None = None  # last non-neutral status
    furthest: int = -1  # furthest forward rank reached
    status_since: datetime | None = None
    last_event_at: datetime | None = None
    picked_up_at: datetime | None = None
    delivered_at: datetime | None = None
    finished_at: datetime | None = None
    in_customs: bool = False
    failed_attempts: list[datetime] = field(default_factory=list)
    regressions: list[Regression] = field(default_factory=list)
    open: dict[ExceptionKind, OpenException] = field(default_factory=dict)


def _regresses(progress: ShipmentStatus | None, furthest: int, new: ShipmentStatus) -> bool:
    if progress is None or new in NEUTRAL:
        return False
    if progress in FINISHED:
        return new != progress  # delivered -> returning is the case the issue names
    if progress is S.RETURNING or new not in _FORWARD_RANK:
        return False  # the trip back, or entering the return branch: exceptions say why
    # Back from the last mile to the depot after a failed attempt is routine, not a regression.
    slack = 1 if furthest == _LAST_MILE_RANK else 0
    return _FORWARD_RANK[new] < furthest - slack


def _is_failed_attempt(event: TrackingEvent) -> bool:
    if ATTEMPT_FAILURES & set(event.exceptions):
        return True
    return event.status is S.DELIVERY_FAILED and not event.exceptions


def _clears(kind: ExceptionKind, event: TrackingEvent) -> bool:
    if kind in event.exceptions or event.status in NEUTRAL:
        return False
    if kind in _CLEARED_BY_MOVEMENT:
        return True
    if kind is K.PICKUP_UNCOLLECTED:
        return event.status is not S.AVAILABLE_FOR_PICKUP
    return kind is K.REFUSAL_INITIATED and event.status is S.DELIVERED


def _open(acc: _Fold, kind: ExceptionKind, event: TrackingEvent) -> None:
    if kind in acc.open:
        return
    superseded = _SUPERSEDES.get(kind)
    if superseded is not None and acc.open.pop(superseded, None) is None:
        superseded = None
    acc.open[kind] = OpenException(kind=kind, opened_at=event.occurred_at, source="provider",
                                   event_id=event.event_id, supersedes=superseded)


def _step_status(acc: _Fold, event: TrackingEvent) -> None:
    status = event.status
    if status in NEUTRAL:
        if acc.progress is not None and acc.progress in FINISHED:
            status = acc.progress  # a problem report after delivery does not un-deliver it
    else:
        if acc.progress is S.RETURNING and status in _RETURN_TRIP:
            status = S.RETURNING
        acc.progress = status
        acc.furthest = max(acc.furthest, _FORWARD_RANK.get(status, -1))
    if status is not acc.status or acc.status_since is None:
        acc.status, acc.status_since = status, event.occurred_at


def _step(acc: _Fold, event: TrackingEvent) -> None:
    if _regresses(acc.progress, acc.furthest, event.status):
        assert acc.progress is not None
        acc.regressions.append(Regression(from_status=acc.progress, to_status=event.status,
                                          at=event.occurred_at, event_id=event.event_id))
        _open(acc, K.STATUS_REGRESSION, event)
    for cleared in [k for k in acc.open if _clears(k, event) and k is not K.STATUS_REGRESSION]:
        del acc.open[cleared]
    for reported in event.exceptions:
        _open(acc, reported, event)
    _step_status(acc, event)
    at = event.occurred_at
    acc.last_event_at = at
    if event.status not in NEUTRAL or event.customs:
        acc.in_customs = event.customs  # a bare problem report does not move the parcel
    rank = _FORWARD_RANK.get(event.status, -1)
    if acc.picked_up_at is None and (rank >= _PICKED_UP_RANK or event.status is S.RETURNING):
        acc.picked_up_at = at
    if acc.delivered_at is None and event.status is S.DELIVERED:
        acc.delivered_at = at
    if acc.finished_at is None and event.status in FINISHED:
        acc.finished_at = at
    if _is_failed_attempt(event):
        acc.failed_attempts.append(at)


def _fold(events: Sequence[TrackingEvent]) -> _Fold:
    acc = _Fold()
    for event in events:
        _step(acc, event)
    return acc


def _merge(existing: Sequence[TrackingEvent],
           incoming: Iterable[TrackingEvent]) -> tuple[TrackingEvent, ...]:
    by_id = {event.event_id: event for event in existing}
    for event in incoming:
        by_id.setdefault(event.event_id, event)
    return tuple(sorted(by_id.values(), key=event_order))


def ended_by_facts(exc: OpenException, s: Shipment) -> str | None:
    """Why a computed exception no longer holds given the scans alone (no clock needed)."""
    newer_scan = (exc.basis_at is not None and s.last_event_at is not None
                  and s.last_event_at > exc.basis_at)
    if exc.kind in (K.STALLED_NO_SCAN, K.PROBABLY_LOST):
        return "new scan" if newer_scan else ("finished" if s.finished_at else None)
    if exc.kind is K.NOT_PICKED_UP:
        return "picked up" if s.picked_up_at or s.finished_at else None
    if exc.kind is K.PICKUP_UNCOLLECTED:
        left = s.status is not S.AVAILABLE_FOR_PICKUP or s.status_since != exc.basis_at
        return "left the pickup point" if left else None
    if exc.kind is K.LATE_VS_PROMISE:
        return "delivered" if s.delivered_at or s.finished_at else None
    if exc.kind is K.REPEATED_DELIVERY_FAILURE:
        return "finished" if s.finished_at else None
    return None


def apply_events(shipment: Shipment,
                 events: Iterable[TrackingEvent]) -> tuple[Shipment, tuple[Change, ...]]:
    """Add scans (any order, duplicates welcome); return the new shipment and what changed."""
    incoming = list(events)
    for event in incoming:
        if event.tracking_number != shipment.tracking_number:
            raise ValueError(f"event for {event.tracking_number} applied to "
                             f"{shipment.tracking_number}")
    merged = _merge(shipment.events, incoming)
    if len(merged) == len(shipment.events):
        return shipment, ()
    acc = _fold(merged)
    folded = shipment.model_copy(update={
        "events": merged, "status": acc.status, "status_since": acc.status_since,
        "last_event_at": acc.last_event_at, "picked_up_at": acc.picked_up_at,
        "delivered_at": acc.delivered_at, "finished_at": acc.finished_at,
        "in_customs": acc.in_customs, "failed_attempts": tuple(acc.failed_attempts),
        "regressions": tuple(acc.regressions),
        "reported": tuple(sorted(acc.open.values(), key=lambda e: e.kind)),
    })
    # A new scan can end a computed condition at once (a stall ends with the next scan).
    reasons = {exc.kind: reason for exc in shipment.computed
               if (reason := ended_by_facts(exc, folded)) is not None}
    kept = tuple(exc for exc in shipment.computed if exc.kind not in reasons)
    updated = folded.model_copy(update={"computed": kept})
    assert acc.last_event_at is not None  # there is at least one event
    return updated, changes_between(shipment, updated, reasons, acc.last_event_at)
