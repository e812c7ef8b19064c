"""Console sessions in the directory table, by the hash of their token (the token itself is
only in the browser's cookie):

  pk = SESSION#<sha256 of token>   sk = SESSION   who, role, CSRF token, key hash, expiry

DynamoDB's TTL removes an ended session's item (expires_at, epoch seconds) within days; until
then `get` refuses it by its expiry. Sign-out deletes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.access.sessions import Session
from chalicelib.core import aws
from chalicelib.core.clock import epoch_seconds, iso, parse_iso
from chalicelib.core.dynamodb import from_attrs, to_attrs
from chalicelib.core.settings import settings


def _key(token_hash: str) -> dict[str, Any]:
    return to_attrs({"pk": f"SESSION#{token_hash}", "sk": "SESSION"})


def put(session: Session) -> None:
    aws.client("dynamodb").put_item(TableName=settings().directory_table, Item=to_attrs({
        "pk": f"SESSION#{session.token_hash}", "sk": "SESSION",
        "key_hash": session.key_hash, "staff_id": session.staff_id, "role": session.role.value,
        "csrf": session.csrf, "created_at": iso(session.created_at),
        "ends_at": iso(session.expires_at), "expires_at": epoch_seconds(session.expires_at),
    }), ConditionExpression="attribute_not_exists(pk)")


def get(token_hash: str, now: datetime) -> Session | None:
    """The live session with this token hash; None for an unknown or ended one."""
    answer = aws.client("dynamodb").get_item(TableName=settings().directory_table,
                                             Key=_key(token_hash), ConsistentRead=True)
    item = from_attrs(answer.get("Item", {}))
    if not item:
        return None
    session = Session(token_hash=token_hash, key_hash=item["key_hash"],
                      staff_id=item["staff_id"], role=item["role"], csrf=item["csrf"],
                      created_at=parse_iso(item["created_at"]),
                      expires_at=parse_iso(item["ends_at"]))
    return session if session.live(now) else None


def end(token_hash: str) -> None:
    aws.client("dynamodb").delete_item(TableName=settings().directory_table,
                                       Key=_key(token_hash))
