"""The reference partner client, its simulated factory and its command line, against a fake
server made of `responses` callbacks: no network, no sleeping."""

from __future__ import annotations

import base64
import json
import random
import re
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NewConnectionError

from partner_client.__main__ import main, render_table
from partner_client.client import WarehouseClient, WarehouseError, retry_after_seconds
from partner_client.factory import TRACKING_FORMATS, SimulatedFactory, _named_jobs

BASE = "http://warehouse.test"
API = BASE + "/warehouse/v1"
KEY = "pk_test_123"


@pytest.fixture
def rsps() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(sleeps: list[float]) -> WarehouseClient:
    return WarehouseClient(BASE, KEY, sleep=sleeps.append)


def make_job(n: int, *, carrier: str = "STO", **fields: Any) -> dict[str, Any]:
    job = {
        "job_id": f"job_{n}", "order_id": f"ord_{n}", "order_name": f"#{1040 + n}",
        "marketplace": "shopify",
        "ship_to": {"name": "王芳", "line1": "1 Nanjing Rd", "line2": "", "city": "Shanghai",
                    "province": "Shanghai", "postal_code": "200001", "country_code": "CN",
                    "phone": "13800000000"},
        "lines": [{"sku": "TEE-M-BLK", "title": "T恤", "variant": "M / black", "quantity": 2},
                  {"sku": "SOCK-L", "title": "Socks", "variant": "L", "quantity": 1}],
        "handshake": "offered", "work": "queued", "lease_id": None, "lease_expires_at": None,
        "carrier": {"carrier_code": carrier, "region": "jzh", "expected_cost": "4.50",
                    "reason": "default courier"},
        "ship_by": "2030-01-02T10:00:00Z", "accept_by": "2030-01-01T10:00:00Z",
        "changes": [], "shipments": [], "printed": None, "buyer_note": "", "promises": [],
    }
    job.update(fields)
    return job


def body_of(call: Any) -> dict[str, Any]:
    return json.loads(call.request.body) if call.request.body else {}


# The client ------------------------------------------------------------------------------------

def test_sends_the_bearer_key_and_json(rsps: Any, client: WarehouseClient) -> None:
    rsps.post(API + "/jobs/claim", json={"lease_id": None, "lease_expires_at": None, "jobs": []})
    client.claim(5, lease_seconds=60)
    request = rsps.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert json.loads(request.body) == {"max_jobs": 5, "lease_seconds": 60, "wait_seconds": 0}


def test_base_url_may_already_name_the_api_version(rsps: Any) -> None:
    rsps.get(API + "/jobs/job_1", json=make_job(1))
    assert WarehouseClient(API + "/", KEY).get_job("job_1")["job_id"] == "job_1"


def test_long_poll_stretches_the_read_timeout(rsps: Any) -> None:
    rsps.post(API + "/jobs/claim", json={"lease_id": None, "lease_expires_at": None, "jobs": []})
    WarehouseClient(BASE, KEY, timeout=10).claim(wait_seconds=20)
    assert rsps.calls[0].request.req_kwargs["timeout"] == 30


def test_429_waits_as_long_as_retry_after_says(rsps: Any, client: WarehouseClient,
                                               sleeps: list[float]) -> None:
    rsps.post(API + "/jobs/job_1/pick", status=429, headers={"Retry-After": "3"},
              json={"error": "rate_limited", "message": "slow down"})
    rsps.post(API + "/jobs/job_1/pick", json=make_job(1, work="picked"))
    assert client.pick("job_1")["work"] == "picked"
    assert sleeps == [3.0]
    assert len(rsps.calls) == 2


def test_retry_after_may_be_an_http_date() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2030, 1, 1, 12, 0, 7, tzinfo=UTC), usegmt=True)
    assert retry_after_seconds(later, now=lambda: now) == 7.0
    assert retry_after_seconds("soon") is None


def test_503_is_retried_with_backoff_then_succeeds(rsps: Any, client: WarehouseClient,
                                                    sleeps: list[float]) -> None:
    for _ in range(2):
        rsps.get(API + "/jobs/job_1", status=503, json={"error": "storage_unavailable"})
    rsps.get(API + "/jobs/job_1", json=make_job(1))
    assert client.get_job("job_1")["job_id"] == "job_1"
    assert sleeps == [0.5, 1.0]


