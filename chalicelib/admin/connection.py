"""Where the command line talks to, and as whom: the local stack or AWS.

The local stack (`make run`) is reached with `--stage local`: its endpoint comes from
.local/run.json (which `make run` writes; AWS_ENDPOINT_URL, if set, wins). For an endpoint on
this machine (a loopback address) the region and credentials default to the stack's
(us-east-1, dummy keys) unless the environment sets them, so a fresh machine needs nothing set;
a profile's keys are never sent there.

Nothing is defaulted for AWS: the region and credentials are the environment's or the
profile's, and a missing one is a one-line `SetupError` naming what to set.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

ROOT = Path(__file__).resolve().parents[2]
LOCAL_STAGE = "local"
LOCAL_REGION = "us-east-1"  # the region `make run` provisions in (devstack/stack.py)
LOCAL_KEY = "local"  # the local endpoint accepts any credentials; these are not a secret
PREFIX = "order-backbone"  # physical names are order-backbone-<stage>-<resource> (infra/)

# The environment the functions get from infra/resources.yaml (Globals), by its naming rule:
# tests/unit/test_admin_connection.py checks these against the template.
TABLES = {"INBOX_TABLE": "inbox", "ORDERS_TABLE": "orders", "JOBS_TABLE": "jobs",
          "DIRECTORY_TABLE": "directory", "SHIPMENTS_TABLE": "shipments",
          "CASES_TABLE": "cases", "BILLS_TABLE": "bills"}
TOPIC = "alerts"
QUEUES = {"inbox": "inbox-dlq", "alerts": "alerts-dlq", "amazon": "amazon-notifications-dlq"}
"""The dead-letter queues an operator redrives, by the name the command line gives them."""


class SetupError(Exception):
    """The command cannot talk to its target; the message says what to set, in one line."""


@dataclass(frozen=True)
class Target:
    endpoint: str | None  # None: AWS's own endpoints
    local: bool
    stage: str

    def describe(self) -> str:
        return (f"the local endpoint {self.endpoint}" if self.local
                else f"AWS ({self.endpoint or 'its own endpoints'})")


def run_file() -> Path:
    """Where `make run` writes what it started (LOCAL_RUN_FILE, as devstack/stack.py reads it)."""
    return Path(os.environ.get("LOCAL_RUN_FILE") or ROOT / ".local" / "run.json")


def is_local(url: str) -> bool:
    """The endpoint is on this machine (localhost or a loopback address)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_endpoint(path: Path | None = None) -> str:
    """The local stack's AWS endpoint, from the file `make run` writes."""
    path = path or run_file()
    try:
        run: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SetupError(f"no local stack: {path} does not exist; start one with `make run` "
                         "(or set AWS_ENDPOINT_URL)") from None
    except (OSError, ValueError) as exc:
        raise SetupError(f"cannot read {path}: {exc}") from None
    endpoint = run.get("aws") if isinstance(run, dict) else None
    if not isinstance(endpoint, str) or not endpoint:
        raise SetupError(f"{path} names no AWS endpoint (written by an older `make run`?); "
                         "restart `make run` or set AWS_ENDPOINT_URL")
    return endpoint


_current: list[Target] = []  # what connect() settled last, for explain()


def connect(stage: str) -> Target:
    """Settle the endpoint, region and credentials for `stage` in the environment boto3 reads.

    Raises SetupError when talking to AWS without credentials or a region."""
    target = _connect(stage, os.environ)
    _current[:] = [target]
    return target


def _connect(stage: str, env: MutableMapping[str, str]) -> Target:
    if env.get("AWS_REGION") and not env.get("AWS_DEFAULT_REGION"):
        env["AWS_DEFAULT_REGION"] = env["AWS_REGION"]  # boto3 reads only AWS_DEFAULT_REGION
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    if endpoint is None and stage == LOCAL_STAGE:
        endpoint = env["AWS_ENDPOINT_URL"] = local_endpoint()
    if endpoint is not None and is_local(endpoint):
        env.setdefault("AWS_DEFAULT_REGION", LOCAL_REGION)
        if not env.get("AWS_ACCESS_KEY_ID"):
            env["AWS_ACCESS_KEY_ID"] = env["AWS_SECRET_ACCESS_KEY"] = LOCAL_KEY
            env.pop("AWS_SESSION_TOKEN", None)
        env.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
        env.setdefault("AWS_READ_TIMEOUT_SECONDS", "30")  # as make run: moto is slower
        _forget_clients()
        return Target(endpoint, True, stage)
    _check_aws(stage)
    _forget_clients()
    return Target(endpoint, False, stage)


