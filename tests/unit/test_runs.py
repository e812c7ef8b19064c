"""Scheduled runs' budget and pool (chalicelib/core/runs.py): no AWS, real threads."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from chalicelib.core import observability, runs
from tests.budgets import BudgetUntil


class Context:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_the_budget_leaves_the_margin_and_never_passes_the_schedules_interval() -> None:
    roomy = runs.Budget.of(Context(90_000), most=57, margin=20)
    assert 56 < roomy.left() <= 57  # the interval wins
    tight = runs.Budget.of(Context(30_000), most=57, margin=20)
    assert 9 < tight.left() <= 10  # Lambda's time less the margin
    late = runs.Budget.of(Context(5_000), most=57, margin=20)
    assert late.spent()  # less left than the margin: take nothing
    none = runs.Budget.of(None, most=3, margin=1)
    assert 2 < none.left() <= 3
    now = datetime(2026, 5, 4, tzinfo=UTC)
    # Held until Lambda would stop the function, and a grace beyond.
    assert roomy.hold_until(now) == now + timedelta(seconds=90) + runs.GRACE


def test_the_pool_keeps_to_its_lanes_and_workers() -> None:
    lock = threading.Lock()
    now_in: Counter[str] = Counter()
    most: Counter[str] = Counter()
    total = [0, 0]  # in hand, most in hand

    def work(item: tuple[str, int]) -> None:
        with lock:
            now_in[item[0]] += 1
            most[item[0]] = max(most[item[0]], now_in[item[0]])
            total[0] += 1
            total[1] = max(total[1], total[0])
        time.sleep(0.02)
        with lock:
            now_in[item[0]] -= 1
            total[0] -= 1

    items = [("slow", n) for n in range(20)] + [("a", n) for n in range(10)] + [
        ("b", n) for n in range(10)]
    done = runs.work_through("test-lanes", items, work, budget=runs.Budget.seconds(30),
                             lane=lambda item: item[0], workers=6, per_lane=2)
    assert done == 40
    assert max(most.values()) == 2 and total[1] <= 6
    # The lanes behind the first one's twenty items did not wait for them.
    assert most["a"] == most["b"] == 2


def test_the_pool_starts_nothing_once_the_budget_is_spent_and_finishes_what_it_holds() -> None:
    started: list[int] = []
    finished: list[int] = []

    def work(n: int) -> None:
        started.append(n)
        time.sleep(0.1)
        finished.append(n)

    done = runs.work_through("test-budget", iter(range(1000)), work,
                             budget=BudgetUntil.after(lambda: len(finished) >= 4),
                             lane=lambda n: "x", workers=2, per_lane=2)
    assert done == len(started) == len(finished)
    assert 4 <= done <= 4 + 2  # the four, and the two in hand when the budget ran out


def test_follow_ups_take_turns_with_the_other_lanes() -> None:
    order: list[str] = []
    lock = threading.Lock()

    def page(item: tuple[str, int]) -> tuple[str, int] | None:
        with lock:
            order.append(f"{item[0]}{item[1]}")
        return (item[0], item[1] + 1) if item[1] < 3 else None

    runs.work_through("test-turns", [("p", 1), ("q", 1), ("r", 1)], page,
                      budget=runs.Budget.seconds(30), lane=lambda item: item[0], workers=1,
                      per_lane=1)
    assert order == ["p1", "q1", "r1", "p2", "q2", "r2", "p3", "q3", "r3"]


def test_each_item_runs_with_the_callers_log_keys_and_counts_add_up() -> None:
    seen: list[object] = []

    def work(n: int) -> None:
        seen.append(observability.current_keys().get("run"))
        observability.count("Items", kind="test")

    with observability.unit(run="r-1"):
        runs.work_through("test-keys", range(200), work, budget=runs.Budget.seconds(30),
                          lane=lambda n: str(n % 4), workers=8, per_lane=2)
    assert seen == ["r-1"] * 200
