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

from chalicelib.orders.order import order_id_for
from devstack.stack import ROOT, RUN_FILE

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


def send_order(run: dict[str, Any], *, without_address: bool = False,
               ) -> tuple[str, requests.Response]:
    """A paid Shopify order, sent as Shopify sends it. With the simulated Shopify shop running
    (make run), the order is placed in that shop, which signs the notification and will receive
    the shipment's writeback; we post the notification ourselves to show the answer."""
    shop_url = (run.get("marketplaces") or {}).get("shopify")
    if shop_url and not without_address:
        placed = requests.post(f"{shop_url}/_sim/orders", json={"send": False}, timeout=10)
        placed.raise_for_status()
        note = placed.json()["notification"]
        response = requests.post(note["url"], data=note["body"].encode(),
                                 headers=note["headers"], timeout=10)
        return order_id_for("shopify", SHOP, placed.json()["external_id"]), response
    order = sample_order()
    if without_address:  # an order the warehouse cannot ship: a CS case at once
        order.pop("shipping_address", None)
    body = json.dumps(order, ensure_ascii=False).encode()
    headers = shopify_headers(body, run["sources"]["shopify"]["secrets"][0])
    response = requests.post(f"{run['api']}/webhooks/shopify", data=body, headers=headers,
                             timeout=10)
    return order_id_for("shopify", SHOP, str(order["id"])), response


NEW_ADDRESS = {"name": "林伟", "line1": "淮海中路 999 号", "line2": "3 楼", "city": "上海",
               "province": "Shanghai", "province_code": "SH", "postal_code": "200031",
               "country_code": "CN", "phone": "+86 138 0013 8000"}


def amend(run: dict[str, Any], order_id: str, amendment: dict[str, Any]) -> requests.Response:
    """What a CS agent does: an added, signed amendment through the CS API."""
    return requests.post(f"{run['api']}/cs/v1/orders/{order_id}/amendments", json=amendment,
                         headers={"Authorization": f"Bearer {run['cs_key']}"}, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["order", "cancel", "address", "exception"])
    parser.add_argument("order_id", nargs="?", help="for cancel and address")
    args = parser.parse_args()
    if not RUN_FILE.exists():
        sys.exit("the local stack is not running: start it with `make run` first")
    run = json.loads(RUN_FILE.read_text())
    if args.what in ("cancel", "address") and not args.order_id:
        sys.exit(f"give the order id: make demo-{args.what} ORDER=ord_...")
    try:
        if args.what in ("order", "exception"):
            order_id, response = send_order(run, without_address=args.what == "exception")
        elif args.what == "cancel":
            order_id = args.order_id
            response = amend(run, order_id, {"kind": "cancel",
                                             "reason": "buyer asked to cancel (demo)"})
        else:
            order_id = args.order_id
            response = amend(run, order_id, {"kind": "address", "address": NEW_ADDRESS,
                                             "reason": "buyer asked to deliver to the office"})
    except requests.ConnectionError:
        sys.exit(f"nothing answers at {run['api']}: is `make run` still running?")
    print(f"-> {response.status_code} {response.text}")
    print(f"order id: {order_id}\n\nRead it as CS (its timeline shows every step):")
    print(f"  curl -s {run['api']}/cs/v1/orders/{order_id} "
          f"-H 'Authorization: Bearer {run['cs_key']}'")
    if args.what == "exception":
        print("\nIt has no shipping address: CS's IM channel and mailbox hear of it within seconds"
              " (the IM sink prints it in the make run terminal). Its case:")
        print(f"  curl -s '{run['api']}/cs/v1/cases?order_id={order_id}' "
              f"-H 'Authorization: Bearer {run['cs_key']}'")


if __name__ == "__main__":
    main()
