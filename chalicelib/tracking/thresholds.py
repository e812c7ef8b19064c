"""The judgement against the clock and the counts: when a computed exception opens and ends.
Pure: no I/O.

`computed_exceptions(journey, now, thresholds)` opens the exceptions no courier reports (not
picked up, stalled, probably lost, uncollected, late, a second failed attempt) and ends those
that no longer hold. Staleness is measured from scan times, never from when a push or poll
arrived. `update` applies scans and then judges: what a push or a poll should call.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from chalicelib.core.clock import in_utc
from chalicelib.tracking.fold import apply_events, ended_by_facts
from chalicelib.tracking.model import (
    ExceptionKind,
    Journey,
    JourneyChange,
    OpenException,
    ShipmentStatus,
    TrackingEvent,
    changes_between,
    superseded_reason,
)

S, K = ShipmentStatus, ExceptionKind


class StageThresholds(BaseModel):
    """When a computed exception opens. Defaults are the issue's; operators may override any."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    not_picked_up: timedelta = timedelta(hours=24)  # after hand-over, no pick-up scan
    stalled_in_transit: timedelta = timedelta(hours=24)
    stalled_out_for_delivery: timedelta = timedelta(hours=12)
    stalled_in_customs: timedelta = timedelta(hours=48)
    probably_lost: timedelta = timedelta(days=5)  # without any scan, in any stalled stage
    uncollected_at_pickup_point: timedelta = timedelta(hours=48)
    late_grace: timedelta = timedelta(0)  # after promised_by
    # Failed doorstep attempts that open a case, whatever day each fell on (handbook: nobody
    # home on the second attempt is CS's problem, even when the courier came back the same
    # evening). Still read under its old name, which counted distinct days instead.
    repeated_failures: int = Field(default=2, ge=2, validation_alias=AliasChoices(
        "repeated_failures", "repeated_failure_days"))


