"""The token buckets of chalicelib.core.ratelimit: peeking (failed authentication is checked
before the key lookup and counted after it) and bounded memory."""

from __future__ import annotations

import pytest

from chalicelib.core.ratelimit import MAX_TRACKED, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_wait_tells_without_taking() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=2, clock=clock)
    assert bucket.wait("a") == 0
    assert bucket.take("a") == bucket.take("a") == 0
    assert bucket.wait("a") == pytest.approx(1.0)
    assert bucket.wait("a") == pytest.approx(1.0)  # still: waiting took nothing
    clock.now = 1.0
    assert bucket.wait("a") == 0 and bucket.take("a") == 0


def test_a_process_forgets_full_buckets_when_it_tracks_too_many() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=5, clock=clock)
    for n in range(MAX_TRACKED + 1):
        bucket.take(f"addr-{n}")
    clock.now = 10.0  # every bucket has refilled
    bucket.take("one-more")
    assert len(bucket._tokens) <= 2
