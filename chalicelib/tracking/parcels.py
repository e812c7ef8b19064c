"""Parcels: a tracked journey with the order it belongs to, and what its changes mean for CS
and for the order. Pure: the tracker (chalicelib/flows/tracker.py) does the I/O.

What CS hears (one case per problem and parcel, see chalicelib/cs/cases.py):
- every exception kind in model.ALERT_KINDS opens a case; an escalation (stall -> probably
  lost, refusal started -> refused and returned) is the same case with a higher severity; the
  end of a condition (a new scan after a stall) resolves it;
- a refusal, a parcel returning or returned is one after-sales case;
- a damaged parcel's case carries the liability hint from the processing contract.
What the order gets: every status change and exception on its timeline, and `order.completed`
once every parcel of its final shipment is delivered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from chalicelib.cs.alerts import Alert, Severity
from chalicelib.orders.order import OrderEvent
from chalicelib.tracking.model import (
    ExceptionKind,
    Journey,
    JourneyChange,
    OpenException,
    ShipmentStatus,
)
from chalicelib.tracking.watch import Watch

K = ExceptionKind
S = ShipmentStatus
AFTER_SALES = "after_sales.return"
# Kinds that are one problem: the case type they share.
_CASE_OF = {
    K.STALLED_NO_SCAN: "courier.stalled", K.PROBABLY_LOST: "courier.stalled",
    K.LOST: "courier.stalled",
    K.REFUSAL_INITIATED: AFTER_SALES, K.REFUSED_RETURNED: AFTER_SALES,
}
_SEVERITY = {
    K.PROBABLY_LOST: Severity.CRITICAL, K.LOST: Severity.CRITICAL,
    K.DAMAGED: Severity.HIGH, K.REFUSAL_INITIATED: Severity.HIGH,
    K.REFUSED_RETURNED: Severity.HIGH, K.REPEATED_DELIVERY_FAILURE: Severity.HIGH,
    K.ADDRESS_ISSUE: Severity.HIGH, K.REDIRECTED: Severity.HIGH,
    K.STALLED_NO_SCAN: Severity.MEDIUM, K.NOT_PICKED_UP: Severity.MEDIUM,
    K.PICKUP_UNCOLLECTED: Severity.MEDIUM, K.LATE_VS_PROMISE: Severity.MEDIUM,
    K.CUSTOMS_ISSUE: Severity.MEDIUM,
}
_WORDS = {
    K.STALLED_NO_SCAN: "no courier scan for too long", K.PROBABLY_LOST: "probably lost",
    K.REPEATED_DELIVERY_FAILURE: "second failed delivery attempt (nobody home?)",
    K.NOT_PICKED_UP: "not picked up by the courier", K.PICKUP_UNCOLLECTED:
    "not collected from the locker or station", K.LATE_VS_PROMISE: "late against the promise",
    K.REFUSAL_INITIATED: "refused by the buyer", K.REFUSED_RETURNED:
    "refused and signed back", K.REDIRECTED: "the buyer changed the address with the courier",
    K.ADDRESS_ISSUE: "address problem", K.DAMAGED: "damaged", K.LOST: "reported lost",
    K.STATUS_REGRESSION: "tracking went backwards",
}
# Processing contract (chalicelib/warehouse/returns.py `liability`): with damaged packaging,
# whoever had the goods where they were damaged; with intact packaging, the factory.
LIABILITY_HINT = ("courier reported the parcel damaged in transit: with damaged packaging "
                  "the courier answers for damage in transit; if the packaging turns out "
                  "intact, any complaint about the goods is the factory's")


class BilledFee(BaseModel):
    """What the courier billed for the parcel, from its monthly bill
    (chalicelib/flows/bills.py); the expected figure is the tariff's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bill_id: str
    line: int
    month: str  # YYYY-MM, the month it was billed in
    weight_kg: Decimal
    fee: Decimal
    surcharges: Decimal
    billed: Decimal
    expected: Decimal | None = None


class HandedOver(BaseModel):
    """A parcel as the reports read it (parcel_store `handed_over`): who carried it where, when
    it was handed over and delivered, the exceptions it had and what the courier billed."""

    model_config = ConfigDict(frozen=True)

    carrier_code: str
    tracking_number: str
    region: str = ""
    destination: str = ""
    handed_over_at: datetime
    delivered_at: datetime | None = None
    exception_kinds: tuple[ExceptionKind, ...] = ()
    billed: BilledFee | None = None


