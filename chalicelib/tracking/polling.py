"""When to spend the next provider query on a tracking number: the adaptive polling policy.
Pure: no I/O.

The cadence follows the parcel's stage (`stage_of`, `poll_stage`) and whether pushes are
flowing; every computed exception's deadline (`exception_deadlines`) is a poll of its own, so a
stall is confirmed or cleared by a fresh answer at its threshold. `PollPolicy` says why the
defaults are what they are.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chalicelib.core.clock import in_utc
from chalicelib.tracking.model import (
    FINISHED,
    NEUTRAL,
    ExceptionKind,
    Journey,
    ShipmentStatus,
    local_day,
)
from chalicelib.tracking.thresholds import DEFAULT_THRESHOLDS, Thresholds, stall_limit

S, K = ShipmentStatus, ExceptionKind

Stage = Literal["awaiting_pickup", "in_transit", "customs", "last_mile", "at_pickup_point",
                "problem", "finished"]


def stage_of(journey: Journey) -> Stage:
    status = journey.status
    if status in FINISHED:
        return "finished"
    if journey.in_customs:
        return "customs"
    if status in (S.PENDING, S.INFO_RECEIVED):
        return "awaiting_pickup"
    if status in (S.OUT_FOR_DELIVERY, S.DELIVERY_FAILED):
        return "last_mile"
    if status is S.AVAILABLE_FOR_PICKUP:
        return "at_pickup_point"
    if status in NEUTRAL:
        return "problem"
    return "in_transit"


class PollPolicy(BaseModel):
    """How often to query a number that is not fed by pushes, and the safety net for those that are.

    Why these defaults (bench/tracking_cost.py: at most 1/5 of the queries of a fixed 2-hour poll,
    every exception seen within its threshold + 30 min):
    - Computed exceptions never wait for the cadence: a poll is due at the moment one would open
      (`exception_deadlines`), so a stall is confirmed or cleared by a fresh answer at its
      threshold; detection lags only by the scheduler's tick. Deadlines less than 30 minutes
      apart share one poll, at the latest. A regular poll falling in the 30 minutes before a
      deadline waits for it, except where the regular poll is what sees an attempt in time (the
      last mile, the morning check): the deadline is then checked right after the lock, and
      `update_through_deadlines` still judges it on the scans made up to the deadline.
    - Push-fed parcels: silence is information (the provider pushes every change), so only the
      deadline polls, which already look after at most a day of silence in transit (12 h out
      for delivery) and find any scan the pushes missed, and a safety poll after two days
      without news where no deadline comes sooner: in practice a push-fed parcel is queried
      only when it really stalls. Nothing is queried right after a subscription is accepted:
      the first push is awaited until the stage's regular poll, and only a number that stays
      silent is polled then.
    - Poll-only parcels before the last mile: nothing there needs CS within hours that the
      deadline polls do not catch, so one check a day, at `morning_check` local time: a parcel
      that reached its delivery city overnight is seen before the morning run's attempts.
    - Poll-only parcels in the last mile (out for delivery, after a failed attempt, or last
      scanned in its delivery city: `last_mile_codes`): every 30 min, the provider's lock, as a
      refusal or a second failed attempt must be seen within 30 min; but not in the quiet hours,
      when couriers do not deliver (attempts 08:00-20:00: the last poll before 20:30 falls after
      20:00, and the one at 08:30 sees an attempt made at 08:00), nor for the rest of the day
      after a failed attempt (the courier comes back another day); every 45 min while the parcel
      waits in its delivery city for the run to leave (`run_to_first_door`).
    A normal 2-4 day journey costs ~0 queries when push-fed and ~13.5 when polled (~9.5 of them
    on the delivery day), against ~36 for the baseline. Provider-reported problems on a poll-only
    parcel are seen within 30 min in the last mile, by the next morning before it; only pushes
    see them within minutes everywhere.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_interval: timedelta = timedelta(minutes=30)  # Kuaidi100 locks a number queried faster
    # Poll-only cadence per stage (before the last mile only when there is no morning check).
    awaiting_pickup: timedelta = timedelta(hours=6)
    in_transit: timedelta = timedelta(hours=12)
    customs: timedelta = timedelta(hours=12)
    last_mile: timedelta = timedelta(minutes=30)
    at_pickup_point: timedelta = timedelta(hours=12)
    problem: timedelta = timedelta(hours=2)
    push_safety: timedelta = timedelta(hours=48)
    push_safety_last_mile: timedelta = timedelta(hours=24)
    error_backoff: timedelta = timedelta(minutes=30)  # doubled per consecutive error
    error_backoff_max: timedelta = timedelta(hours=12)
    # Local hours without last-mile polls (couriers do not deliver at night); deadlines still run.
    quiet_from: time = time(20, 30)
    quiet_until: time = time(8, 30)
    # Local time of the daily check of poll-only parcels before the last mile (None: no check,
    # only the stage intervals). A poll less than `min_interval` before it counts as the check.
    morning_check: time | None = time(8, 30)
    # "provider:raw_code" of scans that place a parcel in its delivery city: the last mile
    # begins there for polling (Kuaidi100 1001 到达派件城市, sent when it knows the city).
    last_mile_codes: frozenset[str] = frozenset({"kuaidi100:1001"})
    # After a failed attempt the courier tries again on another day (改日派送, and only an
    # attempt on another day counts towards repeated failure): no last-mile polls for the rest
    # of that day.
    retry_another_day: bool = True
    # Least time from a run's departure scan (派件) to its first doorstep event (loading and the
    # drive): before the run leaves, last-mile polls may be this much further apart.
    run_to_first_door: timedelta = timedelta(minutes=15)


