"""Issue 12: bad input, deep JSON, storage faults, rate limits and Chalice's own answers must
each get the error contract with the status that says whose fault it is, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from chalice.test import Client

from app import app
from chalicelib.access.keys import Role
from tests.integration.test_warehouse_api import Api, accepted_jobs, queue_orders

JSON_HEADERS = {"Content-Type": "application/json"}



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


def test_ids_longer_than_any_we_issue_are_not_found(api: Api) -> None:
    long_id = "job_" + "x" * 2000
    assert api.get(f"/jobs/{long_id}", expect=404)["error"] == "job_not_found"
    assert api.get(f"/waves/wave_{'x' * 2000}", expect=404)["error"] == "wave_not_found"
    refused = api.post("/waves", {"job_ids": [long_id]}, expect=None)
    assert refused["error"] in ("invalid_payload", "wave_refused")
    order = api.call("get", f"/cs/v1/orders/ord_{'x' * 3000}", key=api.cs_key, expect=404)
    assert order["error"] == "order_not_found"
    case = api.call("get", f"/cs/v1/cases/{'c' * 3000}", key=api.cs_key, expect=404)
    assert case["error"] == "case_not_found"
    found = api.call("get", f"/cs/v1/cases?order_id={'o' * 3000}", key=api.cs_key, expect=400)
    assert found["error"] == "invalid_query"


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


# Defect 5: JSON nested deeper than any payload of ours -------------------------------------


@pytest.mark.parametrize("deep", ["[" * 10_000 + "]" * 10_000,
                                  '{"note": ' + '{"a": ' * 10_000 + "1" + "}" * 10_001])
def test_deeply_nested_json_is_malformed_json_not_a_500(
        api: Api, client: Client, stack: dict[str, str], deep: str) -> None:
    headers = {**JSON_HEADERS, "Authorization": f"Bearer {api.cs_key}"}
    for path in ("/cs/v1/orders/ord_x/amendments", "/cs/v1/cases/case_x/resolve",
                 "/cs/v1/cases/case_x/acknowledge"):
        response = client.http.post(path, headers=headers, body=deep.encode())
        assert error_of(response) == (400, "malformed_json"), path
    response = client.http.post("/warehouse/v1/jobs/claim", body=deep.encode(),
                                headers={**JSON_HEADERS, "Authorization": f"Bearer {api.key}"})
    assert error_of(response) == (400, "malformed_json")


def test_a_lone_surrogate_is_malformed_json(api: Api, client: Client) -> None:
    body = b'{"kind": "note", "reason": "\\ud800"}'
    response = client.http.post("/cs/v1/orders/ord_x/amendments", body=body, headers={
        **JSON_HEADERS, "Authorization": f"Bearer {api.cs_key}"})
    assert error_of(response) == (400, "malformed_json")


# Build item 3: storage faults are the store's, bad data the caller's -----------------------


def _client_error(code: str, message: str = "", status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetItem")


@pytest.mark.parametrize(("error", "status", "reason", "retry"), [
    (_client_error("ProvisionedThroughputExceededException"), 503, "storage_throttled", True),
    (_client_error("ThrottlingException"), 503, "storage_throttled", True),
    (_client_error("RequestLimitExceeded"), 503, "storage_throttled", True),
    (_client_error("InternalServerError", status=500), 503, "storage_unavailable", True),
    (_client_error("ServiceUnavailable", status=503), 503, "storage_unavailable", True),
    (EndpointConnectionError(endpoint_url="http://x"), 503, "storage_unavailable", True),
    (_client_error("ValidationException", "One or more parameter values were invalid: Size of "
                   "hashkey has exceeded the maximum size limit of 2048 bytes"), 400,
     "invalid_request", False),
    (_client_error("ValidationException", "Item size has exceeded the maximum allowed size"),
     413, "payload_too_large", False),
])
def test_storage_faults_answer_the_contract_on_every_api(
        api: Api, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int, reason: str,
        retry: bool) -> None:
    import chalicelib.api as edge
    from chalicelib.cs import case_store
    from chalicelib.warehouse import job_store

    faults: list[str] = []
    monkeypatch.setattr(edge, "_our_fault", lambda route, exc: faults.append(route))

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise error

    monkeypatch.setattr(job_store, "get", fail)
    monkeypatch.setattr(case_store, "get", fail)
    for response in (
            api.client.http.get("/warehouse/v1/jobs/job_1",
                                headers={"Authorization": f"Bearer {api.key}"}),
            api.client.http.get("/cs/v1/cases/case_1",
                                headers={"Authorization": f"Bearer {api.cs_key}"})):
        assert error_of(response) == (status, reason)
        assert ("Retry-After" in response.headers) is retry
    assert faults == []


def test_a_validation_error_of_our_own_making_stays_a_500_and_a_case(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import chalicelib.api as edge
    from chalicelib.warehouse import job_store

    faults: list[str] = []
    monkeypatch.setattr(edge, "_our_fault", lambda route, exc: faults.append(route))

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise _client_error("ValidationException", "Invalid UpdateExpression: Syntax error")

    monkeypatch.setattr(job_store, "get", fail)
    response = api.client.http.get("/warehouse/v1/jobs/job_1",
                                   headers={"Authorization": f"Bearer {api.key}"})
    assert error_of(response) == (500, "internal_error")
    assert faults == ["get_job"]


# Item 9 and build item 2: rate limits for every caller --------------------------------------


def test_cs_keys_are_rate_limited_like_partner_keys(
        api: Api, monkeypatch: pytest.MonkeyPatch, fresh_limits: None) -> None:
    from chalicelib.core.settings import settings

    monkeypatch.setenv("RATE_LIMIT_PER_SECOND", "1")
    monkeypatch.setenv("RATE_LIMIT_BURST", "2")
    settings.cache_clear()
    for _ in range(2):
        api.call("get", "/cs/v1/notifications", key=api.cs_key)
    response = api.client.http.get("/cs/v1/notifications",
                                   headers={"Authorization": f"Bearer {api.cs_key}"})
    assert error_of(response) == (429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("path", ["/warehouse/v1/changes", "/cs/v1/notifications"])
def test_failed_authentication_is_slowed_per_address_before_the_key_lookup(
        client: Client, stack: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        fresh_limits: None, path: str) -> None:
    from chalicelib.access import directory_store
    from chalicelib.core.settings import settings

    monkeypatch.setenv("AUTH_FAILURES_PER_SECOND", "1")
    monkeypatch.setenv("AUTH_FAILURES_BURST", "3")
    settings.cache_clear()
    lookups: list[str] = []
    real = directory_store.principal_for
    monkeypatch.setattr(directory_store, "principal_for",
                        lambda digest: lookups.append(digest) or real(digest))
    answers = [error_of(client.http.get(path, headers={
        "Authorization": f"Bearer obk_guess_{n}"})) for n in range(4)]
    assert answers == [(401, "invalid_credentials")] * 3 + [(429, "rate_limited")]
    assert len(lookups) == 3  # the fourth guess never reached the directory
    response = client.http.get(path)  # no key at all is a failure from the same address too
    assert error_of(response) == (429, "rate_limited")
    assert int(response.headers["Retry-After"]) >= 1


# Item 9 and build item 3: Chalice's own answers ----------------------------------------------


def test_wrong_method_and_media_type_answer_the_error_contract(api: Api, client: Client) -> None:
    response = client.http.put("/cs/v1/orders/ord_1",
                               headers={"Authorization": f"Bearer {api.cs_key}"})
    assert error_of(response) == (405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"
    response = client.http.post("/warehouse/v1/jobs/claim", body=b"max_jobs=1", headers={
        "Authorization": f"Bearer {api.key}", "Content-Type": "application/x-www-form-urlencoded"})
    assert error_of(response) == (415, "unsupported_media_type")
    response = client.http.post("/webhooks/shopify", body=b"<order/>",
                                headers={"Content-Type": "application/xml"})
    assert error_of(response) == (415, "unsupported_media_type")


def test_locally_an_unknown_route_is_route_not_found(stack: dict[str, str]) -> None:
    from chalice.config import Config
    from chalice.local import LocalGatewayException

    from devstack.local_api import LocalApiGateway

    gateway = LocalApiGateway(app, Config.create(chalice_stage="local"))
    for headers in ({}, {"Authorization": "Bearer obk_x"}):
        with pytest.raises(LocalGatewayException) as raised:
            gateway.handle_request("GET", "/warehouse/v1/nothing/here", headers, b"")
        assert raised.value.CODE == 404
        assert raised.value.headers["Content-Type"] == "application/json"
        body = json.loads(raised.value.body or b"")
        assert body["error"] == "route_not_found" and body["message"]


# Item 9 and build item 4: the OpenAPI descriptions ------------------------------------------


def _spec(client: Client, path: str) -> dict[str, Any]:
    from openapi_spec_validator import validate

    response = client.http.get(path)  # no key: the description holds no data
    assert response.status_code == 200
    spec: dict[str, Any] = json.loads(response.body)
    validate(spec)  # type: ignore[arg-type]
    return spec


@pytest.mark.parametrize("prefix", ["/warehouse/v1", "/cs/v1"])
def test_each_openapi_names_every_route_with_the_errors_it_can_answer(
        client: Client, prefix: str) -> None:
    spec = _spec(client, f"{prefix}/openapi.json")
    served = {(method.lower(), path) for path, methods in app.routes.items()
              for method in methods if path.startswith(prefix)}
    described = {(method, path) for path, methods in spec["paths"].items() for method in methods}
    assert served == described
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if path.endswith("/openapi.json"):
                continue
            codes = set(operation["responses"])
            assert {"400", "401", "403", "429", "503"} <= codes, (method, path)
            for code in codes - {"200", "201"}:
                schema = operation["responses"][code]["content"]["application/json"]["schema"]
                assert schema["$ref"].endswith("/Error")
            if "{" in path:
                assert "404" in codes
            if "requestBody" in operation:
                assert {"413", "415", "422"} <= codes, (method, path)


def test_a_request_body_is_required_only_where_the_route_needs_one(client: Client) -> None:
    paths = _spec(client, "/warehouse/v1/openapi.json")["paths"]
    assert paths["/warehouse/v1/jobs/claim"]["post"]["requestBody"]["required"] is False
    assert paths["/warehouse/v1/jobs/{job_id}/pick"]["post"]["requestBody"]["required"] is False
    assert paths["/warehouse/v1/jobs/{job_id}/accept"]["post"]["requestBody"]["required"] is True
    assert paths["/warehouse/v1/sku-locations"]["put"]["requestBody"]["required"] is True
    cs = _spec(client, "/cs/v1/openapi.json")["paths"]
    assert cs["/cs/v1/cases/{case_id}/acknowledge"]["post"]["requestBody"]["required"] is False
    assert cs["/cs/v1/cases/{case_id}/resolve"]["post"]["requestBody"]["required"] is True
    schema = cs["/cs/v1/orders/{order_id}/amendments"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert schema["$ref"].endswith("/Amendment")
    amend = cs["/cs/v1/orders/{order_id}/amendments"]["post"]
    assert all(reason in amend["responses"]["422"]["description"]
               for reason in ("invalid_payload", "unknown_courier", "courier_not_offered"))
    kinds = _spec(client, "/cs/v1/openapi.json")["components"]["schemas"]["Amendment"][
        "properties"]["kind"]["enum"]
    assert "courier" in kinds


def test_an_empty_body_is_taken_where_the_description_says_it_is_optional(api: Api) -> None:
    response = api.client.http.post("/warehouse/v1/jobs/claim",
                                    headers={"Authorization": f"Bearer {api.key}"})
    assert response.status_code == 200


def test_real_answers_of_both_apis_match_their_descriptions(
        api: Api, client: Client, stack: dict[str, str]) -> None:
    """The fuzzer meets mostly unknown ids; here every operation answers with real data (an
    order with a job, a printed job with an intercept, a shipment, a case), each checked against
    the schema its description gives for that status."""
    from datetime import UTC, datetime

    from jsonschema import Draft202012Validator

    from chalicelib.cs.alerts import Alert, Severity
    from chalicelib.flows import alert_dispatch
    from tests.support import NEW_ADDRESS

    specs = {prefix: _spec(client, f"{prefix}/openapi.json") for prefix in ("/warehouse/v1",
                                                                            "/cs/v1")}
    checked: set[tuple[str, str]] = set()

    def conforms(method: str, template: str, status: int, body: Any) -> Any:
        prefix = "/cs/v1" if template.startswith("/cs/v1") else "/warehouse/v1"
        spec = specs[prefix]
        schema = spec["paths"][template][method]["responses"][str(status)]["content"][
            "application/json"]["schema"]
        Draft202012Validator({**schema, "components": spec["components"]}).validate(body)
        checked.add((method, template))
        return body

    w, c = "/warehouse/v1", "/cs/v1"
    first, second, third = accepted_jobs(api, client, stack, 3)
    job_id = first["job_id"]
    conforms("get", f"{w}/jobs/{{job_id}}", 200, api.get(f"/jobs/{job_id}"))
    conforms("get", f"{w}/jobs", 200, api.get("/jobs?updated_since=2000-01-01T00:00:00Z"))
    conforms("post", f"{w}/jobs/{{job_id}}/print", 200, api.post(f"/jobs/{job_id}/print"))
    amended = api.amend(first["order_id"], {"kind": "address", "reason": "buyer phoned",
                                            "address": NEW_ADDRESS})
    conforms("post", f"{c}/orders/{{order_id}}/amendments", 201, amended)
    conforms("post", f"{c}/orders/{{order_id}}/complaints", 201, api.call(
        "post", f"{c}/orders/{first['order_id']}/complaints",
        {"kind": "short", "note": "one shirt only", "items": [{"sku": "LS-WHT-M"}]},
        key=api.cs_key, expect=201))
    change_id = amended["change"]["change_id"]
    conforms("post", f"{w}/jobs/{{job_id}}/changes/{{change_id}}/resolve", 200, api.post(
        f"/jobs/{job_id}/changes/{change_id}/resolve", {"outcome": "intercepted"}))
    conforms("post", f"{w}/jobs/{{job_id}}/print", 200, api.post(f"/jobs/{job_id}/print"))
    conforms("post", f"{w}/jobs/{{job_id}}/pick", 200, api.post(f"/jobs/{job_id}/pick"))
    conforms("post", f"{w}/jobs/{{job_id}}/pack", 200, api.post(
        f"/jobs/{job_id}/pack", {"weight_grams": 500, "package_count": 1, "packages": [
            {"items": [{"sku": "TOTE-NAT", "quantity": 1}, {"sku": "LS-WHT-M", "quantity": 2}]}
        ]}))
    conforms("post", f"{w}/jobs/{{job_id}}/ship", 200, api.post(f"/jobs/{job_id}/ship", {
        "shipment_id": "s-1", "packages": [{"carrier_code": "STO",
                                            "tracking_number": "773099887766"}]}))
    conforms("get", f"{w}/changes", 200, api.get("/changes"))
    conforms("put", f"{w}/sku-locations", 200, api.call(
        "put", f"{w}/sku-locations", {"locations": {"TOTE-NAT": "A-01-02"}}))
    wave = conforms("post", f"{w}/waves", 201, api.post("/waves", {
        "job_ids": [second["job_id"]], "method": "by_order"}, expect=201))
    conforms("get", f"{w}/waves/{{wave_id}}", 200, api.get(f"/waves/{wave['wave_id']}"))
    conforms("post", f"{w}/returns", 201, api.post("/returns", {
        "return_tracking_number": "YT7500000001", "buyer_name": "林伟", "reason": "too small",
        "items": [{"sku": "TOTE-NAT", "quantity": 1}], "packaging": "intact",
        "job_id": job_id}, expect=201))
    queue_orders(client, stack, 1)
    claimed = conforms("post", f"{w}/jobs/claim", 200, api.claim())
    offer, lease = claimed["jobs"][0]["job_id"], {"lease_id": claimed["lease_id"]}
    conforms("post", f"{w}/jobs/{{job_id}}/heartbeat", 200,
             api.post(f"/jobs/{offer}/heartbeat", lease))
    conforms("post", f"{w}/jobs/{{job_id}}/release", 200, api.post(f"/jobs/{offer}/release",
                                                                   lease))
    lease = {"lease_id": api.claim()["lease_id"]}
    conforms("post", f"{w}/jobs/{{job_id}}/accept", 200, api.post(f"/jobs/{offer}/accept",
                                                                  lease))
    conforms("post", f"{w}/jobs/{{job_id}}/reject", 409, api.post(
        f"/jobs/{offer}/reject", {"lease_id": "lease_x", "reason": "other"}, expect=409))
    conforms("post", f"{w}/jobs/claim", 200, api.claim())  # nothing left on offer
    for error_status, call in ((404, lambda: api.get("/jobs/job_nope", expect=404)),
                               (400, lambda: api.get("/jobs?limit=0", expect=400))):
        conforms("get", f"{w}/jobs" + ("/{job_id}" if error_status == 404 else ""),
                 error_status, call())

    at = datetime.now(UTC)
    alert_dispatch.handle(Alert(kind="order.invalid", severity=Severity.HIGH,
                                subject=f"order:{third['order_id']}", at=at, summary="checked",
                                facts={"order_id": third["order_id"]}).model_dump_json(), at)
    cs = api.cs_key
    view = conforms("get", f"{c}/orders/{{order_id}}", 200,
                    api.call("get", f"{c}/orders/{first['order_id']}", key=cs))
    assert view["parcels"] and view["job"]["work"] == "shipped"
    conforms("get", f"{c}/orders", 200, api.call(
        "get", f"{c}/orders?carrier_code=STO&tracking_number=773099887766", key=cs))
    searched = conforms("get", f"{c}/orders", 200, api.call(
        "get", f"{c}/orders?q=773099887766", key=cs))  # the search box: a SearchResult
    assert searched["hits"][0]["order_id"] == first["order_id"]
    conforms("get", f"{c}/orders", 400, api.call("get", f"{c}/orders?q=%3Cb%3E", key=cs,
                                                 expect=400))
    cases = conforms("get", f"{c}/cases", 200, api.call(
        "get", f"{c}/cases?order_id={third['order_id']}", key=cs))
    case_id = cases["cases"][0]["case_id"]
    conforms("get", f"{c}/cases/{{case_id}}", 200, api.call("get", f"{c}/cases/{case_id}",
                                                           key=cs))
    conforms("post", f"{c}/cases/{{case_id}}/acknowledge", 200, api.call(
        "post", f"{c}/cases/{case_id}/acknowledge", {}, key=cs))
    conforms("post", f"{c}/cases/{{case_id}}/resolve", 200, api.call(
        "post", f"{c}/cases/{case_id}/resolve", {"note": "address added"}, key=cs))
    for status in ("dead", "failed"):
        conforms("get", f"{c}/notifications", 200, api.call(
            "get", f"{c}/notifications?status={status}", key=cs))
    conforms("get", f"{c}/today", 200, api.call("get", f"{c}/today", key=cs))
    queue_orders(client, stack, 1, financial_status="pending")  # on the unpaid list
    unpaid = conforms("get", f"{c}/orders/lists/{{list_name}}", 200, api.call(
        "get", f"{c}/orders/lists/unpaid?limit=1", key=cs))
    assert len(unpaid["orders"]) == 1
    conforms("get", f"{c}/orders/lists/{{list_name}}", 404, api.call(
        "get", f"{c}/orders/lists/nope", key=cs, expect=404))
    described = {(method, path) for prefix, spec in specs.items()
                 for path, methods in spec["paths"].items() for method in methods
                 if not path.endswith("/openapi.json")}
    assert described == checked
