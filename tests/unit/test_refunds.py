"""The refund task's rule: who is owed a refund after a cancellation, how much, where."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.cs import templates
from chalicelib.cs.channels import Language
from chalicelib.cs.refunds import REFUND_DUE, refund_task
from chalicelib.marketplaces import shopify
from chalicelib.orders.order import Order, OrderStatus
from tests.support import dumps, shopify_order

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def order(**changes: object) -> Order:
    return shopify.normalise(dumps(shopify_order(**changes)),
                             {"x-shopify-shop-domain": "demo-brand.myshopify.com"}, "shopify")


def test_a_paid_order_cancelled_is_a_refund_of_its_total_on_its_marketplace() -> None:
    paid = order()
    task = refund_task(paid, "applied", "cs ann", "changed mind", NOW, "job_1")
    assert task is not None
    assert (task.kind, task.subject, task.case_type) == (REFUND_DUE, paid.order_id, REFUND_DUE)
    assert task.facts["amount"] == str(paid.totals.total) == "410.00"
    assert (task.facts["currency"], task.facts["marketplace"]) == ("CNY", "shopify")
    assert task.facts["cancelled"] == "applied" and task.facts["job_id"] == "job_1"
    assert "refund 410.00 CNY on shopify" in task.summary


def test_nothing_paid_or_already_refunded_is_no_refund_task() -> None:
    unpaid = order(financial_status="pending")
    assert unpaid.paid_at is None
    assert refund_task(unpaid, "applied", "cs ann", "", NOW) is None
    refunded = order().model_copy(update={"status": OrderStatus.REFUNDED})
    assert refund_task(refunded, "intercepted", "partner f", "", NOW, "job_1") is None


def test_a_job_means_it_was_paid_though_the_cancelled_version_forgets_when() -> None:
    cancelled = order().model_copy(update={"status": OrderStatus.CANCELLED, "paid_at": None})
    assert refund_task(cancelled, "intercepted", "shopify", "", NOW, "job_1") is not None
    assert refund_task(cancelled, "applied", "cs ann", "", NOW) is None


def test_the_refund_task_has_its_own_words() -> None:
    for language in Language:
        assert templates.label(REFUND_DUE, language) != REFUND_DUE
    message = templates.render(REFUND_DUE, order="#1001", severity=refund_task(
        order(), "applied", "cs ann", "", NOW, "job_1").severity,  # type: ignore[union-attr]
        link="https://x", language=Language.ZH)
    assert "退款" in message.text
