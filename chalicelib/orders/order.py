"""Orders: the normalised model every marketplace maps onto, and the rules for applying updates.

Pure: no I/O. The order as first received is immutable; every later change is an appended event,
and the current view is the newest version the marketplace sent (by its own update time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chalicelib.core.signatures import EARLIEST, LATEST, sane_moment
from chalicelib.orders.deliveries import Delivery

# An order's times: with their zone, inside a sane window (core.signatures.sane_moment).
Moment = Annotated[datetime, AfterValidator(sane_moment)]


def _sane_date(day: date) -> date:
    if not EARLIEST.date() <= day < LATEST.date():
        raise ValueError(f"{day.isoformat()} is outside {EARLIEST.year}-{LATEST.year}")
    return day


Day = Annotated[date, AfterValidator(_sane_date)]
# The normalised order as JSON at most this size, so that every item made from it fits
# DynamoDB's 400 KB: the record as received (this + the raw body, at most 256 KB), the current
# view, the job, and an update event (the changed fields before and after).
MAX_ORDER_BYTES = 128 * 1024


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class AfterSale(StrEnum):
    """Where the order stands in the marketplace's own after-sale process (refund, return,
    dispute), as each adapter maps its platform's codes (a platform that says nothing leaves
    NONE). Separate from `status`: a refund requested on a paid order leaves it paid, and the
    CS supervisor's daily lists (orders.lists) read this."""

    NONE = "none"
    REFUND_REQUESTED = "refund_requested"  # the buyer asked; the shop has not agreed yet
    REFUNDING = "refunding"  # agreed or under way (a return travelling back, money pending)
    REFUNDED = "refunded"  # the money went back: the refund is over
    DISPUTE_OPEN = "dispute_open"  # the platform (or the buyer's bank) stepped in
    DISPUTE_CLOSED = "dispute_closed"


# Most pressing first: what the order shows when its lines (sub-orders, items) differ.
_PRESSING = (AfterSale.DISPUTE_OPEN, AfterSale.REFUND_REQUESTED, AfterSale.REFUNDING,
             AfterSale.DISPUTE_CLOSED, AfterSale.REFUNDED)


def most_pressing(states: Iterable[AfterSale | None]) -> AfterSale:
    """The order's after-sale state from its lines' (None: a code the adapter does not map)."""
    found = set(states)
    return next((state for state in _PRESSING if state in found), AfterSale.NONE)


class EncryptedReceiver(BaseModel):
    """Douyin's encrypted receiver fields exactly as the order gave them (ciphertexts): what its
    e-waybill channel labels by and decrypts on the printer's side. The address's own name,
    phone and street then hold the platform's masked text (what CS sees)."""

    model_config = ConfigDict(frozen=True)

    name: str = ""
    phone: str = ""
    detail: str = ""


