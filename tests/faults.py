"""AWS's faults, made on demand: the local endpoint never throttles, never cancels a transaction
for a conflict and never times out, and AWS does all three.

`Faults` hooks botocore's `before-send` event on every client `chalicelib.core.aws` hands out
while it is installed, so the app's calls (and only the app's: a test's own boto3 clients are
left alone) pass through it on their way to the endpoint. A rule chooses calls (service,
operations, tables, a predicate on the request, a probability, a count, the first calls to let
through) and a fault, which reaches the app exactly as AWS's would, through botocore's parsing
and its retries (the app's clients: standard mode, 3 retries, so 4 attempts, for throttling,
service errors and timeouts; none for a cancelled transaction, none for the clients of a
request with a deadline, which `aws.within_deadline` retries):

  conflict               TransactWriteItems / TransactGetItems: TransactionCanceledException,
                         one item's cancellation reason `TransactionConflict` (another
                         transaction holds it); PutItem, UpdateItem, DeleteItem:
                         TransactionConflictException. Reads are never in conflict.
  throttled_transaction  TransactWriteItems: TransactionCanceledException, reason ThrottlingError
  throughput             ProvisionedThroughputExceededException (400)
  throttling             ThrottlingException (400)
  request_limit          RequestLimitExceeded (400)
  internal               InternalServerError (500)
  timeout                the request is sent nowhere and no answer comes: ReadTimeoutError
  timeout_after_commit   the request reaches the endpoint and is carried out, then its answer
                         is lost: ReadTimeoutError (what makes "find it done, not do it twice"
                         matter: botocore sends the same request again)
  connection             the endpoint cannot be reached: EndpointConnectionError

A rule counts each attempt botocore makes (so `count=4`, OUTLASTS_BOTOCORE, outlasts botocore's
retries of one call, `count=1` is cured by them). Use it as the `faults` fixture
(tests/conftest.py), or directly:

    faults = Faults(seed=1)
    with faults.installed():
        faults.add("conflict", operations={"TransactWriteItems"}, tables={"jobs"}, count=2)
        ...
    faults.injected  # Counter of (kind, operation) actually made

Or a storm: `faults.storm(0.05)` fails 5 % of every DynamoDB call's attempts, each with a
kind drawn at random from those that can befall it (bench/fault_storm.py).

Table names are the app's short names (`jobs`, `orders`, `inbox`, `cases`, ...: settings'
`<name>_table`) or physical names.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

OUTLASTS_BOTOCORE = 4  # attempts of one call by the app's plain clients
KINDS = ("conflict", "throttled_transaction", "throughput", "throttling", "request_limit",
         "internal", "timeout", "timeout_after_commit", "connection")
# Kinds after which nothing was written: an error answered, or no request made.
NOT_WRITTEN = tuple(kind for kind in KINDS if kind != "timeout_after_commit")
_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_TRANSACTIONS = frozenset({"TransactWriteItems", "TransactGetItems"})
_DYNAMODB_ERROR = "com.amazonaws.dynamodb.v20120810#"


@dataclass(frozen=True)
class Call:
    """One attempt of an API call, as the fault layer sees it."""

    service: str
    operation: str
    params: dict[str, Any]  # the request body (JSON protocols), {} otherwise
    tables: frozenset[str]  # physical names


@dataclass
class Rule:
    kind: str
    service: str = "dynamodb"
    operations: frozenset[str] = frozenset()  # empty: any
    tables: frozenset[str] = frozenset()  # physical or short names; empty: any
    probability: float = 1.0
    count: int | None = None  # at most this many faults; None: no limit
    skip: int = 0  # let this many matching calls through first
    where: Callable[[Call], bool] | None = None
    seen: int = 0
    made: int = 0

    def applies(self, call: Call, names: Callable[[str], str]) -> bool:
        if call.service != self.service:
            return False
        if self.operations and call.operation not in self.operations:
            return False
        if self.kind == "conflict" and call.operation not in _WRITES | _TRANSACTIONS:
            return False  # AWS never refuses a read for a conflict
        if self.kind == "throttled_transaction" and call.operation != "TransactWriteItems":
            return False
        if self.tables and not {names(t) for t in self.tables} & call.tables:
            return False
        return self.where is None or self.where(call)

    @property
    def spent(self) -> bool:
        return self.count is not None and self.made >= self.count


class Faults:
    """The fault layer: rules, and the hook that applies them (see the module's docstring)."""

    def __init__(self, seed: int | None = None, backoff_scale: float = 1.0) -> None:
        """`backoff_scale`: botocore's own pauses between its retries, scaled (tests use a
        hundredth: the same exponential, jittered schedule, without waiting seconds)."""
        self.rules: list[Rule] = []
        self.backoff_scale = backoff_scale
        self._real_delay: Any = None
        self.injected: Counter[tuple[str, str]] = Counter()
        self.calls: Counter[str] = Counter()  # attempts seen, by operation
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._hooked: dict[int, Any] = {}  # id(client) -> client
        self._storm: tuple[float, tuple[str, ...], str] | None = None
        self._real_client: Callable[[str], Any] | None = None
        self._enabled = True

    # Rules -----------------------------------------------------------------------------------

    def add(self, kind: str, *, service: str = "dynamodb", operations: Collection[str] = (),
            tables: Collection[str] = (), probability: float = 1.0, count: int | None = None,
            skip: int = 0, where: Callable[[Call], bool] | None = None) -> Rule:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(KINDS)}")
        rule = Rule(kind, service, frozenset(operations), frozenset(tables), probability, count,
                    skip, where)
        with self._lock:
            self.rules.append(rule)
        return rule

    def storm(self, probability: float, kinds: Collection[str] = KINDS, *,
              service: str = "dynamodb") -> None:
        """Besides the rules: each attempt of any call to `service` fails with `probability`,
        with a kind drawn (seeded) from those of `kinds` that can befall it (a conflict only
        a write, a throttled cancellation only a transaction). `clear()` ends it."""
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}")
        with self._lock:
            self._storm = (probability, tuple(kinds), service)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self._storm = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No fault while inside (a test's own checks through the app's stores)."""
        self._enabled = False
        try:
            yield
        finally:
            self._enabled = True

    def total(self, kind: str | None = None) -> int:
        return sum(n for (k, _), n in self.injected.items() if kind is None or k == kind)

    # Installing ------------------------------------------------------------------------------

    def install(self) -> None:
        """Hook every client `chalicelib.core.aws.client` hands out from now on (it is the app's
        one factory of clients; cached clients are hooked when next handed out)."""
        from chalicelib.core import aws

        if self._real_client is not None:
            return
        real = self._real_client = aws.client
        if self.backoff_scale != 1.0:
            from botocore.retries import standard

            self._real_delay = real_delay = standard.ExponentialBackoff.delay_amount
            scale = self.backoff_scale

            def delay_amount(backoff: Any, context: Any) -> float:
                return float(real_delay(backoff, context)) * scale

            standard.ExponentialBackoff.delay_amount = delay_amount

        def client(service: str) -> Any:
            made = real(service)
            if id(made) not in self._hooked:
                made.meta.events.register("before-send", self._before_send,
                                          unique_id=f"faults-{id(self)}")
                self._hooked[id(made)] = made
            return made

        aws.client = client

    def uninstall(self) -> None:
        from chalicelib.core import aws

        if self._real_client is None:
            return
        aws.client = self._real_client  # type: ignore[assignment]
        self._real_client = None
        if self._real_delay is not None:
            from botocore.retries import standard

            standard.ExponentialBackoff.delay_amount = self._real_delay
            self._real_delay = None
        for made in self._hooked.values():
            made.meta.events.unregister("before-send", unique_id=f"faults-{id(self)}")
        self._hooked.clear()

    @contextmanager
    def installed(self) -> Iterator[Faults]:
        self.install()
        try:
            yield self
        finally:
            self.uninstall()

    # The hook --------------------------------------------------------------------------------

    def _before_send(self, request: Any, event_name: str, **_: Any) -> Any:
        if not self._enabled:
            return None
        _event, service, operation = event_name.split(".", 2)
        call = _call(service, operation, request)
        with self._lock:
            self.calls[operation] += 1
            rule = self._choose(call)
            kind = rule.kind if rule is not None else self._stormy(call)
            if kind is None:
                return None
            self.injected[(kind, operation)] += 1
            hit = self._random.randrange(max(1, len(call.params.get("TransactItems", []))))
        return _make(kind, call, request, hit)

    def _stormy(self, call: Call) -> str | None:
        """The storm's fault for this call, if it draws one."""
        if self._storm is None:
            return None
        probability, kinds, service = self._storm
        if call.service != service or self._random.random() >= probability:
            return None
        fitting = [kind for kind in kinds if Rule(kind, service).applies(call, _physical)]
        return self._random.choice(fitting) if fitting else None

    def _choose(self, call: Call) -> Rule | None:
        for rule in self.rules:
            if rule.spent or not rule.applies(call, _physical):
                continue
            rule.seen += 1
            if rule.seen <= rule.skip:
                continue
            if rule.probability < 1.0 and self._random.random() >= rule.probability:
                continue
            rule.made += 1
            return rule
        return None


