"""The HTTP API locally (`make run` starts it): what `chalice local --no-autoreload` serves, with
one difference: a path no route serves is answered in the error contract, 404
`route_not_found`, where Chalice's local gateway, as API Gateway does, answers 403
{"message": "Missing Authentication Token"}.

Chalice's other own answers (wrong method, unsupported media type) are shaped by the app's
middleware (chalicelib.api.chalice_errors), so they are the same here, in tests and in AWS. In
AWS the unknown route never reaches Lambda: API Gateway's MISSING_AUTHENTICATION_TOKEN gateway
response (infra/resources.yaml, with REQUEST_TOO_LARGE, THROTTLED, DEFAULT_4XX/5XX...) answers
it with this same body.

    python -m devstack.local_api [--host 127.0.0.1] [--port 8000] [--stage local]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    LocalChalice,
    LocalDevServer,
    LocalGateway,
    LocalGatewayException,
)

from chalicelib.core.errors import ApiError

ROOT = Path(__file__).resolve().parents[1]


class RouteNotFound(LocalGatewayException):
    CODE = 404


def route_not_found(method: str, path: str) -> RouteNotFound:
    error = ApiError(404, "route_not_found", f"no route serves {method} {path.split('?')[0]}")
    return RouteNotFound({"Content-Type": "application/json"}, json.dumps(error.body()).encode())


class LocalApiGateway(LocalGateway):
    """Chalice's local gateway, answering an unknown route 404 `route_not_found`."""

    def _generate_lambda_event(self, method: str, path: str, headers: dict[str, str],
                               body: bytes | None) -> dict[str, Any]:
        try:
            event: dict[str, Any] = super()._generate_lambda_event(method, path, headers, body)
        except ValueError:  # the route matcher's "No matching route"
            raise route_not_found(method, path) from None
        return event


class LocalApiHandler(ChaliceRequestHandler):
    def __init__(self, request: bytes, client_address: tuple[str, int], server: HTTPServer,
                 app_object: Chalice, config: Config) -> None:
        self.local_gateway = LocalApiGateway(app_object, config)
        BaseHTTPRequestHandler.__init__(self, request, client_address, server)  # type: ignore[arg-type]


def create_server(host: str, port: int, stage: str) -> LocalDevServer:
    """As `chalice local` builds its server (chalice.cli.create_local_server), with our
    handler: the stage's environment, the route check deploying would do, a request object
    per thread."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy.validate import validate_routes

    os.environ["AWS_CHALICE_CLI_MODE"] = "true"
    os.chdir(ROOT)
    config = CLIFactory(str(ROOT), environ=os.environ).create_config_obj(
        chalice_stage_name=stage)
    app_obj = config.chalice_app
    validate_routes(app_obj.routes)
    CustomLocalChalice.__bases__ = (LocalChalice, app_obj.__class__)
    app_obj.__class__ = CustomLocalChalice
    return LocalDevServer(app_obj, config, host, port, handler_cls=LocalApiHandler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stage", default="local")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    create_server(args.host, args.port, args.stage).serve_forever()


if __name__ == "__main__":
    main()
