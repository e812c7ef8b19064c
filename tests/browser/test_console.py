"""The CS console in a real browser (issue 15, "Tested in a real browser"): headless Chromium
against the console over HTTP on the local stack. Pages are matched by their data-testid hooks
(the page contract in chalicelib/console/) and, after `?lang=en`, by English text."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.access.keys import Role
from tests.browser.conftest import DESKTOP, PHONE, Tab
from tests.browser.world import World

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
XSS = "<img src=x onerror=alert(1)>"


def submit(form: Any) -> None:
    """Press the form's own button, as a person does (no script: the console has none)."""
    form.locator("button, input[type=submit]").first.click()
    form.page.wait_for_load_state()


def amend(tab: Tab, order_id: str, kind: str, **fields: str) -> Any:
    """Fill an amendment form on the order page and send it: the confirm page."""
    tab.open(f"/console/orders/{order_id}")
    form = tab.testid(f"amend-{kind}")
    folded = tab.page.locator("details").filter(has=form)
    if folded.count() and folded.get_attribute("open") is None:
        folded.locator("summary").click()  # the form is folded away, as a person finds it
    for name, value in fields.items():
        form.locator(f'[name="{name}"]').fill(value)
    submit(form)
    return tab.testid("amend-preview")


def test_sign_in_gives_a_guarded_session_and_a_bad_key_is_refused(tab: Tab,
                                                                  world: World) -> None:
    answer = tab.open("/console")
    assert "/console/sign-in" in tab.page.url  # no session: sign in first
    assert tab.page.locator("#key").count() == 1
    headers = answer.all_headers()
    directives = {name: value for name, _, value in (
        part.strip().partition(" ") for part in headers["content-security-policy"].split(";"))}
    scripts = directives.get("script-src", directives.get("default-src"))
    assert scripts is not None and "unsafe-inline" not in scripts  # no inline script runs
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"

    tab.page.fill("#key", "obk_not_a_key_" + "x" * 20)
    with tab.page.expect_navigation() as refused:
        tab.page.click("#sign-in")
    assert refused.value.status == 401
    assert tab.testid("error").count() == 1
    assert not [c for c in tab.page.context.cookies() if c["name"] == "obk_session"]

    tab.sign_in(world.staff_key(Role.BACK_OFFICE))
    assert tab.page.url.split("?")[0].endswith("/console/cases")
    cookie = tab.session_cookie()
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
    assert cookie["expires"] > datetime.now(UTC).timestamp()  # Max-Age: it ends
    assert world.staff_key(Role.BACK_OFFICE) not in tab.page.content()  # never rendered


def test_an_order_is_found_by_its_tracking_number(tab: Tab, world: World) -> None:
    order = world.shipped(world.order())
    tab.sign_in(world.staff_key(Role.READ_ONLY))
    box = tab.testid("search-box")
    box.fill(order.tracking_number)
    box.press("Enter")
    tab.page.wait_for_load_state()
    assert tab.page.url.split("?")[0].endswith(f"/console/orders/{order.order_id}")
    assert order.order_id in tab.testid("order-id").inner_text()
    assert tab.testid("job-stage").inner_text().strip() == "shipped"
    assert order.tracking_number in " ".join(tab.testid("parcel").all_inner_texts())
    assert tab.testid("timeline-event").count() >= 6  # received ... shipped


def test_cancel_before_print_is_applied_and_after_print_is_an_intercept(
        tab: Tab, world: World) -> None:
    """The issue's two outcomes, each said before confirming and shown after."""
    before = world.accept(world.order())
    after = world.printed(world.order())
    tab.sign_in(world.staff_key(Role.BACK_OFFICE))

    preview = amend(tab, before.order_id, "cancel", reason="buyer asked by phone")
    assert preview.get_attribute("data-outcome") == "applied"
    tab.testid("amend-confirm").click()
    tab.page.wait_for_load_state()
    assert tab.testid("amend-outcome").get_attribute("data-outcome") == "applied"
    assert tab.testid("job-stage").inner_text().strip() == "cancelled"

    preview = amend(tab, after.order_id, "cancel", reason="buyer asked by phone")
    assert preview.get_attribute("data-outcome") == "intercept"
    assert preview.inner_text() != ""  # says what will happen at this stage
    tab.testid("amend-confirm").click()
    tab.page.wait_for_load_state()
    assert tab.testid("amend-outcome").get_attribute("data-outcome") == "intercept_requested"
    assert tab.testid("job-stage").inner_text().strip() == "printed"  # the factory decides
    assert tab.testid("order-status").inner_text().strip() != "cancelled"  # not until it does
    # The factory's intercept request is on the order, as the API shows it too.
    timeline = [e["type"] for e in world.api(f"/orders/{after.order_id}")["timeline"]]
    assert "change.intercept_requested" in timeline
    assert "change.intercept_requested" not in [
        e["type"] for e in world.api(f"/orders/{before.order_id}")["timeline"]]


