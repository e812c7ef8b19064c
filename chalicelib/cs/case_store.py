"""The cases table: CS cases and the marker that keeps one case open per problem.

  pk = CASE#<case id>               the case (versioned; written whole, guarded by version)
  pk = OPEN#<type>#<subject>        marker: the open case for this problem, if any

Index attributes are derived from the case on every write: `open_type` / `open_severity`
(sparse: only cases not yet resolved) for CS's queues, `subject` and `order_id` for history,
`open_pk` (sparse, one constant: every open case) for the `open-summary` index the queue's counts
read. `marketplace` and `carrier_code` are copied from the case's facts (when they name one) so
the queue's filters on them are cheap: a FilterExpression on a top-level attribute, projected
into the summary. `opened_month` (the Asia/Shanghai month of `opened_at`) keys the
`by-opened-month` index the reports read a period's cases from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from botocore.exceptions import ClientError

from chalicelib.core import aws, listing
from chalicelib.core.clock import iso, months_touched, parse_iso
from chalicelib.core.dynamodb import (
    Action,
    Item,
    TransactionConflict,
    from_attrs,
    is_condition_failure,
    retrying,
    to_attrs,
    transact,
)
from chalicelib.core.settings import settings
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.cs.cases import Case, case_id_for, open_case, reported_again, resolve
from chalicelib.cs.queue import Opened, SummaryRow

OPEN_BY_TYPE = "open-by-type"
OPEN_BY_SEVERITY = "open-by-severity"
OPEN_SUMMARY = "open-summary"
OPEN = "OPEN"  # the summary index's one partition
BY_SUBJECT = "by-subject"
BY_ORDER = "by-order"
BY_OPENED_MONTH = "by-opened-month"
_REPORT_ZONE = ZoneInfo("Asia/Shanghai")  # the reports' months
_DERIVED = ("pk", "version", "open_type", "open_severity", "open_pk", "marketplace",
            "carrier_code", "seen", "opened_month")
_COPIED = ("marketplace", "carrier_code")  # facts copied to the item, for the queue's filters
_SEEN = 20  # alert ids remembered per case, so a redelivered alert is not counted twice
_ATTEMPTS = 5

Outcome = Literal["opened", "repeated", "escalated", "resolved", "duplicate", "nothing_open"]


@dataclass(frozen=True)
class Recorded:
    outcome: Outcome
    case: Case | None


def _table() -> str:
    return settings().cases_table


def _marker(case_type: str, subject: str) -> str:
    return f"OPEN#{case_type}#{subject}"


def _item(case: Case, version: int, seen: Sequence[str]) -> dict[str, Any]:
    item: dict[str, Any] = {**case.model_dump(mode="json"), "pk": f"CASE#{case.case_id}",
                            "version": version, "seen": list(seen)[-_SEEN:]}
    # The indexes' sort key in the one text form that sorts as time (clock.iso: always with
    # microseconds; pydantic's JSON leaves them out when zero, and "…00Z" sorts after "…00.5Z").
    item["opened_at"] = iso(case.opened_at)
    item["opened_month"] = case.opened_at.astimezone(_REPORT_ZONE).strftime("%Y-%m")
    if case.is_open:
        item["open_type"], item["open_severity"] = case.type, case.severity.value
        item["open_pk"] = OPEN
    for name in _COPIED:
        value = case.facts.get(name)
        if isinstance(value, str) and value:
            item[name] = value
    if case.order_id is None:
        item.pop("order_id")  # an index key may not be null
    return item


def _case(item: dict[str, Any]) -> Case:
    return Case.model_validate({k: v for k, v in item.items() if k not in _DERIVED})


def _get(pk: str) -> dict[str, Any] | None:
    answer = aws.client("dynamodb").get_item(TableName=_table(), Key=to_attrs({"pk": pk}),
                                             ConsistentRead=True)
    return from_attrs(answer["Item"]) if "Item" in answer else None


def get(case_id: str) -> Case | None:
    item = _get(f"CASE#{case_id}")
    return _case(item) if item else None


def _put(case: Case, old: dict[str, Any] | None, seen: Sequence[str]) -> Action:
    put: dict[str, Any] = {"TableName": _table(), "Item": to_attrs(_item(
        case, int(old["version"]) + 1 if old else 1, seen))}
    if old is None:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        put["ConditionExpression"] = "version = :v"
        put["ExpressionAttributeValues"] = to_attrs({":v": int(old["version"])})
    return Action("case", {"Put": put})


def record(alert: Alert) -> Recorded:
    """Open, add to or resolve the case the alert belongs to; idempotent per alert (so a
    write whose answer was lost is found on the next read: the alert is seen). Someone else
    changing the case or its marker, or a transaction in conflict: read again, after a pause
    (`retrying`; given up, Busy: the queue redelivers the alert)."""
    return retrying(lambda: _record_once(alert), "case", attempts=_ATTEMPTS)


def _record_once(alert: Alert) -> Recorded:
    marker_pk = _marker(alert.case_type, alert.subject)
    marker = _get(marker_pk)
    if marker is None:
        if alert.resolves:
            return Recorded("nothing_open", None)
        return _open(alert, marker_pk)
    old = _get(f"CASE#{marker['case_id']}")
    if old is None:  # a marker without its case cannot be written by us; repair it
        _drop_marker(marker_pk, marker["case_id"])
        raise TransactionConflict(frozenset({"marker"}))
    seen = list(old.get("seen", []))
    current = _case(old)
    if alert.alert_id in seen:
        return Recorded("duplicate", current)
    seen.append(alert.alert_id)
    if alert.resolves:
        done = resolve(current, "system", alert.summary, alert.at)
        transact([_put(done, old, seen), _unmark(marker_pk, current.case_id)])
        return Recorded("resolved", done)
    again = reported_again(current, alert)
    transact([_put(again, old, seen)])
    return Recorded("escalated" if again.severity != current.severity else "repeated", again)


def _open(alert: Alert, marker_pk: str) -> Recorded:
    case = open_case(alert)
    if _get(f"CASE#{case.case_id}") is not None:
        return Recorded("duplicate", get(case.case_id))  # opened, then resolved, then redelivered
    transact([
        Action("marker", {"Put": {"TableName": _table(), "Item": to_attrs({
            "pk": marker_pk, "case_id": case.case_id}),
            "ConditionExpression": "attribute_not_exists(pk)"}}),
        _put(case, None, [alert.alert_id]),
    ])
    return Recorded("opened", case)


def _unmark(marker_pk: str, case_id: str) -> Action:
    return Action("marker", {"Delete": {
        "TableName": _table(), "Key": to_attrs({"pk": marker_pk}),
        "ConditionExpression": "case_id = :id", "ExpressionAttributeValues": to_attrs({
            ":id": case_id})}})


def _drop_marker(marker_pk: str, case_id: str) -> None:
    with contextlib.suppress(TransactionConflict):
        transact([_unmark(marker_pk, case_id)])


def change(case_id: str, update: Callable[[Case], Case], now: datetime) -> Case | None:
    """Apply a change (acknowledge, resolve, a reminder) to a case, version-guarded; None if no
    such case. A change whose answer was lost is found written (the version we wrote, with
    what we wrote), not made twice."""
    tried: list[tuple[int, Case]] = []  # each write tried: the version, the case

    def attempt() -> Case | None:
        old = _get(f"CASE#{case_id}")
        if old is None:
            return None
        current = _case(old)
        if tried and (int(old["version"]), current) == tried[-1]:
            return current  # an earlier attempt's write landed; its answer was lost
        new = update(current)
        if new == current:
            return current
        actions = [_put(new, old, old.get("seen", []))]
        if not new.is_open and current.is_open:
            actions.append(_unmark(_marker(current.type, current.subject), case_id))
        tried.append((int(old["version"]) + 1, new))
        transact(actions)
        return new

    return retrying(attempt, "case", attempts=_ATTEMPTS)


def open_cases(case_type: str | None = None) -> list[Case]:
    """Open cases, oldest first: of one type, or of every type (through the severity index)."""
    queries = [(OPEN_BY_TYPE, "open_type", case_type)] if case_type is not None else [
        (OPEN_BY_SEVERITY, "open_severity", severity.value) for severity in Severity]
    cases = [case for index, attribute, value in queries
             for case in _query(index, attribute, value)]
    return sorted(cases, key=lambda c: c.opened_at)


def _query(index: str, attribute: str, value: str) -> Iterator[Case]:
    pages = aws.client("dynamodb").get_paginator("query").paginate(
        TableName=_table(), IndexName=index, KeyConditionExpression=f"{attribute} = :v",
        ExpressionAttributeValues=to_attrs({":v": value}))
    for page in pages:
        for item in page.get("Items", []):
            yield _case(from_attrs(item))


def open_cases_from(floor: Severity) -> list[Case]:
    """Open cases at this severity or worse (reminders)."""

    return sorted((case for severity in Severity if severity.at_least(floor)
                   for case in _query(OPEN_BY_SEVERITY, "open_severity", severity.value)),
                  key=lambda c: c.opened_at)


def opened_between(start: datetime, end: datetime) -> tuple[list[Case], int]:
    """Cases opened in [start, end), open or not, and the pages read: one paged Query of the
    `by-opened-month` index per Asia/Shanghai month the window touches."""
    found: list[Case] = []
    pages_read = 0
    paginator = aws.client("dynamodb").get_paginator("query")
    for month in months_touched(start, end, _REPORT_ZONE):
        pages = paginator.paginate(
            TableName=_table(), IndexName=BY_OPENED_MONTH,
            KeyConditionExpression="opened_month = :m AND opened_at BETWEEN :lo AND :hi",
            ExpressionAttributeValues=to_attrs({
                ":m": month, ":lo": iso(start), ":hi": iso(end - timedelta(microseconds=1))}))
        for page in pages:
            pages_read += 1
            found += [_case(from_attrs(item)) for item in page.get("Items", [])]
    return found, pages_read


def open_types_before(moment: datetime) -> tuple[list[str], int]:
    """The type of every case still open that was opened before `moment`, and the pages read
    (the `open-summary` index: about 100 bytes a case)."""
    pages = aws.client("dynamodb").get_paginator("query").paginate(
        TableName=_table(), IndexName=OPEN_SUMMARY,
        KeyConditionExpression="open_pk = :o AND opened_at < :at",
        ExpressionAttributeValues=to_attrs({":o": OPEN, ":at": iso(moment)}))
    types: list[str] = []
    pages_read = 0
    for page in pages:
        pages_read += 1
        types += [str(from_attrs(item)["type"]) for item in page.get("Items", [])]
    return types, pages_read


def cases_of_order(order_id: str) -> list[Case]:
    return sorted(_query(BY_ORDER, "order_id", order_id), key=lambda c: c.opened_at)


# Pages for the CS API: a cursor's position is an index key (see chalicelib/core/listing.py) --

KEYS = {BY_ORDER: ("pk", "order_id", "opened_at"), OPEN_BY_TYPE: ("pk", "open_type", "opened_at"),
        OPEN_BY_SEVERITY: ("pk", "open_severity", "opened_at")}


def case_of(item: Item) -> Case:
    return _case(item)


ANY_TIME = Opened(None, None)


@dataclass(frozen=True)
class Narrowing:
    """What the queue's filters add to a query: a marketplace and a carrier (equal to the
    attribute copied onto the case item: a FilterExpression), and a window of opening times (a
    key condition on the index's sort key, `opened_at`: nothing outside it is read)."""

    marketplace: str | None = None
    carrier_code: str | None = None
    opened: Opened = ANY_TIME

    def scope(self) -> list[str]:
        """The filter's part of a cursor's scope (the window by its bounds' band, see
        case_desk: the bounds move with the clock, the band does not)."""
        return [self.marketplace or "", self.carrier_code or ""]


EVERYTHING = Narrowing()


def _request(index: str, attribute: str, value: str,
             severities: Sequence[Severity] | None = None,
             narrowing: Narrowing = EVERYTHING, newest_first: bool = False) -> dict[str, Any]:
    values: dict[str, Any] = {":v": value}
    names: dict[str, str] = {}
    condition = f"{attribute} = :v"
    opened = narrowing.opened
    if opened.after is not None or opened.until is not None:
        names["#opened"] = "opened_at"
        # After `after`, exclusive: times are stored to the microsecond (clock.iso).
        low = None if opened.after is None else iso(opened.after + timedelta(microseconds=1))
        high = None if opened.until is None else iso(opened.until)
        if low is not None and high is not None:
            condition += " AND #opened BETWEEN :lo AND :hi"
            values |= {":lo": low, ":hi": high}
        elif low is not None:
            condition += " AND #opened >= :lo"
            values[":lo"] = low
        else:
            condition += " AND #opened <= :hi"
            values[":hi"] = high
    request: dict[str, Any] = {"TableName": _table(), "IndexName": index,
                               "KeyConditionExpression": condition}
    if newest_first:
        request["ScanIndexForward"] = False
    filters: list[str] = []
    if severities is not None:  # a filter: the page reads on until it has its items
        marks = [f":s{n}" for n in range(len(severities))]
        values |= {mark: s.value for mark, s in zip(marks, severities, strict=True)}
        filters.append(f"#severity IN ({', '.join(marks)})")
        names["#severity"] = "severity"
    for name in _COPIED:
        wanted = getattr(narrowing, name)
        if wanted is not None:
            filters.append(f"#{name} = :{name}")
            names[f"#{name}"] = name
            values[f":{name}"] = wanted
    if filters:
        request["FilterExpression"] = " AND ".join(filters)
    if names:
        request["ExpressionAttributeNames"] = names
    request["ExpressionAttributeValues"] = to_attrs(values)
    return request


def page_of_order(order_id: str, severities: Sequence[Severity] | None, limit: int,
                  after: Item | None) -> listing.Listing:
    """Every case of an order (open or not), oldest first."""
    return listing.query(_request(BY_ORDER, "order_id", order_id, severities),
                         KEYS[BY_ORDER], limit, after)


def open_page_of_type(case_type: str, severities: Sequence[Severity] | None, limit: int,
                      after: Item | None, narrowing: Narrowing = EVERYTHING) -> listing.Listing:
    """Open cases of one type, oldest first."""
    return listing.query(_request(OPEN_BY_TYPE, "open_type", case_type, severities, narrowing),
                         KEYS[OPEN_BY_TYPE], limit, after)


def open_page(starts: dict[str, Item | None], limit: int,
              narrowing: Narrowing = EVERYTHING) -> listing.Listing:
    """Open cases of the severities named in `starts` (each from where it resumes), oldest
    first: the severity partitions of the index merged by when each case was opened."""
    return listing.merged(
        lambda name: _request(OPEN_BY_SEVERITY, "open_severity", name, None, narrowing),
        KEYS[OPEN_BY_SEVERITY], "opened_at", limit, starts)


def severity_index(case_type: str | None) -> str:
    """The index the most-severe-first queue reads: the type's when one type is asked for (its
    partition is the smaller), else the severity index."""
    return OPEN_BY_TYPE if case_type is not None else OPEN_BY_SEVERITY


def _severity_request(case_type: str | None, severity: str,
                      narrowing: Narrowing) -> dict[str, Any]:
    if case_type is None:
        return _request(OPEN_BY_SEVERITY, "open_severity", severity, None, narrowing,
                        newest_first=True)
    return _request(OPEN_BY_TYPE, "open_type", case_type, [Severity(severity)], narrowing,
                    newest_first=True)


def most_severe_page(case_type: str | None, severities: Sequence[str], limit: int,
                     start: tuple[str, Item | None],
                     narrowing: Narrowing = EVERYTHING) -> listing.Listing:
    """Open cases, most severe first and newest first within a severity: the severities'
    partitions (`severities`, in that order) read one after the other from `start` (a severity
    and the key to resume after, None: its newest). A position is {"severity", "start"}."""
    keys = KEYS[severity_index(case_type)]
    names = list(severities)
    first = names.index(start[0])
    items: list[Item] = []
    resume: list[Any] = [{"severity": start[0], "start": start[1]}]
    after = start[1]
    for n, name in enumerate(names[first:], start=first):
        following = ({"severity": names[n + 1], "start": None}
                     if n + 1 < len(names) else None)
        found = listing.query(_severity_request(case_type, name, narrowing), keys,
                              limit - len(items), after)
        if not found.items and found.resume[0] is not None:  # a filter ate every read
            resume[-1] = {"severity": name, "start": found.resume[0]}
            break
        items += found.items
        resume += [following if at is None else {"severity": name, "start": at}
                   for at in found.resume[1:]]
        if not found.items:
            resume[-1] = following
        if len(items) >= limit or resume[-1] is None or resume[-1]["severity"] == name:
            break
        after = None
    return listing.Listing(items, resume)


_SUMMARY = ("type", "severity", "opened_at", "subject", "marketplace", "carrier_code")


def open_summary() -> list[SummaryRow]:
    """Every open case, as the `open-summary` index holds it (about 100 bytes each: one Query
    for 2,000 cases, a page more per further 1 MB), oldest first."""
    request: dict[str, Any] = {
        "TableName": _table(), "IndexName": OPEN_SUMMARY,
        "KeyConditionExpression": "open_pk = :o",
        "ExpressionAttributeValues": to_attrs({":o": OPEN}),
        "ProjectionExpression": ", ".join(f"#{name}" for name in _SUMMARY),
        "ExpressionAttributeNames": {f"#{name}": name for name in _SUMMARY}}
    rows: list[SummaryRow] = []
    for page in aws.client("dynamodb").get_paginator("query").paginate(**request):
        for raw in page.get("Items", []):
            item = from_attrs(raw)
            rows.append(SummaryRow(
                type=str(item["type"]), severity=Severity(item["severity"]),
                opened_at=parse_iso(str(item["opened_at"])), subject=str(item.get("subject", "")),
                marketplace=item.get("marketplace"), carrier_code=item.get("carrier_code")))
    return rows


def backfill_open_summary() -> int:
    """Give the open cases written before the `open-summary` index (and the copied marketplace
    and carrier) their derived attributes; how many were given them. Reads the open cases
    through the severity index (no Scan); each update is guarded by the version read, so a
    case changed meanwhile is left alone (its new write derived them already). Run once after
    deploying the index (python -m chalicelib.admin is where an operator would call it)."""
    given = 0
    for severity in Severity:
        for page in aws.client("dynamodb").get_paginator("query").paginate(
                **_request(OPEN_BY_SEVERITY, "open_severity", severity.value)):
            for raw in page.get("Items", []):
                item = from_attrs(raw)
                if "open_pk" not in item and _backfill(item):
                    given += 1
    return given


def _backfill(item: dict[str, Any]) -> bool:
    derived = {name: value for name, value in _item(_case(item), int(item["version"]),
                                                    item.get("seen", [])).items()
               if name in ("open_pk", "opened_at", *_COPIED)}
    names = {f"#{name}": name for name in derived}
    values = {f":{name}": value for name, value in derived.items()} | {
        ":v": int(item["version"])}
    try:
        aws.client("dynamodb").update_item(
            TableName=_table(), Key=to_attrs({"pk": item["pk"]}),
            UpdateExpression="SET " + ", ".join(f"#{n} = :{n}" for n in derived),
            ConditionExpression="version = :v", ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_attrs(values))
    except ClientError as error:
        if is_condition_failure(error):
            return False
        raise
    return True


__all__ = ["EVERYTHING", "Narrowing", "Recorded", "backfill_open_summary", "case_id_for",
           "case_of", "cases_of_order", "change", "get", "most_severe_page", "open_cases",
           "open_page", "open_page_of_type", "open_summary", "page_of_order", "record",
           "severity_index"]


# The open cases' figures, as last counted (flows/case_desk.py `open_figures`): one item, no
# index attribute, rewritten whole by whichever page counts next.
FIGURES_PK = "FIGURES#open"


def kept_figures() -> dict[str, Any] | None:
    return _get(FIGURES_PK)


def keep_figures(figures: dict[str, Any]) -> None:
    aws.client("dynamodb").put_item(TableName=_table(),
                                    Item=to_attrs({"pk": FIGURES_PK, "figures": figures}))
