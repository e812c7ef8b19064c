"""What a marketplace adapter asks of the platform's API, built purely; the I/O edge sends it.

Thin notifications (Douyin, TikTok Shop, Shopee, Lazada, Amazon, Taobao) name an order that
must be re-fetched; the marketplaces take a shipment writeback; reconciliation lists recent
orders. An adapter builds each request as a `chalicelib.core.http.Request` (signed, exact) and
reads the answer with a pure parser; `chalicelib.flows.marketplace_calls` sends it. Which of
these a platform offers it declares in its `MARKETPLACE` (chalicelib/marketplaces/contract.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from chalicelib.core.signatures import loads_json


class LenientModel(BaseModel):
    """A platform's JSON as we read it: fields we do not use are ignored."""

    model_config = ConfigDict(extra="ignore")


class PlatformModel(LenientModel):
    """The same, where JSON null means "not given" (the field's default applies), as the
    Shopee, Lazada and TikTok Shop answers send it."""

    @model_validator(mode="before")
    @classmethod
    def _nulls_as_absent(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: item for key, item in value.items() if item is not None}
        return value


def id_text(value: Any) -> Any:
    """A platform id as exact text: ids arrive as numbers or strings and can exceed 2**53."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


_SEPARATORS = re.compile(r"[,\s]")


def money(value: Any) -> Decimal:
    """An amount as the platforms send it: a number, a string, "1,299.00", or nothing (0).
    Through the text, so a JSON 12.9 stays 12.9, not 12.899999..."""
    if value in (None, ""):
        return Decimal("0")
    try:
        return Decimal(_SEPARATORS.sub("", str(value)))
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None


IdText = Annotated[str, BeforeValidator(id_text)]
Money = Annotated[Decimal, BeforeValidator(money)]


class OrderRef(BaseModel):
    """What a thin notification (or a reconciliation listing) says: which order, how new."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    shop: str
    external_id: str
    status: str = ""  # the platform's own status word, when the notification carries it
    updated_at: datetime | None = None


class Shipped(BaseModel):
    """What the writeback tells the platform: one package."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    external_id: str  # the platform's order id
    carrier_code: str  # ours (STO, SF, YTO, ZTO, YUNDA, JD, EMS, ...); adapters map it
    tracking_number: str
    shipped_at: datetime
    package_id: str  # stable per package: our idempotency key where the platform takes one
    lines: tuple[tuple[str, int], ...] = ()  # (platform line item id, quantity); empty: all
    # Every line of the order, for a platform that must name the items even for all of them
    # (Amazon, Lazada). Only the first package of a job's first shipment carries them: the
    # warehouse does not say which items went in which parcel.
    order_lines: tuple[tuple[str, int], ...] = ()

    @property
    def items(self) -> tuple[tuple[str, int], ...]:
        """The items this package holds, by the platform's line ids (empty: not known)."""
        return self.lines or self.order_lines


class WritebackResult(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    ok: bool
    retryable: bool = False
    already_done: bool = False  # the platform already has this shipment (a retry after success)
    code: str = ""
    detail: str = ""


Credentials = Mapping[str, str]  # per shop: app key/secret, access token, ... (see each adapter)


class PlatformUnavailable(Exception):
    """The platform did not answer usefully (no answer, 429, 5xx, not JSON): try again later."""

    retryable = True


class PlatformError(Exception):
    """An error answer of a marketplace's API. `retryable`: a later attempt may succeed (the
    caller backs off); otherwise the request itself is refused."""

    def __init__(self, code: str, message: str, retryable: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable


class ApiErrorLike(Protocol):
    code: str
    message: str
    retryable: bool


def read_writeback(status: int, body: bytes,
                   error_of: Callable[[Mapping[str, Any]], ApiErrorLike | None],
                   maybe_done: Callable[[ApiErrorLike], bool]) -> WritebackResult:
    """A JSON platform's answer to a writeback. `maybe_done`: a refusal that may mean "shipped
    already" (by our earlier attempt or by hand) or "cancelled": retryable, so the next attempt
    asks the platform (the writeback's `existing` read) before writing again."""
    if status == 429 or status >= 500:
        return WritebackResult(ok=False, retryable=True, code=str(status))
    try:
        answer = loads_json(body)
    except ValueError:
        return WritebackResult(ok=False, code=str(status),
                               detail=body[:500].decode("utf-8", "replace"))
    if not isinstance(answer, dict):
        return WritebackResult(ok=False, code="unexpected_answer")
    error = error_of(answer)
    if error is None:
        return WritebackResult(ok=status < 400, code="" if status < 400 else str(status))
    return WritebackResult(ok=False, retryable=error.retryable or maybe_done(error),
                           code=error.code, detail=error.message[:500])
