"""/warehouse/v1: the factory's systems poll, claim and report here with their own API key.

Services are imported inside the views: a webhook request should not load them.
"""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib.api import endpoint, json_body, ok, raw_body
from chalicelib.timeutil import utcnow

bp = Blueprint(__name__)


def _partner() -> str:
    from chalicelib import auth

    return auth.require_partner(auth.authenticate(bp.current_request.headers))


@bp.route("/warehouse/v1/jobs/claim", methods=["POST"])
@endpoint
def claim() -> Response:
    from chalicelib import warehouse

    partner = _partner()
    request = json_body(warehouse.ClaimRequest, raw_body(bp.current_request))
    return ok(warehouse.claim(partner, request, utcnow()))


@bp.route("/warehouse/v1/jobs/{job_id}", methods=["GET"])
@endpoint
def get_job(job_id: str) -> Response:
    from chalicelib import warehouse

    return ok(warehouse.get_job(_partner(), job_id))


@bp.route("/warehouse/v1/jobs/{job_id}/ship", methods=["POST"])
@endpoint
def ship(job_id: str) -> Response:
    from chalicelib import warehouse
    from chalicelib.jobs import ShipReport

    partner = _partner()
    report = json_body(ShipReport, raw_body(bp.current_request))
    return ok(warehouse.ship(partner, job_id, report, utcnow()))
