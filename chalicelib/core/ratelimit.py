"""Rate limits. Ours: a token bucket per API key, answered with 429 and Retry-After. Theirs:
`Pacer` waits so our calls stay within a provider's or marketplace's documented rate.

Held in the process: it costs no AWS call per request (the warehouse protocol's budget is a
dozen DynamoDB calls per job). Each warm Lambda instance keeps its own buckets, so a key that
is served by N instances at once can reach N times the rate; API Gateway's stage throttling
caps the total. Configure with RATE_LIMIT_PER_SECOND and RATE_LIMIT_BURST.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from chalicelib.core.errors import ApiError


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed; otherwise the seconds until a token is back."""
        with self._lock:
            now = self._clock()
            tokens, at = self._tokens.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1:
                self._tokens[key] = (tokens - 1, now)
                return 0.0
            self._tokens[key] = (tokens, now)
            return (1 - tokens) / self.rate


class Pacer:
    """At most `rate` calls per second after a burst of `burst`, by waiting (GCRA).

    Per process, like chalicelib.core.ratelimit: N warm instances may reach N times the rate, which
    the providers' own 429s then slow down. The schedule is computed, not polled, so a fake
    clock in tests cannot spin on a wait too small to advance it.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float],
                 sleep: Callable[[float], None]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._interval, self._burst = 1.0 / rate, burst
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")  # theoretical arrival time of the next call
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            arrival = max(self._next, now)
            allowed_at = arrival - (self._burst - 1) * self._interval
            self._next = arrival + self._interval
        if allowed_at > now:
            self._sleep(allowed_at - now)


_bucket: TokenBucket | None = None


def check(key_id: str) -> None:
    global _bucket
    if _bucket is None:
        from chalicelib.core.settings import settings

        _bucket = TokenBucket(settings().rate_limit_per_second, settings().rate_limit_burst)
    wait = _bucket.take(key_id)
    if wait:
        raise ApiError(429, "rate_limited", "too many requests for this key; slow down",
                       retry_after=max(1, math.ceil(wait)))


def reset() -> None:
    global _bucket
    _bucket = None
