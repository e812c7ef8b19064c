"""/cs/v1: customer service reads orders with their full timeline (personal API keys).

Services are imported inside the views: a webhook request should not load them.
"""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib.api import endpoint, ok
from chalicelib.errors import ApiError

bp = Blueprint(__name__)


def _staff() -> None:
    from chalicelib import auth

    auth.require_staff(auth.authenticate(bp.current_request.headers), auth.Role.READ_ONLY)


@bp.route("/cs/v1/orders/{order_id}", methods=["GET"])
@endpoint
def get_order(order_id: str) -> Response:
    from chalicelib import order_view

    _staff()
    return ok(order_view.order_view(order_id))


@bp.route("/cs/v1/orders", methods=["GET"])
@endpoint
def find_order() -> Response:
    """Look an order up by the marketplace's identity: ?marketplace=&shop=&external_id=."""
    from chalicelib import order_view

    _staff()
    query = dict(bp.current_request.query_params or {})
    missing = [k for k in ("marketplace", "shop", "external_id") if not query.get(k)]
    if missing:
        raise ApiError(400, "missing_query_parameters", "marketplace, shop and external_id "
                       "identify an order", missing=missing)
    order_id = order_view.find_order_id(query["marketplace"], query["shop"], query["external_id"])
    return ok(order_view.order_view(order_id))
