"""The pure writeback plan: which packages, which items, and what happens after each attempt."""

from __future__ import annotations

from datetime import timedelta

from chalicelib.marketplaces import writeback
from chalicelib.warehouse import jobs
from chalicelib.warehouse.jobs import Package
from tests.unit.test_jobs import NOW, PKG, packed

SECOND = Package(carrier_code="STO", tracking_number="773012345679")


def test_the_first_package_of_the_first_shipment_names_every_line_of_the_order() -> None:
    job = jobs.ship(packed(), "s1", (PKG, SECOND), True, NOW).job
    assert all(line.line_id for line in job.lines)  # the marketplace's ids travel on the job
    plan = writeback.plan(job, job.shipments[0], NOW)
    first, second = plan.packages
    assert first.order_lines == tuple((ln.line_id, ln.quantity) for ln in job.lines)
    assert first.items == first.order_lines and first.lines == ()  # () still means "all"
    # The warehouse did not say what went in the second parcel: it names no items.
    assert second.order_lines == () and second.items == ()
    assert (first.package_id, second.package_id) == ("s1-1", "s1-2")
    assert (first.tracking_number, plan.status, plan.due_at) == (PKG.tracking_number, "pending",
                                                                 NOW)


def test_a_later_shipment_does_not_claim_the_whole_order_again() -> None:
    partial = jobs.ship(packed(), "s1", (PKG,), False, NOW).job
    final = jobs.ship(partial, "s2", (SECOND,), True, NOW).job
    assert writeback.plan(final, final.shipments[0], NOW).packages[0].order_lines
    assert writeback.plan(final, final.shipments[1], NOW).packages[0].order_lines == ()


def test_packages_are_confirmed_one_by_one_and_the_writeback_is_done_with_the_last() -> None:
    job = jobs.ship(packed(), "s1", (PKG, SECOND), True, NOW).job
    plan = writeback.plan(job, job.shipments[0], NOW)
    half = writeback.confirmed(plan, "s1-1")
    assert half.status == "pending" and [p.package_id for p in half.remaining] == ["s1-2"]
    assert writeback.confirmed(half, "s1-2").status == "done"


def test_failures_back_off_then_give_up_and_a_refusal_gives_up_at_once() -> None:
    job = jobs.ship(packed(), "s1", (PKG,), True, NOW).job
    plan = writeback.plan(job, job.shipments[0], NOW)
    waits = []
    current = plan
    while current.status == "pending":
        current = writeback.failed(current, "HTTP 503", True, NOW)
        waits.append(current.due_at - NOW)
    assert current.attempts == writeback.MAX_ATTEMPTS and current.status == "failed"
    assert waits[:3] == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    assert max(waits) <= writeback.LONGEST_WAIT
    refused = writeback.failed(plan, "invalid tracking number", False, NOW)
    assert (refused.status, refused.attempts, refused.last_error) == (
        "failed", 1, "invalid tracking number")
