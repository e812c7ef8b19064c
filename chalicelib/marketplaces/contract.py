"""The one contract of a marketplace adapter: what a platform can do, every capability a
declared attribute (None where the platform lacks it), so that the flows read capabilities
instead of probing modules.

A platform module (chalicelib/marketplaces/<platform>.py) keeps its pure functions and declares
- `INBOUND = Inbound(...)`: what a notification needs (accept it, the documented reply, and how
  it becomes an order: `normalise` a full payload, or `ref`/`refs` for a thin one);
- `MARKETPLACE = Marketplace(...)`: the whole platform, that inbound half included, with the
  calls to its API (fetch, writeback, listing, token exchange, token refresh).
Both live in one module for every platform but Shopify, whose API half (shopify_admin.py)
declares MARKETPLACE around shopify.INBOUND: a webhook's cold start loads only the inbound half.
The registry (chalicelib/marketplaces/__init__.py) finds either by scheme.

Every call is built purely as a `chalicelib.core.http.Request`; the I/O edge
(chalicelib/flows/marketplace_calls.py) sends it and hands the answer to the declared parser.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.marketplaces.calls import Credentials, OrderRef, Shipped, WritebackResult
from chalicelib.marketplaces.tokens import Tokens
from chalicelib.orders.deliveries import Accepted
from chalicelib.orders.order import Order

if TYPE_CHECKING:  # core.http loads `requests`: not on a webhook's cold start
    from chalicelib.core.http import Request

# The quoted "Request" is resolved by the type checker only (see above).
Accept = Callable[[Mapping[str, str], bytes, Sequence[str], datetime], Accepted]
Normalise = Callable[[bytes, Mapping[str, str], str], Order]
RefOf = Callable[[bytes, Mapping[str, str]], OrderRef]
RefsOf = Callable[[bytes, Mapping[str, str]], list[OrderRef]]
Reply = tuple[int, str, str]  # status, content type, body
SendJson = Callable[["Request"], Any]  # the I/O edge's: a request in, its JSON answer out
Reader = Callable[[OrderRef, Credentials, datetime, SendJson, str], Order]
OrderCall = Callable[[OrderRef, Credentials, datetime], "Request"]
ShipmentCall = Callable[[Shipped, Credentials, datetime], "Request"]
# (package, credentials, now, prepared): `prepared` is the prepare read's answer, else None.
WriteCall = Callable[[Shipped, Credentials, datetime, Any], "Request"]
ListCall = Callable[[str, datetime, datetime, str | None, Credentials, datetime], "Request"]
ListParse = Callable[[Any, str, str | None], tuple[list[OrderRef], str | None]]


@dataclass(frozen=True)
class Inbound:
    """A platform's notifications: what a webhook (or a feed) and the order worker need.

    `accept(headers, raw, secrets, now)` verifies the signature over the raw bytes and
    validates the payload (ApiError with a reason code). A notification is read either whole,
    `normalise(raw, headers, source)` (InvalidOrder), or as a reference to re-fetch,
    `ref(raw, headers)`, with `refs` where one push may name several orders."""

    accept: Accept
    reply: Reply | None = None  # the platform's documented answer; None: ours (JSON)
    normalise: Normalise | None = None
    ref: RefOf | None = None
    refs: RefsOf | None = None

    def __post_init__(self) -> None:
        if (self.normalise is None) == (self.ref is None):
            raise TypeError("a notification is read either whole (normalise) or as a "
                            "reference (ref), not both or neither")
        if self.refs is not None and self.ref is None:
            raise TypeError("refs (several orders in one push) come with ref")


@dataclass(frozen=True)
class Fetch:
    """Re-reading an order the platform names: `read(ref, credentials, now, send_json,
    source)`. Each request goes through `send_json`, so one signature covers a single call, an
    order and its items in several calls, and calls that depend on an earlier answer (Amazon:
    a data token first)."""

    read: Reader

    @classmethod
    def one_call(cls, call: OrderCall, parse: Callable[[Any, OrderRef, str], Order]) -> Fetch:
        def read(ref: OrderRef, credentials: Credentials, now: datetime, send_json: SendJson,
                 source: str) -> Order:
            return parse(send_json(call(ref, credentials, now)), ref, source)

        return cls(read)

    @classmethod
    def several_calls(cls, calls: Callable[[OrderRef, Credentials, datetime], Sequence[Request]],
                      parse: Callable[[list[Any], OrderRef, str], Order]) -> Fetch:
        """Independent calls, sent in turn; `parse` reads their answers in that order."""
        def read(ref: OrderRef, credentials: Credentials, now: datetime, send_json: SendJson,
                 source: str) -> Order:
            return parse([send_json(c) for c in calls(ref, credentials, now)], ref, source)

        return cls(read)


@dataclass(frozen=True)
class PackageCheck:
    """A read of the order on the platform, and whether its answer shows the package (our
    tracking number) already."""

    call: ShipmentCall
    already_shipped: Callable[[Any, Shipped], bool]


@dataclass(frozen=True)
class ShipmentWrite:
    """Telling the platform of a shipped package: `call`, whose answer `parse` reads.

    `prepare`: a read the write needs first (Shopify's fulfillment orders), sent on every
    attempt; its answer says whether the package is there already and goes to `call`.
    `existing`: for a platform that does not deduplicate, asked before a retry and after an
    "already shipped" answer (which may also mean closed or shipped by hand)."""

    call: WriteCall
    parse: Callable[[int, bytes], WritebackResult]
    prepare: PackageCheck | None = None
    existing: PackageCheck | None = None

    @classmethod
    def direct(cls, call: ShipmentCall, parse: Callable[[int, bytes], WritebackResult],
               existing: PackageCheck | None = None) -> ShipmentWrite:
        """A write that needs no read first (every platform but Shopify)."""
        def write(shipped: Shipped, credentials: Credentials, now: datetime,
                  prepared: Any) -> Request:
            return call(shipped, credentials, now)  # nothing was prepared: prepared is None

        return cls(call=write, parse=parse, existing=existing)


@dataclass(frozen=True)
class Listing:
    """The shop's orders changed in a window, a page a call, for reconciliation:
    `call(shop, since, until, cursor, credentials, now)`, and `parse(answer, shop, cursor)` ->
    (refs, next cursor or None). `parse` is told the shop and the cursor the call was made with:
    some answers name neither."""

    call: ListCall
    parse: ListParse


@dataclass(frozen=True)
class TokenExchange:
    """A short-lived access token for the shop's long-lived one: `call(credentials)` (None when
    the credentials carry a ready token) and `parse(answer)` -> (token, seconds it lives)."""

    call: Callable[[Credentials], Request | None]
    parse: Callable[[Any], tuple[str, int]]


@dataclass(frozen=True)
class TokenRefresh:
    """Access that expires, renewed with a refresh token that rotates (chalicelib/marketplaces/
    tokens.py): `call(credentials, now)` the refresh request, built from the shop's stored
    refresh token (None when its credentials carry none: they are used as they are), and
    `parse(answer, now)` the new `Tokens`. A refusal for good (the refresh token expired, spent
    or revoked, the shop's authorisation ended) raises tokens.RefreshRefused; a passing fault
    a retryable error. `access_key`: the credential the access token goes in (Taobao:
    `session`); `reauthorise`: where the seller authorises us again, for CS's case."""

    call: Callable[[Credentials, datetime], Request | None]
    parse: Callable[[Any, datetime], Tokens]
    reauthorise: str
    access_key: str = "access_token"


@dataclass(frozen=True)
class Marketplace:
    """A platform: its scheme name, its notifications, and what its API offers us."""

    name: str
    inbound: Inbound
    fetch: Fetch | None = None  # needed to read a thin notification or a listed order
    writeback: ShipmentWrite | None = None
    listing: Listing | None = None  # reconciliation
    token: TokenExchange | None = None  # for a platform lending short-lived access tokens
    refresh: TokenRefresh | None = None  # for a platform whose shop access expires

    def __post_init__(self) -> None:
        if self.fetch is None and self.inbound.ref is not None:
            raise TypeError(f"{self.name}: a thin notification needs fetch to be read")
        if self.fetch is None and self.listing is not None:
            raise TypeError(f"{self.name}: a listed order needs fetch to be read")
        if self.token is not None and self.refresh is not None:
            raise TypeError(f"{self.name}: an access token is either exchanged each time "
                            "(token) or renewed and kept (refresh), not both")
