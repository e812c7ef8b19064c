"""CS cases: one open case per (type, subject), however often its problem is reported. Pure.

An alert is a report; a case is the piece of work CS owns. Reports of a problem that is already
open add to its case (count, last seen, severity only rises); a report that the problem ended
resolves it automatically. Once resolved, the same problem reported again is a new case.
Lifecycle: open -> acknowledged -> resolved, each step with who, when and a note. A case type
with outcomes (`OUTCOMES`: a refund task is due until refunded, or found not needed) is
resolved by a person only with one of them, kept on the case as `outcome`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.cs.alerts import Alert, Severity

SYSTEM = "system"


REFUND_DUE = "refund.due"  # after-sales' refund task (chalicelib/cs/refunds.py)

# How a case of these types may end: its own lifecycle on top of open/acknowledged/resolved.
OUTCOMES: Mapping[str, tuple[str, ...]] = {REFUND_DUE: ("refunded", "not_needed")}


def outcome_problem(case_type: str, outcome: str | None) -> str | None:
    """Why `outcome` cannot end a case of this type (None: it can). A type with outcomes
    needs one of them; any other type takes none."""
    allowed = OUTCOMES.get(case_type, ())
    if not allowed:
        return None if outcome is None else f"a {case_type} case is resolved without an outcome"
    if outcome not in allowed:
        return f"a {case_type} case is resolved as one of: {', '.join(allowed)}"
    return None


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
    # How it ended, for a type with outcomes (OUTCOMES): e.g. refunded, not_needed.
    outcome: str | None = None

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


def resolve(case: Case, actor: str, note: str, now: datetime,
            outcome: str | None = None) -> Case:
    """Resolved, with how (`outcome`, for a type that has them: check `outcome_problem`
    first; the history's note starts with it)."""
    if case.status is CaseStatus.RESOLVED:
        return case
    said = f"{outcome}: {note}" if outcome else note
    step = CaseStep(at=now, actor=actor, action="resolved", note=said)
    return case.model_copy(update={"status": CaseStatus.RESOLVED, "outcome": outcome,
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
