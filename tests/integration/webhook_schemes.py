"""Every webhook scheme as a sender would use it, for the hostile-input tests: a registered
source, a valid payload for now, and headers signed over whatever body is finally sent (the
recipes written out here, independently of the adapters). Also a stand-in platform for the
thin notifications' re-fetch, answering from the recorded fixtures.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib.access import accounts_store as accounts
from chalicelib.core.http import Request
from chalicelib.cs import alert_topic
from chalicelib.cs.alerts import Alert
from chalicelib.flows import intake, marketplace_calls
from chalicelib.marketplaces.calls import OrderRef
from chalicelib.orders import inbox_store
from tests.support import (
    canonical_order,
    shopify_headers,
    shopify_order,
    standard_headers,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WOO_SECRET = "woo-hostile-secret"
DOUYIN_KEY, DOUYIN_SECRET = "7312345678901234567", "dy-hostile-secret"
TTS_KEY, TTS_SECRET = "6abc3j8v1u9kq", "tts-hostile-secret"
SHOPEE_KEY, SHOPEE_URL = "shopee-hostile-partner-key", "https://hooks.example.com/webhooks/shopee-h"
LAZADA_KEY, LAZADA_SECRET = "105827", "lazada-hostile-secret"
WOO_SHOP = "shop.example.cn"

SOURCES: dict[str, dict[str, Any]] = {
    "woo-h": {"scheme": "woocommerce", "secrets": [WOO_SECRET]},
    "douyin-h": {"scheme": "douyin", "secrets": [f"{DOUYIN_KEY}:{DOUYIN_SECRET}"]},
    "tts-h": {"scheme": "tiktok_shop", "secrets": [f"{TTS_KEY}:{TTS_SECRET}"]},
    "shopee-h": {"scheme": "shopee", "secrets": [f"{SHOPEE_KEY}|{SHOPEE_URL}"]},
    "lazada-h": {"scheme": "lazada", "secrets": [f"{LAZADA_KEY}:{LAZADA_SECRET}"]},
}


def _load(*path: str) -> Any:
    return json.loads((FIXTURES.joinpath(*path)).read_text(encoding="utf-8"))


def unique() -> int:
    return uuid.uuid4().int % 10**15 + 10**15


@dataclass(frozen=True)
class Scheme:
    """One webhook scheme: `payload(now)` a valid notification (a JSON value), `headers(body,
    delivery, now)` the signed headers for exactly these bytes (`delivery` feeds the header
    that carries a delivery id, where the scheme has one)."""

    name: str
    source: str
    payload: Callable[[datetime], Any]
    headers: Callable[[bytes, str | None, datetime], dict[str, str]]
    thin: bool = False


def _shopify_payload(now: datetime) -> Any:
    return shopify_order(id=unique())


def _shopify_headers(body: bytes, delivery: str | None, now: datetime) -> dict[str, str]:
    return shopify_headers(body, webhook_id=delivery or str(uuid.uuid4()))


def _standard_payload(now: datetime) -> Any:
    return {"type": "order.paid", "timestamp": now.isoformat(),
            "data": canonical_order(external_id=f"SO-{unique()}")}


def _standard_headers(body: bytes, delivery: str | None, now: datetime) -> dict[str, str]:
    return standard_headers(body, msg_id=delivery, timestamp=int(now.timestamp()))


def _woo_payload(now: datetime) -> Any:
    order = copy.deepcopy(_load("woocommerce", "order_processing.json"))
    order["id"] = unique() % 10**9
    return order


def _woo_headers(body: bytes, delivery: str | None, now: datetime) -> dict[str, str]:
    signature = base64.b64encode(hmac.new(WOO_SECRET.encode(), body, hashlib.sha256).digest())
    return {"Content-Type": "application/json", "X-WC-Webhook-Signature": signature.decode(),
            "X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Resource": "order",
            "X-WC-Webhook-Event": "created", "X-WC-Webhook-ID": "7",
            "X-WC-Webhook-Delivery-ID": delivery or uuid.uuid4().hex,
            "X-WC-Webhook-Source": f"https://{WOO_SHOP}/"}


def douyin_message(order_id: int, now: datetime, shop_id: int = 4463798) -> dict[str, Any]:
    data = {"biz": 2, "create_time": int(now.timestamp()), "order_status": 1, "order_type": 0,
            "p_id": order_id, "s_ids": [order_id + 1], "shop_id": shop_id}
    return {"tag": "100", "msg_id": f"{order_id}:0:100:{unique()}", "data": json.dumps(data)}


def _douyin_payload(now: datetime) -> Any:
    return [douyin_message(unique(), now), douyin_message(unique(), now)]  # split by the worker


def _douyin_headers(body: bytes, delivery: str | None, now: datetime) -> dict[str, str]:
    sign = hashlib.md5(DOUYIN_KEY.encode() + body + DOUYIN_SECRET.encode()).hexdigest()
    return {"Content-Type": "application/json", "event-sign": sign, "app-id": DOUYIN_KEY}


def _tts_payload(now: datetime) -> Any:
    body = copy.deepcopy(_load("tiktok_shop", "notification_order_status.json"))
    body.update(tts_notification_id=str(unique()), timestamp=int(now.timestamp()))
    body["data"].update(order_id=str(unique()), update_time=int(now.timestamp()))
    return body


def _tts_headers(body: bytes, delivery: str | None, now: datetime) -> dict[str, str]:
    sign = hmac.new(TTS_SECRET.encode(), TTS_KEY.encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Authorization": sign}


def _shopee_payload(now: datetime) -> Any:
    body = copy.deepcopy(_load("shopee", "push_order_status.json"))
    body.update(timestamp=int(now.timestamp()))
    body["data"].update(ordersn=f"2611{unique()}", update_time=int(now.timestamp()))
    return body


def _shopee_headers(body: bytes, delivery: str | None, now: datetime) -> dict[str, str]:
    sign = hmac.new(SHOPEE_KEY.encode(), SHOPEE_URL.encode() + b"|" + body,
                    hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Authorization": sign}


def _lazada_payload(now: datetime) -> Any:
    body = copy.deepcopy(_load("lazada", "push_trade_order.json"))
    body.update(timestamp=int(now.timestamp() * 1000))
    body["data"].update(trade_order_id=str(unique()), trade_order_line_id=str(unique()),
                        status_update_time=int(now.timestamp()))
    return body


def _lazada_headers(body: bytes, delivery: str | None, now: datetime) -> dict[str, str]:
    sign = hmac.new(LAZADA_SECRET.encode(), LAZADA_KEY.encode() + body,
                    hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Authorization": sign}


SCHEMES: dict[str, Scheme] = {scheme.name: scheme for scheme in (
    Scheme("shopify", "shopify", _shopify_payload, _shopify_headers),
    Scheme("standard", "erp", _standard_payload, _standard_headers),
    Scheme("woocommerce", "woo-h", _woo_payload, _woo_headers),
    Scheme("douyin", "douyin-h", _douyin_payload, _douyin_headers, thin=True),
    Scheme("tiktok_shop", "tts-h", _tts_payload, _tts_headers, thin=True),
    Scheme("shopee", "shopee-h", _shopee_payload, _shopee_headers, thin=True),
    Scheme("lazada", "lazada-h", _lazada_payload, _lazada_headers, thin=True),
)}


def body_of(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def register() -> None:
    accounts.register_sources(SOURCES)


# The platforms' answers to a re-fetch -----------------------------------------------------------

ANSWERS: dict[str, dict[str, Any]] = {
    # scheme -> {a piece of the request path: the recorded answer}
    "douyin": {"orderDetail": _load("douyin", "order_detail.json")},
    "tiktok_shop": {"/order/202309/orders": _load("tiktok_shop", "order_detail.json")},
    "shopee": {"get_order_detail": _load("shopee", "order_detail.json")},
    "lazada": {"/order/items/get": _load("lazada", "order_items.json"),
               "/order/get": _load("lazada", "order_get.json")},
}
CREDENTIALS = {"app_key": "k", "app_secret": "s", "access_token": "t", "shop_id": "1",
               "shop_cipher": "c", "partner_id": "1", "site": "com.my"}


def platform_answer(scheme: str, ref: OrderRef, request: Request) -> Any:
    """The recorded answer to `request`, about the order `ref` names."""
    for piece, recorded in ANSWERS[scheme].items():
        if piece in request.url:
            answer = copy.deepcopy(recorded)
            break
    else:
        raise AssertionError(f"no recorded answer for {request.url}")
    order_id = ref.external_id
    if scheme == "douyin":
        answer["data"]["shop_order_detail"]["order_id"] = order_id
    elif scheme == "tiktok_shop":
        answer["data"]["orders"][0]["id"] = order_id
    elif scheme == "shopee":
        answer["response"]["order_list"][0]["order_sn"] = order_id
    elif isinstance(answer["data"], list):  # lazada's items
        for item in answer["data"]:
            item["order_id"] = order_id
    else:
        answer["data"]["order_id"] = order_id
    return answer


@contextmanager
def stand_in_platforms(monkeypatch: pytest.MonkeyPatch,
                       change: Callable[[Request, Any], Any] | None = None) -> Iterator[None]:
    """The re-fetch answered from the fixtures (each answer passed through `change(request,
    answer)`, if given), with any shop's credentials."""
    monkeypatch.setattr(marketplace_calls, "credentials_for",
                        lambda scheme, shop, now: dict(CREDENTIALS))
    asked: dict[str, Any] = {}

    def read(scheme: str, ref: OrderRef, source: str, now: datetime) -> Any:
        asked.update(scheme=scheme, ref=ref)
        return original(scheme, ref, source, now)

    def answer(request: Request) -> Any:
        found = platform_answer(asked["scheme"], asked["ref"], request)
        return change(request, found) if change else found

    original = marketplace_calls._fetch
    monkeypatch.setattr(marketplace_calls, "_fetch", read)
    monkeypatch.setattr(marketplace_calls, "send_json", answer)
    yield


class Recorder:
    """What the webhook path did: the alerts published, the deliveries stored, the answers."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.alerts: list[Alert] = []
        self.stored: list[tuple[str, str]] = []  # (source, delivery id) newly stored
        self.answers: list[dict[str, str]] = []
        monkeypatch.setattr(alert_topic, "publish", self.alerts.append)
        put, receive = inbox_store.put_delivery, intake.receive

        def recording_put(source: str, scheme: str, accepted: Any, raw: bytes,
                          received_at: datetime) -> bool:
            new = put(source, scheme, accepted, raw, received_at)
            if new:
                self.stored.append((source, accepted.delivery_id))
            return new

        def recording_receive(*args: Any) -> dict[str, str]:
            answer = receive(*args)
            self.answers.append(answer)
            return answer

        monkeypatch.setattr(inbox_store, "put_delivery", recording_put)
        monkeypatch.setattr(intake, "receive", recording_receive)

    def kinds(self) -> list[str]:
        return [alert.kind for alert in self.alerts]

    def reset(self) -> None:
        self.alerts.clear()
        self.stored.clear()
        self.answers.clear()
