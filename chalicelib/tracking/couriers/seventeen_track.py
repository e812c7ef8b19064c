"""17TRACK API v2.2: the cross-border choice. Register, get track info, stop, retrack, and pushes.

Pure part: request bodies (at most 40 numbers each), push verification, answer parsing, the
status table, and `provider_error` (did a failed call count; which alert CS gets). Thin I/O
part: `SeventeenTrackClient`, sending through chalicelib.core.http at the documented pace
(`PACE`, 3 per second per process) with timeouts and retries with backoff. `SeventeenTrack` is
the provider (chalicelib.tracking.couriers.Provider) with our account: pushes once registered,
and can be queried.

Protocol (third-party SDKs and integrations agree; 17TRACK's own pages are not in the stored
references, so these are marked (3rd) in protocols.md):
- POST https://api.17track.net/track/v2.2/{register,gettrackinfo,stoptrack,retrack}, JSON array
  body, header `17token`. At most 40 numbers per request, 3 requests per second.
- The answer: {"code": 0, "data": {"accepted": [...], "rejected": [{number, error{code,
  message}}]}}; a request-level failure has code != 0 and data.errors[].
- Push (webhook): JSON {"event": "TRACKING_UPDATED" | "TRACKING_STOPPED", "data": {number,
  carrier, tag, track_info}}, header `sign` = hex SHA-256(raw body + "/" + security key).
- track_info.latest_status{status, sub_status}; events under
  track_info.tracking.providers[].events[] with time_utc / time_iso, description, location,
  stage and (since v2.2) sub_status.
We register with `tag` = our carrier code, so pushes say which of our couriers they concern.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from chalicelib.access.accounts import WebhookSource
from chalicelib.core.errors import ApiError
from chalicelib.core.http import Answer, Pace, Request, Unreachable, retrying, send
from chalicelib.core.signatures import loads_json, same_signature
from chalicelib.tracking.couriers import (
    ACCOUNT_ALERT,
    Mapped,
    Provider,
    ProviderError,
    PushReply,
    TrackedParcel,
    TrackingPush,
)
from chalicelib.tracking.model import ExceptionKind, ShipmentStatus, TrackingEvent

NAME = "17track"
BASE_URL = "https://api.17track.net/track/v2.2"
BATCH_LIMIT = 40
TOKEN_HEADER = "17token"
SIGN_HEADER = "sign"
# 17TRACK's documented 3 requests per second, kept per process (N warm instances may reach N
# times it; its 429s, retried with backoff, then slow them down).
PACE = Pace(key=NAME, rate=3.0, burst=3)

S, K = ShipmentStatus, ExceptionKind


def _m(status: ShipmentStatus, *kinds: ExceptionKind, customs: bool = False) -> Mapped:
    return Mapped(status, frozenset(kinds), customs)


# Every documented sub-status.
SUB_STATUSES: dict[str, Mapped] = {
    "NotFound_Other": _m(S.PENDING),
    "NotFound_InvalidCode": _m(S.PENDING, K.INVALID_TRACKING),
    "InfoReceived": _m(S.INFO_RECEIVED),
    "InTransit_PickedUp": _m(S.PICKED_UP),
    "InTransit_Other": _m(S.IN_TRANSIT),
    "InTransit_Departure": _m(S.IN_TRANSIT),
    "InTransit_Arrival": _m(S.IN_TRANSIT),
    "InTransit_CustomsProcessing": _m(S.IN_TRANSIT, customs=True),
    "InTransit_CustomsReleased": _m(S.IN_TRANSIT),
    "InTransit_CustomsRequiringInformation": _m(S.IN_TRANSIT, K.CUSTOMS_ISSUE, customs=True),
    "Expired_Other": _m(S.TRACKING_STOPPED, K.PROVIDER_STALLED),
    "AvailableForPickup_Other": _m(S.AVAILABLE_FOR_PICKUP),
    "OutForDelivery_Other": _m(S.OUT_FOR_DELIVERY),
    "DeliveryFailure_Other": _m(S.DELIVERY_FAILED, K.DELIVERY_FAILED),
    "DeliveryFailure_NoBody": _m(S.DELIVERY_FAILED, K.RECIPIENT_UNREACHABLE),
    "DeliveryFailure_Security": _m(S.DELIVERY_FAILED, K.CUSTOMS_ISSUE),
    "DeliveryFailure_Rejected": _m(S.DELIVERY_FAILED, K.REFUSAL_INITIATED),
    "DeliveryFailure_InvalidAddress": _m(S.DELIVERY_FAILED, K.ADDRESS_ISSUE),
    "Delivered_Other": _m(S.DELIVERED),
    "Exception_Other": _m(S.EXCEPTION, K.OTHER),
    "Exception_Returning": _m(S.RETURNING, K.RETURN_TO_SENDER),
    "Exception_Returned": _m(S.RETURNED, K.RETURN_TO_SENDER),
    "Exception_NoBody": _m(S.EXCEPTION, K.ADDRESS_ISSUE),  # abnormal recipient information
    "Exception_Security": _m(S.EXCEPTION, K.CUSTOMS_ISSUE),
    "Exception_Damage": _m(S.EXCEPTION, K.DAMAGED),
    "Exception_Rejected": _m(S.EXCEPTION, K.REFUSAL_INITIATED),
    "Exception_Delayed": _m(S.EXCEPTION, K.CARRIER_DELAY),
    "Exception_Lost": _m(S.EXCEPTION, K.LOST),
    "Exception_Destroyed": _m(S.EXCEPTION, K.LOST),  # gone for good, like a loss
    "Exception_Cancel": _m(S.CANCELLED),
}
# Main statuses, for an answer that names no known sub-status: read as their "_Other" case.
MAIN_TO_SUB: dict[str, str] = {
    "NotFound": "NotFound_Other", "InfoReceived": "InfoReceived", "InTransit": "InTransit_Other",
    "Expired": "Expired_Other", "AvailableForPickup": "AvailableForPickup_Other",
    "OutForDelivery": "OutForDelivery_Other", "DeliveryFailure": "DeliveryFailure_Other",
    "Delivered": "Delivered_Other", "Exception": "Exception_Other",
}
MAIN_STATUSES: dict[str, Mapped] = {main: SUB_STATUSES[sub] for main, sub in MAIN_TO_SUB.items()}
# Event `stage` (milestone) names, for events without a sub_status.
STAGES: dict[str, str] = {
    "InfoReceived": "InfoReceived", "PickedUp": "InTransit_PickedUp",
    "Departure": "InTransit_Departure", "Arrival": "InTransit_Arrival",
    "AvailableForPickup": "AvailableForPickup_Other", "OutForDelivery": "OutForDelivery_Other",
    "Delivered": "Delivered_Other", "Returning": "Exception_Returning",
    "Returned": "Exception_Returned",
}


def map_status(status: str, sub_status: str = "") -> Mapped | None:
    return SUB_STATUSES.get(sub_status) or MAIN_STATUSES.get(status)


# Errors -----------------------------------------------------------------------------------------

class SeventeenTrackError(Exception):
    retryable: ClassVar[bool] = False

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"17track {code}: {message}" if message else f"17track {code}")
        self.code = code
        self.message = message


class AuthError(SeventeenTrackError):
    """Bad or disabled key, IP not allowed (HTTP 401, codes -18010001/2/4/5)."""


class BadRequest(SeventeenTrackError):
    """The request itself was refused (codes -18010010..-18010015)."""


class QuotaExhausted(SeventeenTrackError):
    """No quota left (-18019908) or the daily limit was reached (-18019907)."""


class RateLimited(SeventeenTrackError):
    retryable = True


class ProviderUnavailable(SeventeenTrackError):
    """HTTP 5xx, the connection failed, or 17TRACK's internal error (-18010003)."""

    retryable = True


