"""The watch: how one tracking number is followed at its provider. Pure: no I/O.

Our side of following a number (`Watch`: subscription, what we asked and heard, the next check)
and the steps the tracker calls after each thing that happens to it: a push (`after_push`), a
query's answer or failure (`after_query`, `after_query_error`), a subscription (`after_subscribe`)
or a due check with nothing to ask (`after_judge`). Each step folds the scans in, judges against
the clock at every deadline passed (`update_through_deadlines`) and sets when to look again.
`TrackingRules` is what TRACKING_RULES_JSON configures: the thresholds and the poll policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chalicelib.core.clock import in_utc
from chalicelib.core.settings import rules_from_env
from chalicelib.tracking.model import ExceptionKind, Journey, JourneyChange, TrackingEvent
from chalicelib.tracking.polling import (
    DEFAULT_POLICY,
    PollPolicy,
    exception_deadlines,
    next_poll_at,
)
from chalicelib.tracking.thresholds import DEFAULT_THRESHOLDS, Thresholds, update


class TrackingRules(BaseModel):
    """Thresholds and poll policy together: what TRACKING_RULES_JSON configures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    thresholds: Thresholds = DEFAULT_THRESHOLDS
    policy: PollPolicy = DEFAULT_POLICY
    # A poll that finds scans older than this which no push carried means pushes are not flowing.
    missed_push_grace: timedelta = timedelta(hours=1)
    # Delivery promised to the buyer, counted from hand-over to the courier (late_vs_promise).
    delivery_promise: timedelta | None = timedelta(days=4)


DEFAULT_TRACKING_RULES = TrackingRules()


@lru_cache(maxsize=1)
def tracking_rules() -> TrackingRules:
    """This stage's rules: the defaults, or TRACKING_RULES_JSON (their JSON form, e.g.
    per-courier stall limits)."""
    return rules_from_env(TrackingRules, "TRACKING_RULES_JSON")


Subscription = Literal["none", "pending", "active", "aborted", "finished"]
DueAction = Literal["subscribe", "query", "judge"]


