"""The runner: reads an app's event sources, polls its queues and streams, fires its schedules
and invokes its handlers as Lambda would; in the foreground for tests, in threads for
`make run`."""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from types import ModuleType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import (
    BaseEventSourceConfig,
    Chalice,
    DynamoDBEventConfig,
    ScheduledEventConfig,
    SQSEventConfig,
)

from devstack.events.clock import as_utc, utcnow
from devstack.events.pollers import Function, Handler, QueuePoller, StreamPoller
from devstack.events.schedules import RateSchedule, parse_schedule
from devstack.events.shapes import Json, LambdaContext, scheduled_event

# One logger for the whole runner, as when it was one module: `make run` labels its lines
# devstack.events and tests capture them by that name.
logger = logging.getLogger("devstack.events")

# moto's default account; used only if STS cannot be asked.
_DEFAULT_ACCOUNT = "123456789012"
_ERROR_BACKOFF = 1.0  # pause of a background loop after an unexpected error
_QUEUE_IDLE = 0.2  # pause of a queue loop whose receive returned at once with nothing
_SCHEDULE_TICK = 0.25
_STOP_TIMEOUT = 1.8


def _resolve_handler(
    app: Chalice, app_module: ModuleType, config: BaseEventSourceConfig
) -> Handler:
    """The callable Lambda would run for ``handler_string`` (``app.name`` or a blueprint's)."""
    module_name, _, attribute = config.handler_string.rpartition(".")
    module = app_module if module_name in ("", "app") else importlib.import_module(module_name)
    handler = getattr(module, attribute, None) or app.handler_map.get(config.name)
    if not callable(handler):
        raise ValueError(f"{config.handler_string}: no such handler in {module.__name__}")
    return handler


@dataclass
class _Rule:
    function: Function
    schedule: RateSchedule
    expression: str
    rule_name: str
    anchor: datetime  # when the rule "was created": rate schedules count from here
    next_due: datetime


@dataclass
class _ScheduleRetry:
    rule: _Rule
    event: Json
    attempt: int  # retries made so far, including this one
    at: float  # time.monotonic() when due


