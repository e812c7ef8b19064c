"""The console's search (GET /cs/v1/orders?q=, chalicelib/flows/order_search.py) on the local
stack, over orders made by the real pipeline: a Shopify webhook, the order worker, the factory
shipping through the warehouse API, CS amending the address."""

from __future__ import annotations

import random
import string
import urllib.parse
import uuid
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.access.keys import Role
from chalicelib.flows import order_search
from chalicelib.orders.order import order_id_for
from tests.integration.test_warehouse_api import Api, queue_orders
from tests.support import NEW_ADDRESS, SHOP


@pytest.fixture
def api(client: Client, partner: str, make_key: Any) -> Api:
    return Api(client, make_key("partner", partner),
               make_key("staff", "ann", Role.BACK_OFFICE))


def letters(n: int = 6) -> str:
    """A name no other test's order has (the stack is shared by the whole session)."""
    return "".join(random.choices(string.ascii_lowercase, k=n))


def mobile() -> str:
    return f"1{random.randint(3, 9)}{random.randint(0, 10**9 - 1):09d}"


class Made:
    def __init__(self, payload: dict[str, Any], name: str, phone: str) -> None:
        self.external_id = str(payload["id"])
        self.order_id = order_id_for("shopify", SHOP, self.external_id)
        self.name, self.phone = name, phone


def made(client: Client, stack: dict[str, str], *, name: str, phone: str) -> Made:
    """One paid Shopify order through the webhook and the worker, shipped to `name`/`phone`."""
    address = {"first_name": "", "last_name": "", "name": name, "address1": "南京西路 1 号",
               "city": "上海", "province": "Shanghai", "province_code": "SH", "zip": "200040",
               "country": "China", "country_code": "CN", "phone": phone}
    (payload,) = queue_orders(client, stack, 1, shipping_address=address)
    return Made(payload, name, phone)


def shipped(api: Api, order: Made) -> str:
    """The factory claims, prints, packs and ships the order's job; its tracking number."""
    claimed = api.claim(1)
    (job,) = [j for j in claimed["jobs"] if j["order_id"] == order.order_id]
    api.take(job, claimed["lease_id"])
    number = f"77{uuid.uuid4().int % 10**10:010d}"
    api.post(f"/jobs/{job['job_id']}/print", {"waybill_numbers": [number]})
    api.post(f"/jobs/{job['job_id']}/pick", {})
    api.post(f"/jobs/{job['job_id']}/pack", {"weight_grams": 640, "package_count": 1})
    api.post(f"/jobs/{job['job_id']}/ship", {"shipment_id": "s1", "packages": [
        {"carrier_code": "STO", "tracking_number": number}]})
    return number


def search(api: Api, text: str, expect: int = 200) -> Any:
    return api.call("get", f"/cs/v1/orders?q={urllib.parse.quote(text)}", key=api.cs_key,
                    expect=expect)


def found(api: Api, text: str) -> dict[str, list[str]]:
    """Order id -> the kinds that found it."""
    return {hit["order_id"]: [m["kind"] for m in hit["matched_by"]]
            for hit in search(api, text)["hits"]}