class MalformedAnswer(SeventeenTrackError):
    pass


_REQUEST_ERRORS: dict[int, type[SeventeenTrackError]] = {
    -18010001: AuthError, -18010002: AuthError, -18010004: AuthError, -18010005: AuthError,
    -18010003: ProviderUnavailable, -18019907: QuotaExhausted, -18019908: QuotaExhausted,
} | {code: BadRequest for code in range(-18010015, -18010009)}
ALREADY_REGISTERED = -18019901
NOT_REGISTERED = -18019902


def provider_error(exc: SeventeenTrackError) -> ProviderError:
    """What a failed call means for the watch (did it count against the quota?) and for CS."""
    if isinstance(exc, AuthError | QuotaExhausted):
        return ProviderError(str(exc), counted=True, alert=ACCOUNT_ALERT)
    # What a retry may fix (429, 5xx, no answer) was not served; the rest was, and counted.
    return ProviderError(str(exc), counted=not exc.retryable)


# Requests ---------------------------------------------------------------------------------------

class Registration(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    number: str
    carrier_code: str  # ours; sent as `tag` and returned in pushes
    carrier_key: int | None = None  # 17TRACK's numeric carrier; None lets 17TRACK detect it
    param: str | None = None  # e.g. phone tail or postcode for carriers that check one


def _chunks(items: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), BATCH_LIMIT):
        yield list(items[start:start + BATCH_LIMIT])


