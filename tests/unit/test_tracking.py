from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.tracking.fold import apply_events
from chalicelib.tracking.model import (
    ALERT_KINDS,
    ExceptionKind,
    Journey,
    JourneyChange,
    ShipmentStatus,
    TrackingEvent,
)
from chalicelib.tracking.polling import (
    DEFAULT_POLICY,
    PollPolicy,
    exception_deadlines,
    next_poll_at,
    poll_stage,
    stage_of,
)
from chalicelib.tracking.thresholds import StageThresholds, Thresholds, computed_exceptions, update

S, K = ShipmentStatus, ExceptionKind
T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)  # 10:00 in China
H = timedelta(hours=1)
NUMBER = "773012345678901"


def ev(hours: float, status: ShipmentStatus, *kinds: ExceptionKind, code: str = "",
       desc: str = "", customs: bool = False, number: str = NUMBER) -> TrackingEvent:
    return TrackingEvent(provider="kuaidi100", carrier_code="STO", tracking_number=number,
                         occurred_at=T0 + hours * H, status=status, exceptions=kinds,
                         raw_code=code or status.value, description=desc or f"{status} +{hours}h",
                         customs=customs)


def parcel(**fields: object) -> Journey:
    base: dict[str, object] = {"carrier_code": "STO", "tracking_number": NUMBER,
                               "handed_over_at": T0}
    return Journey.model_validate(base | fields)


def folded(*events: TrackingEvent, **fields: object) -> Journey:
    return apply_events(parcel(**fields), events)[0]


def kinds_of(changes: Sequence[JourneyChange], type_: str) -> list[ExceptionKind]:
    return [c.exception.kind for c in changes if c.type == type_ and c.exception is not None]


JOURNEY = (ev(-8, S.INFO_RECEIVED), ev(3, S.PICKED_UP), ev(6, S.IN_TRANSIT),
           ev(20, S.IN_TRANSIT), ev(30, S.OUT_FOR_DELIVERY))


# The axes ---------------------------------------------------------------------------------------

def test_the_two_axes_are_exactly_the_documented_values() -> None:
    assert {s.value for s in S} == {
        "pending", "info_received", "picked_up", "in_transit", "out_for_delivery",
        "available_for_pickup", "delivery_failed", "delivered", "returning", "returned",
        "cancelled", "exception", "tracking_stopped"}
    assert {k.value for k in K} == {
        "lost", "damaged", "refusal_initiated", "refused_returned", "delivery_failed",
        "recipient_unreachable", "address_issue", "redirected", "carrier_transfer",
        "return_to_sender", "pickup_uncollected", "held_at_facility", "customs_issue",
        "carrier_delay", "invalid_tracking", "provider_stalled", "other",
        "repeated_delivery_failure", "not_picked_up", "stalled_no_scan", "probably_lost",
        "late_vs_promise", "status_regression"}


def test_the_problems_cs_must_hear_about_at_once_alert() -> None:
    # domain.md: lost, address change, nobody home on the second attempt, refused.
    assert {K.PROBABLY_LOST, K.LOST, K.REDIRECTED, K.ADDRESS_ISSUE, K.REPEATED_DELIVERY_FAILURE,
            K.REFUSAL_INITIATED, K.REFUSED_RETURNED} <= ALERT_KINDS
    # A single failed attempt is not a case yet; the second, on another day, is.
    assert K.DELIVERY_FAILED not in ALERT_KINDS


# Events -----------------------------------------------------------------------------------------

def test_event_id_is_stable_and_derived_from_provider_number_time_code_description() -> None:
    a = ev(1, S.IN_TRANSIT, desc="arrived")
    assert a.event_id == ev(1, S.IN_TRANSIT, desc="arrived").event_id
    assert a.event_id == a.model_copy(update={"location": "elsewhere"}).event_id
    for other in (ev(2, S.IN_TRANSIT, desc="arrived"), ev(1, S.IN_TRANSIT, desc="left"),
                  ev(1, S.IN_TRANSIT, code="1002", desc="arrived"),
                  ev(1, S.IN_TRANSIT, desc="arrived", number="OTHER1")):
        assert other.event_id != a.event_id


def test_event_time_is_normalised_to_utc_and_naive_times_are_refused() -> None:
    china = timezone(timedelta(hours=8))
    local = ev(0, S.IN_TRANSIT).model_copy(update={})
    event = TrackingEvent.model_validate(local.model_dump() | {
        "occurred_at": datetime(2026, 5, 1, 10, 0, tzinfo=china)})
    assert event.occurred_at == T0 and event.occurred_at.tzinfo is UTC
    assert event.event_id == local.event_id  # the same instant, the same id
    with pytest.raises(ValueError, match="naive"):
        TrackingEvent.model_validate(local.model_dump() | {"occurred_at": datetime(2026, 5, 1)})


