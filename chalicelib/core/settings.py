"""Settings read from the environment.

Resource names are wired by infra/resources.yaml (Globals.Function.Environment) in AWS and by
devstack/provision.py locally, from that same file. Secrets are never in the environment
(integration accounts' secrets live in SSM Parameter Store, see
chalicelib/access/accounts_store.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeVar

from pydantic import BaseModel


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    stage: str = field(default_factory=lambda: os.environ.get("APP_STAGE", "local"))
    inbox_table: str = field(default_factory=lambda: os.environ.get("INBOX_TABLE", ""))
    orders_table: str = field(default_factory=lambda: os.environ.get("ORDERS_TABLE", ""))
    jobs_table: str = field(default_factory=lambda: os.environ.get("JOBS_TABLE", ""))
    directory_table: str = field(default_factory=lambda: os.environ.get("DIRECTORY_TABLE", ""))
    shipments_table: str = field(default_factory=lambda: os.environ.get("SHIPMENTS_TABLE", ""))
    cases_table: str = field(default_factory=lambda: os.environ.get("CASES_TABLE", ""))
    bills_table: str = field(default_factory=lambda: os.environ.get("BILLS_TABLE", ""))
    inbox_stream_arn: str = field(default_factory=lambda: os.environ.get("INBOX_STREAM_ARN", ""))
    alerts_topic_arn: str = field(default_factory=lambda: os.environ.get("ALERTS_TOPIC_ARN", ""))
    # The warehouse partner that receives every job until routing rules exist.
    warehouse_partner: str = field(
        default_factory=lambda: os.environ.get("WAREHOUSE_PARTNER", "factory-1")
    )
    max_webhook_bytes: int = field(default_factory=lambda: _int("MAX_WEBHOOK_BYTES", 256 * 1024))
    lease_seconds: int = field(default_factory=lambda: _int("LEASE_SECONDS", 600))
    max_claim_batch: int = field(default_factory=lambda: _int("MAX_CLAIM_BATCH", 100))
    # Dedupe records of webhook deliveries outlive every platform's retry window (Shopify: 48 h).
    delivery_retention_days: int = field(
        default_factory=lambda: _int("DELIVERY_RETENTION_DAYS", 30)
    )
    # Orders must be picked up within 10 minutes of arrival (domain.md).
    unprocessed_alert_minutes: int = field(
        default_factory=lambda: _int("UNPROCESSED_ALERT_MINUTES", 10)
    )
    secrets_cache_seconds: int = field(default_factory=lambda: _int("SECRETS_CACHE_SECONDS", 300))
    # A shop's expiring access token is renewed this long before it ends (more than a cached
    # copy of the credentials lives, so an older copy still works until it is read again).
    token_refresh_ahead_seconds: int = field(
        default_factory=lambda: _int("TOKEN_REFRESH_AHEAD_SECONDS", 900))
    key_cache_seconds: int = field(default_factory=lambda: _int("KEY_CACHE_SECONDS", 60))
    rate_limit_per_second: int = field(default_factory=lambda: _int("RATE_LIMIT_PER_SECOND", 20))
    rate_limit_burst: int = field(default_factory=lambda: _int("RATE_LIMIT_BURST", 100))
    # Failed authentication (no key, an unknown or revoked one) per source address.
    auth_failures_per_second: int = field(
        default_factory=lambda: _int("AUTH_FAILURES_PER_SECOND", 1))
    auth_failures_burst: int = field(default_factory=lambda: _int("AUTH_FAILURES_BURST", 20))
    # Pages one reconcile_shops run lists at most (0: as many as its time allows). The local
    # stack sets a few, so a round spans runs there as it does at a hundred times the shops.
    reconcile_pages_per_run: int = field(
        default_factory=lambda: _int("RECONCILE_PAGES_PER_RUN", 0))
    # How old the open cases' figures (the queue's counts, the dashboard's parcel problems) may
    # be: one page in that time counts the open cases again, the others read the count kept.
    # 0: every page counts (the tests, which open cases and count them at once).
    case_figures_seconds: int = field(default_factory=lambda: _int("CASE_FIGURES_SECONDS", 60))
    # Where the CS console is, as a person's browser reaches it (the stage's API address, or
    # its own domain; the ConsoleUrl parameter of infra/resources.yaml, which make deploy
    # requires; make run: its local API): every IM and email link starts with it, and its
    # path is the console's.
    console_url: str = field(
        default_factory=lambda: os.environ.get("CONSOLE_URL", "http://localhost:8000"))


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()


M = TypeVar("M", bound=BaseModel)


def rules_from_env(model: type[M], variable: str) -> M:
    """Rules that are pydantic models with the contract's defaults, overridden per stage by a
    JSON environment variable (PROTOCOL_RULES_JSON, TRACKING_RULES_JSON, CS_ROUTING_JSON)."""
    raw = os.environ.get(variable)
    return model.model_validate_json(raw) if raw else model()