def register_bodies(registrations: Sequence[Registration]) -> list[list[dict[str, object]]]:
    bodies = []
    for chunk in _chunks(registrations):
        body: list[dict[str, object]] = []
        for item in chunk:
            entry: dict[str, object] = {"number": item.number, "tag": item.carrier_code}
            if item.carrier_key is not None:
                entry["carrier"] = item.carrier_key
            if item.param:
                entry["param"] = item.param
            body.append(entry)
        bodies.append(body)
    return bodies


def number_bodies(numbers: Sequence[str]) -> list[list[dict[str, object]]]:
    return [[{"number": number} for number in chunk] for chunk in _chunks(numbers)]


# Pushes -----------------------------------------------------------------------------------------

def sign(raw: bytes, key: str) -> str:
    return hashlib.sha256(raw + b"/" + key.encode("utf-8")).hexdigest()


def verify_push(raw: bytes, signature: str | None, key: str) -> bool:
    """header `sign` == hex SHA-256(raw body + "/" + key), over the bytes as received."""
    if not key or not signature:
        return False
    return same_signature(sign(raw, key), signature.strip().lower())


class TrackInfo(BaseModel):
    """One number's state as 17TRACK reports it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: str
    carrier_code: str
    carrier_key: int | None = None
    status: str = ""
    sub_status: str = ""
    events: tuple[TrackingEvent, ...] = ()
    skipped: int = 0


class PushResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str  # TRACKING_UPDATED | TRACKING_STOPPED
    info: TrackInfo

    def to_tracking_push(self) -> TrackingPush:
        stopped = self.event == "TRACKING_STOPPED"
        monitoring: Literal["active", "finished", "aborted"] = "active"
        if stopped:
            finished = map_status(self.info.status, self.info.sub_status)
            done = finished is not None and finished.status in (S.DELIVERED, S.RETURNED)
            monitoring = "finished" if done else "aborted"
        return TrackingPush(provider=NAME, carrier_code=self.info.carrier_code,
                            tracking_number=self.info.number, events=self.info.events,
                            monitoring=monitoring, message=self.event,
                            skipped=self.info.skipped)


def parse_push(raw: bytes) -> PushResult:
    """Read a (verified) push. Raises ValueError when it is not the documented JSON."""
    try:
        body = loads_json(raw)
    except ValueError as exc:
        raise ValueError(f"push is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ValueError("push must be an object with a data object")
    return PushResult(event=_text(body.get("event")), info=parse_track_info(body["data"]))


def read_push(headers: Mapping[str, str], raw: bytes, secret: str) -> TrackingPush:
    """`SeventeenTrack.read_push`: verify the signature over the raw bytes, then normalise."""
    signature = {name.lower(): value for name, value in headers.items()}.get(SIGN_HEADER)
    if not signature:
        raise ApiError(401, "missing_signature", "push has no sign header")
    if not verify_push(raw, signature, secret):
        raise ApiError(401, "invalid_signature", "push signature does not verify")
    try:
        push = parse_push(raw)
    except ValueError as exc:
        raise ApiError(400, "malformed_push", str(exc)) from None
    if not push.info.number:
        raise ApiError(400, "malformed_push", "push names no tracking number")
    return push.to_tracking_push()


def push_reply() -> PushReply:
    return PushReply(status=200, content_type="application/json", body="{}")


# Answers ----------------------------------------------------------------------------------------

def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def _obj(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    for name in ("time_utc", "time_iso"):
        text = _text(event.get(name))
        if not text:
            continue
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        # A time without a zone is taken as UTC: 17TRACK gives one when the carrier gave none.
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _event_code(event: Mapping[str, Any], fallback: str) -> str:
    sub = _text(event.get("sub_status"))
    if sub in SUB_STATUSES:
        return sub
    return STAGES.get(_text(event.get("stage")), fallback)


def _raw_events(track_info: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    providers = _obj(track_info.get("tracking")).get("providers")
    found: list[Mapping[str, Any]] = []
    for provider in providers if isinstance(providers, list) else []:
        events = _obj(provider).get("events")
        if isinstance(events, list):
            found.extend(e for e in events if isinstance(e, dict))
    return found


def parse_track_info(item: Mapping[str, Any], carrier_code: str = "") -> TrackInfo:
    """An accepted gettrackinfo item or a push's data -> our events (newest line first)."""
    number = _text(item.get("number"))
    carrier = _text(item.get("tag")) or carrier_code
    key = item.get("carrier")
    track_info = _obj(item.get("track_info"))
    latest = _obj(track_info.get("latest_status"))
    status, sub = _text(latest.get("status")), _text(latest.get("sub_status"))
    latest_code = sub if sub in SUB_STATUSES else MAIN_TO_SUB.get(status, "InTransit_Other")
    raw = sorted(_raw_events(track_info), key=lambda e: _event_time(e) or datetime.min.replace(
        tzinfo=UTC), reverse=True)
    events, skipped = [], 0
    for index, line in enumerate(raw):
        event = _event(line, number, carrier or _text(key),
                       fallback=latest_code if index == 0 else "InTransit_Other")
        if event is None:
            skipped += 1
        else:
            events.append(event)
    return TrackInfo(number=number, carrier_code=carrier or _text(key),
                     carrier_key=key if isinstance(key, int) else None, status=status,
                     sub_status=sub, events=tuple(events), skipped=skipped)


