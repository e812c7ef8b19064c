"""boto3 clients, created once per process and only when first used.

The endpoint comes from the environment (AWS_ENDPOINT_URL locally, the default in AWS), so the
same code talks to the local endpoint in development and to AWS in production.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config


@cache
def _config() -> Config:
    # Fail fast and let the sender retry: a webhook must be answered within seconds (Shopify:
    # 5 s). The local endpoint serialises DynamoDB, so under load it needs more patience.
    return Config(connect_timeout=2,
                  read_timeout=float(os.environ.get("AWS_READ_TIMEOUT_SECONDS", "4")),
                  retries={"mode": "standard", "max_attempts": 3})


@cache
def _session() -> boto3.session.Session:
    # One session for all clients: each new session re-reads botocore's endpoint and model data
    # (tens of milliseconds on a cold start).
    return boto3.session.Session()


@cache
def client(service: str) -> Any:
    return _session().client(service, config=_config())


def reset() -> None:
    """Forget cached clients (tests point the process at a new endpoint)."""
    client.cache_clear()
    _session.cache_clear()
    _config.cache_clear()
