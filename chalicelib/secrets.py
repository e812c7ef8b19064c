"""Webhook sources and their secrets, read from one SSM SecureString parameter per stage.

The parameter holds JSON: {"<source>": {"scheme": "shopify" | "standard", "secrets": [..]}}.
Several secrets per source allow rotation without downtime. Cached for a few minutes so a
webhook costs no SSM call in the steady state.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib import aws
from chalicelib.config import settings


class WebhookSource(BaseModel):
    model_config = ConfigDict(frozen=True)

    scheme: str
    secrets: tuple[str, ...] = Field(min_length=1)


_cache: dict[str, tuple[float, dict[str, WebhookSource]]] = {}


def webhook_sources() -> dict[str, WebhookSource]:
    name = settings().webhook_secrets_param
    cached = _cache.get(name)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    answer: Any = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)
    sources = parse_sources(answer["Parameter"]["Value"])
    _cache[name] = (time.monotonic() + settings().secrets_cache_seconds, sources)
    return sources


def parse_sources(text: str) -> dict[str, WebhookSource]:
    return {name: WebhookSource.model_validate(value) for name, value in json.loads(text).items()}


def forget() -> None:
    _cache.clear()