def _event(line: Mapping[str, Any], number: str, carrier_code: str,
           fallback: str) -> TrackingEvent | None:
    at = _event_time(line)
    if at is None:
        return None
    code = _event_code(line, fallback)
    mapped = SUB_STATUSES[code]
    return TrackingEvent(provider=NAME, carrier_code=carrier_code, tracking_number=number,
                         occurred_at=at, status=mapped.status,
                         exceptions=tuple(mapped.exceptions), raw_code=code,
                         description=_text(line.get("description")),
                         location=_text(line.get("location")), customs=mapped.customs)


class Rejection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    number: str
    code: int
    message: str = ""

    @property
    def already_registered(self) -> bool:
        return self.code == ALREADY_REGISTERED

    @property
    def not_registered(self) -> bool:
        return self.code == NOT_REGISTERED


class BatchAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    accepted: tuple[dict[str, Any], ...] = ()
    rejected: tuple[Rejection, ...] = ()


def parse_batch_answer(answer: Mapping[str, Any]) -> BatchAnswer:
    """Item-level rejections are data; a request-level failure raises its typed error."""
    data = _obj(answer.get("data"))
    code = answer.get("code")
    if code != 0:
        errors = data.get("errors")
        first = _obj(errors[0]) if isinstance(errors, list) and errors else {}
        error_code = first.get("code", code)
        error = _REQUEST_ERRORS.get(error_code, SeventeenTrackError) if isinstance(
            error_code, int) else SeventeenTrackError
        raise error(str(error_code), _text(first.get("message")))
    accepted = tuple(a for a in data.get("accepted") or [] if isinstance(a, dict))
    rejected = tuple(_rejection(r) for r in data.get("rejected") or [] if isinstance(r, dict))
    return BatchAnswer(accepted=accepted, rejected=rejected)


def _rejection(item: Mapping[str, Any]) -> Rejection:
    error = _obj(item.get("error"))
    code = error.get("code", item.get("error_code", 0))
    message = error.get("message", item.get("error_message", ""))
    return Rejection(number=_text(item.get("number")), code=int(code) if code else 0,
                     message=_text(message))


def _merge(answers: Sequence[BatchAnswer]) -> BatchAnswer:
    return BatchAnswer(accepted=tuple(a for ans in answers for a in ans.accepted),
                       rejected=tuple(r for ans in answers for r in ans.rejected))