def test_a_case_is_acknowledged_from_the_queue_and_resolved_on_its_page(
        tab: Tab, world: World) -> None:
    kind = "shipment.customs_issue"  # a type no other test opens: the filtered queue is ours
    case_id = world.case(world.order(), kind=kind)
    tab.sign_in(world.staff_key(Role.BACK_OFFICE))
    tab.open(f"/console/cases?type={kind}&lang=en")
    row = tab.page.locator(f'[data-testid="case-row"][data-case-id="{case_id}"]')
    assert row.get_attribute("data-status") == "open"
    assert tab.testid("type-count").count() >= 1
    submit(row.locator('[data-testid="ack"]'))
    row = tab.page.locator(f'[data-testid="case-row"][data-case-id="{case_id}"]')
    assert row.get_attribute("data-status") == "acknowledged"

    tab.open(f"/console/cases/{case_id}")
    assert tab.testid("case-status").inner_text().strip() == "acknowledged"
    resolve = tab.testid("resolve")
    resolve.locator("button, input[type=submit]").first.click()  # no note: the browser stops it
    assert tab.testid("case-status").inner_text().strip() == "acknowledged"
    resolve.locator('textarea[name="note"]').fill("customs cleared after the buyer's ID upload")
    submit(resolve)
    assert tab.testid("case-status").inner_text().strip() == "resolved"
    case = world.api(f"/cases/{case_id}")
    assert case["status"] == "resolved"
    assert any("customs cleared" in (step.get("note") or "") for step in case["history"])


