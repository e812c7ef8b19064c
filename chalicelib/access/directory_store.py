"""The directory table: who may call us. API keys by hash, and each principal's list of keys.

  pk = KEY#<sha256 of key>            sk = KEY      the principal a key stands for
  pk = PRINCIPAL#<kind>#<id>          sk = KEY#<key id>   lets an admin list and revoke keys
  pk = SOURCE#<name>                  sk = SOURCE   a webhook source's scheme and secrets
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.access.accounts import WebhookSource
from chalicelib.access.keys import Principal, Role
from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import Action, from_attrs, to_attrs, transact
from chalicelib.core.settings import settings


def principal_for(key_hash: str) -> Principal | None:
    answer = aws.client("dynamodb").get_item(
        TableName=settings().directory_table, Key=to_attrs({"pk": f"KEY#{key_hash}", "sk": "KEY"})
    )
    item = from_attrs(answer.get("Item", {}))
    if not item or item.get("status") != "active":
        return None
    return Principal(kind=item["kind"], id=item["principal_id"], role=Role(item["role"]),
                     key_id=item["key_id"])


def add_key(key_hash: str, kind: str, principal_id: str, role: Role, now: datetime) -> str:
    key_id = key_hash[:12]
    table = settings().directory_table
    transact([
        Action("key", {"Put": {"TableName": table, "Item": to_attrs({
            "pk": f"KEY#{key_hash}", "sk": "KEY", "kind": kind, "principal_id": principal_id,
            "role": role, "key_id": key_id, "status": "active", "created_at": iso(now),
        }), "ConditionExpression": "attribute_not_exists(pk)"}}),
        Action("index", {"Put": {"TableName": table, "Item": to_attrs({
            "pk": f"PRINCIPAL#{kind}#{principal_id}", "sk": f"KEY#{key_id}",
            "key_hash": key_hash, "role": role, "created_at": iso(now), "status": "active",
        })}}),
    ])
    return key_id


def keys_of(kind: str, principal_id: str) -> list[dict[str, Any]]:
    answer = aws.client("dynamodb").query(
        TableName=settings().directory_table,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :k)",
        ExpressionAttributeValues=to_attrs({":pk": f"PRINCIPAL#{kind}#{principal_id}",
                                            ":k": "KEY#"}),
    )
    return [from_attrs(item) for item in answer.get("Items", [])]


def revoke(kind: str, principal_id: str, key_id: str, now: datetime) -> bool:
    entry = next((k for k in keys_of(kind, principal_id) if k["sk"] == f"KEY#{key_id}"), None)
    if entry is None:
        return False
    table = settings().directory_table
    values = to_attrs({":r": "revoked", ":t": iso(now)})
    transact([
        Action(name, {"Update": {
            "TableName": table, "Key": to_attrs(key),
            "UpdateExpression": "SET #s = :r, revoked_at = :t",
            "ExpressionAttributeNames": {"#s": "status"}, "ExpressionAttributeValues": values,
        }})
        for name, key in (("key", {"pk": f"KEY#{entry['key_hash']}", "sk": "KEY"}),
                          ("index", {"pk": entry["pk"], "sk": entry["sk"]}))
    ])
    return True


def webhook_source(name: str) -> WebhookSource | None:
    answer = aws.client("dynamodb").get_item(
        TableName=settings().directory_table, Key=to_attrs({"pk": f"SOURCE#{name}", "sk": "SOURCE"})
    )
    item = from_attrs(answer.get("Item", {}))
    if not item:
        return None
    return WebhookSource(scheme=item["scheme"], secrets=tuple(item["secrets"]),
                         options=item.get("options", {}))


def put_webhook_source(name: str, source: WebhookSource, now: datetime) -> None:
    aws.client("dynamodb").put_item(TableName=settings().directory_table, Item=to_attrs({
        "pk": f"SOURCE#{name}", "sk": "SOURCE", "scheme": source.scheme,
        "secrets": list(source.secrets), "options": source.options, "updated_at": iso(now),
    }))