def test_events_and_shipments_survive_a_json_round_trip() -> None:
    shipment = folded(*JOURNEY, ev(31, S.DELIVERY_FAILED, K.DELIVERY_FAILED))
    assert Journey.model_validate_json(shipment.model_dump_json()) == shipment


# apply_events -----------------------------------------------------------------------------------

def test_status_follows_the_newest_scan_by_scan_time() -> None:
    shipment = folded(*JOURNEY)
    assert shipment.status is S.OUT_FOR_DELIVERY
    assert shipment.status_since == T0 + 30 * H
    assert shipment.last_event_at == T0 + 30 * H
    assert shipment.picked_up_at == T0 + 3 * H


def test_duplicates_are_dropped_and_a_repeat_changes_nothing() -> None:
    once, changes = apply_events(parcel(), JOURNEY)
    assert len(once.events) == len(JOURNEY) and changes
    again, no_changes = apply_events(once, JOURNEY + JOURNEY)
    assert again is once and no_changes == ()


def test_out_of_order_events_give_the_same_shipment() -> None:
    in_order = folded(*JOURNEY)
    late_first = apply_events(apply_events(parcel(), JOURNEY[3:])[0], JOURNEY[:3])[0]
    assert late_first == in_order


def test_an_event_for_another_number_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="applied to"):
        apply_events(parcel(), [ev(1, S.IN_TRANSIT, number="SOMEONEELSE")])


def test_delivered_then_returning_is_kept_and_flagged_never_dropped() -> None:
    shipment, changes = apply_events(folded(*JOURNEY, ev(33, S.DELIVERED)),
                                     [ev(50, S.RETURNING, K.RETURN_TO_SENDER)])
    assert shipment.status is S.RETURNING
    assert [(r.from_status, r.to_status) for r in shipment.regressions] == [
        (S.DELIVERED, S.RETURNING)]
    assert {K.STATUS_REGRESSION, K.RETURN_TO_SENDER} <= shipment.open_kinds
    assert kinds_of(changes, "exception_opened") == [K.RETURN_TO_SENDER, K.STATUS_REGRESSION]
    assert shipment.delivered_at == T0 + 33 * H  # the delivery is not forgotten either


def test_a_late_arriving_older_scan_is_not_a_regression() -> None:
    # The delivered scan came first; the older transit scan arrives afterwards: time order wins.
    shipment = apply_events(folded(ev(33, S.DELIVERED)), JOURNEY)[0]
    assert shipment.status is S.DELIVERED and shipment.regressions == ()


@pytest.mark.parametrize(("later", "flagged"), [
    (S.IN_TRANSIT, False),  # back to the depot after an attempt: routine
    (S.PICKED_UP, True),
    (S.INFO_RECEIVED, True),
    (S.EXCEPTION, False),  # a problem report says nothing about where the parcel is
])
def test_going_back_from_the_last_mile(later: ShipmentStatus, flagged: bool) -> None:
    shipment = folded(*JOURNEY, ev(40, later))
    assert bool(shipment.regressions) is flagged
    assert (K.STATUS_REGRESSION in shipment.open_kinds) is flagged
    assert shipment.status is later


def test_a_problem_report_after_delivery_does_not_undeliver() -> None:
    shipment = folded(*JOURNEY, ev(33, S.DELIVERED), ev(40, S.EXCEPTION, K.DAMAGED))
    assert shipment.status is S.DELIVERED and K.DAMAGED in shipment.open_kinds
    assert shipment.regressions == ()


def test_transit_scans_after_returning_are_the_trip_back() -> None:
    shipment = folded(*JOURNEY, ev(34, S.EXCEPTION, K.REFUSAL_INITIATED),
                      ev(40, S.RETURNING, K.RETURN_TO_SENDER), ev(50, S.IN_TRANSIT),
                      ev(70, S.RETURNED, K.REFUSED_RETURNED))
    assert shipment.status is S.RETURNED and shipment.regressions == ()
    assert folded(*shipment.events[:-1]).status is S.RETURNING


