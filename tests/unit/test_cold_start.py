"""What `import app` does on a cold start, seen from a fresh interpreter (bench/cold_start.py
measures what it costs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# Counts the collector's runs once the app's imports have begun (chalice is the first);
# reports the state the import leaves.
_SCRIPT = """\
import gc, json, sys
runs = []
gc.callbacks.append(lambda phase, info: runs.append(info["generation"])
                    if phase == "start" and "chalice" in sys.modules else None)
import app
during_import = len(runs)
from chalicelib.marketplaces import calls
from chalicelib.orders import order
deferred = {model.__name__: bool(model.__pydantic_complete__) for model in (
    order.OrderEvent, order.Decision, calls.OrderRef, calls.Shipped, calls.WritebackResult)}
ref = calls.OrderRef(shop="s", external_id="1")
print(json.dumps({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count(),
                  "during_import": during_import, "deferred": deferred,
                  "built_on_use": bool(calls.OrderRef.__pydantic_complete__),
                  "ref": ref.model_dump(mode="json")}))
"""


def _last_line(script: str) -> str:
    """What a fresh interpreter running `script` printed last."""
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, cwd=ROOT, env=env)
    return done.stdout.strip().splitlines()[-1]


def _fresh_import() -> dict[str, Any]:
    report: dict[str, Any] = json.loads(_last_line(_SCRIPT))
    return report


def test_importing_the_app_runs_no_collection_and_leaves_the_collector_on() -> None:
    """Without app.py's gc.disable() the import runs about a hundred collections; without
    gc.freeze() nothing is frozen; without gc.enable() requests would never collect."""
    report = _fresh_import()
    assert report["during_import"] == 0
    assert report["enabled"] is True
    assert report["frozen"] > 10_000  # the app's modules, classes and validators


def test_models_a_webhook_does_not_use_are_built_on_first_use() -> None:
    report = _fresh_import()
    assert report["deferred"] == dict.fromkeys(
        ("OrderEvent", "Decision", "OrderRef", "Shipped", "WritebackResult"), False)
    assert report["built_on_use"] is True
    assert report["ref"]["shop"] == "s" and report["ref"]["external_id"] == "1"


def test_a_host_that_turned_collection_off_finds_it_off_after_the_import() -> None:
    assert _last_line("import gc\ngc.disable()\nimport app\nprint(gc.isenabled())") == "False"
