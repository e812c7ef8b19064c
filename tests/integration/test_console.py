"""The CS console over the app in process: sessions, CSRF, roles, escaping, and the pages
reading and changing through the same flows as the CS API. (The browser tests in
tests/browser drive the same pages in Chromium.)"""

from __future__ import annotations

import html
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from chalice.test import Client

from chalicelib.access.keys import Role
from chalicelib.orders.order import order_id_for
from tests.integration.flow import process
from tests.support import SHOP, dumps, shopify_headers, shopify_order

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Person:
    """A browser's part, as the test client plays it: cookies kept, forms posted."""

    client: Client
    cookies: dict[str, str] = field(default_factory=dict)

    def _keep(self, response: Any) -> Any:
        found = response.headers.get("Set-Cookie") or response.headers.get("set-cookie") or []
        for line in [found] if isinstance(found, str) else found:
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in line:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return response

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return {**({"Cookie": cookie} if cookie else {}), **(extra or {})}

    def get(self, path: str) -> Any:
        return self._keep(self.client.http.get(path, headers=self._headers()))

    def post(self, path: str, fields: dict[str, str]) -> Any:
        return self._keep(self.client.http.post(path, headers=self._headers(FORM),
                                                body=urlencode(fields)))

    def sign_in(self, key: str) -> Any:
        form = self.get("/console/sign-in")
        token = hidden(form.body.decode(), "csrf_token")
        return self.post("/console/sign-in", {"csrf_token": token, "key": key,
                                              "next": "/console/cases"})

    def csrf(self, path: str = "/console/cases") -> str:
        return hidden(self.get(path).body.decode(), "csrf_token")


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no {name} in the page"
    return html.unescape(found.group(1))


def text(response: Any) -> str:
    return str(response.body.decode())


@pytest.fixture
def person(client: Client) -> Person:
    return Person(client)


@pytest.fixture
def back_office(make_key: Any) -> str:
    return str(make_key("staff", f"bo-{uuid.uuid4().hex[:6]}", Role.BACK_OFFICE))


@pytest.fixture
def read_only(make_key: Any) -> str:
    return str(make_key("staff", f"ro-{uuid.uuid4().hex[:6]}", Role.READ_ONLY))


def session_item(token: str) -> dict[str, Any]:
    """The directory's item of a session, as DynamoDB holds it (by the token's hash)."""
    import boto3

    from chalicelib.access.sessions import token_hash
    from chalicelib.core.dynamodb import from_attrs
    from chalicelib.core.settings import settings

    answer = boto3.client("dynamodb").get_item(
        TableName=settings().directory_table,
        Key={"pk": {"S": f"SESSION#{token_hash(token)}"}, "sk": {"S": "SESSION"}})
    return dict(from_attrs(answer["Item"]))


def make_order(client: Client, stack: dict[str, str], **changes: Any) -> str:
    payload = shopify_order(id=uuid.uuid4().int % 10**13, **changes)
    body = dumps(payload)
    headers = shopify_headers(body)
    assert client.http.post("/webhooks/shopify", headers=headers, body=body).status_code == 200
    process(client, stack, "shopify", headers["X-Shopify-Webhook-Id"])
    return order_id_for("shopify", SHOP, str(payload["id"]))


def test_a_page_without_a_session_goes_to_sign_in_and_back(person: Person,
                                                          back_office: str) -> None:
    answer = person.get("/console/cases?type=job.rejected")
    assert answer.status_code == 303
    location = answer.headers["Location"]
    assert location.startswith("/console/sign-in?next=")
    form = person.get(urlsplit(location).path + "?" + urlsplit(location).query)
    assert form.status_code == 200
    next_value = hidden(text(form), "next")
    assert next_value == "/console/cases?type=job.rejected"
    signed = person.post("/console/sign-in", {"csrf_token": hidden(text(form), "csrf_token"),
                                              "key": back_office, "next": next_value})
    assert signed.status_code == 303 and signed.headers["Location"] == next_value
    cookie = next(c for c in signed.headers["Set-Cookie"] if c.startswith("obk_session="))
    for flag in ("HttpOnly", "Secure", "SameSite=Lax", "Max-Age=43200"):
        assert flag in cookie
    assert back_office not in cookie
    stored = session_item(person.cookies["obk_session"])
    assert stored["staff_id"].startswith("bo-") and back_office not in str(stored)
    assert abs(int(stored["expires_at"]) - (time.time() + 12 * 3600)) < 120  # its TTL
    page = person.get("/console/cases")
    assert page.status_code == 200
    assert back_office not in text(page) and back_office[:12] not in text(page)
    for header in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"):
        assert header in page.headers
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none'