class Watch(BaseModel):
    """Our side of following a number: subscription, what we asked and heard, the next check.

    `next_check_at` is the only scheduling state (the due index is built from it); None means
    tracking is over. Pushes count as flowing only once one has arrived and no later poll found
    scans they missed: a subscription the provider accepted but never serves must not silence
    the polls.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    can_query: bool = True
    subscription: Subscription = "none"
    subscribe_after: datetime | None = None
    subscribed_at: datetime | None = None  # when the provider last accepted a subscription
    last_query_at: datetime | None = None
    last_push_at: datetime | None = None
    missed_push: bool = False
    provider_errors: int = 0
    subscribe_errors: int = 0  # subscriptions refused in a row
    queries: int = 0
    pushes: int = 0
    next_check_at: datetime | None = None

    @property
    def pushes_flowing(self) -> bool:
        return (self.subscription in ("active", "finished") and self.last_push_at is not None
                and not self.missed_push)


def start_watch(provider: str, *, can_push: bool, can_query: bool, now: datetime) -> Watch:
    """A new parcel: subscribe first where the provider pushes, else check at once."""
    return Watch(provider=provider, can_query=can_query,
                 subscription="pending" if can_push else "none", next_check_at=in_utc(now))


def due_action(watch: Watch, now: datetime) -> DueAction:
    resubscribe = (watch.subscription == "aborted" and watch.subscribe_after is not None
                   and watch.subscribe_after <= now)
    if watch.subscription == "pending" or resubscribe:
        return "subscribe"
    return "query" if watch.can_query else "judge"


def _next_check(journey: Journey, watch: Watch, now: datetime, rules: TrackingRules,
                ) -> datetime | None:
    if journey.finished:
        return None
    candidates: list[datetime] = []
    if watch.subscription == "aborted" and watch.subscribe_after is not None:
        candidates.append(max(now, watch.subscribe_after))
    if watch.can_query:
        # Just subscribed, nothing heard or asked yet: give the first push its time.
        awaiting = watch.subscribed_at if (
            watch.subscription == "active" and watch.last_push_at is None
            and watch.last_query_at is None) else None
        poll = next_poll_at(journey, now, watch.pushes_flowing, watch.last_query_at,
                            watch.provider_errors, thresholds=rules.thresholds,
                            policy=rules.policy, awaiting_push_since=awaiting)
        if poll is not None:
            candidates.append(poll)
    else:  # nothing to ask: only judge against the clock when a computed exception falls due
        candidates.extend(max(now, at) for at in
                          exception_deadlines(journey, rules.thresholds).values())
    return min(candidates, default=None)


def _judged(journey: Journey, watch: Watch, events: Iterable[TrackingEvent], now: datetime,
            rules: TrackingRules) -> tuple[Journey, Watch, tuple[JourneyChange, ...]]:
    updated, changes = update_through_deadlines(journey, events, now, rules.thresholds)
    return updated, watch.model_copy(
        update={"next_check_at": _next_check(updated, watch, now, rules)}), changes


def update_through_deadlines(
        journey: Journey, events: Iterable[TrackingEvent], now: datetime,
        thresholds: Thresholds = DEFAULT_THRESHOLDS) -> tuple[Journey, tuple[JourneyChange, ...]]:
    """`update`, after first judging at each deadline passed since the last look, with the scans
    made up to it.

    Staleness is measured on scan times: a condition that held at its threshold opens (dated
    then) even when the scans that end it come in the same answer, as they do when the lock
    put the deciding poll after the deadline. The changes then show it opened and resolved.
    """
    batch = list(events)
    changes: list[JourneyChange] = []
    for _round in range(len(ExceptionKind)):  # each round opens an exception or takes in scans
        passed = [at for at in exception_deadlines(journey, thresholds).values() if at < now]
        if not passed:
            break
        at = min(passed)
        journey, more = update(journey, [e for e in batch if e.occurred_at <= at], at,
                                thresholds)
        changes += more
    journey, more = update(journey, batch, now, thresholds)
    return journey, (*changes, *more)


def after_query(journey: Journey, watch: Watch, events: Sequence[TrackingEvent],
                now: datetime, rules: TrackingRules = DEFAULT_TRACKING_RULES,
                ) -> tuple[Journey, Watch, tuple[JourneyChange, ...]]:
    known = {event.event_id for event in journey.events}
    missed = watch.subscription == "active" and any(
        event.event_id not in known and event.occurred_at < now - rules.missed_push_grace
        for event in events)
    watch = watch.model_copy(update={
        "last_query_at": now, "provider_errors": 0, "queries": watch.queries + 1,
        "missed_push": watch.missed_push or missed})
    return _judged(journey, watch, events, now, rules)


def after_query_error(journey: Journey, watch: Watch, now: datetime,
                      rules: TrackingRules = DEFAULT_TRACKING_RULES, *,
                      counted: bool = True) -> Watch:
    """Back off; a query the provider may have counted (a timeout) still starts its lock."""
    watch = watch.model_copy(update={
        "provider_errors": watch.provider_errors + 1, "queries": watch.queries + 1,
        "last_query_at": now if counted else watch.last_query_at})
    return watch.model_copy(update={"next_check_at": _next_check(journey, watch, now, rules)})


def after_subscribe(journey: Journey, watch: Watch, accepted: bool, now: datetime,
                    rules: TrackingRules = DEFAULT_TRACKING_RULES) -> Watch:
    """Subscribed (or refused: then we poll, and try again after a back-off)."""
    if accepted:
        watch = watch.model_copy(update={"subscription": "active", "subscribe_after": None,
                                         "subscribed_at": now, "subscribe_errors": 0})
    else:
        # Its own back-off: sharing the query errors' would hold the polls back with it.
        retry = now + rules.policy.error_backoff * (1 << min(watch.subscribe_errors, 8))
        watch = watch.model_copy(update={"subscription": "aborted", "subscribe_after": retry,
                                         "subscribe_errors": watch.subscribe_errors + 1})
    return watch.model_copy(update={"next_check_at": _next_check(journey, watch, now, rules)})


def after_push(journey: Journey, watch: Watch, events: Sequence[TrackingEvent],
               monitoring: Literal["active", "finished", "aborted"],
               resubscribe_after: timedelta | None, now: datetime,
               rules: TrackingRules = DEFAULT_TRACKING_RULES,
               ) -> tuple[Journey, Watch, tuple[JourneyChange, ...]]:
    subscription: Subscription = "finished" if monitoring == "finished" else (
        "aborted" if monitoring == "aborted" else "active")
    watch = watch.model_copy(update={
        "last_push_at": now, "missed_push": False, "pushes": watch.pushes + 1,
        "subscription": subscription,
        "subscribe_after": now + (resubscribe_after or timedelta(0))
        if monitoring == "aborted" else None})
    return _judged(journey, watch, events, now, rules)


def after_judge(journey: Journey, watch: Watch, now: datetime,
                rules: TrackingRules = DEFAULT_TRACKING_RULES,
                ) -> tuple[Journey, Watch, tuple[JourneyChange, ...]]:
    return _judged(journey, watch, (), now, rules)
