"""The jobs table. Every key starts with the partner id, so every read and write is scoped to a
partner by its key, and another partner's job id simply is not there.

  pk = <partner>  sk = job_<id>            the job (versioned; written whole, guarded by version)
  pk = <partner>  sk = FEED#<at>#<n>       the partner's change feed, oldest first
  pk = <partner>  sk = WAVE#<wave id>      a wave and its pick lists
  pk = <partner>  sk = RETURN#<tracking>   a return the warehouse received (`returns-by-day`
                                           index: `returns_day`, its window day; `returns_at`)
  pk = REGISTER#returns  sk = DAY#<day>    the day's returns register: being sent, or sent
  pk = <partner>  sk = SKU_LOCATIONS       where each SKU sits on the shelves
  pk = <partner>  sk = WRITEBACK#<job>#<shipment>  telling the marketplace of a shipment
                                           (chalicelib/marketplaces/writeback_store.py)

Index attributes are derived from the job's state on every write, never set by hand:
`offer_partner`/`offer_at` (sparse `offers` index: claimable jobs, when they may next be handed
out), `deadline_pk`/`deadline_at` (sparse `deadlines` index: the next moment a deadline may
fire), `updated_at` (`partner-updated` index: resync), `paid_day`/`paid_at` (sparse
`by-paid-day`: jobs by the dispatch calendar's day their order was paid, with `shipped_at`
for the day's cut-off figures), `paid_month`/`paid_at` (sparse `by-paid-month`, whole jobs:
a period's jobs for the reports, by the Asia/Shanghai month their order was paid),
`waiting_on`/`waiting_since` (sparse `waiting-on-factory`: offers not yet accepted, since they
were made; open intercept requests, since the oldest was asked for).
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from chalicelib.core import aws, cursors, listing
from chalicelib.core.clock import iso, parse_iso
from chalicelib.core.dynamodb import (
    Action,
    from_attrs,
    is_condition_failure,
    storage_errors,
    to_attrs,
)
from chalicelib.core.settings import settings
from chalicelib.warehouse.day_dispatch import PaidJob
from chalicelib.warehouse.jobs import Handshake, Job, JobEvent, Work, next_deadline, protocol_rules
from chalicelib.warehouse.waves import usable_locations

log = logging.getLogger(__name__)

OFFERS_INDEX = "offers"
UPDATED_INDEX = "partner-updated"
DEADLINES_INDEX = "deadlines"
DUE = "DUE"
# A feed entry is a notice to a partner that polls, not a record (the job is): after this long
# (TTL, `expires_at`) it goes, and a partner away longer resyncs with jobs?updated_since.
FEED_RETENTION = timedelta(days=30)
_DERIVED = ("pk", "sk", "offer_partner", "offer_at", "deadline_pk", "deadline_at", "paid_day",
            "paid_month", "shipped_at", "waiting_on", "waiting_since")
BY_PAID_DAY = "by-paid-day"
BY_PAID_MONTH = "by-paid-month"
# The reports' days (chalicelib/reports/model.py REPORT_ZONE, which this capability cannot
# import: reports import the warehouse), fixed whatever zone the dispatch calendar is in.
PAID_MONTH_ZONE = ZoneInfo("Asia/Shanghai")
WAITING_INDEX = "waiting-on-factory"
RETURNS_INDEX = "returns-by-day"
# The returns registers' markers, beside the partners' items (a partner id has no `#`).
REGISTER_PK = "REGISTER#returns"
OFFER, INTERCEPT = "offer", "intercept"  # what a job waits for the factory to do


def _table() -> str:
    return settings().jobs_table


def _key(partner_id: str, sk: str) -> dict[str, Any]:
    return to_attrs({"pk": partner_id, "sk": sk})


def job_of(item: dict[str, Any]) -> Job:
    return Job.model_validate({k: v for k, v in item.items() if k not in _DERIVED})


def item_of(job: Job) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": job.partner_id, "sk": job.job_id,
                            **job.model_dump(mode="json", exclude_none=True)}
    if job.claimable:
        item["offer_partner"] = job.partner_id
        item["offer_at"] = iso(job.offer_at)
    rules = protocol_rules()
    deadline = next_deadline(job, rules)
    if deadline is not None:
        item["deadline_pk"] = DUE
        item["deadline_at"] = iso(deadline)
    if job.paid_at is not None:
        item["paid_at"] = iso(job.paid_at)  # the index's sort key, in the form that sorts
        item["paid_day"] = rules.dispatch.local(job.paid_at).date().isoformat()
        item["paid_month"] = paid_month(job.paid_at)
    if job.shipped_at is not None:
        item["shipped_at"] = iso(job.shipped_at)
    waiting = _waiting(job)
    if waiting is not None:
        item["waiting_on"], item["waiting_since"] = waiting[0], iso(waiting[1])
    return item


def _waiting(job: Job) -> tuple[str, datetime] | None:
    """What the job waits for the factory to do, and since when (never both: an intercept
    needs a printed job, and printing needs an accepted one)."""
    if job.handshake is Handshake.OFFERED and job.work is Work.QUEUED:
        return OFFER, job.created_at
    if job.open_changes:
        return INTERCEPT, min(change.requested_at for change in job.open_changes)
    return None


def put(job: Job, read_version: int | None) -> Action:
    """Write the job whole; fails (label = job id) if someone changed it since we read it."""
    if read_version is None:
        guard: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
    else:
        guard = {"ConditionExpression": "version = :v",
                 "ExpressionAttributeValues": to_attrs({":v": read_version})}
    return Action(job.job_id, {"Put": {"TableName": _table(), "Item": to_attrs(item_of(job)),
                                       **guard}})


def get(partner_id: str, job_id: str) -> Job | None:
    if not job_id.startswith("job_"):
        return None  # other items share the partition; only jobs are jobs
    answer = aws.client("dynamodb").get_item(TableName=_table(), Key=_key(partner_id, job_id),
                                             ConsistentRead=True)
    return job_of(from_attrs(answer["Item"])) if "Item" in answer else None


def get_many(partner_id: str, job_ids: Sequence[str]) -> dict[str, Job]:
    """Up to 100 jobs in one call (strongly consistent); unknown ids are simply absent."""
    wanted = [j for j in dict.fromkeys(job_ids) if j.startswith("job_")]
    found: dict[str, Job] = {}
    keys = [_key(partner_id, job_id) for job_id in wanted]
    while keys:
        answer = aws.client("dynamodb").batch_get_item(
            RequestItems={_table(): {"Keys": keys[:100], "ConsistentRead": True}})
        for raw in answer["Responses"].get(_table(), []):
            job = job_of(from_attrs(raw))
            found[job.job_id] = job
        keys = keys[100:] + answer.get("UnprocessedKeys", {}).get(_table(), {}).get("Keys", [])
    return found


def claimable(partner_id: str, now: datetime, limit: int) -> list[Job]:
    """Jobs on offer at `now`, oldest offer first. The index lags the table a little, so the
    claim's version guard is what makes a claim safe."""
    return next(offer_pages(partner_id, now, limit), [])


