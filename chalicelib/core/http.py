"""The thin I/O part every marketplace adapter shares: send an `ApiCall` exactly as built.

Timeouts always; transport failures and 5xx/429 come back as a retryable `PlatformUnavailable`
so the caller (the order worker's stream, the writeback and reconciliation schedules) retries
later: the platforms' rate limits are not ours to hammer from inside one invocation.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from chalicelib.core.ratelimit import Pacer
from chalicelib.marketplaces.calls import ApiCall

TIMEOUT = (3.05, 10.0)


class PlatformUnavailable(Exception):
    """The platform did not answer usefully; try again later."""

    retryable = True


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PlatformUnavailable(f"not JSON ({self.status}): {self.body[:200]!r}") from exc


_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def _pace(call: ApiCall) -> None:
    """Wait as the operation's documented rate requires (per process, like the couriers')."""
    if call.pace is None:
        return
    with _pacers_lock:
        pacer = _pacers.get(call.pace.key)
        if pacer is None:
            pacer = _pacers[call.pace.key] = Pacer(call.pace.rate, call.pace.burst,
                                                   time.monotonic, time.sleep)
    pacer.wait()


def send(call: ApiCall, session: requests.Session | None = None) -> Answer:
    _pace(call)
    kwargs: dict[str, Any] = {"params": call.params or None, "headers": call.headers,
                              "timeout": TIMEOUT, "allow_redirects": False}
    if call.raw_body is not None:
        kwargs["data"] = call.raw_body
    elif call.form is not None:
        kwargs["data"] = call.form
    elif call.json_body is not None:
        kwargs["data"] = json.dumps(call.json_body, ensure_ascii=False,
                                    separators=(",", ":")).encode()
        kwargs["headers"] = {"Content-Type": "application/json", **call.headers}
    try:
        response = (session or requests).request(call.method, call.url, **kwargs)
    except requests.RequestException as exc:
        # The URL may carry tokens: keep only the exception's type.
        raise PlatformUnavailable(type(exc).__name__) from None
    if response.status_code >= 500 or response.status_code == 429:
        raise PlatformUnavailable(f"HTTP {response.status_code}")
    return Answer(response.status_code, dict(response.headers), response.content)