def test_sign_in_refuses_a_wrong_key_a_partner_key_and_a_form_from_elsewhere(
        person: Person, make_key: Any, back_office: str) -> None:
    assert person.sign_in("obk_not-a-key").status_code == 401
    partner = str(make_key("partner", "factory-x", Role.PARTNER))
    refused = person.sign_in(partner)
    assert refused.status_code == 401 and 'data-testid="error"' in text(refused)
    assert "obk_session" not in person.cookies
    # A form posted from another site has no sign-in token of ours.
    other = Person(person.client)
    forged = other.post("/console/sign-in", {"csrf_token": "x", "key": back_office})
    assert forged.status_code == 403 and "obk_session" not in other.cookies


def test_a_next_that_leaves_the_console_is_not_followed(person: Person,
                                                        back_office: str) -> None:
    form = person.get("/console/sign-in")
    for target in ("https://evil.example/", "//evil.example/console", "/webhooks/shopify"):
        answer = person.post("/console/sign-in", {
            "csrf_token": hidden(text(form), "csrf_token"), "key": back_office, "next": target})
        assert answer.headers["Location"] == "/console/cases"
        form = person.get("/console/sign-in")


def test_sign_out_ends_the_session_and_its_cookie_opens_nothing(person: Person,
                                                                back_office: str) -> None:
    person.sign_in(back_office)
    token = person.cookies["obk_session"]
    out = person.post("/console/sign-out", {"csrf_token": person.csrf()})
    assert out.status_code == 303 and out.headers["Location"] == "/console/sign-in"
    assert "obk_session" not in person.cookies
    person.cookies["obk_session"] = token  # a copy of the old cookie
    assert person.get("/console/cases").status_code == 303


def test_the_session_of_a_revoked_key_ends(person: Person, stack: dict[str, str]) -> None:
    from chalicelib.access import directory_store as directory
    from chalicelib.access.keys import hash_key, new_key
    from chalicelib.core.clock import utcnow

    key = new_key()
    key_id = directory.add_key(hash_key(key), "staff", "carol", Role.BACK_OFFICE, utcnow())
    person.sign_in(key)
    assert person.get("/console/cases").status_code == 200
    assert directory.revoke("staff", "carol", key_id, utcnow())
    directory.forget()  # this process's key cache: a revocation shows within its minute
    assert person.get("/console/cases").status_code == 303


def test_a_post_without_the_session_csrf_token_is_refused(
        person: Person, back_office: str, client: Client, stack: dict[str, str]) -> None:
    order_id = make_order(client, stack)
    person.sign_in(back_office)
    answer = person.post(f"/console/orders/{order_id}/amend",
                         {"kind": "cancel", "reason": "buyer asked", "confirm": "yes"})
    assert answer.status_code == 403 and 'data-reason="csrf_failed"' in text(answer)
    page = person.get(f"/console/orders/{order_id}")
    assert 'data-testid="job-stage">queued<' in text(page)


def test_read_only_sees_no_action_and_is_refused_when_posting_one(
        person: Person, read_only: str, client: Client, stack: dict[str, str]) -> None:
    order_id = make_order(client, stack)
    person.sign_in(read_only)
    page = text(person.get(f"/console/orders/{order_id}"))
    assert 'data-testid="order-id"' in page and 'data-testid="amend-' not in page
    answer = person.post(f"/console/orders/{order_id}/amend", {
        "csrf_token": person.csrf(), "kind": "cancel", "reason": "x", "confirm": "yes"})
    assert answer.status_code == 403 and 'data-reason="forbidden"' in text(answer)
    assert 'data-testid="job-stage">queued<' in text(person.get(f"/console/orders/{order_id}"))


