"""The contract every waybill provider keeps.

A provider issues a number for one package (`WaybillRequest` -> `WaybillResult`), gives an
unused one back (cancel) and prints one again (reprint). Each call is a pure `build_*` (the
`core.http.Request` exactly as it goes on the wire, signature included), a pure `parse_*` (the
answer read, or a `WaybillError`) and the thin `send` between them, through core/http.py.

Idempotency: the package's `object_id` is derived from the job and the package number, and
every provider is sent it as its own request key (Kuaidi100 `orderId`, Cainiao `object_id`,
Douyin `pack_id`), so a retried print asks for the same package and never takes a second
number.

Receivers: a plain address (printed as it is), or the platform's encrypted reference: Taobao's
OAID with the trade id (Cainiao decrypts on the printer's side), Douyin's encrypted receiver
fields (the ciphertexts of the order as given). Only the platform's own channel can label an
encrypted receiver; `registry.provider_for` routes them there.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.core.http import Answer, Request, Unreachable, send

_ID_CHARS = re.compile(r"^[A-Za-z0-9_]+$")
MAX_OBJECT_ID = 40  # within every provider's limit (Cainiao object_id, Douyin pack_id)

Reason = Literal[
    "balance_empty",        # the account has no waybills left: someone must top it up
    "address_unreachable",  # the courier does not serve that address (超区)
    "bad_signature",        # our credentials or signing are wrong
    "account",              # the courier account (partner id/key, cp_code, subscription)
    "bad_request",          # the data we sent was refused
    "provider_unavailable",  # network down, 5xx, the provider busy: try again
    "rate_limited",
    "malformed_answer",
    "not_found",            # cancel/reprint of a number the provider does not know
]
RETRYABLE_REASONS: frozenset[str] = frozenset({"provider_unavailable", "rate_limited"})


class WaybillError(Exception):
    """A provider's refusal or failure, with a reason a factory (and CS) can act on. The
    message never carries the receiver's data (a provider's text may quote it): only codes."""

    def __init__(self, reason: Reason, provider: str, code: str = "", *,
                 retryable: bool | None = None) -> None:
        super().__init__(f"{provider} {reason}" + (f" ({code[:64]})" if code else ""))
        self.reason: Reason = reason
        self.provider = provider
        self.code = code[:64]
        self.retryable = reason in RETRYABLE_REASONS if retryable is None else retryable


class Party(BaseModel):
    """A plain person and address (the sender always; a receiver whose data we hold)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    phone: str = Field(min_length=4, max_length=32)
    province: str = Field(min_length=1, max_length=32)
    city: str = Field(min_length=1, max_length=32)
    district: str = Field(default="", max_length=32)
    detail: str = Field(min_length=1, max_length=200)

    def one_line(self) -> str:
        return "".join((self.province, self.city, self.district, self.detail))


class PlainReceiver(Party):
    kind: Literal["plain"] = "plain"


class TaobaoReceiver(BaseModel):
    """Taobao/Tmall: the receiver as the Open Addressee ID and the trade id; province and city
    come unmasked (they route the parcel)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["taobao"] = "taobao"
    oaid: str = Field(min_length=1, max_length=128)
    tid: str = Field(min_length=1, max_length=64)
    province: str = ""
    city: str = ""
    district: str = ""


class DouyinReceiver(BaseModel):
    """Douyin: the order's encrypted receiver fields, as the order gave them (ciphertexts)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["douyin"] = "douyin"
    order_id: str = Field(min_length=1, max_length=64)
    encrypt_name: str = Field(min_length=1)
    encrypt_mobile: str = Field(min_length=1)
    encrypt_detail: str = Field(min_length=1)
    province: str = ""
    city: str = ""
    district: str = ""


Receiver = Annotated[PlainReceiver | TaobaoReceiver | DouyinReceiver, Field(discriminator="kind")]