class Address(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = ""
    company: str = ""
    line1: str = ""
    line2: str = ""
    city: str = ""
    province: str = ""
    province_code: str = ""
    postal_code: str = ""
    country_code: str = ""
    phone: str = ""
    # Taobao/Tmall's Open Addressee ID when the receiver reached us masked: the reference its
    # Cainiao waybill channel labels by (never the plaintext); "" elsewhere.
    oaid: str = ""
    # Douyin's ciphertexts when the receiver reached us encrypted; None elsewhere.
    encrypted: EncryptedReceiver | None = None


class Buyer(BaseModel):
    model_config = ConfigDict(frozen=True)

    external_id: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    line_id: str
    sku: str
    title: str = ""
    variant: str = ""
    quantity: int = Field(gt=0)
    unit_price: Decimal


# A platform rounds tax and discounts per line, so its parts may miss the total by a cent.
ROUNDING = Decimal("0.01")


class Totals(BaseModel):
    """The money as the marketplace sent it: `subtotal` is the items at their list prices
    (before order discounts), `discounts` everything taken off (items and shipping), `tax`
    the tax charged, which is already inside the prices when `tax_included` (China's
    platforms, VAT/GST shops): then it is not added again. `fees` are the other charges
    (gift wrap, cash on delivery, a WooCommerce fee line)."""

    model_config = ConfigDict(frozen=True)

    subtotal: Decimal = Decimal("0")
    shipping: Decimal = Decimal("0")
    tax: Decimal = Decimal("0")
    discounts: Decimal = Decimal("0")
    total: Decimal = Decimal("0")
    fees: Decimal = Decimal("0")
    tax_included: bool = False

    def expected_total(self) -> Decimal:
        """subtotal + shipping + fees + tax (when not in the prices) − discounts."""
        tax = Decimal("0") if self.tax_included else self.tax
        return self.subtotal + self.shipping + self.fees + tax - self.discounts

    def adds_up(self) -> bool:
        """Whether the parts make the total, within the platform's per-line rounding."""
        return abs(self.expected_total() - self.total) <= ROUNDING

    def summary(self) -> str:
        """The sum as text, for an order's timeline: "418 + 12 shipping − 20 = 410 ≠ 420"."""
        tax = "" if self.tax_included or not self.tax else f" + {self.tax} tax"
        fees = f" + {self.fees} fees" if self.fees else ""
        sign = "=" if self.adds_up() else "≠"
        return (f"{self.subtotal} + {self.shipping} shipping{fees}{tax} − {self.discounts} = "
                f"{self.expected_total()} {sign} {self.total}")


class Order(BaseModel):
    """One marketplace order, normalised. `updated_at` is the marketplace's own update time."""

    model_config = ConfigDict(frozen=True)

    marketplace: str
    shop: str
    external_id: str
    name: str = ""
    status: OrderStatus
    buyer: Buyer = Buyer()
    shipping_address: Address | None = None
    lines: tuple[OrderLine, ...]
    currency: str
    totals: Totals = Totals()
    placed_at: Moment
    paid_at: Moment | None = None
    cancelled_at: Moment | None = None
    updated_at: Moment
    buyer_note: str = ""
    requested_courier: str = ""  # the buyer's wish; routing honours a known courier
    presale_ship_date: Day | None = None  # pre-sale items ship by their own date
    # What the buyer asked for besides the note: they become the job's promises
    # (warehouse.jobs.promises_of). Defaults keep orders stored before them readable.
    gift_message: str = ""
    invoice_title: str = ""
    # The rest of the marketplace's order attributes (Shopify note attributes, WooCommerce
    # meta data, a seller's memo), as sent, for the order view and the job.
    attributes: dict[str, str] = Field(default_factory=dict)
    # The marketplace's after-sale state (orders stored before it read as NONE).
    after_sale: AfterSale = AfterSale.NONE

    @property
    def order_id(self) -> str:
        return order_id_for(self.marketplace, self.shop, self.external_id)


# Attribute names (lower case, "_" for spaces and dashes) that mean a gift message or an
# invoice title, as checkout apps and platforms name them.
GIFT_MESSAGE_NAMES = frozenset({"gift_message", "gift_note", "gift_msg", "gift_card_message",
                                "giftmessage", "礼品留言", "贺卡留言", "赠言"})
INVOICE_TITLE_NAMES = frozenset({"invoice_title", "invoice_name", "invoice_header",
                                 "发票抬头"})
_MAX_ATTRIBUTES = 50  # the order's size cap (check_size) bounds them too
_MAX_ATTRIBUTE_CHARS = 1000


def attribute_key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def note_fields(pairs: Iterable[tuple[str, str | None]], *,
                consumed: Iterable[str] = ()) -> dict[str, Any]:
    """Order fields from a platform's free attributes: the gift message and invoice title
    by their usual names, the rest kept as `attributes`. Names starting with "_" are an app's
    private data (Shopify, WordPress), and `consumed` names are read elsewhere (a requested
    courier): neither is kept. Empty values are dropped."""
    skipped = {attribute_key(name) for name in consumed}
    gift, invoice, kept = "", "", dict[str, str]()
    for name, value in pairs:
        text, key = (value or "").strip(), attribute_key(name)
        if not text or not key or name.startswith("_") or key in skipped:
            continue
        if key in GIFT_MESSAGE_NAMES and not gift:
            gift = text
        elif key in INVOICE_TITLE_NAMES and not invoice:
            invoice = text
        elif len(kept) < _MAX_ATTRIBUTES:
            kept[name.strip()[:100]] = text[:_MAX_ATTRIBUTE_CHARS]
    return {"gift_message": gift, "invoice_title": invoice, "attributes": kept}


def order_id_for(marketplace: str, shop: str, external_id: str) -> str:
    """Derived from the marketplace's identity, so a replay can never make a second order."""
    digest = hashlib.sha256(f"{marketplace}\x1f{shop}\x1f{external_id}".encode()).hexdigest()
    return f"ord_{digest[:20]}"


class InvalidOrder(ValueError):
    """The marketplace sent something we cannot turn into an order: a permanent failure."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def check_size(order: Order) -> int:
    """The order's size as JSON (never below its size stored in DynamoDB), if at most
    MAX_ORDER_BYTES; InvalidOrder "order_too_large" otherwise."""
    size = len(order.model_dump_json().encode("utf-8", "surrogatepass"))
    if size > MAX_ORDER_BYTES:
        raise InvalidOrder("order_too_large", f"{size} bytes as JSON; at most {MAX_ORDER_BYTES}")
    return size


def received_bound(order: Order, raw_body: str, actor: str) -> int:
    """Never below the stored size of the order's record as received (the order, whose JSON is
    never smaller than its DynamoDB form, its raw body, the actor, and 1 KB for attribute
    names, times and map overheads): when this fits, the record fits without being built.
    Checks the order's own size first (check_size)."""
    return check_size(order) + len(raw_body.encode("utf-8", "surrogatepass")) + \
        len(actor.encode("utf-8", "surrogatepass")) + 1024


