"""The manager's "Today" (chalicelib/flows/today.py) from orders made through the real pipeline:
Shopify webhooks, the order worker, the factory's warehouse API, CS amendments, alerts.

The day is a fixed day in the future, so no other test of the session has an order paid on it;
the warehouse API's clock is set to that day's hours, so each job ships when the test says.
What other tests leave in the shared indexes (offers, intercepts, open cases) is taken out by
comparing with the view before this test's orders."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.core import aws
from chalicelib.cs.alerts import Alert, Severity
from chalicelib.flows import alert_dispatch, case_desk, today
from chalicelib.warehouse.dispatch import DEFAULT_DISPATCH_RULES as RULES
from tests.integration.test_warehouse_api import Api, queue_orders
from tests.support import NEW_ADDRESS

DAY = date(2031, 3, 10)


def local(clock: str, day: date = DAY) -> datetime:
    return RULES.at(day, time.fromisoformat(clock))



@pytest.fixture
def api(client: Client, partner: str, make_key: Any) -> Api:
    from chalicelib.access.keys import Role

    return Api(client, make_key("partner", partner), make_key("staff", "mia", Role.BACK_OFFICE))


class Clock:
    """The warehouse API's `utcnow` (its routes' and its flow's), set by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import chalicelib.api.warehouse as routes
        import chalicelib.flows.warehouse as flow

        self.now = local("09:00")
        for module in (routes, flow):
            monkeypatch.setattr(module, "utcnow", lambda: self.now)


@contextmanager
def dynamodb_calls() -> Iterator[Counter[str]]:
    """The app's DynamoDB calls (one per API call, whatever botocore's retries) while open, by
    operation; a Query that goes on from where the one before stopped (ExclusiveStartKey) is
    counted as "Query+page" too, so a test can tell the queries from their further pages."""
    calls: Counter[str] = Counter()

    def count(event_name: str, params: dict[str, Any] | None = None, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        calls[operation] += 1
        if params and "ExclusiveStartKey" in params:
            calls[f"{operation}+page"] += 1

    events = aws.client("dynamodb").meta.events
    events.register("before-parameter-build.dynamodb", count)
    try:
        yield calls
    finally:
        events.unregister("before-parameter-build.dynamodb", count)


def paid_at(clock: str, day: date = DAY) -> str:
    return (local(clock, day)).isoformat().replace("+00:00", "Z")


def test_today_counts_the_days_dispatch_against_each_cut_off(
        api: Api, client: Client, stack: dict[str, str], partner: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = local("16:00")
    before = today.today(now)
    assert before.dispatch.paid == 0 and before.day == DAY
    plan = {"a": "08:00", "b": "08:30", "c": "09:00", "d": "12:00", "e": "14:00", "f": "18:00"}
    orders = {name: queue_orders(client, stack, 1, processed_at=paid_at(clock))[0]
              for name, clock in plan.items()}
    evening = queue_orders(client, stack, 1, processed_at=paid_at("23:30", DAY - timedelta(
        days=1)))[0]
    made = datetime.now(UTC)  # the jobs' created_at: the worker's clock is the real one
    clock = Clock(monkeypatch)  # before the claim: its lease runs on this clock
    claimed = api.claim(10)
    job_of = {str(job["external_id"]): job for job in claimed["jobs"]}
    jobs = {name: job_of[str(payload["id"])] for name, payload in orders.items()}
    jobs["g"] = job_of[str(evening["id"])]
    for name in "abce":
        api.take(jobs[name], claimed["lease_id"])
    api.post(f"/jobs/{jobs['f']['job_id']}/release", {"lease_id": claimed["lease_id"]})

    def ship(name: str, at: str) -> None:
        job_id = jobs[name]["job_id"]
        clock.now = local(at)
        api.post(f"/jobs/{job_id}/print")
        api.post(f"/jobs/{job_id}/pick")
        api.post(f"/jobs/{job_id}/pack", {"weight_grams": 500, "package_count": 1})
        api.post(f"/jobs/{job_id}/ship", {"shipment_id": f"s-{name}", "packages": [
            {"carrier_code": "STO", "tracking_number": f"7730{uuid.uuid4().int % 10**8:08d}"}]})

    ship("a", "10:40")  # before its 11:00 cut-off
    ship("b", "11:20")  # after it
    api.amend(jobs["d"]["order_id"], {"kind": "cancel", "reason": "buyer cancelled"})
    api.post(f"/jobs/{jobs['e']['job_id']}/print")
    api.amend(jobs["e"]["order_id"], {"kind": "address", "reason": "buyer moved",
                                      "address": NEW_ADDRESS})
    parcel = f"parcel:STO:{uuid.uuid4().hex[:10]}"
    alert_dispatch.handle(Alert(
        kind="courier.lost", severity=Severity.HIGH, subject=parcel, at=now - timedelta(hours=2),
        summary="lost", facts={"carrier_code": "STO", "marketplace": "shopify"}
    ).model_dump_json(), now)
    from chalicelib.cs import outbox_store

    outbox_store.put_dead_alert(f"m-{uuid.uuid4().hex}", "{}", local("09:30"))
    outbox_store.put_dead_alert(f"m-{uuid.uuid4().hex}", "{}", local("23:59", DAY - timedelta(
        days=1)))

    with dynamodb_calls() as calls:
        view = today.today(now)
    assert calls == Counter({"Query": 7})  # one per index read, none a Scan or a GetItem
    assert view.dispatch.paid == 6  # the order paid the evening before is not today's
    figures = {f.cutoff: (f.on_time, f.late, f.overdue, f.to_go, f.closed)
               for f in view.dispatch.cutoffs}
    assert figures == {"11:00": (1, 1, 1, 0, 0), "15:00": (0, 0, 0, 0, 1),
                       "19:30": (0, 0, 0, 1, 0), "later": (0, 0, 0, 1, 0)}
    # f and the evening's order: offered over 24 h before `now`, never accepted.
    assert view.offers_unaccepted.count - before.offers_unaccepted.count == 2
    assert view.intercepts_waiting.count - before.intercepts_waiting.count == 1
    monkeypatch.setattr(today, "LISTED", 100_000)  # every waiting job named, this test's found

    def unaccepted(at: datetime) -> set[str]:
        return {j.job_id for j in today.today(at).offers_unaccepted.oldest
                if j.partner_id == partner}

    assert unaccepted(now) == {jobs["f"]["job_id"], jobs["g"]["job_id"]}
    assert unaccepted(made + timedelta(hours=23)) == set()  # offered under 24 h before
    assert jobs["e"]["job_id"] in {j.job_id for j in view.intercepts_waiting.oldest} or \
        view.intercepts_waiting.count > today.LISTED
    sto = view.parcel_problems.by_carrier.get("STO", {})
    assert sto.get("courier.lost", 0) - before.parcel_problems.by_carrier.get(
        "STO", {}).get("courier.lost", 0) == 1
    assert view.open_cases.total - before.open_cases.total >= 1
    assert view.notifications.dead_alerts == 1  # today's; not the one a minute before midnight
    assert view.notifications.since == local("00:00")
    with dynamodb_calls() as calls:
        counts = case_desk.open_counts(now)
    assert calls == Counter({"Query": 1}) and counts == view.open_cases
