"""Reading SSM Parameter Store (SecureString, decrypted) without an SSM client where it costs.

In Lambda the AWS Parameters and Secrets Lambda Extension (a layer: infra/resources.yaml)
serves GetParameter on localhost, on the port in PARAMETERS_SECRETS_EXTENSION_HTTP_PORT (the
template sets it; it is also how the extension learns its port):

    GET /systemsmanager/parameters/get?name=<url-encoded name>&withDecryption=true
    X-Aws-Parameters-Secrets-Token: <AWS_SESSION_TOKEN>

and answers GetParameter's JSON. One local HTTP call through the standard library's
http.client (botocore has loaded it already) costs far less than building a second boto3
client on a cold start (about 38 ms for SSM after DynamoDB), so a webhook reads its source's
secrets with no client but the DynamoDB one it needs anyway. Locally and in the tests
devstack/parameters_extension.py answers the same API from the local endpoint's SSM.

Where the variable is not set (the admin command line, scripts), and whenever the extension
gives no clear answer (not listening, an error we cannot read), the boto3 SSM client asks
Parameter Store itself: the extension is a faster road to the same answer, never a different
one. Callers cache what they read (SECRETS_CACHE_SECONDS); the template turns the extension's
own cache off, so a rotation reaches running functions within that one cache time.

Values are secrets: they are never logged; a failure names the parameter, never its value.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import urlencode

from chalicelib.core import aws

log = logging.getLogger(__name__)

PORT_VARIABLE = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
PATH = "/systemsmanager/parameters/get"
# Where the extension listens: AWS documents "localhost", which is the IPv4 loopback in
# Lambda; the address itself spares a name lookup on every cold start (2 ms here). Were it
# ever not listening there, Parameter Store answers instead (and a warning says so).
HOST = "127.0.0.1"
_OUTSIDE_A_DEADLINE_SECONDS = 10.0


class _NoClearAnswer(Exception):
    """The extension did not say either way: ask Parameter Store."""


def get(name: str) -> str | None:
    """The parameter's value (decrypted); None when there is no such parameter. Raises what
    the SSM client raises (ClientError, BotoCoreError) when Parameter Store cannot answer."""
    return fetch(name)()


def fetch(name: str) -> Callable[[], str | None]:
    """Start reading the parameter; the function returned finishes it (as `get`). Meanwhile
    the extension, a process of its own, waits on Parameter Store while this one does other
    work: a webhook's cold start builds the DynamoDB client its insert needs."""
    port = os.environ.get(PORT_VARIABLE)
    if not port:
        return lambda: _from_parameter_store(name)
    try:
        connection = _ask(int(port), name)
    except _NoClearAnswer:
        return lambda: _from_parameter_store(name)

    def finish() -> str | None:
        try:
            return _answer(connection, port, name)
        except _NoClearAnswer:
            return _from_parameter_store(name)

    return finish


def _ask(port: int, name: str) -> http.client.HTTPConnection:
    """Send the request; the answer is read by `_answer`."""
    query = urlencode({"name": name, "withDecryption": "true"})
    left = aws.remaining()
    timeout = (_OUTSIDE_A_DEADLINE_SECONDS if left is None
               else max(0.05, min(left, aws.attempt_seconds())))
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", f"{PATH}?{query}", headers={
            TOKEN_HEADER: os.environ.get("AWS_SESSION_TOKEN", "")})
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        _unreachable(port, exc)
    return connection


def _answer(connection: http.client.HTTPConnection, port: str, name: str) -> str | None:
    try:
        response = connection.getresponse()
        status, body = response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        _unreachable(port, exc)
    finally:
        connection.close()
    if status == 200:
        try:
            answer: Any = json.loads(body)
            return str(answer["Parameter"]["Value"])
        except (ValueError, KeyError, TypeError):
            log.warning("parameters extension: unreadable answer for %s; asking Parameter "
                        "Store", name)
            raise _NoClearAnswer from None
    if status in (400, 404) and b"ParameterNotFound" in body:
        return None
    # Throttled, denied, not ready, or an error whose words we do not know: the SDK's answer
    # is definitive. The body is not logged (an error text may quote what was asked for).
    log.warning("parameters extension answered %s for %s; asking Parameter Store", status, name)
    raise _NoClearAnswer


def _unreachable(port: object, error: Exception) -> NoReturn:
    log.warning("parameters extension on port %s: %s; asking Parameter Store", port,
                type(error).__name__)
    raise _NoClearAnswer from None


def _from_parameter_store(name: str) -> str | None:
    client = aws.client("ssm")
    try:
        answer = aws.within_deadline(
            lambda: client.get_parameter(Name=name, WithDecryption=True))
    except client.exceptions.ParameterNotFound:
        return None
    return str(answer["Parameter"]["Value"])
