"""The directory table: who may call us. API keys by hash, and each principal's list of keys.

  pk = KEY#<sha256 of key>            sk = KEY      the principal a key stands for
  pk = PRINCIPAL#<kind>#<id>          sk = KEY#<key id>   lets an admin list and revoke keys
  pk = SOURCE#<name>                  sk = SOURCE   an integration account as earlier versions
                                                    kept it, secrets included; `migrate-secrets`
                                                    moves them to SSM (accounts_store.py) and
                                                    leaves the scheme and where they went

Encrypted at rest and readable only by this app's role. Key lookups are cached per process for
KEY_CACHE_SECONDS (a revocation takes effect within that), so the steady state costs no extra
call; unknown keys are cached too, so a flood of bad keys cannot become a flood of reads.
Integration accounts (webhook sources, courier providers, CS channels) and their secrets live
in SSM Parameter Store, not here (chalicelib/access/accounts_store.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from chalicelib.access.keys import Principal, Role, hash_key, key_from_headers
from chalicelib.core import aws
from chalicelib.core.clock import iso
from chalicelib.core.dynamodb import Action, from_attrs, to_attrs, transact
from chalicelib.core.errors import ApiError
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


# Accounts as earlier versions kept them (for `migrate-secrets`) ------------------------------

def legacy_accounts() -> list[dict[str, Any]]:
    """Every account item that still holds secrets: pk SOURCE#<name>, scheme, secrets,
    options, updated_at."""
    found: list[dict[str, Any]] = []
    pages = aws.client("dynamodb").get_paginator("scan").paginate(
        TableName=settings().directory_table,
        FilterExpression="begins_with(pk, :p) AND sk = :s AND attribute_exists(secrets)",
        ExpressionAttributeValues=to_attrs({":p": "SOURCE#", ":s": "SOURCE"}),
        ConsistentRead=True)
    for page in pages:
        found.extend(from_attrs(item) for item in page.get("Items", []))
    return found


def account_name(item: Mapping[str, Any]) -> str:
    return str(item["pk"]).removeprefix("SOURCE#")


def strip_secrets(item: Mapping[str, Any], moved_to: str, now: datetime) -> bool:
    """Remove the secret attributes of an account item read by `legacy_accounts`, noting where
    they went; False (nothing changed) if the item changed since it was read."""
    try:
        aws.client("dynamodb").update_item(
            TableName=settings().directory_table,
            Key=to_attrs({"pk": item["pk"], "sk": "SOURCE"}),
            UpdateExpression="REMOVE secrets, options SET moved_to = :m, moved_at = :t",
            ConditionExpression="secrets = :s",
            ExpressionAttributeValues=to_attrs({":m": moved_to, ":t": iso(now),
                                                ":s": item["secrets"]}))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


# Cached lookups ------------------------------------------------------------------------------

_principals: dict[str, tuple[float, Principal | None]] = {}


def authenticate(headers: Mapping[str, str]) -> Principal:
    """The principal the request's key stands for; 401 when it has none or an unknown one."""
    key = key_from_headers(headers)
    if not key:
        raise ApiError(401, "missing_credentials",
                       "send your API key as 'Authorization: Bearer <key>'")
    principal = known_principal(hash_key(key))
    if principal is None:
        raise ApiError(401, "invalid_credentials", "unknown or revoked API key")
    return principal


def known_principal(key_hash: str) -> Principal | None:
    """The principal of an active key by its hash, through the per-process cache (a console
    session asks on every page: a revoked key's session ends as its API calls do)."""
    cached = _principals.get(key_hash)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    principal = principal_for(key_hash)
    _principals[key_hash] = (time.monotonic() + settings().key_cache_seconds, principal)
    return principal


def forget() -> None:
    """Drop this process's cached keys (tests, and after an admin change)."""
    _principals.clear()
