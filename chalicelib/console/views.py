"""Each console page: what it reads (through the flows the CS API calls) and which template
shows it. A page is one visit in, one Response out."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from chalice.app import Response

from chalicelib.access import sessions
from chalicelib.access.keys import Role, hash_key
from chalicelib.console import web
from chalicelib.console.web import Visit, form_value, href
from chalicelib.core.clock import utcnow
from chalicelib.core.errors import ApiError, NotFound

QUEUE_PAGE = 50  # cases a queue page shows: a phone scrolls through it, a desk sees enough
FILTERS = ("type", "severity", "marketplace", "carrier", "age")


# Signing in and out ---------------------------------------------------------------------------

def sign_in_form(current: Visit, *, status: int = 200, failed: bool = False) -> Response:
    """The form, with a fresh CSRF token doubled in a short-lived cookie (no session yet)."""
    token = sessions.new_csrf()
    current.set_cookies.append(sessions.set_cookie(
        sessions.SIGN_IN_COOKIE, token, sessions.SIGN_IN_SECONDS, path=web.root() or "/"))
    return current.page("sign_in.html", status=status, sign_in_csrf=token, failed=failed,
                        next=web.safe_next(current.query.get("next")))


def sign_in(current: Visit) -> Response:
    from chalicelib.access import directory_store, session_store
    from chalicelib.api.callers import source_address
    from chalicelib.core import ratelimit

    fields = current.form()
    if not sessions.same_token(current.cookies.get(sessions.SIGN_IN_COOKIE, ""),
                               fields.get("csrf_token")):
        raise ApiError(403, "csrf_failed", "the sign-in form is stale: reload it")
    address = source_address(current.request)
    ratelimit.check_failures(address)
    key = form_value(fields, "key", 200)
    key_hash = hash_key(key)
    principal = directory_store.known_principal(key_hash) if key else None
    if principal is None or principal.kind != "staff":
        ratelimit.record_failure(address)
        return sign_in_form(current, status=401, failed=True)
    token, session = sessions.open_session(principal, key_hash, utcnow(),
                                           web.session_lifetime())
    session_store.put(session)
    lifetime = int(web.session_lifetime().total_seconds())
    current.set_cookies += [
        sessions.set_cookie(sessions.SESSION_COOKIE, token, lifetime, path=web.root() or "/"),
        sessions.end_cookie(sessions.SIGN_IN_COOKIE, path=web.root() or "/")]
    return current.redirect(web.safe_next(fields.get("next")))


def sign_out(current: Visit) -> Response:
    from chalicelib.access import session_store

    if current.session is not None:
        session_store.end(current.session.token_hash)
    current.set_cookies.append(sessions.end_cookie(sessions.SESSION_COOKIE,
                                                   path=web.root() or "/"))
    return current.redirect(href("/console/sign-in"))


# Cases ----------------------------------------------------------------------------------------

def cases(current: Visit) -> Response:
    from chalicelib.flows import case_desk

    chosen = {name: current.query[name] for name in FILTERS if current.query.get(name)}
    # The console's `carrier` is the API's `carrier_code`: one list, one set of rules.
    query = {("carrier_code" if name == "carrier" else name): value
             for name, value in chosen.items()}
    query |= {"limit": str(QUEUE_PAGE), "order": "severity"}
    if current.query.get("cursor"):
        query["cursor"] = current.query["cursor"]
    now = utcnow()
    found, open_counts = case_desk.queue_page(query, now)
    counts = open_counts.model_dump(mode="json")
    return current.page("cases.html", cases=found["cases"], next_cursor=found["next_cursor"],
                        chosen=chosen, counts=counts, back=_back(current),
                        choices=_choices(counts, chosen))


def _choices(counts: dict[str, Any], chosen: dict[str, str]) -> dict[str, list[str]]:
    """What each filter offers: the open cases' types, the marketplaces and couriers we know
    (and whatever a link chose, so it shows as chosen)."""
    from chalicelib.marketplaces import known_schemes
    from chalicelib.warehouse.carriers import Carrier

    def with_chosen(values: list[str], name: str) -> list[str]:
        extra = chosen.get(name)
        return [*values, extra] if extra and extra not in values else values

    return {"type": with_chosen(sorted(counts["by_type"]), "type"),
            "marketplace": with_chosen(sorted(known_schemes()), "marketplace"),
            "carrier": with_chosen([c.value for c in Carrier], "carrier")}


def case(current: Visit, case_id: str) -> Response:
    from chalicelib.cs import templates as messages
    from chalicelib.flows import case_desk, order_view

    found = case_desk.get_case(case_id)
    order = None
    if found.get("order_id"):
        try:
            order = order_view.order_view(found["order_id"])
        except NotFound:
            order = None
    template = messages.template_for(found["type"])
    return current.page("case.html", case=found, order=order,
                        what=template.what[current.language], todo=template.todo[current.language],
                        back=_back(current))


def case_action(current: Visit, case_id: str, action: str) -> Response:
    from chalicelib.flows import case_desk

    fields = current.form()
    staff = current.session.staff_id if current.session else ""
    note = form_value(fields, "note")
    if action == "resolve":
        if not note:
            raise ApiError(422, "note_required", "say how the case was resolved")
        outcome = form_value(fields, "outcome", 32) or None
        case_desk.resolve(case_id, f"cs {staff}",
                          case_desk.ResolveCaseRequest(note=note, outcome=outcome), utcnow())
    else:
        case_desk.acknowledge(case_id, f"cs {staff}",
                              case_desk.AcknowledgeCaseRequest(note=note), utcnow())
    return current.redirect(web.safe_next(fields.get("back"))
                            if fields.get("back") else href(f"/console/cases/{quote(case_id)}"))


def _back(current: Visit) -> str:
    """This page's own address, for a form to come back to."""
    path = href(current.request.context.get("path", "/console/cases"))
    query = {k: v for k, v in current.query.items() if k != "lang"}
    from chalicelib.console.render import query_string

    return path + query_string(query)


