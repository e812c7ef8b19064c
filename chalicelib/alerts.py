"""Alerts for customer service: what happened, to what, how bad. Published to the alert topic;
delivery to email and IM (rota, dedupe, digests) consumes that topic."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib import aws
from chalicelib.config import settings


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

    @property
    def dedupe_key(self) -> str:
        return f"{self.kind}|{self.subject}"


def publish(alert: Alert) -> None:
    aws.client("sns").publish(
        TopicArn=settings().alerts_topic_arn,
        Message=alert.model_dump_json(),
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": alert.kind},
            "severity": {"DataType": "String", "StringValue": alert.severity},
        },
    )


def show(message: str) -> Alert:
    """Until delivery to CS channels exists, alerts are logged where an operator sees them."""
    import logging

    alert = Alert.model_validate_json(message)
    logging.getLogger("chalicelib.alerts").warning(
        "CS ALERT [%s/%s] %s: %s", alert.severity, alert.kind, alert.subject, alert.summary
    )
    return alert