class Parcel(BaseModel):
    """One tracked parcel: the courier's facts, our watch over it, and whose it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    carrier_code: str
    tracking_number: str
    provider: str
    order_id: str
    order_name: str
    marketplace: str
    partner_id: str
    job_id: str
    shipment_id: str
    phone: str = ""  # SF and ZTO check the recipient's phone on a query
    destination: str = ""
    region: str = ""  # the cost region its job was routed for ("" before it was kept)
    started_at: datetime
    shipment: Journey
    watch: Watch
    billed: BilledFee | None = None  # the actual fee, once a bill lists the parcel

    @property
    def subject(self) -> str:
        return f"parcel:{self.carrier_code}:{self.tracking_number}"

    @property
    def label(self) -> str:
        return f"{self.carrier_code} {self.tracking_number}"


def case_type(kind: ExceptionKind) -> str:
    return _CASE_OF.get(kind, f"courier.{kind.value}")


def _facts(parcel: Parcel) -> dict[str, str | int]:
    return {"order_id": parcel.order_id, "order_name": parcel.order_name,
            "marketplace": parcel.marketplace, "job_id": parcel.job_id,
            "partner_id": parcel.partner_id, "carrier_code": parcel.carrier_code,
            "tracking_number": parcel.tracking_number, "status": parcel.shipment.status.value}


def _exception_alert(parcel: Parcel, exc: OpenException, at: datetime) -> Alert:
    facts: dict[str, str | int] = {**_facts(parcel), "exception": exc.kind.value,
                                   "since": exc.opened_at.isoformat()}
    event = next((e for e in parcel.shipment.events if e.event_id == exc.event_id), None)
    if event is not None:
        facts.update(courier_says=event.description, location=event.location)
    if exc.kind is K.DAMAGED:
        facts["liability_hint"] = LIABILITY_HINT
    words = _WORDS.get(exc.kind, exc.kind.value.replace("_", " "))
    return Alert(kind=f"courier.{exc.kind.value}", case=case_type(exc.kind),
                 severity=_SEVERITY.get(exc.kind, Severity.MEDIUM), subject=parcel.subject,
                 at=at, facts=facts,
                 summary=f"{parcel.order_name} ({parcel.marketplace}): parcel {parcel.label} "
                         f"{words}")


def alerts_for(parcel: Parcel, changes: Sequence[JourneyChange]) -> list[Alert]:
    """What CS must hear about these changes (the cases layer keeps one case per problem)."""
    found: list[Alert] = []
    # Judged late (a deadline passed between two checks) and already over: history, not news.
    opened = {c.exception.kind for c in changes
              if c.type == "exception_opened" and c.exception is not None}
    over = {c.exception.kind for c in changes
            if c.type == "exception_resolved" and c.exception is not None} & opened
    for change in changes:
        exc = change.exception
        if exc is not None and exc.kind in over:
            continue
        if change.type == "exception_opened" and exc is not None and exc.alerts:
            found.append(_exception_alert(parcel, exc, change.at))
        elif (change.type == "exception_resolved" and exc is not None and exc.alerts
              and not change.reason.startswith("superseded")):
            found.append(Alert(
                kind=f"courier.{exc.kind.value}", case=case_type(exc.kind), resolves=True,
                severity=Severity.LOW, subject=parcel.subject, at=change.at,
                facts=_facts(parcel), summary=f"parcel {parcel.label}: {change.reason}"))
        elif change.type == "status" and change.status in (S.RETURNING, S.RETURNED):
            found.append(Alert(
                kind=f"courier.{change.status.value}", case=AFTER_SALES, severity=Severity.HIGH,
                subject=parcel.subject, at=change.at, facts=_facts(parcel),
                summary=f"{parcel.order_name} ({parcel.marketplace}): parcel {parcel.label} "
                        f"is {change.status.value} to the sender: after-sales (return, refund)"))
    return found


def timeline_for(parcel: Parcel, changes: Iterable[JourneyChange],
                 now: datetime) -> list[OrderEvent]:
    """The order's timeline lines for these changes, in the courier's time order."""
    actor = f"courier {parcel.provider}"
    events: list[OrderEvent] = []
    for change in sorted(changes, key=lambda c: c.at):
        data = {"carrier_code": parcel.carrier_code, "tracking_number": parcel.tracking_number}
        if change.type == "status" and change.status is not None:
            summary = f"Parcel {parcel.label}: {change.status.value.replace('_', ' ')}"
            events.append(OrderEvent(type=f"shipment.{change.status.value}", at=now,
                                     source_at=change.at, actor=actor, summary=summary,
                                     data={**data, "previous": str(change.previous_status)}))
        elif change.exception is not None:
            kind = change.exception.kind.value
            opened = change.type == "exception_opened"
            summary = (f"Parcel {parcel.label}: {kind.replace('_', ' ')}"
                       + ("" if opened else f" ended ({change.reason})"))
            events.append(OrderEvent(type=f"shipment.{change.type}", at=now, source_at=change.at,
                                     actor=actor, summary=summary, data={**data, "kind": kind}))
    return events


Fulfilment = Literal["not_shipped", "in_transit", "delivered", "returning", "problem"]


def fulfilment(shipped_final: bool, parcels: Sequence[Parcel]) -> Fulfilment:
    """The order's delivery state, derived from its parcels (never stored)."""
    if not parcels:
        return "not_shipped"
    statuses = {p.shipment.status for p in parcels}
    if statuses & {S.RETURNING, S.RETURNED}:
        return "returning"
    if shipped_final and statuses == {S.DELIVERED}:
        return "delivered"
    if any(p.shipment.open_kinds & _ALERTING for p in parcels):
        return "problem"
    return "in_transit"


def completes_order(shipped_final: bool, parcels: Sequence[Parcel]) -> bool:
    return fulfilment(shipped_final, parcels) == "delivered"


_ALERTING = frozenset(_SEVERITY)