def test_a_later_movement_scan_clears_a_transient_provider_exception() -> None:
    failed = folded(*JOURNEY, ev(32, S.DELIVERY_FAILED, K.DELIVERY_FAILED))
    assert K.DELIVERY_FAILED in failed.open_kinds
    shipment, changes = apply_events(failed, [ev(45, S.OUT_FOR_DELIVERY)])
    assert K.DELIVERY_FAILED not in shipment.open_kinds
    assert [c.reason for c in changes if c.type == "exception_resolved"] == ["cleared"]
    assert shipment.failed_attempts == (T0 + 32 * H,)  # the attempt itself stays counted


def test_sticky_provider_exceptions_stay_open_after_movement() -> None:
    shipment = folded(*JOURNEY[:3], ev(8, S.EXCEPTION, K.DAMAGED),
                      ev(9, S.IN_TRANSIT, K.REDIRECTED, code="1003"), ev(20, S.IN_TRANSIT),
                      ev(30, S.DELIVERED))
    assert {K.DAMAGED, K.REDIRECTED} <= shipment.open_kinds


def test_refused_and_returned_supersedes_refusal_initiated() -> None:
    refused = folded(*JOURNEY, ev(33, S.EXCEPTION, K.REFUSAL_INITIATED))
    shipment, changes = apply_events(refused, [ev(90, S.RETURNED, K.REFUSED_RETURNED)])
    assert shipment.open_kinds == {K.REFUSED_RETURNED}
    opened = [c.exception for c in changes if c.type == "exception_opened"]
    assert [(e.kind, e.supersedes) for e in opened if e] == [
        (K.REFUSED_RETURNED, K.REFUSAL_INITIATED)]
    assert [c.reason for c in changes if c.type == "exception_resolved"] == [
        "superseded by refused_returned"]


def test_a_locker_problem_clears_when_the_parcel_leaves_the_locker() -> None:
    at_locker = folded(*JOURNEY, ev(32, S.AVAILABLE_FOR_PICKUP),
                       ev(80, S.AVAILABLE_FOR_PICKUP, K.PICKUP_UNCOLLECTED))
    still = apply_events(at_locker, [ev(81, S.AVAILABLE_FOR_PICKUP, desc="reminder")])[0]
    assert K.PICKUP_UNCOLLECTED in still.open_kinds
    collected = apply_events(still, [ev(90, S.DELIVERED)])[0]
    assert K.PICKUP_UNCOLLECTED not in collected.open_kinds


def test_status_changes_are_reported_with_the_scan_time() -> None:
    _, changes = apply_events(folded(*JOURNEY), [ev(33, S.DELIVERED)])
    assert changes == (JourneyChange(type="status", at=T0 + 33 * H, status=S.DELIVERED,
                              previous_status=S.OUT_FOR_DELIVERY),)


def test_customs_scans_put_the_parcel_in_the_customs_stage() -> None:
    shipment = folded(*JOURNEY[:3], ev(10, S.IN_TRANSIT, customs=True))
    assert shipment.in_customs and stage_of(shipment) == "customs"
    assert folded(*shipment.events, ev(20, S.EXCEPTION, K.CARRIER_DELAY)).in_customs
    assert not folded(*shipment.events, ev(40, S.IN_TRANSIT)).in_customs


# computed_exceptions: every rule at the edges of its threshold ----------------------------------

def opens_at(shipment: Journey, kind: ExceptionKind, due: datetime) -> None:
    """Just before: closed. At: open, dated at the threshold. After: still open."""
    just_before = computed_exceptions(shipment, due - timedelta(seconds=1))
    assert kind not in {e.kind for e in just_before.opened}
    for now in (due, due + 3 * H):
        opened = {e.kind: e for e in computed_exceptions(shipment, now).opened}
        assert kind in opened
        assert opened[kind].opened_at == due and opened[kind].source == "computed"


def test_not_picked_up_24_hours_after_hand_over() -> None:
    opens_at(folded(ev(-8, S.INFO_RECEIVED)), K.NOT_PICKED_UP, T0 + 24 * H)
    opens_at(parcel(), K.NOT_PICKED_UP, T0 + 24 * H)  # no scan at all


def test_a_pick_up_scan_prevents_and_ends_not_picked_up() -> None:
    late = update(parcel(), [], T0 + 25 * H)[0]
    assert K.NOT_PICKED_UP in late.open_kinds
    picked, changes = apply_events(late, [ev(26, S.PICKED_UP)])
    assert K.NOT_PICKED_UP not in picked.open_kinds
    assert [c.reason for c in changes if c.type == "exception_resolved"] == ["picked up"]


def test_stalled_24_hours_in_transit() -> None:
    opens_at(folded(*JOURNEY[:4]), K.STALLED_NO_SCAN, T0 + 44 * H)


def test_stalled_12_hours_out_for_delivery() -> None:
    opens_at(folded(*JOURNEY), K.STALLED_NO_SCAN, T0 + 42 * H)


