"""The orders table: per order, the version as first received (immutable), the current view,
and the event log, all under one partition so the timeline is one query.

  pk = ORDER#<order id>   sk = RECEIVED        the order as first received, with its raw payload
                          sk = CURRENT         current view + version + the order's job
                          sk = EVENT#<at>#<n>  one timeline event

The CURRENT item also carries what the console's search finds an order by (orders.search
`index_fields`, recomputed on every write of it, so an amendment moves the order in the
indexes): `external_id` (index `by-external-id`), `buyer_phone4` + `buyer_name_key` (index
`by-buyer-phone`: the phone's last four digits only, never the number), and the row a hit list
shows (`status`, `buyer_name`, `placed_at`, `paid_at`), projected into both indexes.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import (
    MAX_ITEM_BYTES,
    MAX_PARTITION_KEY_BYTES,
    Action,
    from_attrs,
    plain_size,
    to_attrs,
)
from chalicelib.core.listing import Listing
from chalicelib.core.listing import query as query_page
from chalicelib.core.settings import settings
from chalicelib.orders.lists import WorkList, entered_at, list_of
from chalicelib.orders.order import InvalidOrder, Order, OrderEvent, received_bound
from chalicelib.orders.search import index_fields

EXTERNAL_ID_INDEX = "by-external-id"
PHONE_INDEX = "by-buyer-phone"
LIST_INDEX = "by-list"
LIST_KEYS = ("pk", "sk", "work_list", "listed_at")  # a start key of the list index
# The attributes of a hit list's row (a reserved word among them: named through #names).
_ROW = {"#pk": "pk", "#mk": "marketplace", "#sh": "shop", "#ex": "external_id",
        "#bn": "buyer_name", "#st": "status", "#pl": "placed_at", "#pa": "paid_at"}


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
    listed_at: str = ""  # when the order entered the list it is on (orders.lists), if any

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
        listed_at=str(item.get("listed_at", "")),
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
        "marketplace": order.marketplace, "shop": order.shop, **index_fields(order),
    }
    if 0 < len(order.external_id.encode("utf-8", "surrogatepass")) <= MAX_PARTITION_KEY_BYTES:
        # An index key is neither empty nor longer than DynamoDB takes (which would refuse the
        # write): a number no marketplace issues is not searchable, the order still stored.
        item["external_id"] = order.external_id
    item.update(list_fields(order, previous, now))
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


def list_fields(order: Order, previous: StoredOrder | None, now: datetime) -> dict[str, Any]:
    """The `by-list` index's attributes of the order's CURRENT item: none when the order is on
    no list (the item leaves the sparse index as the Put replaces it)."""
    since = entered_at(order, previous.order if previous else None,
                       previous.listed_at if previous else None, now)
    listed = list_of(order)
    if since is None or listed is None:
        return {}
    return {"work_list": listed.value, "listed_at": since, "name": order.name,
            "total": str(order.totals.total), "currency": order.currency,
            "after_sale": order.after_sale.value}


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


# --- The console's search (flows/order_search.py) -------------------------------------------


def order_id_of(item: Mapping[str, Any]) -> str:
    return str(item["pk"]).removeprefix("ORDER#")


def row(order_id: str) -> dict[str, Any] | None:
    """The hit-list row of one order's CURRENT item: one GetItem, of the row's attributes."""
    answer = aws.client("dynamodb").get_item(
        TableName=settings().orders_table, Key=to_attrs({"pk": _pk(order_id), "sk": "CURRENT"}),
        ProjectionExpression=", ".join(_ROW), ExpressionAttributeNames=_ROW)
    return from_attrs(answer["Item"]) if "Item" in answer else None


def rows(order_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The hit-list rows of the CURRENT items of `order_ids` (unknown ones left out), in no
    particular order: one BatchGetItem per 100, of the row's attributes only."""
    table = settings().orders_table
    wanted = [to_attrs({"pk": _pk(order_id), "sk": "CURRENT"})
              for order_id in dict.fromkeys(order_ids)]
    found: list[dict[str, Any]] = []
    for start in range(0, len(wanted), 100):
        request: dict[str, Any] = {table: {
            "Keys": wanted[start:start + 100], "ProjectionExpression": ", ".join(_ROW),
            "ExpressionAttributeNames": _ROW}}
        while request:
            answer = aws.client("dynamodb").batch_get_item(RequestItems=request)
            found += [from_attrs(item) for item in answer["Responses"].get(table, [])]
            request = answer.get("UnprocessedKeys") or {}
    return found


def by_external_id(external_id: str, limit: int) -> list[dict[str, Any]]:
    """Rows of the orders whose marketplace order number is `external_id` (one per
    marketplace and shop that used it): one Query."""
    return _query_index(EXTERNAL_ID_INDEX, "external_id = :v", {":v": external_id}, limit)


def by_phone(phone4: str, name_key: str, limit: int) -> list[dict[str, Any]]:
    """Rows of the orders whose phone ends in `phone4`, narrowed to names beginning with
    `name_key` (normalised: orders.search.name_key) when one is given: one Query."""
    if not name_key:
        return _query_index(PHONE_INDEX, "buyer_phone4 = :v", {":v": phone4}, limit)
    return _query_index(PHONE_INDEX, "buyer_phone4 = :v AND begins_with(buyer_name_key, :n)",
                        {":v": phone4, ":n": name_key}, limit)


def _query_index(index: str, condition: str, values: dict[str, str],
                 limit: int) -> list[dict[str, Any]]:
    answer = aws.client("dynamodb").query(
        TableName=settings().orders_table, IndexName=index, KeyConditionExpression=condition,
        ExpressionAttributeValues=to_attrs(values), Limit=limit)
    return [from_attrs(item) for item in answer.get("Items", [])]


# --- The CS supervisor's lists (flows/order_lists.py) -------------------------------------


def list_page(work_list: WorkList, limit: int, after: dict[str, Any] | None) -> Listing:
    """A page of the orders on `work_list`, longest there first: one Query on `by-list`."""
    request = {
        "TableName": settings().orders_table, "IndexName": LIST_INDEX,
        "KeyConditionExpression": "work_list = :l",
        "ExpressionAttributeValues": to_attrs({":l": work_list.value}),
    }
    return query_page(request, LIST_KEYS, limit, after)