class Thresholds(BaseModel):
    """Defaults plus per-courier overrides (a courier entry replaces the whole stage set)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: StageThresholds = StageThresholds()
    per_carrier: dict[str, StageThresholds] = {}

    @field_validator("per_carrier")
    @classmethod
    def _upper_codes(cls, value: dict[str, StageThresholds]) -> dict[str, StageThresholds]:
        return {code.upper(): th for code, th in value.items()}

    def for_carrier(self, carrier_code: str) -> StageThresholds:
        return self.per_carrier.get(carrier_code.upper(), self.default)


DEFAULT_THRESHOLDS = Thresholds()


def stall_limit(journey: Journey, th: StageThresholds) -> timedelta | None:
    """How long without a scan is a stall here; None where a stall means nothing."""
    if journey.finished or journey.last_event_at is None:
        return None
    if journey.status in (S.PENDING, S.INFO_RECEIVED, S.AVAILABLE_FOR_PICKUP):
        return None  # not picked up / uncollected have their own rules
    if journey.in_customs:
        return th.stalled_in_customs
    if journey.status is S.OUT_FOR_DELIVERY:
        return th.stalled_out_for_delivery
    return th.stalled_in_transit


# computed_exceptions ----------------------------------------------------------------------------

class ComputedExceptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    evaluated_at: datetime
    opened: tuple[OpenException, ...] = ()
    resolved: tuple[ExceptionKind, ...] = ()


def _computed(kind: ExceptionKind, opened_at: datetime, basis_at: datetime | None,
              supersedes: ExceptionKind | None = None) -> OpenException:
    return OpenException(kind=kind, opened_at=opened_at, source="computed", basis_at=basis_at,
                         supersedes=supersedes)


def _not_picked_up(s: Journey, now: datetime, th: StageThresholds) -> OpenException | None:
    if s.handed_over_at is None or s.picked_up_at is not None or s.finished_at is not None:
        return None
    due = s.handed_over_at + th.not_picked_up
    return _computed(K.NOT_PICKED_UP, due, s.handed_over_at) if now >= due else None


def _stall_or_lost(s: Journey, now: datetime, th: StageThresholds) -> OpenException | None:
    limit = stall_limit(s, th)
    if limit is None or s.last_event_at is None:
        return None
    lost_at = s.last_event_at + th.probably_lost
    if now >= lost_at:
        return _computed(K.PROBABLY_LOST, lost_at, s.last_event_at, K.STALLED_NO_SCAN)
    stalled_at = s.last_event_at + limit
    return _computed(K.STALLED_NO_SCAN, stalled_at, s.last_event_at) if now >= stalled_at else None


def _uncollected(s: Journey, now: datetime, th: StageThresholds) -> OpenException | None:
    if s.status is not S.AVAILABLE_FOR_PICKUP or s.status_since is None:
        return None
    due = s.status_since + th.uncollected_at_pickup_point
    return _computed(K.PICKUP_UNCOLLECTED, due, s.status_since) if now >= due else None


def _late(s: Journey, now: datetime, th: StageThresholds) -> OpenException | None:
    if s.promised_by is None or s.delivered_at is not None or s.finished_at is not None:
        return None
    due = s.promised_by + th.late_grace
    return _computed(K.LATE_VS_PROMISE, due, s.promised_by) if now >= due else None


def _repeated_failure(s: Journey, th: StageThresholds) -> OpenException | None:
    """Open from the `repeated_failures`-th failed attempt on: the same day counts (the old
    rule asked for attempts on different days, so a courier's second call the same evening
    opened nothing while the buyer was still not at home)."""
    # One attempt scanned twice (two sources, two wordings) has one moment: counted once.
    attempts = sorted(set(s.failed_attempts))
    if s.finished_at is not None or len(attempts) < th.repeated_failures:
        return None
    return _computed(K.REPEATED_DELIVERY_FAILURE, attempts[th.repeated_failures - 1],
                     attempts[0], K.DELIVERY_FAILED)


def _due(s: Journey, now: datetime, th: StageThresholds) -> dict[ExceptionKind, OpenException]:
    found = [_not_picked_up(s, now, th), _stall_or_lost(s, now, th), _uncollected(s, now, th),
             _late(s, now, th), _repeated_failure(s, th)]
    return {exc.kind: exc for exc in found if exc is not None}


def computed_exceptions(journey: Journey, now: datetime,
                        thresholds: Thresholds = DEFAULT_THRESHOLDS) -> ComputedExceptions:
    """Which computed exceptions open and which end at `now` (thresholds inclusive)."""
    now = in_utc(now)
    due = _due(journey, now, thresholds.for_carrier(journey.carrier_code))
    held = {exc.kind for exc in journey.computed}
    reported = {exc.kind for exc in journey.reported}
    opened = tuple(exc for kind, exc in sorted(due.items())
                   if kind not in held and kind not in reported)
    resolved = tuple(sorted(kind for kind in held if kind not in due))
    return ComputedExceptions(evaluated_at=now, opened=opened, resolved=resolved)


def apply_computed(journey: Journey,
                   computed: ComputedExceptions) -> tuple[Journey, tuple[JourneyChange, ...]]:
    gone = set(computed.resolved)
    kept = tuple(exc for exc in journey.computed if exc.kind not in gone)
    updated = journey.model_copy(
        update={"computed": tuple(sorted(kept + computed.opened, key=lambda e: e.kind))})
    reasons = {exc.kind: ended_by_facts(exc, journey) or superseded_reason(
        exc.kind, computed.opened) or "condition ended" for exc in journey.computed
        if exc.kind in gone}
    return updated, changes_between(journey, updated, reasons, computed.evaluated_at)


def update(journey: Journey, events: Iterable[TrackingEvent], now: datetime,
           thresholds: Thresholds = DEFAULT_THRESHOLDS,
           ) -> tuple[Journey, tuple[JourneyChange, ...]]:
    """Apply scans, then judge against the clock: what a push or a poll should call."""
    folded, changes = apply_events(journey, events)
    judged, more = apply_computed(folded, computed_exceptions(folded, now, thresholds))
    return judged, changes + more
