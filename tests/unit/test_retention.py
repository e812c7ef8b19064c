"""Housekeeping items carry `expires_at` (epoch seconds, the tables' TTL attribute) after the
retention the README states; what must stay (a pending note, a job) carries none (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.core.dynamodb import from_attrs
from chalicelib.cs import outbox_store
from chalicelib.cs.alerts import Severity
from chalicelib.cs.notes import Note
from chalicelib.warehouse import job_store
from chalicelib.warehouse.jobs import JobEvent
from tests.unit.test_jobs import offered

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def put_item(action: Any) -> dict[str, Any]:
    return from_attrs(action.item["Put"]["Item"])


def test_a_feed_entry_expires_after_thirty_days_and_its_job_never() -> None:
    job = offered()
    entry = put_item(job_store.feed_entry(job, JobEvent(type="job.offered", summary="x"),
                                          NOW, 0))
    assert entry["expires_at"] == epoch(NOW + timedelta(days=30))
    assert "expires_at" not in put_item(job_store.put(job, None))


@pytest.mark.parametrize(("status", "days"), [
    ("pending", None), ("sent", 30), ("folded", 30), ("skipped", 30), ("failed", 365),
    ("dead", 365)])
def test_a_note_expires_once_done_after_its_status_retention(status: str,
                                                           days: int | None) -> None:
    created = NOW - timedelta(hours=3)
    note = Note(note_id="note_1", channel="email:cs", kind="case", case_ids=("case_1",),
                severity=Severity.HIGH, due_at=NOW, created_at=created, status=status)  # type: ignore[arg-type]
    item = put_item(outbox_store.put_note(note, 1))
    if days is None:
        assert "expires_at" not in item  # a note still to send never goes
    else:
        assert item["expires_at"] == epoch(created + timedelta(days=days))
    assert outbox_store.note_of(item) == note  # read back without the TTL attribute
