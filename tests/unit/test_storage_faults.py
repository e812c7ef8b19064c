"""chalicelib.core.dynamodb.classify: a failed storage call is the store's fault (503 with
Retry-After), the caller's (a value DynamoDB cannot take: 4xx) or ours (None: the edge's 500)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, ParamValidationError

from chalicelib.core.dynamodb import classify


def _error(code: str, message: str = "", status: int = 400, **extra: object) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},  # type: ignore[typeddict-item]
                        "ResponseMetadata": {"HTTPStatusCode": status}, **extra}, "PutItem")


@pytest.mark.parametrize(("exc", "status", "reason"), [
    (_error("ProvisionedThroughputExceededException"), 503, "storage_throttled"),
    (_error("ThrottlingException"), 503, "storage_throttled"),
    (_error("RequestLimitExceeded"), 503, "storage_throttled"),
    (_error("InternalServerError", status=500), 503, "storage_unavailable"),
    (_error("SomethingNew", status=503), 503, "storage_unavailable"),
    (ConnectTimeoutError(endpoint_url="http://x"), 503, "storage_unavailable"),
    (_error("TransactionConflictException"), 503, "busy"),
    (_error("TransactionCanceledException", CancellationReasons=[
        {"Code": "None"}, {"Code": "ThrottlingError", "Message": "throttled"}]),
     503, "storage_throttled"),
    (_error("TransactionCanceledException", CancellationReasons=[
        {"Code": "ValidationError", "Message": "One or more parameter values were invalid: "
                                               "An AttributeValue may not contain an empty "
                                               "string"}]), 400, "invalid_request"),
    (_error("ValidationException", "Item size has exceeded the maximum allowed size"),
     413, "payload_too_large"),
    (_error("ValidationException", "Item size to update has exceeded the maximum allowed size"),
     413, "payload_too_large"),
    (_error("ValidationException", "One or more parameter values were invalid: Aggregated "
                                   "size of all range keys has exceeded the size limit of "
                                   "1024 bytes"), 400, "invalid_request"),
    (_error("ValidationException", "Nesting Levels have exceeded supported limits"),
     400, "invalid_request"),
    (_error("ValidationException", "Supplied AttributeValue is empty, must contain exactly "
                                   "one of the supported datatypes; Empty attribute name"),
     400, "invalid_request"),
])
def test_storage_failures_are_the_stores_and_bad_values_the_callers(
        exc: Exception, status: int, reason: str) -> None:
    answer = classify(exc)
    assert answer is not None
    assert (answer.status, answer.reason) == (status, reason)
    assert ("retry_after" in answer.details) is (status == 503)


@pytest.mark.parametrize("exc", [
    _error("ValidationException", "Invalid UpdateExpression: Syntax error; token: \"x\""),
    _error("ValidationException", "The provided key element does not match the schema"),
    _error("ResourceNotFoundException", "Requested resource not found"),
    _error("AccessDeniedException", "not authorized"),
    _error("ConditionalCheckFailedException"),
    ParamValidationError(report="bad"),
    KeyError("x"),
])
def test_our_own_mistakes_are_left_to_the_500(exc: Exception) -> None:
    assert classify(exc) is None
