"""dynamodb.retrying: the one retry loop of contended writes (issue 14, item 1), without AWS."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from chalicelib.core import aws
from chalicelib.core.dynamodb import (
    ATTEMPTS,
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    TransactionConflict,
    ambiguous,
    backoff,
    classify,
    contention,
    retrying,
)
from chalicelib.core.errors import Busy


def cancelled(*codes: str) -> ClientError:
    return ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "x"},
                        "CancellationReasons": [{"Code": code} for code in codes],
                        "ResponseMetadata": {"HTTPStatusCode": 400}}, "TransactWriteItems")


def error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "x"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem")


def failing(*failures: BaseException, result: str = "done") -> tuple[Callable[[], str],
                                                                     list[int]]:
    """An attempt that raises each of `failures` in turn, then answers `result`."""
    calls = [0]

    def attempt() -> str:
        calls[0] += 1
        if calls[0] <= len(failures):
            raise failures[calls[0] - 1]
        return result

    return attempt, calls


class Pauses(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_a_transient_conflict_is_retried_with_jittered_growing_pauses() -> None:
    pauses = Pauses()
    attempt, calls = failing(*[cancelled("None", "TransactionConflict")] * (ATTEMPTS - 1))
    assert retrying(attempt, "job", sleep=pauses) == "done"
    assert calls == [ATTEMPTS] and len(pauses) == ATTEMPTS - 1
    assert all(0 <= p <= min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** n)
               for n, p in enumerate(pauses))
    draws = {round(backoff(3), 6) for _ in range(50)}
    assert len(draws) > 40  # full jitter: writers that collided do not collide again in step


def test_a_conflict_that_outlasts_the_attempts_is_busy() -> None:
    attempt, calls = failing(*[error("TransactionConflictException")] * ATTEMPTS)
    with pytest.raises(Busy) as raised:
        retrying(attempt, "job", sleep=Pauses())
    assert calls == [ATTEMPTS]
    assert (raised.value.status, raised.value.reason) == (503, "busy")


def test_a_throttled_cancellation_is_retried_then_raised_as_throttling() -> None:
    attempt, _ = failing(cancelled("ThrottlingError"), result="ok")
    assert retrying(attempt, "job", sleep=Pauses()) == "ok"
    attempt, calls = failing(*[cancelled("ThrottlingError")] * ATTEMPTS)
    with pytest.raises(ClientError) as raised:
        retrying(attempt, "job", sleep=Pauses())
    answer = classify(raised.value)
    assert calls == [ATTEMPTS] and answer is not None and answer.reason == "storage_throttled"


def test_a_failed_guard_is_decided_again_only_by_a_reader() -> None:
    attempt, calls = failing(TransactionConflict(frozenset({"job"})))
    assert retrying(attempt, "job", sleep=Pauses()) == "done" and calls == [2]
    attempt, calls = failing(TransactionConflict(frozenset({"job"})))
    with pytest.raises(TransactionConflict):
        retrying(attempt, "job", reread=False, sleep=Pauses())
    assert calls == [1]


@pytest.mark.parametrize("lost", [ReadTimeoutError(endpoint_url="x"),
                                  error("InternalServerError", 500)])
def test_a_lost_answer_gets_one_more_attempt_that_reads(lost: BaseException) -> None:
    attempt, calls = failing(lost)
    assert retrying(attempt, "job", sleep=Pauses()) == "done" and calls == [2]
    attempt, calls = failing(lost, lost)  # once only: botocore has retried it already
    with pytest.raises(type(lost)):
        retrying(attempt, "job", sleep=Pauses())
    assert calls == [2]
    attempt, calls = failing(lost)
    with pytest.raises(type(lost)):
        retrying(attempt, "job", reread=False, sleep=Pauses())
    assert calls == [1]


@pytest.mark.parametrize("failure", [
    error("ValidationException"), error("ConditionalCheckFailedException"),
    error("ProvisionedThroughputExceededException"),  # botocore retried it already
    EndpointConnectionError(endpoint_url="x"),  # never sent: nothing to find
    cancelled("ConditionalCheckFailed", "TransactionConflict"),  # an answer, not a collision
])
def test_anything_else_is_raised_at_once(failure: BaseException) -> None:
    pauses = Pauses()
    attempt, calls = failing(failure)
    with pytest.raises(type(failure)):
        retrying(attempt, "job", sleep=pauses)
    assert calls == [1] and pauses == []


def test_a_request_deadline_stops_the_retries_early(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aws, "remaining", lambda: 0.01)  # no time for another attempt
    attempt, calls = failing(*[cancelled("TransactionConflict")] * ATTEMPTS)
    with pytest.raises(Busy):
        retrying(attempt, "job", sleep=Pauses())
    assert calls == [1]


def test_what_counts_as_contention_and_as_a_lost_answer() -> None:
    assert contention(cancelled("None", "TransactionConflict")) == "conflict"
    assert contention(error("TransactionConflictException")) == "conflict"
    assert contention(cancelled("ThrottlingError", "None")) == "throttled"
    assert contention(cancelled("ValidationError", "TransactionConflict")) is None
    assert contention(error("ThrottlingException")) is None
    assert ambiguous(ReadTimeoutError(endpoint_url="x"))
    assert ambiguous(error("InternalServerError", 500))
    assert not ambiguous(error("ThrottlingException"))
    assert not ambiguous(EndpointConnectionError(endpoint_url="x"))
    assert not ambiguous(error("ValidationException"))