# Orders ---------------------------------------------------------------------------------------

def search(current: Visit) -> Response:
    from chalicelib.flows import order_search

    text = current.query.get("q", "").strip()
    if not text:
        return current.page("orders.html", hits=[], q="", searched=False)
    try:
        result = order_search.search(text)
    except ApiError as error:  # the box's text, not a fault: say what it takes, keep the box
        if error.status != 400:
            raise
        return current.page("orders.html", status=400, hits=[], q=text, searched=False,
                            problem=error)
    hits = [hit.model_dump(mode="json") for hit in result.hits]
    if len(hits) == 1:
        return current.redirect(href(f"/console/orders/{quote(hits[0]['order_id'])}"))
    return current.page("orders.html", hits=hits, q=text, searched=True)


def order(current: Visit, order_id: str) -> Response:
    from chalicelib.flows import order_view
    from chalicelib.warehouse.jobs import Work, change_outcome

    view = order_view.order_view(order_id)
    job = view["job"]
    outcome = change_outcome(Work(job["work"])) if job else "applied"
    couriers = courier_choices(job)
    return current.page("order.html", view=view, job=job, outcome=outcome, couriers=couriers,
                        can_amend=current.session is not None
                        and current.session.can(Role.BACK_OFFICE),
                        done=current.query.get("outcome"), done_kind=current.query.get("kind"))


def courier_choices(job: dict[str, Any] | None) -> list[str]:
    """The couriers CS may pick for this parcel (the API refuses others: 422
    courier_not_offered): the offered ones, and the international courier for one abroad."""
    from chalicelib.warehouse.jobs import protocol_rules
    from chalicelib.warehouse.regions import Region

    rules = protocol_rules().carriers
    region = Region(job["carrier"]["region"]) if job and job.get("carrier") else None
    return [carrier.value for carrier in rules.choosable()
            if region is None or rules.offered(carrier, region)]


AMEND_KINDS = ("cancel", "address", "attributes", "promise", "courier", "note")
ADDRESS_FIELDS = ("name", "phone", "province", "city", "line1", "line2", "postal_code")


def amendment_of(fields: dict[str, str]) -> dict[str, Any]:
    """The amendment a form describes, as the CS API's body would (validated by its model)."""
    kind = fields.get("kind", "")
    if kind not in AMEND_KINDS:
        raise ApiError(400, "invalid_form", f"kind is one of {', '.join(AMEND_KINDS)}")
    body: dict[str, Any] = {"kind": kind, "reason": form_value(fields, "reason", 1000)}
    if kind == "address":
        body["address"] = {name: form_value(fields, name, 500) for name in ADDRESS_FIELDS}
        body["address"]["country_code"] = form_value(fields, "country_code", 8) or "CN"
    elif kind == "promise":
        body["promise"] = {"kind": fields.get("promise_kind", "note"),
                           "text": form_value(fields, "promise_text", 500)}
    elif kind == "attributes":
        body["lines"] = _lines(fields)
    elif kind == "courier":
        body["carrier_code"] = form_value(fields, "carrier_code", 64)
    return body