def test_gives_up_after_a_few_tries(rsps: Any, client: WarehouseClient,
                                    sleeps: list[float]) -> None:
    rsps.get(API + "/jobs/job_1", status=502, body="Bad Gateway")
    with pytest.raises(WarehouseError) as caught:
        client.get_job("job_1")
    assert (caught.value.status, caught.value.error) == (502, "http_502")
    assert len(rsps.calls) == client.max_attempts
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_wave_is_not_replayed_after_an_ambiguous_failure(rsps: Any,
                                                           client: WarehouseClient) -> None:
    # A 504 may hide a wave that was printed: creating it again could print twice.
    rsps.post(API + "/waves", status=504, json={"message": "Endpoint request timed out"})
    with pytest.raises(WarehouseError) as caught:
        client.create_wave(["job_1"])
    assert caught.value.status == 504
    assert len(rsps.calls) == 1


def test_connection_errors_are_retried(rsps: Any, client: WarehouseClient) -> None:
    rsps.get(API + "/jobs/job_1", body=requests.ConnectionError("connection reset"))
    rsps.get(API + "/jobs/job_1", json=make_job(1))
    assert client.get_job("job_1")["job_id"] == "job_1"


def test_a_refused_connection_is_retried_even_for_a_wave(rsps: Any,
                                                          client: WarehouseClient) -> None:
    never_sent = requests.ConnectionError(
        MaxRetryError(None, API + "/waves",  # type: ignore[arg-type]
                      NewConnectionError(None, "connection refused")))  # type: ignore[arg-type]
    rsps.post(API + "/waves", body=never_sent)
    rsps.post(API + "/waves", json=wave_body(["job_1"]))
    assert client.create_wave(["job_1"])["job_ids"] == ["job_1"]


def test_unreachable_server_is_a_warehouse_error(rsps: Any, client: WarehouseClient) -> None:
    rsps.post(API + "/jobs/job_1/pack", body=requests.ConnectionError("connection reset"))
    with pytest.raises(WarehouseError) as caught:
        client.pack("job_1", 500, 1)
    assert (caught.value.status, caught.value.error) == (0, "unreachable")
    assert len(rsps.calls) == 1  # pack is not replayed: the server may have acted


def test_409_carries_the_reason_and_current_state(rsps: Any, client: WarehouseClient,
                                                  sleeps: list[float]) -> None:
    state = {"handshake": "accepted", "work": "queued", "open_changes": ["chg_1"]}
    rsps.post(API + "/jobs/job_1/print", status=409,
              json={"error": "change_pending", "message": "a change request is open",
                    "details": {"current_state": state}})
    with pytest.raises(WarehouseError) as caught:
        client.print_job("job_1")
    error = caught.value
    assert (error.status, error.error, error.message) == (409, "change_pending",
                                                          "a change request is open")
    assert error.current_state == state
    assert sleeps == []


def test_ship_generates_a_shipment_id_and_keeps_it_across_retries(
        rsps: Any, client: WarehouseClient) -> None:
    rsps.post(API + "/jobs/job_1/ship", status=504, json={"message": "timed out"})
    rsps.post(API + "/jobs/job_1/ship", json=make_job(1, work="shipped"))
    client.ship("job_1", [{"carrier_code": "STO", "tracking_number": "773012345678"}])
    first, second = (body_of(call) for call in rsps.calls)
    assert first["shipment_id"].startswith("shp_")
    assert first == second
    assert first["final"] is True


def test_ship_keeps_a_given_shipment_id_and_reports_it_on_failure(
        rsps: Any, client: WarehouseClient) -> None:
    rsps.post(API + "/jobs/job_1/ship", status=409, json={"error": "job_cancelled"})
    with pytest.raises(WarehouseError) as caught:
        client.ship("job_1", [{"carrier_code": "SF", "tracking_number": "SF1234567890123"}],
                    shipment_id="shp_mine", final=False)
    assert body_of(rsps.calls[0])["shipment_id"] == "shp_mine"
    assert body_of(rsps.calls[0])["final"] is False
    assert caught.value.details["shipment_id"] == "shp_mine"


