"""What parcel changes mean for CS and for the order: cases per problem, timeline, fulfilment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.tracking.model import ExceptionKind as K
from chalicelib.tracking.model import Journey, JourneyChange, OpenException, TrackingEvent
from chalicelib.tracking.model import ShipmentStatus as S
from chalicelib.tracking.parcels import (
    AFTER_SALES,
    LIABILITY_HINT,
    Parcel,
    alerts_for,
    fulfilment,
    timeline_for,
)
from chalicelib.tracking.thresholds import update
from chalicelib.tracking.watch import start_watch

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def scan(hours: float, status: S, *kinds: K, text: str = "") -> TrackingEvent:
    return TrackingEvent(provider="kuaidi100", carrier_code="STO", tracking_number="773001",
                         occurred_at=T0 + timedelta(hours=hours), status=status,
                         exceptions=kinds, description=text or status.value, raw_code="x")


Changes = tuple[JourneyChange, ...]


def parcel(*events: TrackingEvent, now_hours: float = 0) -> tuple[Parcel, Changes]:
    shipment = Journey(carrier_code="STO", tracking_number="773001", handed_over_at=T0)
    updated, changes = update(shipment, events, T0 + timedelta(hours=now_hours))
    watch = start_watch("kuaidi100", can_push=True, can_query=True, now=T0)
    return Parcel(carrier_code="STO", tracking_number="773001", provider="kuaidi100",
                  order_id="ord_1", order_name="#1001", marketplace="shopify", partner_id="f1",
                  job_id="job_1", shipment_id="s1", started_at=T0, shipment=updated,
                  watch=watch), changes


def test_refusal_and_return_are_one_after_sales_case() -> None:
    p, changes = parcel(scan(1, S.PICKED_UP), scan(30, S.OUT_FOR_DELIVERY),
                        scan(31, S.EXCEPTION, K.REFUSAL_INITIATED), scan(32, S.RETURNING),
                        now_hours=32.1)
    found = alerts_for(p, changes)
    assert {a.case_type for a in found} == {AFTER_SALES}
    assert {a.kind for a in found} == {"courier.refusal_initiated", "courier.returning"}
    assert all(a.subject == "parcel:STO:773001" and a.facts["order_id"] == "ord_1"
               for a in found)


def test_one_failed_attempt_is_no_case_the_second_on_another_day_is() -> None:
    _p, first = parcel(scan(1, S.PICKED_UP), scan(26, S.DELIVERY_FAILED, K.DELIVERY_FAILED),
                       now_hours=26.1)
    assert alerts_for(_p, first) == []
    p, changes = parcel(scan(1, S.PICKED_UP), scan(26, S.DELIVERY_FAILED, K.DELIVERY_FAILED),
                        scan(50, S.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE), now_hours=50.1)
    assert [a.kind for a in alerts_for(p, changes)] == ["courier.repeated_delivery_failure"]


def test_a_stall_escalating_to_lost_stays_one_case_and_a_scan_resolves_it() -> None:
    p, changes = parcel(scan(1, S.PICKED_UP), scan(2, S.IN_TRANSIT), now_hours=2 + 24 * 5 + 1)
    kinds = {(a.kind, a.case_type, a.resolves) for a in alerts_for(p, changes)}
    assert ("courier.probably_lost", "courier.stalled", False) in kinds
    # The stall that the lost case superseded does not resolve the shared case.
    assert not any(a.resolves for a in alerts_for(p, changes))
    moved, more = update(p.shipment, [scan(200, S.IN_TRANSIT)], T0 + timedelta(hours=200))
    resolved = alerts_for(p.model_copy(update={"shipment": moved}), more)
    assert [(a.case_type, a.resolves) for a in resolved] == [("courier.stalled", True)]


def test_damage_carries_the_liability_hint() -> None:
    p, changes = parcel(scan(1, S.PICKED_UP), scan(5, S.EXCEPTION, K.DAMAGED, text="外包装破损"),
                        now_hours=5.1)
    (damaged,) = alerts_for(p, changes)
    assert damaged.facts["liability_hint"] == LIABILITY_HINT
    assert damaged.facts["courier_says"] == "外包装破损"


def test_timeline_lines_in_courier_time_order() -> None:
    p, changes = parcel(scan(2, S.IN_TRANSIT), scan(1, S.PICKED_UP), now_hours=3)
    lines = timeline_for(p, changes, T0 + timedelta(hours=3))
    assert [e.type for e in lines] == ["shipment.in_transit"]
    assert lines[0].source_at == T0 + timedelta(hours=2) and lines[0].actor == "courier kuaidi100"


def test_fulfilment_is_derived_from_every_parcel() -> None:
    delivered, _ = parcel(scan(1, S.PICKED_UP), scan(30, S.DELIVERED), now_hours=31)
    moving, _ = parcel(scan(1, S.PICKED_UP), now_hours=2)
    returning, _ = parcel(scan(1, S.PICKED_UP), scan(30, S.RETURNING), now_hours=31)
    assert fulfilment(True, []) == "not_shipped"
    assert fulfilment(True, [delivered]) == "delivered"
    assert fulfilment(False, [delivered]) == "in_transit"  # a partial shipment is not the order
    assert fulfilment(True, [delivered, moving]) == "in_transit"
    assert fulfilment(True, [delivered, returning]) == "returning"


def test_a_problem_opened_and_over_within_one_check_is_no_alert() -> None:
    p, _ = parcel(scan(1, S.PICKED_UP), now_hours=2)
    opened = JourneyChange(type="exception_opened", at=T0, exception=OpenException(
        kind=K.LATE_VS_PROMISE, opened_at=T0, source="computed"))
    over = JourneyChange(type="exception_resolved", at=T0 + timedelta(minutes=5),
                         exception=opened.exception, reason="delivered")
    assert alerts_for(p, [opened, over]) == []
    assert [a.kind for a in alerts_for(p, [opened])] == ["courier.late_vs_promise"]
