"""/warehouse/v1: the factory's systems poll, claim, work and report here with their own key.

Services are imported inside the views: a webhook request should not load them. The OpenAPI
description (chalicelib/api/openapi.py) is kept in step with these routes by a test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice.app import Blueprint, Response

from chalicelib.api import endpoint, ok, raw_body
from chalicelib.core import observability
from chalicelib.core.clock import parse_iso, utcnow
from chalicelib.core.errors import ApiError

bp = Blueprint(__name__)


def _partner() -> str:
    from chalicelib.access import keys as auth
    from chalicelib.api.callers import authenticate

    partner = auth.require_partner(authenticate(bp.current_request))
    observability.tag(partner_id=partner)
    return partner


def _body(model: Any) -> Any:
    from chalicelib.api.callers import json_body

    return json_body(model, raw_body(bp.current_request))


def _id(value: str, what: str) -> str:
    from chalicelib.api.callers import path_id

    return path_id(value, what)


def _query() -> dict[str, str]:
    return dict(bp.current_request.query_params or {})


def _query_int(name: str, default: int, low: int, high: int) -> int:
    raw = _query().get(name)
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        raise ApiError(400, "invalid_query_parameter", f"{name} must be a number") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_query_parameter", f"{name} must be {low}-{high}")
    return value


def _job_step(job_id: str, model: Any, step: Callable[..., Any]) -> Response:
    partner = _partner()
    return ok(step(partner, _id(job_id, "job"), _body(model), utcnow()))


@bp.route("/warehouse/v1/openapi.json", methods=["GET"])
@endpoint
def openapi() -> Response:
    from chalicelib.api.openapi import warehouse_spec

    return ok(warehouse_spec())


@bp.route("/warehouse/v1/jobs/claim", methods=["POST"])
@endpoint
def claim() -> Response:
    from chalicelib.flows import warehouse

    partner = _partner()
    return ok(warehouse.claim(partner, _body(warehouse.ClaimRequest)))


@bp.route("/warehouse/v1/jobs", methods=["GET"])
@endpoint
def list_jobs() -> Response:
    from chalicelib.flows import warehouse

    partner = _partner()
    query = _query()
    try:
        since = parse_iso(query.get("updated_since", "1970-01-01T00:00:00Z"))
    except ValueError:
        raise ApiError(400, "invalid_query_parameter", "updated_since must be ISO 8601") from None
    return ok(warehouse.jobs_updated_since(partner, since, query.get("cursor"),
                                           _query_int("limit", 100, 1, 100)))


@bp.route("/warehouse/v1/jobs/{job_id}", methods=["GET"])
@endpoint
def get_job(job_id: str) -> Response:
    from chalicelib.flows import warehouse

    partner = _partner()
    return ok(warehouse.get_job(partner, _id(job_id, "job")))


@bp.route("/warehouse/v1/jobs/{job_id}/heartbeat", methods=["POST"])
@endpoint
def heartbeat(job_id: str) -> Response:
    from chalicelib.flows import warehouse

    return _job_step(job_id, warehouse.LeaseRequest, warehouse.heartbeat)


@bp.route("/warehouse/v1/jobs/{job_id}/release", methods=["POST"])
@endpoint
def release(job_id: str) -> Response:
    from chalicelib.flows import warehouse

    return _job_step(job_id, warehouse.LeaseRequest, warehouse.release)


@bp.route("/warehouse/v1/jobs/{job_id}/accept", methods=["POST"])
@endpoint
def accept(job_id: str) -> Response:
    from chalicelib.flows import warehouse

    return _job_step(job_id, warehouse.LeaseRequest, warehouse.accept)


@bp.route("/warehouse/v1/jobs/{job_id}/reject", methods=["POST"])
@endpoint
def reject(job_id: str) -> Response:
    from chalicelib.flows import warehouse

    return _job_step(job_id, warehouse.RejectRequest, warehouse.reject)


@bp.route("/warehouse/v1/jobs/{job_id}/print", methods=["POST"])
@endpoint
def print_job(job_id: str) -> Response:
    from chalicelib.flows import warehouse

    return _job_step(job_id, warehouse.PrintRequest, warehouse.print_labelled)


@bp.route("/warehouse/v1/jobs/{job_id}/pick", methods=["POST"])
@endpoint
def pick(job_id: str) -> Response:
    from chalicelib.flows import warehouse

    return _job_step(job_id, warehouse.PickRequest,
                     lambda partner, job, _request, now: warehouse.pick(partner, job, now))


@bp.route("/warehouse/v1/jobs/{job_id}/pack", methods=["POST"])
@endpoint
def pack(job_id: str) -> Response:
    from chalicelib.flows import warehouse

    return _job_step(job_id, warehouse.PackRequest, warehouse.pack)


@bp.route("/warehouse/v1/jobs/{job_id}/ship", methods=["POST"])
@endpoint
def ship(job_id: str) -> Response:
    from chalicelib.flows import warehouse

    return _job_step(job_id, warehouse.ShipRequest, warehouse.ship)


@bp.route("/warehouse/v1/jobs/{job_id}/changes/{change_id}/resolve", methods=["POST"])
@endpoint
def resolve_change(job_id: str, change_id: str) -> Response:
    from chalicelib.flows import warehouse

    partner = _partner()
    job_id = _id(job_id, "job")
    request = _body(warehouse.ResolveRequest)
    return ok(warehouse.resolve_change(partner, job_id, change_id, request, utcnow()))


@bp.route("/warehouse/v1/changes", methods=["GET"])
@endpoint
def changes() -> Response:
    from chalicelib.flows import warehouse

    partner = _partner()
    cursor = _query().get("cursor")
    return ok(warehouse.changes(partner, cursor, _query_int("limit", 100, 1, 100), utcnow()))


@bp.route("/warehouse/v1/waves", methods=["POST"])
@endpoint
def create_wave() -> Response:
    from chalicelib.flows import warehouse
    from chalicelib.warehouse import waves

    partner = _partner()
    return ok(warehouse.create_wave(partner, _body(waves.WaveRequest), utcnow()), status=201)


@bp.route("/warehouse/v1/waves/{wave_id}", methods=["GET"])
@endpoint
def get_wave(wave_id: str) -> Response:
    from chalicelib.flows import warehouse

    partner = _partner()
    return ok(warehouse.get_wave(partner, _id(wave_id, "wave")))


@bp.route("/warehouse/v1/sku-locations", methods=["PUT"])
@endpoint
def sku_locations() -> Response:
    from chalicelib.flows import warehouse
    from chalicelib.warehouse import waves

    partner = _partner()
    return ok(warehouse.set_sku_locations(partner, _body(waves.SkuLocations), utcnow()))


@bp.route("/warehouse/v1/returns", methods=["POST"])
@endpoint
def register_return() -> Response:
    from chalicelib.flows import warehouse
    from chalicelib.warehouse import returns

    partner = _partner()
    return ok(warehouse.register_return(partner, _body(returns.ReturnReport), utcnow()),
              status=201)
