"""The local AWS endpoint: moto's server, with DynamoDB made atomic and fast as the real one.

1. DynamoDB applies a conditional write or a transaction atomically. moto checks the conditions
   and then writes in separate steps, and its threaded server runs requests in parallel, so two
   concurrent claims could both pass the same condition (seen here: jobs handed out twice, and
   "dictionary changed size during iteration" inside moto). Serialising DynamoDB requests
   restores the guarantee our code relies on; other services (SQS long polls) stay concurrent.
2. moto 5.2.5's TransactWriteItems deep-copies the whole table once per item, for rollback: a
   claim of 100 jobs took over 4 s on a table of a few hundred items. With requests serialised,
   checking every condition before writing anything gives the same all-or-nothing result
   without the copies.
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


def _transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto's TransactWriteItems in two phases: every check first, then every write."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    seen: set[tuple[str, str]] = set()
    planned: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    reasons: list[tuple[str | None, str | None, Any]] = []
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(entry.items()))
        table = backend.get_table(op["TableName"])
        if op_type == "Put":
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        marker = (op["TableName"], str(dict(sorted(key.items()))))
        if marker in seen:
            raise MultipleTransactionsException()
        seen.add(marker)
        current = backend.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        if condition is not None and not get_filter_expression(
                condition, op.get("ExpressionAttributeNames"),
                op.get("ExpressionAttributeValues")).expr(current):
            old = current.to_json()["Attributes"] if current and op.get(
                "ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None
            reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            reasons.append((None, None, None))
        planned.append((op_type, op, key))
    if any(code for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    for op_type, op, key in planned:
        names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        if op_type == "Put":
            backend.put_item(op["TableName"], op["Item"], expression_attribute_names=names,
                             expression_attribute_values=values)
        elif op_type == "Delete":
            backend.delete_item(op["TableName"], key)
        elif op_type == "Update":
            backend.update_item(op["TableName"], key, update_expression=op["UpdateExpression"],
                                expression_attribute_names=names,
                                expression_attribute_values=values)


class LocalAWS(ThreadedMotoServer):
    def __init__(self, port: int, ip_address: str = "127.0.0.1") -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)

    def _server_entry(self) -> None:
        from moto.dynamodb.models import DynamoDBBackend

        DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign,assignment]
        app = _SerialDynamoDB(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self._ip_address, self._port, app, True,
                                   request_handler=MotoRequestHandler)
        self._server_ready_event.set()
        self._server.serve_forever()

    @property
    def url(self) -> str:
        host, port = self.get_host_and_port()
        return f"http://{host}:{port}"