def _lines(fields: dict[str, str]) -> list[dict[str, Any]]:
    lines = []
    for index in range(200):
        sku = form_value(fields, f"sku_{index}", 128)
        if not sku:
            break
        quantity = fields.get(f"quantity_{index}", "")
        if not quantity.isdigit():
            raise ApiError(400, "invalid_form", "a quantity is a whole number")
        lines.append({"sku": sku, "variant": form_value(fields, f"variant_{index}", 200),
                      "line_id": form_value(fields, f"line_id_{index}", 64),
                      "quantity": int(quantity)})
    return lines


def amend(current: Visit, order_id: str) -> Response:
    """First post: what will happen at the job's stage (nothing changes yet). Confirmed: the
    amendment, and the order page with its outcome."""
    from chalicelib.core.signatures import validate_payload
    from chalicelib.flows import amendments, order_view
    from chalicelib.warehouse.jobs import Work, change_outcome

    fields = current.form()
    body = amendment_of(fields)
    amendment = validate_payload(amendments.Amendment, body)
    if fields.get("confirm") != "yes":
        view = order_view.order_view(order_id)
        job = view["job"]
        outcome = "noted" if amendment.kind == "note" else (
            change_outcome(Work(job["work"])) if job else "no_job")
        return current.page("amend_preview.html", view=view, job=job, outcome=outcome,
                            amendment=body, fields={k: v for k, v in fields.items()
                                                    if k not in ("csrf_token", "confirm")})
    staff = current.session.staff_id if current.session else ""
    done = amendments.amend(order_id, amendment, staff, utcnow())
    change = done.get("change")
    result = change["status"] if change else ("noted" if amendment.kind == "note" else "applied")
    return current.redirect(href(f"/console/orders/{quote(order_id)}")
                            + f"?outcome={result}&kind={amendment.kind}")


def complaint_of(fields: dict[str, str]) -> dict[str, Any]:
    """The complaint a form describes, as the CS API's body would (validated by its model)."""
    body: dict[str, Any] = {"kind": fields.get("kind", ""),
                            "note": form_value(fields, "note", 1000)}
    sku = form_value(fields, "sku", 255)
    if sku:
        quantity = fields.get("quantity", "1").strip() or "1"
        if not quantity.isdigit():
            raise ApiError(400, "invalid_form", "a quantity is a whole number")
        body["items"] = [{"sku": sku, "quantity": int(quantity)}]
    return body


def complaint(current: Visit, order_id: str) -> Response:
    """A buyer's complaint of wrong, short or missing items: recorded at once (it changes
    nothing on the order or the job, so there is nothing to preview), then the order page."""
    from chalicelib.core.signatures import validate_payload
    from chalicelib.flows import complaints

    complained = validate_payload(complaints.Complaint, complaint_of(current.form()))
    staff = current.session.staff_id if current.session else ""
    complaints.complain(order_id, complained, staff, utcnow())
    return current.redirect(href(f"/console/orders/{quote(order_id)}")
                            + f"?outcome=complaint&kind={complained.kind}")


# The supervisor's lists ---------------------------------------------------------------------

def lists(current: Visit) -> Response:
    """One list at a time (?list=refund, the default, dispute or unpaid), a page of QUEUE_PAGE,
    through the CS API's flow: the tabs link the three."""
    from chalicelib.flows import order_lists

    name = current.query.get("list") or order_lists.NAMES[0]
    query = {"limit": str(QUEUE_PAGE)}
    if current.query.get("cursor"):
        query["cursor"] = current.query["cursor"]
    found = order_lists.work_list(name, query)
    return current.page("lists.html", chosen=name, names=order_lists.NAMES,
                        orders=found["orders"], next_cursor=found["next_cursor"])


# Today ----------------------------------------------------------------------------------------

def today(current: Visit) -> Response:
    from markupsafe import Markup

    from chalicelib.console.i18n import word
    from chalicelib.cs import templates as messages
    from chalicelib.flows import today as today_flow

    view = today_flow.today(utcnow())
    words = {key: word(key, current.language) for key in CHART_WORDS}
    words |= {kind: messages.label(kind, current.language) for kind in view.open_cases.by_type}
    pictures = today_flow.charts_of(view, words)
    # Each chart is a whole <svg> whose every text charts.py escaped: shown as markup.
    charts = {name: Markup(svg) for name, svg in pictures.model_dump().items()}
    return current.page("today.html", today=view.model_dump(mode="json"), charts=charts)


CHART_WORDS = ("on_time", "late", "overdue", "to_go", "closed", "later", "dispatch",
               "cases_by_type", "cases_by_age", "parcels_by_carrier", "1h", "24h", "3d",
               "older")