def test_stalled_48_hours_in_customs() -> None:
    opens_at(folded(*JOURNEY[:3], ev(10, S.IN_TRANSIT, customs=True)), K.STALLED_NO_SCAN,
             T0 + 58 * H)


def test_a_delivery_failure_waits_the_transit_limit_not_the_last_mile_one() -> None:
    # Failed at 18:00; the next attempt is tomorrow morning: 12 h would cry wolf overnight.
    opens_at(folded(*JOURNEY, ev(32, S.DELIVERY_FAILED, K.DELIVERY_FAILED)), K.STALLED_NO_SCAN,
             T0 + 56 * H)


def test_probably_lost_after_five_days_without_a_scan_escalates_the_stall() -> None:
    stalled = update(folded(*JOURNEY[:4]), [], T0 + 45 * H)[0]
    assert K.STALLED_NO_SCAN in stalled.open_kinds
    opens_at(stalled, K.PROBABLY_LOST, T0 + 20 * H + 5 * 24 * H)
    lost, changes = update(stalled, [], T0 + 20 * H + 5 * 24 * H)
    assert lost.open_kinds == {K.PROBABLY_LOST}
    assert [e.supersedes for e in lost.computed] == [K.STALLED_NO_SCAN]
    assert [c.reason for c in changes if c.type == "exception_resolved"] == [
        "superseded by probably_lost"]


def test_a_new_scan_resolves_a_stall_at_once() -> None:
    stalled = update(folded(*JOURNEY[:4]), [], T0 + 50 * H)[0]
    moving, changes = apply_events(stalled, [ev(49, S.IN_TRANSIT)])  # scanned at 49 h, heard at 50
    assert K.STALLED_NO_SCAN not in moving.open_kinds
    assert [(c.exception.kind if c.exception else None, c.reason)
            for c in changes if c.type == "exception_resolved"] == [
        (K.STALLED_NO_SCAN, "new scan")]
    # Measured from the scan time: the new stall clock runs from 49 h, not from when we heard.
    opens_at(moving, K.STALLED_NO_SCAN, T0 + 73 * H)


def test_uncollected_48_hours_at_a_locker_or_station() -> None:
    shipment = folded(*JOURNEY, ev(32, S.AVAILABLE_FOR_PICKUP))
    opens_at(shipment, K.PICKUP_UNCOLLECTED, T0 + 80 * H)
    assert K.STALLED_NO_SCAN not in {e.kind for e in computed_exceptions(
        shipment, T0 + 200 * H).opened}  # sitting in a locker is not a stall


def test_the_provider_already_reporting_uncollected_is_not_opened_twice() -> None:
    shipment = folded(*JOURNEY, ev(32, S.AVAILABLE_FOR_PICKUP),
                      ev(79, S.AVAILABLE_FOR_PICKUP, K.PICKUP_UNCOLLECTED))
    assert computed_exceptions(shipment, T0 + 100 * H).opened == ()


def test_late_against_the_promised_date() -> None:
    promised = T0 + 48 * H
    opens_at(folded(*JOURNEY, promised_by=promised), K.LATE_VS_PROMISE, promised)
    delivered = folded(*JOURNEY, ev(33, S.DELIVERED), promised_by=promised)
    assert computed_exceptions(delivered, promised + H).opened == ()


def test_late_ends_when_the_parcel_is_delivered() -> None:
    late = update(folded(*JOURNEY, promised_by=T0 + 31 * H), [], T0 + 32 * H)[0]
    assert K.LATE_VS_PROMISE in late.open_kinds
    delivered, changes = apply_events(late, [ev(33, S.DELIVERED)])
    assert K.LATE_VS_PROMISE not in delivered.open_kinds
    assert "delivered" in [c.reason for c in changes]


def failed_at(*hours: float) -> list[TrackingEvent]:
    return [ev(h, S.DELIVERY_FAILED, K.DELIVERY_FAILED) for h in hours]


def test_the_second_failed_attempt_opens_repeated_failure_on_the_same_day() -> None:
    # 17:00 and 21:00 in China: the courier came back the same evening, nobody home twice.
    shipment = folded(*JOURNEY, *failed_at(31, 35))
    assert shipment.failed_attempts_per_day == {(T0 + 31 * H).date(): 2}
    opened = update(shipment, [], T0 + 36 * H)[0]
    assert [(e.kind, e.opened_at) for e in opened.open_exceptions if e.alerts] == [
        (K.REPEATED_DELIVERY_FAILURE, T0 + 35 * H)]


