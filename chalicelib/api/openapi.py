"""The OpenAPI 3 description of the warehouse API, built from the same pydantic models the
handlers validate with; a test checks that it names exactly the routes the app serves."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chalicelib.flows import warehouse
from chalicelib.warehouse import returns, waves
from chalicelib.warehouse.jobs import Job

BASE = "/warehouse/v1"
_JOB = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
_CHANGE = {"name": "change_id", "in": "path", "required": True, "schema": {"type": "string"}}
_WAVE = {"name": "wave_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


# (method, path, operation id, summary, request model, response model, status, parameters)
OPERATIONS: list[tuple[str, str, str, str, type[BaseModel] | None, type[BaseModel], int,
                       list[dict[str, Any]]]] = [
    ("post", "/jobs/claim", "claimJobs", "Claim offered jobs under a lease (long poll with "
     "wait_seconds)", warehouse.ClaimRequest, warehouse.Claimed, 200, []),
    ("get", "/jobs", "listJobs", "Jobs updated since a time, for a partner that lost its state",
     None, warehouse.JobPage, 200, [
         _query("updated_since", "ISO 8601 time", {"type": "string", "format": "date-time"}),
         _query("cursor", "next_cursor of the previous page", {"type": "string"}),
         _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 100})]),
    ("get", "/jobs/{job_id}", "getJob", "One of your jobs", None, Job, 200, [_JOB]),
    ("post", "/jobs/{job_id}/heartbeat", "extendLease", "Extend the lease on an offer",
     warehouse.LeaseRequest, Job, 200, [_JOB]),
    ("post", "/jobs/{job_id}/release", "releaseLease", "Give an offer back before the lease ends",
     warehouse.LeaseRequest, Job, 200, [_JOB]),
    ("post", "/jobs/{job_id}/accept", "acceptJob", "Accept the whole job (needs a live lease)",
     warehouse.LeaseRequest, Job, 200, [_JOB]),
    ("post", "/jobs/{job_id}/reject", "rejectJob", "Reject the whole job with a reason",
     warehouse.RejectRequest, Job, 200, [_JOB]),
    ("post", "/jobs/{job_id}/print", "printJob", "Print pick list and waybill: the print gate",
     warehouse.PrintRequest, Job, 200, [_JOB]),
    ("post", "/jobs/{job_id}/pick", "pickJob", "Report the job picked", warehouse.PickRequest,
     Job, 200, [_JOB]),
    ("post", "/jobs/{job_id}/pack", "packJob", "Report the job packed with weight and packages",
     warehouse.PackRequest, Job, 200, [_JOB]),
    ("post", "/jobs/{job_id}/ship", "shipJob", "Report packages handed to the courier "
     "(idempotent on shipment_id)", warehouse.ShipRequest, Job, 200, [_JOB]),
    ("post", "/jobs/{job_id}/changes/{change_id}/resolve", "resolveChange",
     "Resolve an intercept request: intercepted (with reprint if needed) or failed",
     warehouse.ResolveRequest, Job, 200, [_JOB, _CHANGE]),
    ("get", "/changes", "changeFeed", "Your change feed, from a cursor", None,
     warehouse.FeedPage, 200, [
         _query("cursor", "next_cursor of the previous page", {"type": "string"}),
         _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 100})]),
    ("post", "/waves", "createWave", "Group accepted jobs into a wave, print them, get the pick "
     "lists", waves.WaveRequest, waves.Wave, 201, []),
    ("get", "/waves/{wave_id}", "getWave", "A wave with its pick and sort lists", None,
     waves.Wave, 200, [_WAVE]),
    ("put", "/sku-locations", "setSkuLocations", "Where SKUs sit on the shelves (orders pick "
     "lists)", waves.SkuLocations, warehouse.SkuLocationsSaved, 200, []),
    ("post", "/returns", "registerReturn", "Register a received return (idempotent on the "
     "return tracking number)", returns.ReturnReport, returns.ReturnRecord, 201, []),
]

_ERRORS = {
    "400": "Malformed request (reason in `error`)",
    "401": "Missing or unknown API key",
    "403": "Not a partner key",
    "404": "No such job of yours",
    "409": "Not allowed in the job's current state (`details.current_state`)",
    "422": "Request failed validation (`details.problems`)",
    "429": "Too many requests: wait `Retry-After` seconds",
}


class Error(BaseModel):
    error: str
    message: str
    details: dict[str, Any] | None = None


@cache
def warehouse_spec() -> dict[str, Any]:
    models = {Error, *(op[4] for op in OPERATIONS if op[4]), *(op[5] for op in OPERATIONS)}
    keyed = [(model, mode) for model in models for mode in ("validation", "serialization")]
    refs, defs = models_json_schema(keyed, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    paths: dict[str, dict[str, Any]] = {}
    for method, path, op_id, summary, request, response, status, parameters in OPERATIONS:
        operation: dict[str, Any] = {
            "operationId": op_id, "summary": summary, "parameters": parameters,
            "responses": {str(status): {"description": "OK", "content": {"application/json": {
                "schema": refs[(response, "serialization")]}}},
                **{code: {"description": text, "content": {"application/json": {
                    "schema": refs[(Error, "serialization")]}}} for code, text in _ERRORS.items()}},
        }
        if request is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": refs[(request, "validation")]}}}
        paths.setdefault(BASE + path, {})[method] = operation
    paths[BASE + "/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "This description", "security": [],
        "responses": {"200": {"description": "OpenAPI 3 document"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Order backbone: warehouse partner API", "version": "1.0.0",
                 "description": "Claim, accept, print, pick, pack and ship fulfilment jobs; "
                                "follow and resolve changes. Authenticate with your own key."},
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}), "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer",
                       "description": "Authorization: Bearer <your partner key>"}}},
    }
