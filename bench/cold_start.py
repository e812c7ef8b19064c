"""Cold start: a fresh interpreter that imports `app` and answers one webhook, as a ratio of a
fresh interpreter that imports chalice and boto3 and makes one bare PutItem.

The local endpoint (moto) runs in this process with every resource provisioned; each child is
`sys.executable -c <script>` with the stack's environment, reading its input (the API Gateway
event, or the item) as JSON from stdin. Runs alternate webhook / baseline, after one untimed
run of each (files in the page cache); the figure is the ratio of medians. Our modules (app.py
and chalicelib/) are compiled first exactly as `make package` ships them (hash-checked bytecode
beside the sources): Lambda cannot write bytecode, and neither can a child here when
PYTHONDONTWRITEBYTECODE is set, so without it the webhook would pay for compiling every module
while the baseline's libraries load theirs from site-packages. The libraries the package
carries (pydantic, Powertools, chalice's runtime) ship with their bytecode too
(infra/package_bytecode.py), as the environment's site-packages holds them.

The clock is the parent's wall clock, from just before the child is spawned to the moment the
child's result line arrives (after the JSON log lines and the EMF metrics the app writes to
stdout, as in Lambda). That is the honest measure of a cold start: it includes exec,
interpreter start-up, site and .pth processing, all imports and the request, which a Lambda
cold start also pays, and it excludes the child's interpreter shutdown, which no caller waits
for. (A child timing itself would miss everything before its first line runs, and Linux
reports a process's start time only in 10 ms ticks.) Each child also reports its own phases
with `time.perf_counter`, printed as a breakdown.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.stack import (
    ROOT,
    LambdaContext,
    Orders,
    api_gateway_event,
    bare_item,
    local_stack,
    verdict,
)

NAME = "cold_start"
RUNS = 7
BUDGET = 1.30

_PREAMBLE = """\
import time
_t0 = time.perf_counter()
import json, sys
_input = json.load(sys.stdin)
_phases = {}
"""
_REPORT = """
print(json.dumps({"phases": _phases, "modules": sorted(sys.modules), "ok": _ok}), flush=True)
"""

WEBHOOK_CHILD = _PREAMBLE + """\
import app
_phases["import app"] = time.perf_counter() - _t0
_event, _context = _input["event"], type("LambdaContext", (), _input["context"])()
_response = app.app(_event, _context)
_phases["first webhook"] = time.perf_counter() - _t0 - _phases["import app"]
_ok = _response["statusCode"] == 200 and '"accepted"' in _response["body"]
""" + _REPORT

BASELINE_CHILD = _PREAMBLE + """\
import boto3
import chalice
_phases["import chalice, boto3"] = time.perf_counter() - _t0
boto3.session.Session().client("dynamodb").put_item(
    TableName=_input["table"], Item=_input["item"],
    ConditionExpression="attribute_not_exists(pk)")
