"""The real local stack, as `make run` starts it: local AWS, `chalice local`, the event runner
and the simulated factory (the reference partner client).

Signed Shopify orders go in over HTTP; the factory claims, prints, packs and ships them; CS
cancels one before print and re-addresses one after; the timelines and the partner's change
feed show each outcome; Ctrl-C stops everything and frees the ports.
"""

from __future__ import annotations

import email
import email.policy
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from openpyxl import load_workbook

from chalicelib.admin.connection import LOCAL_KEY, LOCAL_REGION, PREFIX
from chalicelib.orders.order import order_id_for
from chalicelib.reports import periods, render
from chalicelib.reports.model import Figure, Kind, Period, local_day
from devstack.demo import NEW_ADDRESS, amend, send_order
from devstack.provision import load_template
from devstack.stack import ROOT
from tests.conftest import free_port
from tests.report_files import attachments, csv_blocks, csv_figures

pytestmark = pytest.mark.e2e
REPORTS_AFTER = 40  # seconds after READY: make run's reports to date


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_file = tmp_path_factory.mktemp("stack") / "run.json"
    labels = tmp_path_factory.mktemp("labels")
    ports = {"LOCAL_API_PORT": str(free_port()), "LOCAL_AWS_PORT": str(free_port())}
    env = {**os.environ, **ports, "LOCAL_RUN_FILE": str(run_file),
           "LOCAL_LABELS_DIR": str(labels),  # the simulated factory's label files
           "LOCAL_FACTORY_PRINT_SECONDS": "6",
           # Parcels travel 7,200 times faster (a 3-day journey in 36 s); the tracking tick
           # runs every second to keep up.
           "LOCAL_TIME_SCALE": "7200", "LOCAL_SCHEDULE_SPEEDUP": "60",
           # Orders come only from the tests (the courier test counts parcels); a third of the
           # simulated platforms' notifications are sent twice and a third held back.
           "LOCAL_ORDER_SECONDS": "0", "LOCAL_NOTIFY_FAULTS": "0,0.33,0.33",
           # Shop access tokens end every 45 s (renewed 15 s ahead): every test here runs on
           # renewed, rotated tokens.
           "LOCAL_TOKEN_SECONDS": "45",
           # The reports to date go 40 s after READY, once the first story's orders are in:
           # the figures a test recomputes from the stored events are the ones sent.
           "LOCAL_REPORTS_SECONDS": str(REPORTS_AFTER)}
    env = outside_the_session_stack(env)  # the stack must set up its own
    process = subprocess.Popen([sys.executable, "-m", "devstack.stack"], cwd=ROOT,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    output: list[str] = []
    deadline = time.monotonic() + 120
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line)
        if line.strip() == "READY":
            break
        if time.monotonic() > deadline:
            break
    if not any(line.strip() == "READY" for line in output):
        stop(process)
        pytest.fail("stack did not come up:\n" + "".join(output[-50:]))
    # Keep reading its output, or a full pipe would block the stack's logging.
    threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True).start()
    run = json.loads(Path(run_file).read_text())
    yield {"run": run, "process": process, "ports": ports, "output": output,
           "run_file": run_file, "labels": labels}
    stop(process)


def outside_the_session_stack(env: dict[str, str]) -> dict[str, str]:
    """`env` without what points at the test session's own local stack (the browser and
    integration tests' one, when they ran first in this process): the endpoint, every name the
    functions' environment gives (infra/resources.yaml Globals: tables, queues, topics) and the
    waybill rules, so make run and the admin command line find make run's own."""
    variables = (load_template().get("Globals", {}).get("Function", {}).get("Environment", {})
                 .get("Variables", {}))
    dropped = {"AWS_ENDPOINT_URL", "WAYBILL_RULES_JSON", "LOCAL_WAYBILLS", *variables}
    return {name: value for name, value in env.items() if name not in dropped}


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, as a supervisor or CI sends it, so the stack stops the API server it started
    (its own session): a bare kill would leave `chalice local` holding its port after a failed
    test. Not stopping in time is a failure of its own (finding 8 of issue 12)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        pytest.fail("make run did not stop within 20 s of SIGTERM")


