"""`python -m chalicelib.admin --stage <stage> migrate-secrets [--keep-table]`: once, when a
stage upgrades to the version that reads integration accounts from SSM Parameter Store.

Earlier versions kept every account (webhook sources, `courier/<provider>`, `channel/<id>`)
with its secrets as attributes of the directory table. For each such item this copies the
account to its SecureString (chalicelib/access/accounts_store.py), reads it back, and then
removes the `secrets` and `options` attributes from the item (leaving the scheme and
`moved_to`, the parameter's name). With --keep-table it copies only: run it so before the
deploy (the running version still reads the table), then without it after the deploy.

Safe to run again: an item without secrets is done. When the parameter exists already and
differs, the newer of the two wins (the item's `updated_at` against the parameter's last
write), so an account set with the new command line since is never overwritten by the table.
An item is left alone (and reported) when its name cannot be a parameter's or it changed
while being migrated. Prints names and parameter names, never a secret. Exit status 1 when
anything was left.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.access import accounts_store as accounts
from chalicelib.access import directory_store as directory
from chalicelib.access.accounts import WebhookSource
from chalicelib.core.clock import parse_iso, utcnow


def run(keep_table: bool = False) -> int:
    items = directory.legacy_accounts()
    left = 0
    for item in items:
        name = directory.account_name(item)
        try:
            outcome = migrate(item, keep_table)
        except (ValueError, KeyError, TypeError) as exc:  # not an account as we knew them
            # The type only: a validation error's text would quote the secrets.
            outcome = f"left: the item cannot be read as an account ({type(exc).__name__})"
        left += outcome.startswith("left")
        print(f"{name}: {outcome}")
    print(f"{len(items)} account(s) with secrets in the directory table; "
          f"{len(items) - left} done, {left} left")
    return 1 if left else 0


def migrate(item: dict[str, Any], keep_table: bool) -> str:
    name = directory.account_name(item)
    parameter = accounts.parameter_name(name)
    if parameter is None:
        return ("left: the name cannot be a parameter's (letters, digits, '_', '.', '-'); "
                "register it under a new name with the admin command, then delete the item")
    legacy = WebhookSource(scheme=item["scheme"], secrets=tuple(item["secrets"]),
                           options=item.get("options", {}))
    current = accounts.stored(name)
    expected = legacy
    if current is None or (current[0] != legacy and _newer(item, current[1])):
        accounts.put(name, legacy)
        copied = "copied to"
    elif current[0] == legacy:
        copied = "already in"
    else:
        expected, copied = current[0], "kept the newer account already in"
    check = accounts.stored(name)
    if check is None or check[0] != expected:
        return f"left: {parameter} does not read back as written; the table is unchanged"
    if keep_table:
        return f"{copied} {parameter}; the table still holds the secrets (--keep-table)"
    if not directory.strip_secrets(item, parameter, utcnow()):
        return f"left: changed while being migrated; {copied} {parameter}, run again"
    return f"{copied} {parameter}; secrets removed from the table"


def _newer(item: dict[str, Any], parameter_written: datetime) -> bool:
    """The table's item was written after the parameter (an old admin command since)."""
    written = item.get("updated_at")
    return bool(written) and parse_iso(str(written)) > parameter_written