def test_the_second_failed_attempt_on_another_day_opens_repeated_failure_at_once() -> None:
    first = update(folded(*JOURNEY, *failed_at(31)), [], T0 + 32 * H)[0]
    assert K.REPEATED_DELIVERY_FAILURE not in first.open_kinds
    second, changes = update(first, failed_at(55), T0 + 56 * H)
    opened = [c.exception for c in changes if c.type == "exception_opened"]
    assert [(e.kind, e.opened_at, e.supersedes) for e in opened if e] == [
        (K.REPEATED_DELIVERY_FAILURE, T0 + 55 * H, K.DELIVERY_FAILED)]
    assert [e.kind for e in second.open_exceptions if e.alerts] == [K.REPEATED_DELIVERY_FAILURE]


def test_one_attempt_scanned_twice_at_the_same_moment_is_one_attempt() -> None:
    twice = [ev(31, S.DELIVERY_FAILED, K.DELIVERY_FAILED),
             ev(31, S.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE)]
    shipment = folded(*JOURNEY, *twice)
    assert K.REPEATED_DELIVERY_FAILURE not in update(shipment, [], T0 + 32 * H)[0].open_kinds


def test_unreachable_recipient_counts_as_a_failed_attempt_a_refusal_does_not() -> None:
    shipment = folded(*JOURNEY, ev(31, S.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE),
                      ev(55, S.DELIVERY_FAILED, K.REFUSAL_INITIATED))
    assert shipment.failed_attempts == (T0 + 31 * H,)


def test_repeated_failure_ends_when_the_parcel_is_delivered() -> None:
    failing = update(folded(*JOURNEY, *failed_at(31, 55)), [], T0 + 56 * H)[0]
    delivered = update(failing, [ev(60, S.DELIVERED)], T0 + 61 * H)[0]
    assert K.REPEATED_DELIVERY_FAILURE not in delivered.open_kinds


def test_thresholds_are_configurable_per_courier() -> None:
    slow_ems = Thresholds(per_carrier={"STO": StageThresholds(
        stalled_in_transit=timedelta(hours=36), repeated_failures=3)})
    shipment = folded(*JOURNEY[:4])
    assert computed_exceptions(shipment, T0 + 50 * H, slow_ems).opened == ()
    assert [e.kind for e in computed_exceptions(shipment, T0 + 56 * H, slow_ems).opened] == [
        K.STALLED_NO_SCAN]
    assert Thresholds.model_validate_json(
        '{"per_carrier": {"sto": {"stalled_in_transit": "PT36H"}}}'
    ).for_carrier("STO").stalled_in_transit == timedelta(hours=36)
    # An operator's file written when the rule counted days still reads.
    assert StageThresholds.model_validate_json(
        '{"repeated_failure_days": 3}').repeated_failures == 3


def test_nothing_is_computed_for_a_finished_parcel() -> None:
    done = folded(*JOURNEY, ev(33, S.DELIVERED), promised_by=T0 + 30 * H)
    assert computed_exceptions(done, T0 + 1000 * H).opened == ()


def test_every_opening_carries_its_threshold_time_not_the_detection_time() -> None:
    _, changes = update(folded(*JOURNEY[:4]), [], T0 + 70 * H)
    assert [(c.type, c.at) for c in changes] == [("exception_opened", T0 + 44 * H)]


# next_poll_at -----------------------------------------------------------------------------------

def test_no_more_polls_once_delivered_returned_or_cancelled() -> None:
    for final in (S.DELIVERED, S.RETURNED, S.CANCELLED):
        assert next_poll_at(folded(*JOURNEY, ev(33, final)), T0 + 34 * H, False, None) is None


def test_a_number_never_queried_is_due_now() -> None:
    assert next_poll_at(parcel(), T0, False, None) == T0


@pytest.mark.parametrize("pushes", [False, True])
def test_never_the_same_number_twice_in_30_minutes(pushes: bool) -> None:
    overdue = folded(*JOURNEY[:4])  # stall deadline at 44 h has long passed
    last = T0 + 100 * H
    assert next_poll_at(overdue, last + timedelta(minutes=5), pushes, last) == last + 30 * (H / 60)
    assert next_poll_at(overdue, last + 2 * H, pushes, last) == last + 2 * H  # due: now


