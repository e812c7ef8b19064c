"""Kuaidi100 (快递100): real-time query, subscription, and the push callback.

Pure part: request building and signing, push verification, answer parsing, code tables, and
`provider_error` (did a failed call count against the 30-minute lock; which alert CS gets).
Thin I/O part: `Kuaidi100Client`, sending through chalicelib.core.http at our pace (`PACE`, 80
per second per process) with timeouts and retries with backoff on 5xx and connection failures
(a query that timed out is not retried: it may have counted), and a per-process guard against
the 30-minute lock. `Kuaidi100` is the provider (chalicelib.tracking.couriers.Provider) with
our account: pushes once subscribed, and can be queried.

Protocol (official docs and SDKs, checked in the stored references):
- query: POST https://poll.kuaidi100.com/poll/query.do, form `customer`, `sign`, `param`;
  sign = upper-case hex MD5(param + key + customer). Query a number at most every 30 minutes or
  it is locked. `phone` is required for SF (顺丰速运/顺丰快运) and ZTO (中通); the SDK says the
  last four digits are enough, and for a marketplace's virtual number the four after the "-".
- subscribe: POST https://poll.kuaidi100.com/poll, form `schema=json`, `param` with company,
  number, key, parameters{callbackurl, salt, resultv2, phone}. At most 4 per number per month.
  returnCode 501 means "already subscribed and still polling": success for us.
- push: form `param` (JSON) and `sign` = upper-case MD5(param + salt). The status is polling,
  shutdown (signed for), abort (3 days without a record or 60 days without change: re-subscribe
  after 30 minutes) or updateall. lastResult.data[] holds the whole history, newest first.
  Reply within 20 s with `PUSH_REPLY`.
- resultv2=4 adds the detailed `statusCode` per line (the subscription docs disagree on whether
  4 or 6 is needed there, so lines are also mapped by their status *name*).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Literal, NoReturn, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict

from chalicelib.access.accounts import WebhookSource
from chalicelib.core.errors import ApiError
from chalicelib.core.http import Answer, Pace, Request, Unreachable, retrying, send
from chalicelib.core.signatures import loads_json, same_signature
from chalicelib.tracking.couriers import (
    ACCOUNT_ALERT,
    WAYBILL_ALERT,
    Mapped,
    Provider,
    ProviderError,
    PushReply,
    TrackedParcel,
    TrackingPush,
)
from chalicelib.tracking.model import ExceptionKind, ShipmentStatus, TrackingEvent
from chalicelib.warehouse.waybills.kuaidi100 import KUAIDICOM

log = logging.getLogger(__name__)
NAME = "kuaidi100"
QUERY_URL = "https://poll.kuaidi100.com/poll/query.do"
SUBSCRIBE_URL = "https://poll.kuaidi100.com/poll"
RESULT_V2 = "4"
PUSH_REPLY: dict[str, object] = {"result": True, "returnCode": "200", "message": "成功"}
QUERY_LOCK = timedelta(minutes=30)
RESUBSCRIBE_AFTER_ABORT = timedelta(minutes=30)
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # no DST since 1991
# Our pace, per process, for queries and subscriptions together (N warm instances may reach N
# times it; Kuaidi100's own refusals then slow them down). Kuaidi100 documents no account-wide
# rate, only the per-number 30-minute lock and the quota (601): the pace guards against a
# runaway loop, and at 80 a second one tick subscribes 100 pick-up batches of 30.
PACE = Pace(key=NAME, rate=80.0, burst=10)

# Our carrier codes (chalicelib.warehouse.carriers.Carrier) -> Kuaidi100 `com` (official SDK
# CompanyConstant): one table with the electronic waybills' `kuaidicom`.
CARRIERS: dict[str, str] = KUAIDICOM
_OUR_CODE = {com: ours for ours, com in CARRIERS.items()}
PHONE_REQUIRED = frozenset({"SF", "ZTO"})

S, K = ShipmentStatus, ExceptionKind


def _m(status: ShipmentStatus, *kinds: ExceptionKind, customs: bool = False) -> Mapped:
    return Mapped(status, frozenset(kinds), customs)


# Every documented `state` and `statusCode` (basic codes 0-14, advanced 101..1003, 201..210).
STATES: dict[str, Mapped] = {
    "0": _m(S.IN_TRANSIT),                        # 在途
    "1001": _m(S.IN_TRANSIT),                     # 到达派件城市
    "1002": _m(S.IN_TRANSIT),                     # 干线
    "1003": _m(S.IN_TRANSIT, K.REDIRECTED),       # 转递: sent on to a new address
    "1": _m(S.PICKED_UP),                         # 揽收
    "101": _m(S.INFO_RECEIVED),                   # 已下单
    "102": _m(S.INFO_RECEIVED),                   # 待揽收
    "103": _m(S.PICKED_UP),                       # 已揽收
    "5": _m(S.OUT_FOR_DELIVERY),                  # 派件
    "501": _m(S.AVAILABLE_FOR_PICKUP),            # 投柜或驿站
    "3": _m(S.DELIVERED),                         # 签收
    "301": _m(S.DELIVERED),                       # 本人签收
    "302": _m(S.DELIVERED),                       # 派件异常后签收
    "303": _m(S.DELIVERED),                       # 代签
    "304": _m(S.DELIVERED),                       # 投柜或站签收
    "6": _m(S.RETURNING, K.RETURN_TO_SENDER),     # 退回
    "4": _m(S.RETURNED, K.RETURN_TO_SENDER),      # 退签
    "401": _m(S.CANCELLED),                       # 已销单
    "14": _m(S.RETURNED, K.REFUSED_RETURNED),     # 拒签: refused, signed back by the shipper
    "7": _m(S.IN_TRANSIT, K.CARRIER_TRANSFER),    # 转投
    "2": _m(S.EXCEPTION, K.OTHER),                # 疑难
    "201": _m(S.OUT_FOR_DELIVERY, K.CARRIER_DELAY),   # 超时未签收: out long, not signed
    "202": _m(S.EXCEPTION, K.CARRIER_DELAY),      # 超时未更新
    "203": _m(S.EXCEPTION, K.REFUSAL_INITIATED),  # 拒收: refused, awaiting the shipper
    "204": _m(S.DELIVERY_FAILED, K.DELIVERY_FAILED),          # 派件异常
    "205": _m(S.AVAILABLE_FOR_PICKUP, K.PICKUP_UNCOLLECTED),  # 柜或驿站超时未取
    "206": _m(S.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE),    # 无法联系
    "207": _m(S.EXCEPTION, K.ADDRESS_ISSUE),      # 超区: outside the service area
    "208": _m(S.EXCEPTION, K.HELD_AT_FACILITY),   # 滞留
    "209": _m(S.EXCEPTION, K.DAMAGED),            # 破损
    "210": _m(S.CANCELLED),                       # 销单: the sender cancelled
    "8": _m(S.IN_TRANSIT, customs=True),          # 清关
    "10": _m(S.IN_TRANSIT, customs=True),         # 待清关
    "11": _m(S.IN_TRANSIT, customs=True),         # 清关中
    "12": _m(S.IN_TRANSIT),                       # 已清关
    "13": _m(S.EXCEPTION, K.CUSTOMS_ISSUE, customs=True),  # 清关异常
}
# Status names as lines carry them when no statusCode is sent (resultv2=1, or 4 on subscriptions).
STATE_NAMES: dict[str, str] = {
    "在途": "0", "到达派件城市": "1001", "干线": "1002", "转递": "1003", "揽收": "1",
    "已下单": "101", "待揽收": "102", "已揽收": "103", "派件": "5", "投柜或驿站": "501",
    "签收": "3", "本人签收": "301", "派件异常后签收": "302", "代签": "303", "投柜或站签收": "304",
    "投柜或驿站签收": "304", "退回": "6", "退签": "4", "已销单": "401", "拒签": "14", "转投": "7",
    "疑难": "2", "超时未签收": "201", "超时未更新": "202", "拒收": "203", "派件异常": "204",
    "柜或驿站超时未取": "205", "无法联系": "206", "超区": "207", "滞留": "208", "破损": "209",
    "销单": "210", "清关": "8", "待清关": "10", "清关中": "11", "已清关": "12", "清关异常": "13",
}


# Errors -----------------------------------------------------------------------------------------

class Kuaidi100Error(Exception):
    """A failed call. `retryable`: a later attempt may succeed (the scheduler backs off)."""

    retryable: ClassVar[bool] = False

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"kuaidi100 {code}: {message}" if message else f"kuaidi100 {code}")
        self.code = code
        self.message = message


class BadRequest(Kuaidi100Error):
    """400: incomplete data, or a carrier the account does not cover."""


class PhoneCheckFailed(Kuaidi100Error):
    """408: the phone number does not match the waybill (SF and ZTO check it)."""


class NoResult(Kuaidi100Error):
    """500: no trace yet. Not retried at once: a second query within 30 min locks the number."""

    retryable = True


class ServerError(Kuaidi100Error):
    """501 on query, 500 on subscribe: the provider's own fault."""

    retryable = True


