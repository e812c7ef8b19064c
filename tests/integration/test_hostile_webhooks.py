"""Issue 12: what a correctly signed (or unsigned) hostile notification may do. A webhook is
answered 2xx only if its delivery can be stored AND applied; what cannot is refused before the
answer with the caller's 4xx; the worker finishes whatever it meets (an order, or an
`order.invalid` case) and raises only for what may work later; the store's faults are 503
within the sender's patience."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from chalice.test import Client

from app import app
from chalicelib.access import accounts_store as accounts
from chalicelib.core import aws
from chalicelib.core.clock import utcnow
from chalicelib.core.settings import settings
from chalicelib.flows.order_worker import apply_delivery
from chalicelib.orders import inbox_store
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.deliveries import Accepted
from chalicelib.orders.order import order_id_for
from tests.integration.flow import inbox_item, process
from tests.integration.webhook_schemes import (
    FIXTURES,
    SCHEMES,
    Recorder,
    body_of,
    douyin_message,
    register,
    stand_in_platforms,
    unique,
)
from tests.support import SHOP


@pytest.fixture
def client(stack: dict[str, str]) -> Iterator[Client]:
    register()
    with Client(app, stage_name="local") as test_client:
        yield test_client


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return Recorder(monkeypatch)


def post(client: Client, scheme: str, value: Any, *, delivery: str | None = None,
         now: datetime | None = None, headers: dict[str, str] | None = None) -> Any:
    sender = SCHEMES[scheme]
    body = value if isinstance(value, bytes) else body_of(value)
    sent = {**sender.headers(body, delivery, now or utcnow()), **(headers or {})}
    return client.http.post(f"/webhooks/{sender.source}", body=body, headers=sent)


def error_of(response: Any) -> str:
    return str(json.loads(response.body)["error"])


def put_inbox(source: str, scheme: str, raw: bytes, delivery_id: str | None = None) -> dict[str,
                                                                                         Any]:
    """A delivery as if an earlier version of intake had let it through."""
    accepted = Accepted(delivery_id=delivery_id or uuid.uuid4().hex, topic="orders/paid",
                        shop=SHOP, headers={"x-shopify-shop-domain": SHOP})
    assert inbox_store.put_delivery(source, scheme, accepted, raw, utcnow())
    item = inbox_item({"INBOX_TABLE": settings().inbox_table}, source, accepted.delivery_id)
    assert item is not None
    return item


# 1. A non-ASCII signature is a wrong signature, not our fault ---------------------------------


@pytest.mark.parametrize("scheme, header", [
    ("douyin", "event-sign"), ("tiktok_shop", "Authorization"), ("shopee", "Authorization"),
    ("lazada", "Authorization"), ("shopify", "X-Shopify-Hmac-Sha256"),
    ("woocommerce", "X-WC-Webhook-Signature"), ("standard", "webhook-signature"),
])
def test_a_signature_header_with_any_character_is_401_never_500(
        client: Client, seen: Recorder, scheme: str, header: str) -> None:
    sender = SCHEMES[scheme]
    for odd in ("é", "v1,é", "\u202e", "😀" * 3, "ÿ" * 64):
        response = post(client, scheme, sender.payload(utcnow()), headers={header: odd})
        assert response.status_code == 401, (odd, response.body)
        assert error_of(response) == "invalid_signature"
    assert "system.fault" not in seen.kinds() and seen.stored == []


# 2. An order whose stored form would not fit is refused before the answer ---------------------


def test_a_signed_shopify_order_too_large_to_store_is_refused_413_and_nothing_stored(
        client: Client, seen: Recorder) -> None:
    payload = SCHEMES["shopify"].payload(utcnow())
    payload["note"] = "x" * 200_000  # a 204 KB body: under the body limit, twice over an item's
    response = post(client, "shopify", payload)
    assert response.status_code == 413, response.body
    assert error_of(response) == "payload_too_large"
    assert seen.stored == []
    assert "webhook.invalid_payload" in seen.kinds()  # a real order refused: CS must know


def test_a_large_order_that_fits_is_stored_once_and_applied(
        client: Client, stack: dict[str, str], seen: Recorder) -> None:
    payload = SCHEMES["shopify"].payload(utcnow())
    payload["note"] = "备注" * 20_000  # 120 KB of note, in UTF-8
    delivery = str(uuid.uuid4())
    response = post(client, "shopify", payload, delivery=delivery)
    assert response.status_code == 200, response.body
    assert process(client, stack, "shopify", delivery) == {"batchItemFailures": []}
    stored = orders_store.get_current(order_id_for("shopify", SHOP, str(payload["id"])))
    assert stored is not None and stored.order.buyer_note == payload["note"]


def test_an_order_too_large_to_apply_that_reached_the_inbox_becomes_a_case_not_a_vanishing(
        stack: dict[str, str], seen: Recorder) -> None:
    payload = SCHEMES["shopify"].payload(utcnow())
    payload["note"] = "x" * 200_000
    item = put_inbox("shopify", "shopify", body_of(payload))
    assert apply_delivery(item, utcnow()) == "invalid"
    assert ("order.invalid", item["pk"]) in [(a.kind, a.subject) for a in seen.alerts]
    after = inbox_item(stack, "shopify", item["delivery_id"])
    assert after is not None and after["outcome"] == "invalid" and "pending" not in after


# 3. Signed notifications that would poison the worker ----------------------------------------

OUT_OF_RANGE = (10**12, 10**20, -(10**12))
# Lazada sends milliseconds (10**12 ms is 2001, a fine time): its out-of-range values.
LAZADA_OUT_OF_RANGE = (10**17, 10**20, -(10**12))


@pytest.mark.parametrize("scheme, field, when", [
    *(("tiktok_shop", "update_time", when) for when in OUT_OF_RANGE),
    *(("shopee", "update_time", when) for when in OUT_OF_RANGE),
    *(("lazada", "status_update_time", when) for when in LAZADA_OUT_OF_RANGE),
])
def test_an_update_time_out_of_range_is_refused_422_with_the_field(
        client: Client, seen: Recorder, scheme: str, field: str, when: int) -> None:
    payload = SCHEMES[scheme].payload(utcnow())
    payload["data"][field] = when
    response = post(client, scheme, payload)
    assert response.status_code == 422, response.body
    answer = json.loads(response.body)
    assert answer["error"] == "invalid_payload"
    assert any(field in problem["field"] for problem in answer["details"]["problems"])
    assert seen.stored == []


@pytest.mark.parametrize("when", [10**400, "9" * 3000, -(10**400), 10**20])
@pytest.mark.parametrize("scheme", ["tiktok_shop", "shopee", "lazada"])
def test_a_push_timestamp_out_of_any_range_is_refused_never_500(
        client: Client, seen: Recorder, scheme: str, when: int | str) -> None:
    payload = SCHEMES[scheme].payload(utcnow())
    payload["timestamp"] = when  # found by the fuzz: Lazada's ms / 1000 overflowed a float
    response = post(client, scheme, payload)
    assert response.status_code in (401, 422), response.body
    assert error_of(response) in ("stale_or_invalid_timestamp", "invalid_payload")
    assert seen.stored == []


@pytest.mark.parametrize("when", OUT_OF_RANGE)
def test_a_douyin_message_time_out_of_range_is_refused_422(
        client: Client, seen: Recorder, when: int) -> None:
    message = douyin_message(unique(), utcnow())
    data = json.loads(message["data"])
    data["update_time"] = when
    message["data"] = json.dumps(data)
    response = post(client, "douyin", [message])
    assert response.status_code == 422, response.body
    assert seen.stored == []


@pytest.mark.parametrize("scheme, field", [
    ("tiktok_shop", "update_time"), ("shopee", "update_time"), ("lazada", "status_update_time"),
])
def test_an_unreadable_notification_in_the_inbox_is_finished_invalid_with_a_case(
        stack: dict[str, str], seen: Recorder, scheme: str, field: str) -> None:
    payload = SCHEMES[scheme].payload(utcnow())
    payload["data"][field] = 10**20
    item = put_inbox(SCHEMES[scheme].source, scheme, body_of(payload))
    assert apply_delivery(item, utcnow()) == "invalid"
    assert "order.invalid" in seen.kinds()


def test_a_bad_record_does_not_fail_the_batch_with_the_good_one(
        client: Client, stack: dict[str, str], seen: Recorder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    good = SCHEMES["tiktok_shop"].payload(utcnow())
    assert post(client, "tiktok_shop", good).status_code == 200
    bad = SCHEMES["tiktok_shop"].payload(utcnow())
    bad["data"]["update_time"] = 10**12
    bad_item = put_inbox("tts-h", "tiktok_shop", body_of(bad))
    with stand_in_platforms(monkeypatch):
        answer = process(client, stack, "tts-h", bad_item["delivery_id"],
                         good["tts_notification_id"])
    assert answer == {"batchItemFailures": []}
    assert inbox_item(stack, "tts-h", bad_item["delivery_id"])["outcome"] == "invalid"
    assert inbox_item(stack, "tts-h", good["tts_notification_id"])["outcome"] == "created"


def test_a_douyin_push_naming_150_orders_is_split_into_150_deliveries(
        client: Client, stack: dict[str, str], seen: Recorder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = utcnow()
    messages = [douyin_message(unique(), now) for _ in range(150)]
    response = post(client, "douyin", messages)
    assert response.status_code == 200, response.body
    (answer,) = seen.answers
    assert process(client, stack, "douyin-h", answer["delivery_id"]) == {"batchItemFailures": []}
    parent = inbox_item(stack, "douyin-h", answer["delivery_id"])
    assert parent is not None and parent["outcome"] == "split"
    children = [f"{answer['delivery_id']}#{json.loads(m['data'])['p_id']}" for m in messages]
    assert all(inbox_item(stack, "douyin-h", child) is not None for child in children)
    with stand_in_platforms(monkeypatch):  # and each becomes its order
        for start in range(0, len(children), 25):
            batch = children[start:start + 25]
            assert process(client, stack, "douyin-h", *batch) == {"batchItemFailures": []}
    assert {inbox_item(stack, "douyin-h", child)["outcome"] for child in children} == \
        {"created"}


# 6. A caller's oversized id is the caller's mistake ------------------------------------------

LONG = "9" * 3000


def test_an_oversized_delivery_id_is_400_on_every_scheme(client: Client, seen: Recorder) -> None:
    now = utcnow()
    cases: list[tuple[str, Any, str | None]] = []
    shopify = SCHEMES["shopify"].payload(now)
    cases.append(("shopify", shopify, LONG))  # X-Shopify-Webhook-Id
    cases.append(("standard", SCHEMES["standard"].payload(now), LONG))  # webhook-id
    tts = SCHEMES["tiktok_shop"].payload(now)
    tts["tts_notification_id"] = LONG
    cases.append(("tiktok_shop", tts, None))
    shopee = SCHEMES["shopee"].payload(now)
    shopee["data"]["ordersn"] = LONG
    cases.append(("shopee", shopee, None))
    lazada = SCHEMES["lazada"].payload(now)
    lazada["data"]["trade_order_line_id"] = LONG
    cases.append(("lazada", lazada, None))
    for scheme, value, delivery in cases:
        response = post(client, scheme, value, delivery=delivery)
        assert response.status_code == 400, (scheme, response.status_code, response.body)
        assert error_of(response) == "invalid_delivery_id", scheme
    assert seen.stored == []


def test_an_unsigned_woocommerce_ping_is_answered_200_and_not_stored(
        client: Client, seen: Recorder) -> None:
    ping = {"Content-Type": "application/x-www-form-urlencoded",
            "X-WC-Webhook-Source": "https://shop.example.cn/"}
    response = client.http.post("/webhooks/woo-h", body=b"webhook_id=7", headers=ping)
    assert (response.status_code, response.body) == (200, b"")
    assert seen.stored == []
    response = client.http.post("/webhooks/woo-h", body=f"webhook_id={LONG}".encode(),
                                headers=ping)
    assert response.status_code == 400 and error_of(response) == "invalid_delivery_id"
    assert seen.stored == []


# JSON nested deeper than anyone sends ---------------------------------------------------------


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_json_nested_10000_deep_is_400_malformed_json_on_every_scheme(
        client: Client, seen: Recorder, scheme: str) -> None:
    value = SCHEMES[scheme].payload(utcnow())
    deep = b"[" * 10_000 + b"]" * 10_000
    body = body_of(value).replace(b'"currency":"', b'"deep":' + deep + b',"currency":"', 1) \
        if scheme in ("shopify", "woocommerce") else nested(10_000)
    response = post(client, scheme, body)
    assert response.status_code == 400, (scheme, response.status_code, response.body[:200])
    assert error_of(response) == "malformed_json"
    assert "system.fault" not in seen.kinds() and seen.stored == []


# The store's faults are ours (503, retry), the caller's data is the caller's (400) -----------


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "PutItem")


def test_a_store_validation_error_is_the_callers_400_and_throttling_our_503_retry_after(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> bool:
        raise _client_error(refused)

    monkeypatch.setattr(inbox_store, "put_delivery", refuse)
    refused = "ValidationException"
    response = post(client, "shopify", SCHEMES["shopify"].payload(utcnow()))
    assert response.status_code == 400, response.body
    refused = "ProvisionedThroughputExceededException"
    response = post(client, "shopify", SCHEMES["shopify"].payload(utcnow()))
    assert response.status_code == 503 and error_of(response) == "storage_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def hold() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_the_webhook_answers_within_4_seconds_whatever_the_store_does(
        client: Client, stack: dict[str, str], silent_endpoint: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    accounts.source("shopify")  # the secrets are cached, as in a warm function
    # Production's patience, not the local endpoint's.
    monkeypatch.delenv("AWS_READ_TIMEOUT_SECONDS", raising=False)
    monkeypatch.delenv("WEBHOOK_DEADLINE_SECONDS", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", silent_endpoint)
    aws.reset()
    started = time.monotonic()
    response = post(client, "shopify", SCHEMES["shopify"].payload(utcnow()))
    elapsed = time.monotonic() - started
    assert response.status_code == 503 and error_of(response) == "storage_unavailable"
    assert "Retry-After" in response.headers
    assert elapsed < 4.0, elapsed


# Feeds: an Amazon message is deleted from the queue only once stored, and stored only if the
# worker can apply it; one that never could is a case, then deleted (not retried forever).


def amazon_change(**changes: Any) -> str:
    message = json.loads((FIXTURES / "amazon" / "order_change_unshipped.json").read_text())
    message["NotificationMetadata"]["NotificationId"] = str(uuid.uuid4())
    change = message["Payload"]["OrderChangeNotification"]
    change["AmazonOrderId"] = f"113-{unique() % 10**7:07d}-{unique() % 10**7:07d}"
    for name, value in changes.items():
        if name == "NotificationId":
            message["NotificationMetadata"][name] = value
        else:
            change[name] = value
    return json.dumps(message)


@pytest.mark.parametrize("changes", [{"NotificationId": LONG}, {"AmazonOrderId": LONG}])
def test_an_amazon_message_the_worker_could_never_apply_is_a_case_not_a_retry_loop(
        stack: dict[str, str], seen: Recorder, changes: dict[str, str]) -> None:
    from chalicelib.flows import feeds

    assert feeds.amazon_message(amazon_change(**changes), utcnow()) == "unreadable"
    assert seen.kinds() == ["marketplace.unreadable_notification"] and seen.stored == []
    assert feeds.amazon_message(amazon_change(), utcnow()) == "accepted"  # a good one still is
