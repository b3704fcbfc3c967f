"""Domain errors. No HTTP here: serve_app maps each `code` to a status."""

from __future__ import annotations


class CloudFnError(Exception):
    """Base of every error the platform reports to a user."""

    code = "error"

    def __init__(self, message: str, *, detail: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}


class InvalidInput(CloudFnError):
    """The request is malformed or breaks a rule (HTTP 400/422)."""

    code = "invalid_input"


class InvalidBundle(InvalidInput):
    """The uploaded ZIP is rejected (HTTP 400)."""

    code = "invalid_bundle"


class BundleTooLarge(InvalidBundle):
    """The uploaded ZIP exceeds a size cap (HTTP 413)."""

    code = "bundle_too_large"


class HandlerCheckFailed(InvalidInput):
    """The handler does not import or resolve to a callable (HTTP 422)."""

    code = "handler_check_failed"


class NotFound(CloudFnError):
    """An unknown function, task, rule, ... (HTTP 404)."""

    code = "not_found"


class Conflict(CloudFnError):
    """The resource is in a state that forbids the request, e.g. invoking an inactive function (HTTP 409)."""

    code = "conflict"


class Unauthorized(CloudFnError):
    """Missing or wrong API key (HTTP 401)."""

    code = "unauthorized"


class Forbidden(CloudFnError):
    """The key is valid but its role does not allow the operation (HTTP 403)."""

    code = "forbidden"


class Overloaded(CloudFnError):
    """A bounded queue is full (HTTP 429 with Retry-After)."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SandboxUnavailableError(CloudFnError):
    """The jail cannot be applied on this host, so nothing is deployed or run (HTTP 503)."""

    code = "sandbox_unavailable"


class DatabaseUnavailable(CloudFnError):
    """PostgreSQL cannot be reached right now (restarting, or the network to it is down) (HTTP 503, Retry-After)."""

    code = "database_unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QuotaExceeded(Overloaded):
    """A tenant's quota would be exceeded: nothing was accepted (HTTP 429 with Retry-After); the detail names the
    quota, its limit and the current use."""

    code = "quota_exceeded"

    def __init__(self, message: str, *, tenant: str, quota: str, limit: int, used: int,
                 retry_after_s: int = 1) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.detail = {"tenant": tenant, "quota": quota, "limit": limit, "used": used,
                       "retry_after_s": retry_after_s}
