"""/console: the CS console's routes, a few lines each (chalicelib/console/views.py has the
pages). Every page but sign-in needs a session; every action needs back_office and the
session's CSRF token (chalicelib/console/web.py `signed_in`); importing a courier bill needs
admin.

The views, Jinja2 and the templates are imported by the console's routes only, when first
served: a webhook's cold start loads none of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec

from chalice.app import Blueprint, Response

from chalicelib.api import guarded
from chalicelib.core.errors import ApiError

if TYPE_CHECKING:
    from chalicelib.console.web import Visit

bp = Blueprint(__name__)
FORM = ["application/x-www-form-urlencoded"]
# A file's form (a courier bill). app.py lists it among API Gateway's binary media types, so
# the file's bytes arrive intact (chalicelib/console/uploads.py).
UPLOAD = ["multipart/form-data"]
STYLE = Path(__file__).with_name("static") / "console.css"
BACK_OFFICE = "back_office"
ADMIN = "admin"  # importing a bill writes each parcel's actual fee: the supervisor's key
P = ParamSpec("P")


def _error_page(error: ApiError) -> Response:
    from chalicelib.console import web

    return web.error_page(error)


def page(view: Callable[P, Response]) -> Callable[P, Response]:
    """A console route: its errors as a page in the visitor's language (a missing session as a
    redirect to the sign-in page)."""
    return guarded(_error_page)(view)


def signed_in(role: str = "read_only") -> Visit:
    from chalicelib.access.keys import Role
    from chalicelib.console import web

    return web.signed_in(bp.current_request, Role(role))


def visit() -> Visit:
    from chalicelib.console import web

    return web.visit(bp.current_request)


def path_id(value: str, what: str) -> str:
    from chalicelib.api.callers import path_id as checked

    return checked(value, what)


def href(path: str) -> str:
    from chalicelib.console import web

    return web.href(path)


@bp.route("/console", methods=["GET"])
@page
def home() -> Response:
    return signed_in().redirect(href("/console/cases"))


@bp.route("/console/static/console.css", methods=["GET"])
def style() -> Response:
    return Response(body=STYLE.read_text(encoding="utf-8"), status_code=200, headers={
        "Content-Type": "text/css; charset=utf-8", "Cache-Control": "public, max-age=3600",
        "X-Content-Type-Options": "nosniff"})


@bp.route("/console/sign-in", methods=["GET"])
@page
def sign_in_form() -> Response:
    from chalicelib.console import views

    return views.sign_in_form(visit())


@bp.route("/console/sign-in", methods=["POST"], content_types=FORM)
@page
def sign_in() -> Response:
    from chalicelib.console import views

    return views.sign_in(visit())


@bp.route("/console/sign-out", methods=["POST"], content_types=FORM)
@page
def sign_out() -> Response:
    from chalicelib.console import views

    return views.sign_out(signed_in())


@bp.route("/console/cases", methods=["GET"])
@page
def cases() -> Response:
    from chalicelib.console import views

    return views.cases(signed_in())


@bp.route("/console/cases/{case_id}", methods=["GET"])
@page
def case(case_id: str) -> Response:
    from chalicelib.console import views

    return views.case(signed_in(), path_id(case_id, "case"))


@bp.route("/console/cases/{case_id}/acknowledge", methods=["POST"], content_types=FORM)
@page
def acknowledge(case_id: str) -> Response:
    from chalicelib.console import views

    current = signed_in(BACK_OFFICE)
    return views.case_action(current, path_id(case_id, "case"), "acknowledge")


@bp.route("/console/cases/{case_id}/resolve", methods=["POST"], content_types=FORM)
@page
def resolve(case_id: str) -> Response:
    from chalicelib.console import views

    current = signed_in(BACK_OFFICE)
    return views.case_action(current, path_id(case_id, "case"), "resolve")


@bp.route("/console/orders", methods=["GET"])
@page
def search() -> Response:
    from chalicelib.console import views

    return views.search(signed_in())


@bp.route("/console/orders/{order_id}", methods=["GET"])
@page
def order(order_id: str) -> Response:
    from chalicelib.console import views

    return views.order(signed_in(), path_id(order_id, "order"))


@bp.route("/console/orders/{order_id}/amend", methods=["POST"], content_types=FORM)
@page
def amend(order_id: str) -> Response:
    from chalicelib.console import views

    current = signed_in(BACK_OFFICE)
    return views.amend(current, path_id(order_id, "order"))


@bp.route("/console/orders/{order_id}/complaint", methods=["POST"], content_types=FORM)
@page
def complaint(order_id: str) -> Response:
    from chalicelib.console import views

    current = signed_in(BACK_OFFICE)
    return views.complaint(current, path_id(order_id, "order"))


@bp.route("/console/lists", methods=["GET"])
@page
def lists() -> Response:
    from chalicelib.console import views

    return views.lists(signed_in())


@bp.route("/console/today", methods=["GET"])
@page
def today() -> Response:
    from chalicelib.console import views

    return views.today(signed_in())


@bp.route("/console/reports", methods=["GET"])
@page
def reports() -> Response:
    from chalicelib.console import report_pages

    return report_pages.choose(signed_in())


@bp.route("/console/reports/{kind}/{day}", methods=["GET"])
@page
def report(kind: str, day: str) -> Response:
    from chalicelib.console import report_pages

    return report_pages.report(signed_in(), kind, day)


@bp.route("/console/reports/{kind}/{day}/csv", methods=["GET"])
@page
def report_csv(kind: str, day: str) -> Response:
    from chalicelib.console import report_pages

    return report_pages.report_csv(signed_in(), kind, day)


@bp.route("/console/bills", methods=["GET"])
@page
def bills() -> Response:
    from chalicelib.console import bill_pages

    return bill_pages.bills(signed_in())


@bp.route("/console/bills", methods=["POST"], content_types=UPLOAD)
@page
def import_bill() -> Response:
    from chalicelib.console import bill_pages

    return bill_pages.import_bill(signed_in(ADMIN))


@bp.route("/console/bills/{bill_id}", methods=["GET"])
@page
def bill(bill_id: str) -> Response:
    from chalicelib.console import bill_pages

    return bill_pages.bill(signed_in(), path_id(bill_id, "bill"))
