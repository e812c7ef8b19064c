"""The I/O edge every marketplace adapter shares: paced, with platform trouble retryable."""

from __future__ import annotations

import pytest
import responses

from chalicelib.core import http
from chalicelib.marketplaces.calls import ApiCall, Pace

URL = "https://api.example.com/orders"


@responses.activate
def test_a_paced_operation_waits_for_its_rate_after_the_burst(
        monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(http.time, "sleep", slept.append)
    monkeypatch.setattr(http.time, "monotonic", lambda: 100.0)  # no time passes
    monkeypatch.setattr(http, "_pacers", {})
    responses.get(URL, json={})
    call = ApiCall(method="GET", url=URL, pace=Pace(key="test.op", rate=2.0, burst=2))
    for _ in range(4):
        http.send(call)
    assert slept == [0.5, 1.0]  # two at once, then one every half second
    http.send(call.model_copy(update={"pace": None}))  # unpaced calls never wait
    http.send(call.model_copy(update={"pace": Pace(key="test.other", rate=2.0)}))
    assert slept == [0.5, 1.0]  # and each operation has its own pace


@responses.activate
@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retryable(status: int) -> None:
    responses.get(URL, status=status)
    with pytest.raises(http.PlatformUnavailable):
        http.send(ApiCall(method="GET", url=URL))
