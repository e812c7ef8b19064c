"""Integration accounts (accounts.py) in SSM Parameter Store: one SecureString per account,
its JSON document {"scheme", "secrets", "options"}, readable only by the functions that need
it (the IAM policies grant each function its own paths):

  webhook source <name>           /order-backbone/<stage>/secrets/sources/<name>
  courier/<provider>              /order-backbone/<stage>/secrets/couriers/<provider>
  channel/<platform>:<name>       /order-backbone/<stage>/secrets/channels/<platform>/<name>

Each kind has its own reader, building only its own path: `source` (a webhook, from the URL:
it can name nothing but a webhook source), `courier` (pushes, the tracker's client), `channel`
(the notifier). Parameter names allow only a-zA-Z0-9_.-/, so a name with anything else names
no account (and is never asked for). Reads go through chalicelib.core.parameters: in Lambda
the Parameters and Secrets extension, so a webhook builds no SSM client. Lookups are cached per
process for SECRETS_CACHE_SECONDS, unknown names too, so a flood of bad URLs cannot become a
flood of reads. Writes (the admin command line, the local stack, tests) use the SSM client.
"""

from __future__ import annotations

import json
import string
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from chalicelib.access.accounts import WebhookSource
from chalicelib.core import aws, parameters
from chalicelib.core.settings import settings

COURIER_PREFIX = "courier/"
CHANNEL_PREFIX = "channel/"
# A path segment of a parameter name, as we allow it: SSM's characters, a letter or digit
# first, short enough that the whole name stays far below SSM's 1011. (No regex: nothing to
# compile on a webhook's cold start.)
_FIRST = frozenset(string.ascii_letters + string.digits)
_ALLOWED = _FIRST | frozenset("_.-")
_MAX_SEGMENT = 128

# By (kind, name): a webhook URL naming "courier/kuaidi100" is a source nobody has, and must
# not stand in the cache for the courier's account.
_cache: dict[tuple[str, str], tuple[float, WebhookSource | None]] = {}


def prefix() -> str:
    return f"/order-backbone/{settings().stage}/secrets/"


def parameter_name(name: str) -> str | None:
    """The parameter an account (`<source>`, `courier/<provider>`, `channel/<platform>:<name>`)
    lives in; None for a name that cannot be one."""
    if name.startswith(COURIER_PREFIX):
        return _courier_parameter(name.removeprefix(COURIER_PREFIX))
    if name.startswith(CHANNEL_PREFIX):
        return _channel_parameter(name.removeprefix(CHANNEL_PREFIX))
    return _source_parameter(name)


# One builder per kind, each with its own literal path: a webhook's URL can name only a webhook
# source, and what each function may read is its own path (the IAM policies grant no more).

def _source_parameter(name: str) -> str | None:
    return f"{prefix()}sources/{name}" if _segment(name) else None


def _courier_parameter(provider: str) -> str | None:
    return f"{prefix()}couriers/{provider}" if _segment(provider) else None


def _channel_parameter(channel_id: str) -> str | None:
    platform, colon, name = channel_id.partition(":")
    if not (colon and _segment(platform) and _segment(name)):
        return None
    return f"{prefix()}channels/{platform}/{name}"


def _segment(part: str) -> bool:
    return (0 < len(part) <= _MAX_SEGMENT and part[0] in _FIRST
            and all(c in _ALLOWED for c in part))


def _decode(value: str) -> WebhookSource:
    return WebhookSource.model_validate_json(value)


def _encode(account: WebhookSource) -> str:
    return json.dumps({"scheme": account.scheme, "secrets": list(account.secrets),
                       "options": account.options}, ensure_ascii=False, separators=(",", ":"))


def source(name: str) -> WebhookSource | None:
    """The webhook source `/webhooks/{name}`, if any."""
    return source_soon(name)()


def source_soon(name: str) -> Callable[[], WebhookSource | None]:
    """`source`, started now and finished by the function returned: the extension reads it
    while this process does something else (chalicelib.core.parameters.fetch)."""
    return _soon(("sources", name), _source_parameter(name))


def courier(provider: str) -> WebhookSource | None:
    """The courier provider's account (`courier/<provider>`), if any."""
    return _read(("couriers", provider), _courier_parameter(provider))


def channel(channel_id: str) -> WebhookSource | None:
    """The CS channel's settings (`channel/<platform>:<name>`), if any."""
    return _read(("channels", channel_id), _channel_parameter(channel_id))


def _read(key: tuple[str, str], parameter: str | None) -> WebhookSource | None:
    return _soon(key, parameter)()


def _soon(key: tuple[str, str], parameter: str | None) -> Callable[[], WebhookSource | None]:
    cached = _cache.get(key)
    if cached and cached[0] > time.monotonic():
        known = cached[1]
        return lambda: known
    pending = parameters.fetch(parameter) if parameter else None

    def finish() -> WebhookSource | None:
        value = pending() if pending is not None else None
        found = _decode(value) if value is not None else None
        _cache[key] = (time.monotonic() + settings().secrets_cache_seconds, found)
        return found

    return finish


def _key(name: str) -> tuple[str, str]:
    """The cache key of an account named as `register_sources` names it."""
    if name.startswith(COURIER_PREFIX):
        return "couriers", name.removeprefix(COURIER_PREFIX)
    if name.startswith(CHANNEL_PREFIX):
        return "channels", name.removeprefix(CHANNEL_PREFIX)
    return "sources", name


def put(name: str, account: WebhookSource) -> str:
    """Create or replace an account; returns its parameter's name."""
    parameter = parameter_name(name)
    if parameter is None:
        raise ValueError(f"{name!r} cannot name an account: use letters, digits, '_', '.' "
                         "and '-', starting with a letter or digit")
    aws.client("ssm").put_parameter(Name=parameter, Value=_encode(account),
                                    Type="SecureString", Overwrite=True)
    _cache.pop(_key(name), None)
    return parameter


def stored(name: str) -> tuple[WebhookSource, datetime] | None:
    """The account as Parameter Store holds it now, with when it was last written (no cache,
    no extension: for the admin command line)."""
    parameter = parameter_name(name)
    if parameter is None:
        return None
    client = aws.client("ssm")
    try:
        found = client.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]
    except client.exceptions.ParameterNotFound:
        return None
    return _decode(found["Value"]), found["LastModifiedDate"]


def register_sources(sources: Mapping[str, Mapping[str, Any]]) -> None:
    """Create or replace accounts, e.g. {"shopify": {"scheme": "shopify", "secrets": [...]}}."""
    for name, account in sources.items():
        put(name, WebhookSource.model_validate(account))


def forget() -> None:
    """Drop this process's cached accounts (tests, and after an admin change)."""
    _cache.clear()
