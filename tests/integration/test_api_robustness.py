"""Issue 12: bad input, deep JSON, storage faults, rate limits and Chalice's own answers must
each get the error contract with the status that says whose fault it is, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from chalice.test import Client

from app import app
from chalicelib.access.keys import Role
from tests.integration.test_warehouse_api import Api, accepted_jobs

JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def client(stack: dict[str, str]) -> Iterator[Client]:
    with Client(app, stage_name="local") as test_client:
        yield test_client


@pytest.fixture
def partner(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    import uuid

    from chalicelib.core.settings import settings

    name = f"factory-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("WAREHOUSE_PARTNER", name)
    settings.cache_clear()
    return name


@pytest.fixture
def api(client: Client, partner: str, make_key: Any) -> Api:
    return Api(client, make_key("partner", partner), make_key("staff", "ann", Role.BACK_OFFICE))


@pytest.fixture
def fresh_limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Rate limits start empty (they are per process) and end empty for the next test."""
    from chalicelib.core import ratelimit
    from chalicelib.core.settings import settings

    settings.cache_clear()
    ratelimit.reset()
    yield
    monkeypatch.undo()
    settings.cache_clear()
    ratelimit.reset()


def error_of(response: Any) -> tuple[int, str]:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = json.loads(response.body)
    assert set(body) <= {"error", "message", "details"} and body["message"], body
    return int(response.status_code), str(body["error"])


# Defect 4: a map key the store cannot take -------------------------------------------------


def test_an_empty_sku_is_refused_and_the_partner_keeps_working(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    (job,) = accepted_jobs(api, client, stack, 1)
    for bad in ({"": "A-01"}, {"TOTE-NAT": ""}, {"x" * 256: "A-01"}, {"TOTE-NAT": "A" * 65}):
        refused = api.call("put", "/warehouse/v1/sku-locations", {"locations": bad}, expect=422)
        assert refused["error"] == "invalid_payload"
    assert api.call("put", "/warehouse/v1/sku-locations",
                    {"locations": {"TOTE-NAT": "A-01-02"}})["count"] == 1
    wave = api.post("/waves", {"job_ids": [job["job_id"]]}, expect=201)
    assert ("TOTE-NAT", "A-01-02") in [(p["sku"], p["location"]) for p in wave["pick_list"]]


def test_a_partner_whose_stored_locations_hold_an_empty_sku_is_healed(
        api: Api, client: Client, stack: dict[str, str], partner: str) -> None:
    """Stored before the rule existed (what the 200 of the bad request left behind)."""
    from chalicelib.core.dynamodb import to_attrs

    (job,) = accepted_jobs(api, client, stack, 1)
    boto3.client("dynamodb").put_item(TableName=stack["JOBS_TABLE"], Item=to_attrs({
        "pk": partner, "sk": "SKU_LOCATIONS", "at": "2026-01-01T00:00:00Z",
        "locations": {"": "0", "LS-WHT-M": "B-03-01"}}))
    wave = api.post("/waves", {"job_ids": [job["job_id"]]}, expect=201)
    assert {p["sku"] for p in wave["pick_list"]} == {"TOTE-NAT", "LS-WHT-M"}
    saved = api.call("put", "/warehouse/v1/sku-locations",
                     {"locations": {"TOTE-NAT": "A-01-02"}})
    assert saved["count"] >= 1
    (job2,) = accepted_jobs(api, client, stack, 1)
    wave = api.post("/waves", {"job_ids": [job2["job_id"]]}, expect=201)
    assert ("TOTE-NAT", "A-01-02") in [(p["sku"], p["location"]) for p in wave["pick_list"]]


def test_forged_cursors_are_invalid_cursors(api: Api) -> None:
    import base64

    def wrap(value: str) -> str:
        return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")

    for cursor in (wrap("FEED#9999-12-31T00:00:00Z"), wrap("FEED#" + "9" * 3000)):
        answer = api.get(f"/changes?cursor={cursor}", expect=None)
        assert answer.get("error") in (None, "invalid_cursor"), answer
    forged = base64.urlsafe_b64encode(json.dumps({"pk": "x"}).encode()).decode()
    assert api.get(f"/jobs?cursor={forged}", expect=400)["error"] == "invalid_cursor"
    other = base64.urlsafe_b64encode(json.dumps({
        "pk": {"S": "someone-else"}, "sk": {"S": "job_1"},
        "updated_at": {"S": "2026-01-01T00:00:00Z"}}).encode()).decode()
    assert api.get(f"/jobs?cursor={other}", expect=400)["error"] == "invalid_cursor"