def _check_aws(stage: str) -> None:
    import boto3

    try:
        session = boto3.session.Session()
        missing = [what for what, absent in (("credentials", session.get_credentials() is None),
                                             ("region", not session.region_name)) if absent]
    except BotoCoreError as exc:  # a named profile that does not exist, a broken config file
        raise SetupError(f"AWS configuration: {exc}") from None
    if missing:
        raise SetupError(
            f"no AWS {' and no '.join(missing)} for stage {stage}: "
            + "; ".join(_HOW_TO_SET[what] for what in missing)
            + " (for the local stack started by `make run`, use --stage local)")


_HOW_TO_SET = {
    "credentials": "sign in with a profile (aws configure, or aws sso login with AWS_PROFILE) "
                   "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
    "region": "set AWS_DEFAULT_REGION (or region in the AWS profile)",
}


def _forget_clients() -> None:
    from chalicelib.core import aws
    from chalicelib.core.settings import settings

    aws.reset()
    settings.cache_clear()


def stage_environment(stage: str) -> None:
    """What the functions of `stage` get from the template and .chalice/config.json, where the
    environment does not say otherwise: resource names, then the stage's own variables."""
    env = os.environ
    for variable, resource in TABLES.items():
        env.setdefault(variable, f"{PREFIX}-{stage}-{resource}")
    for variable, value in chalice_variables(stage).items():
        env.setdefault(variable, value)
    env.setdefault("APP_STAGE", stage)
    _forget_clients()


def chalice_variables(stage: str, path: Path | None = None) -> dict[str, str]:
    """The environment variables .chalice/config.json gives every function of `stage`."""
    try:
        config: Any = json.loads((path or ROOT / ".chalice" / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    variables = dict(config.get("environment_variables", {}))
    variables.update(config.get("stages", {}).get(stage, {}).get("environment_variables", {}))
    return {str(name): str(value) for name, value in variables.items()}


def alerts_topic(stage: str) -> None:
    """ALERTS_TOPIC_ARN for `stage` (what the worker publishes to), from the caller's account."""
    from chalicelib.core import aws

    env = os.environ
    if env.get("ALERTS_TOPIC_ARN"):
        return
    identity = aws.client("sts").get_caller_identity()
    partition, account = identity["Arn"].split(":")[1], identity["Account"]
    region = aws.client("sts").meta.region_name
    env["ALERTS_TOPIC_ARN"] = f"arn:{partition}:sns:{region}:{account}:{PREFIX}-{stage}-{TOPIC}"
    _forget_clients()


def queue_name(stage: str, queue: str) -> str:
    return f"{PREFIX}-{stage}-{QUEUES[queue]}"


def explain(error: BotoCoreError | ClientError) -> str:
    """One line for an error of the AWS SDK, with what to do about it where we know."""
    target = _current[0] if _current else None
    if isinstance(error, EndpointConnectionError):
        if target is not None and target.local:
            return (f"cannot reach the local endpoint {target.endpoint}: is `make run` "
                    f"running? ({run_file()} names the last one started)")
        return f"cannot reach AWS: {error}"
    if isinstance(error, NoCredentialsError):
        return f"{error}: {_HOW_TO_SET['credentials']}"
    if isinstance(error, NoRegionError):
        return f"{error}: {_HOW_TO_SET['region']}"
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", "?"))
        message = str(error.response.get("Error", {}).get("Message", ""))
        where = f" on {target.describe()}" if target is not None else ""
        return (f"{error.operation_name} refused{where}: {code}: {message}"
                f"{_HINTS.get(code, '')}")
    return str(error).replace("\n", " ")


_AUTH_HINT = " (are the credentials current? sign in again, e.g. aws sso login)"
_HINTS = {
    "ExpiredToken": _AUTH_HINT, "ExpiredTokenException": _AUTH_HINT,
    "UnrecognizedClientException": _AUTH_HINT, "InvalidClientTokenId": _AUTH_HINT,
    "InvalidSignatureException": _AUTH_HINT, "SignatureDoesNotMatch": _AUTH_HINT,
    "AccessDenied": " (the credentials lack this permission)",
    "AccessDeniedException": " (the credentials lack this permission)",
    "ResourceNotFoundException": " (is --stage right, and the region? names are "
                                 f"{PREFIX}-<stage>-...)",
    "AWS.SimpleQueueService.NonExistentQueue": " (is --stage right, and the region?)",
    "QueueDoesNotExist": " (is --stage right, and the region?)",
}


def command_word(argv: list[str] | None) -> argparse.Namespace:
    """The command line's `--stage`, its command word and the rest, read leniently: each
    command module (operations, bills) looks at the word to know whether the line is its own."""
    words = list(sys.argv[1:] if argv is None else argv)
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--stage", default="dev")
    first.add_argument("command", nargs="?")
    first.add_argument("rest", nargs=argparse.REMAINDER)
    known, _ = first.parse_known_args(words)
    return known