def test_iter_jobs_follows_the_cursor(rsps: Any, client: WarehouseClient) -> None:
    rsps.get(API + "/jobs", json={"jobs": [make_job(1)], "next_cursor": "c2"})
    rsps.get(API + "/jobs", json={"jobs": [make_job(2)], "next_cursor": None})
    since = datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
    assert [j["job_id"] for j in client.iter_jobs(updated_since=since)] == ["job_1", "job_2"]
    first, second = (parse_qs(urlsplit(c.request.url).query) for c in rsps.calls)
    assert first == {"updated_since": ["2030-01-01T08:00:00Z"], "limit": ["100"]}
    assert second["cursor"] == ["c2"]


# A fake server for the simulator ---------------------------------------------------------------

def wave_body(job_ids: list[str], jobs: dict[str, dict[str, Any]] | None = None,
              method: str = "batch") -> dict[str, Any]:
    jobs = jobs or {}
    totals: dict[str, int] = {}
    for job_id in job_ids:
        for line in jobs.get(job_id, {}).get("lines", []):
            totals[line["sku"]] = totals.get(line["sku"], 0) + line["quantity"]
    return {
        "wave_id": f"w_{len(job_ids)}_{job_ids[0]}", "method": method, "job_ids": job_ids,
        "created_at": "2030-01-01T09:00:00Z",
        "pick_list": [{"sku": sku, "title": sku, "variant": "", "quantity": qty,
                       "location": f"A-0{i}-01"} for i, (sku, qty) in enumerate(totals.items())],
        "sort_list": [],
    }


