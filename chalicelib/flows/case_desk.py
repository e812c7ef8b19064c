"""What CS does with cases through the API: list and filter, read, acknowledge, resolve; and
the outbox notes no channel took. Thin: the rules are in chalicelib/cs/cases.py, the request
bodies here (a case's own history entries are chalicelib.cs.cases.CaseStep)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.core import observability
from chalicelib.core.errors import ApiError, NotFound
from chalicelib.cs import case_store, cases
from chalicelib.cs import outbox_store as outbox
from chalicelib.cs.alerts import Severity
from chalicelib.cs.notes import Note

log = logging.getLogger(__name__)


class AcknowledgeCaseRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    note: str = Field(default="", max_length=2000)


class ResolveCaseRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    note: str = Field(min_length=1, max_length=2000)  # how it was resolved: required


class CaseList(BaseModel):
    cases: list[cases.Case]


class DeadAlert(BaseModel):
    message_id: str
    received_at: str
    body: str


class Undelivered(BaseModel):
    """What `undelivered` answers: the notes; with status=dead, the dead alerts too."""

    notifications: list[Note]
    alerts: list[DeadAlert] | None = None


def _doc(case: cases.Case) -> dict[str, Any]:
    return case.model_dump(mode="json")


def list_cases(query: dict[str, str]) -> list[dict[str, Any]]:
    severity = query.get("severity")
    if severity is not None and severity not in Severity.__members__.values():
        raise ApiError(400, "invalid_query", "severity is one of low, medium, high, critical")
    if query.get("order_id"):
        found = case_store.cases_of_order(query["order_id"])
    else:
        found = case_store.open_cases(query.get("type") or None)
    if severity is not None:
        found = [c for c in found if c.severity.at_least(Severity(severity))]
    return [_doc(case) for case in found]


def get_case(case_id: str) -> dict[str, Any]:
    case = case_store.get(case_id)
    if case is None:
        raise NotFound("case")
    return _doc(case)


def acknowledge(case_id: str, actor: str, request: AcknowledgeCaseRequest,
                now: datetime) -> dict[str, Any]:
    return _change(case_id, lambda c: cases.acknowledge(c, actor, request.note, now), now)


def resolve(case_id: str, actor: str, request: ResolveCaseRequest,
            now: datetime) -> dict[str, Any]:
    return _change(case_id, lambda c: cases.resolve(c, actor, request.note, now), now)


def _change(case_id: str, change: Callable[[cases.Case], cases.Case],
            now: datetime) -> dict[str, Any]:
    observability.tag(case_id=case_id)
    case = case_store.change(case_id, change, now)
    if case is None:
        raise NotFound("case")
    log.info("case %s %s by CS", case_id, case.status.value)
    return _doc(case)


def undelivered(status: str) -> dict[str, Any]:
    """Notes no channel took (dead) or that fell back (failed); the API calls them
    "notifications". With the dead ones, the alerts that never became a case."""
    if status not in ("dead", "failed"):
        raise ApiError(400, "invalid_query", "status is dead or failed")
    found: dict[str, Any] = {"notifications": [
        n.model_dump(mode="json") for n in outbox.undelivered(status)]}
    if status == "dead":
        found["alerts"] = outbox.dead_alerts()
    return found
