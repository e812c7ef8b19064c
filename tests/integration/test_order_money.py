"""Issue 16 §4 end to end: a realistic Shopify `orders/create` keeps its shipping charge and its
gift message from the webhook to the order view, the console's order page and the factory's
job; a body whose parts do not make its total says so on the order."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.orders.order import order_id_for
from tests.integration.flow import process
from tests.integration.test_console import Person, factory, text, warehouse  # noqa: F401
from tests.support import SHOP, dumps, shopify_headers

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "shopify" / \
    "orders_create_gift.json"
GIFT = "生日快乐！愿你每天都开心 —— 小林"


def gift_order(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(FIXTURE.read_text())
    payload.update(id=uuid.uuid4().int % 10**13, **changes)
    return payload


def deliver(client: Client, stack: dict[str, str], payload: dict[str, Any],
            topic: str = "orders/create") -> str:
    body = dumps(payload)
    headers = shopify_headers(body, topic=topic)
    assert client.http.post("/webhooks/shopify", headers=headers, body=body).status_code == 200
    assert process(client, stack, "shopify", headers["X-Shopify-Webhook-Id"]) == {
        "batchItemFailures": []}
    return order_id_for("shopify", SHOP, str(payload["id"]))


def cs_view(client: Client, key: str, order_id: str) -> dict[str, Any]:
    answer = client.http.get(f"/cs/v1/orders/{order_id}",
                             headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.body
    return dict(json.loads(answer.body))


@pytest.fixture
def cs_key(make_key: Any) -> str:
    from chalicelib.access.keys import Role

    return str(make_key("staff", f"ro-{uuid.uuid4().hex[:6]}", Role.READ_ONLY))


def test_the_issues_order_keeps_shipping_and_gift_message_to_the_factorys_job(
        client: Client, stack: dict[str, str], cs_key: str, factory: str) -> None:  # noqa: F811
    order_id = deliver(client, stack, gift_order())
    view = cs_view(client, cs_key, order_id)
    totals = view["order"]["totals"]
    assert (totals["subtotal"], totals["shipping"], totals["total"]) == (
        "598.00", "20.00", "618.00")
    assert view["money"] == {"adds_up": True, "expected_total": "618.00",
                             "summary": "598.00 + 20.00 shipping − 0.00 = 618.00 = 618.00"}
    assert (view["order"]["gift_message"], view["order"]["invoice_title"]) == (
        GIFT, "上海栖木贸易有限公司")
    assert view["order"]["attributes"] == {"Delivery date": "2026-12-06"}
    assert "order.totals_mismatch" not in [e["type"] for e in view["timeline"]]
    # The factory claims the job with its promises.
    (job,) = warehouse(client, factory, "/jobs/claim", {"max_jobs": 1})["jobs"]
    assert job["order_id"] == order_id
    assert [(p["kind"], p["text"]) for p in job["promises"]] == [
        ("gift_message", GIFT), ("invoice_title", "上海栖木贸易有限公司"),
        ("note", "Delivery date: 2026-12-06")]


def test_the_console_order_page_shows_the_gift_message_promises_and_amounts(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    order_id = deliver(client, stack, gift_order())
    person = Person(client)
    person.sign_in(cs_key)
    page = text(person.get(f"/console/orders/{order_id}"))
    assert f'data-testid="gift-message">{GIFT}<' in page
    assert 'data-testid="invoice-title">上海栖木贸易有限公司<' in page
    assert 'data-testid="job-promise" data-kind="gift_message"' in page
    assert 'data-testid="order-totals" data-adds-up="yes"' in page
    assert "598.00 + 20.00 shipping − 0.00 = 618.00 = 618.00" in page


def test_a_body_whose_parts_miss_the_total_is_flagged_on_the_order_and_still_ships(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    # A body with a charge we do not read (here: the shipping line's price is missing).
    order_id = deliver(client, stack, gift_order(shipping_lines=[]))
    view = cs_view(client, cs_key, order_id)
    assert view["money"]["adds_up"] is False
    (event,) = [e for e in view["timeline"] if e["type"] == "order.totals_mismatch"]
    assert event["data"] == {"expected": "598.00", "total": "618.00", "difference": "20.00"}
    assert view["job"] is not None  # the buyer paid the total: the order is not held
    person = Person(client)
    person.sign_in(cs_key)
    page = text(person.get(f"/console/orders/{order_id}"))
    assert 'data-testid="order-totals" data-adds-up="no"' in page


def test_a_gift_message_changed_on_the_marketplace_reaches_the_job_as_a_promise(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    payload = gift_order()
    order_id = deliver(client, stack, payload)
    changed = {**payload, "updated_at": "2026-12-03T21:02:00+08:00",
               "note_attributes": [{"name": "Gift message", "value": "圣诞快乐"},
                                   {"name": "Invoice title", "value": "上海栖木贸易有限公司"},
                                   {"name": "Delivery date", "value": "2026-12-08"}]}
    deliver(client, stack, changed, topic="orders/updated")
    view = cs_view(client, cs_key, order_id)
    assert view["order"]["gift_message"] == "圣诞快乐"
    promised = [c["promise"] for c in view["job"]["changes"] if c["kind"] == "promise"]
    # What changed is asked of the factory; the unchanged invoice title is not asked again.
    assert promised == [{"kind": "gift_message", "text": "圣诞快乐"},
                        {"kind": "note", "text": "Delivery date: 2026-12-08"}]
