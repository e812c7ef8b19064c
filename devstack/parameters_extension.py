"""The AWS Parameters and Secrets Lambda Extension, locally: what `make run`, the tests' stack
fixture and the benchmarks start beside the local endpoint, so the functions read their secrets
exactly as in Lambda (chalicelib/core/parameters.py).

In Lambda the extension is a layer (infra/resources.yaml) listening on localhost, on the port
in PARAMETERS_SECRETS_EXTENSION_HTTP_PORT. This serves the same Parameter Store route:

    GET /systemsmanager/parameters/get?name=<name>&withDecryption=true[&version=|&label=]
    X-Aws-Parameters-Secrets-Token: <the functions' AWS_SESSION_TOKEN>

answering GetParameter's JSON ({"Parameter": {...}, "ResultMetadata": {}}) from the local
endpoint's SSM; a request without the token is refused (401), a missing parameter is 400 with
Parameter Store's own error ({"__type": "ParameterNotFound", ...}), any other Parameter Store
error its status and code. It caches as the extension does, per
PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED and SSM_PARAMETER_STORE_TTL (the template turns
the cache off: the functions cache what they read). It listens on 127.0.0.1, on a free port
unless told one: several stacks can run side by side. Secrets Manager's route is not served.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.exceptions import ClientError

PORT_VARIABLE = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
ROUTES = ("/systemsmanager/parameters/get", "/systemsmanager/parameters/get/")
DEFAULT_TTL_SECONDS = 300.0  # the extension's default


def cache_seconds(environment: Mapping[str, str]) -> float:
    """How long the extension caches, from the functions' environment (0: not at all)."""
    if environment.get("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED", "true").lower() == "false":
        return 0.0
    return float(environment.get("SSM_PARAMETER_STORE_TTL", DEFAULT_TTL_SECONDS))


class ParametersExtension:
    """Start, read `port`, stop. `environment` is the functions' (the local endpoint, region
    and credentials: its SSM is theirs; the template's cache settings); `token` their
    AWS_SESSION_TOKEN."""

    def __init__(self, environment: Mapping[str, str], token: str, port: int = 0) -> None:
        self._ssm = boto3.session.Session(
            aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
            region_name=environment.get("AWS_DEFAULT_REGION", "us-east-1"),
        ).client("ssm", endpoint_url=environment["AWS_ENDPOINT_URL"])
        self._token = token
        self._ttl = cache_seconds(environment)
        self._cache: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def environment(self) -> dict[str, str]:
        """What the functions need to find it."""
        return {PORT_VARIABLE: str(self.port)}

    def start(self) -> ParametersExtension:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="parameters extension", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- The route ----------------------------------------------------------------------------

    def answer(self, path: str, token: str | None) -> tuple[int, dict[str, Any]]:
        url = urlsplit(path)
        if url.path not in ROUTES:
            return 404, {"message": "not found"}
        if token != self._token:
            return 401, {"message": f"missing or wrong {TOKEN_HEADER}"}
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        name = query.get("name", "")
        if not name:
            return 400, {"message": "name is required"}
        decrypt = query.get("withDecryption", "false").lower() == "true"
        if "version" in query:
            name = f"{name}:{query['version']}"
        elif "label" in query:
            name = f"{name}:{query['label']}"
        key = (name, str(decrypt))
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[0] > time.monotonic():
                return 200, cached[1]
        try:
            found = self._ssm.get_parameter(Name=name, WithDecryption=decrypt)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
            return status, {"__type": error.get("Code", ""), "message": error.get("Message", "")}
        body = {"Parameter": _json_safe(found["Parameter"]), "ResultMetadata": {}}
        if self._ttl > 0:
            with self._lock:
                self._cache[key] = (time.monotonic() + self._ttl, body)
        return 200, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        extension = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, body = extension.answer(self.path, self.headers.get(TOKEN_HEADER))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the query names parameters; values never pass through a log anyway

        return Handler


def _json_safe(parameter: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in parameter.items()}


def start_beside(environment: dict[str, str]) -> ParametersExtension:
    """Start the extension for a stack whose functions get `environment` (the local endpoint,
    its credentials, the template's variables), and complete that environment as Lambda's
    would be: a session token (the one the extension checks) and the extension's port, in the
    variable the template sets."""
    environment.setdefault("AWS_SESSION_TOKEN", "local-" + secrets.token_hex(8))
    extension = ParametersExtension(environment, environment["AWS_SESSION_TOKEN"]).start()
    environment.update(extension.environment())
    return extension
