"""The OpenAPI 3 descriptions of the warehouse API and the CS API, built from the same pydantic
models the handlers validate with; tests check that each names exactly the routes the app
serves, and fuzz each against the app (tests/integration/test_api_fuzz.py).

Every operation lists the errors it can answer, each with the error contract's schema: 400,
401, 403, 415, 429 and 503 on every authenticated operation (a value storage cannot take,
the key, Chalice's media-type check, the rate limits, storage throttled or down, `busy`), 404
where the path names something, 409 where the state may refuse, 413 and 422 where there is a
body. A body is `required` only where the model has a required field: no body is `{}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel, RootModel
from pydantic.json_schema import models_json_schema

WAREHOUSE = "/warehouse/v1"
CS = "/cs/v1"
MAX_ID = 128  # chalicelib.api.callers.MAX_ID_BYTES: a longer id names nothing
MAX_CURSOR = 2048  # chalicelib.core.cursors.MAX_CURSOR
MAX_QUERY_CHARS = 100  # chalicelib.orders.search.MAX_QUERY_CHARS


class Error(BaseModel):
    error: str
    message: str
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    request: type[BaseModel] | None
    response: type[BaseModel]
    status: int
    parameters: list[dict[str, Any]] = field(default_factory=list)
    not_found: str = ""  # what a 404 means here; empty: no 404
    conflict: str = ""  # what a 409 means here; empty: no 409
    unprocessable: str = ""  # 422 reasons besides `invalid_payload`, for a body's meaning


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


def _text(max_length: int = MAX_ID) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length}


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "integer", "minimum": 1}}}


def _errors(operation: Operation, key: str) -> dict[str, tuple[str, bool]]:
    """Status -> (description, carries Retry-After)."""
    errors = {
        "400": ("Malformed request: `malformed_json`, a query parameter, a cursor, or a value "
                "our storage cannot take (`invalid_request`)", False),
        "401": ("Missing or unknown API key", False),
        "403": (f"Not {key}", False),
        "415": ("Unsupported media type: send application/json", False),
        "429": ("Too many requests for your key, or too many failed authentications from your "
                "address: wait `Retry-After` seconds", True),
        "503": ("Storage throttled or unavailable, or the record kept changing "
                "(`storage_throttled`, `storage_unavailable`, `busy`): nothing was written; "
                "retry after `Retry-After` seconds", True),
    }
    if operation.not_found:
        errors["404"] = (operation.not_found, False)
    if operation.conflict:
        errors["409"] = (operation.conflict, False)
    if operation.request is not None:
        errors["413"] = ("The body, or the record it makes, is larger than we take", False)
        errors["422"] = ("Request failed validation (`invalid_payload`, `details.problems`)"
                         + (f"; {operation.unprocessable}" if operation.unprocessable else ""),
                         False)
    return dict(sorted(errors.items()))


def _body_required(model: type[BaseModel]) -> bool:
    return any(info.is_required() for info in model.model_fields.values())


def _spec(base: str, title: str, description: str, key: str,
          operations: list[Operation]) -> dict[str, Any]:
    models = {Error, *(op.request for op in operations if op.request),
              *(op.response for op in operations)}
    keyed = [(model, mode) for model in models for mode in ("validation", "serialization")]
    refs, defs = models_json_schema(keyed, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    error_schema = {"application/json": {"schema": refs[(Error, "serialization")]}}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        responses: dict[str, Any] = {str(op.status): {
            "description": "OK", "content": {"application/json": {
                "schema": refs[(op.response, "serialization")]}}}}
        for code, (text, retry) in _errors(op, key).items():
            responses[code] = {"description": text, "content": error_schema,
                               **({"headers": _RETRY_AFTER} if retry else {})}
        operation: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary,
                                     "parameters": op.parameters, "responses": responses}
        if op.request is not None:
            operation["requestBody"] = {
                "required": _body_required(op.request),
                "content": {"application/json": {"schema": refs[(op.request, "validation")]}}}
        paths.setdefault(base + op.path, {})[op.method] = operation
    paths[base + "/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This description (no key needed)", "security": [],
        "responses": {"200": {"description": "OpenAPI 3 document", "content": {
            "application/json": {"schema": {"type": "object"}}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1.0.0", "description": description},
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}), "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer",
                       "description": f"Authorization: Bearer <{key}>"}}},
    }


# The warehouse partner API --------------------------------------------------------------------


def _warehouse_operations() -> list[Operation]:
    from chalicelib.flows import warehouse
    from chalicelib.warehouse import returns, waves
    from chalicelib.warehouse.jobs import Job

    job, change, wave = _path("job_id"), _path("change_id"), _path("wave_id")
    no_job = "No such job of yours"
    state = "Not allowed in the job's current state (`details.current_state`)"
    cursor = _query("cursor", "next_cursor of the previous page (of the same updated_since for "
                    "/jobs), unchanged (else 400 `invalid_cursor`)", _text(MAX_CURSOR))
    limit = _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 100})
    return [
        Operation("post", "/jobs/claim", "claimJobs", "Claim offered jobs under a lease (long "
                  "poll with wait_seconds)", warehouse.ClaimRequest, warehouse.Claimed, 200),
        Operation("get", "/jobs", "listJobs", "Jobs updated since a time, for a partner that "
                  "lost its state", None, warehouse.JobPage, 200, [
                      _query("updated_since", "ISO 8601 time",
                             {"type": "string", "format": "date-time"}), cursor, limit]),
        Operation("get", "/jobs/{job_id}", "getJob", "One of your jobs", None, Job, 200, [job],
                  not_found=no_job),
        Operation("post", "/jobs/{job_id}/heartbeat", "extendLease", "Extend the lease on an "
                  "offer", warehouse.LeaseRequest, Job, 200, [job], no_job, state),
        Operation("post", "/jobs/{job_id}/release", "releaseLease", "Give an offer back before "
                  "the lease ends", warehouse.LeaseRequest, Job, 200, [job], no_job, state),
        Operation("post", "/jobs/{job_id}/accept", "acceptJob", "Accept the whole job (needs a "
                  "live lease)", warehouse.LeaseRequest, Job, 200, [job], no_job, state),
        Operation("post", "/jobs/{job_id}/reject", "rejectJob", "Reject the whole job with a "
                  "reason", warehouse.RejectRequest, Job, 200, [job], no_job, state),
        Operation("post", "/jobs/{job_id}/print", "printJob", "Print pick list and waybill: the "
                  "print gate", warehouse.PrintRequest, Job, 200, [job], no_job, state),
        Operation("post", "/jobs/{job_id}/pick", "pickJob", "Report the job picked",
                  warehouse.PickRequest, Job, 200, [job], no_job, state),
        Operation("post", "/jobs/{job_id}/pack", "packJob", "Report the job packed with weight "
                  "and packages, and what each package holds (SKU and quantity), checked "
                  "against the job", warehouse.PackRequest, Job, 200, [job], no_job,
                  state + "; `pack_mismatch`: the packages do not hold the job's items "
                  "(`details.differences`: sku, ordered, packed, kind wrong/extra/short); "
                  "nothing was recorded. Pack what the job lists, or send `ship_anyway` with "
                  "a `reason`: recorded, and customer service opens a wrong/short shipment "
                  "case"),
        Operation("post", "/jobs/{job_id}/ship", "shipJob", "Report packages handed to the "
                  "courier (idempotent on shipment_id)", warehouse.ShipRequest, Job, 200, [job],
                  no_job, state),
        Operation("post", "/jobs/{job_id}/changes/{change_id}/resolve", "resolveChange",
                  "Resolve an intercept request: intercepted (with reprint if needed) or "
                  "failed", warehouse.ResolveRequest, Job, 200, [job, change], no_job,
                  state + "; `unknown_change`, `change_not_open`"),
        Operation("get", "/changes", "changeFeed", "Your change feed, from a cursor", None,
                  warehouse.FeedPage, 200, [cursor, limit]),
        Operation("post", "/waves", "createWave", "Group accepted jobs into a wave, print them, "
                  "get the pick lists", waves.WaveRequest, waves.Wave, 201,
                  conflict="`wave_refused`: some jobs cannot be printed (`details.jobs`); "
                           "nothing was printed"),
        Operation("get", "/waves/{wave_id}", "getWave", "A wave with its pick and sort lists",
                  None, waves.Wave, 200, [wave], not_found="No such wave of yours"),
        Operation("put", "/sku-locations", "setSkuLocations", "Where SKUs sit on the shelves "
                  "(orders pick lists)", waves.SkuLocations, warehouse.SkuLocationsSaved, 200),
        Operation("post", "/returns", "registerReturn", "Register a received return "
                  "(idempotent on the return tracking number)", returns.ReturnReport,
                  returns.ReturnRecord, 201),
    ]


@cache
def warehouse_spec() -> dict[str, Any]:
    return _spec(WAREHOUSE, "Order backbone: warehouse partner API",
                 "Claim, accept, print, pick, pack and ship fulfilment jobs; follow and resolve "
                 "changes. Authenticate with your own key.", "your partner key",
                 _warehouse_operations())


# The customer-service API ---------------------------------------------------------------------


def _cs_operations() -> list[Operation]:
    from chalicelib.cs import queue
    from chalicelib.cs.alerts import Severity
    from chalicelib.cs.cases import Case
    from chalicelib.flows import (
        amendments,
        case_desk,
        complaints,
        order_lists,
        order_search,
        order_view,
        today,
    )

    class FoundOrders(RootModel[order_search.SearchResult | order_view.OrderView]):
        """?q= answers the search's hits; the other lookups answer the one order."""

    order, case = _path("order_id"), _path("case_id")
    cursor = _query("cursor", "next_cursor of the previous page of the same query, unchanged "
                    "(else 400 `invalid_cursor`)", _text(MAX_CURSOR))
    limit = _query("limit", f"page size (default {case_desk.DEFAULT_LIMIT}; a page may hold "
                   "fewer and still have a next_cursor)",
                   {"type": "integer", "minimum": 1, "maximum": case_desk.MAX_LIMIT})
    closed = "The order's job does not allow it now (`job_closed`, `details.current_state`)"
    return [
        Operation("get", "/orders/{order_id}", "getOrder", "An order: as received, as it is "
                  "now, its job, parcels, cases and timeline (read_only)", None,
                  order_view.OrderView, 200, [order], not_found="No such order"),
        Operation("get", "/orders", "findOrder", "Search orders (q: our order id, the "
                  "marketplace's order number, a tracking number without its carrier, or a "
                  "phone's last four digits, a name before or after them to narrow; a "
                  "SearchResult, newest first), or find one order by the marketplace's "
                  "identity (marketplace, shop, external_id) or by a parcel (carrier_code, "
                  "tracking_number) (read_only)", None, FoundOrders, 200, [
                      _query("q", "what was typed in the search box (at most "
                             f"{MAX_QUERY_CHARS} characters once normalised, else 400 "
                             "`invalid_query`)", _text(4 * MAX_QUERY_CHARS)),
                      _query("marketplace", "the marketplace", _text()),
                      _query("shop", "the shop on the marketplace", _text()),
                      _query("external_id", "the marketplace's order id", _text()),
                      _query("carrier_code", "the parcel's courier", _text()),
                      _query("tracking_number", "the parcel's tracking number", _text())],
                  not_found="No such order or parcel"),
        Operation("get", "/orders/lists/{list_name}", "listOrders", "The CS supervisor's "
                  "lists: orders in refund (requested or under way on the marketplace), in "
                  "dispute, or unpaid (created, not paid), longest on the list first, with "
                  "since when, the marketplace and the amount (read_only)", None,
                  order_lists.OrderList, 200, [
                      {"name": "list_name", "in": "path", "required": True,
                       "schema": {"type": "string", "enum": list(order_lists.NAMES)}},
                      cursor, limit],
                  not_found="No such list (`unknown_list`: refund, dispute or unpaid)"),
        Operation("post", "/orders/{order_id}/amendments", "amendOrder", "An appended, "
                  "attributed change: cancel, address, attributes, promise, courier "
                  "(`carrier_code`: a code or a courier's name; re-routed before print, "
                  "intercepted and relabelled after, refused with an order.courier_refused "
                  "case once shipped) "
                  "or note (back_office)", amendments.Amendment, amendments.Amended, 201,
                  [order], not_found="No such order", conflict=closed,
                  unprocessable="a courier change naming a courier we do not know "
                  "(`unknown_courier`, `details.known`) or one not offered for this parcel "
                  "(`courier_not_offered`, `details.offered`)"),
        Operation("post", "/orders/{order_id}/complaints", "complain", "A buyer's complaint "
                  "of a wrong item, too few, or a missing item: on the order's timeline, and a "
                  "case (shipment.wrong_items, shipment.short, shipment.missing_items; joins "
                  "the warehouse's own case about the job when one is open) (back_office)",
                  complaints.Complaint, complaints.Complained, 201, [order],
                  not_found="No such order"),
        Operation("get", "/cases", "listCases", "Open cases, oldest first (or most severe "
                  "first, newest first within a severity), or every case of an order "
                  "(read_only)", None, case_desk.CaseList, 200, [
                      _query("type", "one kind of problem", _text()),
                      _query("severity", "at least this bad",
                             {"type": "string", "enum": [s.value for s in Severity]}),
                      _query("marketplace", "open cases of this marketplace", _text()),
                      _query("carrier_code", "open cases of this courier", _text()),
                      _query("age", "open for: under 1 h (1h), 1 to 24 h (24h), 1 to 3 days "
                             "(3d), 3 days or more (older)",
                             {"type": "string", "enum": list(queue.AGE_NAMES)}),
                      _query("order", "oldest (default) or severity: most severe first, "
                             "newest first within a severity",
                             {"type": "string", "enum": list(case_desk.ORDERS)}),
                      _query("order_id", "every case of this order, open or not (only "
                             "severity, limit and cursor go with it)", _text()),
                      cursor, limit]),
        Operation("get", "/cases/{case_id}", "getCase", "A case with its history (read_only)",
                  None, Case, 200, [case], not_found="No such case"),
        Operation("post", "/cases/{case_id}/acknowledge", "acknowledgeCase", "I have it: stops "
                  "the reminders (back_office)", case_desk.AcknowledgeCaseRequest, Case, 200,
                  [case], not_found="No such case"),
        Operation("post", "/cases/{case_id}/resolve", "resolveCase", "Done, with a note saying "
                  "how; a refund.due task also with its outcome, refunded or not_needed (422 "
                  "`invalid_outcome` without one, or with one for another type) (back_office)",
                  case_desk.ResolveCaseRequest, Case, 200, [case], not_found="No such case"),
        Operation("get", "/today", "today", "The day at a glance: orders paid today (the "
                  "dispatch calendar's day) against each cut-off, offers not accepted within "
                  "the contract's time, intercepts waiting, parcels with open problems, open "
                  "cases by type, severity and age, notifications that failed or died today "
                  "(read_only)", None, today.TodayView, 200),
        Operation("get", "/notifications", "undeliveredNotifications", "Notifications no "
                  "channel took and alerts that never became a case (status=dead), or that "
                  "fell back to email (status=failed) (read_only)", None,
                  case_desk.Undelivered, 200, [
                      _query("status", "dead (default) or failed",
                             {"type": "string", "enum": ["dead", "failed"]}), cursor, limit]),
    ]


@cache
def cs_spec() -> dict[str, Any]:
    return _spec(CS, "Order backbone: customer-service API",
                 "Orders with their timeline, cases, amendments and undelivered notifications, "
                 "for customer service. Personal keys; roles read_only < back_office < admin "
                 "(each operation names the least it needs).", "a staff key",
                 _cs_operations())
