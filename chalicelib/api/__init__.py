"""HTTP edge: blueprints stay thin; this maps errors to responses in one place.

Every answer that is not a success is the error contract, `{"error", "message", "details"}`
with the status that says whose fault it is: our ApiErrors and storage failures (`endpoint`),
and Chalice's own answers, wrong method and media type (`chalice_errors`, the app's HTTP
middleware). Locally the unknown route is devstack/local_api.py's. What the APIs take from
their callers (keys, bodies, ids) is chalicelib/api/callers.py, loaded by their views only: a
webhook's cold start compiles none of it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, ParamSpec

from chalice.app import Response
from pydantic import BaseModel

from chalicelib.core.errors import ApiError
from chalicelib.core.observability import count, describe

log = logging.getLogger("chalicelib.api")
P = ParamSpec("P")

JSON: dict[str, str | list[str]] = {"Content-Type": "application/json"}


def error_response(error: ApiError) -> Response:
    headers: dict[str, str | list[str]] = dict(JSON)
    if error.status in (429, 503) and "retry_after" in error.details:
        headers["Retry-After"] = str(error.details["retry_after"])
    return Response(body=error.body(), status_code=error.status, headers=headers)


def guarded(answer: Callable[[ApiError], Response]
            ) -> Callable[[Callable[P, Response]], Callable[P, Response]]:
    """Wrap a route: ApiError -> `answer` (its status and reason); a storage failure -> whoever's
    fault it is (chalicelib.core.dynamodb.classify: throttled or down, 503 with Retry-After; a
    value it cannot take, 4xx); anything else -> 500, logged, and a case. Every 5xx is counted
    (ServerErrors, by route: the view's name). The APIs answer JSON (`endpoint`), the console
    an HTML page (chalicelib/console/web.py), from the same classification.

    (Chalice turns a view's exception into its own 500 before middleware sees it.)
    """

    def decorate(view: Callable[P, Response]) -> Callable[P, Response]:
        @functools.wraps(view)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> Response:
            try:
                return view(*args, **kwargs)
            except ApiError as exc:
                if exc.status >= 500:
                    # Named by type and code only: the text of what caused it may hold data.
                    log.error("%s in %s: %s", exc.reason, view.__name__,
                              describe(exc.__cause__ or exc))
                    count("ServerErrors", route=view.__name__)
                return answer(exc)
            except Exception as exc:
                return answer(_unexpected(view.__name__, exc))

        return wrapped

    return decorate


def _unexpected(route: str, exc: Exception) -> ApiError:
    from chalicelib.core.dynamodb import classify

    answer = classify(exc)
    if answer is not None:
        log.log(logging.ERROR if answer.status >= 500 else logging.INFO,
                "storage: %s in %s: %s", answer.reason, route, describe(exc))
        if answer.status >= 500:
            count("ServerErrors", route=route)
        return answer
    log.exception("unhandled error in %s", route)
    count("ServerErrors", route=route)
    _our_fault(route, exc)
    return ApiError(500, "internal_error", "our fault; retry later")


endpoint = guarded(error_response)


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


# Chalice's own answers ---------------------------------------------------------------------

# Chalice answers these itself, before any view, as {"Code": ..., "Message": ...}.
_CHALICE_REASONS = {
    "MethodNotAllowedError": "method_not_allowed",
    "UnsupportedMediaType": "unsupported_media_type",
    "BadRequest": "bad_request",
    "NotFoundError": "route_not_found",
    "InternalServerError": "internal_error",
}


def chalice_errors(request: Any, get_response: Callable[[Any], Response]) -> Response:
    """HTTP middleware (registered once in app.py, so every blueprint has it): Chalice's own
    error answers in the error contract, status and headers (Allow) kept.

    In AWS, API Gateway answers an unknown path itself, before Lambda, as it does a body over
    10 MB (413) and its own throttling (429): its gateway responses in infra/resources.yaml
    give those this same body. A wrong method on a known path reaches us (each path has an ANY
    method: infra/stage_template.py). Locally devstack/local_api.py answers the unknown route."""
    response = get_response(request)
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or set(body) != {"Code",
                                                                                 "Message"}:
        return response
    reason = _CHALICE_REASONS.get(str(body["Code"]), "bad_request")
    details: dict[str, Any] = {}
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    if reason == "method_not_allowed":
        allowed = str(headers.get("Allow", ""))
        details["allowed"] = [m.strip() for m in allowed.split(",") if m.strip()]
        message = f"{request.method if request else 'this method'} is not served here; " \
                  f"use {allowed or 'another route'}"
    elif reason == "unsupported_media_type":
        sent = request.headers.get("content-type", "") if request else ""
        details["content_type"] = sent
        message = f"unsupported media type {sent!r}; send the body as application/json"
    else:
        message = str(body["Message"]) or reason.replace("_", " ")
    error = ApiError(response.status_code, reason, message, **details)
    return Response(body=error.body(), status_code=response.status_code,
                    headers={**headers, **JSON})


# Answers and bodies ---------------------------------------------------------------------


def ok(body: BaseModel | dict[str, Any], status: int = 200) -> Response:
    payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    return Response(body=payload, status_code=status, headers=JSON)


def raw_body(request: Any) -> bytes:
    """The body exactly as sent: signatures are computed over these bytes."""
    body = request.raw_body or b""
    return body.encode() if isinstance(body, str) else bytes(body)
