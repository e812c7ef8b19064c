"""HTTP edge: blueprints stay thin; this maps errors to responses in one place."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ParamSpec

from chalice.app import Response
from pydantic import BaseModel

from chalicelib.core.errors import ApiError
from chalicelib.core.signatures import M, parse_json_object, validate_payload

log = logging.getLogger("chalicelib.api")
P = ParamSpec("P")

JSON: dict[str, str | list[str]] = {"Content-Type": "application/json"}


def endpoint(view: Callable[P, Response]) -> Callable[P, Response]:
    """Wrap a route: ApiError -> its status and reason; anything else -> 500, logged.

    (Chalice turns a view's exception into its own 500 before middleware sees it.)
    """

    @functools.wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return view(*args, **kwargs)
        except ApiError as exc:
            headers: dict[str, str | list[str]] = dict(JSON)
            if exc.status in (429, 503) and "retry_after" in exc.details:
                headers["Retry-After"] = str(exc.details["retry_after"])
            if exc.status >= 500:
                log.error("%s in %s: %s", exc.reason, view.__name__, exc.__cause__ or exc)
            return Response(body=exc.body(), status_code=exc.status, headers=headers)
        except Exception as exc:
            log.exception("unhandled error in %s", view.__name__)
            _our_fault(view.__name__, exc)
            return Response(body={"error": "internal_error", "message": "our fault; retry later"},
                            status_code=500, headers=JSON)

    return wrapped


def _our_fault(route: str, exc: Exception) -> None:
    """A 500 is our bug: a case for whoever watches the system (one per route and error type,
    repeats counted on it). Best effort: the caller already gets its 500."""
    from chalicelib.core.clock import utcnow
    from chalicelib.cs import alert_topic, alerts

    try:
        alert_topic.raise_case("system.fault", f"route:{route}:{type(exc).__name__}",
                               alerts.Severity.HIGH, f"unhandled {type(exc).__name__} in {route}",
                               utcnow(), {"route": route, "error": str(exc)[:300]})
    except Exception:  # the alert path failing too must not hide the original error
        log.exception("could not raise a case for the fault in %s", route)


def ok(body: BaseModel | dict[str, Any], status: int = 200) -> Response:
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return Response(body=payload, status_code=status, headers=JSON)


def json_body(model: type[M], raw: bytes | None) -> M:
    return validate_payload(model, parse_json_object(raw) if raw else {})


def raw_body(request: Any) -> bytes:
    """The body exactly as sent: signatures are computed over these bytes."""
    body = request.raw_body or b""
    return body.encode() if isinstance(body, str) else bytes(body)