class ServerBusy(Kuaidi100Error):
    """502."""

    retryable = True


class SignatureError(Kuaidi100Error):
    """503: our signature was refused. Retrying the same request cannot help."""


class QuotaExhausted(Kuaidi100Error):
    """601: the key expired or has no queries left."""


class AccountError(Kuaidi100Error):
    """600 on subscribe: not a valid subscriber (wrong key)."""


class SubscriptionRejected(Kuaidi100Error):
    """700 bad data or callback, 701 carrier refused, 702 carrier not recognised."""


class ProviderUnavailable(Kuaidi100Error):
    """HTTP 5xx or the connection failed."""

    retryable = True


class RequestTimedOut(ProviderUnavailable):
    """No answer in time (or it broke off): the request may have reached the provider."""


class QueryTooSoon(Kuaidi100Error):
    """This process queried the number less than 30 minutes ago (the provider would lock it)."""

    retryable = True


class MalformedAnswer(Kuaidi100Error):
    """The answer was not the JSON the protocol describes."""


QUERY_ERRORS: dict[str, type[Kuaidi100Error]] = {
    "400": BadRequest, "408": PhoneCheckFailed, "500": NoResult, "501": ServerError,
    "502": ServerBusy, "503": SignatureError, "601": QuotaExhausted,
}
SUBSCRIBE_ERRORS: dict[str, type[Kuaidi100Error]] = {
    "500": ServerError, "600": AccountError, "601": QuotaExhausted, "700": SubscriptionRejected,
    "701": SubscriptionRejected, "702": SubscriptionRejected,
}


