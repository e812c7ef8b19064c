"""Deliveries: a marketplace's notification as it enters the inbox (verified, once per the
platform's delivery id) and as the order worker later reads it. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

# On an inbox delivery we made ourselves (reconciliation, a split push): its body is an OrderRef
# to re-fetch, not the platform's notification.
REF_HEADER = "x-reconciled"


class Accepted(BaseModel):
    """A verified, valid delivery, ready to be stored."""

    model_config = ConfigDict(frozen=True)

    delivery_id: str
    topic: str
    shop: str = ""
    # Headers the worker needs later (normalise gets them back from the stored delivery).
    headers: dict[str, str] = {}
    # False for a correctly signed delivery we do not act on (e.g. a topic we do not handle).
    actionable: bool = True
    # False: answered as the platform expects but not stored. For what anyone could send
    # (WooCommerce's unsigned ping): storing it would let anyone fill the inbox, and nothing
    # reads it.
    record: bool = True


class Delivery(BaseModel):
    """A stored webhook delivery, as the order worker sees it."""

    model_config = ConfigDict(frozen=True)

    source: str
    delivery_id: str
    topic: str
    received_at: datetime

    @property
    def actor(self) -> str:
        return f"{self.source} webhook {self.delivery_id}"


# A delivery still pending is sent through the inbox stream again (its item touched) at each
# of these ages: the first with CS's alert (UNPROCESSED_ALERT_MINUTES, 10 by default), then
# with back-off; after the last it stays pending, listed by the admin's `pending`, for a replay.
REDRIVE_AFTER = (timedelta(minutes=30), timedelta(hours=2), timedelta(hours=6),
                 timedelta(hours=24))


def next_redrive(received_at: datetime, now: datetime) -> datetime | None:
    """When a delivery received at `received_at` and re-driven at `now` is due again; None
    after the last."""
    return next((received_at + age for age in REDRIVE_AFTER if received_at + age > now), None)