_phases["bare PutItem"] = time.perf_counter() - _t0 - _phases["import chalice, boto3"]
_ok = True
""" + _REPORT


def _context_fields() -> dict[str, Any]:
    context = LambdaContext()
    return {name: getattr(context, name) for name in (
        "function_name", "function_version", "invoked_function_arn", "memory_limit_in_mb",
        "log_group_name", "log_stream_name", "aws_request_id")}


def run_child(script: str, payload: dict[str, Any], env: dict[str, str],
              extra_args: tuple[str, ...] = ()) -> tuple[float, dict[str, Any], str]:
    """Spawn a fresh interpreter; returns (wall seconds to its answer, its report, stderr)."""
    data = json.dumps(payload).encode()
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: stderr can be large
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, *extra_args, "-c", script], cwd=ROOT,
                                 env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=errors)
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(data)
        child.stdin.close()
        line = child.stdout.readline()
        while line.startswith(b"{") and b'"phases"' not in line:  # the app's log lines, EMF
            line = child.stdout.readline()
        elapsed = time.perf_counter() - started
        child.stdout.read()
        child.stdout.close()
        child.wait()
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if child.returncode != 0 or not line:
        raise RuntimeError(f"child failed ({child.returncode}): {stderr[-3000:]}")
    report: dict[str, Any] = json.loads(line)
    if not report["ok"]:
        raise RuntimeError(f"child's webhook was not accepted: {stderr[-3000:]}")
    return elapsed, report, stderr


# --- Diagnostics (untimed children) --------------------------------------------------------------

# The webhook route alone, on an app that registers nothing else: what a webhook needs (its
# log line and its metrics included).
ROUTE_ONLY_CHILD = _PREAMBLE + """\
from chalice.app import Chalice
from chalicelib.api import webhooks
from chalicelib.core import observability
_app = Chalice(app_name="order-backbone")
observability.install(_app)
_app.register_blueprint(webhooks.bp)
_response = _app(_input["event"], type("LambdaContext", (), _input["context"])())
_ok = _response["statusCode"] == 200
_phases["route only"] = time.perf_counter() - _t0
""" + _REPORT

# The first webhook under cProfile, summed over the functions that tell where its time goes.
PROFILED_CHILD = _PREAMBLE + """\
import app
import cProfile, pstats
_profile = cProfile.Profile()
_response = _profile.runcall(app.app, _input["event"],
                             type("LambdaContext", (), _input["context"])())
_ok = _response["statusCode"] == 200
_stats = pstats.Stats(_profile).stats
for _label, (_file, _function) in _input["probes"].items():
    _phases[_label] = sum(value[3] for (name, _, function), value in _stats.items()
                          if name.endswith(_file) and function == _function)
_phases["whole first webhook"] = sum(v[2] for v in _stats.values())
""" + _REPORT

FIRST_REQUEST_PROBES = {
    "aws.client() (botocore session + client)": ("chalicelib/core/aws.py", "client"),
    "  botocore get_session()": ("botocore/session.py", "get_session"),
    "  Session.create_client()": ("botocore/session.py", "create_client"),
    "the source's secrets: asking the extension": ("chalicelib/core/parameters.py", "_ask"),
    "the source's secrets: its answer": ("chalicelib/access/accounts_store.py", "finish"),
    "marketplaces.inbound_for() (lazy import)": ("chalicelib/marketplaces/__init__.py",
                                                 "inbound_for"),
    "inbox.put_delivery() (DynamoDB)": ("chalicelib/orders/inbox_store.py", "put_delivery"),
    "botocore _make_api_call (PutItem)": ("botocore/client.py", "_make_api_call"),
}


def _import_times(stderr: str) -> dict[str, int]:
    """Module -> self microseconds, from `-X importtime` output."""
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match:
            found[match[2]] = found.get(match[2], 0) + int(match[1])
    return found


def _by_package(modules: set[str], self_us: dict[str, int]) -> list[tuple[str, int, float]]:
    """(top-level package, module count, self ms), most expensive first."""
    count: dict[str, int] = defaultdict(int)
    micros: dict[str, int] = defaultdict(int)
    for module in modules:
        package = module.split(".")[0]
        count[package] += 1
        micros[package] += self_us.get(module, 0)
    return sorted(((p, count[p], micros[p] / 1000) for p in count), key=lambda t: -t[2])


def diagnose(env: dict[str, str], payload: Callable[[], dict[str, Any]],
             base_modules: set[str]) -> None:
    """Which modules the webhook child loads beyond the baseline, which of those a webhook
    does not need, what they cost to import, and where the first request's time goes."""
    _, app_report, stderr = run_child(WEBHOOK_CHILD, payload(), env, ("-X", "importtime"))
    self_us = _import_times(stderr)
    _, route_report, _ = run_child(ROUTE_ONLY_CHILD, payload(), env)
    app_modules, route_modules = set(app_report["modules"]), set(route_report["modules"])
    extra = app_modules - base_modules
    unneeded = app_modules - route_modules - {"app"}  # app.py itself: it does the registering
    print(f"Modules loaded beyond the baseline's {len(base_modules)}: {len(extra)}; import time "
          f"(self, -X importtime, one run) {sum(self_us.get(m, 0) for m in extra) / 1000:.1f} ms")
    for package, count, millis in _by_package(extra, self_us):
        print(f"  {package:<26} {count:>4} modules {millis:>7.1f} ms")
    print(f"Of these, not needed to answer a webhook (an app registering only the webhook route "
          f"does not load them): {len(unneeded)}, "
          f"{sum(self_us.get(m, 0) for m in unneeded) / 1000:.1f} ms self import time")
    for module in sorted(unneeded):
        print(f"  {module:<40} {self_us.get(module, 0) / 1000:>7.1f} ms")
    needed = sorted(m for m in route_modules - base_modules if m.startswith("chalicelib"))
    print(f"Our modules a webhook does need ({len(needed)}): {', '.join(needed)}")

    probes = {"probes": FIRST_REQUEST_PROBES, **payload()}
    _, profiled, _ = run_child(PROFILED_CHILD, probes, env)
    phases = profiled["phases"]
    whole = phases.pop("whole first webhook")
    print(f"First webhook after `import app`, under cProfile (which inflates it to "
          f"{whole * 1000:.0f} ms): cumulative time and share of the request")
    for label, seconds in phases.items():
        print(f"  {label:<44} {seconds * 1000:>7.1f} ms {100 * seconds / whole:>5.0f}%")


