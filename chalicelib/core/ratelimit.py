"""Rate limits. Ours: a token bucket per API key (partner and CS keys alike), and one per source
address for failed authentication, both answered with 429 and Retry-After. Theirs: `Pacer`
waits so our calls stay within a provider's or marketplace's documented rate.

Held in the process: it costs no AWS call per request (the warehouse protocol's budget is a
dozen DynamoDB calls per job). Each warm Lambda instance keeps its own buckets, so a key that
is served by N instances at once can reach N times the rate; API Gateway's stage throttling
caps the total. Configure with RATE_LIMIT_PER_SECOND and RATE_LIMIT_BURST (per key), and
AUTH_FAILURES_PER_SECOND and AUTH_FAILURES_BURST (failed authentications per address: a
caller guessing keys is answered 429 before its next guess reaches the directory).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from chalicelib.core.errors import ApiError

# Buckets a process keeps before forgetting the full ones (addresses are many; keys are few).
MAX_TRACKED = 10_000


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def _refilled(self, key: str, now: float) -> float:
        tokens, at = self._tokens.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def take(self, key: str) -> float:
        """0 when allowed; otherwise the seconds until a token is back."""
        with self._lock:
            now = self._clock()
            tokens = self._refilled(key, now)
            if tokens >= 1:
                self._tokens[key] = (tokens - 1, now)
                self._forget_full(now)
                return 0.0
            self._tokens[key] = (tokens, now)
            return (1 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """What `take` would answer, without taking: 0 while a token is there."""
        with self._lock:
            tokens = self._refilled(key, self._clock())
            return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """A full bucket is the same as none: drop those when too many are kept (and all of
        them if that is not enough: memory stays bounded, whoever sends from many addresses)."""
        if len(self._tokens) > MAX_TRACKED:
            for key in [k for k in self._tokens if self._refilled(k, now) >= self.burst]:
                del self._tokens[key]
            if len(self._tokens) > MAX_TRACKED // 2:
                self._tokens.clear()


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
_failures: TokenBucket | None = None


def _limited(wait: float, message: str) -> ApiError:
    return ApiError(429, "rate_limited", message, retry_after=max(1, math.ceil(wait)))


def check(key_id: str) -> None:
    """One request of this key: 429 once its bucket is empty."""
    global _bucket
    if _bucket is None:
        from chalicelib.core.settings import settings

        _bucket = TokenBucket(settings().rate_limit_per_second, settings().rate_limit_burst)
    wait = _bucket.take(key_id)
    if wait:
        raise _limited(wait, "too many requests for this key; slow down")


def _failure_bucket() -> TokenBucket:
    global _failures
    if _failures is None:
        from chalicelib.core.settings import settings

        _failures = TokenBucket(settings().auth_failures_per_second,
                                settings().auth_failures_burst)
    return _failures


def check_failures(address: str) -> None:
    """Before a key is looked up: 429 while this address has spent its failed authentications."""
    wait = _failure_bucket().wait(address)
    if wait:
        raise _limited(wait, "too many failed authentications from your address; slow down")


def record_failure(address: str) -> None:
    """A failed authentication from this address (no key, or one we do not know)."""
    _failure_bucket().take(address)


def reset() -> None:
    global _bucket, _failures
    _bucket = None
    _failures = None