def fulfilment_problems(order: Order) -> list[str]:
    """What stops the warehouse from shipping a paid order (the confirmation checks)."""
    problems = [] if order.lines else ["no_shippable_lines"]
    address = order.shipping_address
    if address is None:
        problems.append("no_shipping_address")
    elif not (address.line1 and address.city and address.country_code):
        problems.append("incomplete_shipping_address")
    problems.extend(f"line_without_sku:{line.line_id}" for line in order.lines if not line.sku)
    return problems


# Events ---------------------------------------------------------------------------------------



class OrderEvent(BaseModel):
    """One line of an order's timeline: who did what, when, and why."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    type: str  # order.received, order.updated, job.created, change.applied, ...
    at: datetime  # when we recorded it
    actor: str  # e.g. "shopify webhook 2f9c…", "partner factory-1", "cs alice"
    summary: str
    source_at: datetime | None = None  # the source's own time for what happened
    reason: str = ""  # e.g. the webhook topic
    data: dict[str, Any] = Field(default_factory=dict)


_COMPARED_FIELDS = (
    "status",
    "name",
    "buyer",
    "shipping_address",
    "lines",
    "currency",
    "totals",
    "paid_at",
    "cancelled_at",
    "buyer_note",
    "requested_courier",
    "presale_ship_date",
    "gift_message",
    "invoice_title",
    "attributes",
    "after_sale",
)


def changes_between(old: Order, new: Order) -> dict[str, dict[str, Any]]:
    """Field-level difference, in JSON form, for the event log."""
    before = old.model_dump(mode="json", include=set(_COMPARED_FIELDS))
    after = new.model_dump(mode="json", include=set(_COMPARED_FIELDS))
    return {
        name: {"from": before[name], "to": after[name]}
        for name in _COMPARED_FIELDS
        if before[name] != after[name]
    }


Outcome = Literal["created", "updated", "unchanged", "stale"]
_ENDED = (OrderStatus.CANCELLED, OrderStatus.REFUNDED)


class Decision(BaseModel):
    """What applying one incoming version to the stored order means."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    outcome: Outcome
    order: Order  # the current view after applying
    events: tuple[OrderEvent, ...] = ()
    create_job: bool = False
    cancel_job: bool = False
    problems: tuple[str, ...] = ()  # why a paid order cannot go to the warehouse yet
    changed: frozenset[str] = frozenset()  # fields the marketplace changed
    overrides: dict[str, Any] = Field(default_factory=dict)  # see `decide`


Overrides = Mapping[str, Any]  # field -> the marketplace's value (JSON) when CS amended it


def changed_view(order: Order, kind: str, address: Address | None, at: datetime,
                 courier: str | None = None) -> Order:
    """The current view once a cancellation, an address or a courier change has taken effect
    (applied before print, or intercepted by the factory); any other kind leaves the view as
    it is. An order already cancelled keeps the moment it was."""
    if kind == "cancel" and order.status is not OrderStatus.CANCELLED:
        return order.model_copy(update={"status": OrderStatus.CANCELLED, "cancelled_at": at})
    if kind == "address" and address is not None:
        return order.model_copy(update={"shipping_address": address})
    if kind == "courier" and courier:
        return order.model_copy(update={"requested_courier": courier})
    return order