def test_what_a_buyer_wrote_is_text_on_the_page(
        person: Person, read_only: str, client: Client, stack: dict[str, str]) -> None:
    evil = "<img src=x onerror=alert(1)>"
    order_id = make_order(client, stack, note=evil,
                          customer={"id": 1, "first_name": evil, "last_name": "",
                                    "email": "a@example.com"})
    person.sign_in(read_only)
    page = text(person.get(f"/console/orders/{order_id}"))
    assert "<img src=x" not in page
    assert html.escape(evil) in page or "&lt;img src=x onerror=alert(1)&gt;" in page


def test_cancel_before_print_applies_and_says_so_first(
        person: Person, back_office: str, client: Client, stack: dict[str, str]) -> None:
    order_id = make_order(client, stack)
    person.sign_in(back_office)
    page = text(person.get(f"/console/orders/{order_id}"))
    assert 'data-testid="amend-stage" data-outcome="applied"' in page
    fields = {"csrf_token": person.csrf(), "kind": "cancel", "reason": "buyer changed mind"}
    preview = person.post(f"/console/orders/{order_id}/amend", fields)
    assert preview.status_code == 200
    assert 'data-testid="amend-preview" data-outcome="applied"' in text(preview)
    assert 'data-testid="job-stage">queued<' in text(person.get(f"/console/orders/{order_id}"))
    done = person.post(f"/console/orders/{order_id}/amend", {**fields, "confirm": "yes"})
    assert done.status_code == 303
    after = text(person.get(done.headers["Location"]))
    assert 'data-testid="amend-outcome" data-outcome="applied"' in after
    assert 'data-testid="job-stage">cancelled<' in after
    assert 'data-testid="order-status">cancelled<' in after


def open_a_case(summary: str = "out of stock", **facts: Any) -> str:
    from chalicelib.core.clock import utcnow
    from chalicelib.cs import case_store
    from chalicelib.cs.alerts import Alert, Severity

    alert = Alert(kind="job.rejected", subject=f"job_{uuid.uuid4().hex[:8]}",
                  severity=Severity.CRITICAL, summary=summary, at=utcnow(),
                  facts={"external_id": "1042", **facts})
    case = case_store.record(alert).case
    assert case is not None
    return case.case_id


def test_acknowledge_then_resolve_from_the_queue_a_resolve_needs_a_note(
        person: Person, back_office: str, stack: dict[str, str]) -> None:
    case_id = open_a_case("<b>out of stock</b>")
    person.sign_in(back_office)
    queue = text(person.get("/console/cases?severity=critical"))
    assert f'data-case-id="{case_id}" data-status="open"' in queue
    assert "&lt;b&gt;out of stock&lt;/b&gt;" in queue and "<b>out of stock" not in queue
    back = "/console/cases?severity=critical"
    ack = person.post(f"/console/cases/{case_id}/acknowledge",
                      {"csrf_token": person.csrf(), "back": back, "note": ""})
    assert ack.status_code == 303 and ack.headers["Location"] == back
    refused = person.post(f"/console/cases/{case_id}/resolve",
                          {"csrf_token": person.csrf(), "back": back, "note": "  "})
    assert refused.status_code == 422
    case_page = text(person.get(f"/console/cases/{case_id}"))
    assert 'data-testid="case-status">acknowledged<' in case_page
    done = person.post(f"/console/cases/{case_id}/resolve",
                       {"csrf_token": person.csrf(), "back": back, "note": "restocked, resent"})
    assert done.status_code == 303
    case_page = text(person.get(f"/console/cases/{case_id}"))
    assert 'data-testid="case-status">resolved<' in case_page
    assert "restocked, resent" in case_page and 'data-testid="resolve"' not in case_page


def test_the_language_switch_sticks(person: Person, read_only: str) -> None:
    person.sign_in(read_only)
    assert "待办事件" in text(person.get("/console/cases"))
    assert ">Cases<" in text(person.get("/console/cases?lang=en"))
    assert person.cookies["lang"] == "en"
    assert ">Cases<" in text(person.get("/console/cases"))


