"""Every list the APIs answer comes a page at a time: a page limit, an opaque cursor to the next
page, a forged or foreign cursor refused with 400 invalid_cursor, and no cursor the first page
(issue 14, item 4). Against the local endpoint, which the tests share: lists are read for this
test's own items."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from chalice.test import Client

from chalicelib.access.keys import Role
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.flows import alert_dispatch

AT = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


@pytest.fixture
def cs_key(make_key: Any) -> str:
    return str(make_key("staff", "pager", Role.READ_ONLY))


def get(client: Client, key: str, path: str, expect: int = 200) -> Any:
    response = client.http.get(path, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == expect, (path, response.status_code, response.body)
    return json.loads(response.body)


def pages(client: Client, key: str, path: str, field: str) -> list[list[dict[str, Any]]]:
    """Every page of a list, following next_cursor."""
    found: list[list[dict[str, Any]]] = []
    cursor = None
    for _ in range(200):
        joiner = "&" if "?" in path else "?"
        page = get(client, key, path + (f"{joiner}cursor={quote(cursor)}" if cursor else ""))
        found.append(page[field])
        cursor = page["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("the pages never end")


def open_cases(kind: str, severities: list[Severity], order: str | None = None) -> list[str]:
    """One case per severity, opened a second apart, oldest first; their ids."""
    ids = []
    for n, severity in enumerate(severities):
        alert = Alert(kind=kind, severity=severity, subject=f"test:{uuid.uuid4().hex}",
                      at=AT + timedelta(seconds=n), summary="paged",
                      facts={"order_id": order} if order else {})
        recorded = alert_dispatch.handle(alert.model_dump_json(), AT)
        assert recorded.case is not None
        ids.append(recorded.case.case_id)
    return ids


def test_the_cases_of_an_order_come_a_page_at_a_time(client: Client, cs_key: str) -> None:
    order = f"ord_{uuid.uuid4().hex[:20]}"
    ids = open_cases("order.invalid", [Severity.HIGH] * 5, order)
    everything = get(client, cs_key, f"/cs/v1/cases?order_id={order}")
    assert [c["case_id"] for c in everything["cases"]] == ids  # the first page: all five
    assert everything["next_cursor"] is None
    paged = pages(client, cs_key, f"/cs/v1/cases?order_id={order}&limit=2", "cases")
    assert [len(p) for p in paged] == [2, 2, 1]
    assert [c["case_id"] for p in paged for c in p] == ids


def test_open_cases_of_a_type_page_with_the_severity_filter(client: Client,
                                                            cs_key: str) -> None:
    kind = f"test.paged_{uuid.uuid4().hex[:8]}"
    ids = open_cases(kind, [Severity.LOW, Severity.HIGH, Severity.MEDIUM, Severity.CRITICAL,
                            Severity.HIGH])
    paged = pages(client, cs_key, f"/cs/v1/cases?type={kind}&limit=2", "cases")
    assert [c["case_id"] for p in paged for c in p] == ids
    assert all(len(p) <= 2 for p in paged)
    worse = pages(client, cs_key, f"/cs/v1/cases?type={kind}&severity=high&limit=1", "cases")
    assert [c["case_id"] for p in worse for c in p] == [ids[1], ids[3], ids[4]]


def test_every_open_case_pages_oldest_first_across_severities(client: Client,
                                                              cs_key: str) -> None:
    kind = f"test.merged_{uuid.uuid4().hex[:8]}"
    ids = open_cases(kind, [Severity.CRITICAL, Severity.LOW, Severity.HIGH, Severity.MEDIUM,
                            Severity.CRITICAL, Severity.HIGH])
    paged = pages(client, cs_key, "/cs/v1/cases?limit=7", "cases")
    seen = [c for p in paged for c in p]
    assert all(len(p) <= 7 for p in paged)
    assert len({c["case_id"] for c in seen}) == len(seen)  # each once
    assert [c["case_id"] for c in seen if c["type"] == kind] == ids
    assert [c["opened_at"] for c in seen] == sorted(c["opened_at"] for c in seen)
    critical = pages(client, cs_key, "/cs/v1/cases?severity=critical&limit=3", "cases")
    assert [c["case_id"] for p in critical for c in p if c["type"] == kind] == [ids[0], ids[4]]


def test_a_page_stays_under_the_response_size_whatever_the_limit(
        client: Client, cs_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.flows import case_desk

    order = f"ord_{uuid.uuid4().hex[:20]}"
    ids = open_cases("order.invalid", [Severity.HIGH] * 4, order)
    one_case = len(json.dumps(get(client, cs_key, f"/cs/v1/cases/{ids[0]}")))
    monkeypatch.setattr(case_desk, "PAGE_BYTES", int(one_case * 2.5))
    paged = pages(client, cs_key, f"/cs/v1/cases?order_id={order}&limit=100", "cases")
    assert [len(p) for p in paged] == [2, 2]
    assert [c["case_id"] for p in paged for c in p] == ids


def test_forged_and_foreign_cursors_are_invalid_cursors(client: Client, cs_key: str) -> None:
    order = f"ord_{uuid.uuid4().hex[:20]}"
    open_cases("order.invalid", [Severity.HIGH] * 3, order)
    cursor = get(client, cs_key, f"/cs/v1/cases?order_id={order}&limit=1")["next_cursor"]
    assert cursor
    other = f"ord_{uuid.uuid4().hex[:20]}"
    changed = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    for path in (f"/cs/v1/cases?order_id={other}&cursor={quote(cursor)}",  # another query's
                 f"/cs/v1/cases?cursor={quote(cursor)}",
                 f"/cs/v1/cases?order_id={order}&severity=low&cursor={quote(cursor)}",
                 f"/cs/v1/cases?order_id={order}&cursor={quote(changed)}",
                 f"/cs/v1/cases?order_id={order}&cursor=garbage",
                 f"/cs/v1/notifications?cursor={quote(cursor)}"):
        assert get(client, cs_key, path, expect=400)["error"] == "invalid_cursor", path
    for limit in ("0", "501", "many"):
        answer = get(client, cs_key, f"/cs/v1/cases?limit={limit}", expect=400)
        assert answer["error"] == "invalid_query"


def test_undelivered_notifications_come_a_page_at_a_time(
        client: Client, cs_key: str, stack: dict[str, str]) -> None:
    from chalicelib.core.dynamodb import transact
    from chalicelib.cs import outbox_store
    from chalicelib.cs.notes import Note

    channel = f"email:paged-{uuid.uuid4().hex[:8]}"
    made = []
    for n in range(3):  # a second apart: the list is by creation, oldest first
        note = Note(note_id=f"note_paged_{uuid.uuid4().hex}", channel=channel, kind="case",
                    case_ids=("case_x",), severity=Severity.HIGH, due_at=AT,
                    created_at=AT + timedelta(seconds=n),
                    status="failed", attempts=5, last_error="gone")
        transact([outbox_store.put_note(note, None)])
        made.append(note.note_id)
    for _n in range(3):
        outbox_store.put_dead_alert(f"paged-{uuid.uuid4().hex}", "{}", AT)
    first = get(client, cs_key, "/cs/v1/notifications?status=failed")
    assert "next_cursor" in first
    paged = pages(client, cs_key, "/cs/v1/notifications?status=failed&limit=2", "notifications")
    assert all(len(p) <= 2 for p in paged)
    listed = [n["note_id"] for p in paged for n in p]
    assert [n for n in listed if n in made] == made and len(set(listed)) == len(listed)
    alerts: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = get(client, cs_key, "/cs/v1/notifications?status=dead&limit=2"
                   + (f"&cursor={quote(cursor)}" if cursor else ""))
        assert len(page["notifications"]) <= 2 and len(page["alerts"]) <= 2
        alerts += page["alerts"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [a["message_id"] for a in alerts]
    assert len(ids) == len(set(ids)) and sum(i.startswith("paged-") for i in ids) >= 3


def test_a_resync_cursor_belongs_to_its_own_updated_since(
        client: Client, stack: dict[str, str], make_key: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.core.settings import settings
    from tests.integration.test_warehouse_api import queue_orders

    partner = f"factory-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("WAREHOUSE_PARTNER", partner)
    settings.cache_clear()
    key = make_key("partner", partner)
    queue_orders(client, stack, 3)
    since = "2000-01-01T00:00:00Z"
    page = get(client, key, f"/warehouse/v1/jobs?updated_since={since}&limit=1")
    cursor = page["next_cursor"]
    assert cursor and len(page["jobs"]) == 1
    later = get(client, key, f"/warehouse/v1/jobs?updated_since={since}&limit=1"
                             f"&cursor={quote(cursor)}")
    assert later["jobs"][0]["job_id"] != page["jobs"][0]["job_id"]
    moved = get(client, key, "/warehouse/v1/jobs?updated_since=2001-01-01T00:00:00Z&limit=1"
                             f"&cursor={quote(cursor)}", expect=400)
    assert moved["error"] == "invalid_cursor"


def test_hundreds_of_open_cases_page_without_loss_or_repeat(client: Client, cs_key: str) -> None:
    """A courier storm's worth: 260 open cases of one order and type, mixed severities. Each
    listing hands every one of them out once, oldest first, in pages of at most its limit;
    removing the paging (one answer, or a cursor that restarts) fails this."""
    kind = f"test.storm_{uuid.uuid4().hex[:8]}"
    order = f"ord_{uuid.uuid4().hex[:20]}"
    severities = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
    opened = [severities[n * 7 % 4] for n in range(260)]
    ids = open_cases(kind, opened, order)
    mine = set(ids)
    worse = [i for i, s in zip(ids, opened, strict=True) if s.at_least(Severity.HIGH)]
    for path, expected, limit in (
            (f"/cs/v1/cases?type={kind}&limit=50", ids, 50),
            (f"/cs/v1/cases?order_id={order}&limit=64", ids, 64),
            (f"/cs/v1/cases?order_id={order}&severity=high&limit=30", worse, 30),
            ("/cs/v1/cases?limit=45", ids, 45),
            ("/cs/v1/cases?severity=high&limit=45", worse, 45)):
        paged = pages(client, cs_key, path, "cases")
        assert len(paged) > 1 and all(len(p) <= limit for p in paged), path
        seen = [c["case_id"] for p in paged for c in p]
        assert len(seen) == len(set(seen)), path  # nothing twice, other tests' cases included
        assert [i for i in seen if i in mine] == expected, path
