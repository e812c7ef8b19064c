"""A courier the buyer asks for after the job exists, through the CS API and the marketplace,
routed by the stage rules (before print: re-routed and re-priced; printed: intercept and
relabel; shipped: refused with an `order.courier_refused` case) on the local endpoint."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.access.keys import Role
from chalicelib.core.clock import utcnow
from chalicelib.orders.order import Address
from chalicelib.warehouse.carriers import CarrierRules, choose_carrier
from chalicelib.warehouse.jobs import protocol_rules
from tests.integration.flow import alerts_received, process
from tests.integration.test_warehouse_api import Api, accepted_jobs, queue_orders
from tests.support import dumps, shopify_headers

# An operator with an SF account besides the default courier.
OFFERED = {"offered_carriers": ["STO", "SF"]}


@pytest.fixture
def api(client: Client, partner: str, make_key: Any) -> Api:
    return Api(client, make_key("partner", partner), make_key("staff", "ann", Role.BACK_OFFICE))


@pytest.fixture
def with_sf(monkeypatch: pytest.MonkeyPatch) -> Iterator[CarrierRules]:
    monkeypatch.setenv("PROTOCOL_RULES_JSON", json.dumps({"carriers": OFFERED}))
    protocol_rules.cache_clear()
    yield CarrierRules.model_validate(OFFERED)
    protocol_rules.cache_clear()


def _order(api: Api, order_id: str) -> dict[str, Any]:
    view: dict[str, Any] = api.call("get", f"/cs/v1/orders/{order_id}", key=api.cs_key)
    return view


def _expected(job: dict[str, Any], rules: CarrierRules, requested: str) -> tuple[str, str]:
    """The carrier and cost the rules give this job's address, computed apart from the API."""
    choice = choose_carrier(Address.model_validate(job["ship_to"]), rules, requested)
    assert choice.expected_cost is not None
    return choice.carrier_code.value, str(choice.expected_cost)


def _to_sf(api: Api, order_id: str, expect: int = 201) -> Any:
    return api.amend(order_id, {"kind": "courier", "reason": "buyer wants SF",
                                "carrier_code": "顺丰"}, expect=expect)


def waybill(prefix: str) -> str:
    """A waybill number no other test on this session's stack has shipped (a parcel is known
    by its courier and number)."""
    return prefix + str(uuid.uuid4().int)[:12 - len(prefix) + 2]


def test_before_print_the_job_is_rerouted_and_repriced(
        api: Api, client: Client, stack: dict[str, str], with_sf: CarrierRules) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    assert job["carrier"]["carrier_code"] == "STO"
    alerts_received(stack)  # what earlier tests on this stack raised is not this test's
    answer = _to_sf(api, job["order_id"])
    assert answer["change"]["status"] == "applied" and answer["change"]["carrier_code"] == "SF"
    carrier, cost = _expected(job, with_sf, "SF")
    view = _order(api, job["order_id"])
    assert (view["job"]["carrier"]["carrier_code"], view["job"]["carrier"]["expected_cost"]) \
        == (carrier, cost) == ("SF", cost)
    assert Decimal(cost) != Decimal(job["carrier"]["expected_cost"])  # re-priced
    assert view["order"]["requested_courier"] == "SF"
    assert [e["type"] for e in view["timeline"]][-2:] == ["order.amended", "change.applied"]
    seen = api.get(f"/jobs/{job['job_id']}")  # the factory sees the new courier on the job
    assert seen["carrier"]["carrier_code"] == "SF" and seen["changes"][-1]["kind"] == "courier"
    assert api.post(f"/jobs/{job['job_id']}/print")["printed"]["carrier_code"] == "SF"
    assert alerts_received(stack) == []  # nothing for CS to do