def provider_error(exc: Kuaidi100Error) -> ProviderError:
    """What a failed call means for the watch (did it count against the 30-minute lock?) and
    for CS (whose problem is it?)."""
    # Refused before it left (our lock guard) or it never arrived: the provider's lock is not
    # on. A timeout may have arrived, so it counts though it is "unavailable".
    not_sent = isinstance(exc, QueryTooSoon | ProviderUnavailable)
    counted = isinstance(exc, RequestTimedOut) or not not_sent
    if isinstance(exc, QuotaExhausted | AccountError | SignatureError):
        return ProviderError(str(exc), counted=counted, alert=ACCOUNT_ALERT)
    if isinstance(exc, BadRequest | PhoneCheckFailed):
        return ProviderError(str(exc), counted=counted, alert=WAYBILL_ALERT)
    return ProviderError(str(exc), counted=counted)


# Requests ---------------------------------------------------------------------------------------

def sign(param_json: str, key: str, customer: str) -> str:
    """Query signature: upper-case hex MD5 of param + key + customer (no separators)."""
    return _md5_upper(param_json + key + customer)


def _md5_upper(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def _dumps(value: Mapping[str, object]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def com_for(carrier_code: str) -> str:
    try:
        return CARRIERS[carrier_code.upper()]
    except KeyError:
        raise ValueError(f"kuaidi100 has no code for carrier {carrier_code!r}") from None


def carrier_for(com: str) -> str:
    """Our carrier code for a Kuaidi100 `com`; an unknown one is kept, upper-cased."""
    return _OUR_CODE.get(com.lower(), com.upper())


def phone_tail(phone: str) -> str:
    """The last four digits: enough for the check, and no more of the buyer's number than needed.

    A marketplace's virtual number ("13800001234-5678") is checked on the extension after "-".
    """
    extension = phone.rsplit("-", 1)[1] if "-" in phone.strip("-") else phone
    digits = "".join(ch for ch in extension if ch.isdigit())
    if len(digits) < 4:
        raise ValueError("a phone number needs at least four digits")
    return digits[-4:]


def _phone_field(carrier_code: str, phone: str | None) -> dict[str, str]:
    if phone:
        return {"phone": phone_tail(phone)}
    if carrier_code.upper() in PHONE_REQUIRED:
        raise ValueError(f"kuaidi100 requires the recipient's or sender's phone for "
                         f"{carrier_code.upper()}")
    return {}


def _places(from_: str | None, to: str | None) -> dict[str, str]:
    # Kuaidi100 watches more closely once a parcel reaches `to`; both help it judge signing.
    return {k: v for k, v in (("from", from_), ("to", to)) if v}


def query_param(carrier_code: str, tracking_number: str, *, phone: str | None = None,
                from_: str | None = None, to: str | None = None,
                resultv2: str = RESULT_V2) -> str:
    param: dict[str, str] = {"com": com_for(carrier_code), "num": tracking_number}
    param |= _phone_field(carrier_code, phone) | _places(from_, to)
    param |= {"resultv2": resultv2, "show": "0", "order": "desc"}
    return _dumps(param)


def query_request(carrier_code: str, tracking_number: str, *, customer: str, key: str,
                  phone: str | None = None, from_: str | None = None, to: str | None = None,
                  resultv2: str = RESULT_V2) -> dict[str, str]:
    """The form fields of a real-time query; the signature covers the exact param string sent."""
    param = query_param(carrier_code, tracking_number, phone=phone, from_=from_, to=to,
                        resultv2=resultv2)
    return {"customer": customer, "sign": sign(param, key, customer), "param": param}


def subscribe_request(carrier_code: str, tracking_number: str, *, key: str, callback_url: str,
                      salt: str, phone: str | None = None, from_: str | None = None,
                      to: str | None = None, resultv2: str = RESULT_V2) -> dict[str, str]:
    """The form fields of a subscription. Without a salt pushes could not be verified."""
    if not salt:
        raise ValueError("a salt is required: it is what lets us verify the pushes")
    parameters: dict[str, str] = {"callbackurl": callback_url, "salt": salt, "resultv2": resultv2}
    parameters |= _phone_field(carrier_code, phone)
    param: dict[str, object] = {"company": com_for(carrier_code), "number": tracking_number}
    param |= _places(from_, to)
    param |= {"key": key, "parameters": parameters}
    return {"schema": "json", "param": _dumps(param)}


# Pushes -----------------------------------------------------------------------------------------

def verify_push(form: Mapping[str, str], salt: str) -> bool:
    """sign == upper-case MD5(param + salt), compared in constant time (case-insensitively)."""
    param, given = form.get("param"), form.get("sign")
    if not salt or param is None or not given:
        return False  # an empty salt would make any forged push verify
    expected = _md5_upper(param + salt)
    return same_signature(expected, given.strip().upper())


class PushResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    monitor_status: str  # polling | shutdown | abort | updateall
    message: str = ""
    carrier_code: str
    tracking_number: str
    state: str = ""
    is_check: bool = False
    auto_check: bool = False  # the carrier code was corrected by Kuaidi100
    com_old: str = ""
    com_new: str = ""
    events: tuple[TrackingEvent, ...] = ()
    skipped: int = 0

    def to_tracking_push(self) -> TrackingPush:
        monitoring: Literal["active", "finished", "aborted"] = "active"
        if self.monitor_status == "shutdown":
            monitoring = "finished"
        elif self.monitor_status == "abort":
            monitoring = "aborted"
        return TrackingPush(
            provider=NAME, carrier_code=self.carrier_code, tracking_number=self.tracking_number,
            events=self.events, monitoring=monitoring, message=self.message,
            skipped=self.skipped,
            resubscribe_after=RESUBSCRIBE_AFTER_ABORT if monitoring == "aborted" else None)


def parse_push(form: Mapping[str, str]) -> PushResult:
    """Read a (verified) push. Raises ValueError when `param` is not the documented JSON."""
    try:
        param = loads_json(form["param"])
    except (KeyError, ValueError) as exc:
        raise ValueError(f"push param is not JSON: {exc}") from None
    if not isinstance(param, dict):
        raise ValueError("push param must be a JSON object")
    result = param.get("lastResult") or {}
    if not isinstance(result, dict):
        raise ValueError("lastResult must be a JSON object")
    com_new = _text(param.get("comNew"))
    auto_check = _text(param.get("autoCheck")) == "1"
    com = com_new if auto_check and com_new else _text(result.get("com"))
    number = _text(result.get("nu"))
    carrier = carrier_for(com) if com else ""
    events, skipped = events_from(result, carrier, number)
    return PushResult(
        monitor_status=_text(param.get("status")), message=_text(param.get("message")),
        carrier_code=carrier, tracking_number=number, state=_text(result.get("state")),
        is_check=_text(result.get("ischeck")) == "1", auto_check=auto_check,
        com_old=_text(param.get("comOld")), com_new=com_new, events=events, skipped=skipped)


def read_push(headers: Mapping[str, str], raw: bytes, secret: str) -> TrackingPush:
    """`Kuaidi100.read_push`: decode the form, verify with the subscription salt, normalise."""
    del headers  # Kuaidi100 signs inside the form
    form = _form(raw)
    if not form.get("sign"):
        raise ApiError(401, "missing_signature", "push has no sign field")
    if not verify_push(form, secret):
        raise ApiError(401, "invalid_signature", "push signature does not verify")
    try:
        push = parse_push(form)
    except ValueError as exc:
        raise ApiError(400, "malformed_push", str(exc)) from None
    if not push.tracking_number:
        raise ApiError(400, "malformed_push", "push names no tracking number")
    return push.to_tracking_push()


def push_reply() -> PushReply:
    return PushReply(status=200, content_type="application/json;charset=UTF-8",
                     body=json.dumps(PUSH_REPLY, ensure_ascii=False))


def _form(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_push", "push is not UTF-8") from None
    return {name: values[0] for name, values in parse_qs(text, keep_blank_values=True).items()}


# Answers and lines --------------------------------------------------------------------------------

def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def map_state(code_or_name: str) -> Mapped | None:
    code = STATE_NAMES.get(code_or_name.strip(), code_or_name.strip())
    return STATES.get(code)


def _line_code(line: Mapping[str, Any], fallback: str) -> str:
    for candidate in (_text(line.get("statusCode")), _text(line.get("status"))):
        code = STATE_NAMES.get(candidate, candidate)
        if code in STATES:
            return code
    return fallback


def _line_time(line: Mapping[str, Any]) -> datetime | None:
    text = _text(line.get("ftime")) or _text(line.get("time"))
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=CHINA)
        except ValueError:
            continue
    return None


def events_from(result: Mapping[str, Any], carrier_code: str,
                tracking_number: str) -> tuple[tuple[TrackingEvent, ...], int]:
    """Lines of a query answer or push lastResult -> events (and how many could not be read).

    Lines come newest first. A line without a code takes the answer's `state` if it is the
    newest, otherwise "in transit": resultv2 is always requested, so this is only a safety net.
    """
    lines = result.get("data") or []
    if not isinstance(lines, list):
        return (), 0
    state = _text(result.get("state"))
    events: list[TrackingEvent] = []
    skipped = 0
    for index, line in enumerate(lines):
        event = _event(line, carrier_code, tracking_number,
                       fallback=state if index == 0 and state in STATES else "0")
        if event is None:
            skipped += 1
        else:
            events.append(event)
    return tuple(events), skipped


def _event(line: object, carrier_code: str, tracking_number: str,
           fallback: str) -> TrackingEvent | None:
    if not isinstance(line, dict):
        return None
    at = _line_time(line)
    if at is None:
        return None
    code = _line_code(line, fallback)
    mapped = STATES[code]
    return TrackingEvent(
        provider=NAME, carrier_code=carrier_code, tracking_number=tracking_number,
        occurred_at=at, status=mapped.status, exceptions=tuple(mapped.exceptions),
        raw_code=code, description=_text(line.get("context")),
        location=_text(line.get("areaName")), customs=mapped.customs)


class QueryAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    carrier_code: str
    tracking_number: str
    state: str = ""
    is_check: bool = False
    events: tuple[TrackingEvent, ...] = ()
    skipped: int = 0


def _raise_for_code(answer: Mapping[str, Any],
                    table: Mapping[str, type[Kuaidi100Error]]) -> NoReturn:
    code = _text(answer.get("returnCode"))
    error = table.get(code, Kuaidi100Error)
    raise error(code or "unknown", _text(answer.get("message")))


def parse_query_answer(answer: Mapping[str, Any]) -> QueryAnswer:
    """A query answer -> events; a `returnCode` answer -> the typed error it names."""
    if "returnCode" in answer and answer.get("result") is not True:
        _raise_for_code(answer, QUERY_ERRORS)
    if _text(answer.get("status")) not in ("", "200"):
        raise MalformedAnswer(_text(answer.get("status")), _text(answer.get("message")))
    number = _text(answer.get("nu"))
    carrier = carrier_for(_text(answer.get("com")))
    events, skipped = events_from(answer, carrier, number)
    return QueryAnswer(carrier_code=carrier, tracking_number=number,
                       state=_text(answer.get("state")),
                       is_check=_text(answer.get("ischeck")) == "1", events=events,
                       skipped=skipped)


class SubscribeAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    accepted: bool
    duplicate: bool = False  # 501: already subscribed and still polling
    message: str = ""


def parse_subscribe_answer(answer: Mapping[str, Any]) -> SubscribeAnswer:
    code = _text(answer.get("returnCode"))
    if code == "200" and answer.get("result") is True:
        return SubscribeAnswer(accepted=True, message=_text(answer.get("message")))
    if code == "501":
        return SubscribeAnswer(accepted=True, duplicate=True, message=_text(answer.get("message")))
    _raise_for_code(answer, SUBSCRIBE_ERRORS)


# Answers over HTTP (pure) ------------------------------------------------------------------------

def answer_body(answer: Answer) -> Mapping[str, Any]:
    """The JSON object an HTTP answer carries; its status or shape as the typed error."""
    if answer.status >= 500:
        raise ProviderUnavailable(f"http_{answer.status}", answer.text())
    if answer.status >= 400:
        raise Kuaidi100Error(f"http_{answer.status}", answer.text())
    try:
        body = answer.json()
    except ValueError:
        raise MalformedAnswer("not_json", answer.text()) from None
    if not isinstance(body, dict):
        raise MalformedAnswer("not_object", answer.text())
    return body


def retry_now(exc: Exception, *, retry_timeouts: bool) -> bool:
    """Worth a second try within the same call: the provider's transient faults. A timeout only
    where a repeat is harmless (a subscription): a query that may have arrived has counted."""
    if isinstance(exc, RequestTimedOut):
        return retry_timeouts
    return isinstance(exc, ProviderUnavailable | ServerError | ServerBusy)


# I/O --------------------------------------------------------------------------------------------

T = TypeVar("T")


class Kuaidi100Client:
    """Thin I/O through chalicelib.core.http. One instance per process: the lock guard lives in
    it (the pace lives in core.http, per process and key)."""

    def __init__(self, customer: str, key: str, *, timeout: tuple[float, float] = (3.05, 10.0),
                 retries: int = 2, backoff_seconds: float = 0.5, pace: Pace = PACE,
                 query_url: str = QUERY_URL, subscribe_url: str = SUBSCRIBE_URL,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 guard_lock: bool = True) -> None:
        """`guard_lock=False` when the caller keeps the 30-minute lock itself, with the time of
        the last query stored where every process sees it (the tracker's watch does)."""
        self.customer, self.key = customer, key
        self.guard_lock = guard_lock
        self.timeout, self.retries, self.backoff = timeout, retries, backoff_seconds
        self.pace = pace
        self.query_url, self.subscribe_url = query_url, subscribe_url
        self._sleep, self._clock = sleep, clock
        self._queried: dict[tuple[str, str], float] = {}

    def query(self, carrier_code: str, tracking_number: str, *, phone: str | None = None,
              from_: str | None = None, to: str | None = None) -> QueryAnswer:
        """One real-time query. Timeouts are not retried: the first may have counted (lock)."""
        form = query_request(carrier_code, tracking_number, customer=self.customer, key=self.key,
                             phone=phone, from_=from_, to=to)
        self._guard_lock(carrier_code, tracking_number)
        answer = self._call(self.query_url, form, parse_query_answer, retry_timeouts=False)
        if not answer.tracking_number:
            answer = answer.model_copy(update={"tracking_number": tracking_number})
        return answer

    def subscribe(self, carrier_code: str, tracking_number: str, *, callback_url: str, salt: str,
                  phone: str | None = None, from_: str | None = None,
                  to: str | None = None) -> SubscribeAnswer:
        """Subscribe a number; a repeat is harmless (501 duplicate counts as accepted)."""
        form = subscribe_request(carrier_code, tracking_number, key=self.key,
                                 callback_url=callback_url, salt=salt, phone=phone,
                                 from_=from_, to=to)
        return self._call(self.subscribe_url, form, parse_subscribe_answer, retry_timeouts=True)

    def _guard_lock(self, carrier_code: str, tracking_number: str) -> None:
        if not self.guard_lock:
            return
        key, now = (carrier_code.upper(), tracking_number), self._clock()
        last = self._queried.get(key)
        if last is not None and now - last < QUERY_LOCK.total_seconds():
            raise QueryTooSoon("lock", f"{tracking_number} was queried "
                                       f"{int(now - last)} s ago")
        self._queried[key] = now

    def _call(self, url: str, form: Mapping[str, str], parse: Callable[[Mapping[str, Any]], T],
              *, retry_timeouts: bool) -> T:
        request = Request(url=url, form=dict(form), pace=self.pace, timeout=self.timeout)
        return retrying(lambda: parse(answer_body(_send(request))),
                        attempts=self.retries + 1, backoff_seconds=self.backoff,
                        retry_if=lambda exc: retry_now(exc, retry_timeouts=retry_timeouts),
                        sleep=self._sleep)


def _send(request: Request) -> Answer:
    try:
        return send(request)
    except Unreachable as exc:
        if exc.reached:  # it may have arrived: Kuaidi100 may have counted it against the lock
            raise RequestTimedOut(exc.kind) from None
        raise ProviderUnavailable(exc.kind) from None


class Kuaidi100(Provider):
    """Kuaidi100 with our account (options: customer, key, callback_url; query_url and
    subscribe_url for a stand-in; the first secret is the salt our subscriptions ask it to sign
    pushes with). It pushes once subscribed, and can be queried."""

    name = NAME
    read_push = staticmethod(read_push)
    push_reply = staticmethod(push_reply)

    def __init__(self, account: WebhookSource) -> None:
        super().__init__(account)
        options = account.options
        self.client = Kuaidi100Client(
            options.get("customer", ""), options.get("key", ""),
            query_url=options.get("query_url", QUERY_URL),
            subscribe_url=options.get("subscribe_url", SUBSCRIBE_URL),
            guard_lock=False)  # the watch keeps the lock, from the stored last query time
        self.callback_url, self.salt = options.get("callback_url", ""), account.secrets[0]

    def subscribe(self, parcel: TrackedParcel) -> bool:
        try:
            return self.client.subscribe(
                parcel.carrier_code, parcel.tracking_number, callback_url=self.callback_url,
                salt=self.salt, phone=parcel.phone or None, to=parcel.destination or None,
            ).accepted
        except SubscriptionRejected as exc:
            # Its code only: the message may quote what we sent (the buyer's phone).
            log.warning("kuaidi100 refused the subscription of %s: code %s", parcel.label,
                        exc.code[:32])
            return False
        except Kuaidi100Error as exc:
            raise provider_error(exc) from exc

    def query(self, parcel: TrackedParcel) -> Sequence[TrackingEvent]:
        try:
            answer = self.client.query(parcel.carrier_code, parcel.tracking_number,
                                       phone=parcel.phone or None, to=parcel.destination or None)
            if answer.tracking_number != parcel.tracking_number:
                raise MalformedAnswer("wrong_number", f"answered for {answer.tracking_number}")
            return answer.events
        except NoResult:
            return ()  # no scan yet: an answer, not a failure
        except Kuaidi100Error as exc:
            raise provider_error(exc) from exc
