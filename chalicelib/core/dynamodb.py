"""DynamoDB access shared by the table modules: item (de)serialisation and transactions.

Low-level client and plain dicts: cheaper to import than boto3.resource, and the IAM policy
stays explicit. Attribute values are boto3's TypeSerializer / TypeDeserializer conversions
(tests/unit/test_dynamodb_attrs.py holds them to it), the common types done here: importing
boto3 (with s3transfer, concurrent.futures and multiprocessing) would cost a webhook's cold
start about 10 ms for nothing else. Binary values and sets, which boto3 represents its own way
(its `Binary`), are boto3's, loaded for them only.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any, Literal, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from chalicelib.core import aws
from chalicelib.core.errors import ApiError, Busy, StorageThrottled, StorageUnavailable

Item = dict[str, Any]
T = TypeVar("T")

# DynamoDB's numbers (boto3.dynamodb.types.DYNAMODB_CONTEXT): 38 significant digits, and a
# number that would lose digits, overflow or underflow raises rather than being rounded.
_NUMBERS = Context(Emin=-128, Emax=126, prec=38,
                   traps=[Clamped, Overflow, Inexact, Rounded, Underflow])


def to_attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Python values (JSON-compatible, numbers as int/Decimal) to DynamoDB attribute values."""
    return {key: _attr(_plain(value)) for key, value in values.items()}


def from_attrs(attrs: Mapping[str, Any]) -> Item:
    return {key: _native(_value(value)) for key, value in attrs.items()}


