"""Returns the warehouse receives: registered every day with the buyer's name, the return
tracking number, the items and the reason (domain notes), and handed to CS as a case.

Liability from the processing contract: intact packaging puts damage on the factory; damaged
packaging splits it between courier and factory by where the goods were hit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ReturnedItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(gt=0, le=10_000)


class ReturnReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    return_tracking_number: str = Field(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9\-]+$")
    buyer_name: str = Field(min_length=1, max_length=200)
    items: tuple[ReturnedItem, ...] = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=1000)
    packaging: Literal["intact", "damaged"]
    goods_damaged: bool = False
    order_name: str = Field(default="", max_length=64)
    job_id: str = Field(default="", max_length=64)


def liability_hint(report: ReturnReport) -> str:
    if not report.goods_damaged:
        return "no damage reported"
    if report.packaging == "intact":
        return "factory (packaging intact: the goods were damaged before packing)"
    return "split between courier and factory, by where the goods were hit (packaging damaged)"


class ReturnRecord(ReturnReport):
    partner_id: str
    received_at: datetime
    liability_hint: str


def record(report: ReturnReport, partner_id: str, now: datetime) -> dict[str, object]:
    return ReturnRecord(**report.model_dump(), partner_id=partner_id, received_at=now,
                        liability_hint=liability_hint(report)).model_dump(mode="json")
