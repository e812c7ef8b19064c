"""Alerts for customer service: what happened, to what, how bad. Pure: alert_topic.py publishes
them; the alert dispatcher (chalicelib/flows/alert_dispatch.py) turns them into cases."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Low 0 ... critical 3: compare by this (as text, "high" < "low")."""
        return _RANKS[self]

    def at_least(self, floor: Severity) -> bool:
        return self.rank >= floor.rank


_RANKS = {severity: rank for rank, severity in enumerate(Severity)}


def worst(severities: Iterable[Severity]) -> Severity:
    """The most severe of several (ValueError when there are none)."""
    return max(severities, key=lambda severity: severity.rank)


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str  # e.g. "order.invalid", "delivery.unprocessed", "worker.dead_letter"
    severity: Severity
    subject: str  # what it is about: an order id, a delivery key, a stream shard
    summary: str
    at: datetime
    facts: dict[str, Any] = Field(default_factory=dict)
    # The case it belongs to, when several kinds are one problem (a stall escalating to "lost").
    case: str | None = None
    resolves: bool = False  # the problem ended: its open case resolves itself

    @property
    def case_type(self) -> str:
        return self.case or self.kind

    @property
    def dedupe_key(self) -> str:
        return f"{self.case_type}|{self.subject}"

    @property
    def alert_id(self) -> str:
        """The same report delivered twice has the same id (SQS delivers at least once)."""
        import hashlib

        key = "\x1f".join((self.kind, self.subject, self.at.isoformat(), str(self.resolves)))
        return hashlib.sha256(key.encode()).hexdigest()[:24]
