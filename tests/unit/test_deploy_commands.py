"""README "Deploying" and the Makefile say the same: `make deploy` and `make bootstrap` run
exactly the commands the README shows (make -n prints them without running anything)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VALUES = {"STAGE": "prod", "BUCKET": "order-backbone-artifacts-123456789012-ap-southeast-1",
          "OPS_EMAIL": "ops@brand.cn", "CONSOLE_URL": "https://ops.brand.cn"}


def _commands(text: str) -> list[str]:
    """Shell lines with their continuations joined and spaces collapsed."""
    joined = re.sub(r"\\\n", " ", text)
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip()]


def _readme_block(after: str) -> list[str]:
    readme = (ROOT / "README.md").read_text()
    deploying = readme[readme.index("## Deploying"):readme.index("### Operating")]
    block = deploying[deploying.index(after):].split("```\n", 2)[1]
    for name, value in VALUES.items():
        block = block.replace(f"${name}", value)
    return _commands(block)


def _make(target: str) -> list[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", *VALUES)}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "package", "-o", ".venv/.installed-stamp",
         target, *(f"{k}={v}" for k, v in VALUES.items())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    return [line for line in _commands(done.stdout) if not line.startswith("test -n")]


def test_make_deploy_runs_the_readmes_commands() -> None:
    readme = _readme_block("Each deploy of a stage")
    assert readme[0] == f"make package STAGE={VALUES['STAGE']}"  # deploy's prerequisite
    assert _make("deploy") == readme[1:]
    assert len(readme) == 3


def test_make_bootstrap_runs_the_readmes_command() -> None:
    assert _make("bootstrap") == _readme_block("Once per account and region")


def test_the_deploy_needs_its_bucket_and_where_alarms_go() -> None:
    env = {k: v for k, v in os.environ.items() if k not in VALUES}
    done = subprocess.run(["make", "--no-print-directory", "-o", "package", "deploy"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode != 0 and "BUCKET=<artifacts bucket> is required" in done.stdout
