"""The real local stack, as `make run` starts it: local AWS, `chalice local`, the event runner
and the simulated factory (the reference partner client).

Signed Shopify orders go in over HTTP; the factory claims, prints, packs and ships them; CS
cancels one before print and re-addresses one after; the timelines and the partner's change
feed show each outcome; Ctrl-C stops everything and frees the ports.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.local.demo import NEW_ADDRESS, amend, send_order
from chalicelib.local.stack import ROOT
from tests.conftest import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_file = tmp_path_factory.mktemp("stack") / "run.json"
    ports = {"LOCAL_API_PORT": str(free_port()), "LOCAL_AWS_PORT": str(free_port())}
    env = {**os.environ, **ports, "LOCAL_RUN_FILE": str(run_file),
           "LOCAL_FACTORY_PRINT_SECONDS": "6"}
    for name in ("AWS_ENDPOINT_URL", "INBOX_TABLE", "ORDERS_TABLE", "JOBS_TABLE"):
        env.pop(name, None)  # the stack must set up its own
    process = subprocess.Popen([sys.executable, "-m", "chalicelib.local.stack"], cwd=ROOT,
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
        process.kill()
        pytest.fail("stack did not come up:\n" + "".join(output[-50:]))
    # Keep reading its output, or a full pipe would block the stack's logging.
    threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True).start()
    run = json.loads(Path(run_file).read_text())
    yield {"run": run, "process": process, "ports": ports, "output": output}
    if process.poll() is None:
        process.kill()


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
    assert events(run, plain) == ["order.received", "job.created", "job.accepted",
                                  "job.printed", "job.picked", "job.packed", "job.shipped"]
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
