"""Errors that carry an HTTP status and a machine-readable reason to the caller."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A caller's mistake (4xx) or our temporary fault (5xx), with a stable reason code."""

    def __init__(self, status: int, reason: str, message: str = "", **details: Any) -> None:
        super().__init__(message or reason)
        self.status = status
        self.reason = reason
        self.message = message or reason.replace("_", " ")
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.reason, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class NotFound(ApiError):
    def __init__(self, what: str) -> None:
        super().__init__(404, f"{what}_not_found")


class Conflict(ApiError):
    def __init__(self, reason: str, message: str = "", **details: Any) -> None:
        super().__init__(409, reason, message, **details)


class StorageUnavailable(ApiError):
    """Our storage failed: the sender must retry, so nothing it sent is lost."""

    retryable = True  # an event handler meeting it raises, and its record is retried

    def __init__(self, retry_after: int = 2) -> None:
        super().__init__(503, "storage_unavailable", "storage is temporarily unavailable; retry",
                         retry_after=retry_after)


class StorageThrottled(ApiError):
    """Our storage is over its throughput for the moment: nothing was written; retry soon."""

    retryable = True

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(503, "storage_throttled", "storage is busy; retry shortly",
                         retry_after=retry_after)


class Busy(ApiError):
    """Others kept changing the same thing while we tried: nothing was written; retry."""

    retryable = True

    def __init__(self, what: str) -> None:
        super().__init__(503, "busy", f"the {what} kept changing; retry", retry_after=1)
