"""Housekeeping items written through the local endpoint carry the TTL attribute after their
stated retention: a dead alert (a year), the notifier's lease (a day after it lapses)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.core import aws
from chalicelib.core.dynamodb import from_attrs, to_attrs
from chalicelib.core.settings import settings
from chalicelib.cs import outbox_store

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def stored(pk: str) -> dict[str, Any]:
    answer = aws.client("dynamodb").get_item(TableName=settings().cases_table,
                                             Key=to_attrs({"pk": pk}), ConsistentRead=True)
    return from_attrs(answer["Item"])


def test_a_dead_alert_expires_after_a_year(stack: dict[str, str]) -> None:
    message = f"retention-{uuid.uuid4().hex}"
    outbox_store.put_dead_alert(message, "{}", NOW)
    assert stored(f"DEADALERT#{message}")["expires_at"] == int(
        (NOW + timedelta(days=365)).timestamp())


def test_a_lease_left_behind_expires_a_day_after_it_lapsed(stack: dict[str, str]) -> None:
    owner = f"retention-{uuid.uuid4().hex}"
    later = datetime.now(UTC) + timedelta(days=3650)  # past any lease another test holds
    assert outbox_store.take_lease(owner, later, timedelta(minutes=5))
    try:
        lease = stored("LEASE#notifier")
        assert lease["expires_at"] == int((later + timedelta(minutes=5, days=1)).timestamp())
    finally:
        outbox_store.release_lease(owner)