def test_poll_only_cadence_depends_on_the_stage() -> None:
    # Plain intervals (no morning check; distinct values so that a mix-up shows).
    policy = PollPolicy(morning_check=None, awaiting_pickup=6 * H, in_transit=12 * H,
                        customs=10 * H, problem=2 * H)
    cases = [
        (folded(ev(-8, S.INFO_RECEIVED)), policy.awaiting_pickup),
        (folded(*JOURNEY[:4]), policy.in_transit),
        (folded(*JOURNEY[:3], ev(10, S.IN_TRANSIT, customs=True)), policy.customs),
        (folded(*JOURNEY[:4], ev(21, S.EXCEPTION, K.HELD_AT_FACILITY)), policy.problem),
    ]
    for shipment, interval in cases:
        last = shipment.last_event_at or T0
        assert next_poll_at(shipment, last, False, last, policy=policy) == last + interval


def test_out_for_delivery_polls_more_often_than_trunk_transit() -> None:
    trunk, last_mile = folded(*JOURNEY[:4]), folded(*JOURNEY)
    query = T0 + 31 * H  # 15:00 in China
    trunk_next = next_poll_at(trunk, query, False, query)
    mile_next = next_poll_at(last_mile, query, False, query)
    assert trunk_next is not None and mile_next is not None
    assert mile_next - query == DEFAULT_POLICY.last_mile < trunk_next - query


def test_last_mile_polls_sleep_at_night_in_the_recipients_zone() -> None:
    # Failed at 19:30 in China: the next attempt is tomorrow, so no polls overnight.
    shipment = folded(*JOURNEY, ev(33.5, S.DELIVERY_FAILED, K.DELIVERY_FAILED))
    evening = datetime(2026, 5, 2, 12, 30, tzinfo=UTC)  # 20:30 in China; +30 min is 21:00
    wake = datetime(2026, 5, 3, 0, 30, tzinfo=UTC)  # 08:30 in China
    assert next_poll_at(shipment, evening, False, evening) == wake
    custom = PollPolicy(quiet_from=time(23, 0), quiet_until=time(6, 0), retry_another_day=False)
    assert next_poll_at(shipment, evening, False, evening, policy=custom) == (
        evening + DEFAULT_POLICY.last_mile)


def test_a_push_fed_parcel_needs_only_a_safety_poll() -> None:
    trunk = folded(*JOURNEY[:4])  # last scan at 20 h
    assert next_poll_at(trunk, T0 + 21 * H, True, None) == T0 + 44 * H
    assert next_poll_at(trunk, T0 + 21 * H, True, T0 + 30 * H) == T0 + 44 * H  # the stall check
    mile = folded(*JOURNEY)  # last scan at 30 h
    assert next_poll_at(mile, T0 + 31 * H, True, None) == T0 + 42 * H
    no_pushes = next_poll_at(mile, T0 + 31 * H, False, T0 + 31 * H)
    assert no_pushes is not None and no_pushes < T0 + 42 * H


def test_a_poll_is_due_exactly_when_a_computed_exception_would_open() -> None:
    shipment = folded(*JOURNEY[:4])  # stall deadline 44 h
    assert exception_deadlines(shipment)[K.STALLED_NO_SCAN] == T0 + 44 * H
    assert next_poll_at(shipment, T0 + 40 * H, False, T0 + 40 * H) == T0 + 44 * H
    # A regular poll due 10 minutes before the deadline waits for it instead, so the lock
    # cannot push the deciding poll beyond the deadline.
    query = T0 + 44 * H - 12 * H - timedelta(minutes=10)
    assert next_poll_at(shipment, query, False, query) == T0 + 44 * H


def test_deadlines_of_open_exceptions_no_longer_pull_polls() -> None:
    stalled = update(folded(*JOURNEY[:4]), [], T0 + 45 * H)[0]
    deadlines = exception_deadlines(stalled)
    assert K.STALLED_NO_SCAN not in deadlines and K.PROBABLY_LOST in deadlines
    # Not pulled back to the passed stall deadline: the next regular poll, the morning check.
    assert next_poll_at(stalled, T0 + 45 * H, False, T0 + 45 * H) == T0 + 46.5 * H  # 08:30


@pytest.mark.parametrize(("errors", "wait"), [
    (1, timedelta(minutes=30)), (2, timedelta(hours=1)), (3, timedelta(hours=2)),
    (5, timedelta(hours=8)), (6, timedelta(hours=12)), (40, timedelta(hours=12)),
])
def test_provider_errors_back_off_exponentially(errors: int, wait: timedelta) -> None:
    shipment, query = folded(*JOURNEY), T0 + 31 * H
    assert next_poll_at(shipment, query, False, query, errors) == query + wait


# The property: order, duplicates and batching do not matter ------------------------------------

STATUSES = [s for s in S if s is not S.PENDING]
KINDS = [k for k in K if k not in (K.STATUS_REGRESSION,)]


