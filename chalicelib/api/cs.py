"""/cs/v1: customer service reads orders with their full timeline (personal API keys).

Services are imported inside the views: a webhook request should not load them. The OpenAPI
description (chalicelib/api/openapi.py) is kept in step with these routes by a test.
"""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib.api import endpoint, ok, raw_body
from chalicelib.core.clock import utcnow
from chalicelib.core.errors import ApiError
from chalicelib.core.signatures import M

bp = Blueprint(__name__)


def _staff(role: str = "read_only") -> str:
    from chalicelib.access import keys as auth
    from chalicelib.api.callers import authenticate

    return auth.require_staff(authenticate(bp.current_request), auth.Role(role)).id


def _id(value: str, what: str) -> str:
    from chalicelib.api.callers import path_id

    return path_id(value, what)


def _body(model: type[M]) -> M:
    from chalicelib.api.callers import json_body

    return json_body(model, raw_body(bp.current_request))


def _query() -> dict[str, str]:
    """The query; the values used as keys (ids, tracking numbers, types) length-checked."""
    from chalicelib.api.callers import query_value

    query = dict(bp.current_request.query_params or {})
    for name in ("order_id", "type", "carrier_code", "tracking_number", "marketplace"):
        query_value(query, name, "invalid_query")
    return query


@bp.route("/cs/v1/openapi.json", methods=["GET"])
@endpoint
def openapi() -> Response:
    """No key needed, as for the warehouse's: it holds the contract, no data and no secret
    (security rests on the keys, not on hiding the routes), it is built in the process with no
    storage call, so it can neither probe keys nor load the store, and tools (generators,
    fuzzers, Swagger UI) read it without credentials."""
    from chalicelib.api.openapi import cs_spec

    return ok(cs_spec())


@bp.route("/cs/v1/orders/{order_id}", methods=["GET"])
@endpoint
def get_order(order_id: str) -> Response:
    from chalicelib.flows import order_view

    _staff()
    return ok(order_view.order_view(_id(order_id, "order")))


@bp.route("/cs/v1/orders", methods=["GET"])
@endpoint
def find_order() -> Response:
    """?q=: the console's search box (our id, the marketplace's order number, a tracking
    number, a phone's last four digits with or without a name): the hits, newest first.
    Or one order by the marketplace's identity (?marketplace=&shop=&external_id=) or by a
    parcel (?carrier_code=&tracking_number=, what a buyer on the phone reads out)."""
    from chalicelib.flows import order_search, order_view

    _staff()
    query = _query()
    if "q" in query:
        return ok(order_search.search(query["q"]).model_dump(mode="json"))
    if query.get("tracking_number"):
        return ok(order_view.order_view(order_view.order_of_parcel(
            query.get("carrier_code", ""), query["tracking_number"])))
    missing = [k for k in ("marketplace", "shop", "external_id") if not query.get(k)]
    if missing:
        raise ApiError(400, "missing_query_parameters", "marketplace, shop and external_id "
                       "identify an order", missing=missing)
    order_id = order_view.find_order_id(query["marketplace"], query["shop"], query["external_id"])
    return ok(order_view.order_view(order_id))


@bp.route("/cs/v1/orders/lists/{list_name}", methods=["GET"])
@endpoint
def list_orders(list_name: str) -> Response:
    """The CS supervisor's lists: refund, dispute, unpaid (?limit=, ?cursor=)."""
    from chalicelib.flows import order_lists

    _staff()
    return ok(order_lists.work_list(list_name, _query()))


@bp.route("/cs/v1/orders/{order_id}/amendments", methods=["POST"])
@endpoint
def amend_order(order_id: str) -> Response:
    """An added, attributed change: cancel, address, attributes, promise or note."""
    from chalicelib.flows import amendments

    staff = _staff("back_office")
    order_id = _id(order_id, "order")
    amendment = _body(amendments.Amendment)
    return ok(amendments.amend(order_id, amendment, staff, utcnow()), status=201)


@bp.route("/cs/v1/orders/{order_id}/complaints", methods=["POST"])
@endpoint
def complain(order_id: str) -> Response:
    """Back office: a buyer says the parcel held a wrong item, too few, or missed one: on the
    order's timeline and a CS case (chalicelib/flows/complaints.py)."""
    from chalicelib.flows import complaints

    staff = _staff("back_office")
    order_id = _id(order_id, "order")
    complaint = _body(complaints.Complaint)
    return ok(complaints.complain(order_id, complaint, staff, utcnow()), status=201)


@bp.route("/cs/v1/cases", methods=["GET"])
@endpoint
def open_cases() -> Response:
    """Open cases, oldest first (?order=severity: most severe first, newest first within a
    severity); ?type= one kind of problem, ?severity= at least this bad, ?marketplace=,
    ?carrier_code=, ?age= 1h|24h|3d|older (how long open); ?order_id= every case of one order
    (open or not). A page at a time: ?limit=, ?cursor=."""
    from chalicelib.flows import case_desk

    _staff()
    return ok(case_desk.list_cases(_query(), utcnow()))


@bp.route("/cs/v1/cases/{case_id}", methods=["GET"])
@endpoint
def get_case(case_id: str) -> Response:
    from chalicelib.flows import case_desk

    _staff()
    return ok(case_desk.get_case(_id(case_id, "case")))


@bp.route("/cs/v1/cases/{case_id}/acknowledge", methods=["POST"])
@endpoint
def acknowledge_case(case_id: str) -> Response:
    """Back office: "I have it" (stops the reminders)."""
    from chalicelib.flows import case_desk

    staff = _staff("back_office")
    case_id = _id(case_id, "case")
    request = _body(case_desk.AcknowledgeCaseRequest)
    return ok(case_desk.acknowledge(case_id, f"cs {staff}", request, utcnow()))


@bp.route("/cs/v1/cases/{case_id}/resolve", methods=["POST"])
@endpoint
def resolve_case(case_id: str) -> Response:
    """Back office: done, with a note saying how."""
    from chalicelib.flows import case_desk

    staff = _staff("back_office")
    case_id = _id(case_id, "case")
    request = _body(case_desk.ResolveCaseRequest)
    return ok(case_desk.resolve(case_id, f"cs {staff}", request, utcnow()))


@bp.route("/cs/v1/today", methods=["GET"])
@endpoint
def today() -> Response:
    """The manager's day at a glance: dispatch against the cut-offs, the factory's unaccepted
    offers and open intercepts, parcels with open problems, open cases, undelivered
    notifications (chalicelib/flows/today.py)."""
    from chalicelib.flows import today as dashboard

    _staff()
    return ok(dashboard.today(utcnow()))


@bp.route("/cs/v1/notifications", methods=["GET"])
@endpoint
def undelivered() -> Response:
    """?status=dead (default): notifications no channel took, and alerts that never became a
    case; ?status=failed: notifications that fell back to email. A page at a time: ?limit=,
    ?cursor=."""
    from chalicelib.flows import case_desk

    _staff()
    return ok(case_desk.undelivered(dict(bp.current_request.query_params or {})))
