from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from chalicelib.errors import Conflict
from chalicelib.jobs import Handshake, Job, Package, ShipReport, Work, check_ship, new_job
from chalicelib.marketplaces import shopify
from tests.support import dumps, shopify_order

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
PKG = Package(carrier_code="STO", tracking_number="773012345678901")


def job(**fields: object) -> Job:
    order = shopify.normalise(dumps(shopify_order()), {"x-shopify-shop-domain": "s"}, "shopify")
    return new_job(order, "factory-1", NOW).model_copy(update=fields)


def test_new_job_carries_what_the_warehouse_needs() -> None:
    j = job()
    assert j.job_id == "job_" + j.order_id.removeprefix("ord_")
    assert (j.handshake, j.work) == (Handshake.OFFERED, Work.QUEUED)
    assert [(line.sku, line.quantity) for line in j.lines] == [("LS-WHT-M", 2), ("TOTE-NAT", 1)]
    assert j.ship_to.city == "上海"
    assert not j.leased(NOW)


def test_ship_needs_the_current_lease() -> None:
    leased = job(lease_id="lease_a", lease_expires_at=NOW + timedelta(minutes=10))
    assert check_ship(leased, ShipReport(lease_id="lease_a", packages=(PKG,)))
    with pytest.raises(Conflict) as error:
        check_ship(leased, ShipReport(lease_id="lease_b", packages=(PKG,)))
    assert error.value.reason == "lease_mismatch"
    with pytest.raises(Conflict):
        check_ship(job(), ShipReport(packages=(PKG,)))


def test_same_ship_report_twice_is_one_shipment_a_different_one_conflicts() -> None:
    shipped = job(work=Work.SHIPPED, handshake=Handshake.ACCEPTED, packages=(PKG,))
    assert check_ship(shipped, ShipReport(packages=(PKG,))) is False
    other = Package(carrier_code="SF", tracking_number="SF1234567890")
    with pytest.raises(Conflict) as error:
        check_ship(shipped, ShipReport(packages=(other,)))
    assert error.value.reason == "already_shipped"


def test_cancelled_job_cannot_ship() -> None:
    with pytest.raises(Conflict) as error:
        check_ship(job(work=Work.CANCELLED, lease_id="l"), ShipReport(lease_id="l",
                                                                      packages=(PKG,)))
    assert error.value.reason == "job_cancelled"


@pytest.mark.parametrize("bad", [
    {"carrier_code": "", "tracking_number": "773012345678901"},
    {"carrier_code": "STO", "tracking_number": "1 2"},
    {"carrier_code": "STO"},
])
def test_package_validation(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Package.model_validate(bad)
