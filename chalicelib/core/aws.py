"""AWS clients (botocore's), created once per process and only when first used.

The endpoint comes from the environment (AWS_ENDPOINT_URL locally, the default in AWS), so the
same code talks to the local endpoint in development and to AWS in production.

A request that must answer within a deadline (a webhook: the sender gives up after seconds, and
Shopify after 5) runs inside `deadline(seconds)`: there `client()` hands out clients whose
connect and read timeouts fit the deadline and which do not retry on their own;
`within_deadline` retries a call only while another attempt can still finish in time. So the
answer comes within the deadline whatever the store does (hangs, throttles, fails).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any, TypeVar

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

T = TypeVar("T")

# The absolute deadline (time.monotonic()) of the request being served, if it has one.
_deadline: ContextVar[float | None] = ContextVar("aws_deadline", default=None)

# Error codes another attempt may cure, by kind: the operation's codes, and the codes a
# cancelled transaction gives per action. One list for the whole app: the deadline's retries
# here, and chalicelib.core.dynamodb.classify's answer to the caller.
THROTTLED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                       "RequestLimitExceeded", "ProvisionedThroughputExceeded",
                       "ThrottlingError", "LimitExceededException"})
UNAVAILABLE = frozenset({"InternalServerError", "InternalFailure", "ServiceUnavailable",
                         "ServiceUnavailableException", "InternalServerErrorException"})
CONFLICTING = frozenset({"TransactionConflictException", "TransactionConflict",
                         "TransactionInProgressException"})
_RETRYABLE_CODES = THROTTLED | UNAVAILABLE | CONFLICTING


@cache
def _config() -> Config:
    # Fail fast and let the sender retry: a webhook must be answered within seconds (Shopify:
    # 5 s). The local endpoint serialises DynamoDB, so under load it needs more patience.
    # Connections: a scheduled run works through up to 16 items at once, each on its own thread
    # (chalicelib/core/runs.py), and botocore keeps 10 by default.
    return Config(connect_timeout=2,
                  read_timeout=float(os.environ.get("AWS_READ_TIMEOUT_SECONDS", "4")),
                  retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=32)


def deadline_seconds() -> float:
    """How long a webhook may take to answer (WEBHOOK_DEADLINE_SECONDS, default 3.5: under the
    4 s we promise, with Shopify's 5 s beyond it). Locally the endpoint needs more."""
    return float(os.environ.get("WEBHOOK_DEADLINE_SECONDS", "3.5"))


def attempt_seconds() -> float:
    """The longest one attempt of a call takes inside a deadline (connect + read timeout)."""
    config = _deadline_config()
    return float(config.connect_timeout) + float(config.read_timeout)


@cache
def _deadline_config() -> Config:
    # Two attempts and a pause fit the deadline: each at most 3/7 of it (1.5 s of 3.5 s).
    budget = deadline_seconds()
    return Config(connect_timeout=budget / 7, read_timeout=budget * 2 / 7,
                  retries={"mode": "standard", "max_attempts": 1})


@cache
def _session() -> botocore.session.Session:
    # One session for all clients: each new session re-reads botocore's endpoint and model data
    # (tens of milliseconds on a cold start). botocore's own: boto3's Session wraps it to add
    # resources and S3 transfers, which nothing here uses, and importing boto3 (s3transfer,
    # concurrent.futures, multiprocessing) costs a cold start about 10 ms. The clients are the
    # same botocore clients either way.
    return botocore.session.get_session()


@cache
def _plain_client(service: str) -> Any:
    return _session().create_client(service, config=_config())


@cache
def _deadline_client(service: str) -> Any:
    return _session().create_client(service, config=_deadline_config())


def client(service: str) -> Any:
    """The service's client; inside `deadline()`, one whose timeouts fit the deadline."""
    if _deadline.get() is not None:
        return _deadline_client(service)
    return _plain_client(service)


@contextmanager
def deadline(seconds: float | None = None) -> Iterator[None]:
    """Serve a request that must answer within `seconds` (default `deadline_seconds()`)."""
    token = _deadline.set(time.monotonic() + (deadline_seconds() if seconds is None
                                              else seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left before the deadline of the request being served; None: it has none."""
    end = _deadline.get()
    return None if end is None else end - time.monotonic()


def retryable(error: BaseException) -> bool:
    """Another attempt may succeed: throttling, a service error, the network."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _RETRYABLE_CODES or int(status or 0) >= 500
    return isinstance(error, BotoCoreError)


def within_deadline(call: Callable[[], T]) -> T:
    """`call()`; inside `deadline()`, tried again after a retryable error while one more
    attempt (and a short pause) can still end before the deadline. Outside, called once (the
    plain clients retry on their own)."""
    while True:
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            left = remaining()
            pause = random.uniform(0.02, 0.1)
            if left is None or not retryable(exc) or left < attempt_seconds() + pause:
                raise
            time.sleep(pause)


def reset() -> None:
    """Forget cached clients (tests point the process at a new endpoint)."""
    _plain_client.cache_clear()
    _deadline_client.cache_clear()
    _session.cache_clear()
    _config.cache_clear()
    _deadline_config.cache_clear()
