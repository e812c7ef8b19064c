"""Fuzzing both APIs from their own OpenAPI descriptions (schemathesis, pinned in
requirements-dev.txt), in-process against the local endpoint: every operation, a fixed seed
(derandomized), a bounded number of examples. Checked on every answer: no 5xx, a status and a
body the description gives (its schema, its content type, its headers), and the error contract
on every 4xx.

The app is driven through a small WSGI adapter around the local gateway `make run` serves
(devstack/local_api.py: Chalice's own, an unknown route answered 404 route_not_found), so
requests go through the same routing, middleware and handlers as there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

import pytest
import schemathesis
from chalice.config import Config
from chalice.local import LocalGatewayException
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import app
from chalicelib.access.keys import Role
from devstack.local_api import LocalApiGateway

EXAMPLES = 12  # per operation and mode: 25 operations, about 1,500 requests, 10 s in all


def wsgi_app() -> Callable[..., Iterable[bytes]]:
    """The Chalice app as a WSGI application, through the local gateway: the raw path (as
    `chalice local` passes it on), headers, body; the gateway's own answers included."""
    gateway = LocalApiGateway(app, Config.create(chalice_stage="local"))

    def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
                   if key.startswith("HTTP_")}
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        try:
            answer = gateway.handle_request(environ["REQUEST_METHOD"], path, headers, body)
        except LocalGatewayException as exc:
            status, out, payload = exc.CODE, dict(exc.headers), exc.body or b""
        else:
            status, payload = answer["statusCode"], answer["body"] or b""
            out = {**answer["headers"], **{k: ", ".join(v) for k, v in
                                           (answer.get("multiValueHeaders") or {}).items()}}
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        start_response(f"{status} {HTTPStatus(status).phrase}",
                       [(k, str(v)) for k, v in out.items()])
        return [data]

    return application


APPLICATION = wsgi_app()
WAREHOUSE = schemathesis.openapi.from_wsgi("/warehouse/v1/openapi.json", APPLICATION)
CS = schemathesis.openapi.from_wsgi("/cs/v1/openapi.json", APPLICATION)
for _schema in (WAREHOUSE, CS):
    # Valid requests, and invalid ones (wrong types, missing fields): both must get an answer
    # the description gives. Its coverage phase adds wrong methods, media types and no key.
    _schema.config.generation.update(
        modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
        max_examples=EXAMPLES, deterministic=True)

FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


def error_contract(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx is JSON {"error": <reason>, "message": <text>[, "details": {...}]}."""
    if not 400 <= response.status_code < 500:
        return None
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), \
        response.headers
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) <= {"error", "message", "details"}, body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("details", {}), dict), body
    return True


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, error_contract]


@pytest.fixture(scope="module")
def keys(stack_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A partner of its own and an admin, with limits no fuzzer reaches (limits are tested
    elsewhere; here a 429 would only hide the handlers)."""
    import os
    import uuid

    from chalicelib.access import directory_store as directory
    from chalicelib.access.keys import hash_key, new_key
    from chalicelib.core import aws, ratelimit
    from chalicelib.core.clock import utcnow
    from chalicelib.core.settings import settings as app_settings

    env = {**stack_env, "RATE_LIMIT_BURST": "100000", "RATE_LIMIT_PER_SECOND": "100000",
           "AUTH_FAILURES_BURST": "100000"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    aws.reset()
    app_settings.cache_clear()
    ratelimit.reset()
    directory.forget()
    issued = {}
    for kind, principal, role in (("partner", f"fuzz-{uuid.uuid4().hex[:6]}", Role.PARTNER),
                                  ("staff", "fuzz-admin", Role.ADMIN)):
        key = new_key()
        directory.add_key(hash_key(key), kind, principal, role, utcnow())
        issued[kind] = key
    yield issued
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    aws.reset()
    app_settings.cache_clear()
    ratelimit.reset()
    directory.forget()


@WAREHOUSE.parametrize()
@FUZZ
def test_the_warehouse_api_answers_its_description(case: schemathesis.Case,
                                                   keys: dict[str, str]) -> None:
    if isinstance(case.body, dict) and case.body.get("wait_seconds"):
        case.body["wait_seconds"] = 0  # a long poll waits in real time: up to 20 s an example
    case.call_and_validate(headers={"Authorization": f"Bearer {keys['partner']}"},
                           checks=CHECKS)


@CS.parametrize()
@FUZZ
def test_the_cs_api_answers_its_description(case: schemathesis.Case,
                                            keys: dict[str, str]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {keys['staff']}"}, checks=CHECKS)
