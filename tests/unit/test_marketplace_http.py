"""Outbound HTTP: every adapter's one sender (paced), and the marketplaces' reading of its
answers (platform trouble is retryable)."""

from __future__ import annotations

import pytest
import requests
import responses

from chalicelib.core import http
from chalicelib.core.http import Pace, Request
from chalicelib.flows import marketplace_calls
from chalicelib.marketplaces.calls import PlatformUnavailable

URL = "https://api.example.com/orders"


@responses.activate
def test_a_paced_operation_waits_for_its_rate_after_the_burst(
        monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(http.time, "sleep", slept.append)
    monkeypatch.setattr(http.time, "monotonic", lambda: 100.0)  # no time passes
    monkeypatch.setattr(http, "_pacers", {})
    responses.get(URL, json={})
    call = Request(method="GET", url=URL, pace=Pace(key="test.op", rate=2.0, burst=2))
    for _ in range(4):
        http.send(call)
    assert slept == [0.5, 1.0]  # two at once, then one every half second
    http.send(call.model_copy(update={"pace": None}))  # unpaced calls never wait
    http.send(call.model_copy(update={"pace": Pace(key="test.other", rate=2.0)}))
    assert slept == [0.5, 1.0]  # and each operation has its own pace


@responses.activate
def test_calls_to_one_host_share_a_keep_alive_session() -> None:
    http.forget_sessions()
    responses.get(URL, json={})
    responses.get("https://other.example.com/x", json={})
    sessions: list[requests.Session] = []
    for url in (URL, URL + "?page=2", "https://other.example.com/x"):
        http.send(Request(method="GET", url=url))
        sessions.append(http._session(url))
    assert sessions[0] is sessions[1] and sessions[0] is not sessions[2]


@responses.activate
def test_no_answer_is_unreachable_without_the_url_in_the_error() -> None:
    secret_url = "https://api.example.com/hook?access_token=SECRET"
    responses.post(secret_url, body=requests.ConnectTimeout(f"timed out: {secret_url}"))
    with pytest.raises(http.Unreachable) as caught:
        http.send(Request(url=secret_url, json_body={"a": 1}))
    assert caught.value.kind == "connect" and not caught.value.reached
    assert "SECRET" not in str(caught.value) and caught.value.__cause__ is None
    responses.post(URL, body=requests.ReadTimeout("read timed out"))
    with pytest.raises(http.Unreachable) as late:
        http.send(Request(url=URL))
    assert late.value.kind == "timeout" and late.value.reached  # it may have arrived


def test_retrying_backs_off_only_for_what_it_is_told_to_retry() -> None:
    slept: list[float] = []
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("busy")
        return "ok"

    assert http.retrying(flaky, attempts=3, backoff_seconds=0.5,
                         retry_if=lambda e: isinstance(e, TimeoutError), sleep=slept.append) == "ok"
    assert slept == [0.5, 1.0]
    with pytest.raises(ValueError):
        http.retrying(lambda: int("x"), attempts=3, backoff_seconds=0.5,
                      retry_if=lambda e: isinstance(e, TimeoutError), sleep=slept.append)
    assert slept == [0.5, 1.0]  # not retried


@responses.activate
@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retryable(status: int) -> None:
    responses.get(URL, status=status)
    with pytest.raises(PlatformUnavailable):
        marketplace_calls.send(Request(method="GET", url=URL))


@responses.activate
def test_an_answer_that_is_not_json_is_retryable() -> None:
    responses.get(URL, body=b"<html>maintenance</html>")
    with pytest.raises(PlatformUnavailable):
        marketplace_calls.send_json(Request(method="GET", url=URL))
