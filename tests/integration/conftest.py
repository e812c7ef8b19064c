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