def test_after_print_an_intercept_then_a_new_label_with_the_new_courier(
        api: Api, client: Client, stack: dict[str, str], with_sf: CarrierRules) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    api.post(f"/jobs/{job['job_id']}/print", {"waybill_numbers": [waybill("7730")]})
    ask = _to_sf(api, job["order_id"])
    assert ask["change"]["status"] == "intercept_requested"
    held = _order(api, job["order_id"])
    assert held["job"]["carrier"]["carrier_code"] == "STO"  # asked, not done
    assert held["order"]["requested_courier"] == ""
    resolved = api.post(f"/jobs/{job['job_id']}/changes/{ask['change']['change_id']}/resolve",
                        {"outcome": "intercepted"})
    assert resolved["reprint_required"] and resolved["work"] == "printed"
    assert resolved["carrier"]["carrier_code"] == "SF"
    assert resolved["carrier"]["expected_cost"] == _expected(job, with_sf, "SF")[1]
    assert _order(api, job["order_id"])["order"]["requested_courier"] == "SF"
    blocked = api.post(f"/jobs/{job['job_id']}/pack", {"weight_grams": 1, "package_count": 1},
                       expect=409)
    assert blocked["error"] == "reprint_required"  # the old courier's label may not go out
    relabel = api.post(f"/jobs/{job['job_id']}/print", {"waybill_numbers": [waybill("SF")]})
    assert relabel["printed"]["carrier_code"] == "SF" and relabel["printed"]["count"] == 2
    assert [e["type"] for e in _order(api, job["order_id"])["timeline"]][-4:] == [
        "order.amended", "change.intercept_requested", "change.intercepted", "job.printed"]


def test_after_shipping_refused_with_one_case_and_the_courier_unchanged(
        api: Api, client: Client, stack: dict[str, str], with_sf: CarrierRules) -> None:
    from chalicelib.flows import alert_dispatch

    (job,) = accepted_jobs(api, client, stack, 1)
    api.post(f"/jobs/{job['job_id']}/print")
    api.post(f"/jobs/{job['job_id']}/ship", {"shipment_id": "s1", "packages": [
        {"carrier_code": "STO", "tracking_number": waybill("7730")}]})
    alerts_received(stack)
    before = _order(api, job["order_id"])
    answer = _to_sf(api, job["order_id"])
    assert answer["change"]["status"] == "after_sales"
    raised = alerts_received(stack)
    assert [a["kind"] for a in raised] == ["order.courier_refused"]
    cases = {alert_dispatch.handle(json.dumps(a), utcnow()).case.case_id  # type: ignore[union-attr]
             for a in raised}
    listed = api.call("get", f"/cs/v1/cases?order_id={job['order_id']}", key=api.cs_key)
    assert [(c["case_id"], c["type"]) for c in listed["cases"]] == [
        (case_id, "order.courier_refused") for case_id in cases]
    after = _order(api, job["order_id"])
    assert after["job"]["carrier"] == before["job"]["carrier"]
    assert after["order"]["requested_courier"] == before["order"]["requested_courier"]
    assert [e["type"] for e in after["timeline"]][-2:] == ["order.amended",
                                                           "order.courier_refused"]


@pytest.mark.parametrize(("courier", "error"), [
    ("DHL", "unknown_courier"), ("JD", "courier_not_offered"), ("EMS", "courier_not_offered")])
def test_a_courier_the_rules_cannot_give_is_422_and_changes_nothing(
        api: Api, client: Client, stack: dict[str, str], with_sf: CarrierRules, courier: str,
        error: str) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    before = _order(api, job["order_id"])
    answer = api.amend(job["order_id"], {"kind": "courier", "reason": "buyer asked",
                                         "carrier_code": courier}, expect=422)
    assert answer["error"] == error
    assert _order(api, job["order_id"]) == before
    assert api.amend(job["order_id"], {"kind": "courier", "reason": "?"},
                     expect=422)["error"] == "invalid_payload"


def test_the_default_offers_only_sto(api: Api, client: Client, stack: dict[str, str]) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    answer = _to_sf(api, job["order_id"], expect=422)
    assert (answer["error"], answer["details"]["offered"]) == ("courier_not_offered",
                                                               ["EMS", "STO"])


def test_a_marketplace_courier_request_is_rerouted_the_same_way(
        api: Api, client: Client, stack: dict[str, str], with_sf: CarrierRules) -> None:
    (payload,) = queue_orders(client, stack, 1)
    updated = {**payload, "updated_at": "2026-11-23T11:00:00+08:00", "note_attributes": [
        *payload["note_attributes"], {"name": "requested_courier", "value": "顺丰速运"}]}
    body = dumps(updated)
    headers = shopify_headers(body, topic="orders/updated")
    assert client.http.post("/webhooks/shopify", headers=headers, body=body).status_code == 200
    process(client, stack, "shopify", headers["X-Shopify-Webhook-Id"])
    (job,) = api.claim()["jobs"]
    assert (job["carrier"]["carrier_code"], job["carrier"]["expected_cost"]) == \
        _expected(job, with_sf, "SF")
    assert job["changes"][-1]["kind"] == "courier"
    assert job["changes"][-1]["status"] == "applied"
