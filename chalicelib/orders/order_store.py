"""The orders table: per order, the version as first received (immutable), the current view,
and the event log, all under one partition so the timeline is one query.

  pk = ORDER#<order id>   sk = RECEIVED        the order as first received, with its raw payload
                          sk = CURRENT         current view + version + the order's job
                          sk = EVENT#<at>#<n>  one timeline event
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import MAX_ITEM_BYTES, Action, from_attrs, plain_size, to_attrs
from chalicelib.core.settings import settings
from chalicelib.orders.order import InvalidOrder, Order, OrderEvent, received_bound


@dataclass(frozen=True)
class JobRef:
    partner_id: str
    job_id: str


@dataclass(frozen=True)
class StoredOrder:
    order: Order
    version: int
    job: JobRef | None
    # Fields CS amended, with the marketplace's value they replaced (orders.decide).
    overrides: dict[str, Any] = field(default_factory=dict)
    updated_at: str = ""  # when this version was written (ISO): a writer knows its own write

    def written(self, version: int, at: datetime) -> bool:
        """This is the version a writer wrote at `at` (its answer may have been lost)."""
        return self.version == version and self.updated_at == iso(at)


def _pk(order_id: str) -> str:
    return f"ORDER#{order_id}"


def get_current(order_id: str) -> StoredOrder | None:
    answer = aws.client("dynamodb").get_item(
        TableName=settings().orders_table,
        Key=to_attrs({"pk": _pk(order_id), "sk": "CURRENT"}),
        ConsistentRead=True,
    )
    return _stored(from_attrs(answer["Item"])) if "Item" in answer else None


def _stored(item: dict[str, Any]) -> StoredOrder:
    job = item.get("job")
    return StoredOrder(
        order=Order.model_validate(item["order"]),
        version=int(item["version"]),
        job=JobRef(job["partner_id"], job["job_id"]) if job else None,
        overrides=dict(item.get("overrides") or {}),
        updated_at=str(item.get("updated_at", "")),
    )


def put_received(order: Order, raw_body: str, actor: str, now: datetime) -> Action:
    """The legally binding record: written once, never updated."""
    item = _received_item(order, raw_body, actor, now)
    return Action("received", {"Put": {
        "TableName": settings().orders_table,
        "Item": to_attrs(item),
        "ConditionExpression": "attribute_not_exists(pk)",
    }})


def check_storable(order: Order, raw_body: str, actor: str, now: datetime) -> None:
    """InvalidOrder "order_too_large" unless the order and what is made of it fit DynamoDB: the
    order itself (orders.check_size, which bounds its current view, job and update events) and
    its record as received, with the raw body beside it (sized without being built: on the
    webhook's path)."""
    if received_bound(order, raw_body, actor) <= MAX_ITEM_BYTES:
        return  # the usual case, decided without building the item
    size = plain_size(_received_item(order, raw_body, actor, now))
    if size > MAX_ITEM_BYTES:
        raise InvalidOrder("order_too_large", f"the order as received would be {size} bytes "
                           f"stored; at most {MAX_ITEM_BYTES}")


def _received_item(order: Order, raw_body: str, actor: str, now: datetime) -> dict[str, Any]:
    return {
        "pk": _pk(order.order_id), "sk": "RECEIVED",
        "order": order.model_dump(mode="json"), "raw": raw_body,
        "received_at": iso(now), "actor": actor,
    }


def put_current(order: Order, previous: StoredOrder | None, job: JobRef | None,
                now: datetime, overrides: Mapping[str, Any] | None = None) -> Action:
    """Replace the current view, guarded by the version read (optimistic concurrency)."""
    version = previous.version + 1 if previous else 1
    item: dict[str, Any] = {
        "pk": _pk(order.order_id), "sk": "CURRENT",
        "order": order.model_dump(mode="json"), "version": version, "updated_at": iso(now),
        "marketplace": order.marketplace, "shop": order.shop, "external_id": order.external_id,
    }
    if job:
        item["job"] = {"partner_id": job.partner_id, "job_id": job.job_id}
    if overrides:
        item["overrides"] = dict(overrides)
    if previous is None:
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
    else:
        condition = {
            "ConditionExpression": "version = :v",
            "ExpressionAttributeValues": to_attrs({":v": previous.version}),
        }
    return Action("current", {"Put": {
        "TableName": settings().orders_table, "Item": to_attrs(item), **condition,
    }})


def put_event(order_id: str, event: OrderEvent, seq: int = 0) -> Action:
    # `seq` orders the events one write records at the same instant; the random suffix keeps
    # events of concurrent writers apart.
    sk = f"EVENT#{iso(event.at)}#{seq:03d}{secrets.token_hex(4)}"
    item = {"pk": _pk(order_id), "sk": sk, **event.model_dump(mode="json")}
    return Action("event", {"Put": {"TableName": settings().orders_table, "Item": to_attrs(item)}})


def put_events(order_id: str, events: Sequence[OrderEvent]) -> list[Action]:
    return [put_event(order_id, event, seq) for seq, event in enumerate(events)]


@dataclass(frozen=True)
class OrderRecord:
    received: dict[str, Any] | None
    current: StoredOrder | None
    events: list[OrderEvent]


def read_all(order_id: str) -> OrderRecord:
    """Everything about one order, in time order: one query over its partition."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": settings().orders_table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": to_attrs({":pk": _pk(order_id)}),
        "ConsistentRead": True,
    }
    while True:
        answer = aws.client("dynamodb").query(**kwargs)
        items.extend(from_attrs(item) for item in answer.get("Items", []))
        if "LastEvaluatedKey" not in answer:
            break
        kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
    by_sk = {item["sk"]: item for item in items}
    current = by_sk.get("CURRENT")
    return OrderRecord(
        received=by_sk.get("RECEIVED"),
        current=_stored(current) if current else None,
        events=[OrderEvent.model_validate(item) for item in items
                if item["sk"].startswith("EVENT#")],
    )