class FakeWarehouse:
    """Just enough of the contract to drive the simulator through `responses`."""

    def __init__(self, rsps: Any) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.feed: list[dict[str, Any]] = []
        self.waves: list[dict[str, Any]] = []
        self.blocked: set[str] = set()  # jobs the print gate refuses (change_pending)
        self.issues_waybills = False  # the print gate issues electronic waybills
        self.resolve_status = 200
        self.rsps = rsps
        job = API + r"/jobs/(?P<job>[^/?]+)"
        rsps.add_callback("POST", API + "/jobs/claim", self.claim)
        rsps.add_callback("POST", re.compile(job + r"/(?P<step>accept|pick|pack|ship)$"),
                          self.step)
        rsps.add_callback("POST", re.compile(job + r"/changes/(?P<change>[^/]+)/resolve$"),
                          self.resolve)
        rsps.add_callback("POST", API + "/waves", self.wave)
        rsps.add_callback("GET", API + "/jobs", self.list_jobs)
        rsps.add_callback("GET", re.compile(job + r"(\?.*)?$"), self.get_job)
        rsps.add_callback("GET", API + "/changes", self.changes)

    def offer(self, *jobs: dict[str, Any]) -> None:
        for job in jobs:
            self.jobs[job["job_id"]] = job

    def request_change(self, job_id: str, kind: str, **data: Any) -> None:
        job = self.jobs[job_id]
        before_print = job["work"] == "queued"
        change = {"change_id": f"chg_{len(self.feed) + 1}", "kind": kind,
                  "status": "applied" if before_print else "intercept_requested",
                  "requested_at": "2030-01-01T09:00:00Z", "deadline": None, **data}
        job["changes"].append(change)
        kind_of_entry = "change.intercept_requested"
        if before_print:
            kind_of_entry = "change.applied"
            if kind == "cancel":
                job["work"], kind_of_entry = "cancelled", "job.cancelled"
        self.feed.append({"cursor": str(len(self.feed) + 1), "at": "2030-01-01T09:00:00Z",
                          "job_id": job_id, "type": kind_of_entry, "change": change})

    def calls(self, suffix: str) -> list[dict[str, Any]]:
        return [body_of(c) for c in self.rsps.calls
                if c.request.method == "POST" and urlsplit(c.request.url).path.endswith(suffix)]

    # callbacks

    def claim(self, request: Any) -> tuple[int, dict[str, str], str]:
        offers = [j for j in self.jobs.values()
                  if j["handshake"] == "offered" and not j["lease_id"]]
        for job in offers:
            job["lease_id"] = "lease_1"
        return ok({"lease_id": "lease_1" if offers else None, "lease_expires_at": None,
                   "jobs": offers})

    def step(self, request: Any) -> tuple[int, dict[str, str], str]:
        match = re.search(r"/jobs/([^/]+)/(\w+)$", request.url)
        assert match
        job, step = self.jobs[match[1]], match[2]
        body = json.loads(request.body)
        if step == "accept":
            if body["lease_id"] != job["lease_id"]:
                return refuse("lease_mismatch", job)
            job.update(handshake="accepted", lease_id=None)
        elif step == "ship":
            job["shipments"].append(body)
            job["work"] = "shipped" if body["final"] else job["work"]
        else:
            job["work"] = {"pick": "picked", "pack": "packed"}[step]
        return ok(job)

    def wave(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        blocked = {i: {"error": "change_pending"} for i in body["job_ids"] if i in self.blocked}
        if blocked:
            return 409, {}, json.dumps({"error": "wave_refused", "message": "nothing printed",
                                        "details": {"jobs": blocked}})
        for job_id in body["job_ids"]:
            self.jobs[job_id]["work"] = "printed"
        wave = wave_body(body["job_ids"], self.jobs, body["method"])
        self.waves.append(wave)
        if self.issues_waybills:
            png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + job_id.encode()).decode()
            wave = {**wave, "waybills": {job_id: [{
                "waybill_number": f"77{n:010d}", "provider": "kuaidi100",
                "label": {"format": "png", "content_base64": png}}]
                for n, job_id in enumerate(body["job_ids"], start=1)}}
        return ok(wave)

    def resolve(self, request: Any) -> tuple[int, dict[str, str], str]:
        if self.resolve_status != 200:
            return self.resolve_status, {}, json.dumps({"error": "internal_error"})
        match = re.search(r"/jobs/([^/]+)/changes/([^/]+)/resolve$", request.url)
        assert match
        job, body = self.jobs[match[1]], json.loads(request.body)
        change = next(c for c in job["changes"] if c["change_id"] == match[2])
        intercepted = body["outcome"] == "intercepted"
        change["status"] = "intercepted" if intercepted else "intercept_failed"
        if intercepted and change["kind"] == "courier":  # re-routed: the job's new courier
            job["carrier"] = {**job["carrier"], "carrier_code": change["carrier_code"]}
        if intercepted and change["kind"] == "cancel":
            job["work"] = "cancelled"
        elif intercepted and body["reprint"]:
            job["work"] = "queued"
        return ok(job)

    def get_job(self, request: Any) -> tuple[int, dict[str, str], str]:
        job_id = urlsplit(request.url).path.rsplit("/", 1)[1]
        return ok(self.jobs[job_id])

    def list_jobs(self, request: Any) -> tuple[int, dict[str, str], str]:
        return ok({"jobs": list(self.jobs.values()), "next_cursor": None})

    def changes(self, request: Any) -> tuple[int, dict[str, str], str]:
        cursor = int(parse_qs(urlsplit(request.url).query).get("cursor", ["0"])[0])
        return ok({"entries": self.feed[cursor:], "next_cursor": str(len(self.feed))})


