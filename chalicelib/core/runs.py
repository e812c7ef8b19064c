"""Scheduled runs: a time budget read from the Lambda context, and a small pool of threads that
works through a run's items a few at a time per lane (a marketplace, a courier provider, a shop).

A schedule fires every minute (or 5, or 15) whether or not the last run is done, and Lambda
stops a function at its timeout wherever it is. So a run works to a `Budget`: it starts no new
item once `stop_at` has passed (the items in hand finish: their HTTP calls have timeouts), and
everything it holds (its lease, its claims) is held until `hold_until`: the moment Lambda would
stop it plus a grace, so a holder that is still working is never overtaken, and one that was
stopped is, soon after.

The pool (`work_through`) takes the items in order (oldest first) and keeps at most `workers`
in hand, at most `per_lane` of them in one lane, so one slow or paced marketplace or provider
holds a few threads, never all of them, and the others go on. An item's work may hand back a
follow-up (a shop's next page), which goes to the back of the line: lanes take turns. Each item
runs in a copy of the caller's context (its log keys). The threads are kept between runs of a
warm function, and with them each thread's keep-alive HTTP sessions (chalicelib/core/http.py).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

log = logging.getLogger(__name__)

GRACE = timedelta(seconds=30)  # a lease or claim outlives the end of its holder by this
T = TypeVar("T")


def remaining_seconds(context: Any) -> float | None:
    """What Lambda's context says is left of the invocation; None without one (a direct call)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return None if remaining is None else max(0.0, float(remaining()) / 1000)


@dataclass(frozen=True)
class Budget:
    """A run's time, on the monotonic clock: no new item after `stop_at`; the invocation ends
    (Lambda stops it) at `ends_at`."""

    started_at: float
    stop_at: float
    ends_at: float

    @classmethod
    def of(cls, context: Any, *, most: float, margin: float) -> Budget:
        """From the Lambda context: work at most `most` seconds (a schedule's interval, less a
        little, so a run ends before the next tick), and stop `margin` seconds before Lambda
        would stop the function (the time the items in hand may still take). Without a
        context, `most` seconds."""
        now = time.monotonic()
        left = remaining_seconds(context)
        if left is None:
            return cls(now, now + most, now + most + margin)
        return cls(now, now + max(0.0, min(most, left - margin)), now + left)

    @classmethod
    def seconds(cls, seconds: float, *, margin: float = 0.0) -> Budget:
        now = time.monotonic()
        return cls(now, now + seconds, now + seconds + margin)

    def left(self) -> float:
        return self.stop_at - time.monotonic()

    def spent(self) -> bool:
        return self.left() <= 0

    def hold_until(self, now: datetime) -> datetime:
        """Until when a lease or a claim taken by this run must hold, for a run whose moment
        is `now` (when the budget began): the invocation's end, plus a grace."""
        return now + timedelta(seconds=self.ends_at - self.started_at) + GRACE


_pools: dict[str, tuple[ThreadPoolExecutor, int]] = {}
_pools_lock = threading.Lock()


def _pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The run's threads, kept between invocations of a warm function."""
    with _pools_lock:
        found = _pools.get(name)
        if found is None or found[1] < workers:  # grown when asked for more, never shrunk
            found = _pools[name] = (ThreadPoolExecutor(workers, thread_name_prefix=name),
                                    workers)
        return found[0]


READS = "reads"  # the pool of a request's independent reads (`started`)
READ_WORKERS = 8  # the most reads one page starts at once (Today: seven Queries)


def started(call: Callable[..., T], *args: Any) -> Future[T]:
    """`call(*args)` begun on a kept pool, in a copy of the caller's context (its deadline and
    log keys): a request's reads that do not wait on each other go to DynamoDB at once, so the
    request waits for the slowest of them rather than their sum. (The local endpoint serves
    one call at a time: there they still queue, and only our side of each call overlaps.)"""
    return _pool(READS, READ_WORKERS).submit(contextvars.copy_context().run, call, *args)


def work_through(name: str, items: Iterable[T], work: Callable[[T], T | None], *,
                 budget: Budget, lane: Callable[[T], str], workers: int,
                 per_lane: int) -> int:
    """`work(item)` for the items in order, at most `workers` at once and `per_lane` per lane,
    starting none once the budget is spent; a follow-up item `work` returns joins the back of
    the line. Waits for the items in hand; returns how many were worked. `items` is read
    lazily (a little ahead, to find items of lanes that are not full), so what the budget does
    not reach is never read."""
    source = iter(items)
    exhausted = False
    waiting: deque[T] = deque()  # read, not started
    later: deque[T] = deque()  # follow-ups
    busy: dict[Future[T | None], str] = {}
    per: dict[str, int] = {}
    lookahead = max(100, workers * 10)
    done = 0
    pool = _pool(name, workers)

    def start(item: T, key: str) -> None:
        busy[pool.submit(contextvars.copy_context().run, work, item)] = key
        per[key] = per.get(key, 0) + 1

    def start_one() -> bool:
        """Start the first item whose lane has room: of those read, then of those still to
        read, then of the follow-ups (every item has its turn before any goes again)."""
        nonlocal exhausted
        for line in (waiting, later):
            for index, item in enumerate(line):
                key = lane(item)
                if per.get(key, 0) < per_lane:
                    del line[index]
                    start(item, key)
                    return True
            if line is later:
                break
            while not exhausted and len(waiting) < lookahead:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                key = lane(item)
                if per.get(key, 0) < per_lane:
                    start(item, key)
                    return True
                waiting.append(item)
            if not exhausted:
                return False  # read far enough ahead: wait for a lane to free
        return False

    def finished(futures: Iterable[Future[T | None]], follow: bool) -> None:
        nonlocal done
        for future in futures:
            key = busy.pop(future)
            per[key] -= 1
            done += 1
            try:
                follow_up = future.result()
            except Exception:  # the item's own work logs what it knows; this is the net
                log.exception("%s: an item failed", name)
                continue
            if follow and follow_up is not None:
                later.append(follow_up)

    while not budget.spent():
        while len(busy) < workers and start_one():
            pass
        if not busy:
            break  # nothing in hand and nothing more that can start: all done
        finished(wait(list(busy), timeout=max(0.0, budget.left()),
                      return_when=FIRST_COMPLETED).done, follow=True)
    finished(wait(list(busy)).done, follow=False)  # the items in hand finish
    return done
