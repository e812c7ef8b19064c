"""The console's courier change form: the offered couriers only, the stage said first, the
job re-routed once confirmed (the same flow as the CS API's courier amendment)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.access.keys import Role
from chalicelib.warehouse.jobs import protocol_rules
from tests.integration.test_console import Person, make_order, text


@pytest.fixture
def person(client: Client) -> Person:
    return Person(client)


@pytest.fixture
def with_sf(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PROTOCOL_RULES_JSON",
                       json.dumps({"carriers": {"offered_carriers": ["STO", "SF"]}}))
    protocol_rules.cache_clear()
    yield
    protocol_rules.cache_clear()


def _choices(page: str) -> list[str]:
    select = re.search(r'<select name="carrier_code"[^>]*>(.*?)</select>', page, re.S)
    assert select, "no courier form on the page"
    return re.findall(r'<option value="([^"]+)"', select.group(1))


def _carrier(page: str) -> str:
    found = re.search(r'data-testid="job-carrier" data-carrier="([^"]+)"', page)
    assert found, "no carrier on the page"
    return found.group(1)


def test_the_courier_form_offers_the_offered_list_and_reroutes_before_print(
        person: Person, make_key: Any, client: Client, stack: dict[str, str],
        with_sf: None) -> None:
    order_id = make_order(client, stack)
    person.sign_in(make_key("staff", f"bo-{uuid.uuid4().hex[:6]}", Role.BACK_OFFICE))
    page = text(person.get(f"/console/orders/{order_id}"))
    # Shanghai: the offered couriers; EMS only goes abroad.
    assert _choices(page) == sorted(protocol_rules().carriers.offered_carriers) == ["SF", "STO"]
    assert _carrier(page) == "STO"
    fields = {"csrf_token": person.csrf(), "kind": "courier", "carrier_code": "SF",
              "reason": "buyer wants SF"}
    preview = text(person.post(f"/console/orders/{order_id}/amend", fields))
    assert 'data-testid="amend-preview" data-outcome="applied"' in preview
    assert 'data-testid="preview-courier">SF<' in preview
    assert _carrier(text(person.get(f"/console/orders/{order_id}"))) == "STO"  # not yet
    done = person.post(f"/console/orders/{order_id}/amend", {**fields, "confirm": "yes"})
    assert done.status_code == 303
    after = text(person.get(done.headers["Location"]))
    assert 'data-testid="amend-outcome" data-outcome="applied"' in after
    assert _carrier(after) == "SF"


def test_a_courier_not_offered_is_refused_and_read_only_has_no_form(
        person: Person, make_key: Any, client: Client, stack: dict[str, str]) -> None:
    order_id = make_order(client, stack)
    person.sign_in(make_key("staff", f"ro-{uuid.uuid4().hex[:6]}", Role.READ_ONLY))
    assert 'data-testid="amend-courier"' not in text(person.get(f"/console/orders/{order_id}"))
    clerk = Person(person.client)
    clerk.sign_in(make_key("staff", f"bo-{uuid.uuid4().hex[:6]}", Role.BACK_OFFICE))
    assert _choices(text(clerk.get(f"/console/orders/{order_id}"))) == ["STO"]  # the default
    refused = clerk.post(f"/console/orders/{order_id}/amend", {
        "csrf_token": clerk.csrf(), "kind": "courier", "carrier_code": "SF", "reason": "SF",
        "confirm": "yes"})
    assert refused.status_code == 422 and "courier_not_offered" in text(refused)
    assert _carrier(text(clerk.get(f"/console/orders/{order_id}"))) == "STO"
