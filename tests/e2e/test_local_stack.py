"""The real local stack, as `make run` starts it: moto server, `chalice local`, event runner.

A signed Shopify order goes in over HTTP; the warehouse claims and ships its job over HTTP;
CS reads the timeline; Ctrl-C stops everything and frees the ports.
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

from chalicelib.local.demo import send_order
from chalicelib.local.stack import ROOT
from tests.conftest import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    run_file = tmp_path_factory.mktemp("stack") / "run.json"
    ports = {"LOCAL_API_PORT": str(free_port()), "LOCAL_AWS_PORT": str(free_port())}
    env = {**os.environ, **ports, "LOCAL_RUN_FILE": str(run_file)}
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


def wait_for_job(api: str, key: str, order_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = requests.post(f"{api}/warehouse/v1/jobs/claim", json={"max_jobs": 100},
                               headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
        for job in answer["jobs"]:
            if job["order_id"] == order_id:
                return {**job, "lease_id": answer["lease_id"]}
        time.sleep(0.5)
    raise AssertionError(f"no job for {order_id} within {timeout} s")


def test_order_flows_from_webhook_to_shipped(running_stack: dict[str, Any]) -> None:
    run = running_stack["run"]
    api = run["api"]
    order_id, response = send_order(run)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"

    job = wait_for_job(api, run["partner_key"], order_id)
    partner = {"Authorization": f"Bearer {run['partner_key']}"}
    report = {"lease_id": job["lease_id"],
              "packages": [{"carrier_code": "STO", "tracking_number": "773012345678901"}]}
    shipped = requests.post(f"{api}/warehouse/v1/jobs/{job['job_id']}/ship", json=report,
                            headers=partner, timeout=10)
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["work"] == "shipped"

    view = requests.get(f"{api}/cs/v1/orders/{order_id}", timeout=10,
                        headers={"Authorization": f"Bearer {run['cs_key']}"}).json()
    assert [e["type"] for e in view["timeline"]] == ["order.received", "job.created",
                                                     "job.shipped"]
    assert view["job"]["packages"][0]["tracking_number"] == "773012345678901"


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