@st.composite
def histories(draw: st.DrawFn) -> list[TrackingEvent]:
    count = draw(st.integers(min_value=1, max_value=12))
    events = []
    for index in range(count):
        hours = draw(st.integers(min_value=0, max_value=240))
        status = draw(st.sampled_from(STATUSES))
        kinds = draw(st.lists(st.sampled_from(KINDS), max_size=2))
        events.append(ev(hours, status, *kinds, desc=f"line {index}",
                         customs=draw(st.booleans())))
    return events


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_order_with_duplicates_and_batches_gives_the_same_shipment(
        data: st.DataObject) -> None:
    events = data.draw(histories())
    shuffled = data.draw(st.permutations(events + data.draw(
        st.lists(st.sampled_from(events), max_size=6))))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=3)))
    expected = apply_events(parcel(), events)[0]
    shipment, start = parcel(), 0
    for cut in [*cuts, len(shuffled)]:
        shipment = apply_events(shipment, shuffled[start:cut])[0]
        start = cut
    assert shipment == expected
    # ... and judging it against the clock is just as deterministic.
    now = T0 + 300 * H
    assert update(shipment, [], now)[0] == update(expected, [], now)[0]


# The poll policy tuned by bench/tracking_cost.py -------------------------------------------------

M = timedelta(minutes=1)
CUSTOMS = (*JOURNEY[:3], ev(10, S.IN_TRANSIT, customs=True))  # last scan 20:00 in China, day 1


def test_poll_only_parcels_before_the_last_mile_are_checked_each_morning() -> None:
    in_customs = folded(*CUSTOMS)  # 48 h stall limit: no deadline before day 3
    assert next_poll_at(in_customs, T0 + 11 * H, False, T0 + 11 * H) == T0 + 22.5 * H  # 08:30
    # A poll less than the lock before the check counts as that day's check...
    at_0810 = T0 + 22 * H + 10 * M
    assert next_poll_at(in_customs, at_0810, False, at_0810) == T0 + 46.5 * H
    # ... one 30 min before does not.
    assert next_poll_at(in_customs, T0 + 22 * H, False, T0 + 22 * H) == T0 + 22.5 * H
    # In the recipient's zone, and the plain interval when the check is switched off.
    in_utc = folded(*CUSTOMS, utc_offset_minutes=0)
    assert next_poll_at(in_utc, T0 + 11 * H, False, T0 + 11 * H) == T0 + 30.5 * H  # 08:30 UTC
    plain = PollPolicy(morning_check=None)
    assert next_poll_at(in_customs, T0 + 11 * H, False, T0 + 11 * H, policy=plain) == (
        T0 + 11 * H + plain.customs)


def test_the_morning_check_does_not_delay_a_deadline() -> None:
    trunk = folded(*JOURNEY[:4])  # stall deadline at 44 h: 06:00 in China, before the check
    assert next_poll_at(trunk, T0 + 24 * H, False, T0 + 24 * H) == T0 + 44 * H


def test_a_scan_in_the_delivery_city_starts_the_last_mile_for_polling() -> None:
    city = folded(*JOURNEY[:4], ev(21, S.IN_TRANSIT, code="1001"))  # 07:00 in China
    assert stage_of(city) == "in_transit" and poll_stage(city) == "last_mile"
    at_0830 = T0 + 22.5 * H
    # The run has not left: its first doorstep comes 15 min after it leaves at the soonest.
    assert next_poll_at(city, at_0830, False, at_0830) == at_0830 + 45 * M
    going = folded(*city.events, ev(22.25, S.OUT_FOR_DELIVERY))
    assert next_poll_at(going, at_0830, False, at_0830) == at_0830 + 30 * M
    assert next_poll_at(city, at_0830, False, at_0830,
                        policy=PollPolicy(run_to_first_door=timedelta(0))) == at_0830 + 30 * M
    # Seen at night: the first last-mile poll is when the quiet hours end.
    night = folded(*JOURNEY[:4], ev(19, S.IN_TRANSIT, code="1001"))  # 05:00 in China
    assert next_poll_at(night, T0 + 19.5 * H, False, T0 + 19.5 * H) == at_0830
    # Only the configured provider's code counts, and only while it is the latest place.
    other = city.events[-1].model_copy(update={"provider": "17track"})
    assert poll_stage(folded(*JOURNEY[:4], other)) == "in_transit"
    moved_on = folded(*city.events, ev(23, S.IN_TRANSIT, K.REDIRECTED, code="1003"))
    assert poll_stage(moved_on) == "in_transit"
    assert poll_stage(city, PollPolicy(last_mile_codes=frozenset())) == "in_transit"