class EventRunner:
    """Runs an app's queue consumers, stream consumers and schedules against an AWS endpoint.

    Drive it with :meth:`poll_once` / :meth:`drain` (tests) or :meth:`start` / :meth:`stop`
    (the local stack). Clients come from ``session``, so the endpoint comes from the
    environment (``AWS_ENDPOINT_URL``).
    """

    def __init__(
        self,
        app: Chalice,
        app_module: ModuleType,
        session: boto3.session.Session,
        *,
        stream_failure_queue_url: str | None = None,
        max_retry_attempts: int = 5,
        retry_visibility_seconds: int = 2,
        clock: Callable[[], datetime] = utcnow,
        stage: str = "local",
        account_id: str | None = None,
        sqs_wait_seconds: int = 1,
        stream_poll_interval: float = 0.5,
        stream_retry_backoff: float = 0.5,
        stream_retry_backoff_max: float = 8.0,
        schedule_retry_delays: Sequence[float] = (1.0, 2.0),
        function_timeout_seconds: float = 60.0,
        function_memory_mb: int = 128,
        chalice_config: Mapping[str, Any] | None = None,
    ) -> None:
        """Read the event sources of ``app``; nothing is polled until asked.

        ``retry_visibility_seconds``: how long a failed SQS message stays invisible before its
        next try (AWS waits for the queue's visibility timeout). ``max_retry_attempts``: stream
        retries per record before giving up (-1: forever). ``sqs_wait_seconds``: the long poll
        of each receive (0 makes :meth:`drain` fast in tests). ``schedule_retry_delays``: the
        pauses before Lambda's two async retries of a failed scheduled invocation (none where
        the deployment turns them off, as EventInvokeConfig does). ``chalice_config``: the
        app's .chalice/config.json, whose ``lambda_timeout`` and ``lambda_memory_size`` (per
        function, else the app's) each function's context reports, as Lambda's does, so a
        function that works to its remaining time gets the time it has in the cloud; without
        it, ``function_timeout_seconds`` and ``function_memory_mb``.
        """
        if max_retry_attempts < -1:
            raise ValueError("max_retry_attempts must be -1 (forever) or more")
        if not 0 <= retry_visibility_seconds <= 43200:
            raise ValueError("retry_visibility_seconds must be within 0-43200 (SQS's limit)")
        if not 0 <= sqs_wait_seconds <= 20:
            raise ValueError("sqs_wait_seconds must be within 0-20 (SQS's limit)")
        self.stream_failure_queue_url = stream_failure_queue_url
        self.max_retry_attempts = max_retry_attempts
        self.retry_visibility_seconds = retry_visibility_seconds
        self._clock = clock
        self._app_name = app.app_name
        self._stage = stage
        self._account_id = account_id
        self._sqs_wait_seconds = sqs_wait_seconds
        self._stream_poll_interval = stream_poll_interval
        self._stream_backoff = (stream_retry_backoff, stream_retry_backoff_max)
        self._schedule_retry_delays = tuple(schedule_retry_delays)
        self._timeout = function_timeout_seconds
        self._memory = function_memory_mb
        self._config = chalice_config or {}
        self.region = str(session.region_name or "us-east-1")
        config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5)
        self.sqs = session.client("sqs", config=config)
        self.streams = session.client("dynamodbstreams", config=config)
        self._sts = session.client("sts", config=config)
        self._queues: list[QueuePoller] = []
        self._streams: list[StreamPoller] = []
        self._rules: list[_Rule] = []
        self._schedule_retries: list[_ScheduleRetry] = []
        self._schedule_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: dict[str, str] = {}  # last polling error per source, to log it once
        self._load_sources(app, app_module)

    # -- setup --------------------------------------------------------------------------------

    def _load_sources(self, app: Chalice, app_module: ModuleType) -> None:
        created = self.now()
        for config in app.event_sources:
            if isinstance(config, SQSEventConfig):
                self._queues.append(
                    QueuePoller(self, config, self._function(app, app_module, config))
                )
            elif isinstance(config, DynamoDBEventConfig):
                self._streams.append(
                    StreamPoller(self, config, self._function(app, app_module, config))
                )
            elif isinstance(config, ScheduledEventConfig):
                self._rules.append(
                    self._rule(config, self._function(app, app_module, config), created)
                )
            else:
                logger.warning("%s (%s) is not run locally", config.name, type(config).__name__)

    def _function(
        self, app: Chalice, app_module: ModuleType, config: BaseEventSourceConfig
    ) -> Function:
        own = self._config.get("lambda_functions", {}).get(config.name, {})
        timeout = own.get("lambda_timeout", self._config.get("lambda_timeout"))
        memory = own.get("lambda_memory_size", self._config.get("lambda_memory_size"))
        return Function(
            function_name=f"{self._app_name}-{self._stage}-{config.name}",
            handler=_resolve_handler(app, app_module, config),
            timeout_seconds=None if timeout is None else float(timeout),
            memory_mb=None if memory is None else int(memory),
        )

    def _rule(self, config: ScheduledEventConfig, function: Function, created: datetime) -> _Rule:
        expression = config.schedule_expression
        text = expression if isinstance(expression, str) else expression.to_string()
        try:
            schedule = parse_schedule(text)
        except ValueError as exc:
            # Raised while the runner reads the app, so `make run` stops at start-up and says
            # which handler's schedule it cannot run.
            raise ValueError(f"schedule of {config.name}: {exc}") from None
        return _Rule(
            function=function,
            schedule=schedule,
            expression=text,
            rule_name=f"{function.function_name}-event",  # as `chalice deploy` names rules
            anchor=created,
            next_due=schedule.next_fire(created, created),
        )

    # -- what the pollers use of the runner (pollers.Runner) -----------------------------------

    def now(self) -> datetime:
        return as_utc(self._clock())

    @property
    def account_id(self) -> str:
        if self._account_id is None:
            try:
                self._account_id = str(self._sts.get_caller_identity()["Account"])
            except (BotoCoreError, ClientError):
                logger.warning("could not ask STS for the account id; using %s", _DEFAULT_ACCOUNT)
                self._account_id = _DEFAULT_ACCOUNT
        return self._account_id

    def function_arn(self, function: Function) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{function.function_name}"

    def stream_backoff(self, failures: int) -> float:
        base, cap = self._stream_backoff
        return float(min(base * 2 ** (failures - 1), cap))

    def invoke(self, function: Function, event: Json, what: str) -> tuple[bool, Any]:
        """Call the handler as Lambda would; (False, None) if it raised."""
        # Lambda hands the function parsed JSON and serializes its result; doing the same here
        # catches events or results that would not survive the trip in the cloud.
        payload = json.loads(json.dumps(event))
        context = LambdaContext(
            function_name=function.function_name,
            function_arn=self.function_arn(function),
            memory_mb=function.memory_mb or self._memory,
            timeout_seconds=function.timeout_seconds or self._timeout,
        )
        started = time.monotonic()
        try:
            result = json.loads(json.dumps(function.handler(payload, context)))
        except Exception:
            logger.exception(
                "%s failed on %s (request %s)", function.function_name, what, context.aws_request_id
            )
            return False, None
        elapsed = (time.monotonic() - started) * 1000
        logger.info("%s handled %s in %.0f ms", function.function_name, what, elapsed)
        return True, result

    # -- public API ---------------------------------------------------------------------------

    def poll_once(self) -> int:
        """One pass over every queue and stream, then the due schedules; returns records handled."""
        steps: list[tuple[str, Callable[[], int]]] = [
            (q.name, partial(q.poll, self._sqs_wait_seconds)) for q in self._queues
        ]
        steps += [(s.name, s.poll) for s in self._streams]
        steps.append(("schedules", self.fire_schedules))
        return sum(self._safely(name, step) or 0 for name, step in steps)

    def drain(self, timeout: float = 30.0, idle_passes: int = 2) -> None:
        """Poll until ``idle_passes`` passes in a row handle nothing and no retry is pending.

        Raises TimeoutError if that does not happen within ``timeout`` seconds (for example a
        message that always fails on a queue without a dead-letter queue).
        """
        deadline = time.monotonic() + timeout
        idle = 0
        while idle < idle_passes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"event runner still busy after {timeout} s")
            handled = self.poll_once()
            waiting = self._retry_pending()
            idle = 0 if handled or waiting is not None else idle + 1
            if not handled and waiting is not None:
                time.sleep(min(waiting, 0.1))

    def fire_schedules(self, now: datetime | None = None) -> int:
        """Run the retries that are due and every schedule due at ``now``; returns invocations."""
        moment = self.now() if now is None else as_utc(now)
        with self._schedule_lock:
            invoked = self._run_schedule_retries()
            for rule in self._rules:
                if rule.next_due > moment:
                    continue
                due = rule.next_due
                # Missed fires (the runner was not running) collapse into one, like a late rule.
                rule.next_due = rule.schedule.next_fire(moment, rule.anchor)
                self._fire(rule, self._scheduled_event(rule, due), attempt=0)
                invoked += 1
            return invoked

    def start(self) -> None:
        """Poll in background threads (one per queue and stream, one for schedules)."""
        if self._threads:
            raise RuntimeError("the event runner is already running")
        self._stop.clear()
        loops: list[tuple[str, Callable[[], int], float]] = [
            (f"sqs {q.name}", partial(q.poll, self._sqs_wait_seconds), _QUEUE_IDLE)
            for q in self._queues
        ]
        loops += [(s.name, s.poll, self._stream_poll_interval) for s in self._streams]
        if self._rules:
            loops.append(("schedules", self.fire_schedules, _SCHEDULE_TICK))
        for name, step, idle in loops:
            thread = threading.Thread(
                target=self._loop, args=(name, step, idle), name=f"events: {name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the background threads; waits at most about 2 s (a long poll ends within 1 s)."""
        self._stop.set()
        deadline = time.monotonic() + _STOP_TIMEOUT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        busy = [thread.name for thread in self._threads if thread.is_alive()]
        if busy:
            logger.warning("still finishing after stop (daemon threads): %s", ", ".join(busy))
        self._threads = []

    # -- internals ----------------------------------------------------------------------------

    def _loop(self, name: str, step: Callable[[], int], idle: float) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            handled = self._safely(name, step)
            if handled is None:
                self._stop.wait(_ERROR_BACKOFF)
            elif not handled:
                self._stop.wait(max(0.0, idle - (time.monotonic() - started)))

    def _safely(self, name: str, step: Callable[[], int]) -> int | None:
        """``step()``, or None if it raised: one broken source must not stop the others."""
        try:
            handled = step()
        except Exception as exc:
            # A source that stays broken would log the same traceback on every pass.
            error = f"{type(exc).__name__}: {exc}"
            repeated = self._errors.get(name) == error
            self._errors[name] = error
            level = logging.DEBUG if repeated else logging.ERROR
            logger.log(level, "event source %s: polling failed", name, exc_info=True)
            return None
        if self._errors.pop(name, None) is not None:
            logger.info("event source %s: polling works again", name)
        return handled

    def _retry_pending(self) -> float | None:
        now = time.monotonic()
        waits = [q.retry_pending() for q in self._queues]
        waits += [s.retry_pending() for s in self._streams]
        with self._schedule_lock:
            waits += [max(0.0, r.at - now) for r in self._schedule_retries]
        pending = [wait for wait in waits if wait is not None]
        return min(pending) if pending else None

    def _scheduled_event(self, rule: _Rule, due: datetime) -> Json:
        rule_arn = f"arn:aws:events:{self.region}:{self.account_id}:rule/{rule.rule_name}"
        return scheduled_event(
            rule_arn=rule_arn,
            account=self.account_id,
            region=self.region,
            time=due,
            event_id=str(uuid.uuid4()),
        )

    def _fire(self, rule: _Rule, event: Json, attempt: int) -> None:
        what = f"{rule.expression} at {event['time']}"
        ok, _ = self.invoke(rule.function, event, what)
        if ok:
            return
        if attempt < len(self._schedule_retry_delays):
            at = time.monotonic() + self._schedule_retry_delays[attempt]
            self._schedule_retries.append(_ScheduleRetry(rule, event, attempt + 1, at))
        else:
            logger.error("%s: gave up on %s after %d attempts", rule.rule_name, what, attempt + 1)

    def _run_schedule_retries(self) -> int:
        now = time.monotonic()
        due = [retry for retry in self._schedule_retries if retry.at <= now]
        self._schedule_retries = [retry for retry in self._schedule_retries if retry.at > now]
        for retry in due:
            # Lambda's async retries deliver the same event (same id) again.
            self._fire(retry.rule, retry.event, retry.attempt)
        return len(due)
