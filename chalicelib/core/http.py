"""Outbound HTTP: the one request type and the one sender for every adapter (marketplaces,
courier providers, CS channels).

An adapter builds a `Request` exactly as it must go on the wire (signature included) and reads
the `Answer` with pure code; `send` is the only place that touches the network: a timeout on
every call, one keep-alive session per host (a TLS handshake per call would cost more than many
calls), the operation's documented pace, and every transport failure as one `Unreachable` whose
text never holds the URL (robot URLs and query strings carry tokens).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field

from chalicelib.core.ratelimit import Pacer

TIMEOUT = (3.05, 10.0)  # connect, read: a platform that hangs must not hold the function
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class Pace(BaseModel):
    """A documented per-operation rate limit: at most `rate` calls per second after a burst."""

    model_config = ConfigDict(frozen=True)

    key: str  # the operation, e.g. "amazon.confirmShipment"
    rate: float
    burst: int = 1


class Request(BaseModel):
    """One HTTP request exactly as it must go on the wire. The URL may carry secrets (a
    robot's token, a signed query): it is kept out of repr and logs."""

    model_config = ConfigDict(frozen=True)

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(repr=False)
    params: dict[str, str] = Field(default_factory=dict)  # query string, in this order
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = None  # sent as compact UTF-8 JSON when not None
    form: dict[str, str] | None = None  # sent form-encoded when not None
    raw_body: bytes | None = None  # sent exactly (when a signature covers these bytes)
    pace: Pace | None = None  # the sender waits to stay within it
    timeout: tuple[float, float] = TIMEOUT

    def body_bytes(self) -> bytes | None:
        if self.raw_body is not None:
            return self.raw_body
        if self.json_body is not None:
            # Compact, and Chinese kept as UTF-8: readable, and within the platforms' limits.
            return json.dumps(self.json_body, ensure_ascii=False,
                              separators=(",", ":")).encode("utf-8")
        return None


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body.decode("utf-8"))

    def text(self, limit: int = 200) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class Unreachable(Exception):
    """No answer. `reached`: the request may have arrived (a read timeout), so a call the
    provider counts (Kuaidi100's 30-minute lock) must be treated as made."""

    def __init__(self, kind: Literal["connect", "timeout", "transport"]) -> None:
        super().__init__(kind)
        self.kind = kind
        self.reached = kind != "connect"


_local = threading.local()
_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def _session(url: str) -> requests.Session:
    """A keep-alive session per host and thread (requests' sessions are not thread-safe)."""
    sessions: dict[str, requests.Session] = _local.__dict__.setdefault("sessions", {})
    host = urlsplit(url).netloc
    session = sessions.get(host)
    if session is None:
        session = sessions[host] = requests.Session()
    return session


def _pace(pace: Pace | None) -> None:
    """Wait as the operation's documented rate requires (per process)."""
    if pace is None:
        return
    with _pacers_lock:
        pacer = _pacers.get(pace.key)
        if pacer is None:
            pacer = _pacers[pace.key] = Pacer(pace.rate, pace.burst, time.monotonic, time.sleep)
    pacer.wait()


def send(request: Request) -> Answer:
    """Send as built, whatever the status; raises Unreachable when nothing came back."""
    _pace(request.pace)
    headers = dict(request.headers)
    data: bytes | dict[str, str] | None = request.body_bytes()
    if data is None and request.form is not None:
        data = request.form
    if request.json_body is not None and request.raw_body is None:
        headers = {"Content-Type": "application/json", **headers}
    try:
        response = _session(request.url).request(
            request.method, request.url, params=request.params or None, headers=headers,
            data=data, timeout=request.timeout, allow_redirects=False)
    except requests.ConnectTimeout:
        raise Unreachable("connect") from None  # never sent
    except requests.Timeout:
        raise Unreachable("timeout") from None
    except requests.ConnectionError:
        raise Unreachable("connect") from None
    except requests.RequestException:
        # The exception's text holds the URL and so maybe a token: only the kind goes on.
        raise Unreachable("transport") from None
    return Answer(response.status_code, dict(response.headers), response.content)


T = TypeVar("T")


def retrying(call: Callable[[], T], *, attempts: int, backoff_seconds: float,
             retry_if: Callable[[Exception], bool],
             sleep: Callable[[float], None] = time.sleep) -> T:
    """`call` again after a failure `retry_if` accepts, backing off exponentially; for a
    provider whose transient errors are worth a second try within the same run."""
    attempt = 1
    while True:
        try:
            return call()
        except Exception as exc:
            if attempt >= attempts or not retry_if(exc):
                raise
        sleep(backoff_seconds * (1 << (attempt - 1)))
        attempt += 1


def forget_sessions() -> None:
    """Close this thread's sessions (tests point the process at new servers)."""
    for session in _local.__dict__.pop("sessions", {}).values():
        session.close()
