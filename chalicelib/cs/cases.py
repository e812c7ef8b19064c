"""CS cases: one open case per (type, subject), however often its problem is reported. Pure.

An alert is a report; a case is the piece of work CS owns. Reports of a problem that is already
open add to its case (count, last seen, severity only rises); a report that the problem ended
resolves it automatically. Once resolved, the same problem reported again is a new case.
Lifecycle: open -> acknowledged -> resolved, each step with who, when and a note.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.cs.alerts import Alert, Severity

SYSTEM = "system"


class CaseStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class CaseStep(BaseModel):
    """One entry of a case's history: who did what, when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    actor: str
    action: Literal["opened", "reported_again", "escalated", "acknowledged", "resolved",
                    "reminded", "note"]
    note: str = ""


class Case(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str
    type: str  # what kind of problem: the alert kind that opened it
    subject: str  # what it is about: a job, a parcel, an order
    severity: Severity
    status: CaseStatus = CaseStatus.OPEN
    summary: str
    order_id: str | None = None
    facts: dict[str, Any] = Field(default_factory=dict)
    opened_at: datetime
    last_seen_at: datetime
    occurrences: int = 1
    reminders: int = 0  # reminders sent while nobody acknowledged it
    last_reminded_at: datetime | None = None
    escalated_to_manager_at: datetime | None = None  # the reminder that went to the manager
    history: tuple[CaseStep, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.status is not CaseStatus.RESOLVED


def case_id_for(alert: Alert) -> str:
    """Stable for the first report, so a redelivered alert cannot open a second case."""
    key = f"{alert.case_type}\x1f{alert.subject}\x1f{alert.at.isoformat()}"
    return "case_" + hashlib.sha256(key.encode()).hexdigest()[:20]


def open_case(alert: Alert) -> Case:
    return Case(
        case_id=case_id_for(alert), type=alert.case_type, subject=alert.subject,
        severity=alert.severity, summary=alert.summary, order_id=_order_id(alert),
        facts=alert.facts, opened_at=alert.at, last_seen_at=alert.at,
        history=(CaseStep(at=alert.at, actor=SYSTEM, action="opened", note=alert.kind),),
    )


def reported_again(case: Case, alert: Alert) -> Case:
    """The same problem reported again: count it; the severity may rise, never fall."""
    escalated = alert.severity.rank > case.severity.rank
    step = CaseStep(at=alert.at, actor=SYSTEM, action="escalated" if escalated else
                    "reported_again", note=alert.kind if escalated else "")
    return case.model_copy(update={
        "occurrences": case.occurrences + 1,
        "last_seen_at": max(case.last_seen_at, alert.at),
        "severity": alert.severity if escalated else case.severity,
        "summary": alert.summary if escalated else case.summary,
        "facts": {**case.facts, **alert.facts},
        # Repeats are counted, not listed: a flapping feed must not grow the item without end.
        "history": (*case.history, step) if escalated else case.history,
    })


def acknowledge(case: Case, actor: str, note: str, now: datetime) -> Case:
    if case.status is not CaseStatus.OPEN:
        return case
    step = CaseStep(at=now, actor=actor, action="acknowledged", note=note)
    return case.model_copy(update={"status": CaseStatus.ACKNOWLEDGED,
                                   "history": (*case.history, step)})


def resolve(case: Case, actor: str, note: str, now: datetime) -> Case:
    if case.status is CaseStatus.RESOLVED:
        return case
    step = CaseStep(at=now, actor=actor, action="resolved", note=note)
    return case.model_copy(update={"status": CaseStatus.RESOLVED,
                                   "history": (*case.history, step)})


def _order_id(alert: Alert) -> str | None:
    value = alert.facts.get("order_id")
    return value if isinstance(value, str) and value else None  # an index key is never empty


def reminded(case: Case, serial: int, escalated: bool, now: datetime) -> Case:
    """Reminders are counted, not listed: a case nobody acknowledges is reminded every 30
    minutes for as long as it stays open, and a step each would grow its item without end. The
    history gets one step, when the reminders first go to the on-duty manager."""
    update: dict[str, Any] = {"reminders": serial, "last_reminded_at": now}
    if escalated and case.escalated_to_manager_at is None:
        update["escalated_to_manager_at"] = now
        update["history"] = (*case.history, CaseStep(
            at=now, actor=SYSTEM, action="reminded", note="escalated to the on-duty manager"))
    return case.model_copy(update=update)
