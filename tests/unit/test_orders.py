from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chalicelib.marketplaces import shopify
from chalicelib.orders.deliveries import Delivery
from chalicelib.orders.order import (
    Address,
    Order,
    OrderStatus,
    amended,
    changed_view,
    changes_between,
    decide,
    order_id_for,
)
from tests.support import dumps, shopify_order

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
DELIVERY = Delivery(source="shopify", delivery_id="d1", topic="orders/paid", received_at=NOW)


def order(**changes: object) -> Order:
    return shopify.normalise(dumps(shopify_order(**changes)),
                             {"x-shopify-shop-domain": "demo-brand.myshopify.com"}, "shopify")


def later(base: Order, minutes: int, **fields: object) -> Order:
    return base.model_copy(update={"updated_at": base.updated_at + timedelta(minutes=minutes),
                                   **fields})


def test_first_paid_version_creates_the_order_and_one_job() -> None:
    decision = decide(None, order(), DELIVERY, has_job=False, now=NOW)
    assert decision.outcome == "created"
    assert decision.create_job and not decision.cancel_job
    assert [e.type for e in decision.events] == ["order.received"]
    assert decision.events[0].actor == "shopify webhook d1"


def test_an_existing_job_is_never_created_twice() -> None:
    current = order(financial_status="pending")
    decision = decide(current, later(current, 1, status=OrderStatus.PAID), DELIVERY,
                      has_job=True, now=NOW)
    assert not decision.create_job


def test_older_or_equal_versions_are_stale_and_change_nothing() -> None:
    current = order()
    for minutes in (0, -5):
        decision = decide(current, later(current, minutes, buyer_note="old"), DELIVERY,
                          has_job=True, now=NOW)
        assert decision.outcome == "stale"
        assert decision.order is current
        assert decision.events == ()
        assert not decision.create_job and not decision.cancel_job


def test_update_records_what_changed_from_and_to() -> None:
    current = order(financial_status="pending")
    newer = later(current, 3, status=OrderStatus.PAID, paid_at=NOW)
    decision = decide(current, newer, DELIVERY, has_job=False, now=NOW)
    assert decision.outcome == "updated"
    (event,) = [e for e in decision.events if e.type == "order.updated"]
    assert event.data["changes"]["status"] == {"from": "pending_payment", "to": "paid"}
    assert decision.create_job


def test_newer_version_without_changes_is_unchanged() -> None:
    current = order()
    decision = decide(current, later(current, 1), DELIVERY, has_job=True, now=NOW)
    assert decision.outcome == "unchanged"
    assert decision.events == ()


def test_cancel_or_refund_with_a_job_cancels_it() -> None:
    current = order()
    for status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        decision = decide(current, later(current, 1, status=status), DELIVERY, has_job=True,
                          now=NOW)
        assert decision.cancel_job
    assert not decide(current, later(current, 1, status=OrderStatus.CANCELLED), DELIVERY,
                      has_job=False, now=NOW).cancel_job
    # Only the transition cancels: a later version of a cancelled order does not cancel again.
    cancelled = later(current, 1, status=OrderStatus.CANCELLED)
    for status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED):
        assert not decide(cancelled, later(cancelled, 1, status=status), DELIVERY,
                          has_job=True, now=NOW).cancel_job


def test_paid_order_without_address_or_sku_is_held_with_problems() -> None:
    payload = shopify_order(shipping_address=None)
    payload["line_items"][0]["sku"] = None
    decision = decide(None, shopify.normalise(dumps(payload), {}, "shopify"), DELIVERY,
                      has_job=False, now=NOW)
    assert not decision.create_job
    assert "no_shipping_address" in decision.problems
    assert any(p.startswith("line_without_sku") for p in decision.problems)
    assert [e.type for e in decision.events] == ["order.received", "order.invalid"]


def test_order_id_is_stable_and_distinguishes_shops() -> None:
    assert order_id_for("shopify", "a", "1") == order_id_for("shopify", "a", "1")
    assert order_id_for("shopify", "a", "1") != order_id_for("shopify", "b", "1")
    assert order_id_for("shopify", "a", "12") != order_id_for("shopify", "a1", "2")


def test_changes_between_ignores_identity_and_times() -> None:
    current = order()
    assert changes_between(current, later(current, 5)) == {}


# CS amendments and later marketplace versions ----------------------------------------------

OFFICE = Address(name="林伟", line1="淮海中路 999 号", city="上海", province="Shanghai",
                 province_code="SH", postal_code="200031", country_code="CN")


def cs_amended(current: Order, **fields: object) -> tuple[Order, dict[str, object]]:
    view = current.model_copy(update=fields)
    return view, amended(current, view, {})


def test_a_marketplace_version_that_did_not_touch_an_amended_field_keeps_cs_change() -> None:
    current = order()
    view, overrides = cs_amended(current, shipping_address=OFFICE)
    assert set(overrides) == {"shipping_address"}
    newer = later(current, 1, buyer_note="please knock")  # still the buyer's old address
    decision = decide(view, newer, DELIVERY, has_job=True, now=NOW, overrides=overrides)
    assert decision.order.shipping_address == OFFICE  # not reverted on the label
    assert decision.changed == {"buyer_note"}  # so the job hears of the note only
    assert decision.overrides == overrides  # and the next version is judged the same way


def test_a_marketplace_that_changes_an_amended_field_afterwards_wins() -> None:
    current = order()
    view, overrides = cs_amended(current, shipping_address=OFFICE)
    moved = OFFICE.model_copy(update={"line1": "南京西路 1 号"})
    decision = decide(view, later(current, 1, shipping_address=moved), DELIVERY, has_job=True,
                      now=NOW, overrides=overrides)
    assert decision.order.shipping_address == moved
    assert "shipping_address" in decision.changed and decision.overrides == {}


def test_an_order_cs_cancelled_stays_cancelled_while_the_marketplace_still_says_paid() -> None:
    current = order()
    view, overrides = cs_amended(current, status=OrderStatus.CANCELLED, cancelled_at=NOW)
    decision = decide(view, later(current, 1, buyer_note="x"), DELIVERY, has_job=True,
                      now=NOW, overrides=overrides)
    assert decision.order.status is OrderStatus.CANCELLED
    assert not decision.create_job and not decision.cancel_job
    # Amending twice remembers the marketplace's value, not CS's first amendment.
    again = view.model_copy(update={"shipping_address": OFFICE})
    assert amended(view, again, overrides)["status"] == "paid"


def test_a_change_that_took_effect_changes_the_view_and_a_cancel_keeps_its_first_moment() -> None:
    paid = order()
    moved = Address(name="林伟", line1="淮海中路 999 号", city="上海", country_code="CN")
    assert changed_view(paid, "address", moved, NOW).shipping_address == moved
    cancelled = changed_view(paid, "cancel", None, NOW)
    assert (cancelled.status, cancelled.cancelled_at) == (OrderStatus.CANCELLED, NOW)
    again = changed_view(cancelled, "cancel", None, NOW + timedelta(hours=1))
    assert again.cancelled_at == NOW  # a marketplace's or an earlier cancellation stands
    assert changed_view(paid, "attributes", None, NOW) == paid
