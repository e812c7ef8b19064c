"""What CS sees of an order: as received, as it is now, its job, and its timeline."""

from __future__ import annotations

from typing import Any

from chalicelib.errors import NotFound
from chalicelib.orders import order_id_for
from chalicelib.storage import jobs as jobs_store
from chalicelib.storage import orders as orders_store


def order_view(order_id: str) -> dict[str, Any]:
    record = orders_store.read_all(order_id)
    if record.current is None or record.received is None:
        raise NotFound("order")
    job = record.current.job
    job_doc = jobs_store.get(job.partner_id, job.job_id) if job else None
    return {
        "order_id": order_id,
        "order": record.current.order.model_dump(mode="json"),
        "as_received": {
            "order": record.received["order"],
            "received_at": record.received["received_at"],
            "actor": record.received["actor"],
            "raw": record.received["raw"],
        },
        "job": job_doc.model_dump(mode="json") if job_doc else None,
        "timeline": [event.model_dump(mode="json") for event in record.events],
    }


def find_order_id(marketplace: str, shop: str, external_id: str) -> str:
    return order_id_for(marketplace, shop, external_id)
