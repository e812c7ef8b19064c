"""What the browser tests need in the tables, made the way production makes it: staff keys as
the admin issues them, orders through the webhook and the order worker (tests/integration/
flow.py), jobs moved by the factory over the warehouse API (real HTTP, the console's own server),
cases through the alert dispatcher, IM messages through the notifier into an IM sink."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import requests
from chalice.test import Client

from chalicelib.access.keys import Role
from chalicelib.orders.order import order_id_for
from tests.integration.flow import process
from tests.support import SHOP, dumps, shopify_headers, shopify_order


@dataclass
class Order:
    order_id: str
    name: str  # the marketplace's order number, e.g. "#4821"
    job_id: str = ""
    lease_id: str = ""
    tracking_number: str = ""


@dataclass
class World:
    stack: dict[str, str]
    console: str  # http://localhost:<port>
    partner: str
    partner_key: str
    keys: dict[Role, str] = field(default_factory=dict)
    principals: dict[Role, str] = field(default_factory=dict)

    @classmethod
    def for_test(cls, stack: dict[str, str], console: str,
                 monkeypatch: pytest.MonkeyPatch) -> World:
        """A partner of this test's own (its claims see only this test's jobs), and links in
        messages that point at the console under test."""
        from chalicelib.core.settings import settings
        from chalicelib.flows import notifier

        partner = f"factory-{uuid.uuid4().hex[:6]}"
        monkeypatch.setenv("WAREHOUSE_PARTNER", partner)
        monkeypatch.setenv("CONSOLE_URL", console)
        settings.cache_clear()
        notifier.routing.cache_clear()
        world = cls(stack, console, partner, "")
        world.partner_key = world.issue_key("partner", partner, Role.PARTNER)
        return world

    # --- keys -------------------------------------------------------------------------------

    @staticmethod
    def issue_key(kind: str, principal: str, role: Role) -> str:
        """As `admin key` issues one: only the hash is stored."""
        from chalicelib.access import directory_store as directory
        from chalicelib.access.keys import hash_key, new_key
        from chalicelib.core.clock import utcnow

        key = new_key()
        directory.add_key(hash_key(key), kind, principal, role, utcnow())
        return key

    def staff_key(self, role: Role) -> str:
        """One key per role and test: a CS person of that role."""
        if role not in self.keys:
            principal = f"cs-{role.value}-{uuid.uuid4().hex[:4]}"
            self.keys[role] = self.issue_key("staff", principal, role)
            self.principals[role] = principal
        return self.keys[role]

    def revoke(self, role: Role) -> None:
        """As `admin revoke` does: the key and every session opened with it end."""
        from chalicelib.access import directory_store as directory
        from chalicelib.access.keys import hash_key
        from chalicelib.core.clock import utcnow

        key_id = hash_key(self.keys[role])[:12]
        assert directory.revoke("staff", self.principals[role], key_id, utcnow())

    # --- orders and jobs ----------------------------------------------------------------------

    def order(self, *, paid_now: bool = False, **changes: Any) -> Order:
        """A paid Shopify order, signed as Shopify signs it, through the inbox and the order
        worker: an order with its timeline and a job offered to this test's partner.
        `paid_now`: placed and paid now (the Today page counts it), not at the sample's time."""
        if paid_now:
            from chalicelib.core.clock import utcnow

            now = utcnow().isoformat(timespec="seconds")
            changes = {"created_at": now, "processed_at": now, "updated_at": now, **changes}
        number = uuid.uuid4().int % 10**6
        payload = shopify_order(id=uuid.uuid4().int % 10**13, name=f"#{number}",
                                order_number=number, **changes)
        body = dumps(payload)
        headers = shopify_headers(body)
        from app import app

        with Client(app, stage_name="local") as client:
            answer = client.http.post("/webhooks/shopify", headers=headers, body=body)
            assert answer.status_code == 200, answer.body
            process(client, self.stack, "shopify", headers["X-Shopify-Webhook-Id"])
        return Order(order_id_for("shopify", SHOP, str(payload["id"])), f"#{number}")

    def factory(self, method: str, path: str, body: Any = None) -> Any:
        """The partner's call over real HTTP, as the factory's client makes it."""
        answer = requests.request(method, f"{self.console}/warehouse/v1{path}", timeout=30,
                                  json=body if body is not None else {},
                                  headers={"Authorization": f"Bearer {self.partner_key}"})
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        return answer.json()

    def accept(self, order: Order) -> Order:
        claimed = self.factory("POST", "/jobs/claim", {"max_jobs": 100})
        (job,) = [j for j in claimed["jobs"] if j["order_id"] == order.order_id]
        order.job_id, order.lease_id = job["job_id"], claimed["lease_id"]
        self.factory("POST", f"/jobs/{order.job_id}/accept", {"lease_id": order.lease_id})
        return order

    def printed(self, order: Order) -> Order:
        """Claimed, accepted and printed with its waybill: the stage after which a change is an
        intercept request to the factory."""
        if not order.job_id:
            self.accept(order)
        order.tracking_number = f"7730{uuid.uuid4().int % 10**8:08d}"
        answer = self.factory("POST", f"/jobs/{order.job_id}/print",
                              {"waybill_numbers": [order.tracking_number]})
        assert answer["work"] == "printed"
        return order

    def packed(self, order: Order) -> Order:
        if not order.tracking_number:
            self.printed(order)
        self.factory("POST", f"/jobs/{order.job_id}/pick")
        self.factory("POST", f"/jobs/{order.job_id}/pack",
                     {"weight_grams": 640, "package_count": 1})
        return order

    def shipped(self, order: Order) -> Order:
        """Shipped with its tracking number (STO), so it can be found by that number."""
        self.packed(order)
        answer = self.factory("POST", f"/jobs/{order.job_id}/ship", {
            "shipment_id": f"ship-{uuid.uuid4().hex[:8]}",
            "packages": [{"carrier_code": "STO", "tracking_number": order.tracking_number}]})
        assert answer["work"] == "shipped"
        return order

    # --- cases and messages -------------------------------------------------------------------

    def api(self, path: str, role: Role = Role.READ_ONLY) -> Any:
        """The CS API's answer (/cs/v1), to check what a page did."""
        answer = requests.get(f"{self.console}/cs/v1{path}", timeout=30,
                              headers={"Authorization": f"Bearer {self.staff_key(role)}"})
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        return answer.json()

    def case(self, order: Order, kind: str = "order.invalid") -> str:
        """A case on the order, as the alert dispatcher opens one from an alert."""
        from chalicelib.core.clock import utcnow
        from chalicelib.cs.alerts import Alert, Severity
        from chalicelib.flows import alert_dispatch

        alert = Alert(kind=kind, severity=Severity.HIGH, subject=f"order:{order.order_id}",
                      at=utcnow(), summary=f"{order.name}: no shipping address",
                      facts={"order_id": order.order_id, "order_name": order.name,
                             "marketplace": "shopify"})
        recorded = alert_dispatch.handle(alert.model_dump_json())
        assert recorded.case is not None
        return str(recorded.case.case_id)

    def case_on_im(self, order: Order, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
        """A case whose message reaches the team's WeCom robot: the notifier sends it to an IM
        sink (devstack/im_sink.py) standing in for WeCom, and the message it captured is read
        as CS sees it on the phone. Returns the case id and the message's link."""
        from chalicelib.core.clock import utcnow
        from chalicelib.cs.routing import Route, Routing
        from chalicelib.flows import notifier
        from devstack.im_sink import ImSink

        robot = f"team-{uuid.uuid4().hex[:8]}"
        channel = f"wecom:{robot}"
        with ImSink() as sink:
            notifier.configure_channels({channel: {"webhook_url": sink.url_for("wecom", robot)}})
            # Only this robot, at once, whatever the hour: the rota is not under test here.
            routing = Routing(routes=(Route(channels=(channel,), use_rota=False),))
            monkeypatch.setenv("CS_ROUTING_JSON", routing.model_dump_json())
            notifier.routing.cache_clear()
            case_id = self.case(order)
            notifier.run(utcnow() + timedelta(seconds=1))
            shown = [r.shown_text or "" for r in sink.received("wecom") if r.robot == robot]
        # Other tests' open cases may be reminded through this routing too: ours is the one
        # message that names its case.
        (message,) = [text for text in shown if f"/{case_id})" in text]
        found = re.search(r"\((http://[^)\s]+/console/cases/[^)\s]+)\)", message)
        assert found, message
        return case_id, found.group(1)
