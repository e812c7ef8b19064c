"""Lists read a page at a time from DynamoDB queries, with where the next page starts.

A page is cut where the answer would grow too large (the API's 6 MB response), so a listing
tells where it continues after each of its items (`resume[n]`: after the first n), not only
after the last. A merged listing reads several partitions (one query each, all ordered by one
attribute) and interleaves them; it resumes at one position per partition still to read.

In its own module (not core/dynamodb.py) so the transaction and error code there is not
touched by lists.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.core import aws
from chalicelib.core.dynamodb import Item, from_attrs, to_attrs

CALLS = 4  # queries one filtered page may take before answering short, with its cursor


@dataclass(frozen=True)
class Listing:
    """Items in order; `resume[n]` is where the list continues after the first n of them
    (None: nothing is left), so `len(resume) == len(items) + 1`."""

    items: list[Item]
    resume: list[Any]


@dataclass(frozen=True)
class _Page:
    items: list[Item]
    positions: list[Item]  # each item's own key: a next query starts after it
    rest: Item | None  # where the query goes on after the last item; None: nothing left


def _query(request: Mapping[str, Any], keys: Sequence[str], limit: int,
           after: Item | None) -> _Page:
    """Up to `limit` items from `after` (an exclusive start key, as plain values). With a
    FilterExpression, reads on (CALLS queries at most) until `limit` items pass it, so a page
    may come short with `rest` still set."""
    items: list[Item] = []
    positions: list[Item] = []
    start = after
    filtered = "FilterExpression" in request
    for _call in range(CALLS):
        answer = aws.client("dynamodb").query(**{
            **request, "Limit": limit if filtered else limit - len(items),
            **({"ExclusiveStartKey": to_attrs(start)} if start else {})})
        last = answer.get("LastEvaluatedKey")
        raw = answer.get("Items", [])
        for n, attrs in enumerate(raw):
            item = from_attrs(attrs)
            items.append(item)
            positions.append({name: item[name] for name in keys})
            if len(items) == limit:
                more = n + 1 < len(raw) or last is not None
                return _Page(items, positions, positions[-1] if more else None)
        if last is None:
            return _Page(items, positions, None)
        start = from_attrs(last)
    return _Page(items, positions, start)


def query(request: Mapping[str, Any], keys: Sequence[str], limit: int,
          after: Item | None = None) -> Listing:
    """A page of one query. `keys` are the table's and the index's key attributes (what makes
    a start key)."""
    page = _query(request, keys, limit, after)
    count = len(page.items)
    resume: list[Any] = [after if count else page.rest]
    resume += [page.positions[n] for n in range(count - 1)]
    if count:
        resume.append(page.rest)
    return Listing(page.items, resume)


def merged(request_of: Callable[[str], Mapping[str, Any]], keys: Sequence[str], order: str,
           limit: int, starts: Mapping[str, Item | None]) -> Listing:
    """A page of several queries (`request_of(partition)`, all with the key attributes `keys`)
    interleaved by the attribute `order` (each query's own sort key), for the partitions named
    in `starts` (where each resumes; None: its beginning). A position is {partition: start key
    or None} for the partitions not yet read to the end.

    Only what is known to come first is listed: the list stops after a partition's last read
    item when that partition has more, since its next item may sort before anything later."""
    pages = {name: _query(request_of(name), keys, limit, start)
             for name, start in starts.items()}
    state: dict[str, Item | None] = {}
    for name, page in pages.items():
        if page.items or page.rest is not None:
            state[name] = page.rest if not page.items else starts[name]
    if any(not page.items and page.rest is not None for page in pages.values()):
        return Listing([], [state or None])  # a filter ate a whole read: nothing is certain
    streams = [[(item[order], name, n) for n, item in enumerate(page.items)]
               for name, page in pages.items()]
    items: list[Item] = []
    resume: list[Any] = [dict(state) or None]
    for _at, name, n in heapq.merge(*streams, key=lambda entry: entry[0]):
        page = pages[name]
        items.append(page.items[n])
        last_read = n + 1 == len(page.items)
        if last_read and page.rest is None:
            state.pop(name)
        else:
            state[name] = page.positions[n]
        resume.append(dict(state) or None)
        if len(items) == limit or (last_read and page.rest is not None):
            break
    return Listing(items, resume)