class Item(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    count: int = Field(ge=1)


def object_id_for(job_id: str, package_no: int, generation: int = 0) -> str:
    """The package's request key: the same job and package always give the same id (letters,
    digits and "_" only: Douyin's pack_id allows no more); a long or odd job id is hashed. A
    relabel (a new address) is a new generation, so it takes a new number."""
    tail = f"_{package_no}" + (f"r{generation}" if generation else "")
    if _ID_CHARS.match(job_id) and len(job_id) + len(tail) <= MAX_OBJECT_ID:
        return job_id + tail
    digest = hashlib.sha256(job_id.encode("utf-8")).hexdigest()[:24]
    return f"j{digest}{tail}"


class WaybillRequest(BaseModel):
    """One package's waybill."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1, max_length=128)
    package_no: int = Field(ge=1, le=99)
    marketplace: str
    trade_id: str = ""  # the platform's order id (Cainiao's trade_order_list; Douyin order_id)
    courier: str = Field(min_length=2, max_length=16)  # our carrier code (warehouse.carriers)
    sender: Party
    receiver: Receiver
    items: tuple[Item, ...] = Field(min_length=1)
    weight_grams: int = Field(default=500, ge=1)
    generation: int = Field(default=0, ge=0, le=99)  # 0; n for the n-th relabel

    @property
    def object_id(self) -> str:
        return object_id_for(self.job_id, self.package_no, self.generation)

    @property
    def item_count(self) -> int:
        return sum(item.count for item in self.items)

    def cargo(self) -> str:
        return "、".join(item.name for item in self.items)[:100]


class Label(BaseModel):
    """What the factory prints: a plain label (PDF or PNG, base64), or a platform channel's
    encrypted print data with the template its print component renders it with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["pdf", "png", "cainiao", "douyin"]
    content_base64: str = ""  # pdf / png
    print_data: str = ""      # cainiao / douyin: opaque, decrypted by the print component
    template_url: str = ""
    url: str = ""             # a provider's short link to the same label, when it gives one


class WaybillResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    object_id: str
    courier: str
    waybill_number: str = Field(min_length=4, max_length=64)
    label: Label
    cost: Decimal | None = None  # CNY, when the provider says
    provider_order_id: str = ""  # the provider's own id for the order, needed to cancel


class Provider(Protocol):
    """A waybill provider configured with one account."""

    name: str

    def issue(self, request: WaybillRequest) -> WaybillResult: ...

    def cancel(self, courier: str, waybill_number: str, provider_order_id: str = "") -> None:
        """Give an unused number back; a number already given back is not an error."""
        ...

    def reprint(self, request: WaybillRequest, waybill_number: str) -> WaybillResult: ...


class AccountProvider:
    """What every provider module's I/O part holds: its account (the secret and options of
    `waybills-<provider>`) and a clock its signed requests are stamped with (tests set it)."""

    def __init__(self, account: Mapping[str, str],
                 clock: Callable[[], float] = time.time) -> None:
        self.account, self._clock = dict(account), clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)


def exchange(request: Request, provider: str) -> Answer:
    """Send through core.http; no answer is the provider unavailable (retryable), and a 5xx
    too. A 4xx is left to the provider's parser (some put their error code in it)."""
    try:
        answer = send(request)
    except Unreachable as exc:
        raise WaybillError("provider_unavailable", provider, exc.kind) from None
    if answer.status >= 500:
        raise WaybillError("provider_unavailable", provider, f"http_{answer.status}")
    if answer.status == 429:
        raise WaybillError("rate_limited", provider, "http_429")
    return answer


def json_object(answer: Answer, provider: str) -> dict[str, object]:
    try:
        body = answer.json()
    except ValueError:
        raise WaybillError("malformed_answer", provider, "not_json") from None
    if not isinstance(body, dict):
        raise WaybillError("malformed_answer", provider, "not_object")
    return body


Clock = Callable[[], float]  # milliseconds matter (Kuaidi100's `t`): time.time in production