def test_an_im_messages_link_opens_the_case_page(new_tab: Any, world: World,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Tapped on a phone: the link is absolute, asks for sign-in, then lands on the case."""
    order = world.order()
    case_id, link = world.case_on_im(order, monkeypatch)
    assert link == f"{world.console}/console/cases/{case_id}"
    phone: Tab = new_tab(PHONE)
    phone.open(link)
    assert "/console/sign-in" in phone.page.url
    phone.page.fill("#key", world.staff_key(Role.BACK_OFFICE))
    phone.page.click("#sign-in")
    phone.page.wait_for_load_state()
    assert phone.page.url.split("?")[0] == link  # `next` kept through the sign-in
    assert phone.testid("case-status").inner_text().strip() == "open"
    phone.testid("case-order").first.click()
    phone.page.wait_for_load_state()
    assert order.order_id in phone.testid("order-id").inner_text()


def test_sign_out_ends_the_session_and_the_old_cookie_is_refused(tab: Tab,
                                                                 world: World) -> None:
    tab.sign_in(world.staff_key(Role.BACK_OFFICE))
    old = tab.session_cookie()["value"]
    submit(tab.testid("sign-out"))
    assert tab.page.url.split("?")[0].endswith("/console/sign-in")
    assert not [c for c in tab.page.context.cookies() if c["name"] == "obk_session"]
    replayed = requests.get(f"{world.console}/console/cases", cookies={"obk_session": old},
                            allow_redirects=False, timeout=30)
    assert replayed.status_code == 303
    assert "/console/sign-in" in replayed.headers["Location"]


def test_a_revoked_keys_session_ends(tab: Tab, world: World) -> None:
    tab.sign_in(world.staff_key(Role.BACK_OFFICE))
    tab.open("/console/cases")
    assert "/console/sign-in" not in tab.page.url
    world.revoke(Role.BACK_OFFICE)
    tab.open("/console/cases")
    assert "/console/sign-in" in tab.page.url


def test_a_buyer_name_with_markup_shows_as_text(tab: Tab, world: World) -> None:
    order = world.order(customer={"id": 7012345678901, "first_name": XSS, "last_name": "",
                                  "email": "x@example.com"})
    tab.sign_in(world.staff_key(Role.READ_ONLY))
    tab.open(f"/console/orders/{order.order_id}")
    assert tab.testid("buyer-name").inner_text().strip() == XSS
    assert tab.page.locator('img[src="x"]').count() == 0
    tab.page.wait_for_timeout(300)  # an onerror would have fired by now
    assert tab.dialogs == []


def test_read_only_sees_no_action_and_is_refused_when_posting_one(tab: Tab,
                                                                  world: World) -> None:
    order = world.order()
    case_id = world.case(order)
    tab.sign_in(world.staff_key(Role.READ_ONLY))
    tab.open(f"/console/orders/{order.order_id}")
    assert tab.testid("order-id").count() == 1
    assert tab.page.locator('[data-testid^="amend-"]').count() == 0
    tab.open(f"/console/cases/{case_id}")
    assert tab.testid("case-status").count() == 1
    assert tab.testid("ack").count() == 0 and tab.testid("resolve").count() == 0

    # Posting anyway, with the session's valid CSRF token (every form carries it).
    token = tab.page.locator('[data-testid="sign-out"] input[name="csrf_token"]').input_value()
    refused = tab.page.request.post(f"{tab.base}/console/cases/{case_id}/resolve",
                                    form={"csrf_token": token, "note": "not mine to close"},
                                    max_redirects=0)
    assert refused.status == 403 and 'data-testid="error"' in refused.text()
    amended = tab.page.request.post(f"{tab.base}/console/orders/{order.order_id}/amend",
                                    form={"csrf_token": token, "kind": "cancel",
                                          "reason": "not mine to cancel"}, max_redirects=0)
    assert amended.status == 403
    assert world.api(f"/cases/{case_id}")["status"] == "open"
    timeline = [e["type"] for e in world.api(f"/orders/{order.order_id}")["timeline"]]
    assert "order.amended" not in timeline


def test_main_pages_fit_a_phone_and_run_no_inline_script(new_tab: Any, world: World,
                                                         tmp_path: Path) -> None:
    """Each main page at a phone's width (no sideways scrolling) and a desktop's, without an
    inline script. UPDATE_SCREENSHOTS=1 keeps the pictures in docs/screenshots/ (README):
    the phone's in Chinese, the console's default, the desktop's in English."""
    # A day's work as the pages show it: shipped, packed and printed orders paid today.
    world.shipped(world.order(paid_now=True))
    world.packed(world.order(paid_now=True))
    order = world.printed(world.order(paid_now=True))
    world.accept(world.order(paid_now=True))
    case_id = world.case(order)
    key = world.staff_key(Role.BACK_OFFICE)
    failed: list[str] = []
    for width, viewport, language in (("phone", PHONE, "zh"), ("desktop", DESKTOP, "en")):
        tab: Tab = new_tab(viewport)
        tab.open(f"/console/sign-in?lang={language}")
        shoot(tab, "sign-in", width, tmp_path)
        tab.sign_in(key)
        tab.open(f"/console/cases?lang={language}")
        pages = {"cases": "/console/cases", "case": f"/console/cases/{case_id}",
                 "order": f"/console/orders/{order.order_id}", "today": "/console/today",
                 "lists": "/console/lists?list=unpaid"}
        for name, path in pages.items():
            answer = tab.open(path)
            if answer.ok:  # no picture of an error page; the page is reported below
                shoot(tab, name, width, tmp_path)
            else:
                failed.append(f"{path}: {answer.status}")
        amend(tab, order.order_id, "cancel", reason="buyer asked by phone")
        shoot(tab, "amend-preview", width, tmp_path)
    assert failed == []


def test_today_shows_each_cutoff_with_its_chart(tab: Tab, world: World) -> None:
    world.printed(world.order())
    tab.sign_in(world.staff_key(Role.READ_ONLY))
    tab.open("/console/today")
    assert tab.testid("cutoff-row").count() >= 1
    assert tab.page.locator("svg").count() >= 1  # drawn on the server: no script


def shoot(tab: Tab, name: str, width: str, folder: Path) -> None:
    page = tab.page
    assert page.locator("script:not([src])").count() == 0, name
    if width == "phone":
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= PHONE["width"], f"{name} scrolls sideways on a phone ({scroll} px)"
    picture = folder / f"{name}-{width}.png"
    page.screenshot(path=str(picture))
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(picture, SCREENSHOTS / f"{name}-{width}.png")
