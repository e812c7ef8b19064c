"""The print gate with electronic waybills, over HTTP against the local endpoint and the
simulated courier network's Kuaidi100 label desk: numbers issued per package at print (once,
however often the print is retried), labels in the answer, ship without the factory's numbers,
a wave issued concurrently, a refusal that prints nothing and opens one case, and numbers
given back when an intercepted job is cancelled."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.access import accounts_store as accounts
from chalicelib.access.keys import Role
from chalicelib.core import http
from chalicelib.flows import warehouse
from chalicelib.warehouse.carriers import DEFAULT_COSTS
from chalicelib.warehouse.regions import Region
from devstack.courier import CourierSimulator
from tests.integration.flow import alerts_received
from tests.integration.test_warehouse_api import Api, accepted_jobs

SENDER = {"name": "工厂仓库", "phone": "02188886666", "province": "上海市", "city": "上海市",
          "district": "青浦区", "detail": "华新镇华志路 1 号"}


@pytest.fixture
def courier(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[
        CourierSimulator]:
    with CourierSimulator(customer="CUST", key="LABELKEY", label_secret="LABELSECRET") as sim:
        accounts.register_sources({"courier/waybills-kuaidi100": {
            "scheme": "kuaidi100-label", "secrets": ["LABELSECRET"],
            "options": {"key": "LABELKEY", "partnerId": "STO-1", "label_url": sim.label_url}}})
        accounts.forget()
        monkeypatch.setenv("WAYBILL_RULES_JSON", json.dumps({"sender": SENDER}))
        http.forget_sessions()
        yield sim
        accounts.forget()
        warehouse.forget_all()


@pytest.fixture
def api(client: Client, partner: str, make_key: Any) -> Api:
    return Api(client, make_key("partner", partner), make_key("staff", "ann", Role.BACK_OFFICE))


def test_print_issues_one_number_per_package_and_ship_needs_none(
        api: Api, client: Client, stack: dict[str, str], courier: CourierSimulator) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    job_id = job["job_id"]
    printed = api.post(f"/jobs/{job_id}/print")
    [waybill] = printed["waybills"]
    number = waybill["waybill_number"]
    assert courier.labels.numbers() == [number]
    assert printed["printed"]["waybill_numbers"] == [number]
    assert waybill["object_id"] == f"{job_id}_1" and waybill["courier"] == "STO"
    assert base64.b64decode(waybill["label"]["content_base64"]).startswith(b"\x89PNG")
    again = api.post(f"/jobs/{job_id}/print", expect=409)  # the print gate passed once
    assert again["error"] == "already_printed" and courier.labels.numbers() == [number]
    api.post(f"/jobs/{job_id}/pick")
    api.post(f"/jobs/{job_id}/pack", {"weight_grams": 640, "package_count": 1})
    shipped = api.post(f"/jobs/{job_id}/ship", {"shipment_id": "ship-1"})
    assert shipped["work"] == "shipped"
    assert [p["tracking_number"] for p in shipped["shipments"][0]["packages"]] == [number]
    # Its cost: the simulated desk quotes no price, so the tariff's for 640 g (the first
    # kilogram: the low end of the handbook's band for the job's region).
    band = DEFAULT_COSTS[Region(shipped["carrier"]["region"])]
    assert Decimal(shipped["shipments"][0]["waybill_cost"]) == band.low


def test_a_wave_gets_its_waybills_and_a_retry_takes_no_second_number(
        api: Api, client: Client, stack: dict[str, str], courier: CourierSimulator) -> None:
    jobs = accepted_jobs(api, client, stack, 3)
    ids = [j["job_id"] for j in jobs]
    wave = api.post("/waves", {"job_ids": ids}, expect=201)
    issued = {j: [w["waybill_number"] for w in wave["waybills"][j]] for j in ids}
    assert sorted(n for numbers in issued.values() for n in numbers) == sorted(
        courier.labels.numbers())
    assert len(courier.labels.numbers()) == 3
    for job_id in ids:
        assert api.get(f"/jobs/{job_id}")["printed"]["waybill_numbers"] == issued[job_id]


def test_a_refusal_prints_nothing_and_opens_one_case(
        api: Api, client: Client, stack: dict[str, str], courier: CourierSimulator) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    alerts_received(stack)
    courier.labels.balance = 0
    refused = api.post(f"/jobs/{job['job_id']}/print", expect=409)
    assert refused["error"] == "waybill_refused"
    assert refused["details"]["refusal"] == "balance_empty"
    assert not refused["details"]["retryable"]
    assert api.get(f"/jobs/{job['job_id']}")["work"] == "queued"
    cases = [a for a in alerts_received(stack) if a["kind"] == "waybill.refused"]
    assert [(a["subject"], a["facts"]["reason"]) for a in cases] == [
        (job["job_id"], "balance_empty")]
    courier.labels.balance = None  # topped up: the same print now passes
    assert api.post(f"/jobs/{job['job_id']}/print")["work"] == "printed"


def test_an_intercepted_cancellation_gives_the_number_back(
        api: Api, client: Client, stack: dict[str, str], courier: CourierSimulator) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    number = api.post(f"/jobs/{job['job_id']}/print")["waybills"][0]["waybill_number"]
    late = api.amend(job["order_id"], {"kind": "cancel", "reason": "buyer changed mind"})
    assert late["change"]["status"] == "intercept_requested"
    resolved = api.post(f"/jobs/{job['job_id']}/changes/{late['change']['change_id']}/resolve",
                        {"outcome": "intercepted"})
    assert resolved["work"] == "cancelled"
    [issued] = [i for i in courier.labels.orders.values() if i.number == number]
    assert issued.cancelled


def test_a_relabel_after_an_address_change_takes_a_new_number_and_returns_the_old(
        api: Api, client: Client, stack: dict[str, str], courier: CourierSimulator) -> None:
    from tests.support import NEW_ADDRESS

    (job,) = accepted_jobs(api, client, stack, 1)
    first = api.post(f"/jobs/{job['job_id']}/print")["waybills"][0]["waybill_number"]
    late = api.amend(job["order_id"], {"kind": "address", "reason": "buyer moved",
                                       "address": NEW_ADDRESS})
    api.post(f"/jobs/{job['job_id']}/changes/{late['change']['change_id']}/resolve",
             {"outcome": "intercepted"})
    relabelled = api.post(f"/jobs/{job['job_id']}/print")
    [waybill] = relabelled["waybills"]
    assert waybill["object_id"] == f"{job['job_id']}_1r1" and waybill["waybill_number"] != first
    assert relabelled["printed"]["waybill_numbers"] == [waybill["waybill_number"]]
    old = [i for i in courier.labels.orders.values() if i.number == first]
    assert [i.cancelled for i in old] == [True]


def test_the_admin_command_line_stores_a_waybill_account(stack: dict[str, str]) -> None:
    from chalicelib.admin import cli as admin
    from chalicelib.flows import waybills

    admin.main(["courier", "waybills-kuaidi100", "--secret", "S3CR3T", "--option", "key=K9",
                "--option", "partnerId=STO-9"])
    accounts.forget()
    assert waybills.account("kuaidi100") == {"key": "K9", "partnerId": "STO-9",
                                             "secret": "S3CR3T", "app_secret": "S3CR3T"}
    assert waybills.account("douyin") is None
    with pytest.raises(SystemExit):
        admin.main(["courier", "waybills-ems-direct", "--secret", "s"])
