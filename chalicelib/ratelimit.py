"""Per-key rate limiting: a token bucket per API key, answered with 429 and Retry-After.

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

from chalicelib.errors import ApiError


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


_bucket: TokenBucket | None = None


def check(key_id: str) -> None:
    global _bucket
    if _bucket is None:
        from chalicelib.config import settings

        _bucket = TokenBucket(settings().rate_limit_per_second, settings().rate_limit_burst)
    wait = _bucket.take(key_id)
    if wait:
        raise ApiError(429, "rate_limited", "too many requests for this key; slow down",
                       retry_after=max(1, math.ceil(wait)))


def reset() -> None:
    global _bucket
    _bucket = None
