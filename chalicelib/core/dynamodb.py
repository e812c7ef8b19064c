"""DynamoDB access shared by the table modules: item (de)serialisation and transactions.

Low-level client and plain dicts: cheaper to import than boto3.resource, and the IAM policy
stays explicit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core import aws
from chalicelib.core.errors import StorageUnavailable

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


__all__ = [
    "Action",
    "Item",
    "StorageUnavailable",
    "TransactionConflict",
    "from_attrs",
    "is_condition_failure",
    "to_attrs",
    "transact",
]
