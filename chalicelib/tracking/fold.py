"""The facts: a parcel's scans folded into its status, its dates and the exceptions its
courier reports. Pure: no I/O.

`apply_events(journey, events)` deduplicates events by `event_id`, orders them by the courier's
scan time and folds them from scratch, so any order, batching or repetition of the same events
gives the same journey. A status that goes backwards is kept and flagged (status_regression).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from chalicelib.tracking.model import (
    ATTEMPT_FAILURES,
    FINISHED,
    NEUTRAL,
    ExceptionKind,
    Journey,
    JourneyChange,
    OpenException,
    Regression,
    ShipmentStatus,
    TrackingEvent,
    changes_between,
    event_order,
)

S, K = ShipmentStatus, ExceptionKind

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


# Here rather than with the thresholds: a new scan ends a stall at once, so the fold needs it
# (and the clock's judgement uses it for its reasons too).
def ended_by_facts(exc: OpenException, s: Journey) -> str | None:
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


def apply_events(journey: Journey,
                 events: Iterable[TrackingEvent]) -> tuple[Journey, tuple[JourneyChange, ...]]:
    """Add scans (any order, duplicates welcome); return the new journey and what changed."""
    incoming = list(events)
    for event in incoming:
        if event.tracking_number != journey.tracking_number:
            raise ValueError(f"event for {event.tracking_number} applied to "
                             f"{journey.tracking_number}")
    merged = _merge(journey.events, incoming)
    if len(merged) == len(journey.events):
        return journey, ()
    acc = _fold(merged)
    folded = journey.model_copy(update={
        "events": merged, "status": acc.status, "status_since": acc.status_since,
        "last_event_at": acc.last_event_at, "picked_up_at": acc.picked_up_at,
        "delivered_at": acc.delivered_at, "finished_at": acc.finished_at,
        "in_customs": acc.in_customs, "failed_attempts": tuple(acc.failed_attempts),
        "regressions": tuple(acc.regressions),
        "reported": tuple(sorted(acc.open.values(), key=lambda e: e.kind)),
    })
    # A new scan can end a computed condition at once (a stall ends with the next scan).
    reasons = {exc.kind: reason for exc in journey.computed
               if (reason := ended_by_facts(exc, folded)) is not None}
    kept = tuple(exc for exc in journey.computed if exc.kind not in reasons)
    updated = folded.model_copy(update={"computed": kept})
    assert acc.last_event_at is not None  # there is at least one event
    return updated, changes_between(journey, updated, reasons, acc.last_event_at)