DEFAULT_POLICY = PollPolicy()
# Poll-only stages checked once a day at `morning_check` rather than on a fixed interval.
_DAILY_STAGES = frozenset({"awaiting_pickup", "in_transit", "customs", "at_pickup_point"})


def poll_stage(journey: Journey, policy: PollPolicy = DEFAULT_POLICY) -> Stage:
    """The stage that sets the cadence: `stage_of`, with the delivery city counted as last mile."""
    stage = stage_of(journey)
    if stage != "in_transit" or not policy.last_mile_codes:
        return stage
    # The newest scan that says where the parcel is (a bare problem report does not).
    placed = next((e for e in reversed(journey.events) if e.status not in NEUTRAL), None)
    if placed is not None and f"{placed.provider}:{placed.raw_code}" in policy.last_mile_codes:
        return "last_mile"
    return stage


def _stage_interval(stage: Stage, policy: PollPolicy, pushes_flowing: bool) -> timedelta:
    if pushes_flowing:
        return policy.push_safety_last_mile if stage == "last_mile" else policy.push_safety
    intervals: dict[Stage, timedelta] = {
        "awaiting_pickup": policy.awaiting_pickup, "in_transit": policy.in_transit,
        "customs": policy.customs, "last_mile": policy.last_mile,
        "at_pickup_point": policy.at_pickup_point, "problem": policy.problem,
        "finished": policy.push_safety,
    }
    return intervals[stage]


def _local_clock(moment: datetime, utc_offset_minutes: int) -> tuple[datetime, timezone]:
    zone = timezone(timedelta(minutes=utc_offset_minutes))
    return moment.astimezone(zone), zone


def _after_quiet_hours(moment: datetime, policy: PollPolicy, utc_offset_minutes: int) -> datetime:
    local, zone = _local_clock(moment, utc_offset_minutes)
    clock = local.time()
    start, end = policy.quiet_from, policy.quiet_until
    quiet = (start <= clock or clock < end) if start > end else (start <= clock < end)
    if not quiet:
        return moment
    wake = datetime.combine(local.date(), end, tzinfo=zone)
    if wake <= local:
        wake += timedelta(days=1)
    return wake.astimezone(UTC)


def _next_local_time(moment: datetime, at: time, utc_offset_minutes: int) -> datetime:
    """The first moment at or after `moment` whose local clock reads `at`."""
    local, zone = _local_clock(moment, utc_offset_minutes)
    candidate = datetime.combine(local.date(), at, tzinfo=zone)
    if candidate < local:
        candidate += timedelta(days=1)
    return candidate.astimezone(UTC)


