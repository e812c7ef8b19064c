"""Without Chromium, `make test` says the browser tests were skipped and how to install it
(issue 15): they are skipped, not failed, and the run's summary has the line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_chromium_skips_the_browser_tests_and_says_how_to_install_it() -> None:
    env = {**os.environ, "CHROMIUM": "/nonexistent/chromium"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/browser"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" not in done.stdout and " failed" not in done.stdout
    assert "skipped" in done.stdout
    assert "browser tests skipped" in done.stdout
    assert "apt-get install chromium" in done.stdout
