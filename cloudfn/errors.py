"""One exception hierarchy: `CloudFnError` above everything the SDK raises; `ApiError` for an error answer, with
the API's HTTP status, error `code` and `message` (`{"error": {"code", "message"}}`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from cloudfn.models import Task


class CloudFnError(Exception):
    """Base of every error the SDK raises."""


class LocalInputError(CloudFnError, ValueError):
    """Bad input caught before anything was sent (a missing path, a folder that cannot be bundled)."""


class ConnectionFailedError(CloudFnError):
    """The API could not be reached (refused, DNS, TLS, timeout)."""

    def __init__(self, url: str, cause: Exception) -> None:
        super().__init__(f"cannot reach the API at {url} ({cause or type(cause).__name__}); is `cloudfn up` running?")
        self.url = url


class ApiError(CloudFnError):
    """The API answered with an error status; `code` and `message` are the API's own."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail or {}


class InvalidInputError(ApiError):
    """400: the request is malformed or breaks a rule (`invalid_input`, `invalid_bundle`, ...)."""


class HandlerCheckError(InvalidInputError):
    """422 `handler_check_failed`: the handler does not import or resolve to a callable."""


class BundleTooLargeError(InvalidInputError):
    """413 `bundle_too_large`: the archive exceeds a size cap."""


class UnauthorizedError(ApiError):
    """401: a missing or wrong API key."""


class ForbiddenError(ApiError):
    """403: the key's role does not allow the request."""


class NotFoundError(ApiError):
    """404: an unknown function, task, pipeline, rule or route."""


class ConflictError(ApiError):
    """409: the resource's state forbids the request (e.g. invoking an inactive function)."""


class OverloadedError(ApiError):
    """429 `overloaded`: a bounded queue is full; retry after `retry_after_s`."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None,
                 retry_after_s: float = 1.0) -> None:
        super().__init__(status, code, message, detail)
        self.retry_after_s = retry_after_s


class ServerError(ApiError):
    """5xx: the platform failed (never the caller's input)."""


class ServiceUnavailableError(ServerError):
    """503: a part of the platform (database, Ray, the jail) is not available."""


class SandboxUnavailableError(ServiceUnavailableError):
    """503 `sandbox_unavailable`: the jail cannot be applied, so nothing was deployed or queued."""


class WaitTimeoutError(CloudFnError, TimeoutError):
    """A task did not end within the time the caller gave; `task` is its last record seen."""

    def __init__(self, task_id: str, timeout_s: float, task: Task | None) -> None:
        status = task.status if task is not None else "unknown"
        super().__init__(f"task {task_id} did not end within {timeout_s:g} s (status {status})")
        self.task_id = task_id
        self.task = task


class TaskFailedError(CloudFnError):
    """A task ended other than `succeeded`; `task` is its record, `error` the handler's error (if any)."""

    def __init__(self, task: Task) -> None:
        err = task.error
        what = f"{err.type}: {err.message}" if err is not None else task.status
        super().__init__(f"task {task.task_id} of {task.function} ended {task.status}: {what}")
        self.task = task
        self.error = err


BY_CODE: dict[str, type[ApiError]] = {
    "handler_check_failed": HandlerCheckError, "bundle_too_large": BundleTooLargeError,
    "sandbox_unavailable": SandboxUnavailableError, "overloaded": OverloadedError,
    "unauthorized": UnauthorizedError, "forbidden": ForbiddenError, "not_found": NotFoundError,
    "conflict": ConflictError,
}
BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidInputError, 401: UnauthorizedError, 403: ForbiddenError, 404: NotFoundError, 409: ConflictError,
    413: BundleTooLargeError, 422: HandlerCheckError, 429: OverloadedError, 503: ServiceUnavailableError,
}


def error_class(status: int, code: str) -> type[ApiError]:
    """The exception class for an error answer: by the API's code when it names one, else by HTTP status."""
    if code in BY_CODE:
        return BY_CODE[code]
    if status in BY_STATUS:
        return BY_STATUS[status]
    return ServerError if status >= 500 else ApiError


def from_response(r: httpx.Response) -> ApiError:
    """The exception for an error answer, carrying the API's code, message and any extra detail."""
    code, message, detail = f"http_{r.status_code}", r.text[:300] or r.reason_phrase, {}
    try:
        err = r.json()["error"]
        code, message = str(err["code"]), str(err["message"])
        detail = {k: v for k, v in err.items() if k not in ("code", "message")}
    except (ValueError, KeyError, TypeError):
        pass
    cls = error_class(r.status_code, code)
    if issubclass(cls, OverloadedError):
        return cls(r.status_code, code, message, detail, retry_after_s=_retry_after(r))
    return cls(r.status_code, code, message, detail)


def _retry_after(r: httpx.Response) -> float:
    try:
        return max(0.0, float(r.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0
