"""Administrators' command line: API keys, webhook sources, courier accounts, CS channels and
shop credentials (the accounts and the shops' credentials as SecureStrings in SSM Parameter
Store, /order-backbone/<stage>/secrets/... and /order-backbone/<stage>/shops/...).

    python -m chalicelib.admin --stage dev issue --partner factory-1
    python -m chalicelib.admin --stage dev issue --staff alice --role back_office
    python -m chalicelib.admin --stage dev list --partner factory-1
    python -m chalicelib.admin --stage dev revoke --partner factory-1 --key-id 3fa2c91b07de
    python -m chalicelib.admin --stage dev source shopify --scheme shopify --secret S [--secret S2]
    python -m chalicelib.admin --stage dev shop woocommerce shop.example.cn \
        --option store_url=https://shop.example.cn --option consumer_key=ck_... ...
    python -m chalicelib.admin --stage dev channel wecom:cs-team --option webhook_url=https://...
    python -m chalicelib.admin --stage dev channel email:cs-team --json '{"sender": ...}'
    python -m chalicelib.admin --stage dev courier kuaidi100 --secret SALT \
        --option customer=C --option key=K --option callback_url=https://.../couriers/kuaidi100/push
    python -m chalicelib.admin --stage dev migrate-secrets [--keep-table]

The pipeline (each with --help; chalicelib/admin/operations.py):

    python -m chalicelib.admin --stage dev pending [--limit 20] [--newest-first] [--after CURSOR]
    python -m chalicelib.admin --stage dev replay SOURCE DELIVERY_ID [--force] [--dry-run]
    python -m chalicelib.admin --stage dev redrive inbox|alerts|amazon [--dry-run] [--max 100]

Couriers' monthly bills (chalicelib/admin/bills.py):

    python -m chalicelib.admin --stage dev bill import STO|KUAIDI100 PATH [--by NAME]
    python -m chalicelib.admin --stage dev bill show BILL_ID
    python -m chalicelib.admin --stage dev bill list STO

The reports (chalicelib/admin/reports.py): a period's figures, or its mail sent now:

    python -m chalicelib.admin --stage dev report show --kind daily|weekly|monthly [--day DAY]
    python -m chalicelib.admin --stage dev report send --kind daily|weekly|monthly [--day DAY]

`--stage local` is the stack `make run` started: its endpoint comes from .local/run.json, and
for an endpoint on this machine the region and credentials default to dummy ones. For AWS they
are the environment's or the profile's (AWS_PROFILE, AWS_DEFAULT_REGION, ...); a missing one is
a one-line error.

A key is shown once, when issued; only its hash is stored. Rotate by issuing a new key,
switching the partner over, then revoking the old one: both work in between.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.access import accounts_store as accounts
from chalicelib.access import directory_store as directory
from chalicelib.access.keys import Role, hash_key, new_key
from chalicelib.admin import bills, connection, operations, reports
from chalicelib.core.clock import utcnow
from chalicelib.core.settings import settings
from chalicelib.cs import channels
from chalicelib.marketplaces import known_schemes


def _principal(args: argparse.Namespace) -> tuple[str, str]:
    return ("partner", args.partner) if args.partner else ("staff", args.staff)


def main(argv: list[str] | None = None) -> None:
    """Run one command; what stops it talking to AWS (no credentials or region, an endpoint
    not answering, a refusal) is one line on stderr and exit status 1, not a traceback."""
    try:
        if not operations.run(argv) and not bills.run(argv) and not reports.run(argv):
            _main(argv)
    except connection.SetupError as exc:
        sys.exit(str(exc))
    except (BotoCoreError, ClientError) as exc:
        sys.exit(connection.explain(exc))


def _main(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chalicelib.admin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="dev",
                        help="names the directory table order-backbone-<stage>-directory "
                             "(or set DIRECTORY_TABLE) and the parameters "
                             "/order-backbone/<stage>/... (or set APP_STAGE); local: the stack "
                             "`make run` started")
    parser.add_argument("command",
                        choices=["issue", "list", "revoke", "source", "courier", "channel",
                                 "shop", "migrate-secrets"])
    parser.add_argument("name", nargs="?", help="with source: the {source} of /webhooks/{source};"
                        " with courier: the provider of /couriers/{provider}/push; with channel:"
                        " a CS channel id, <platform>:<name> "
                        f"({', '.join(channels.CHANNEL_MODULES)})")
    parser.add_argument("shop", nargs="?", help="with shop: the marketplace's shop id")
    parser.add_argument("--scheme", choices=sorted(known_schemes()), help="with source")
    parser.add_argument("--secret", action="append", default=[],
                        help="with source or courier: a signing secret (Kuaidi100: the push "
                             "salt); repeat to keep the old one while rotating")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="with courier: account settings (kuaidi100: customer, key, "
                             "callback_url; 17track: token); with channel: its settings "
                             "(webhook_url, secret)")
    parser.add_argument("--json", help="with channel: the settings as one JSON object (email: "
                        "sender, verified_identities, to)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--partner", help="a warehouse partner id")
    who.add_argument("--staff", help="a CS or back-office person")
    parser.add_argument("--role", choices=[r.value for r in Role if r is not Role.PARTNER],
                        default=Role.READ_ONLY.value, help="staff role (default read_only)")
    parser.add_argument("--key-id", help="the key to revoke (see list)")
    parser.add_argument("--keep-table", action="store_true",
                        help="with migrate-secrets: copy to SSM only, leave the table as it is "
                             "(before deploying the version that reads SSM)")
    args = parser.parse_args(argv)
    connection.connect(args.stage)
    os.environ.setdefault("DIRECTORY_TABLE", f"order-backbone-{args.stage}-directory")
    os.environ.setdefault("APP_STAGE", args.stage)  # names the parameters
    settings.cache_clear()
    if args.command == "source":
        if not (args.name and args.scheme and args.secret):
            parser.error("source needs a name, --scheme and at least one --secret")
        _store_account(parser, args.name, {"scheme": args.scheme, "secrets": args.secret})
        print(f"source {args.name}: {args.scheme}, {len(args.secret)} secret(s); "
              f"running functions pick it up within {settings().secrets_cache_seconds} s")
        return
    if args.command == "migrate-secrets":
        from chalicelib.admin import migrate_secrets

        if migrate_secrets.run(keep_table=args.keep_table):
            sys.exit(1)
        return
    if args.command == "courier":
        _courier(parser, args)
        return
    if args.command == "channel":
        _channel(parser, args)
        return
    if args.command == "shop":
        _shop(parser, args)
        return
    if not (args.partner or args.staff):
        parser.error(f"{args.command} needs --partner or --staff")
    kind, principal_id = _principal(args)
    if args.command == "issue":
        role = Role.PARTNER if kind == "partner" else Role(args.role)
        key = new_key()
        key_id = directory.add_key(hash_key(key), kind, principal_id, role, utcnow())
        print(f"key id {key_id} for {kind} {principal_id} ({role}):\n{key}\n"
              "Hand it over securely; it is not shown again.")
    elif args.command == "list":
        for entry in directory.keys_of(kind, principal_id):
            print(entry["sk"].removeprefix("KEY#"), entry["role"], entry["status"],
                  entry["created_at"], entry.get("revoked_at", ""))
    else:
        if not args.key_id:
            parser.error("revoke needs --key-id")
        if not directory.revoke(kind, principal_id, args.key_id, utcnow()):
            sys.exit(f"no key {args.key_id} for {kind} {principal_id}")
        print(f"revoked {args.key_id}; it stops working within the key cache time (60 s)")


def _store_account(parser: argparse.ArgumentParser, name: str, account: dict[str, Any]) -> None:
    """An account's secrets and settings, as a SecureString in SSM Parameter Store."""
    if accounts.parameter_name(name) is None:
        parser.error(f"{name!r} cannot name an account: use letters, digits, '_', '.' and '-', "
                     "starting with a letter or digit")
    accounts.register_sources({name: account})


