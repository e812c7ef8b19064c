"""Courier tracking's model: the two normalised axes, one scan, and what we know of a parcel.
Pure: no I/O.

Axes (protocols.md §3): a shipment *status* (where the parcel is) and zero or more open
*exceptions* (what is wrong). Provider adapters (couriers/) map their codes onto both; the rules
add the exceptions no courier reports (not picked up, stalled, probably lost, ...).

The rules over this model, one module each, each using only those above it:
- fold.py, `apply_events(journey, events)`: the facts, the scans folded from scratch;
- thresholds.py, `computed_exceptions(journey, now, thresholds)`: the judgement against the
  clock and the counts; `update(...)` runs both;
- polling.py, `next_poll_at(...)`: when to spend the next provider query on this number;
- watch.py: how one number is followed at its provider, the steps the tracker calls.
Each reports what changed as `JourneyChange` records (`changes_between`), for the alert and outcome
layers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
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
# failed attempt is not a case, the second is (whatever the day); a held parcel becomes a stall. A
# return is the after-sales case the returning/returned *status* opens, not a second CS case.
ALERT_KINDS = frozenset(K) - frozenset({
    K.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE, K.HELD_AT_FACILITY, K.CARRIER_TRANSFER,
    K.CARRIER_DELAY, K.PROVIDER_STALLED, K.RETURN_TO_SENDER,
})
# A failed doorstep attempt, counted for the "second attempt" rule.
ATTEMPT_FAILURES = frozenset({K.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE})

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


# Journey ---------------------------------------------------------------------------------------

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


class Journey(BaseModel):
    """What we know of one parcel's journey with its courier: the scans, and what they and the
    clock say. Fields below `events` are derived from the events by `apply_events`.

    Not the warehouse's ship report (chalicelib/warehouse/jobs.py `Shipment`); a tracked parcel
    still stores it under its `shipment` key (chalicelib/tracking/parcels.py `Parcel`)."""

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

    @property
    def kinds_seen(self) -> frozenset[ExceptionKind]:
        """Every exception kind the journey has had that it still shows: the couriers' (kept on
        their scans), a regression, a second failed attempt, and the computed ones still open
        (a stall that a new scan ended leaves no trace here: its CS case keeps it)."""
        kinds = {kind for event in self.events for kind in event.exceptions} | self.open_kinds
        if self.regressions:
            kinds.add(K.STATUS_REGRESSION)
        if len(self.failed_attempts) >= 2:
            kinds.add(K.REPEATED_DELIVERY_FAILURE)
        return frozenset(kinds)


def local_day(moment: datetime, utc_offset_minutes: int) -> date:
    return moment.astimezone(timezone(timedelta(minutes=utc_offset_minutes))).date()


class JourneyChange(BaseModel):
    """One thing that changed in a journey, for the timeline, the alert layer and the outcome
    layer (not a change request on a job: chalicelib/warehouse/jobs.py `Change`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["status", "exception_opened", "exception_resolved"]
    at: datetime
    status: ShipmentStatus | None = None
    previous_status: ShipmentStatus | None = None
    exception: OpenException | None = None
    reason: str = ""


def changes_between(before: Journey, after: Journey, reasons: Mapping[ExceptionKind, str],
                    at: datetime) -> tuple[JourneyChange, ...]:
    """What changed from `before` to `after`; `reasons` says why a kind ended (else: superseded,
    or "cleared"). Both the fold and the clock's judgement report through this one record."""
    changes: list[JourneyChange] = []
    if after.status is not before.status:
        changes.append(JourneyChange(type="status", at=after.status_since or at,
                                     status=after.status, previous_status=before.status))
    old = {exc.kind: exc for exc in before.open_exceptions}
    new = {exc.kind: exc for exc in after.open_exceptions}
    for kind, exc in old.items():
        if kind not in new:
            reason = reasons.get(kind) or superseded_reason(kind, new.values()) or "cleared"
            changes.append(JourneyChange(type="exception_resolved", at=at, exception=exc,
                                         reason=reason))
    for kind, exc in new.items():
        if kind not in old:
            changes.append(JourneyChange(type="exception_opened", at=exc.opened_at, exception=exc))
    return tuple(changes)


def superseded_reason(kind: ExceptionKind, opened: Iterable[OpenException]) -> str | None:
    """The reason an exception ended when an escalation of it opened (the same CS case)."""
    for exc in opened:
        if exc.supersedes is kind:
            return f"superseded by {exc.kind.value}"
    return None