def warehouse(client: Client, key: str, path: str, body: dict[str, Any]) -> Any:
    import json

    answer = client.http.post(f"/warehouse/v1{path}", body=json.dumps(body).encode(),
                              headers={"Authorization": f"Bearer {key}",
                                       "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.body
    return json.loads(answer.body)


@pytest.fixture
def factory(partner: str, make_key: Any) -> str:
    """The key of this test's own partner (conftest `partner`)."""
    return str(make_key("partner", partner))


def test_cancel_after_print_is_an_intercept_request_said_first_and_shown_after(
        person: Person, back_office: str, client: Client, stack: dict[str, str],
        factory: str) -> None:
    order_id = make_order(client, stack)
    claimed = warehouse(client, factory, "/jobs/claim", {"max_jobs": 1})
    (job,) = claimed["jobs"]
    warehouse(client, factory, f"/jobs/{job['job_id']}/accept", {"lease_id": claimed["lease_id"]})
    warehouse(client, factory, f"/jobs/{job['job_id']}/print", {"waybill_numbers": ["7730123"]})
    person.sign_in(back_office)
    page = text(person.get(f"/console/orders/{order_id}"))
    assert 'data-testid="job-stage">printed<' in page
    assert 'data-testid="amend-stage" data-outcome="intercept"' in page
    fields = {"csrf_token": person.csrf(), "kind": "cancel", "reason": "buyer changed mind"}
    preview = text(person.post(f"/console/orders/{order_id}/amend", fields))
    assert 'data-testid="amend-preview" data-outcome="intercept"' in preview
    done = person.post(f"/console/orders/{order_id}/amend", {**fields, "confirm": "yes"})
    after = text(person.get(done.headers["Location"]))
    assert 'data-testid="amend-outcome" data-outcome="intercept_requested"' in after
    assert 'data-testid="job-stage">printed<' in after  # the factory has not answered yet
    assert 'data-testid="job-change" data-status="intercept_requested"' in after
    # Nor is the order shown cancelled: only the factory's intercept cancels it.
    assert 'data-testid="order-status">paid<' in after
    from chalicelib.warehouse import job_store

    stored = job_store.get(job["partner_id"], job["job_id"])
    assert stored is not None
    (change,) = stored.changes
    warehouse(client, factory, f"/jobs/{job['job_id']}/changes/{change.change_id}/resolve",
              {"outcome": "intercepted"})
    page = text(person.get(f"/console/orders/{order_id}"))
    assert 'data-testid="order-status">cancelled<' in page


def test_the_search_box_finds_an_order_by_its_number_and_lists_several(
        person: Person, read_only: str, client: Client, stack: dict[str, str]) -> None:
    order_id = make_order(client, stack)
    person.sign_in(read_only)
    from chalicelib.orders import order_store

    stored = order_store.get_current(order_id)
    assert stored is not None
    found = person.get(f"/console/orders?q={stored.order.external_id}")
    assert found.status_code == 303 and found.headers["Location"] == f"/console/orders/{order_id}"
    none = text(person.get("/console/orders?q=99999999999999999"))
    assert 'data-testid="no-hits"' in none
    bad = person.get("/console/orders?q=%3Cscript%3E")
    assert bad.status_code == 400 and 'data-reason="invalid_query"' in text(bad)
    assert "<script>" not in text(bad)


def test_the_queue_counts_and_filters_and_today_draws_its_charts(
        person: Person, read_only: str, stack: dict[str, str]) -> None:
    case_id = open_a_case("late", marketplace="shopify", carrier_code="STO")
    person.sign_in(read_only)
    queue = text(person.get("/console/cases?marketplace=shopify&carrier=STO&severity=critical"))
    assert f'data-case-id="{case_id}"' in queue
    assert 'data-testid="type-count" data-type="job.rejected"' in queue
    other = text(person.get("/console/cases?marketplace=douyin&carrier=STO"))
    assert f'data-case-id="{case_id}"' not in other
    bad = person.get("/console/cases?age=yesterday")
    assert bad.status_code == 400 and 'data-reason="invalid_query"' in text(bad)
    day = person.get("/console/today?lang=en")
    assert day.status_code == 200
    page = text(day)
    assert page.count("<svg") >= 4 and 'data-testid="cutoff-row"' in page
    assert "Open cases by type" in page and "<script" not in page


def test_a_buyers_complaint_is_taken_down_from_the_order_page(
        person: Person, back_office: str, read_only: str, client: Client,
        stack: dict[str, str]) -> None:
    from tests.integration.flow import alerts_received

    order_id = make_order(client, stack)
    alerts_received(stack)
    person.sign_in(back_office)
    page = text(person.get(f"/console/orders/{order_id}"))
    assert 'data-testid="complaint"' in page and 'data-testid="order-id"' in page
    assert 'data-testid="pack-mismatch"' not in page
    assert '<option value="LS-WHT-M">' in page  # the order's items to choose from
    done = person.post(f"/console/orders/{order_id}/complaint", {
        "csrf_token": person.csrf(), "kind": "short", "sku": "LS-WHT-M", "quantity": "1",
        "note": "one shirt, not two"})
    assert done.status_code == 303
    after = text(person.get(done.headers["Location"]))
    assert 'data-testid="amend-outcome" data-outcome="complaint"' in after
    assert 'data-testid="timeline-event" data-type="order.complaint"' in after
    (alert,) = alerts_received(stack)
    assert alert["kind"] == "shipment.short" and alert["facts"]["items"] == "LS-WHT-M×1"
    bad = person.post(f"/console/orders/{order_id}/complaint", {
        "csrf_token": person.csrf(), "kind": "short", "note": ""})
    assert bad.status_code in (400, 422) and alerts_received(stack) == []
    reader = Person(client)
    reader.sign_in(read_only)
    assert 'data-testid="complaint"' not in text(reader.get(f"/console/orders/{order_id}"))
    refused = reader.post(f"/console/orders/{order_id}/complaint", {
        "csrf_token": reader.csrf(), "kind": "short", "note": "x"})
    assert refused.status_code == 403 and alerts_received(stack) == []


def test_a_refund_task_is_resolved_as_refunded_or_not_needed(
        person: Person, back_office: str, client: Client, stack: dict[str, str]) -> None:
    """The refund task's own lifecycle: due until after-sales says refunded or not needed,
    on the console and over the API; other cases take no outcome."""
    import json

    from chalicelib.core.clock import utcnow
    from chalicelib.cs import case_store
    from chalicelib.cs.alerts import Alert, Severity

    def refund_task() -> str:
        case = case_store.record(Alert(
            kind="refund.due", subject=f"ord_{uuid.uuid4().hex[:8]}", severity=Severity.MEDIUM,
            summary="refund 410.00 CNY on shopify", at=utcnow(),
            facts={"external_id": "1042", "amount": "410.00"})).case
        assert case is not None
        return case.case_id

    person.sign_in(back_office)
    first = refund_task()
    page = text(person.get(f"/console/cases/{first}"))
    assert 'data-testid="resolve-outcome"' in page and 'value="not_needed"' in page
    done = person.post(f"/console/cases/{first}/resolve", {
        "csrf_token": person.csrf(), "outcome": "refunded", "note": "refunded on Shopify"})
    assert done.status_code == 303
    page = text(person.get(f"/console/cases/{first}"))
    assert 'data-testid="case-status">resolved<' in page
    assert 'data-testid="case-outcome" data-outcome="refunded"' in page
    without = person.post(f"/console/cases/{refund_task()}/resolve", {
        "csrf_token": person.csrf(), "note": "done"})
    assert without.status_code == 422
    assert 'data-testid="resolve-outcome"' not in text(person.get(
        f"/console/cases/{open_a_case()}"))

    def api(case_id: str, body: dict[str, Any]) -> Any:
        return client.http.post(f"/cs/v1/cases/{case_id}/resolve", body=json.dumps(body),
                                headers={"Authorization": f"Bearer {back_office}",
                                         "Content-Type": "application/json"})

    second = refund_task()
    refused = api(second, {"note": "done"})
    assert refused.status_code == 422
    assert json.loads(refused.body)["details"]["outcomes"] == ["refunded", "not_needed"]
    answer = json.loads(api(second, {"note": "buyer kept it", "outcome": "not_needed"}).body)
    assert (answer["status"], answer["outcome"]) == ("resolved", "not_needed")
    assert api(open_a_case(), {"note": "x", "outcome": "refunded"}).status_code == 422


def test_a_pack_shipped_anyway_shows_on_the_order_page(
        person: Person, back_office: str, client: Client, stack: dict[str, str],
        factory: str) -> None:
    order_id = make_order(client, stack)
    claimed = warehouse(client, factory, "/jobs/claim", {"max_jobs": 1})
    (job,) = claimed["jobs"]
    warehouse(client, factory, f"/jobs/{job['job_id']}/accept", {"lease_id": claimed["lease_id"]})
    warehouse(client, factory, f"/jobs/{job['job_id']}/print", {})
    warehouse(client, factory, f"/jobs/{job['job_id']}/pack", {
        "weight_grams": 300, "package_count": 1, "ship_anyway": True,
        "reason": "<b>shirts</b> out of stock",
        "packages": [{"items": [{"sku": "TOTE-NAT", "quantity": 1}]}]})
    person.sign_in(back_office)
    page = text(person.get(f"/console/orders/{order_id}"))
    assert 'data-testid="pack-mismatch"' in page
    assert "LS-WHT-M: 0 / 2 (short)" in page
    assert "&lt;b&gt;shirts&lt;/b&gt; out of stock" in page  # the partner's words, as text


def test_the_lists_page_shows_each_list_with_its_orders_in_both_languages(
        person: Person, client: Client, stack: dict[str, str], read_only: str) -> None:
    """Refund, dispute and unpaid as tabs; a row links the order, names its marketplace, since
    when it is on the list, and its amount; an unknown list is the not-found page."""
    import json

    from tests.integration.test_order_lists import send_shopify

    placed = shopify_order(id=uuid.uuid4().int % 10**13, financial_status="pending",
                           total_price="618.00")
    unpaid = send_shopify(client, stack, placed)
    paid = shopify_order(id=uuid.uuid4().int % 10**13)
    refunding = send_shopify(client, stack, {**paid, "financial_status": "partially_refunded"})
    person.sign_in(read_only)

    page = text(person.get("/console/lists?list=unpaid&lang=en"))
    assert "Unpaid" in page and "In refund" in page and "In dispute" in page
    rows = re.findall(r'data-testid="listed-order" data-order-id="([^"]+)"', page)
    assert unpaid in rows and refunding not in rows
    row = page[page.index(f'data-order-id="{unpaid}"'):]
    row = row[:row.index("</li>")]
    assert f'href="/console/orders/{unpaid}"' in row and "shopify" in row
    assert f"{placed['total_price']} {placed['currency']}" in row
    assert "On the list since" in row

    refund_page = text(person.get("/console/lists?list=refund&lang=zh"))
    assert "退款中" in refund_page and "在列表中自" in refund_page
    assert refunding in re.findall(r'data-order-id="([^"]+)"', refund_page)
    api = json.loads(client.http.get(
        "/cs/v1/orders/lists/refund?limit=500",
        headers={"Authorization": f"Bearer {read_only}"}).body)
    listed = {row["order_id"] for row in api["orders"]}
    shown = set(re.findall(r'data-testid="listed-order" data-order-id="([^"]+)"', refund_page))
    assert shown <= listed  # the page reads the API's list, a page of it

    order_page = text(person.get(f"/console/orders/{refunding}"))
    assert 'data-testid="order-after-sale">refunding<' in order_page
    assert 'data-testid="order-after-sale"' not in text(person.get(f"/console/orders/{unpaid}"))
    assert person.get("/console/lists?list=returns").status_code == 404
    assert person.client.http.get("/console/lists").status_code in (302, 303)
