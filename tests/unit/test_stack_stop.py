"""`make run` stops on SIGTERM, however many arrive and whenever they land (issue 12, finding 8:
a handler that set a threading.Event could deadlock on the Event's own lock)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The main thread waits as `make run` does while another thread fires SIGTERM as fast as it
# can: with a handler that took a lock the waiting thread can hold, this hangs within seconds.
STORM = textwrap.dedent("""
    import os, signal, threading, time
    from devstack.stack import StopSignal

    stop = StopSignal().install(signal.SIGTERM)

    def storm() -> None:
        for _ in range(20000):
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=storm, daemon=True).start()
    started = time.monotonic()
    while time.monotonic() - started < 2:
        stop.wait(0.0001)
    print("stopped" if stop.requested else "never asked")
""")


def test_a_storm_of_sigterms_never_wedges_the_main_thread() -> None:
    done = subprocess.run([sys.executable, "-c", STORM], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert (done.returncode, done.stdout.strip()) == (0, "stopped"), done.stderr

