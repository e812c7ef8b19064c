"""POST /couriers/{provider}/push: tracking providers push parcel news here ({provider}: a name
in the chalicelib.tracking.couriers registry with an account; otherwise 404)."""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib.api import endpoint, raw_body
from chalicelib.core.clock import utcnow

bp = Blueprint(__name__)


@bp.route("/couriers/{provider}/push", methods=["POST"],
          content_types=["application/x-www-form-urlencoded", "application/json", "text/plain"])
@endpoint
def push(provider: str) -> Response:
    from chalicelib.flows import tracker

    request = bp.current_request
    reply = tracker.receive_push(provider, request.headers, raw_body(request), utcnow())
    return Response(body=reply.body, status_code=reply.status,
                    headers={"Content-Type": reply.content_type})