def _physical(name: str) -> str:
    """A short table name (`jobs`) as the stage names it; a physical name as it is."""
    from chalicelib.core.settings import settings

    return str(getattr(settings(), f"{name}_table", name))


def _call(service: str, operation: str, request: Any) -> Call:
    params: dict[str, Any] = {}
    body = request.body
    if body and service in ("dynamodb", "dynamodbstreams"):
        raw = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) \
            else b""
        try:
            params = json.loads(raw) if raw else {}
        except ValueError:
            params = {}
    tables: set[str] = set()
    if "TableName" in params:
        tables.add(params["TableName"])
    for entry in params.get("TransactItems", []):
        for body_ in entry.values():
            tables.add(body_.get("TableName", ""))
    tables.update(params.get("RequestItems", {}))
    return Call(service, operation, params, frozenset(tables))


# Making a fault ------------------------------------------------------------------------------


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _answer(request: Any, status: int, code: str, message: str, **extra: Any) -> Any:
    from botocore.awsrequest import AWSResponse

    body = json.dumps({"__type": _DYNAMODB_ERROR + code, "message": message, **extra}).encode()
    return AWSResponse(request.url, status, {
        "Content-Type": "application/x-amz-json-1.0", "Content-Length": str(len(body)),
        "x-amzn-RequestId": uuid.uuid4().hex}, _Body(body))


