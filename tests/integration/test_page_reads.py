"""The console's pages send the reads that wait on none of each other at once
(chalicelib.core.runs.started), as DynamoDB rewards: the Today page its seven Queries, the case
queue its page beside its counts, an order's page the order's cases beside the order, its job
and its parcels.

Each DynamoDB call of the app's client is held before it is sent (botocore's before-call) until
as many calls as the test expects are in flight, or a second has passed: calls made one after
the other are never in flight together (each waits its second alone) and calls made at once all
are, however slowly a loaded machine starts its threads. The most in flight together is how
many the page sent at once. (The local endpoint
serves them one at a time all the same: bench/console_pages.py says what that costs.)"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chalice.test import Client

from chalicelib.access.keys import Role
from chalicelib.core import aws
from tests.integration.test_console import Person, make_order

HOLD = 1.0  # seconds a call waits at most for the others the test expects beside it


@contextmanager
def calls_in_flight(together: int = 1) -> Iterator[dict[str, int]]:
    """The app's DynamoDB calls while open: `peak` the most in flight together, `calls` all;
    a call is held until `together` are in flight (or HOLD has passed)."""
    seen = {"now": 0, "peak": 0, "calls": 0}
    changed = threading.Condition()

    def begin(**_: Any) -> None:  # must return None: a value would replace the call
        with changed:
            seen["now"] += 1
            seen["calls"] += 1
            seen["peak"] = max(seen["peak"], seen["now"])
            changed.notify_all()
            changed.wait_for(lambda: seen["now"] >= together, timeout=HOLD)

    def end(**_: Any) -> None:
        with changed:
            seen["now"] -= 1
            changed.notify_all()

    events = aws.client("dynamodb").meta.events
    events.register("before-call.dynamodb", begin)
    events.register("after-call.dynamodb", end)
    try:
        yield seen
    finally:
        events.unregister("before-call.dynamodb", begin)
        events.unregister("after-call.dynamodb", end)


def signed_in(client: Client, make_key: Any) -> Person:
    person = Person(client)
    answer = person.sign_in(make_key("staff", f"bo-{uuid.uuid4().hex[:6]}", Role.BACK_OFFICE))
    assert answer.status_code == 303
    return person


def test_the_today_page_sends_its_seven_queries_at_once(client: Client, make_key: Any) -> None:
    person = signed_in(client, make_key)
    with calls_in_flight(together=7) as seen:
        page = person.get("/console/today")
    assert page.status_code == 200 and "<svg" in page.body.decode()
    # The session's read first, then the seven Queries together (a further page, if a Query
    # needs one, follows its own first page).
    assert seen["peak"] == 7, seen


def test_the_case_queue_reads_its_page_beside_its_counts(client: Client, make_key: Any) -> None:
    person = signed_in(client, make_key)
    with calls_in_flight(together=2) as seen:
        page = person.get("/console/cases")
    assert page.status_code == 200
    assert seen["peak"] == 2, seen


def test_an_order_page_reads_the_orders_cases_beside_the_order(
        client: Client, stack: dict[str, str], make_key: Any) -> None:
    order_id = make_order(client, stack)
    person = signed_in(client, make_key)
    with calls_in_flight(together=2) as seen:
        page = person.get(f"/console/orders/{order_id}")
    assert page.status_code == 200 and order_id in page.body.decode()
    assert seen["peak"] == 2, seen