def offer_pages(partner_id: str, now: datetime, page_size: int) -> Iterator[list[Job]]:
    """The partner's offers at `now`, oldest first, a page (one Query) at a time, read only as
    far as the caller walks: a claim goes on past the offers other pollers took meanwhile."""
    kwargs: dict[str, Any] = {
        "TableName": _table(), "IndexName": OFFERS_INDEX, "Limit": page_size,
        "KeyConditionExpression": "offer_partner = :p AND offer_at <= :now",
        "ExpressionAttributeValues": to_attrs({":p": partner_id, ":now": iso(now)}),
    }
    while True:
        answer = aws.client("dynamodb").query(**kwargs)
        page = [job_of(from_attrs(item)) for item in answer.get("Items", [])]
        if page:
            yield page
        if "LastEvaluatedKey" not in answer:
            return
        kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


UPDATED_KEYS = frozenset({"pk", "sk", "updated_at"})  # the partner-updated index's key


def updated_since(partner_id: str, since: datetime, cursor: str | None,
                  limit: int) -> tuple[list[Job], str | None]:
    """A page of the partner's jobs updated at or after `since`, and the cursor to the next.
    The cursor is bound to the partner and to `since` (chalicelib/core/cursors.py): a forged
    one, another partner's or another `since`'s is a ValueError, never sent to DynamoDB."""
    scope = [partner_id, iso(since)]
    start = None
    if cursor:
        start = cursors.key(cursors.decode(cursor, "jobs", scope), UPDATED_KEYS,
                            {"pk": partner_id}, {"sk": "job_"})
    found = listing.query({
        "TableName": _table(), "IndexName": UPDATED_INDEX,
        "KeyConditionExpression": "pk = :p AND updated_at >= :since",
        "ExpressionAttributeValues": to_attrs({":p": partner_id, ":since": iso(since)}),
    }, sorted(UPDATED_KEYS), limit, start)
    jobs = [job_of(item) for item in found.items if str(item["sk"]).startswith("job_")]
    rest = found.resume[len(found.items)]
    return jobs, cursors.encode("jobs", scope, rest) if rest is not None else None


