"""The local AWS endpoint: moto's server, with DynamoDB made atomic as the real one is.

DynamoDB applies a conditional write or a transaction atomically. moto checks the conditions
and then writes in separate steps, and its threaded server runs requests in parallel, so two
concurrent claims could both pass the same condition (seen here: jobs handed out twice, and
"dictionary changed size during iteration" inside moto). Serialising DynamoDB requests restores
the guarantee our code relies on; other services (SQS long polls) stay concurrent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _SerialDynamoDB:
    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # DynamoDB and DynamoDB Streams are JSON APIs named by X-Amz-Target.
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with self._lock:
                return list(self._app(environ, start_response))
        return self._app(environ, start_response)


class LocalAWS(ThreadedMotoServer):
    def __init__(self, port: int, ip_address: str = "127.0.0.1") -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)

    def _server_entry(self) -> None:
        app = _SerialDynamoDB(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"
