"""`make demo-order`: send a realistic, correctly signed Shopify order to the local stack.

The payload is the recorded sample order the tests use, with a fresh id and current times.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import random
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from chalicelib.local.stack import ROOT, RUN_FILE
from chalicelib.orders import order_id_for

SAMPLE = ROOT / "tests" / "fixtures" / "shopify" / "orders_paid.json"
SHOP = "demo-brand.myshopify.com"


def sample_order(sample: Path = SAMPLE) -> dict[str, Any]:
    order: dict[str, Any] = json.loads(sample.read_text())
    number = random.randint(2000, 999999)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    order.update(id=random.randint(10**12, 10**13 - 1), name=f"#{number}", order_number=number,
                 created_at=now, processed_at=now, updated_at=now)
    return order


def shopify_headers(body: bytes, secret: str, *, topic: str = "orders/paid",
                    webhook_id: str | None = None, shop: str = SHOP) -> dict[str, str]:
    """The headers Shopify sends with a webhook, signed over exactly these body bytes."""
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": signature.decode(),
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
        "X-Shopify-API-Version": "2026-10",
    }


def send_order(run: dict[str, Any]) -> tuple[str, requests.Response]:
    order = sample_order()
    body = json.dumps(order, ensure_ascii=False).encode()
    headers = shopify_headers(body, run["sources"]["shopify"]["secrets"][0])
    response = requests.post(f"{run['api']}/webhooks/shopify", data=body, headers=headers,
                             timeout=10)
    return order_id_for("shopify", SHOP, str(order["id"])), response


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["order"])
    parser.parse_args()
    if not RUN_FILE.exists():
        sys.exit("the local stack is not running: start it with `make run` first")
    run = json.loads(RUN_FILE.read_text())
    try:
        order_id, response = send_order(run)
    except requests.ConnectionError:
        sys.exit(f"nothing answers at {run['api']}: is `make run` still running?")
    print(f"POST /webhooks/shopify -> {response.status_code} {response.text}")
    print(f"order id: {order_id}\n")
    print("In a second or two the order worker has queued its job. Read it as CS:")
    print(f"  curl -s {run['api']}/cs/v1/orders/{order_id} "
          f"-H 'Authorization: Bearer {run['cs_key']}'")


if __name__ == "__main__":
    main()
