"""What CS sees of an order: as received, as it is now, its job, and its timeline.

`OrderView` describes the answer (the CS API's OpenAPI description is built from it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from chalicelib.core.errors import NotFound
from chalicelib.core.runs import started
from chalicelib.cs import case_store as cases_store
from chalicelib.cs.cases import Case
from chalicelib.orders import order_store as orders_store
from chalicelib.orders.order import Order, OrderEvent, order_id_for
from chalicelib.tracking import parcel_store as shipments_store
from chalicelib.tracking.model import TrackingEvent
from chalicelib.tracking.parcels import Fulfilment, fulfilment
from chalicelib.warehouse import job_store as jobs_store
from chalicelib.warehouse.jobs import Job, Work


class AsReceived(BaseModel):
    order: dict[str, Any]  # the order as first normalised, kept as it was stored then
    received_at: str
    actor: str
    raw: str  # the notification's body exactly as the marketplace sent it


class ParcelView(BaseModel):
    carrier_code: str
    tracking_number: str
    provider: str
    status: str
    last_event_at: datetime | None
    open_exceptions: list[str]
    events: list[TrackingEvent]  # newest first


class MoneyCheck(BaseModel):
    """Whether the marketplace's parts make its total (orders.order.Totals.adds_up)."""

    adds_up: bool
    expected_total: str  # decimal as text
    summary: str  # e.g. "598.00 + 20.00 shipping − 0.00 = 618.00 = 618.00"


class OrderView(BaseModel):
    order_id: str
    order: Order  # as it is now
    money: MoneyCheck
    as_received: AsReceived
    job: Job | None
    fulfilment: Fulfilment
    parcels: list[ParcelView]
    cases: list[Case]
    timeline: list[OrderEvent]


def order_view(order_id: str) -> dict[str, Any]:
    # The order's cases wait on nothing: read beside the order, its job and its parcels (each
    # of which waits on the one before).
    reading_cases = started(cases_store.cases_of_order, order_id)
    record = orders_store.read_all(order_id)
    if record.current is None or record.received is None:
        raise NotFound("order")
    job = record.current.job
    job_doc = jobs_store.get(job.partner_id, job.job_id) if job else None
    return {
        "order_id": order_id,
        "order": record.current.order.model_dump(mode="json"),
        "money": money_check(record.current.order),
        "as_received": {
            "order": record.received["order"],
            "received_at": record.received["received_at"],
            "actor": record.received["actor"],
            "raw": record.received["raw"],
        },
        "job": job_doc.model_dump(mode="json") if job_doc else None,
        **_delivery(job_doc),
        "cases": [case.model_dump(mode="json") for case in reading_cases.result()],
        "timeline": [event.model_dump(mode="json") for event in record.events],
    }


def money_check(order: Order) -> dict[str, Any]:
    totals = order.totals
    return {"adds_up": totals.adds_up(), "expected_total": str(totals.expected_total()),
            "summary": totals.summary()}


def _delivery(job: Job | None) -> dict[str, Any]:
    """The parcels of the order's shipments and the delivery state derived from them."""
    keys = [(p.carrier_code, p.tracking_number) for s in (job.shipments if job else ())
            for p in s.packages]
    tracked = shipments_store.get_many(keys) if keys else []
    shipped_final = job is not None and job.work is Work.SHIPPED
    return {
        "fulfilment": fulfilment(shipped_final, tracked),
        "parcels": [{
            "carrier_code": p.carrier_code, "tracking_number": p.tracking_number,
            "provider": p.provider, "status": p.shipment.status.value,
            "last_event_at": p.shipment.last_event_at.isoformat()
            if p.shipment.last_event_at else None,
            "open_exceptions": sorted(k.value for k in p.shipment.open_kinds),
            "events": [e.model_dump(mode="json") for e in reversed(p.shipment.events)],
        } for p in tracked],
    }


def find_order_id(marketplace: str, shop: str, external_id: str) -> str:
    return order_id_for(marketplace, shop, external_id)


def order_of_parcel(carrier_code: str, tracking_number: str) -> str:
    found = shipments_store.get(carrier_code, tracking_number) if carrier_code else None
    if found is None:
        raise NotFound("parcel")
    return found[0].order_id
