"""Waves: the warehouse groups accepted jobs, prints them through the print gate in one go, and
gets the lists it picks from.

Batch picking (domain notes: it wins for many small orders) walks the shelves once for the
whole wave, the same SKU summed across orders and sorted by shelf location, then sorts the
goods into one slot per order. Pick-by-order gives each order its own list, also in shelf order.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from chalicelib.core.errors import Conflict
from chalicelib.warehouse import jobs
from chalicelib.warehouse.jobs import MAX_SKU, ClientId, Job, Sku, Transition

MAX_WAVE = 49  # two writes per job and the wave itself must fit in one transaction (100)
UNKNOWN_LOCATION = "~"  # sorts after every real location
MAX_LOCATION = 64
ShelfLocation = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LOCATION)]
WaybillNumber = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def usable_locations(stored: Mapping[Any, Any]) -> dict[str, str]:
    """The entries of stored shelf locations that the input rule (SkuLocations) would take:
    one stored before the rule (an empty SKU, say) is dropped, never a pick list's failure."""
    return {sku: location for sku, location in stored.items()
            if isinstance(sku, str) and isinstance(location, str)
            and 0 < len(sku) <= MAX_SKU and 0 < len(location) <= MAX_LOCATION}


class PickLine(BaseModel):
    sku: str
    title: str = ""
    variant: str = ""
    quantity: int
    location: str


class SortLine(BaseModel):
    sku: str
    quantity: int
    location: str


class SortSlot(BaseModel):
    slot: int
    job_id: str
    order_name: str
    lines: list[SortLine]


class Wave(BaseModel):
    wave_id: str
    method: Literal["batch", "by_order"]
    job_ids: list[str]
    created_at: datetime
    pick_list: list[PickLine]  # batch: every SKU once, summed, in shelf order
    sort_list: list[SortSlot]  # one slot per order (pick-by-order: each order's list)


class WaveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_ids: tuple[ClientId, ...] = Field(min_length=1, max_length=MAX_WAVE)
    method: Literal["batch", "by_order"] = "batch"
    # The couriers' e-waybill numbers, per job, as the label printer got them.
    waybill_numbers: dict[ClientId, Annotated[tuple[WaybillNumber, ...], Field(max_length=50)]] = (
        Field(default_factory=dict, max_length=MAX_WAVE))


class SkuLocations(BaseModel):
    """Where SKUs sit on the shelves: every SKU and location non-empty and bounded, since the
    partner's locations are stored as one map (DynamoDB refuses an empty map key)."""

    model_config = ConfigDict(extra="forbid")

    locations: dict[Sku, ShelfLocation] = Field(min_length=1, max_length=5000)


def _location(locations: Mapping[str, str], sku: str) -> str:
    return locations.get(sku, UNKNOWN_LOCATION)


def pick_list(wave_jobs: Sequence[Job], locations: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every SKU once, quantities summed over the wave's orders, in shelf order."""
    totals: dict[str, dict[str, Any]] = {}
    for job in wave_jobs:
        for line in job.lines:
            entry = totals.setdefault(line.sku, {"sku": line.sku, "title": line.title,
                                                 "variant": line.variant, "quantity": 0,
                                                 "location": _location(locations, line.sku)})
            entry["quantity"] += line.quantity
    return sorted(totals.values(), key=lambda e: (e["location"], e["sku"]))


def sort_list(wave_jobs: Sequence[Job], locations: Mapping[str, str]) -> list[dict[str, Any]]:
    """One slot per order with its lines in shelf order: the sort list after a batch pick, or
    the pick-by-order lists."""
    return [{
        "slot": slot, "job_id": job.job_id, "order_name": job.order_name,
        "lines": sorted(({"sku": line.sku, "quantity": line.quantity,
                          "location": _location(locations, line.sku)} for line in job.lines),
                        key=lambda e: (e["location"], e["sku"])),
    } for slot, job in enumerate(wave_jobs, start=1)]


def plan(request: WaveRequest, found: Mapping[str, Job], locations: Mapping[str, str],
         now: datetime, costs: Mapping[str, Decimal] | None = None
         ) -> tuple[dict[str, Any], list[tuple[Job, Transition]]]:
    """All or nothing: every job must pass the print gate, or none is printed. `costs`: the
    prices of the electronic waybills issued for it, by number, where the provider said."""
    wave_id = "wave_" + secrets.token_hex(6)
    steps: list[tuple[Job, Transition]] = []
    refused: dict[str, Any] = {}
    for job_id in request.job_ids:
        job = found.get(job_id)
        if job is None:
            refused[job_id] = {"error": "job_not_found"}
            continue
        try:
            steps.append((job, jobs.print_job(
                job, now, wave_id=wave_id,
                waybill_numbers=request.waybill_numbers.get(job_id, ()), waybill_costs=costs)))
        except Conflict as exc:
            refused[job_id] = {"error": exc.reason, **exc.details}
    if refused:
        raise Conflict("wave_refused", "some jobs cannot be printed; nothing was printed",
                       jobs=refused)
    ordered = [job for job, _ in steps]
    wave = Wave.model_validate({
        "wave_id": wave_id, "method": request.method, "job_ids": list(request.job_ids),
        "created_at": now,
        "pick_list": pick_list(ordered, locations) if request.method == "batch" else [],
        "sort_list": sort_list(ordered, locations),
    })
    return wave.model_dump(mode="json"), steps
