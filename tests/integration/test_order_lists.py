"""The CS supervisor's lists (GET /cs/v1/orders/lists/{refund|dispute|unpaid}, the console's
/console/lists) on the local stack, over orders made by the real pipeline: webhooks, the order
worker, a CS cancellation. Each order enters its list when the marketplace's state puts it there
and leaves when it changes; each page is one Query on `by-list`, never a Scan."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.core.clock import iso
from chalicelib.orders.order import order_id_for
from tests.integration.flow import process
from tests.support import (
    SHOP,
    canonical_order,
    dumps,
    shopify_headers,
    shopify_order,
    standard_headers,
)


@pytest.fixture
def cs_key(make_key: Any) -> str:
    from chalicelib.access.keys import Role

    return str(make_key("staff", "lin", Role.READ_ONLY))


def send_shopify(client: Client, stack: dict[str, str], payload: dict[str, Any]) -> str:
    body = dumps(payload)
    headers = shopify_headers(body, topic="orders/updated")
    assert client.http.post("/webhooks/shopify", headers=headers, body=body).status_code == 200
    process(client, stack, "shopify", headers["X-Shopify-Webhook-Id"])
    return order_id_for("shopify", SHOP, str(payload["id"]))


def send_canonical(client: Client, stack: dict[str, str], data: dict[str, Any]) -> str:
    body = dumps({"type": "order.updated", "timestamp": data["updated_at"], "data": data})
    headers = standard_headers(body)
    assert client.http.post("/webhooks/erp", headers=headers, body=body).status_code == 200
    process(client, stack, "erp", headers["webhook-id"])
    return order_id_for("erp", data["shop"], data["external_id"])


def later(payload: dict[str, Any], minutes: int, **changes: Any) -> dict[str, Any]:
    """The same Shopify order as the marketplace sends it `minutes` later."""
    moment = datetime.fromisoformat(payload["updated_at"]) + timedelta(minutes=minutes)
    return {**payload, **changes, "updated_at": moment.isoformat()}


def whole_list(client: Client, key: str, name: str, limit: int = 500) -> list[dict[str, Any]]:
    """Every row of a list, page by page."""
    rows: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = client.http.get(f"/cs/v1/orders/lists/{name}{query}",
                                   headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.body
        page = json.loads(response.body)
        assert page["list_name"] == name and len(page["orders"]) <= limit
        rows += page["orders"]
        cursor = page["next_cursor"]
        if cursor is None:
            return rows


def listed(client: Client, key: str, name: str) -> dict[str, dict[str, Any]]:
    return {row["order_id"]: row for row in whole_list(client, key, name)}


def on_lists(client: Client, key: str, order_id: str) -> list[str]:
    return [name for name in ("refund", "dispute", "unpaid")
            if order_id in listed(client, key, name)]


def test_an_unpaid_order_is_listed_from_when_it_was_placed_until_it_is_paid(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    placed = shopify_order(id=uuid.uuid4().int % 10**13, financial_status="pending")
    order_id = send_shopify(client, stack, placed)
    row = listed(client, cs_key, "unpaid")[order_id]
    assert on_lists(client, cs_key, order_id) == ["unpaid"]
    assert row["since"] == iso(datetime.fromisoformat(placed["created_at"]))
    assert (row["total"], row["currency"]) == (placed["total_price"], placed["currency"])
    assert (row["marketplace"], row["external_id"]) == ("shopify", str(placed["id"]))

    send_shopify(client, stack, later(placed, 5, financial_status="paid"))
    assert on_lists(client, cs_key, order_id) == []


def test_a_refund_keeps_its_first_moment_on_the_list_and_leaves_when_done(
        client: Client, stack: dict[str, str], cs_key: str) -> None:
    paid = shopify_order(id=uuid.uuid4().int % 10**13)
    order_id = send_shopify(client, stack, paid)
    assert on_lists(client, cs_key, order_id) == []

    partly = later(paid, 10, financial_status="partially_refunded")
    send_shopify(client, stack, partly)
    row = listed(client, cs_key, "refund")[order_id]
    assert row["since"] == iso(datetime.fromisoformat(partly["updated_at"]))
    assert row["after_sale"] == "refunding"

    # Another version while still in refund: the order stays, since the first moment.
    send_shopify(client, stack, later(paid, 20, financial_status="partially_refunded",
                                      note="buyer called"))
    assert listed(client, cs_key, "refund")[order_id]["since"] == row["since"]

    send_shopify(client, stack, later(paid, 30, financial_status="refunded"))
    assert on_lists(client, cs_key, order_id) == []


def test_a_dispute_is_listed_until_it_closes(client: Client, stack: dict[str, str],
                                             cs_key: str) -> None:
    data = canonical_order(external_id=f"SO-{uuid.uuid4().hex[:8]}")
    order_id = send_canonical(client, stack, data)
    disputed = {**data, "after_sale": "dispute_open", "updated_at": "2026-11-25T08:00:00Z"}
    send_canonical(client, stack, disputed)
    assert on_lists(client, cs_key, order_id) == ["dispute"]
    assert listed(client, cs_key, "dispute")[order_id]["since"] == "2026-11-25T08:00:00.000000Z"
    send_canonical(client, stack, {**data, "after_sale": "dispute_closed",
                                   "updated_at": "2026-11-27T08:00:00Z"})
    assert on_lists(client, cs_key, order_id) == []


def test_a_cancelled_unpaid_order_leaves_the_list(client: Client, stack: dict[str, str],
                                                  make_key: Any, cs_key: str) -> None:
    from chalicelib.access.keys import Role

    placed = shopify_order(id=uuid.uuid4().int % 10**13, financial_status="pending")
    order_id = send_shopify(client, stack, placed)
    assert on_lists(client, cs_key, order_id) == ["unpaid"]
    back_office = make_key("staff", "mei", Role.BACK_OFFICE)
    response = client.http.post(f"/cs/v1/orders/{order_id}/amendments",
                                headers={"Authorization": f"Bearer {back_office}",
                                         "Content-Type": "application/json"},
                                body=json.dumps({"kind": "cancel", "reason": "buyer gave up"}))
    assert response.status_code == 201, response.body
    assert on_lists(client, cs_key, order_id) == []


def test_pages_follow_the_index_without_gaps_or_repeats(client: Client, stack: dict[str, str],
                                                        cs_key: str) -> None:
    for _ in range(5):
        send_shopify(client, stack, shopify_order(id=uuid.uuid4().int % 10**13,
                                                  financial_status="pending"))
    # What the index holds, read here with a plain client (the expectation, independently).
    expected: list[str] = []
    plain = boto3.client("dynamodb")
    kwargs: dict[str, Any] = {"TableName": stack["ORDERS_TABLE"], "IndexName": "by-list",
                              "KeyConditionExpression": "work_list = :l",
                              "ExpressionAttributeValues": {":l": {"S": "unpaid"}}}
    while True:
        answer = plain.query(**kwargs)
        expected += [item["pk"]["S"].removeprefix("ORDER#") for item in answer["Items"]]
        if "LastEvaluatedKey" not in answer:
            break
        kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
    assert len(expected) >= 5
    paged = [row["order_id"] for row in whole_list(client, cs_key, "unpaid", limit=2)]
    assert paged == expected
    since = [row["since"] for row in whole_list(client, cs_key, "unpaid", limit=3)]
    assert since == sorted(since)  # longest on the list first


def test_an_unknown_list_and_a_foreign_cursor_are_refused(client: Client, stack: dict[str, str],
                                                          cs_key: str) -> None:
    auth = {"Authorization": f"Bearer {cs_key}"}
    response = client.http.get("/cs/v1/orders/lists/returns", headers=auth)
    assert response.status_code == 404
    assert json.loads(response.body)["error"] == "unknown_list"
    for _ in range(2):
        send_shopify(client, stack, shopify_order(id=uuid.uuid4().int % 10**13,
                                                  financial_status="pending"))
    first = json.loads(client.http.get("/cs/v1/orders/lists/unpaid?limit=1",
                                       headers=auth).body)
    assert first["next_cursor"]
    # A cursor of one list is no cursor of another.
    response = client.http.get(f"/cs/v1/orders/lists/refund?cursor={first['next_cursor']}",
                               headers=auth)
    assert response.status_code == 400
    assert json.loads(response.body)["error"] == "invalid_cursor"
    response = client.http.get("/cs/v1/orders/lists/unpaid?limit=0", headers=auth)
    assert response.status_code == 400
    assert client.http.get("/cs/v1/orders/lists/unpaid").status_code == 401
