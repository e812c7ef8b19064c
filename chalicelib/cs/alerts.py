"""Alerts for customer service: what happened, to what, how bad. Published to the alert topic;
delivery to email and IM (rota, dedupe, digests) consumes that topic."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.core import aws
from chalicelib.core.settings import settings


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


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


def publish(alert: Alert) -> None:
    aws.client("sns").publish(
        TopicArn=settings().alerts_topic_arn,
        Message=alert.model_dump_json(),
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": alert.kind},
            "severity": {"DataType": "String", "StringValue": alert.severity},
        },
    )


def raise_case(kind: str, subject: str, severity: Severity, summary: str, at: datetime,
               facts: dict[str, Any] | None = None, *, case: str | None = None,
               resolves: bool = False) -> None:
    """The one entry point for anything CS must hear about: it becomes (part of) one case per
    (type, subject), delivered on the CS rota's channels."""
    publish(Alert(kind=kind, subject=subject, severity=severity, summary=summary, at=at,
                  facts=facts or {}, case=case, resolves=resolves))
