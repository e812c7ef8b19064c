"""A run's budget that runs out on what the run did, not on the wall clock: how long a loaded
CI machine takes says nothing about the rule the budget tests check (no item starts once the
budget is spent; the items in hand finish; the next run goes on)."""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.core import runs


class BudgetUntil(runs.Budget):
    """Spent as soon as `done()` says so; until then it never is."""

    done: Callable[[], bool]

    @classmethod
    def after(cls, done: Callable[[], bool]) -> BudgetUntil:
        base = runs.Budget.seconds(60)
        budget = cls(base.started_at, base.stop_at, base.ends_at)
        object.__setattr__(budget, "done", done)  # a frozen dataclass: set once, here
        return budget

    def left(self) -> float:
        return 0.0 if self.done() else 0.05  # short waits, so the pool looks again soon
