"""The job protocol's state machine, pure: every command from every state."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from chalicelib.core.errors import Conflict
from chalicelib.marketplaces import shopify
from chalicelib.orders.order import Address
from chalicelib.warehouse import jobs
from chalicelib.warehouse.carriers import Carrier, CarrierRules, choose_carrier
from chalicelib.warehouse.jobs import (
    ChangeKind,
    ChangeRequest,
    ChangeStatus,
    Handshake,
    Job,
    JobLine,
    Package,
    Promise,
    RejectReason,
    Transition,
    Work,
)
from tests.support import dumps, shopify_order

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
# An operator who also has an SF account (the default offers STO only).
WITH_SF = jobs.ProtocolRules(carriers=CarrierRules(
    offered_carriers=frozenset({Carrier.STO, Carrier.SF})))
LEASE = "lease_a"
PKG = Package(carrier_code="STO", tracking_number="773012345678")
NEW_ADDRESS = Address(name="林伟", line1="淮海中路 999 号", city="上海", province="Shanghai",
                      province_code="SH", postal_code="200031", country_code="CN")


def offered(**changes: object) -> Job:
    order = shopify.normalise(dumps(shopify_order(**changes)), {"x-shopify-shop-domain": "s"},
                              "shopify")
    return jobs.new_job(order, "factory-1", NOW)


def leased(job: Job | None = None) -> Job:
    return jobs.claim(job or offered(), LEASE, NOW + timedelta(minutes=10), NOW).job


def accepted() -> Job:
    return jobs.accept(leased(), LEASE, NOW).job


def printed() -> Job:
    return jobs.print_job(accepted(), NOW).job


def picked() -> Job:
    return jobs.pick(printed(), NOW).job


def packed() -> Job:
    return jobs.pack(picked(), 640, 1, NOW).job


def shipped() -> Job:
    return jobs.ship(packed(), "s1", (PKG,), True, NOW).job


def cancelled() -> Job:
    return jobs.request_change(accepted(), ChangeRequest(kind=ChangeKind.CANCEL), "cs", NOW).job


def rejected() -> Job:
    return jobs.reject(leased(), LEASE, RejectReason.OUT_OF_STOCK, "", NOW).job


STATES: dict[str, Callable[[], Job]] = {
    "offered": offered, "leased": leased, "accepted": accepted, "printed": printed,
    "picked": picked, "packed": packed, "shipped": shipped, "cancelled": cancelled,
    "rejected": rejected,
}
LATER = NOW + timedelta(minutes=1)
COMMANDS: dict[str, Callable[[Job], Transition]] = {
    "claim": lambda j: jobs.claim(j, "lease_b", LATER + timedelta(minutes=10), LATER),
    "accept": lambda j: jobs.accept(j, LEASE, LATER),
    "reject": lambda j: jobs.reject(j, LEASE, RejectReason.CAPACITY, "", LATER),
    "print": lambda j: jobs.print_job(j, LATER),
    "pick": lambda j: jobs.pick(j, LATER),
    "pack": lambda j: jobs.pack(j, 500, 1, LATER),
    "ship": lambda j: jobs.ship(j, "s2", (PKG,), True, LATER),
}
# Which command may follow which state; every other pair must be a 409.
ALLOWED = {
    ("offered", "claim"),
    ("leased", "accept"), ("leased", "reject"),
    ("accepted", "print"),
    # A retried accept (same lease) after the job moved on changes nothing.
    *((state, "accept") for state in ("accepted", "printed", "picked", "packed", "shipped")),
    ("printed", "pick"), ("printed", "pack"), ("printed", "ship"),
    ("picked", "pick"), ("picked", "pack"), ("picked", "ship"),
    ("packed", "pack"), ("packed", "ship"),
}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_from_every_state(state: str, command: str) -> None:
    job = STATES[state]()
    if (state, command) in ALLOWED:
        transition = COMMANDS[command](job)
        assert transition.job.version >= job.version
    else:
        with pytest.raises(Conflict) as error:
            COMMANDS[command](job)
        assert error.value.status == 409
        assert error.value.details["current_state"]["work"] == job.work


def test_new_job_has_carrier_cost_and_deadlines_from_the_rules() -> None:
    job = offered()
    assert job.carrier.carrier_code == "STO"
    assert job.carrier.region == "jzh"  # Shanghai
    assert Decimal(job.carrier.expected_cost or "0") == Decimal("4.5")
    assert job.accept_by == NOW + timedelta(hours=24)
    assert job.deemed_accepted_at == NOW + timedelta(hours=72)
    assert job.ship_by > NOW
    assert (job.handshake, job.work, job.version) == (Handshake.OFFERED, Work.QUEUED, 0)


def test_buyer_requested_courier_wins_when_offered() -> None:
    payload = shopify_order(note_attributes=[{"name": "requested_courier", "value": "顺丰"}])
    order = shopify.normalise(dumps(payload), {}, "shopify")
    job = jobs.new_job(order, "factory-1", NOW, WITH_SF)
    assert job.carrier.carrier_code == "SF" and job.carrier.fallback is None
    assert "requested" in job.carrier.reason
    # The handbook's default offers STO only: the request falls back, and the job says why.
    default = jobs.new_job(order, "factory-1", NOW)
    assert default.carrier.carrier_code == "STO"
    assert default.carrier.fallback == "courier_not_offered"
    assert "courier_not_offered" in jobs.offered_event(default).summary


def test_lease_covers_only_the_offer() -> None:
    job = leased()
    assert job.leased(NOW) and not job.leased(NOW + timedelta(minutes=11))
    with pytest.raises(Conflict) as expired:
        jobs.accept(job, LEASE, NOW + timedelta(minutes=11))
    assert expired.value.reason == "lease_expired"
    with pytest.raises(Conflict) as other:
        jobs.accept(job, "lease_other", NOW)
    assert other.value.reason == "lease_mismatch"
    # An expired lease makes it claimable again, by anyone of the partner.
    again = jobs.claim(job, "lease_b", NOW + timedelta(minutes=30), NOW + timedelta(minutes=11))
    assert again.job.lease_id == "lease_b" and again.job.claim_count == 2
    extended = jobs.heartbeat(job, LEASE, NOW + timedelta(minutes=20), NOW).job
    assert extended.lease_expires_at == NOW + timedelta(minutes=20)
    released = jobs.release(job, LEASE, NOW).job
    assert released.lease_id is None and released.claimable


def test_unanswered_offers_are_dead_lettered_with_an_alert() -> None:
    job = offered()
    at = NOW
    for _ in range(jobs.DEFAULT_PROTOCOL.max_offers):
        job = jobs.claim(job, "l", at + timedelta(minutes=10), at).job
        at += timedelta(minutes=11)
    last = jobs.claim(job, "l", at + timedelta(minutes=10), at)
    assert last.job.dead_lettered and not last.job.claimable
    assert [e.alert for e in last.events] == ["job.offer_unanswered"]


def test_reject_raises_an_alert_with_the_reason() -> None:
    transition = jobs.reject(leased(), LEASE, RejectReason.INCORRECT_ADDRESS, "no such street",
                             NOW)
    assert (transition.job.handshake, transition.job.work) == (Handshake.REJECTED,
                                                                Work.CLOSED_INCOMPLETE)
    (event,) = transition.events
    assert event.alert == "job.rejected" and "incorrect_address" in event.summary


def test_ship_is_idempotent_on_shipment_id_and_partial_keeps_the_job_open() -> None:
    job = packed()
    partial = jobs.ship(job, "s1", (PKG,), False, NOW).job
    assert partial.work is Work.PACKED and len(partial.shipments) == 1
    assert jobs.ship(partial, "s1", (PKG,), False, NOW).changed is False
    with pytest.raises(Conflict) as reused:
        jobs.ship(partial, "s1", (Package(carrier_code="SF", tracking_number="SF1234567890"),),
                  False, NOW)
    assert reused.value.reason == "shipment_id_reused"
    final = jobs.ship(partial, "s2", (Package(carrier_code="STO", tracking_number="7731"),),
                      True, NOW).job
    assert final.work is Work.SHIPPED and len(final.shipments) == 2


# Changes while the factory works ---------------------------------------------------------

ADDRESS = ChangeRequest(kind=ChangeKind.ADDRESS, reason="buyer moved", address=NEW_ADDRESS)
SIZE = ChangeRequest(kind=ChangeKind.ATTRIBUTES, reason="size L instead of M",
                     lines=(JobLine(sku="LS-WHT-L", quantity=2), JobLine(sku="TOTE-NAT",
                                                                         quantity=1)))
GIFT = ChangeRequest(kind=ChangeKind.PROMISE, reason="gift card",
                     promise=Promise(kind="gift_message", text="生日快乐"))
CANCEL = ChangeRequest(kind=ChangeKind.CANCEL, reason="buyer cancelled")
TO_SF = ChangeRequest(kind=ChangeKind.COURIER, reason="buyer wants SF", carrier_code="SF")


@pytest.mark.parametrize("state", ["offered", "leased", "accepted"])
@pytest.mark.parametrize("request_", [ADDRESS, SIZE, GIFT, CANCEL], ids=lambda r: r.kind)
def test_before_print_a_change_is_applied_at_once(state: str, request_: ChangeRequest) -> None:
    transition = jobs.request_change(STATES[state](), request_, "cs alice", NOW)
    job = transition.job
    (change,) = job.changes
    assert change.status is ChangeStatus.APPLIED
    assert [e.type for e in transition.events] == ["change.applied"]
    assert transition.events[0].feed
    if request_ is ADDRESS:
        assert job.ship_to == NEW_ADDRESS
    elif request_ is SIZE:
        assert job.lines[0].sku == "LS-WHT-L"
    elif request_ is GIFT:
        assert job.promises[0].text == "生日快乐"
    else:
        assert job.work is Work.CANCELLED and not job.claimable


@pytest.mark.parametrize("state", ["printed", "picked", "packed"])
@pytest.mark.parametrize("request_", [ADDRESS, SIZE, GIFT, CANCEL], ids=lambda r: r.kind)
def test_after_print_a_change_is_an_intercept_request(state: str,
                                                      request_: ChangeRequest) -> None:
    before = STATES[state]()
    job = jobs.request_change(before, request_, "cs alice", NOW).job
    (change,) = job.changes
    assert change.status is ChangeStatus.INTERCEPT_REQUESTED
    assert change.deadline == NOW + timedelta(hours=4)
    assert job.ship_to == before.ship_to and job.work is before.work  # nothing applied yet
    for blocked in ("pack", "ship"):
        with pytest.raises(Conflict) as error:
            COMMANDS[blocked](job)
        assert error.value.reason == "change_pending"


@pytest.mark.parametrize("request_", [ADDRESS, SIZE, GIFT, CANCEL], ids=lambda r: r.kind)
def test_after_shipping_a_change_is_an_after_sales_case(request_: ChangeRequest) -> None:
    transition = jobs.request_change(shipped(), request_, "cs alice", NOW)
    assert transition.job.changes[0].status is ChangeStatus.AFTER_SALES
    assert transition.job.work is Work.SHIPPED
    assert transition.events[0].alert == "change.after_sales"


# A courier change: the same stage rules as an address change -----------------------------


@pytest.mark.parametrize("state", ["offered", "leased", "accepted"])
def test_a_courier_change_before_print_reroutes_and_reprices(state: str) -> None:
    before = STATES[state]()
    transition = jobs.request_change(before, TO_SF, "cs alice", NOW, WITH_SF)
    expected = choose_carrier(before.ship_to, WITH_SF.carriers, "SF")
    job = transition.job
    assert job.changes[0].status is ChangeStatus.APPLIED and job.changes[0].carrier_code == "SF"
    assert job.carrier.carrier_code == "SF" == expected.carrier_code
    assert job.carrier.expected_cost == str(expected.expected_cost)
    assert job.carrier.expected_cost != before.carrier.expected_cost  # SF costs more
    assert [e.type for e in transition.events] == ["change.applied"]
    if job.handshake is Handshake.ACCEPTED:  # the waybill is printed for the new courier
        printed_ = jobs.print_job(job, NOW).job.printed
        assert printed_ is not None and printed_.carrier_code == "SF"


def test_a_courier_change_not_offered_falls_back_to_the_rule_table() -> None:
    job = jobs.request_change(accepted(), TO_SF, "marketplace", NOW).job  # default: STO only
    assert job.changes[0].status is ChangeStatus.APPLIED
    assert (job.carrier.carrier_code, job.carrier.fallback) == ("STO", "courier_not_offered")
    assert "courier_not_offered" in job.carrier.reason


@pytest.mark.parametrize("state", ["printed", "picked", "packed"])
def test_a_courier_change_after_print_is_intercepted_then_relabelled(state: str) -> None:
    before = STATES[state]()
    job = jobs.request_change(before, TO_SF, "cs", NOW, WITH_SF).job
    change = job.changes[0]
    assert change.status is ChangeStatus.INTERCEPT_REQUESTED
    assert job.carrier == before.carrier  # nothing re-routed until the factory intercepts
    done = jobs.resolve_change(job, change.change_id, True, False, "", "p", NOW, WITH_SF).job
    assert done.carrier.carrier_code == "SF" and done.reprint_required
    assert done.work is before.work  # the parcel keeps its stage; only the label is new
    relabelled = jobs.print_job(done, NOW).job
    assert relabelled.printed is not None and relabelled.printed.carrier_code == "SF"
    assert relabelled.printed.count == 2 and not relabelled.reprint_required


def test_a_failed_courier_intercept_keeps_the_courier() -> None:
    job = jobs.request_change(packed(), TO_SF, "cs", NOW, WITH_SF).job
    done = jobs.resolve_change(job, job.changes[0].change_id, False, False, "gone", "p", NOW,
                               WITH_SF).job
    assert done.carrier.carrier_code == "STO" and not done.reprint_required


def test_a_courier_change_after_shipping_is_refused_with_its_own_case() -> None:
    before = shipped()
    transition = jobs.request_change(before, TO_SF, "cs alice", NOW, WITH_SF)
    (event,) = transition.events
    assert (event.type, event.alert, event.severity) == ("order.courier_refused",) * 2 + ("high",)
    assert transition.job.changes[0].status is ChangeStatus.AFTER_SALES
    assert transition.job.carrier == before.carrier and transition.job.work is Work.SHIPPED


def test_a_courier_change_needs_its_courier() -> None:
    with pytest.raises(ValidationError, match="courier"):
        ChangeRequest(kind=ChangeKind.COURIER)


@pytest.mark.parametrize("state", ["cancelled", "rejected"])
def test_a_closed_job_takes_no_changes(state: str) -> None:
    with pytest.raises(Conflict) as error:
        jobs.request_change(STATES[state](), ADDRESS, "cs", NOW)
    assert error.value.reason == "job_closed"


def test_intercepted_address_change_needs_a_new_label_on_the_parcel_in_hand() -> None:
    job = jobs.request_change(packed(), ADDRESS, "cs alice", NOW).job
    change_id = job.changes[0].change_id
    with pytest.raises(Conflict):
        jobs.print_job(job, NOW)  # not while the change is open
    done = jobs.resolve_change(job, change_id, True, False, "label swapped", "partner", NOW).job
    assert done.changes[0].status is ChangeStatus.INTERCEPTED
    assert done.ship_to == NEW_ADDRESS and done.work is Work.PACKED and done.reprint_required
    with pytest.raises(Conflict) as error:
        jobs.ship(done, "s1", (PKG,), True, NOW)
    assert error.value.reason == "reprint_required"
    reprinted = jobs.print_job(done, NOW).job
    assert reprinted.printed is not None and reprinted.printed.count == 2
    assert reprinted.work is Work.PACKED and not reprinted.reprint_required
    assert jobs.ship(reprinted, "s1", (PKG,), True, NOW).job.work is Work.SHIPPED


def test_intercepted_item_change_goes_back_to_picking() -> None:
    job = jobs.request_change(packed(), SIZE, "cs", NOW).job
    done = jobs.resolve_change(job, job.changes[0].change_id, True, False, "", "p", NOW).job
    assert done.work is Work.QUEUED and done.lines[0].sku == "LS-WHT-L"
    # Resolving again the same way is a no-op; the other way is a conflict.
    change_id = done.changes[0].change_id
    assert jobs.resolve_change(done, change_id, True, False, "", "partner", NOW).changed is False
    with pytest.raises(Conflict):
        jobs.resolve_change(done, change_id, False, False, "", "partner", NOW)


def test_intercepted_cancellation_returns_the_parcel_to_stock() -> None:
    job = jobs.request_change(packed(), CANCEL, "cs", NOW).job
    done = jobs.resolve_change(job, job.changes[0].change_id, True, False, "", "p", NOW).job
    assert done.work is Work.CANCELLED


def test_a_failed_intercept_alerts_cs_and_lets_the_job_go_on() -> None:
    job = jobs.request_change(packed(), ADDRESS, "cs", NOW).job
    transition = jobs.resolve_change(job, job.changes[0].change_id, False, False,
                                     "already on the truck", "p", NOW)
    assert transition.events[0].alert == "change.intercept_failed"
    assert transition.job.ship_to != NEW_ADDRESS
    assert jobs.ship(transition.job, "s1", (PKG,), True, NOW).job.work is Work.SHIPPED


def test_a_promise_intercept_keeps_the_work_unless_a_reprint_is_asked() -> None:
    job = jobs.request_change(picked(), GIFT, "cs", NOW).job
    change_id = job.changes[0].change_id
    kept = jobs.resolve_change(job, change_id, True, False, "", "p", NOW).job
    assert kept.work is Work.PICKED and kept.promises[0].kind == "gift_message"
    assert not kept.reprint_required
    again = jobs.resolve_change(job, change_id, True, True, "", "p", NOW).job
    assert again.work is Work.PICKED and again.reprint_required


def test_change_requests_need_their_data() -> None:
    with pytest.raises(ValidationError):
        ChangeRequest(kind=ChangeKind.ADDRESS)


STOCK_UP = ChangeRequest(kind=ChangeKind.ATTRIBUTES, reason="restocked tomorrow, buyer agreed",
                         lines=(JobLine(sku="LS-WHT-L", quantity=2, stock_up=True),))


def test_a_stock_up_line_moves_ship_by_to_the_next_day_and_silences_todays_late_alert() -> None:
    job = accepted()  # paid 11:00 Shanghai: due at 15:00 the same day
    marked = jobs.request_change(job, STOCK_UP, "cs", NOW)
    moved = marked.job
    assert moved.lines[0].stock_up and "ships next day" in marked.events[0].summary
    tomorrow_last = datetime(2026, 11, 24, 11, 30, tzinfo=UTC)  # 19:30 Shanghai, next day
    assert (job.ship_by, moved.ship_by) == (datetime(2026, 11, 23, 7, 0, tzinfo=UTC),
                                            tomorrow_last)
    assert alerts_at(moved, job.ship_by + timedelta(hours=1), "job.late_dispatch") == []
    assert jobs.next_deadline(moved) == tomorrow_last
    assert alerts_at(moved, tomorrow_last, "job.late_dispatch") == ["job.late_dispatch"]
    assert alerts_at(job, job.ship_by + timedelta(hours=1), "job.late_dispatch") == [
        "job.late_dispatch"]  # the same job, unmarked, is late


def test_a_stock_up_after_print_moves_ship_by_once_intercepted_and_never_earlier() -> None:
    job = printed()
    asked = jobs.request_change(job, STOCK_UP, "cs", NOW).job
    assert asked.ship_by == job.ship_by  # nothing moves on a request
    later = NOW + timedelta(days=3)
    done = jobs.resolve_change(asked, asked.changes[0].change_id, True, False, "", "p", later).job
    assert jobs.DEFAULT_PROTOCOL.dispatch.local(done.ship_by).date() == (
        later + timedelta(days=1)).date()
    unmarked = ChangeRequest(kind=ChangeKind.ATTRIBUTES, reason="in stock after all",
                             lines=(JobLine(sku="LS-WHT-L", quantity=2),))
    assert jobs.request_change(done, unmarked, "cs", later).job.ship_by == done.ship_by


# Deadlines ---------------------------------------------------------------------------------


def alerts_at(job: Job, at: datetime, kind: str) -> list[str]:
    return [e.alert for e in jobs.overdue(job, at).events if e.alert == kind]


def test_not_accepted_alerts_at_24h_then_at_72h_the_contract_accepts_the_job() -> None:
    job = leased(offered())
    assert alerts_at(job, NOW + timedelta(hours=23), "job.not_accepted") == []
    first = jobs.overdue(job, NOW + timedelta(hours=24))
    assert "job.not_accepted" in [e.alert for e in first.events]
    assert alerts_at(first.job, NOW + timedelta(hours=30), "job.not_accepted") == []  # daily
    assert jobs.next_deadline(first.job) == NOW + timedelta(hours=48)  # the next daily alert
    at72 = jobs.overdue(first.job, NOW + timedelta(hours=72))
    deemed = at72.job
    assert deemed.deemed_accepted and deemed.handshake is Handshake.ACCEPTED
    answer = [(e.type, e.feed, e.alert) for e in at72.events if e.type != "alert.late_dispatch"]
    assert answer == [("job.deemed_accepted", True, None)]  # the factory hears; no CS alert
    assert not deemed.claimable and deemed.lease_id is None  # off the offers
    assert alerts_at(deemed, NOW + timedelta(hours=120), "job.not_accepted") == []
    dispatch = deemed.alerts["job.late_dispatch"] + timedelta(hours=24)
    assert jobs.next_deadline(deemed) == dispatch  # only dispatch is left to watch
    late = NOW + timedelta(hours=72, minutes=1)
    assert jobs.accept(deemed, LEASE, late).changed is False  # a late yes changes nothing
    assert jobs.print_job(deemed, late).job.work is Work.PRINTED  # printable


def test_a_deemed_accepted_job_is_refused_only_as_a_recorded_breach() -> None:
    deemed = jobs.overdue(leased(offered()), NOW + timedelta(hours=72)).job
    late = NOW + timedelta(hours=73)
    with pytest.raises(Conflict) as refused:
        jobs.reject(deemed, LEASE, RejectReason.OUT_OF_STOCK, "", late)
    assert refused.value.reason == "accepted"
    given_back = jobs.reject(deemed, "", RejectReason.OUT_OF_STOCK, "no stock", late, breach=True)
    assert given_back.job.breach and given_back.job.handshake is Handshake.REJECTED
    assert given_back.job.work is Work.CLOSED_INCOMPLETE
    [event] = given_back.events
    assert (event.alert, event.severity, event.data["breach"]) == (
        "job.rejected", "critical", True)
    assert "breach of contract" in event.summary
    with pytest.raises(Conflict):  # once printed, not even as a breach
        jobs.reject(jobs.print_job(deemed, late).job, "", RejectReason.OTHER, "", late,
                    breach=True)


def test_late_dispatch_is_alerted_until_shipped() -> None:
    job = printed()
    late = jobs.overdue(job, job.ship_by + timedelta(minutes=1))
    assert [e.alert for e in late.events] == ["job.late_dispatch"]
    done = jobs.ship(jobs.pack(job, 1, 1, NOW).job, "s", (PKG,), True, NOW).job
    assert jobs.next_deadline(done) is None
    assert jobs.overdue(done, job.ship_by + timedelta(days=3)).changed is False


def test_an_unresolved_intercept_is_alerted_after_its_deadline() -> None:
    job = jobs.request_change(packed(), ADDRESS, "cs", NOW).job
    deadline = job.changes[0].deadline
    assert deadline is not None
    assert alerts_at(job, deadline - timedelta(minutes=1), "change.intercept_overdue") == []
    overdue = jobs.overdue(job, deadline)
    assert "change.intercept_overdue" in [e.alert for e in overdue.events]
    assert overdue.job.changes[0].alerted_at == deadline


def test_chain_applies_several_changes_as_one_transition() -> None:
    transition = jobs.chain(accepted(), [
        lambda j: jobs.request_change(j, ADDRESS, "m", NOW),
        lambda j: jobs.request_change(j, GIFT, "m", NOW),
    ])
    assert transition.changed and len(transition.job.changes) == 2
    assert [e.type for e in transition.events] == ["change.applied", "change.applied"]


# Packing against the job ---------------------------------------------------------------------


def contents(*packages: dict[str, int]) -> tuple[jobs.PackedPackage, ...]:
    return tuple(jobs.PackedPackage(items=tuple(
        jobs.PackedItem(sku=sku, quantity=n) for sku, n in package.items()))
        for package in packages)


def test_pack_differences_per_sku_over_all_packages() -> None:
    lines = (JobLine(sku="A", quantity=2), JobLine(sku="B", quantity=1),
             JobLine(sku="A", quantity=1))
    assert jobs.pack_differences(lines, contents({"A": 2}, {"A": 1, "B": 1})) == ()
    found = jobs.pack_differences(lines, contents({"A": 4, "C": 1}))
    assert [(d.sku, d.ordered, d.packed, d.kind) for d in found] == [
        ("A", 3, 4, "extra"), ("B", 1, 0, "short"), ("C", 0, 1, "wrong")]
    assert jobs.describe_differences(found) == "A: 4 of 3; B: 0 of 1; C: 1, not ordered"
    assert jobs.describe_differences(found, limit=1) == "A: 4 of 3; and 2 more"


def test_pack_refuses_a_mismatch_and_records_one_shipped_anyway() -> None:
    job = picked()
    right = contents({line.sku: line.quantity for line in job.lines})
    assert jobs.pack(job, 640, 1, NOW, right).job.packed_items == right
    wrong = contents({job.lines[0].sku: job.lines[0].quantity})
    with pytest.raises(Conflict) as refused:
        jobs.pack(job, 640, 1, NOW, wrong)
    assert refused.value.reason == "pack_mismatch"
    assert refused.value.details["differences"][0]["kind"] == "short"
    anyway = jobs.pack(job, 640, 1, NOW, wrong, ship_anyway=True, reason="out of stock")
    assert anyway.job.work is Work.PACKED and anyway.job.pack_mismatch_reason == "out of stock"
    assert [(e.type, e.alert) for e in anyway.events] == [
        ("job.packed", None), ("shipment.short", "shipment.short")]
    # Without contents nothing is checked: a partner that does not scan still packs.
    assert jobs.pack(job, 640, 1, NOW).job.pack_mismatch == ()
