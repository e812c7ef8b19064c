"""Webhook sources: the name in `/webhooks/{source}`, its signature scheme and its secrets.

Kept in the directory table (encrypted at rest, readable only by this app's role), beside the
API key hashes, and managed with `python -m chalicelib.admin source ...`. A webhook needs the
DynamoDB client anyway, so no second AWS client is built on a cold start (an SSM client costs
about 50 ms to create). Several secrets per source allow rotation without downtime; lookups are
cached per process for SECRETS_CACHE_SECONDS, so the steady state costs no extra call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.core.settings import settings


class WebhookSource(BaseModel):
    model_config = ConfigDict(frozen=True)

    scheme: str
    secrets: tuple[str, ...] = Field(min_length=1)
    # Account settings a provider's client needs (courier providers: customer, key, endpoint
    # and callback URLs); the secrets above are only for verifying what the source sends us.
    options: dict[str, str] = Field(default_factory=dict)


_cache: dict[str, tuple[float, WebhookSource | None]] = {}


def get(name: str) -> WebhookSource | None:
    from chalicelib.access import directory_store as directory

    cached = _cache.get(name)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    source = directory.webhook_source(name)
    # Unknown names are cached too, so a flood of bad URLs cannot become a flood of reads.
    _cache[name] = (time.monotonic() + settings().secrets_cache_seconds, source)
    return source


def forget() -> None:
    _cache.clear()


def register(sources: Mapping[str, Mapping[str, Any]]) -> None:
    """Create or replace sources, e.g. {"shopify": {"scheme": "shopify", "secrets": [...]}}."""
    from chalicelib.access import directory_store as directory
    from chalicelib.core.clock import utcnow

    for name, source in sources.items():
        directory.put_webhook_source(name, WebhookSource.model_validate(source), utcnow())
        _cache.pop(name, None)
