"""DynamoDB access shared by the table modules: item (de)serialisation and transactions.

Low-level client and plain dicts: cheaper to import than boto3.resource, and the IAM policy
stays explicit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from chalicelib.core import aws
from chalicelib.core.errors import ApiError, Busy, StorageThrottled, StorageUnavailable

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

Item = dict[str, Any]


def to_attrs(values: Mapping[str, Any]) -> dict[str, Any]:
    """Python values (JSON-compatible, numbers as int/Decimal) to DynamoDB attribute values."""
    return {key: _serializer.serialize(_plain(value)) for key, value in values.items()}


def from_attrs(attrs: Mapping[str, Any]) -> Item:
    return {key: _native(_deserializer.deserialize(value)) for key, value in attrs.items()}


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


def storage_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean our storage, not the caller, failed."""
    return (ClientError, BotoCoreError)


# Whose fault a failed call is ----------------------------------------------------------------

# Error codes of the operation, and the codes TransactWriteItems gives per cancelled action.
_THROTTLED = frozenset({"ProvisionedThroughputExceededException", "ThrottlingException",
                        "RequestLimitExceeded", "ProvisionedThroughputExceeded",
                        "ThrottlingError"})
_UNAVAILABLE = frozenset({"InternalServerError", "InternalFailure", "ServiceUnavailable",
                          "ServiceUnavailableException", "InternalServerErrorException"})
_CONFLICT = frozenset({"TransactionConflictException", "TransactionConflict",
                       "TransactionInProgressException"})
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
    if codes & _THROTTLED:
        return StorageThrottled()
    if codes & _UNAVAILABLE or status >= 500:
        return StorageUnavailable()
    if codes & _CONFLICT:
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
    "Action",
    "Item",
    "StorageUnavailable",
    "TransactionConflict",
    "classify",
    "from_attrs",
    "is_condition_failure",
    "to_attrs",
    "transact",
]
