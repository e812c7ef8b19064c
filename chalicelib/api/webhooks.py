"""POST /webhooks/{source}: marketplaces notify us here."""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib.api import endpoint, ok, raw_body
from chalicelib.core.clock import utcnow
from chalicelib.flows import intake as webhooks

bp = Blueprint(__name__)


@bp.route("/webhooks/{source}", methods=["POST"],
          content_types=["application/json", "text/plain", "application/x-www-form-urlencoded"])
@endpoint
def receive(source: str) -> Response:
    request = bp.current_request
    answer = webhooks.receive(source, request.headers, raw_body(request), utcnow())
    reply = webhooks.reply_for(source)
    if reply is None:
        return ok(answer)
    status, content_type, body = reply
    return Response(body=body, status_code=status, headers={"Content-Type": content_type})