def answer_body(answer: Answer) -> Mapping[str, Any]:
    """The JSON object an HTTP answer carries; its status or shape as the typed error."""
    if answer.status == 429:
        raise RateLimited("http_429", answer.text())
    if answer.status >= 500:
        raise ProviderUnavailable(f"http_{answer.status}", answer.text())
    if answer.status in (401, 403):
        raise AuthError(f"http_{answer.status}", answer.text())
    if answer.status >= 400:
        raise BadRequest(f"http_{answer.status}", answer.text())
    try:
        body = answer.json()
    except ValueError:
        raise MalformedAnswer("not_json", answer.text()) from None
    if not isinstance(body, dict):
        raise MalformedAnswer("not_object", answer.text())
    return body


def _retry_now(exc: Exception) -> bool:
    return isinstance(exc, SeventeenTrackError) and exc.retryable


# I/O --------------------------------------------------------------------------------------------

class SeventeenTrackClient:
    """Thin I/O through chalicelib.core.http (the pace lives there, per process). Every call is
    idempotent at 17TRACK (a repeat registration is rejected as "already registered"), so
    timeouts are retried like 5xx and connection errors."""

    def __init__(self, token: str, *, base_url: str = BASE_URL,
                 timeout: tuple[float, float] = (3.05, 15.0), retries: int = 2,
                 backoff_seconds: float = 0.5, pace: Pace = PACE,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff_seconds
        self.pace = pace
        self._sleep = sleep

    def register(self, registrations: Sequence[Registration]) -> BatchAnswer:
        return self._batched("register", register_bodies(registrations))

    def get_track_info(self, numbers: Sequence[str],
                       carrier_codes: Mapping[str, str] | None = None
                       ) -> tuple[tuple[TrackInfo, ...], tuple[Rejection, ...]]:
        answer = self._batched("gettrackinfo", number_bodies(numbers))
        codes = carrier_codes or {}
        infos = tuple(parse_track_info(item, codes.get(_text(item.get("number")), ""))
                      for item in answer.accepted)
        return infos, answer.rejected

    def stop_track(self, numbers: Sequence[str]) -> BatchAnswer:
        return self._batched("stoptrack", number_bodies(numbers))

    def retrack(self, numbers: Sequence[str]) -> BatchAnswer:
        return self._batched("retrack", number_bodies(numbers))

    def _batched(self, action: str, bodies: Sequence[list[dict[str, object]]]) -> BatchAnswer:
        url = f"{self.base_url}/{action}"
        return _merge([self._call(url, body) for body in bodies])

    def _call(self, url: str, body: list[dict[str, object]]) -> BatchAnswer:
        request = Request(url=url, json_body=body, headers={TOKEN_HEADER: self.token},
                          pace=self.pace, timeout=self.timeout)
        return retrying(lambda: parse_batch_answer(answer_body(_send(request))),
                        attempts=self.retries + 1, backoff_seconds=self.backoff,
                        retry_if=_retry_now, sleep=self._sleep)


def _send(request: Request) -> Answer:
    try:
        return send(request)
    except Unreachable as exc:  # idempotent calls: whether it arrived does not matter
        raise ProviderUnavailable(exc.kind) from None


class SeventeenTrack(Provider):
    """17TRACK with our account (options: token; base_url for a stand-in). Registered once, it
    pushes to the webhook set in its console; gettrackinfo answers a query."""

    name = NAME
    read_push = staticmethod(read_push)
    push_reply = staticmethod(push_reply)

    def __init__(self, account: WebhookSource) -> None:
        super().__init__(account)
        self.client = SeventeenTrackClient(account.options.get("token", ""),
                                           base_url=account.options.get("base_url", BASE_URL))

    def subscribe(self, parcel: TrackedParcel) -> bool:
        try:
            answer = self.client.register([Registration(
                number=parcel.tracking_number, carrier_code=parcel.carrier_code)])
        except SeventeenTrackError as exc:
            raise provider_error(exc) from exc
        return bool(answer.accepted) or any(r.already_registered for r in answer.rejected)

    def query(self, parcel: TrackedParcel) -> Sequence[TrackingEvent]:
        try:
            infos, _rejected = self.client.get_track_info(
                [parcel.tracking_number], {parcel.tracking_number: parcel.carrier_code})
        except SeventeenTrackError as exc:
            raise provider_error(exc) from exc
        return tuple(event for info in infos for event in info.events)