def main() -> int:
    with local_stack() as env:
        child_env = dict(os.environ)
        child_env.pop("PYTHONPROFILEIMPORTTIME", None)
        orders = Orders()
        context = _context_fields()

        def hook_payload() -> dict[str, Any]:
            return {"event": api_gateway_event(orders.delivery()), "context": context}

        def base_payload() -> dict[str, Any]:
            return {"table": env["INBOX_TABLE"], "item": bare_item(orders.delivery())}

        # The package's bytecode (the Makefile's `package` step), then one untimed run of each.
        subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode",
                        "checked-hash", "chalicelib", "app.py"], cwd=ROOT, check=True)
        run_child(WEBHOOK_CHILD, hook_payload(), child_env)
        run_child(BASELINE_CHILD, base_payload(), child_env)

        hook_times: list[float] = []
        base_times: list[float] = []
        hook_phases: dict[str, list[float]] = defaultdict(list)
        base_phases: dict[str, list[float]] = defaultdict(list)
        base_modules: set[str] = set()
        for i in range(2 * RUNS):
            if (i % 2 == 0) == (i // 2 % 2 == 0):  # W B, B W, W B ... : neither always first
                elapsed, report, _ = run_child(WEBHOOK_CHILD, hook_payload(), child_env)
                hook_times.append(elapsed)
                for phase, value in report["phases"].items():
                    hook_phases[phase].append(value)
            else:
                elapsed, report, _ = run_child(BASELINE_CHILD, base_payload(), child_env)
                base_times.append(elapsed)
                base_modules = set(report["modules"])
                for phase, value in report["phases"].items():
                    base_phases[phase].append(value)

        print(f"{RUNS} fresh interpreters each, alternating; wall time from spawn to answer "
              "(parent's clock), and the child's own phases (its clock, from its first line):")
        for label, times, phases in (("baseline: chalice+boto3, 1 PutItem", base_times,
                                      base_phases),
                                     ("webhook: import app, 1 webhook", hook_times,
                                      hook_phases)):
            print(f"  {label:<38} median {statistics.median(times) * 1000:7.1f} ms  "
                  f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})")
            for phase, values in phases.items():
                print(f"      {phase:<34} median {statistics.median(values) * 1000:7.1f} ms")
        diagnose(child_env, hook_payload, base_modules)

    ratio = statistics.median(hook_times) / statistics.median(base_times)
    within = ratio <= BUDGET
    print(f"BENCH {NAME}: {ratio:.2f}x (budget {BUDGET:g}x) {verdict(within)}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
