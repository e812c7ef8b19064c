"""The watch: how the tracking scheduler follows one number (pure functions, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from chalicelib.tracking.model import ExceptionKind, Journey, ShipmentStatus, TrackingEvent
from chalicelib.tracking.polling import PollPolicy
from chalicelib.tracking.thresholds import update
from chalicelib.tracking.watch import (
    DEFAULT_TRACKING_RULES,
    TrackingRules,
    Watch,
    after_judge,
    after_push,
    after_query,
    after_query_error,
    after_subscribe,
    due_action,
    start_watch,
    update_through_deadlines,
)

S, K = ShipmentStatus, ExceptionKind
T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)  # handed over at 10:00 in China
H, M = timedelta(hours=1), timedelta(minutes=1)
NUMBER = "773012345678901"
MORNING = T0 + 22.5 * H  # 08:30 in China, the day after hand-over


def ev(hours: float, status: ShipmentStatus, *kinds: ExceptionKind,
       code: str = "") -> TrackingEvent:
    return TrackingEvent(provider="kuaidi100", carrier_code="ZTO", tracking_number=NUMBER,
                         occurred_at=T0 + hours * H, status=status, exceptions=kinds,
                         raw_code=code or status.value, description=f"{status} +{hours}h")


def parcel(promised_by: datetime | None = None) -> Journey:
    return Journey(carrier_code="ZTO", tracking_number=NUMBER, handed_over_at=T0,
                    promised_by=promised_by)


LABEL = ev(-3, S.INFO_RECEIVED, code="101")
PICKED = ev(8, S.PICKED_UP, code="103")  # 18:00 in China


def subscribed(shipment: Journey | None = None, at: datetime = T0) -> Watch:
    watch = start_watch("kuaidi100", can_push=True, can_query=True, now=at)
    return after_subscribe(shipment or parcel(), watch, True, at)


# start_watch and due_action ----------------------------------------------------------------------

def test_a_new_parcel_subscribes_first_where_the_provider_pushes() -> None:
    watch = start_watch("kuaidi100", can_push=True, can_query=True, now=T0)
    assert (watch.subscription, watch.next_check_at) == ("pending", T0)
    assert due_action(watch, T0) == "subscribe"


@pytest.mark.parametrize(("can_query", "action"), [(True, "query"), (False, "judge")])
def test_without_pushes_a_new_parcel_is_checked_at_once(can_query: bool, action: str) -> None:
    watch = start_watch("17track", can_push=False, can_query=can_query, now=T0)
    assert (watch.subscription, watch.next_check_at) == ("none", T0)
    assert due_action(watch, T0) == action


def test_a_naive_start_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        start_watch("kuaidi100", can_push=True, can_query=True, now=datetime(2026, 5, 1))


# Subscribing and the first push ------------------------------------------------------------------

def test_an_accepted_subscription_waits_for_the_first_push_instead_of_querying() -> None:
    watch = subscribed()
    assert (watch.subscription, watch.subscribed_at, watch.queries) == ("active", T0, 0)
    assert not watch.pushes_flowing
    # Not now: the next morning's check (08:30 in China), before not-picked-up is due (10:00).
    assert watch.next_check_at == MORNING
    assert due_action(watch, MORNING) == "query"


def test_a_first_push_puts_the_parcel_on_the_push_fed_schedule() -> None:
    watch = subscribed()
    shipment, watch, _ = after_push(parcel(), watch, [LABEL], "active", None, T0 + 5 * M)
    assert watch.pushes_flowing and watch.pushes == 1 and watch.last_push_at == T0 + 5 * M
    # Nothing to ask until not-picked-up is due (24 h after hand-over): pushes bring the rest.
    assert watch.next_check_at == T0 + 24 * H
    assert shipment.status is S.INFO_RECEIVED


def test_a_subscription_the_provider_never_serves_is_noticed_by_the_first_poll() -> None:
    watch = subscribed()
    assert watch.next_check_at is not None
    shipment, watch, _ = after_query(parcel(), watch, [LABEL, PICKED], watch.next_check_at)
    assert watch.missed_push and not watch.pushes_flowing and watch.queries == 1
    # Polled from now on: the stall deadline (24 h after the pick-up) before the next morning.
    assert watch.next_check_at == PICKED.occurred_at + 24 * H
    # A later push shows the channel works after all.
    _, pushed, _ = after_push(shipment, watch, [LABEL, PICKED], "active", None,
                              watch.next_check_at)
    assert not pushed.missed_push and pushed.pushes_flowing


def test_a_poll_finding_only_fresh_scans_does_not_blame_the_pushes() -> None:
    watch = subscribed()
    fresh = ev(22.4, S.PICKED_UP, code="103")  # 6 min before the poll: a push may be under way
    _, watch, _ = after_query(parcel(), watch, [fresh], MORNING)
    assert not watch.missed_push


def test_a_refused_subscription_polls_at_once_and_retries_with_a_back_off() -> None:
    watch = start_watch("kuaidi100", can_push=True, can_query=True, now=T0)
    refused = after_subscribe(parcel(), watch, False, T0)
    assert (refused.subscription, refused.subscribe_errors) == ("aborted", 1)
    assert refused.subscribe_after == T0 + 30 * M and refused.next_check_at == T0
    assert due_action(refused, T0) == "query"
    assert due_action(refused, T0 + 30 * M) == "subscribe"
    again = after_subscribe(parcel(), refused, False, T0 + 30 * M)
    assert again.subscribe_after == T0 + 90 * M and again.subscribe_errors == 2
    # The polls keep their own pace meanwhile: the refusals do not back them off.
    assert again.provider_errors == 0 and again.next_check_at == T0 + 30 * M
    accepted = after_subscribe(parcel(), again, True, T0 + 90 * M)
    assert accepted.subscribe_errors == 0 and accepted.subscription == "active"


def test_an_aborted_subscription_is_renewed_after_the_wait() -> None:
    watch = subscribed()
    at = T0 + 9 * H
    shipment, watch, _ = after_push(parcel(), watch, [LABEL, PICKED], "aborted", 30 * M, at)
    assert (watch.subscription, watch.subscribe_after) == ("aborted", at + 30 * M)
    assert watch.next_check_at is not None and watch.next_check_at <= at + 30 * M
    assert due_action(watch, at + 10 * M) == "query"
    assert due_action(watch, at + 30 * M) == "subscribe"
    renewed = after_subscribe(shipment, watch, True, at + 30 * M)
    assert (renewed.subscription, renewed.subscribe_after) == ("active", None)
    assert renewed.subscribed_at == at + 30 * M and renewed.pushes_flowing


# Errors ------------------------------------------------------------------------------------------

def test_provider_errors_back_off_and_a_success_resets_them() -> None:
    watch = subscribed()
    shipment, watch, _ = after_query(parcel(), watch, [LABEL, PICKED], MORNING)
    first = after_query_error(shipment, watch, MORNING + H)
    assert (first.provider_errors, first.queries, first.last_query_at) == (1, 2, MORNING + H)
    assert first.next_check_at == MORNING + H + 30 * M
    second = after_query_error(shipment, first, MORNING + 90 * M)
    assert second.next_check_at == MORNING + 90 * M + H  # doubled
    uncounted = after_query_error(shipment, second, MORNING + 150 * M, counted=False)
    assert uncounted.last_query_at == MORNING + 90 * M  # the provider never saw that one
    assert uncounted.next_check_at == MORNING + 90 * M + 2 * H
    _, recovered, _ = after_query(shipment, uncounted, [LABEL, PICKED], MORNING + 4 * H)
    assert recovered.provider_errors == 0


# The end -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "code"), [(S.DELIVERED, "301"), (S.RETURNED, "4"),
                                              (S.CANCELLED, "401")])
def test_tracking_ends_when_a_poll_finds_the_parcel_done(status: ShipmentStatus,
                                                         code: str) -> None:
    watch = subscribed()
    shipment, watch, _ = after_query(parcel(), watch, [LABEL, PICKED, ev(40, status, code=code)],
                                     T0 + 41 * H)
    assert shipment.finished and watch.next_check_at is None


def test_tracking_ends_with_the_finishing_push() -> None:
    watch = subscribed()
    events = [LABEL, PICKED, ev(40, S.DELIVERED, code="301")]
    shipment, watch, _ = after_push(parcel(), watch, events, "finished", None, T0 + 40.1 * H)
    assert shipment.status is S.DELIVERED
    assert (watch.subscription, watch.next_check_at) == ("finished", None)


# A provider that only pushes ----------------------------------------------------------------------

def test_a_push_only_provider_is_judged_only_at_deadlines() -> None:
    promised = T0 + 96 * H
    shipment = parcel(promised)
    watch = after_subscribe(shipment, start_watch("webhook", can_push=True, can_query=False,
                                                  now=T0), True, T0)
    assert watch.next_check_at == T0 + 24 * H  # not picked up: nothing else to do till then
    shipment, watch, _ = after_push(shipment, watch, [LABEL, PICKED], "active", None,
                                    T0 + 8.1 * H)
    assert watch.next_check_at == PICKED.occurred_at + 24 * H  # the stall deadline
    assert due_action(watch, watch.next_check_at) == "judge"
    shipment, watch, changes = after_judge(shipment, watch, watch.next_check_at)
    assert [c.exception.kind for c in changes if c.exception] == [K.STALLED_NO_SCAN]
    assert watch.next_check_at == promised and watch.queries == 0  # the next deadline: late


# Judging at the deadline on the scans up to it ---------------------------------------------------

def test_a_deadline_passed_under_the_lock_is_judged_on_the_scans_made_up_to_it() -> None:
    promised = T0 + 31 * H + 10 * M  # 17:10 in China
    out = update(parcel(promised), [LABEL, PICKED, ev(30, S.OUT_FOR_DELIVERY, code="5")],
                 T0 + 31 * H)[0]
    late_delivery = ev(31.25, S.DELIVERED, code="301")  # 17:15, seen at the 17:30 poll
    shipment, changes = update_through_deadlines(out, [late_delivery], T0 + 31.5 * H)
    assert shipment.finished and K.LATE_VS_PROMISE not in shipment.open_kinds
    assert [(c.type, c.exception.kind, c.exception.opened_at) for c in changes
            if c.exception] == [("exception_opened", K.LATE_VS_PROMISE, promised),
                                ("exception_resolved", K.LATE_VS_PROMISE, promised)]
    # `update` alone would judge only at 17:30, when the parcel was already delivered.
    assert not [c for c in update(out, [late_delivery], T0 + 31.5 * H)[1] if c.exception]
    # Delivered in time: nothing opens.
    on_time = ev(31, S.DELIVERED, code="301")
    assert not [c for c in update_through_deadlines(out, [on_time], T0 + 31.5 * H)[1]
                if c.exception]


def test_a_stall_that_ended_just_after_its_threshold_is_still_recorded() -> None:
    moving = update(parcel(), [LABEL, PICKED], T0 + 9 * H)[0]  # stall due at 32 h
    moved = ev(32.2, S.IN_TRANSIT, code="0")
    watch = subscribed().model_copy(update={"missed_push": True})
    _, watch, changes = after_query(moving, watch, [LABEL, PICKED, moved], T0 + 32.5 * H)
    assert [(c.type, c.exception.kind, c.reason) for c in changes if c.exception] == [
        ("exception_opened", K.STALLED_NO_SCAN, ""),
        ("exception_resolved", K.STALLED_NO_SCAN, "new scan")]


# Configuration -----------------------------------------------------------------------------------

def test_the_poll_policy_is_configurable_as_json() -> None:
    rules = TrackingRules.model_validate_json(
        '{"policy": {"morning_check": null, "quiet_from": "21:00:00", '
        '"last_mile_codes": ["kuaidi100:1001", "17track:InTransit_Arrival"], '
        '"retry_another_day": false}}')
    assert rules.policy == PollPolicy(
        morning_check=None, quiet_from=time(21, 0), retry_another_day=False,
        last_mile_codes=frozenset({"kuaidi100:1001", "17track:InTransit_Arrival"}))
    assert TrackingRules.model_validate_json(DEFAULT_TRACKING_RULES.model_dump_json()) == \
        DEFAULT_TRACKING_RULES


# The budget's promise, end to end: a poll-only parcel sees doorstep events within 30 minutes --

def follow(events: list[TrackingEvent], kind: ExceptionKind, until: datetime) -> datetime | None:
    """Poll-only: the provider never pushes; each check is a query answered in real time."""
    watch = subscribed()
    shipment = parcel()
    while watch.next_check_at is not None and watch.next_check_at <= until:
        now = watch.next_check_at
        assert due_action(watch, now) == "query"
        known = [e for e in events if e.occurred_at <= now]
        shipment, watch, _ = after_query(shipment, watch, known, now)
        if kind in shipment.open_kinds:
            return now
    return None


CITY = ev(19, S.IN_TRANSIT, code="1001")  # 05:00 in China, day 2
TRUNK = [LABEL, PICKED, ev(14, S.IN_TRANSIT, code="0"), CITY]


@pytest.mark.parametrize("leaves", [22 - 0.5, 22.3, 22.9, 23.55, 24.2, 24.5])  # 07:30-10:30
@pytest.mark.parametrize("door_after", [15, 16, 44, 180])
def test_a_refusal_on_a_poll_only_parcel_is_seen_within_30_minutes(leaves: float,
                                                                    door_after: int) -> None:
    # Couriers knock from 08:00 (quiet hours end at 08:30) and no sooner than 15 min after
    # the run leaves (`run_to_first_door`).
    refused_at = max(T0 + leaves * H + door_after * M, T0 + 22 * H)
    events = [*TRUNK, ev(leaves, S.OUT_FOR_DELIVERY, code="5"),
              ev((refused_at - T0) / H, S.EXCEPTION, K.REFUSAL_INITIATED, code="203")]
    seen = follow(events, K.REFUSAL_INITIATED, T0 + 48 * H)
    assert seen is not None and timedelta(0) <= seen - refused_at <= 30 * M


@pytest.mark.parametrize("second", [24 + 22.4, 24 + 25.0, 24 + 33.9])  # 08:24, 11:00, 19:54
def test_a_second_failed_attempt_is_seen_within_30_minutes(second: float) -> None:
    events = [*TRUNK, ev(22.5, S.OUT_FOR_DELIVERY, code="5"),
              ev(26, S.DELIVERY_FAILED, K.DELIVERY_FAILED, code="204"),  # 12:00, day 2
              ev(24 + 22, S.OUT_FOR_DELIVERY, code="5"),  # 08:00, day 3
              ev(second, S.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE, code="206")]
    seen = follow(events, K.REPEATED_DELIVERY_FAILURE, T0 + 72 * H)
    assert seen is not None and timedelta(0) <= seen - (T0 + second * H) <= 30 * M
