"""`python -m bench [name ...]`: run the benchmarks, each in a fresh interpreter of its own.

Every benchmark prints its details and ends with one line `BENCH <name>: <figure> (budget ...)
ok|over`. Exits non-zero if any benchmark is over budget, failed, or printed no such line.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from bench.stack import ROOT

BENCHMARKS = ("aws_calls", "webhook_latency", "cold_start", "job_calls", "claim_latency",
              "tracking_cost", "cs_burst", "fault_storm", "schedule_capacity", "claim_contention",
              "order_search", "console_pages", "bill_import", "report_month",
              "print_wave")
TIME_LIMIT = 900  # seconds per benchmark
# cs_burst drives 10,000 events through moto, which serialises every DynamoDB call: ~12 min here;
# fault_storm 2,000 orders through every step: ~8 min alone, more beside other work.
# console_pages seeds 52,000 items and serves each page 40-odd times through moto: ~7 min alone.
# report_month: moto walks the whole table for each of the ~50 Query pages the bill, the report
# and their floors read over 15,000 parcels: ~11 min alone.
TIME_LIMITS = {"cs_burst": 1500, "fault_storm": 1500, "console_pages": 1200,
               "report_month": 1500}


def run(name: str) -> tuple[str, list[str]]:
    """Run one benchmark, echoing its output; returns (status, its BENCH lines)."""
    print(f"=== bench.{name}", flush=True)
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", f"bench.{name}"], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
    watchdog = threading.Timer(TIME_LIMITS.get(name, TIME_LIMIT), child.kill)
    watchdog.start()
    figures = []
    assert child.stdout is not None
    for line in child.stdout:
        print(line, end="", flush=True)
        if line.startswith("BENCH "):
            figures.append(line.strip())
    code = child.wait()
    watchdog.cancel()
    print(f"=== bench.{name}: exit {code} after {time.monotonic() - started:.0f} s\n", flush=True)
    if len(figures) != 1:
        return "failed", figures or [f"BENCH {name}: no figure (exit {code}) failed"]
    if figures[0].endswith(" ok") and code == 0:
        return "ok", figures
    if figures[0].endswith(" over"):
        return "over", figures
    return "failed", figures


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
        return 2
    results = [(name, *run(name)) for name in names]
    print("=== summary")
    for _, _, figures in results:
        for figure in figures:
            print(figure)
    bad = [f"{name} ({status})" for name, status, _ in results if status != "ok"]
    if bad:
        print(f"not within budget: {', '.join(bad)}")
        return 1
    print("all benchmarks within budget")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
