"""Logs and metrics for every handler: JSON lines that say whose work they are about, and
CloudWatch metrics, both on stdout where Lambda sends them to CloudWatch.

Logs. Modules log through the standard library as before (`logging.getLogger(__name__)`, text
with %s). `install` gives the `chalicelib` loggers and Chalice's `app.log` one handler, Powertools
Logger's, so every line is one JSON object (service "order-backbone", level, message, timestamp,
location, logger name) carrying the correlation keys of the work at hand: `request_id` (API
Gateway's for HTTP, Lambda's for an event), `function_request_id`, and as they become known
`delivery_id`, `order_id`, `job_id`, `tracking_number`, `case_id`, `note_id`, ... The keys live in
a context variable, not in the formatter: concurrent requests (the local API server's threads)
never mix them, and setting one is a dict copy.

- `invocation` (the app's middleware, once for every route and event handler) starts each
  invocation with its request ids only and ends it by flushing its metrics;
- `unit(**keys)` is one unit of work inside it (a batch record, a parcel, a note, a writeback):
  what it set or tagged is gone when it ends, so a batch's records never share keys;
- `tag(**keys)` adds what becomes known along the way (the order id once the order is read).

An exception is logged by its type and where it happened (file, line, function of each frame),
never by its text: a platform's error may echo a token, a validation error an order's address.
Log messages name things by ids and codes, never by a summary, a body, a URL or a buyer's name,
phone or address.

Metrics. `count(name, **dimensions)` adds to the invocation's counts; `invocation` prints them as
CloudWatch EMF (Powertools Metrics, namespace "OrderBackbone") once, when it ends: one blob per
set of dimension values, each metric also under the service alone (a total to alarm on).
Dimensions are small closed sets (a source, an outcome, a provider), never an id. Outside an
invocation (a test calling a flow, the admin command line) counting does nothing.

Cold start: Powertools is imported by `install` only (once, at app import); `tag`, `unit` and
`count` are a few dict operations each.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

SERVICE = "order-backbone"
NAMESPACE = "OrderBackbone"
LIBRARY_LOGGER = "chalicelib"
_KEY_CHARS = 200  # an id from outside (a delivery id, a tracking number) is bounded on a line
_DIMENSION_CHARS = 64
_FRAMES = 30

Keys = dict[str, object]
Counts = dict[tuple[tuple[str, str], ...], dict[str, float]]

_keys: ContextVar[Keys | None] = ContextVar("correlation_keys", default=None)
_counts: ContextVar[Counts | None] = ContextVar("metric_counts", default=None)
_counting = threading.Lock()
_state = {"cold_start": True, "installed": False}
log = logging.getLogger(__name__)


# Correlation keys ---------------------------------------------------------------------------

def _clean(keys: dict[str, object]) -> Keys:
    return {name: value if isinstance(value, bool | int) else str(value)[:_KEY_CHARS]
            for name, value in keys.items() if value is not None and value != ""}


def tag(**keys: object) -> None:
    """Add keys to the current invocation or unit of work (None and "" are left out); outside
    one, nothing: a key set outside would stay on every later line of the thread."""
    current = _keys.get()
    if current is not None:
        _keys.set({**current, **_clean(keys)})


def current_keys() -> Keys:
    return dict(_keys.get() or {})


@contextmanager
def unit(**keys: object) -> Iterator[None]:
    """One unit of work (a record, a parcel, a note): its keys, on top of the invocation's, for
    as long as it lasts; whatever was set or tagged inside is dropped when it ends."""
    token = _keys.set({**(_keys.get() or {}), **_clean(keys)})
    try:
        yield
    finally:
        _keys.reset(token)


class _WithKeys(logging.Filter):
    """Puts the current keys on each record the handler writes (a key the call passed as
    `extra` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        keys = _keys.get()
        if keys:
            fields = record.__dict__
            for name, value in keys.items():
                fields.setdefault(name, value)
        return True


# Metrics ------------------------------------------------------------------------------------

def count(metric: str, value: float = 1, **dimensions: str) -> None:
    """Add to a metric of the current invocation, flushed when it ends. Dimensions must be a
    small closed set of values (never an id): each combination is a metric CloudWatch keeps."""
    counts = _counts.get()
    if counts is None:
        return
    key = tuple(sorted((name, str(v)[:_DIMENSION_CHARS] or "-") for name, v in dimensions.items()))
    with _counting:  # a scheduled run counts from its pool's threads (chalicelib/core/runs.py)
        values = counts.setdefault(key, {})
        values[metric] = values.get(metric, 0) + value


_writer: list[Any] = []  # one Powertools EphemeralMetrics, made on the first flush
_writing = threading.Lock()  # (the local API server serves requests on threads)


def _flush(counts: Counts) -> None:
    """One EMF blob per set of dimension values, as Powertools Metrics writes it (one instance
    for all: making one costs more than the rest of a flush). POWERTOOLS_METRICS_DISABLED=true
    (the local stack's default) writes none."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    with _writing:
        if not _writer:
            _writer.append(EphemeralMetrics(namespace=NAMESPACE, service=SERVICE))
        metrics = _writer[0]
        for dimensions, values in counts.items():
            try:
                for name, value in dimensions:
                    metrics.add_dimension(name=name, value=value)
                if dimensions:  # the figures per service alone too: the total across values
                    metrics.add_dimensions(service=SERVICE)
                for metric, total in values.items():
                    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=total)
                metrics.flush_metrics()  # prints the blob (unless metrics are disabled)
            finally:
                metrics.clear_metrics()  # nothing of this invocation left for the next


# Invocations --------------------------------------------------------------------------------

@contextmanager
def invocation(context: Any, request_id: str | None = None) -> Iterator[None]:
    """One Lambda invocation: its request ids on every line, its metrics flushed at the end
    (also when it fails: the failure is what the metrics are for)."""
    aws_request_id = getattr(context, "aws_request_id", None)
    keys = _clean({"request_id": request_id or aws_request_id,
                   "function_request_id": aws_request_id,
                   "function_name": getattr(context, "function_name", None),
                   "cold_start": _state["cold_start"]})
    _state["cold_start"] = False
    counts: Counts = {}
    key_token, count_token = _keys.set(keys), _counts.set(counts)
    try:
        yield
    finally:
        _counts.reset(count_token)
        try:
            if counts:
                _flush(counts)
        except Exception:  # metrics must never fail the work they measure
            log.exception("metrics could not be written")
        finally:
            _keys.reset(key_token)


def middleware(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware for every handler ("all"): an HTTP request (its `context` is API
    Gateway's request context, a dict) or an event (its `context` is Lambda's)."""
    context = getattr(event, "context", None)
    if isinstance(context, dict):
        with invocation(getattr(event, "lambda_context", None), context.get("requestId")):
            return get_response(event)
    with invocation(context):
        return get_response(event)


# Exceptions, as a line may show them --------------------------------------------------------

def describe(error: BaseException) -> str:
    """An exception as a log message may name it: its type, an AWS error code, the type of its
    cause; never its text."""
    name = type(error).__name__
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    if isinstance(code, str) and code:
        name += f"({code[:80]})"
    cause = error.__cause__
    if cause is not None:
        name += f" from {describe(cause)}"
    return name


def withheld_traceback(error: BaseException) -> str:
    """Where the exception and what caused it happened (file, line and function of each frame)
    and their types; neither their texts nor the source lines."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n'
                         for frame in traceback.extract_tb(current.__traceback__)[-_FRAMES:])
        parts.append(f"Traceback (most recent call last):\n{frames}"
                     f"{type(current).__module__}.{type(current).__qualname__} "
                     "(text withheld from logs)")
        current = current.__cause__ or (None if current.__suppress_context__
                                        else current.__context__)
    return "\n\nwhile handling the above, or caused by it:\n\n".join(reversed(parts))


# Installing ---------------------------------------------------------------------------------

class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """stdout as it is when the line is written (Lambda's; a test's capture)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def install(app: Any) -> None:
    """Once, in app.py: JSON lines for the `chalicelib` loggers and Chalice's own, and the
    middleware that scopes every invocation (HTTP routes and event handlers alike)."""
    if not _state["installed"]:
        _state["installed"] = True
        _json_logs(app.log)
    app.register_middleware(middleware, "all")


def _json_logs(app_log: logging.Logger) -> None:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    class Formatter(LambdaPowertoolsFormatter):
        def formatException(self, ei: Any) -> str:
            return withheld_traceback(ei[1]) if ei and ei[1] is not None else ""

        def _extract_log_exception(self, log_record: logging.LogRecord,
                                   ) -> tuple[str, str, list[Any]] | tuple[None, None, None]:
            # An exception's notes are text added to it: left out too (None: no key at all).
            text, name, _notes = super()._extract_log_exception(log_record)
            found = (text, name, None) if text is not None else (None, None, None)
            return found  # type: ignore[return-value]

    handler = _Stdout()
    handler.addFilter(_WithKeys())
    # Chalice's app.log is the service's logger: Powertools Logger takes it over (the level
    # from POWERTOOLS_LOG_LEVEL or Lambda's log level, INFO otherwise).
    logger = Logger(service=SERVICE, logger_handler=handler, logger_formatter=Formatter(
        utc=True, use_rfc3339=True, serialize_stacktrace=False,
        log_record_order=["timestamp", "level", "message"]))
    logger.append_keys(name="%(name)s")  # which module's logger
    for other in list(app_log.handlers):  # Chalice's text handler
        if other is not handler:
            app_log.removeHandler(other)
    # Every chalicelib logger writes through the same handler, and only there: Lambda's own
    # handler on the root logger would print each line again, as text.
    library = logging.getLogger(LIBRARY_LOGGER)
    library.handlers = [handler]
    library.propagate = False
    library.setLevel(logger.log_level)
