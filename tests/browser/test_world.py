"""The browser tests' helpers make what they say, checked through the CS API, so a failing
browser test points at a page, not at its setup."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.access.keys import Role
from tests.browser.world import World


def test_an_order_moves_through_the_factorys_stages_over_http(world: World) -> None:
    order = world.shipped(world.order())
    view = world.api(f"/orders/{order.order_id}")
    assert view["job"]["work"] == "shipped"
    found = world.api(f"/orders?carrier_code=STO&tracking_number={order.tracking_number}")
    assert order.order_id in str(found)


def test_the_im_sinks_message_links_the_console_under_test(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """What make run's IM sink shows too: an absolute local console link per case."""
    case_id, link = world.case_on_im(world.order(), monkeypatch)
    assert link == f"{world.console}/console/cases/{case_id}"
    assert link.startswith("http://localhost:")
    case: Any = world.api(f"/cases/{case_id}", Role.BACK_OFFICE)
    assert case["status"] == "open"