def ok(body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    return 200, {}, json.dumps(body)


def refuse(reason: str, job: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    state = {"handshake": job["handshake"], "work": job["work"], "open_changes": []}
    return 409, {}, json.dumps({"error": reason, "details": {"current_state": state}})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server(rsps: Any) -> FakeWarehouse:
    return FakeWarehouse(rsps)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def factory(client: WarehouseClient, clock: Clock, **options: Any) -> SimulatedFactory:
    options.setdefault("intercept_failure_rate", 0.0)
    return SimulatedFactory(client, clock=clock, rng=random.Random(7), **options)


def run_at(sim: SimulatedFactory, clock: Clock, *moments: float) -> None:
    for moment in moments:
        clock.now = moment
        sim.run_once()


# The simulated factory --------------------------------------------------------------------------

def test_a_job_waits_out_each_stage_before_it_moves_on(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock) -> None:
    server.offer(make_job(1))
    sim = factory(client, clock)
    run_at(sim, clock, 0, 0.9)
    assert server.jobs["job_1"]["handshake"] == "offered"
    run_at(sim, clock, 1)  # accept delay 1 s since the claim
    assert server.jobs["job_1"]["handshake"] == "accepted"
    run_at(sim, clock, 8.9)
    assert server.waves == []  # printing waits 8 s from acceptance
    run_at(sim, clock, 9)
    assert server.jobs["job_1"]["work"] == "printed"
    run_at(sim, clock, 12.9)
    assert server.jobs["job_1"]["work"] == "printed"
    run_at(sim, clock, 13, 17, 21)
    assert server.jobs["job_1"]["work"] == "shipped"
    assert "job_1" not in sim.jobs


def test_accepted_jobs_are_printed_in_waves(server: FakeWarehouse, client: WarehouseClient,
                                            clock: Clock) -> None:
    server.offer(make_job(1), make_job(2), make_job(3))
    sim = factory(client, clock, wave_size=2, method="by_order")
    run_at(sim, clock, 0, 1, 9)
    assert [w["job_ids"] for w in server.waves] == [["job_1", "job_2"], ["job_3"]]
    assert {b["method"] for b in server.calls("/waves")} == {"by_order"}


def test_a_job_the_print_gate_refuses_waits_while_the_others_print(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock) -> None:
    server.offer(make_job(1), make_job(2))
    server.blocked = {"job_2"}
    sim = factory(client, clock, retry_seconds=5)
    run_at(sim, clock, 0, 1, 9)
    assert [w["job_ids"] for w in server.waves] == [["job_1"]]
    assert server.jobs["job_2"]["work"] == "queued"
    server.blocked = set()
    run_at(sim, clock, 10)
    assert len(server.waves) == 1  # held for retry_seconds after the refusal
    run_at(sim, clock, 14)
    assert [w["job_ids"] for w in server.waves] == [["job_1"], ["job_2"]]


def test_an_open_change_keeps_a_job_out_of_the_next_wave(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock) -> None:
    server.offer(make_job(1))
    sim = factory(client, clock)
    run_at(sim, clock, 0, 1, 9)  # printed
    server.request_change("job_1", "address")
    server.resolve_status = 500  # the answer does not go through: the change stays open
    run_at(sim, clock, 10, 20, 30)
    assert server.jobs["job_1"]["work"] == "printed"
    assert server.calls("/pick") == []


def test_an_address_change_after_print_is_intercepted_and_reprinted(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock) -> None:
    server.offer(make_job(1))
    sim = factory(client, clock)
    run_at(sim, clock, 0, 1, 9)
    server.request_change("job_1", "address")
    run_at(sim, clock, 10)
    assert server.calls("/resolve") == [{"outcome": "intercepted", "reprint": True,
                                        "note": "simulated: pulled back from the line"}]
    assert server.jobs["job_1"]["work"] == "queued"
    run_at(sim, clock, 14, 17.9)
    assert len(server.waves) == 1 and server.calls("/pick") == []
    run_at(sim, clock, 18)  # reprinted a print delay after the intercept
    assert len(server.waves) == 2
    assert server.jobs["job_1"]["work"] == "printed"


def test_a_courier_change_after_print_is_relabelled_and_shipped_with_the_new_courier(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock) -> None:
    server.offer(make_job(1))
    sim = factory(client, clock)
    run_at(sim, clock, 0, 1, 9)
    server.request_change("job_1", "courier", carrier_code="SF")
    run_at(sim, clock, 10)
    [answer] = server.calls("/resolve")
    assert (answer["outcome"], answer["reprint"]) == ("intercepted", True)
    run_at(sim, clock, 14, 18, 22, 26, 30, 34)
    assert server.jobs["job_1"]["work"] == "shipped"
    [shipment] = server.jobs["job_1"]["shipments"]
    assert [p["carrier_code"] for p in shipment["packages"]] == ["SF"]


def test_a_configured_fraction_of_intercepts_fails(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock) -> None:
    server.offer(make_job(1))
    sim = factory(client, clock, intercept_failure_rate=1.0)
    run_at(sim, clock, 0, 1, 9)
    server.request_change("job_1", "attributes")
    run_at(sim, clock, 10)
    [answer] = server.calls("/resolve")
    assert (answer["outcome"], answer["reprint"]) == ("failed", False)
    run_at(sim, clock, 14, 18, 22)
    assert server.jobs["job_1"]["work"] == "shipped"  # the parcel went out as it was


def test_a_cancel_after_print_is_intercepted_and_never_shipped(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock) -> None:
    server.offer(make_job(1))
    sim = factory(client, clock)
    run_at(sim, clock, 0, 1, 9)
    server.request_change("job_1", "cancel")
    run_at(sim, clock, 10, 14, 18, 22)
    assert server.calls("/resolve")[0]["reprint"] is False
    assert server.jobs["job_1"]["work"] == "cancelled"
    assert "job_1" not in sim.jobs
    assert server.calls("/pick") == []


def test_a_cancel_before_print_is_learnt_from_the_feed(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock) -> None:
    server.offer(make_job(1))
    sim = factory(client, clock)
    run_at(sim, clock, 0, 1)
    server.request_change("job_1", "cancel")
    run_at(sim, clock, 5, 9, 20)
    assert "job_1" not in sim.jobs
    assert server.waves == []


def test_shipping_uses_the_jobs_carrier(server: FakeWarehouse, client: WarehouseClient,
                                        clock: Clock) -> None:
    server.offer(make_job(1, carrier="SF"))
    sim = factory(client, clock)
    run_at(sim, clock, 0, 1, 9, 13, 17, 21)
    [pack] = server.calls("/pack")
    assert pack["package_count"] == 1 and 500 < pack["weight_grams"] < 2000
    # The parcel's contents go with the report, so the server can check them against the job.
    assert pack["packages"] == [{"items": [{"sku": "TEE-M-BLK", "quantity": 2},
                                           {"sku": "SOCK-L", "quantity": 1}]}]
    [ship] = server.calls("/ship")
    [package] = ship["packages"]
    assert package["carrier_code"] == "SF"
    assert re.fullmatch(r"SF\d{13}", package["tracking_number"])
    assert ship["shipment_id"].startswith("shp_") and ship["final"] is True


def test_with_electronic_waybills_the_factory_brings_no_numbers_and_keeps_the_labels(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock, tmp_path: Path) -> None:
    server.offer(make_job(1), make_job(2))
    server.issues_waybills = True
    sim = factory(client, clock, own_numbers=False, labels_dir=tmp_path)
    run_at(sim, clock, 0, 1, 9, 13, 17, 21)
    [wave] = server.calls("/waves")
    assert "waybill_numbers" not in wave
    # Each issued label is a file named after its number, as the print gate sent it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["770000000001.png", "770000000002.png"]
    assert (tmp_path / "770000000002.png").read_bytes().endswith(b"job_2")
    # Shipped without packages: the server ships the numbers it issued.
    ships = server.calls("/ship")
    assert len(ships) == 2 and all("packages" not in ship and ship["final"] for ship in ships)


def test_a_restarted_factory_resyncs_the_jobs_in_progress(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock) -> None:
    server.offer(make_job(1, handshake="accepted", work="printed"),
                 make_job(2, handshake="accepted", work="shipped"))
    sim = factory(client, clock)
    run_at(sim, clock, 0)
    assert set(sim.jobs) == {"job_1"}
    listing = next(c for c in server.rsps.calls if urlsplit(c.request.url).path.endswith("/jobs"))
    assert "updated_since" in parse_qs(urlsplit(listing.request.url).query)
    run_at(sim, clock, 4)
    assert server.jobs["job_1"]["work"] == "picked"


def test_a_forgotten_feed_cursor_starts_over_with_a_resync(
        server: FakeWarehouse, client: WarehouseClient, clock: Clock, rsps: Any) -> None:
    sim = factory(client, clock)
    run_at(sim, clock, 0)
    sim.cursor = "from-an-old-server"
    rsps.replace("GET", API + "/changes", status=400, json={"error": "invalid_cursor"})
    run_at(sim, clock, 1)
    assert sim.cursor is None
    assert not sim.synced


@pytest.mark.parametrize("details", [
    {"jobs": {"job_2": {"error": "change_pending"}}},
    {"job_ids": ["job_2"]},
    {"jobs": [{"job_id": "job_2", "error": "change_pending"}]},
])
def test_a_wave_refusal_may_name_its_jobs_in_several_shapes(details: dict[str, Any]) -> None:
    assert _named_jobs(details) == {"job_2"}


@pytest.mark.parametrize(("carrier", "pattern"), [
    ("STO", r"773\d{9}"), ("SF", r"SF\d{13}"), ("YTO", r"YT\d{13}"), ("ZTO", r"\d{12}"),
    ("YUNDA", r"\d{13}"), ("JD", r"JDV\d{12}"), ("EMS", r"\d{13}"),
])
def test_tracking_numbers_look_like_the_carriers(carrier: str, pattern: str) -> None:
    assert re.fullmatch(pattern, TRACKING_FORMATS[carrier](random.Random(1)))


# The command line ------------------------------------------------------------------------------

def cli(*args: str) -> int:
    return main(["--api", BASE, "--key", KEY, *args])


def test_wave_command_prints_the_pick_and_sort_lists(rsps: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rsps.post(API + "/waves", json={
        "wave_id": "w_1", "method": "batch", "job_ids": ["job_1", "job_2"],
        "created_at": "2030-01-01T09:00:00Z",
        "pick_list": [
            {"sku": "TEE-M-BLK", "title": "T恤", "variant": "M / black", "quantity": 3,
             "location": "A-01-03"},
            {"sku": "SOCK-L", "title": "Socks", "variant": "L", "quantity": 12,
             "location": "B-02-01"}],
        "sort_list": [
            {"slot": 1, "job_id": "job_1", "order_name": "#1041",
             "lines": [{"sku": "TEE-M-BLK", "quantity": 2, "location": "A-01-03"},
                       {"sku": "SOCK-L", "quantity": 1, "location": "B-02-01"}]},
            {"slot": 2, "job_id": "job_2", "order_name": "#1042",
             "lines": [{"sku": "TEE-M-BLK", "quantity": 1, "location": "A-01-03"}]}]})
    assert cli("wave", "job_1", "job_2") == 0
    out = capsys.readouterr().out
    assert body_of(rsps.calls[0]) == {"job_ids": ["job_1", "job_2"], "method": "batch"}
    pick = out.split("PICK LIST\n")[1].split("\n\n")[0].splitlines()
    assert pick == ["LOCATION  SKU        TITLE  VARIANT    QTY",
                    "--------  ---------  -----  ---------  ---",
                    "A-01-03   TEE-M-BLK  T恤    M / black    3",
                    "B-02-01   SOCK-L     Socks  L           12"]
    sort = out.split("SORT LIST")[1].splitlines()[3:]
    assert sort == ["   1  #1041  job_1  TEE-M-BLK    2  A-01-03",
                    "                    SOCK-L       1  B-02-01",
                    "   2  #1042  job_2  TEE-M-BLK    1  A-01-03"]


def test_wave_by_order_shows_one_walk_per_order(rsps: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    wave = wave_body(["job_1"], method="by_order") | {"pick_list": [], "sort_list": [
        {"slot": 1, "job_id": "job_1", "order_name": "#1041",
         "lines": [{"sku": "TEE-M-BLK", "quantity": 2, "location": "A-01-03"}]}]}
    rsps.post(API + "/waves", json=wave)
    assert cli("wave", "job_1", "--by-order") == 0
    assert body_of(rsps.calls[0])["method"] == "by_order"
    out = capsys.readouterr().out
    assert "PICK BY ORDER" in out and "PICK LIST" not in out
    assert "   1  #1041  job_1  TEE-M-BLK    2  A-01-03" in out


def test_api_and_key_may_come_from_the_environment(
        rsps: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("WAREHOUSE_API", BASE)
    monkeypatch.setenv("WAREHOUSE_KEY", "pk_env")
    rsps.post(API + "/jobs/job_1/pack", json=make_job(1, handshake="accepted", work="packed"))
    assert main(["pack", "job_1", "--weight-grams", "850", "--packages", "1"]) == 0
    assert rsps.calls[0].request.headers["Authorization"] == "Bearer pk_env"
    assert body_of(rsps.calls[0]) == {"weight_grams": 850, "package_count": 1}
    assert "work=packed" in capsys.readouterr().out


def test_ship_command_shows_the_shipment_id_it_generates(
        rsps: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rsps.post(API + "/jobs/job_1/ship", json=make_job(1, handshake="accepted", work="shipped"))
    assert cli("ship", "job_1", "--carrier", "STO", "--tracking", "773012345678") == 0
    sent = body_of(rsps.calls[0])
    assert sent["packages"] == [{"carrier_code": "STO", "tracking_number": "773012345678"}]
    assert sent["final"] is True
    assert f"shipment {sent['shipment_id']}" in capsys.readouterr().err


def test_changes_command_keeps_its_cursor(rsps: Any, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.json"
    entry = {"cursor": "c1", "at": "2030-01-01T09:00:00Z", "job_id": "job_1",
             "type": "change.intercept_requested",
             "change": {"change_id": "chg_1", "kind": "address", "status": "intercept_requested",
                        "requested_at": "2030-01-01T09:00:00Z", "deadline": None}}
    rsps.get(API + "/changes", json={"entries": [entry], "next_cursor": "c1"})
    rsps.get(API + "/changes", json={"entries": [], "next_cursor": "c1"})
    assert cli("changes", "--state", str(state)) == 0
    assert "chg_1" in capsys.readouterr().out
    assert cli("changes", "--state", str(state)) == 0
    assert "no new changes" in capsys.readouterr().out
    assert cli("changes", "--state", str(state), "--reset") == 0
    queries = [parse_qs(urlsplit(c.request.url).query) for c in rsps.calls]
    assert [q.get("cursor") for q in queries] == [None, ["c1"], None]


def test_resolve_command(rsps: Any) -> None:
    rsps.post(API + "/jobs/job_1/changes/chg_1/resolve", json=make_job(1, handshake="accepted"))
    assert cli("resolve", "job_1", "chg_1", "--intercepted", "--reprint", "--note", "ok") == 0
    assert body_of(rsps.calls[0]) == {"outcome": "intercepted", "reprint": True, "note": "ok"}


def test_a_refusal_exits_1_with_the_reason(rsps: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rsps.post(API + "/waves", status=409, json={
        "error": "wave_refused", "message": "some jobs cannot be printed",
        "details": {"jobs": {"job_2": {"error": "change_pending"}}}})
    assert cli("wave", "job_1", "job_2") == 1
    err = capsys.readouterr().err
    assert "409 wave_refused: some jobs cannot be printed" in err
    assert "change_pending" in err and "job_2" in err


def test_a_stale_saved_cursor_says_to_reset(rsps: Any, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({BASE: {"changes_cursor": "old"}}))
    rsps.get(API + "/changes", status=400, json={"error": "invalid_cursor", "message": "bad"})
    assert cli("changes", "--state", str(state)) == 1
    assert "--reset" in capsys.readouterr().err


def test_table_pads_wide_characters() -> None:
    table = render_table(["NAME", "QTY"], [("王芳", 1), ("Bob", 10)])
    assert table.splitlines() == ["NAME  QTY", "----  ---", "王芳    1", "Bob    10"]


def test_a_job_needing_a_new_label_is_relabelled_before_anything_else() -> None:
    from partner_client.factory import stage_of

    job = {"handshake": "accepted", "work": "picked", "reprint_required": True}
    assert stage_of(job) == "relabel"  # type: ignore[arg-type]
    assert stage_of({**job, "reprint_required": False}) == "pack"  # type: ignore[arg-type]


def test_pack_command_sends_the_items_and_a_reason_to_ship_anyway(
        rsps: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rsps.post(API + "/jobs/job_1/pack", json=make_job(1, handshake="accepted", work="packed"))
    assert cli("pack", "job_1", "--weight-grams", "850", "--item", "TEE-M-BLK=2",
               "--item", "SOCK-L=1", "--ship-anyway", "socks out of stock") == 0
    assert body_of(rsps.calls[0]) == {
        "weight_grams": 850, "package_count": 1, "ship_anyway": True,
        "reason": "socks out of stock",
        "packages": [{"items": [{"sku": "TEE-M-BLK", "quantity": 2},
                                {"sku": "SOCK-L", "quantity": 1}]}]}
    assert cli("pack", "job_1", "--weight-grams", "850", "--item", "TEE-M-BLK") == 2
    assert len(rsps.calls) == 1  # a malformed item is not sent