def _attr(value: Any) -> dict[str, Any]:
    """boto3's `TypeSerializer().serialize(value)`, in its order of tests."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        number = str(_NUMBERS.create_decimal(value))
        if number in ("Infinity", "NaN"):
            raise TypeError("Infinity and NaN not supported")
        return {"N": number}
    if isinstance(value, str):
        return {"S": value}
    if not isinstance(value, AbstractSet | bytes | bytearray):
        if isinstance(value, Mapping):
            return {"M": {key: _attr(item) for key, item in value.items()}}
        if isinstance(value, list | tuple):
            return {"L": [_attr(item) for item in value]}
    # Binary values, sets, and what boto3 refuses (a float, an unsupported type): boto3's.
    from boto3.dynamodb.types import TypeSerializer

    return dict(TypeSerializer().serialize(value))


def _value(attr: Mapping[str, Any]) -> Any:
    """boto3's `TypeDeserializer().deserialize(attr)`: numbers as Decimal."""
    kind = next(iter(attr), None)
    if kind == "S":
        return attr["S"]
    if kind == "N":
        return _NUMBERS.create_decimal(attr["N"])
    if kind == "M":
        return {key: _value(item) for key, item in attr["M"].items()}
    if kind == "L":
        return [_value(item) for item in attr["L"]]
    if kind == "BOOL":
        return attr["BOOL"]
    if kind == "NULL":
        return None
    # Binary values (boto3's Binary), sets, and what boto3 refuses: boto3's.
    from boto3.dynamodb.types import TypeDeserializer

    return TypeDeserializer().deserialize(attr)


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _native(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; our documents use int for whole numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, dict):
        return {k: _native(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_native(v) for v in value]
    return value


def is_condition_failure(error: ClientError) -> bool:
    return bool(error.response["Error"]["Code"] == "ConditionalCheckFailedException")


@dataclass(frozen=True)
class Action:
    """One TransactWriteItems entry, labelled so a cancellation can say which part failed."""

    label: str
    item: dict[str, Any]


class TransactionConflict(Exception):
    def __init__(self, failed: frozenset[str]) -> None:
        super().__init__(f"condition failed for: {', '.join(sorted(failed))}")
        self.failed = failed


def transact(actions: Sequence[Action]) -> None:
    """Write all or nothing; TransactionConflict names the actions whose condition failed."""
    try:
        aws.client("dynamodb").transact_write_items(
            TransactItems=[action.item for action in actions]
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        reasons = exc.response.get("CancellationReasons") or []
        failed = frozenset(
            action.label
            for action, reason in zip(actions, reasons, strict=False)
            if reason.get("Code") == "ConditionalCheckFailed"
        )
        if not failed:
            raise  # a conflicting transaction or throttling: the caller's retry handles it
        raise TransactionConflict(failed) from exc


# Contention -------------------------------------------------------------------------------------

# Attempts of a contended write (the first included) and the back-off between them: a pause
# drawn from [0, base * 2^n] (full jitter), so writers that collided do not collide again in
# step. Four attempts wait at most 25 + 50 + 100 ms: well within any request's time.
ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 0.025
BACKOFF_CAP_SECONDS = 0.4


def contention(error: BaseException) -> Literal["conflict", "throttled"] | None:
    """What another attempt of the same write may cure and botocore does not retry by itself:
    "conflict", a transaction cancelled because another transaction held one of its items
    (cancellation reason TransactionConflict) or a single-item write rejected for the same
    reason (TransactionConflictException); "throttled", a transaction cancelled for throttling
    (a cancellation, not a ProvisionedThroughputExceededException, so botocore does not back
    off and retry it). None for anything else (a condition that failed, a value refused, a
    plain throttle or fault botocore has retried already)."""
    if not isinstance(error, ClientError):
        return None
    code = str(error.response.get("Error", {}).get("Code", ""))
    if code == "TransactionCanceledException":
        reasons = {str(r.get("Code")) for r in error.response.get("CancellationReasons") or []}
        if reasons & {"ConditionalCheckFailed", "ValidationError"}:
            return None  # an answer, not a collision: TransactionConflict or the 4xx
        if reasons & aws.CONFLICTING:
            return "conflict"
        if reasons & aws.THROTTLED:
            return "throttled"
        return None
    return "conflict" if code in aws.CONFLICTING else None


def backoff(attempt: int) -> float:
    """The pause before attempt `attempt + 1` (0-based: after the first failed attempt, 0)."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** attempt))


def ambiguous(error: BaseException) -> bool:
    """The request failed, yet DynamoDB may have carried it out: its answer was lost (a read
    timeout, a connection closed before the answer) or DynamoDB failed while handling it (a
    5xx). Not a request that never left (no connection) and not throttling (refused whole)."""
    if isinstance(error, ReadTimeoutError | ConnectionClosedError):
        return True
    if not isinstance(error, ClientError):
        return False
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return (status >= 500 or code in aws.UNAVAILABLE) and code not in aws.THROTTLED


def retrying(attempt: Callable[[], T], what: str, *, reread: bool = True,
             attempts: int = ATTEMPTS, sleep: Callable[[float], None] = time.sleep) -> T:
    """`attempt()`, run again after a jittered exponential pause while it fails for contention:
    a transaction DynamoDB cancelled for a conflict or for throttling (`contention`) and, when
    `reread` (the attempt reads what it writes, then writes guarded by what it read), a
    condition that failed (`TransactionConflict`: someone wrote in between; read again and
    decide again). The one retry loop of every contended write: the warehouse steps, claims,
    amendments, the order worker, cases, parcels, writebacks.

    A write whose answer was lost (`ambiguous`: a timeout after DynamoDB committed it, once
    botocore's own retries are spent) gets one more attempt too, when `reread`: that attempt's
    read finds the write done or not, so the caller is answered what happened (each caller's
    `attempt` recognises its own write: the version and instant it wrote) rather than told to
    retry something already done.

    Gives up after `attempts`, or sooner when the request's deadline (`aws.deadline`) leaves no
    time for another: conflicts as `Busy(what)` (503 `busy` with Retry-After; an event handler
    raises it and its record is retried), anything else as DynamoDB or botocore said it (503
    `storage_throttled` / `storage_unavailable`). Anything else is raised at once: botocore
    has retried throttling, service errors and timeouts already, and a caller's mistake does
    not improve."""
    settled = False
    for n in range(attempts):
        try:
            return attempt()
        except TransactionConflict as exc:
            if not reread:
                raise
            failure: Exception = exc
            kind = "conflict"
        except (ClientError, BotoCoreError) as exc:
            found = contention(exc)
            if found is not None:
                kind = found
            elif reread and not settled and ambiguous(exc):
                settled, kind = True, "ambiguous"  # once: did it land?
            else:
                raise
            failure = exc
        pause = backoff(n)
        left = aws.remaining()
        if n + 1 == attempts or (left is not None and left < pause + aws.attempt_seconds()):
            if kind == "conflict":
                raise Busy(what) from failure
            raise failure
        sleep(pause)
    raise AssertionError("unreachable: the last attempt raises or returns")


def storage_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean our storage, not the caller, failed."""
    return (ClientError, BotoCoreError)


# DynamoDB's limits (Service, account and table quotas): an item, a key, a transaction.
MAX_ITEM_BYTES = 400 * 1024
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
MAX_TRANSACTION_ITEMS = 100


def is_validation_error(error: BaseException) -> bool:
    """DynamoDB refused the request as written (an item or key too large, a bad value; in a
    transaction, a cancellation for a ValidationError): no retry will ever succeed, unlike
    throttling, a service error or a conflicting transaction."""
    if not isinstance(error, ClientError):
        return False
    code = error.response.get("Error", {}).get("Code")
    if code == "TransactionCanceledException":
        reasons = error.response.get("CancellationReasons") or []
        return any(reason.get("Code") == "ValidationError" for reason in reasons)
    return bool(code == "ValidationException")


def item_size(attrs: Mapping[str, Any]) -> int:
    """An item's size as DynamoDB counts it, from its attribute values (`to_attrs`): names and
    strings in UTF-8 bytes, a number about one byte per two digits, 3 bytes per list or map and
    1 per element. Numbers are rounded up, so the figure is never below DynamoDB's."""
    return sum(_utf8_size(name) + _value_size(value) for name, value in attrs.items())


def plain_size(values: Mapping[str, Any]) -> int:
    """`item_size` of the item `to_attrs(values)` would make, without making it (cheaper: for
    a check on a request's path)."""
    return sum(_utf8_size(name) + _plain_size(value) for name, value in values.items())


def _plain_size(value: Any) -> int:
    if isinstance(value, str):
        return _utf8_size(value)
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, int | float | Decimal):
        return len(str(value)) // 2 + 2
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, Mapping):
        return 3 + sum(1 + _utf8_size(k) + _plain_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(1 + _plain_size(v) for v in value)
    if isinstance(value, set | frozenset):
        return sum(_plain_size(v) for v in value)
    raise ValueError(f"cannot size a {type(value).__name__}")


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _value_size(value: Mapping[str, Any]) -> int:
    (kind, data), = value.items()
    if kind == "S":
        return _utf8_size(data)
    if kind == "N":
        return len(data) // 2 + 2
    if kind == "B":
        return len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + _utf8_size(k) + _value_size(v) for k, v in data.items())
    if kind == "SS":
        return sum(_utf8_size(v) for v in data)
    if kind == "NS":
        return sum(len(v) // 2 + 2 for v in data)
    if kind == "BS":
        return sum(len(v) for v in data)
    raise ValueError(f"unknown attribute type {kind!r}")


def too_large(actions: Sequence[Action]) -> list[str]:
    """The labels of the puts that DynamoDB would refuse for their size: an item over
    MAX_ITEM_BYTES or a key (`pk`, `sk`) over its limit. Checked before writing, so a refusal
    is decided here rather than met as a ValidationException (which the local endpoint does
    not even apply atomically)."""
    found = []
    for action in actions:
        item = action.item.get("Put", {}).get("Item")
        if item is None:
            continue
        key_sizes = (_value_size(item["pk"]) if "pk" in item else 0,
                     _value_size(item["sk"]) if "sk" in item else 0)
        if (item_size(item) > MAX_ITEM_BYTES or key_sizes[0] > MAX_PARTITION_KEY_BYTES
                or key_sizes[1] > MAX_SORT_KEY_BYTES):
            found.append(action.label)
    return found


# Whose fault a failed call is ----------------------------------------------------------------

# What DynamoDB says when the values, not our request, are what it cannot take: a key or an
# item too large, an empty key or map key, nesting or a number beyond its limits. (Compiled
# on first use: a cold start answering a webhook should not pay for them.)
_TOO_LARGE = r"(?i)item size|item collection size|ItemCollectionSizeLimit"
_CALLERS_DATA = (r"(?i)size of hashkey|size of all range keys|size has exceeded|size limit|"
                 r"empty string|empty attribute name|nesting levels|number overflow|"
                 r"number underflow|significant digits|provided starting key is invalid")


def classify(exc: BaseException) -> ApiError | None:
    """What a failed storage call means for the caller, or None when it is our fault (a bug:
    a malformed expression, a missing table, no permission), which the edge answers 500.

    Throttling: 503 `storage_throttled`; DynamoDB's own failure or an unreachable endpoint:
    503 `storage_unavailable` (both with retry_after, nothing was written); transactions
    colliding: 503 `busy`; a value DynamoDB cannot store: 413 `payload_too_large` (an item
    too large) or 400 `invalid_request`. Input rules should refuse such values first; this is
    the net for the ones they miss, so a caller's data is never our 500."""
    if isinstance(exc, HTTPClientError | BotoConnectionError):
        return StorageUnavailable()
    if not isinstance(exc, ClientError):
        return None
    error = exc.response.get("Error", {})
    codes = {str(error.get("Code", ""))}
    messages = [str(error.get("Message", ""))]
    if "TransactionCanceledException" in codes:
        reasons = [r for r in exc.response.get("CancellationReasons") or []
                   if r.get("Code") not in (None, "None", "ConditionalCheckFailed")]
        codes = {str(r.get("Code", "")) for r in reasons}
        messages = [f"{r.get('Code', '')}: {r.get('Message', '')}" for r in reasons]
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if codes & aws.THROTTLED:
        return StorageThrottled()
    if codes & aws.UNAVAILABLE or status >= 500:
        return StorageUnavailable()
    if codes & aws.CONFLICTING:
        return Busy("item")
    if codes & {"ValidationException", "ValidationError", "ItemCollectionSizeLimitExceeded",
                "ItemCollectionSizeLimitExceededException"}:
        said = " ".join(messages)
        if re.search(_TOO_LARGE, said) or codes & {"ItemCollectionSizeLimitExceeded",
                                               "ItemCollectionSizeLimitExceededException"}:
            return ApiError(413, "payload_too_large",
                            "what you sent makes a record larger than we can store")
        if re.search(_CALLERS_DATA, said):
            return ApiError(400, "invalid_request",
                            "a value you sent is one our storage cannot take (too long, empty "
                            "or too deeply nested)")
    return None


__all__ = [
    "ATTEMPTS",
    "Action",
    "Item",
    "StorageUnavailable",
    "TransactionConflict",
    "ambiguous",
    "classify",
    "contention",
    "from_attrs",
    "is_condition_failure",
    "retrying",
    "to_attrs",
    "transact",
]