def amended(order: Order, view: Order, overrides: Overrides) -> dict[str, Any]:
    """The overrides after CS turned `order` into `view`: each field CS changed remembers the
    marketplace's value it replaced (the first one, if CS amends it again)."""
    before, after = order.model_dump(mode="json"), view.model_dump(mode="json")
    found = dict(overrides)
    for name in before:
        if before[name] != after[name]:
            found.setdefault(name, before[name])
    return found


def _keep_amendments(current: Order, incoming: Order,
                     overrides: Overrides) -> tuple[Order, dict[str, Any]]:
    """A field CS amended stays amended while the marketplace still sends the value CS
    replaced; once the marketplace changes it, the marketplace's newer value wins."""
    sent = incoming.model_dump(mode="json", include=set(overrides))
    kept = {name: value for name, value in overrides.items() if sent.get(name) == value}
    view = incoming.model_copy(update={name: getattr(current, name) for name in kept})
    return view, kept


def totals_mismatch(order: Order, delivery: Delivery, now: datetime) -> OrderEvent:
    """The marketplace's parts do not make its total: a field we mis-read or a charge we do
    not know. The order is kept (the buyer paid the total), and the timeline says so."""
    totals = order.totals
    return OrderEvent(
        type="order.totals_mismatch", at=now, actor=delivery.actor, reason=delivery.topic,
        source_at=order.updated_at, summary=f"Totals do not add up: {totals.summary()}",
        data={"expected": str(totals.expected_total()), "total": str(totals.total),
              "difference": str(totals.total - totals.expected_total())})


def decide(current: Order | None, incoming: Order, delivery: Delivery, *, has_job: bool,
           now: datetime, overrides: Overrides | None = None) -> Decision:
    """Apply `incoming` only if newer than `current`; say which events and job actions follow.

    `current` is the view CS may have amended; `overrides` says which fields (see `amended`),
    so a marketplace version that did not touch them neither reverts CS's change nor counts as
    a change of the marketplace's (which would send the job a change request)."""
    if current is not None and incoming.updated_at <= current.updated_at:
        return Decision(outcome="stale", order=current, overrides=dict(overrides or {}))
    kept: dict[str, Any] = {}
    if current is not None and overrides:
        incoming, kept = _keep_amendments(current, incoming, overrides)
    if current is None:
        event = OrderEvent(
            type="order.received", at=now, actor=delivery.actor, reason=delivery.topic,
            source_at=incoming.updated_at,
            summary=f"Order {incoming.name or incoming.external_id} received ({incoming.status})",
        )
        outcome: Outcome = "created"
        events: tuple[OrderEvent, ...] = (event,)
        changed: frozenset[str] = frozenset()
    else:
        changes = changes_between(current, incoming)
        changed = frozenset(changes)
        outcome = "updated" if changes else "unchanged"
        events = ()
        if changes:
            events = (OrderEvent(
                type="order.updated", at=now, actor=delivery.actor, reason=delivery.topic,
                source_at=incoming.updated_at, data={"changes": changes},
                summary="Marketplace changed " + ", ".join(sorted(changes)),
            ),)
    if (current is None or "totals" in changed) and not incoming.totals.adds_up():
        events += (totals_mismatch(incoming, delivery, now),)
    wants_job = incoming.status is OrderStatus.PAID and not has_job
    problems = tuple(fulfilment_problems(incoming)) if wants_job else ()
    if problems:
        events += (OrderEvent(
            type="order.invalid", at=now, actor=delivery.actor, reason=delivery.topic,
            source_at=incoming.updated_at, data={"problems": list(problems)},
            summary="Paid order cannot go to the warehouse: " + ", ".join(problems),
        ),)
    # Act on the transition only: later versions of a cancelled order must not cancel again.
    ended = incoming.status in _ENDED and (current is None or current.status not in _ENDED)
    return Decision(
        outcome=outcome,
        order=incoming,
        events=events,
        create_job=wants_job and not problems,
        cancel_job=ended and has_job,
        problems=problems,
        changed=changed,
        overrides=kept,
    )
