"""Shared fixtures: one in-process moto server per test session, resources from infra/."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults import Faults
from tests.support import SHOPIFY_SECRET, STANDARD_SECRET

BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_SESSION_TOKEN": "testing",  # Lambda's functions have one; the extension checks it
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    # Names the parameters the secrets live in: the stage chalice's test Client sets (the
    # "local" stage of .chalice/config.json), and what the admin command line must not change.
    "APP_STAGE": "local",
    "AWS_READ_TIMEOUT_SECONDS": "60",  # the local endpoint serialises DynamoDB under load
    "WEBHOOK_DEADLINE_SECONDS": "60",  # so a webhook waits for it too
    # Tests open cases and count them at once: every page counts (tests that keep the figures
    # set their own).
    "CASE_FIGURES_SECONDS": "0",
}
WEBHOOK_SOURCES = {
    "shopify": {"scheme": "shopify", "secrets": [SHOPIFY_SECRET]},
    "erp": {"scheme": "standard", "secrets": [STANDARD_SECRET]},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """Start the local endpoint and the Parameters and Secrets extension beside it, create every
    resource from infra/, register the sources."""
    import boto3

    from chalicelib.access import accounts_store as accounts
    from chalicelib.core import aws
    from chalicelib.core.settings import settings
    from devstack.endpoint import LocalAWS
    from devstack.parameters_extension import start_beside
    from devstack.provision import provision

    port = free_port()
    server = LocalAWS(port)
    server.start()
    env = {**BASE_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    env.update(provision(boto3.session.Session(), stage="test"))
    extension = start_beside(env)  # its port in PARAMETERS_SECRETS_EXTENSION_HTTP_PORT
    saved.update({name: os.environ.get(name) for name in extension.environment()})
    os.environ.update(env)
    aws.reset()
    settings.cache_clear()
    accounts.register_sources(WEBHOOK_SOURCES)
    yield env
    extension.stop()
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def stack(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point this test's process state (env, cached clients, settings, keys and accounts) at the
    stack."""
    from chalicelib.access import accounts_store as accounts
    from chalicelib.access import directory_store as directory
    from chalicelib.core import aws
    from chalicelib.core.settings import settings

    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    aws.reset()
    settings.cache_clear()
    directory.forget()
    accounts.forget()
    if "chalicelib.flows.warehouse" in sys.modules:  # jobs another test's steps remembered
        sys.modules["chalicelib.flows.warehouse"].forget_all()
    return stack_env


@pytest.fixture
def make_key(stack: dict[str, str]) -> Any:
    """Issue an API key for a partner or a staff member; returns the plain key."""
    from chalicelib.access import directory_store as directory
    from chalicelib.access.keys import Role, hash_key, new_key
    from chalicelib.core.clock import utcnow

    def issue(kind: str, principal_id: str, role: Role = Role.PARTNER) -> str:
        key = new_key()
        directory.add_key(hash_key(key), kind, principal_id, role, utcnow())
        return key

    return issue


@pytest.fixture
def faults(stack: dict[str, str]) -> Iterator[Faults]:
    """AWS's faults on the app's calls, as a test adds them (tests/faults.py); botocore's own
    back-off between its retries at a hundredth, so a test does not sleep seconds."""
    injector = Faults(seed=14, backoff_scale=0.01)
    with injector.installed():
        yield injector
