"""What CS does with cases through the API: list and filter, read, acknowledge, resolve; and
the outbox notes no channel took. Thin: the rules are in chalicelib/cs/cases.py, the request
bodies here (a case's own history entries are chalicelib.cs.cases.CaseStep)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.core import cursors, listing, observability
from chalicelib.core.clock import utcnow
from chalicelib.core.errors import ApiError, NotFound
from chalicelib.core.runs import started
from chalicelib.core.settings import settings
from chalicelib.cs import case_store, cases, queue
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
    # How it ended, for a case type that has outcomes (cases.OUTCOMES: a refund.due task is
    # refunded or not_needed); none for the others.
    outcome: str | None = Field(default=None, min_length=1, max_length=32)


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


ORDERS = ("oldest", "severity")  # ?order=: oldest first (the default), most severe first


def _narrowing(query: dict[str, str], now: datetime) -> case_store.Narrowing:
    """?marketplace=, ?carrier_code=, ?age= (an age band: 1h, 24h, 3d, older; see
    chalicelib/cs/queue.py)."""
    age = query.get("age")
    if age is not None and age not in queue.AGE_NAMES:
        raise ApiError(400, "invalid_query", f"age is one of {', '.join(queue.AGE_NAMES)}")
    return case_store.Narrowing(  # empty: no filter, as for ?type=
        marketplace=query.get("marketplace") or None,
        carrier_code=query.get("carrier_code") or None,
        opened=case_store.ANY_TIME if age is None else queue.band_window(age, now))


def list_cases(query: dict[str, str], now: datetime | None = None) -> dict[str, Any]:
    """A page of cases and the cursor to the next page (None: the last).

    Open cases, oldest first (the API's contract since it began), or with ?order=severity most
    severe first (critical, high, medium, low) and newest first within a severity: the console's
    queue. Filters, combinable: ?type=, ?severity= (at least this bad), ?marketplace=,
    ?carrier_code=, ?age= (1h, 24h, 3d, older: how long open, the bands of `open_counts`). The
    age band is a condition on the index's sort key (nothing else is read); marketplace and
    carrier are filters on attributes copied onto the case, so a page reads on (a few Queries
    at most) until it is full, or answers short with its cursor. ?order_id= lists every case of
    one order (open or not) and takes only ?severity=."""
    now = now or utcnow()
    severities, limit = _severities(query), page_limit(query)
    severity = query.get("severity", "")
    order = query.get("order", "oldest")
    if order not in ORDERS:
        raise ApiError(400, "invalid_query", "order is oldest or severity")
    narrowing = _narrowing(query, now)
    extra = [*narrowing.scope(), query.get("age", ""), order]
    extra = extra if any(extra[:3]) or order != "oldest" else []
    if query.get("order_id"):
        if extra:
            raise ApiError(400, "invalid_query", "order_id lists one order's cases: only "
                           "severity, limit and cursor go with it")
        order_id = query["order_id"]
        scope = ["order", order_id, severity]
        after = _position(query, "cases", scope, lambda p: cursors.key(
            p, frozenset(case_store.KEYS[case_store.BY_ORDER]), {"order_id": order_id},
            {"pk": "CASE#"}))
        found = case_store.page_of_order(order_id, severities, limit, after)
    elif order == "severity":
        case_type = query.get("type") or None
        names = [s.value for s in sorted(severities or Severity, key=lambda s: -s.rank)]
        scope = ["severity", case_type or "", severity, *extra]
        start = _position(query, "cases", scope, lambda p: _severity_position(p, case_type, names))
        found = case_store.most_severe_page(case_type, names, limit, start or (names[0], None),
                                            narrowing)
    elif query.get("type"):
        case_type = query["type"]
        scope = ["type", case_type, severity, *extra]
        after = _position(query, "cases", scope, lambda p: cursors.key(
            p, frozenset(case_store.KEYS[case_store.OPEN_BY_TYPE]), {"open_type": case_type},
            {"pk": "CASE#"}))
        found = case_store.open_page_of_type(case_type, severities, limit, after, narrowing)
    else:
        scope = ["open", severity, *extra]
        names = [s.value for s in (severities or Severity)]
        starts = _position(query, "cases", scope, lambda p: _severity_starts(p, names))
        found = case_store.open_page(starts or dict.fromkeys(names), limit, narrowing)
    documents = [_doc(case_store.case_of(item)) for item in found.items]
    page, next_cursor = _cut(documents, found, PAGE_BYTES, "cases", scope)
    return {"cases": page, "next_cursor": next_cursor}


def _severity_position(value: Any, case_type: str | None,
                       names: list[str]) -> tuple[str, Any]:
    """The most-severe-first listing's position: the severity being read and the key to
    resume after in it (None: from its newest)."""
    if not (isinstance(value, dict) and set(value) == {"severity", "start"}
            and value["severity"] in names):
        raise ValueError("not a position of this list")
    index = case_store.severity_index(case_type)
    fixed = ({"open_type": case_type} if case_type is not None
             else {"open_severity": value["severity"]})
    start = value["start"]
    return value["severity"], None if start is None else cursors.key(
        start, frozenset(case_store.KEYS[index]), fixed, {"pk": "CASE#"})


def open_counts(now: datetime | None = None) -> queue.OpenCounts:
    """The queue's header: open cases by type, severity and age band, and the total
    (`open_figures`)."""
    return open_figures(now).counts


def open_figures(now: datetime | None = None) -> queue.OpenFigures:
    """What the open cases add up to, at most CASE_FIGURES_SECONDS old (a minute).

    Counting reads every open case: one Query (a page more per further MB) of the sparse
    `open-summary` index, one partition holding every open case with only its type, severity,
    opening time, subject, marketplace and carrier (about 100 bytes; 2,000 open cases are
    about 200 KB). Every page of the queue and the dashboard shows the figures, and a shift of
    CS people reloads them all day: so the figures are kept in one item of the cases table,
    and a page reads that (one GetItem) unless it is older than the setting, when the page
    counts again and keeps its count for the next ones (two pages counting at once both write
    the same figures; the later write wins). Not counters kept in the open/resolve
    transactions: every case of every type would write the same counter item, so a burst of
    courier problems would make those transactions conflict with each other
    (TransactionConflict, retries, the queue's redeliveries); and a counter that drifted (a
    failed write, a restore) would stay wrong, where a count is the cases themselves. The
    list of cases itself is never kept: it is read live, page by page."""
    now = now or utcnow()
    fresh_for = settings().case_figures_seconds
    if fresh_for > 0:
        kept = case_store.kept_figures()
        if kept is not None:
            figures = queue.OpenFigures.model_validate(kept["figures"])
            if now - figures.at < timedelta(seconds=fresh_for):
                return figures
    figures = queue.open_figures(case_store.open_summary(), now)
    if fresh_for > 0:
        case_store.keep_figures(figures.model_dump(mode="json"))
    return figures


def queue_page(query: dict[str, str],
               now: datetime | None = None) -> tuple[dict[str, Any], queue.OpenCounts]:
    """The console queue's page (`list_cases`) and its header (`open_counts`): two reads that
    do not wait on each other, so sent at once."""
    now = now or utcnow()
    counting = started(open_counts, now)
    return list_cases(query, now), counting.result()


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
    def resolved(case: cases.Case) -> cases.Case:
        problem = None if not case.is_open else cases.outcome_problem(case.type,
                                                                       request.outcome)
        if problem:
            raise ApiError(422, "invalid_outcome", problem,
                           outcomes=list(cases.OUTCOMES.get(case.type, ())))
        return cases.resolve(case, actor, request.note, now, request.outcome)

    return _change(case_id, resolved, now)


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