def _cancelled(request: Any, call: Call, hit: int, reason: str, message: str) -> Any:
    """`hit`: the item another writer held (or that was throttled)."""
    items = call.params.get("TransactItems") or [{}]
    reasons = [{"Code": reason, "Message": message} if n == hit else {"Code": "None"}
               for n in range(len(items))]
    return _answer(request, 400, "TransactionCanceledException",
                   f"Transaction cancelled, please refer cancellation reasons for specific "
                   f"reasons [{', '.join(r['Code'] for r in reasons)}]",
                   CancellationReasons=reasons)


def _make(kind: str, call: Call, request: Any, hit: int) -> Any:
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    if kind == "conflict":
        if call.operation in _TRANSACTIONS:
            return _cancelled(request, call, hit, "TransactionConflict",
                              "Transaction is ongoing for the item")
        return _answer(request, 400, "TransactionConflictException",
                       "Transaction is ongoing for the item")
    if kind == "throttled_transaction":
        return _cancelled(request, call, hit, "ThrottlingError",
                          "Throughput exceeds the current capacity for one or more global "
                          "secondary indexes. DynamoDB is automatically scaling your index.")
    if kind == "throughput":
        return _answer(request, 400, "ProvisionedThroughputExceededException",
                       "The level of configured provisioned throughput for the table was "
                       "exceeded. Consider increasing your provisioning level with the "
                       "UpdateTable API.")
    if kind == "throttling":
        return _answer(request, 400, "ThrottlingException", "Rate of requests exceeds the "
                       "allowed throughput.")
    if kind == "request_limit":
        return _answer(request, 400, "RequestLimitExceeded", "Throughput exceeds the current "
                       "throughput limit for your account. Please contact AWS Support at "
                       "https://aws.amazon.com/support request a limit increase")
    if kind == "internal":
        return _answer(request, 500, "InternalServerError", "Internal server error")
    if kind == "timeout_after_commit":
        _send(request)  # carried out; the answer never arrives
        raise ReadTimeoutError(endpoint_url=request.url)
    if kind == "timeout":
        raise ReadTimeoutError(endpoint_url=request.url)
    if kind == "connection":
        raise EndpointConnectionError(endpoint_url=request.url)
    raise ValueError(kind)


def _send(request: Any) -> None:
    import urllib3

    body = request.body
    if hasattr(body, "read"):
        body = body.read()
    urllib3.PoolManager().request(request.method, request.url, body=body,
                                  headers=dict(request.headers.items()), retries=False)
