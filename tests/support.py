"""Test helpers: realistic payloads and independently computed signatures."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack import demo

FIXTURES = Path(__file__).parent / "fixtures"
SHOPIFY_SECRET = "shpss_test_0f8e2c1d9a7b4e6f"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"erp-test-secret-32-bytes-long!!!").decode()
SHOP = demo.SHOP


def shopify_order(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = copy.deepcopy(
        json.loads((FIXTURES / "shopify" / "orders_paid.json").read_text())
    )
    order.update(changes)
    return order


def shopify_headers(body: bytes, *, topic: str = "orders/paid", secret: str = SHOPIFY_SECRET,
                    webhook_id: str | None = None, shop: str = SHOP) -> dict[str, str]:
    return demo.shopify_headers(body, secret, topic=topic, webhook_id=webhook_id, shop=shop)


def standard_headers(body: bytes, *, secret: str = STANDARD_SECRET, msg_id: str | None = None,
                     timestamp: int | None = None) -> dict[str, str]:
    """Standard Webhooks signature computed here, not by the library under test."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = str(timestamp if timestamp is not None else int(datetime.now(UTC).timestamp()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(signed).decode(),
    }


def canonical_order(**changes: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "shop": "erp-main",
        "external_id": "SO-2026-000117",
        "name": "SO-117",
        "status": "paid",
        "buyer": {"name": "王芳", "email": "wang.fang@example.com", "phone": "13900139000"},
        "shipping_address": {
            "name": "王芳", "line1": "西湖区文三路 90 号", "city": "杭州", "province": "浙江",
            "postal_code": "310012", "country_code": "CN", "phone": "13900139000",
        },
        "lines": [{"line_id": "1", "sku": "LS-BLK-L", "title": "Linen shirt", "variant": "Black/L",
                   "quantity": 1, "unit_price": "149.00"}],
        "currency": "CNY",
        "totals": {"subtotal": "149.00", "shipping": "0", "total": "149.00"},
        "placed_at": "2026-11-23T02:00:00Z",
        "paid_at": "2026-11-23T02:01:00Z",
        "updated_at": "2026-11-23T02:01:00Z",
    }
    order.update(changes)
    return order


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


NEW_ADDRESS = {"name": "林伟", "line1": "淮海中路 999 号", "line2": "", "city": "上海",
               "province": "Shanghai", "province_code": "SH", "postal_code": "200031",
               "country_code": "CN", "phone": "+86 138 0013 8000"}