def test_an_order_is_found_by_our_id_its_number_its_tracking_number_and_its_phone(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    phone = mobile()
    order = made(client, stack, name=f"Lin {letters()}", phone=f"+86 {phone}")
    number = shipped(api, order)

    by_id = search(api, order.order_id)
    assert by_id["tried"] == ["order_id"]
    (hit,) = by_id["hits"]
    assert hit == {
        "order_id": order.order_id, "marketplace": "shopify", "shop": SHOP,
        "external_id": order.external_id, "buyer_name": order.name, "status": "paid",
        "paid_at": hit["paid_at"], "placed_at": hit["placed_at"],
        "matched_by": [{"kind": "order_id", "carrier_code": "", "tracking_number": ""}]}
    assert hit["paid_at"] and hit["placed_at"]

    assert found(api, order.external_id)[order.order_id] == ["external_id"]

    tracked = search(api, number)  # without the carrier: a buyer reads out only the number
    assert tracked["tried"] == ["external_id", "tracking_number"]
    (hit,) = [h for h in tracked["hits"] if h["order_id"] == order.order_id]
    assert hit["matched_by"] == [{"kind": "tracking_number", "carrier_code": "STO",
                                  "tracking_number": number}]
    assert hit["buyer_name"] == order.name and hit["status"] == "paid"

    last4 = phone[-4:]
    assert found(api, f"{last4} {order.name}") == {order.order_id: ["phone"]}
    assert found(api, f"{order.name} {last4}") == {order.order_id: ["phone"]}
    assert order.order_id in found(api, last4)  # alone: every order ending so (a few)
    assert found(api, phone)[order.order_id] == ["phone"]  # the full number: its last four


def test_a_name_in_another_case_or_width_still_matches_and_a_prefix_narrows(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    surname = letters()
    order = made(client, stack, name=f"{surname.capitalize()} Wei", phone=mobile())
    last4 = order.phone[-4:]
    wide = "".join(chr(ord(ch) - 0x20 + 0xFF00) for ch in surname.upper())  # ＡＢＣ...
    wide_digits = "".join(chr(ord(d) - 0x30 + 0xFF10) for d in last4)
    assert found(api, f"{wide}　wei {wide_digits}") == {order.order_id: ["phone"]}
    assert found(api, f"{surname} {last4}") == {order.order_id: ["phone"]}  # a prefix
    assert found(api, f"{letters()} {last4}") == {}  # another name: not this order


def test_after_an_address_amendment_the_new_phone_finds_it_and_the_old_one_does_not(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    old = made(client, stack, name=f"Old {letters()}", phone=mobile())
    assert found(api, f"{old.phone[-4:]} {old.name}") == {old.order_id: ["phone"]}
    new_phone, new_name = mobile(), f"New {letters()}"
    api.amend(old.order_id, {"kind": "address", "reason": "buyer phoned", "address": {
        **NEW_ADDRESS, "name": new_name, "phone": new_phone}})

    assert found(api, f"{new_phone[-4:]} {new_name}") == {old.order_id: ["phone"]}
    assert found(api, f"{old.phone[-4:]} {old.name}") == {}
    assert old.order_id not in found(api, old.phone[-4:])
    assert search(api, old.order_id)["hits"][0]["buyer_name"] == new_name


def test_the_index_holds_the_last_four_digits_never_the_phone(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    order = made(client, stack, name=f"Li {letters()}", phone=mobile())
    item = boto3.client("dynamodb").get_item(
        TableName=stack["ORDERS_TABLE"], Key={"pk": {"S": f"ORDER#{order.order_id}"},
                                             "sk": {"S": "CURRENT"}})["Item"]
    indexed = {k: v for k, v in item.items() if k not in ("order", "pk", "sk")}
    assert item["buyer_phone4"] == {"S": order.phone[-4:]}
    assert order.phone not in str(indexed)
    answer = boto3.client("dynamodb").query(
        TableName=stack["ORDERS_TABLE"], IndexName="by-buyer-phone",
        KeyConditionExpression="buyer_phone4 = :p",
        ExpressionAttributeValues={":p": {"S": order.phone[-4:]}})
    ours = [i for i in answer["Items"] if i["pk"]["S"] == f"ORDER#{order.order_id}"]
    assert ours and "order" not in ours[0]  # the row only, never the order with its phone


def test_hits_are_deduplicated_and_newest_first(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    phone, name = mobile(), f"Zhao {letters()}"
    first = made(client, stack, name=name, phone=phone)
    second = made(client, stack, name=name, phone=phone)
    result = order_search.search(f"{name} {phone[-4:]}")
    assert {h.order_id for h in result.hits} == {first.order_id, second.order_id}
    stamps = [h.paid_at or h.placed_at or "" for h in result.hits]
    assert stamps == sorted(stamps, reverse=True)
    assert len(order_search.search(f"{name} {phone[-4:]}", limit=1).hits) == 1


@pytest.mark.parametrize("text", ["", "   ", "9" * 500, "<img src=x onerror=alert(1)>",
                                  "张三"])
def test_nothing_too_much_markup_or_a_name_alone_is_invalid_query(
        api: Api, text: str) -> None:
    error = search(api, text, expect=400)
    assert error["error"] == "invalid_query"
    assert "<img" not in error["message"]


def test_the_existing_lookups_still_answer_the_one_order(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    order = made(client, stack, name=f"Wu {letters()}", phone=mobile())
    number = shipped(api, order)
    view = api.call("get", f"/cs/v1/orders?carrier_code=STO&tracking_number={number}",
                    key=api.cs_key)
    assert view["order_id"] == order.order_id
    view = api.call("get", f"/cs/v1/orders?marketplace=shopify&shop={SHOP}"
                    f"&external_id={order.external_id}", key=api.cs_key)
    assert view["order_id"] == order.order_id


def test_an_order_with_an_outsized_name_or_number_is_still_stored_and_found_by_phone(
        stack: dict[str, str]) -> None:
    from chalicelib.core.clock import utcnow
    from chalicelib.core.dynamodb import transact
    from chalicelib.marketplaces import shopify
    from chalicelib.orders import order_store
    from chalicelib.orders.order import Address
    from tests.support import dumps, shopify_order

    base = shopify.normalise(dumps(shopify_order()), {"x-shopify-shop-domain": SHOP}, "shopify")
    phone, name = mobile(), letters(8) * 400  # 3,200 characters: past any key's limit
    order = base.model_copy(update={"external_id": "9" * 3000,
                                    "shipping_address": Address(name=name, phone=phone)})
    transact([order_store.put_current(order, None, None, utcnow())])  # not refused
    assert order_search.search(f"{phone[-4:]} {name[:60]}").hits[0].order_id == order.order_id