def test_after_a_failed_attempt_polls_wait_for_the_next_delivery_day() -> None:
    failed = folded(*JOURNEY, ev(31, S.DELIVERY_FAILED, K.DELIVERY_FAILED))  # 17:00 in China
    query = T0 + 31.5 * H
    assert next_poll_at(failed, query, False, query) == T0 + 46.5 * H  # 08:30 the next day
    # The next day, still no news: every 30 min again (the second attempt must be seen).
    assert next_poll_at(failed, T0 + 47 * H, False, T0 + 47 * H) == T0 + 47.5 * H
    same_day = PollPolicy(retry_another_day=False)
    assert next_poll_at(failed, query, False, query, policy=same_day) == query + 30 * M
    # Out for delivery without a failure: the same day goes on at the last-mile pace.
    assert next_poll_at(folded(*JOURNEY), query, False, query) == query + 30 * M


def test_deadlines_closer_than_the_lock_share_one_poll() -> None:
    locker = (*JOURNEY, ev(32, S.AVAILABLE_FOR_PICKUP))  # uncollected at 80 h
    query = T0 + 71 * H  # 09:00 in China: the next morning check is after both deadlines
    close = folded(*locker, promised_by=T0 + 80 * H + 20 * M)
    assert next_poll_at(close, query, False, query) == T0 + 80 * H + 20 * M
    apart = folded(*locker, promised_by=T0 + 80 * H + 40 * M)
    assert next_poll_at(apart, query, False, query) == T0 + 80 * H
    # Even for a push-fed parcel, whose safety poll would come later still.
    assert next_poll_at(close, query, True, query) == T0 + 80 * H + 20 * M


def test_a_new_subscription_waits_for_its_first_push() -> None:
    assert next_poll_at(parcel(), T0, False, None, awaiting_push_since=T0) == T0 + 22.5 * H
    # ... but not past a deadline: handed over at 07:00, not picked up is due before 08:30.
    early = parcel(handed_over_at=T0 - 3 * H)
    assert next_poll_at(early, T0, False, None, awaiting_push_since=T0) == T0 + 21 * H


@pytest.mark.parametrize("first_query_minutes", [0, 7, 29, 45])
def test_a_poll_only_last_mile_sees_every_attempt_within_30_minutes(
        first_query_minutes: int) -> None:
    """Couriers attempt 08:00-20:00 in China: every such moment is followed by a poll within
    30 min, no poll comes within 30 min of another, and none in the quiet hours."""
    out = folded(ev(-8, S.INFO_RECEIVED), ev(3, S.PICKED_UP), ev(15, S.IN_TRANSIT),
                 ev(20.5, S.IN_TRANSIT, code="1001"), ev(21.75, S.OUT_FOR_DELIVERY))  # 07:45
    start = T0 + 20.5 * H + first_query_minutes * M  # from 06:30 in China
    polls = [start]
    while polls[-1] < T0 + 46 * H:
        out = update(out, [], polls[-1])[0]  # each poll judges: the stall opens at its deadline
        after = next_poll_at(out, polls[-1], False, polls[-1])
        assert after is not None
        polls.append(after)
    assert all(b - a >= 30 * M for a, b in pairwise(polls))
    attempt = T0 + 22 * H  # 08:00 in China
    while attempt <= T0 + 34 * H:  # 20:00
        assert any(attempt <= poll <= attempt + 30 * M for poll in polls), attempt
        attempt += M
    night = [p for p in polls if T0 + 34.5 * H <= p < T0 + 46.5 * H]
    # The out-for-delivery stall (19:45) is checked by the next poll the lock allows.
    assert night == [] and any(T0 + 33.75 * H <= p <= T0 + 34.25 * H for p in polls)
    assert K.STALLED_NO_SCAN in out.open_kinds


def test_a_push_fed_parcel_is_queried_at_deadlines_and_after_two_silent_days() -> None:
    at_locker = folded(*JOURNEY, ev(32, S.AVAILABLE_FOR_PICKUP))
    assert next_poll_at(at_locker, T0 + 33 * H, True, None) == T0 + 80 * H  # uncollected
    # A stall already open, probably lost 5 days on: the safety poll comes first.
    stalled = update(folded(*JOURNEY[:4]), [], T0 + 45 * H)[0]
    assert next_poll_at(stalled, T0 + 45 * H, True, T0 + 45 * H) == (
        T0 + 45 * H + DEFAULT_POLICY.push_safety) == T0 + 93 * H
