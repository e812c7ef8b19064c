"""What CS does with cases through the API: list and filter, read, acknowledge, resolve; and
the outbox notes no channel took. Thin: the rules are in chalicelib/cs/cases.py, the request
bodies here (a case's own history entries are chalicelib.cs.cases.CaseStep)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.core import cursors, listing, observability
from chalicelib.core.errors import ApiError, NotFound
from chalicelib.cs import case_store, cases
from chalicelib.cs import outbox_store as outbox
from chalicelib.cs.alerts import Severity
from chalicelib.cs.notes import Note

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 100  # items a page holds unless ?limit= says fewer or more
MAX_LIMIT = 500
# An answer stays well under Lambda's 6 MB response (a case may be large: its history, facts):
# a page holds fewer than its limit rather than fail.
PAGE_BYTES = 4_000_000


class AcknowledgeCaseRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    note: str = Field(default="", max_length=2000)


class ResolveCaseRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    note: str = Field(min_length=1, max_length=2000)  # how it was resolved: required


class CaseList(BaseModel):
    cases: list[cases.Case]
    next_cursor: str | None  # the next page's ?cursor=; None: this was the last page


class DeadAlert(BaseModel):
    message_id: str
    received_at: str
    body: str


class Undelivered(BaseModel):
    """What `undelivered` answers: the notes; with status=dead, the dead alerts too."""

    notifications: list[Note]
    alerts: list[DeadAlert] | None = None
    next_cursor: str | None  # the next page's ?cursor=; None: this was the last page


def _doc(case: cases.Case) -> dict[str, Any]:
    return case.model_dump(mode="json")


def page_limit(query: dict[str, str]) -> int:
    """?limit=: how many a page holds at most (DEFAULT_LIMIT unless asked, MAX_LIMIT at most)."""
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, "invalid_query", f"limit is a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _position(query: dict[str, str], kind: str, scope: list[str],
              check: Callable[[Any], Any]) -> Any:
    """The position the query's ?cursor= holds, checked against what the query may read; None
    for the first page. A cursor we did not make for this very query is a 400."""
    cursor = query.get("cursor")
    if cursor is None:
        return None
    try:
        return check(cursors.decode(cursor, kind, scope))
    except ValueError:
        raise ApiError(400, "invalid_cursor", "use the next_cursor of the same query, "
                       "unchanged") from None


def _cut(documents: list[dict[str, Any]], found: listing.Listing, max_bytes: int,
         kind: str, scope: list[str]) -> tuple[list[dict[str, Any]], str | None]:
    """As many documents as fit in an answer, and the cursor to the rest."""
    count = cursors.fitting(documents, max_bytes) if documents else 0
    rest = found.resume[count]
    return documents[:count], cursors.encode(kind, scope, rest) if rest is not None else None


def _severities(query: dict[str, str]) -> list[Severity] | None:
    severity = query.get("severity")
    if severity is None:
        return None
    if severity not in Severity.__members__.values():
        raise ApiError(400, "invalid_query", "severity is one of low, medium, high, critical")
    return [s for s in Severity if s.at_least(Severity(severity))]


def list_cases(query: dict[str, str]) -> dict[str, Any]:
    """A page of cases, oldest first, and the cursor to the next page (None: the last)."""
    severities, limit = _severities(query), page_limit(query)
    severity = query.get("severity", "")
    if query.get("order_id"):
        order_id = query["order_id"]
        scope = ["order", order_id, severity]
        after = _position(query, "cases", scope, lambda p: cursors.key(
            p, frozenset(case_store.KEYS[case_store.BY_ORDER]), {"order_id": order_id},
            {"pk": "CASE#"}))
        found = case_store.page_of_order(order_id, severities, limit, after)
    elif query.get("type"):
        case_type = query["type"]
        scope = ["type", case_type, severity]
        after = _position(query, "cases", scope, lambda p: cursors.key(
            p, frozenset(case_store.KEYS[case_store.OPEN_BY_TYPE]), {"open_type": case_type},
            {"pk": "CASE#"}))
        found = case_store.open_page_of_type(case_type, severities, limit, after)
    else:
        scope = ["open", severity]
        names = [s.value for s in (severities or Severity)]
        starts = _position(query, "cases", scope, lambda p: _severity_starts(p, names))
        found = case_store.open_page(starts or dict.fromkeys(names), limit)
    documents = [_doc(case_store.case_of(item)) for item in found.items]
    page, next_cursor = _cut(documents, found, PAGE_BYTES, "cases", scope)
    return {"cases": page, "next_cursor": next_cursor}


def _severity_starts(value: Any, names: list[str]) -> dict[str, Any]:
    """A merged listing's position: a start key (or None) per severity partition left."""
    if not (isinstance(value, dict) and value and set(value) <= set(names)):
        raise ValueError("not a position of this list")
    keys = frozenset(case_store.KEYS[case_store.OPEN_BY_SEVERITY])
    return {name: None if start is None else cursors.key(
        start, keys, {"open_severity": name}, {"pk": "CASE#"}) for name, start in value.items()}


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


def undelivered(query: dict[str, str]) -> dict[str, Any]:
    """Notes no channel took (?status=dead, the default) or that fell back (failed); the API
    calls them "notifications". With the dead ones, the alerts that never became a case: both
    lists paged by one cursor (a start key per list not read to its end)."""
    status, limit = query.get("status", "dead"), page_limit(query)
    if status not in ("dead", "failed"):
        raise ApiError(400, "invalid_query", "status is dead or failed")
    lists = ["notifications", "alerts"] if status == "dead" else ["notifications"]
    scope = ["undelivered", status]
    starts = _position(query, "notifications", scope, lambda p: _undelivered_starts(p, status))
    if starts is None:
        starts = dict.fromkeys(lists)
    found: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for name in lists:
        if name not in starts:  # read to its end on an earlier page
            found[name] = []
            continue
        if name == "notifications":
            listed = outbox.undelivered_page(status, limit, starts[name])
            documents = [outbox.note_of(i).model_dump(mode="json") for i in listed.items]
        else:
            listed = outbox.dead_alerts_page(limit, starts[name])
            documents = [outbox.dead_alert_of(i) for i in listed.items]
        count = cursors.fitting(documents, PAGE_BYTES // len(lists)) if documents else 0
        found[name] = documents[:count]
        if listed.resume[count] is not None:
            rest[name] = listed.resume[count]
    found["next_cursor"] = cursors.encode("notifications", scope, rest) if rest else None
    return found


def _undelivered_starts(value: Any, status: str) -> dict[str, Any]:
    names = {"notifications": status, "alerts": "dead_alert"}
    if status != "dead":
        names.pop("alerts")
    if not (isinstance(value, dict) and value and set(value) <= set(names)):
        raise ValueError("not a position of this list")
    return {name: cursors.key(start, frozenset(outbox.UNDELIVERED_KEYS),
                              {"undelivered_pk": names[name]},
                              {"pk": "NOTE#" if name == "notifications" else "DEADALERT#"})
            for name, start in value.items()}
