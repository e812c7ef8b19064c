"""Fixtures every integration test module shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chalice.test import Client

from app import app


@pytest.fixture
def client(stack: dict[str, str]) -> Iterator[Client]:
    """The app in process, as Lambda would run it, against the test's local stack."""
    with Client(app, stage_name="local") as test_client:
        yield test_client


@pytest.fixture
def partner(stack: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A warehouse partner of this test's own (every new job goes to it), so its claims see
    only this test's jobs."""
    import uuid

    from chalicelib.core.settings import settings

    name = f"factory-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("WAREHOUSE_PARTNER", name)
    settings.cache_clear()
    return name