def _courier(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    from chalicelib.flows.waybills import ACCOUNT_PREFIX
    from chalicelib.tracking.couriers import known_providers, source_name
    from chalicelib.warehouse.waybills.registry import PROVIDERS

    # Tracking providers, and the electronic waybill providers' accounts (waybills-<name>).
    known = {*known_providers(), *(ACCOUNT_PREFIX + name for name in PROVIDERS)}
    if args.name not in known or not args.secret:
        parser.error(f"courier needs a provider ({', '.join(sorted(known))}) and "
                     "at least one --secret")
    options = dict(option.split("=", 1) for option in args.option if "=" in option)
    _store_account(parser, source_name(args.name),
                   {"scheme": args.name, "secrets": args.secret, "options": options})
    print(f"courier {args.name}: {len(args.secret)} secret(s), options {sorted(options)}; "
          f"running functions pick it up within {settings().secrets_cache_seconds} s")


def _shop(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A shop's API credentials (re-fetching thin notifications, writing shipments back), as a
    SecureString in SSM Parameter Store."""
    from chalicelib.marketplaces import credentials_store as shop_credentials

    if args.name not in known_schemes() or not args.shop or not args.option:
        parser.error(f"shop needs a marketplace ({', '.join(sorted(known_schemes()))}), a shop "
                     "id and --option NAME=VALUE for each credential")
    credentials = dict(option.split("=", 1) for option in args.option if "=" in option)
    shop_credentials.put(args.name, args.shop, credentials)
    print(f"{shop_credentials.parameter_name(args.name, args.shop)}: {sorted(credentials)}")


def _channel(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    import json

    from chalicelib.flows import notifier

    platform = channels.platform_of(args.name or "")
    if ":" not in (args.name or "") or platform not in channels.CHANNEL_MODULES:
        parser.error("channel needs an id <platform>:<name>, platform one of "
                     f"{', '.join(channels.CHANNEL_MODULES)}")
    if accounts.parameter_name(notifier.channel_name(args.name)) is None:
        parser.error(f"{args.name!r}: a channel's name holds letters, digits, '_', '.' and '-', "
                     "starting with a letter or digit")
    settings_doc = json.loads(args.json) if args.json else dict(
        option.split("=", 1) for option in args.option if "=" in option)
    try:  # refuse what the notifier could not use, now rather than at the first alert
        channels.parse_config(platform, settings_doc)
    except ValueError as exc:
        parser.error(f"settings for {args.name}: {exc}")
    notifier.configure_channels({args.name: settings_doc})
    print(f"channel {args.name} set; the notifier picks it up within "
          f"{settings().secrets_cache_seconds} s")