def exception_deadlines(
        journey: Journey,
        thresholds: Thresholds = DEFAULT_THRESHOLDS) -> dict[ExceptionKind, datetime]:
    """When each computed exception not yet open would open if no new scan arrives."""
    s, th = journey, thresholds.for_carrier(journey.carrier_code)
    open_kinds = s.open_kinds
    deadlines: dict[ExceptionKind, datetime] = {}
    if s.handed_over_at and s.picked_up_at is None and s.finished_at is None:
        deadlines[K.NOT_PICKED_UP] = s.handed_over_at + th.not_picked_up
    limit = stall_limit(s, th)
    if limit is not None and s.last_event_at is not None:
        deadlines[K.STALLED_NO_SCAN] = s.last_event_at + limit
        deadlines[K.PROBABLY_LOST] = s.last_event_at + th.probably_lost
    if s.status is S.AVAILABLE_FOR_PICKUP and s.status_since is not None:
        deadlines[K.PICKUP_UNCOLLECTED] = s.status_since + th.uncollected_at_pickup_point
    if s.promised_by and s.delivered_at is None and s.finished_at is None:
        deadlines[K.LATE_VS_PROMISE] = s.promised_by + th.late_grace
    if K.PROBABLY_LOST in open_kinds:
        deadlines.pop(K.STALLED_NO_SCAN, None)
    return {kind: at for kind, at in deadlines.items() if kind not in open_kinds}


def next_poll_at(journey: Journey, now: datetime, pushes_flowing: bool,
                 last_query_at: datetime | None, provider_errors: int = 0, *,
                 thresholds: Thresholds = DEFAULT_THRESHOLDS,
                 policy: PollPolicy = DEFAULT_POLICY,
                 awaiting_push_since: datetime | None = None) -> datetime | None:
    """When to query this number next; None when tracking is over (delivered/returned/cancelled).

    Never earlier than `last_query_at + min_interval` (the provider's lock) nor than `now`.
    A number never queried is due now, unless `awaiting_push_since` says a subscription was
    accepted then and no push has come yet: its first poll waits for the stage's regular time.
    """
    now = in_utc(now)
    if journey.finished:
        return None
    floor = now if last_query_at is None else max(now, last_query_at + policy.min_interval)
    if provider_errors > 0:
        backoff = policy.error_backoff * (1 << min(provider_errors - 1, 16))
        wait = max(policy.min_interval, min(backoff, policy.error_backoff_max))
        return max(floor, (last_query_at or now) + wait)
    regular, can_wait = _regular_poll(journey, now, pushes_flowing,
                                      last_query_at or awaiting_push_since, policy)
    deadlines = sorted(exception_deadlines(journey, thresholds).values())
    if deadlines:
        first = deadlines[0]
        # Deadlines closer together than the lock share one poll, at the latest of them.
        shared = max(at for at in deadlines if at <= first + policy.min_interval)
        if regular >= first:
            regular = min(regular, shared)
        elif regular > first - policy.min_interval and can_wait:
            # Wait for the deadline rather than poll just before it and have the lock delay it.
            # Not where the regular poll is what sees an attempt in time (the last mile, the
            # morning check): the deadline is then checked right after the lock instead.
            regular = shared
    return max(floor, regular)


def _regular_poll(s: Journey, now: datetime, pushes_flowing: bool,
                  last_query_at: datetime | None, policy: PollPolicy) -> tuple[datetime, bool]:
    """The next poll the stage asks for, and whether it may wait a little for a deadline."""
    stage = poll_stage(s, policy)
    interval = _stage_interval(stage, policy, pushes_flowing)
    if pushes_flowing:
        # Silence since the last thing we heard, by scan or by query, is what the safety net checks.
        heard = [t for t in (last_query_at, s.last_event_at) if t is not None]
        return (max(heard) if heard else now) + interval, True
    if last_query_at is None:
        return now, True
    regular = last_query_at + interval
    if stage == "last_mile" and s.status is S.IN_TRANSIT:
        # In the delivery city, the run not out yet: an attempt comes no sooner than
        # `run_to_first_door` after the run leaves, so polling that much later still sees it
        # within the lock's interval.
        regular += policy.run_to_first_door
    if stage == "last_mile":
        if policy.retry_another_day and s.status is S.DELIVERY_FAILED and s.failed_attempts:
            # "改日派送": the courier comes back on a later day, not later today.
            _, zone = _local_clock(regular, s.utc_offset_minutes)
            failed_on = local_day(s.failed_attempts[-1], s.utc_offset_minutes)
            next_day = datetime.combine(failed_on + timedelta(days=1), policy.quiet_until,
                                        tzinfo=zone)
            regular = max(regular, next_day.astimezone(UTC))
        return _after_quiet_hours(regular, policy, s.utc_offset_minutes), False
    if stage in _DAILY_STAGES and policy.morning_check is not None:
        return _next_local_time(last_query_at + policy.min_interval, policy.morning_check,
                                s.utc_offset_minutes), False
    return regular, True