def due(now: datetime, limit: int = 100) -> list[tuple[str, str]]:
    """(partner, job id) of jobs with a deadline at or before `now`."""
    answer = aws.client("dynamodb").query(
        TableName=_table(), IndexName=DEADLINES_INDEX, Limit=limit,
        KeyConditionExpression="deadline_pk = :due AND deadline_at <= :now",
        ExpressionAttributeValues=to_attrs({":due": DUE, ":now": iso(now)}),
    )
    return [(item["pk"]["S"], item["sk"]["S"]) for item in answer.get("Items", [])]


# The CS console's "Today" ---------------------------------------------------------------


def _pages(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for page in aws.client("dynamodb").get_paginator("query").paginate(**request):
        for raw in page.get("Items", []):
            yield from_attrs(raw)


def _counted(request: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Every item a Query finds, and how many pages (DynamoDB calls) it took."""
    items: list[dict[str, Any]] = []
    pages = 0
    for page in aws.client("dynamodb").get_paginator("query").paginate(**request):
        pages += 1
        items.extend(from_attrs(raw) for raw in page.get("Items", []))
    return items, pages


def paid_month(moment: datetime) -> str:
    """The by-paid-month index's key: "YYYY-MM" in Asia/Shanghai."""
    return moment.astimezone(PAID_MONTH_ZONE).strftime("%Y-%m")


def _months(start: datetime, end: datetime) -> list[str]:
    """The paid months [start, end) touches, in order."""
    first = start.astimezone(PAID_MONTH_ZONE).date().replace(day=1)
    last = (end - timedelta(microseconds=1)).astimezone(PAID_MONTH_ZONE).date()
    months: list[str] = []
    while first <= last:
        months.append(f"{first:%Y-%m}")
        first = (first + timedelta(days=32)).replace(day=1)
    return months


def paid_between(start: datetime, end: datetime) -> tuple[list[Job], int]:
    """Every partner's jobs whose order was paid in [start, end), in payment order, and the
    pages read: one paged Query of the by-paid-month index per month the span touches (jobs
    queued before `paid_at` was kept are not in it)."""
    jobs: list[Job] = []
    pages = 0
    for month in _months(start, end):
        items, read = _counted({
            "TableName": _table(), "IndexName": BY_PAID_MONTH,
            "KeyConditionExpression": "paid_month = :m AND paid_at BETWEEN :a AND :b",
            "ExpressionAttributeValues": to_attrs({
                ":m": month, ":a": iso(start), ":b": iso(end - timedelta(microseconds=1))})})
        jobs.extend(job_of(item) for item in items)
        pages += read
    return jobs, pages


def _unchanged_since(item: dict[str, Any]) -> dict[str, str]:
    # The version read when the item has one (every job written by put); an item without one
    # (written by hand or by an old tool) only if nobody derived its month meanwhile.
    if "version" in item:
        return {"ConditionExpression": "version = :v"}
    return {"ConditionExpression": "attribute_not_exists(paid_month)"}


def backfill_paid_month() -> int:
    """Give the jobs written before the by-paid-month index their `paid_month`; how many were
    given it. A one-off migration, run by an operator after deploying the index (README,
    upgrade notes): it Scans the table for jobs with `paid_at` and no `paid_month`, and each
    update is guarded by the version read, so a job changed meanwhile (whose write derived it
    already) is left alone."""
    from botocore.exceptions import ClientError

    given = 0
    for page in aws.client("dynamodb").get_paginator("scan").paginate(
            TableName=_table(), ProjectionExpression="pk, sk, paid_at, version",
            FilterExpression="begins_with(sk, :job) AND attribute_exists(paid_at) "
                             "AND attribute_not_exists(paid_month)",
            ExpressionAttributeValues=to_attrs({":job": "job_"})):
        for raw in page.get("Items", []):
            item = from_attrs(raw)
            try:
                aws.client("dynamodb").update_item(
                    TableName=_table(), Key=_key(str(item["pk"]), str(item["sk"])),
                    UpdateExpression="SET paid_month = :m", **_unchanged_since(item),
                    ExpressionAttributeValues=to_attrs({
                        ":m": paid_month(parse_iso(str(item["paid_at"]))),
                        **({":v": item["version"]} if "version" in item else {})}))
            except ClientError as error:
                if not is_condition_failure(error):
                    raise
            else:
                given += 1
    return given


def returns_of_days(days: Sequence[date]) -> tuple[list[dict[str, Any]], int]:
    """Every partner's returns of these window days (as `returns_on`), and the pages read: a
    Query of the returns-by-day index per day."""
    found: list[dict[str, Any]] = []
    pages = 0
    for day in days:
        items, read = _counted({
            "TableName": _table(), "IndexName": RETURNS_INDEX,
            "KeyConditionExpression": "returns_day = :d",
            "ExpressionAttributeValues": to_attrs({":d": day.isoformat()})})
        found.extend(_return_of(item) for item in items)
        pages += read
    return found, pages


_PAID = ("paid_at", "ship_by", "work", "shipped_at")


def paid_on(day: str) -> list[PaidJob]:
    """The jobs of the orders paid on `day` (YYYY-MM-DD on the dispatch calendar), in payment
    order: one Query of the by-paid-day index (a page more per further MB, some 7,000 jobs)."""
    return [PaidJob(paid_at=parse_iso(str(item["paid_at"])),
                    ship_by=parse_iso(str(item["ship_by"])), work=str(item["work"]),
                    shipped_at=parse_iso(str(item["shipped_at"])) if item.get("shipped_at")
                    else None)
            for item in _pages({
                "TableName": _table(), "IndexName": BY_PAID_DAY,
                "KeyConditionExpression": "paid_day = :d",
                "ExpressionAttributeValues": to_attrs({":d": day}),
                "ProjectionExpression": ", ".join(f"#{n}" for n in _PAID),
                "ExpressionAttributeNames": {f"#{n}": n for n in _PAID}})]


_WAITING = ("pk", "sk", "order_id", "order_name", "waiting_since", "dead_lettered")


def waiting_on_factory(kind: str, until: datetime | None = None) -> list[dict[str, Any]]:
    """Jobs waiting for the factory (`OFFER`: to accept; `INTERCEPT`: to resolve an intercept
    request), oldest first, since at or before `until` when given: one Query of the
    waiting-on-factory index. Each: partner_id, job_id, order_id, order_name, since,
    dead_lettered."""
    condition, values = "waiting_on = :k", {":k": kind}
    if until is not None:
        condition += " AND waiting_since <= :u"
        values[":u"] = iso(until)
    return [{"partner_id": item["pk"], "job_id": item["sk"], "order_id": item.get("order_id"),
             "order_name": item.get("order_name"), "since": item["waiting_since"],
             "dead_lettered": bool(item.get("dead_lettered", False))}
            for item in _pages({
                "TableName": _table(), "IndexName": WAITING_INDEX,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": to_attrs(values),
                "ProjectionExpression": ", ".join(f"#{n}" for n in _WAITING),
                "ExpressionAttributeNames": {f"#{n}": n for n in _WAITING}})]


# The change feed -----------------------------------------------------------------------------


def feed_entry(job: Job, event: JobEvent, now: datetime, seq: int) -> Action:
    entry = {"pk": job.partner_id, "sk": f"FEED#{iso(now)}#{seq:03d}{secrets.token_hex(3)}",
             "at": iso(now), "job_id": job.job_id, "type": event.type,
             "change": event.data.get("change"),
             "expires_at": int((now + FEED_RETENTION).timestamp())}
    return Action("feed", {"Put": {"TableName": _table(),
                                   "Item": to_attrs({k: v for k, v in entry.items()
                                                     if v is not None})}})


def feed(partner_id: str, after: str | None, until: datetime,
         limit: int) -> tuple[list[dict[str, Any]], str]:
    """Entries after the cursor and no newer than `until`. The cursor is the last entry's key;
    readers stop a moment short of now so a write still in flight cannot land behind them."""
    start = _unwrap(after) if after else "FEED#"
    if not start.startswith("FEED#") or len(start) > 100:  # ours are about 40 long
        raise ValueError("invalid cursor")
    last = f"FEED#{iso(until)}~"
    if start + "\x00" > last:  # a cursor from the future: nothing after it yet
        return [], _wrap(start)
    answer = aws.client("dynamodb").query(
        TableName=_table(), Limit=limit, ConsistentRead=True,
        KeyConditionExpression="pk = :p AND sk BETWEEN :after AND :until",
        ExpressionAttributeValues=to_attrs({":p": partner_id, ":after": start + "\x00",
                                            ":until": last}),
    )
    entries = [from_attrs(item) for item in answer.get("Items", [])]
    cursor = entries[-1]["sk"] if entries else start
    return [{"cursor": _wrap(e["sk"]), "at": e["at"], "job_id": e["job_id"], "type": e["type"],
             "change": e.get("change")} for e in entries], _wrap(cursor)


def _wrap(key: str) -> str:
    """Cursors are opaque and URL-safe (a raw key holds '#')."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _unwrap(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        raise ValueError("invalid cursor") from None


# Waves, returns, shelf locations -----------------------------------------------------------


def put_wave(partner_id: str, wave: dict[str, Any]) -> Action:
    return Action("wave", {"Put": {
        "TableName": _table(),
        "Item": to_attrs({"pk": partner_id, "sk": f"WAVE#{wave['wave_id']}", **wave}),
        "ConditionExpression": "attribute_not_exists(pk)",
    }})


def _get_document(partner_id: str, sk: str, consistent: bool = False) -> dict[str, Any] | None:
    answer = aws.client("dynamodb").get_item(TableName=_table(), Key=_key(partner_id, sk),
                                             **({"ConsistentRead": True} if consistent else {}))
    item = from_attrs(answer.get("Item", {}))
    return {k: v for k, v in item.items() if k not in ("pk", "sk")} if item else None


def get_wave(partner_id: str, wave_id: str, consistent: bool = False) -> dict[str, Any] | None:
    """`consistent`: a wave just written must be found (did our own write land?)."""
    return _get_document(partner_id, f"WAVE#{wave_id}", consistent)


def put_return(partner_id: str, record: dict[str, Any]) -> Action:
    """A return, once: with its window day and arrival (`returns-by-day` index: the day's
    register, reproducible for any past day)."""
    sk = f"RETURN#{record['return_tracking_number']}"
    item = {"pk": partner_id, "sk": sk, **record, "returns_day": record["window"]["day"],
            "returns_at": f"{record['received_at']}#{partner_id}#{sk}"}
    return Action("return", {"Put": {
        "TableName": _table(), "Item": to_attrs(item),
        "ConditionExpression": "attribute_not_exists(pk)",
    }})


_RETURN_INDEX_KEYS = ("returns_day", "returns_at")


def _return_of(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("pk", "sk", *_RETURN_INDEX_KEYS)}


def get_return(partner_id: str, tracking: str) -> dict[str, Any] | None:
    found = _get_document(partner_id, f"RETURN#{tracking}")
    return _return_of(found) if found is not None else None


def returns_on(day: str) -> list[dict[str, Any]]:
    """Every partner's returns of window day `day` (YYYY-MM-DD, the warehouse's calendar) in
    the order they arrived: one Query of the returns-by-day index (a page per MB, some
    thousand returns)."""
    return [_return_of(item) for item in _pages({
        "TableName": _table(), "IndexName": RETURNS_INDEX,
        "KeyConditionExpression": "returns_day = :d",
        "ExpressionAttributeValues": to_attrs({":d": day})})]


def mark_register(day: str, now: datetime, lease: timedelta) -> bool:
    """Claim the sending of `day`'s returns register: False if it was sent, or if another run
    claimed it less than `lease` ago (that run sends it, or its claim lapses and a later run
    does)."""
    from botocore.exceptions import ClientError

    try:
        aws.client("dynamodb").put_item(
            TableName=_table(),
            Item=to_attrs({"pk": REGISTER_PK, "sk": f"DAY#{day}", "state": "sending",
                           "claimed_at": iso(now)}),
            ConditionExpression="attribute_not_exists(pk) OR (#s = :sending AND claimed_at < :t)",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues=to_attrs({":sending": "sending", ":t": iso(now - lease)}))
    except ClientError as error:
        if is_condition_failure(error):
            return False
        raise
    return True


def register_sent(day: str, now: datetime, message_id: str, count: int) -> None:
    """Mark `day`'s register sent: no later run sends it again."""
    aws.client("dynamodb").put_item(TableName=_table(), Item=to_attrs({
        "pk": REGISTER_PK, "sk": f"DAY#{day}", "state": "sent", "sent_at": iso(now),
        "message_id": message_id, "returns": count}))


def release_register(day: str) -> None:
    """Give up a claim whose sending failed, so the next run tries again."""
    aws.client("dynamodb").delete_item(
        TableName=_table(), Key=_key(REGISTER_PK, f"DAY#{day}"),
        ConditionExpression="#s = :sending", ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues=to_attrs({":sending": "sending"}))


def register_state(day: str) -> dict[str, Any] | None:
    """`day`'s register marker (state sending/sent, when, the message id), if any."""
    return _get_document(REGISTER_PK, f"DAY#{day}", consistent=True)


def sku_locations(partner_id: str) -> dict[str, str]:
    """The partner's shelf locations, each entry as the input rule would take it.

    Healing what was stored before that rule: an entry it refuses (an empty SKU) is left out,
    and a document that cannot be read at all is read as none, so the next PUT replaces it
    (the local endpoint keeps a map with an empty key in a shape botocore cannot parse;
    DynamoDB itself refuses such a key)."""
    try:
        document = _get_document(partner_id, "SKU_LOCATIONS") or {}
    except storage_errors():
        raise
    except (AttributeError, KeyError, TypeError, ValueError):
        log.warning("shelf locations of %s unreadable; read as none until replaced",
                    partner_id, exc_info=True)
        return {}
    stored = document.get("locations")
    found = usable_locations(stored) if isinstance(stored, dict) else {}
    if isinstance(stored, dict) and len(found) < len(stored):
        log.warning("shelf locations of %s: %d unusable entries left out", partner_id,
                    len(stored) - len(found))
    return found


def merge_sku_locations(partner_id: str, locations: dict[str, str], now: datetime) -> int:
    """Add or move SKUs; what is stored afterwards is usable (see sku_locations)."""
    merged = {**sku_locations(partner_id), **locations}
    aws.client("dynamodb").put_item(TableName=_table(), Item=to_attrs({
        "pk": partner_id, "sk": "SKU_LOCATIONS", "locations": merged, "at": iso(now)}))
    return len(merged)