def wait_for(what: str, check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def timeline(run: dict[str, Any], order_id: str) -> Any:
    response = requests.get(f"{run['api']}/cs/v1/orders/{order_id}", timeout=10,
                            headers={"Authorization": f"Bearer {run['cs_key']}"})
    return response.json() if response.status_code == 200 else None


def events(run: dict[str, Any], order_id: str) -> list[str]:
    view = timeline(run, order_id)
    return [e["type"] for e in view["timeline"]] if view else []


def test_make_run_mails_the_daily_weekly_and_monthly_reports_to_date(
        running_stack: dict[str, Any]) -> None:
    """First of the stories: two orders are paid, then make run's three reports reach the
    manager's mailbox in the local SES, each with its CSV and XLSX; their figures are the ones
    computed again now from the stored events (`report show`, the admin command line), and the
    orders paid, counted here in the jobs table, are the two."""
    run = running_stack["run"]
    ordered = [send_order(run)[0] for _ in range(2)]
    for order_id in ordered:
        wait_for("the job", lambda order_id=order_id: "job.created" in events(run, order_id))

    def manager_mails() -> list[email.message.EmailMessage]:
        data = requests.get(run["mailbox"], timeout=10).json()
        found = [email.message_from_string(m["raw_data"], policy=email.policy.default)
                 for m in data.get("ses", {}).get("RawMessage", [])
                 if "manager@backbone.local" in m.get("destinations", [])]
        return [m for m in found if str(m["Subject"]).endswith("to date）")]

    mails = wait_for("the reports to date", lambda: len(manager_mails()) >= 3 and manager_mails(),
                     timeout=REPORTS_AFTER + 90)
    today = local_day(datetime.now(UTC))
    kinds: tuple[tuple[Kind, str], ...] = (
        ("daily", "Daily dispatch report"), ("weekly", "Weekly report"),
        ("monthly", "Monthly report"))
    for kind, title in kinds:
        period = periods.period_of(kind, today)
        # (The schedule sends the periods already due there too: not to date.)
        (mail,) = [m for m in mails if title in str(m["Subject"])
                   and str(m["Subject"]).endswith(f"{period.label}（截至目前 to date）")]
        files = attachments(mail)
        csv_text = files[f"report-{kind}-{period.start}.csv"].decode("utf-8")
        book = load_workbook(io.BytesIO(files[f"report-{kind}-{period.start}.xlsx"]))
        figures = csv_figures(csv_text)
        # The workbook's figures (each sheet's rows under its header, to the first gap).
        in_book = []
        for sheet in book.worksheets:
            for row in sheet.iter_rows(min_row=2, values_only=True):
                if not row or row[0] is None:
                    break
                in_book.append((str(row[0]), number_of(row[2])))
        assert sorted(in_book) == sorted((key, number_of(value))
                                         for (_, key), value in figures.items())
        shown = admin_output(running_stack, "report", "show", "--kind", kind)
        assert shown[0] == str(mail["Subject"])
        # Each figure of the CSV as the command line prints it, and no other.
        _, *rows = csv_blocks(csv_text)[0]
        assert [line for line in shown if line.startswith("  ")] == [
            f"  {label}: {render.shown(figure_of(key, label, value, unit))}"
            for _, _, key, label, value, unit in rows]
        paid = paid_jobs(run, period)
        assert paid == len(ordered)  # only this story orders before the reports go
        counted = {section: int(value) for (section, key), value in figures.items()
                   if key == "paid"}  # the warehouse KPIs' orders paid
        assert counted and set(counted.values()) == {paid}, counted


def number_of(value: object) -> Decimal | None:
    """A figure's value from the CSV (text) or the workbook (a number), to compare them."""
    return None if value is None or value == "" else Decimal(str(value))


def figure_of(key: str, label: str, value: str, unit: str) -> Figure:
    number = None if value == "" else int(value) if value.lstrip("-").isdigit() \
        else Decimal(value)
    return Figure.model_validate({"key": key, "label": label, "value": number, "unit": unit})


def admin_output(running_stack: dict[str, Any], *command: str) -> list[str]:
    """The admin command line against the running stack (its run file), without log lines."""
    env = outside_the_session_stack({**os.environ,
                                     "LOCAL_RUN_FILE": str(running_stack["run_file"])})
    done = subprocess.run([sys.executable, "-m", "chalicelib.admin", "--stage", "local",
                           *command], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    return [line for line in done.stdout.splitlines() if not line.startswith("{")]


def paid_jobs(run: dict[str, Any], period: Period) -> int:
    """Jobs whose order was paid in the period, counted in the stack's jobs table."""
    import boto3

    table = boto3.resource("dynamodb", endpoint_url=run["aws"], region_name=LOCAL_REGION,
                           aws_access_key_id=LOCAL_KEY, aws_secret_access_key=LOCAL_KEY
                           ).Table(f"{PREFIX}-local-jobs")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"ProjectionExpression": "paid_day"}
    while True:
        page = table.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sum(1 for item in items if item.get("paid_day")
               and period.start <= date.fromisoformat(str(item["paid_day"])) < period.end)


def test_the_factory_ships_and_changes_land_by_stage(running_stack: dict[str, Any]) -> None:
    """The issue's story: orders in, one cancelled before print, one re-addressed after."""
    run = running_stack["run"]
    plain, response = send_order(run)
    assert response.status_code == 200 and response.json()["status"] == "accepted"
    cancel_me, _ = send_order(run)
    readdress_me, _ = send_order(run)

    wait_for("the job offer", lambda: "job.created" in events(run, cancel_me))
    answer = amend(run, cancel_me, {"kind": "cancel", "reason": "buyer cancelled"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["change"]["status"] == "applied"

    wait_for("printing", lambda: "job.printed" in events(run, readdress_me))
    answer = amend(run, readdress_me, {"kind": "address", "address": NEW_ADDRESS,
                                       "reason": "deliver to the office"})
    assert answer.json()["change"]["status"] == "intercept_requested"

    for order_id in (plain, readdress_me):
        wait_for(f"{order_id} shipped", lambda o=order_id: "job.shipped" in events(run, o))
    assert events(run, plain)[:8] == ["order.received", "job.created", "job.accepted",
                                      "job.printed", "job.picked", "job.packed", "job.shipped",
                                      "shipment.tracking_started"]
    readdressed = timeline(run, readdress_me)
    kinds = [e["type"] for e in readdressed["timeline"]]
    assert kinds.index("change.intercept_requested") < kinds.index("change.intercepted") \
        < len(kinds) - 1 - kinds[::-1].index("job.printed") < kinds.index("job.shipped")
    assert readdressed["job"]["ship_to"]["line1"] == NEW_ADDRESS["line1"]
    assert readdressed["job"]["printed"]["count"] == 2
    cancelled = timeline(run, cancel_me)
    assert cancelled["job"]["work"] == "cancelled"
    assert "job.printed" not in [e["type"] for e in cancelled["timeline"]]

    feed = requests.get(f"{run['api']}/warehouse/v1/changes", timeout=10, headers={
        "Authorization": f"Bearer {run['partner_key']}"}).json()["entries"]
    seen = {(e["job_id"].removeprefix("job_"), e["type"]) for e in feed}
    assert (cancel_me.removeprefix("ord_"), "change.applied") in seen
    assert (readdress_me.removeprefix("ord_"), "change.intercept_requested") in seen
    assert (readdress_me.removeprefix("ord_"), "change.intercepted") in seen

    # The cancellation applied before print handed the refund to after-sales, who makes it.
    task = wait_for("the refund task", lambda: next(
        (c for c in cases(run) if (c["type"], c["subject"]) == ("refund.due", cancel_me)), None))
    resolved = requests.post(f"{run['api']}/cs/v1/cases/{task['case_id']}/resolve", timeout=10,
                             json={"note": "refunded on Shopify", "outcome": "refunded"},
                             headers={"Authorization": f"Bearer {run['cs_key']}"})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["outcome"] == "refunded"


def cases(run: dict[str, Any]) -> list[dict[str, Any]]:
    response = requests.get(f"{run['api']}/cs/v1/cases", params={"limit": 500}, timeout=10,
                            headers={"Authorization": f"Bearer {run['cs_key']}"})
    return list(response.json()["cases"])


def test_a_demo_exception_reaches_im_and_email_and_cs_acknowledges_and_resolves_it(
        running_stack: dict[str, Any]) -> None:
    """Issue 5's story: an order the warehouse cannot ship is a case; the IM sink prints it as
    WeCom shows it, the mail is in the SES outbox, and CS takes and closes it over the API.
    Before the courier's story: its burst of parcel cases (more than 5 in 5 minutes on the
    channel) is sent as a digest, in which this case would not have a message of its own."""
    run = running_stack["run"]
    order_id, response = send_order(run, without_address=True)
    assert response.status_code == 200
    auth = {"Authorization": f"Bearer {run['cs_key']}"}

    def the_case() -> Any:
        found = requests.get(f"{run['api']}/cs/v1/cases", params={"order_id": order_id},
                             headers=auth, timeout=10).json()["cases"]
        return found[0] if found else None

    case = wait_for("the case", the_case, timeout=60)
    assert case["type"] == "order.invalid" and case["status"] == "open"
    name = case["facts"]["order_name"]
    wait_for("the IM message", lambda: any(
        "WeCom" in line and name in line for line in running_stack["output"]), timeout=60)
    # Its link is the local console's page for the case (issue 15 §5), which make run's banner
    # names with a sign-in key; the page asks an unsigned visitor to sign in first.
    console = f"http://localhost:{running_stack['ports']['LOCAL_API_PORT']}"
    assert run["console"] == console
    banner = "".join(running_stack["output"])
    assert f"CS console          {console}/console" in banner
    assert f"console sign-in key {run['cs_key']}" in banner
    link = f"{console}/console/cases/{case['case_id']}"
    wait_for("the IM message's console link", lambda: any(
        f"({link})" in line for line in running_stack["output"]), timeout=60)
    opened = requests.get(link, allow_redirects=False, timeout=10)
    assert opened.status_code == 303 and "/console/sign-in" in opened.headers["Location"]

    def mailed() -> bool:
        data = requests.get(run["mailbox"], timeout=10).json()
        return any(name in json.dumps(m, ensure_ascii=False)
                   for m in data.get("ses", {}).get("Message", []))

    wait_for("the email", mailed, timeout=60)
    acked = requests.post(f"{run['api']}/cs/v1/cases/{case['case_id']}/acknowledge",
                          json={"note": "asking the buyer for the address"}, headers=auth,
                          timeout=10)
    assert acked.json()["status"] == "acknowledged"
    done = requests.post(f"{run['api']}/cs/v1/cases/{case['case_id']}/resolve",
                         json={"note": "buyer re-ordered with an address"}, headers=auth,
                         timeout=10)
    assert done.json()["status"] == "resolved"
    assert the_case()["status"] == "resolved"


def test_the_courier_moves_parcels_and_cs_hears_of_each_problem_once(
        running_stack: dict[str, Any]) -> None:
    """Issue 4's story: the simulated Kuaidi100 carries the shipped parcels along scripted
    journeys (delivered, refused, stalled, failed twice, ...); each problem is one CS case and
    the delivered order shows as complete."""
    run = running_stack["run"]
    orders = [send_order(run)[0] for _ in range(4)]
    for order_id in orders:
        wait_for(f"{order_id} tracked", lambda o=order_id: "shipment.tracking_started"
                 in events(run, o), timeout=120)
    parcels = wait_for("six parcels at the courier", lambda: (lambda p: p if len(p) >= 6 else None)(
        requests.get(f"{run['courier']}/_sim/parcels", timeout=10).json()["parcels"]))
    script_of = {p["num"]: p["script"] for p in parcels}
    expected = {"refused": "after_sales.return", "stalled": "courier.stalled",
                "failed_twice": "courier.repeated_delivery_failure"}

    com_of = {p["num"]: p["com"] for p in parcels}

    def opened(number: str) -> list[str]:
        """The cases of the parcel's order about the parcel, open or already resolved: the
        second failed attempt's case resolves itself once the parcel is delivered, seconds
        later at this time scale, so the open-cases list may never show it."""
        view = requests.get(f"{run['api']}/cs/v1/orders", timeout=10, params={
            "carrier_code": carrier_code_of(com_of[number]), "tracking_number": number},
            headers={"Authorization": f"Bearer {run['cs_key']}"}).json()
        found = requests.get(f"{run['api']}/cs/v1/cases", timeout=10,
                             params={"order_id": view["order_id"], "limit": 100},
                             headers={"Authorization": f"Bearer {run['cs_key']}"}).json()
        return [c["type"] for c in found["cases"]  # subject parcel:<carrier>:<number>
                if c["subject"].startswith("parcel:") and c["subject"].endswith(":" + number)]

    for script, case_type in expected.items():
        (number,) = [n for n, s in script_of.items() if s == script]
        wait_for(f"the {script} parcel's case", lambda n=number, t=case_type: t in opened(n),
                 timeout=150)
    # Once each: the refusal, the return and the signed-back refusal are one after-sales case;
    # a stall escalating to "probably lost" is the same case.
    for script, case_type in expected.items():
        (number,) = [n for n, s in script_of.items() if s == script]
        assert opened(number).count(case_type) == 1, (script, opened(number))

    others = {(c["type"], c["subject"]) for c in cases(run)
              if not c["subject"].startswith("parcel:")}
    assert not others, others  # nothing else went wrong on the way
    (delivered,) = [n for n, s in script_of.items() if s == "delivered"]
    carrier = next(p["com"] for p in parcels if p["num"] == delivered)
    view = requests.get(f"{run['api']}/cs/v1/orders", timeout=10, params={
        "carrier_code": carrier_code_of(carrier), "tracking_number": delivered},
        headers={"Authorization": f"Bearer {run['cs_key']}"}).json()
    order_id = view["order_id"]
    wait_for("the delivered order complete", lambda: "order.completed" in events(run, order_id),
             timeout=150)
    view = timeline(run, order_id)
    assert view["fulfilment"] == "delivered"
    assert [p["status"] for p in view["parcels"]] == ["delivered"]


def carrier_code_of(com: str) -> str:
    from chalicelib.tracking.couriers import kuaidi100

    return kuaidi100.carrier_for(com)


def test_orders_from_every_simulated_marketplace_ship_and_each_shop_shows_its_tracking(
        running_stack: dict[str, Any]) -> None:
    """Issue 6's story: a paid order in each simulated shop reaches us (signed as its platform
    signs, maybe twice or late), the factory ships it, and the shop receives the carrier and
    tracking number; an order whose notification was dropped is found by reconciliation."""
    from devstack.stack import SHOPS

    run = running_stack["run"]
    shops = run["marketplaces"]
    assert len(shops) >= 8  # six by webhook, Amazon by SQS, Taobao by TMC polling
    shop_of = dict(SHOPS)

    def place(platform: str, **options: Any) -> str:
        answer = requests.post(f"{shops[platform]}/_sim/orders", json=options, timeout=10)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["external_id"])

    placed = [(platform, place(platform)) for platform in shops]
    lost = ("woocommerce", place("woocommerce", drop=True))

    def on_shop(platform: str, external_id: str) -> dict[str, Any] | None:
        found = requests.get(f"{shops[platform]}/_sim/orders", timeout=10).json()
        order: dict[str, Any] = next(o for o in found if o["external_id"] == external_id)
        return order if order["status"] == "shipped" else None

    for platform, external_id in [*placed, lost]:
        order = wait_for(f"{platform} order {external_id} shipped on the shop",
                         lambda p=platform, e=external_id: on_shop(p, e), timeout=240)
        (shipment,) = order["shipments"]
        ours = timeline(run, order_id_for(platform, shop_of[platform], external_id))
        packages = [p for s in ours["job"]["shipments"] for p in s["packages"]]
        assert [p["tracking_number"] for p in packages] == [shipment["tracking_number"]]
        kinds = [e["type"] for e in ours["timeline"]]
        assert kinds.count("order.received") == 1 and kinds.count("job.created") == 1
        assert kinds.count("marketplace.shipped") == 1
    # Its only notification before it shipped was dropped (the shop notifies again after the
    # writeback): reconciliation brought it.
    assert on_shop(*lost)["notifications"][0] == "dropped"  # type: ignore[index]
    found = timeline(run, order_id_for(lost[0], shop_of[lost[0]], lost[1]))
    received = next(e for e in found["timeline"] if e["type"] == "order.received")
    assert received["actor"].startswith("reconcile-woocommerce")


def test_make_run_prints_electronic_waybills_and_the_factory_ships_them_without_its_own(
        running_stack: dict[str, Any]) -> None:
    """Issue 17's story: a plain order is labelled through the courier network's Kuaidi100
    label desk (a PNG), a Taobao order whose receiver arrives masked through the shop's Cainiao
    channel and a Douyin order whose receiver arrives encrypted through Douyin's e-waybill
    (their print data), the factory ships them under the issued numbers without bringing its
    own, the courier tracks them and the shop is told that number; an order cancelled after
    print gives its number back (the label desk saw the cancel)."""
    from devstack.stack import SHOPS

    run, labels = running_stack["run"], Path(running_stack["labels"])
    shops = run["marketplaces"]
    plain, _ = send_order(run)
    cancel_me, _ = send_order(run)
    placed = {}
    for platform in ("taobao", "douyin"):
        answer = requests.post(f"{shops[platform]}/_sim/orders", json={}, timeout=10)
        assert answer.status_code == 201, answer.text
        placed[platform] = str(answer.json()["external_id"])
    taobao_external = placed["taobao"]
    taobao = order_id_for("taobao", dict(SHOPS)["taobao"], taobao_external)
    douyin = order_id_for("douyin", dict(SHOPS)["douyin"], placed["douyin"])

    def issued_at_print(order_id: str) -> list[str]:
        view = timeline(run, order_id)
        printed = (view or {}).get("job", {}).get("printed") or {}
        return list(printed.get("waybill_numbers") or [])

    def desk() -> dict[str, dict[str, Any]]:
        found = requests.get(f"{run['courier']}/_sim/labels", timeout=10).json()["labels"]
        return {label["number"]: label for label in found}

    # Cancelled after print: the factory intercepts it, and its number goes back to the desk.
    (withdrawn,) = wait_for("the job printed", lambda: issued_at_print(cancel_me))
    answer = amend(run, cancel_me, {"kind": "cancel", "reason": "buyer cancelled"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["change"]["status"] == "intercept_requested"

    for order_id in (plain, taobao, douyin):
        wait_for(f"{order_id} tracked", lambda o=order_id: "shipment.tracking_started"
                 in events(run, o), timeout=180)
    (plain_number,) = issued_at_print(plain)
    (taobao_number,) = issued_at_print(taobao)
    (douyin_number,) = issued_at_print(douyin)
    for order_id, number in ((plain, plain_number), (taobao, taobao_number),
                             (douyin, douyin_number)):
        job = timeline(run, order_id)["job"]
        shipped = [p["tracking_number"] for s in job["shipments"] for p in s["packages"]]
        assert shipped == [number]  # the issued number, not one of the factory's

    # The plain label: the desk issued that number for this job's package; its PNG was saved.
    assert plain_number in desk() and not desk()[plain_number]["cancelled"]
    assert (labels / f"{plain_number}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # The Taobao label: issued by the shop's Cainiao channel against the order's OAID (the
    # receiver reached us masked); its print data saved for Cainiao's print component.
    ship_to = timeline(run, taobao)["job"]["ship_to"]
    assert ship_to["oaid"] and "*" in ship_to["name"] and "*" in ship_to["phone"]
    cainiao = requests.get(f"{shops['taobao']}/_sim/waybills", timeout=10).json()
    assert taobao_number in cainiao["issued"].values()
    saved = json.loads((labels / f"{taobao_number}.cainiao.json").read_text(encoding="utf-8"))
    assert saved["waybill_number"] == taobao_number and saved["print_data"]
    assert saved["template_url"]
    # The Douyin label: issued by the shop's e-waybill against the order's ciphertexts; CS sees
    # the masked text.
    ship_to = timeline(run, douyin)["job"]["ship_to"]
    assert ship_to["encrypted"]["name"].startswith("#") and "*" in ship_to["name"]
    issued = requests.get(f"{shops['douyin']}/_sim/waybills", timeout=10).json()["issued"]
    assert douyin_number in issued.values()
    saved = json.loads((labels / f"{douyin_number}.douyin.json").read_text(encoding="utf-8"))
    assert saved["waybill_number"] == douyin_number and saved["print_data"]

    # Tracking follows the issued numbers: the courier was asked about them.
    parcels = wait_for("both parcels at the courier", lambda: (lambda found: found if {
        plain_number, taobao_number} <= set(found) else None)({
            p["num"]: p for p in requests.get(f"{run['courier']}/_sim/parcels",
                                              timeout=10).json()["parcels"]}))
    assert parcels[plain_number]["issued_here"] and not parcels[taobao_number]["issued_here"]
    # Write-back follows them: the shop shows the issued number.
    shop_order = wait_for("the Taobao order shipped on the shop", lambda: next(
        (o for o in requests.get(f"{shops['taobao']}/_sim/orders", timeout=10).json()
         if o["external_id"] == taobao_external and o["status"] == "shipped"), None),
        timeout=120)
    assert [s["tracking_number"] for s in shop_order["shipments"]] == [taobao_number]

    wait_for("the cancelled job's number given back", lambda: desk()[withdrawn]["cancelled"])
    cancelled = timeline(run, cancel_me)["job"]
    assert cancelled["work"] == "cancelled" and not cancelled["shipments"]


def test_make_run_shows_each_expiring_shop_token_refreshed_and_rotated_again(
        running_stack: dict[str, Any]) -> None:
    """Issue 14: the simulated shops' access ends within a minute; the functions renew it
    (one INFO line per renewal, no token in it) and the rotated refresh token renews it again
    (a spent one would be refused and raise a case)."""
    output: list[str] = running_stack["output"]
    platforms = ("shopify", "douyin", "tiktok_shop", "shopee", "lazada", "taobao")

    def renewed() -> set[str]:
        return {p for line in list(output) for p in platforms
                if f"token refreshed for {p} shop" in line}

    wait_for("a token refresh of every expiring platform", lambda: renewed() == set(platforms),
             timeout=150)
    wait_for("a second Taobao renewal with the rotated refresh token",
             lambda: any("taobao" in line and "shop token refreshed (#2)" in line
                         for line in list(output)), timeout=90)
    text = "".join(list(output))
    assert "reauthorisation_needed" not in text and "token refresh refused" not in text
    # The tokens now in the shops' parameters (the local endpoint's SSM) are in no log line.
    import boto3

    from devstack.stack import SHOPS

    ssm = boto3.client("ssm", endpoint_url=running_stack["run"]["aws"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    for platform, shop in SHOPS:
        if platform in platforms:
            kept = json.loads(ssm.get_parameter(
                Name=f"/order-backbone/local/shops/{platform}/{shop}",
                WithDecryption=True)["Parameter"]["Value"])
            assert kept["refresh_token"] not in text
            assert kept.get("access_token", kept.get("session")) not in text


def test_bad_signature_is_refused_over_real_http(running_stack: dict[str, Any]) -> None:
    run = running_stack["run"]
    response = requests.post(f"{run['api']}/webhooks/shopify", data=b'{"id": 1}', timeout=10,
                             headers={"Content-Type": "application/json",
                                      "X-Shopify-Hmac-Sha256": "AAAA",
                                      "X-Shopify-Webhook-Id": "x"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"


def test_ctrl_c_stops_everything_and_frees_the_ports(running_stack: dict[str, Any]) -> None:
    process: subprocess.Popen[str] = running_stack["process"]
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    for port in running_stack["ports"].values():
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", int(port))) != 0, f"port {port} still taken"
