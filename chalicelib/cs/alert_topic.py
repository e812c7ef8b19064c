"""The alert topic (SNS): how anything CS must hear about is raised. Its queue feeds the alert
dispatcher (chalicelib/flows/alert_dispatch.py, wired in infra/resources.yaml), which keeps one
case per problem and plans its notes in the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.core import aws
from chalicelib.core.settings import settings
from chalicelib.cs.alerts import Alert, Severity


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
