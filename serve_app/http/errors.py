"""Error-to-HTTP mapping: every error is JSON `{"error": {"code", "message"}}`."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    BundleTooLarge,
    CloudFnError,
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    HandlerCheckFailed,
    InvalidInput,
    NotFound,
    Overloaded,
    SandboxUnavailableError,
    Unauthorized,
)

log = logging.getLogger(__name__)

STATUS: list[tuple[type[CloudFnError], int]] = [
    (BundleTooLarge, 413), (HandlerCheckFailed, 422), (NotFound, 404), (Conflict, 409),
    (Unauthorized, 401), (Forbidden, 403), (Overloaded, 429), (SandboxUnavailableError, 503),
    (DatabaseUnavailable, 503), (CloudFnError, 400),
]


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The contract's error shape."""
    return {"error": {"code": code, "message": message, **extra}}


def status_of(exc: CloudFnError) -> int:
    """The HTTP status for a domain error."""
    return next(code for cls, code in STATUS if isinstance(exc, cls))


def domain_error(exc: CloudFnError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """A domain error's status, body and headers (Retry-After when overloaded or the database is unavailable)."""
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry_after)} if isinstance(exc, Overloaded | DatabaseUnavailable) else {}
    return status_of(exc), error_body(exc.code, exc.message, **exc.detail), headers


def refused_value(exc: BaseException) -> InvalidInput | None:
    """A database error that means a value in the request cannot be stored or looked up (NUL, out of range)
    as the caller's 400; None for any other error."""
    orig = getattr(exc, "orig", exc)
    if isinstance(exc, DataError) or isinstance(orig, psycopg.DataError):
        first = str(orig).splitlines()[0] if str(orig) else "invalid data"
        return InvalidInput(f"a value in the request is not acceptable: {first}")
    return None


def unavailable_value(exc: BaseException) -> DatabaseUnavailable | None:
    """A lost or refused database connection as a 503 the caller may retry; None for any other error."""
    orig = getattr(exc, "orig", exc)
    if isinstance(exc, OperationalError | InterfaceError) or isinstance(
            orig, psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseUnavailable("the database is unavailable right now (it may be restarting); nothing was "
                                   "accepted by this request: retry after a moment")
    return None


def mapped(exc: BaseException) -> CloudFnError | None:
    """The domain error an infrastructure error stands for (a refused value, an unavailable database), if any."""
    return refused_value(exc) or unavailable_value(exc)


def install(app: FastAPI) -> None:
    """Register the handlers."""

    @app.exception_handler(CloudFnError)
    async def _domain(_: Request, exc: CloudFnError) -> JSONResponse:
        status, body, headers = domain_error(exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("body", "query", "path", "form"))
        msg = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        return JSONResponse(error_body("invalid_input", msg), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(DBAPIError)
    async def _data(_: Request, exc: DBAPIError) -> JSONResponse:
        known = mapped(exc)
        if known is None:
            log.exception("database error")
            return JSONResponse(error_body("internal", f"internal error: {type(exc).__name__}"), status_code=500)
        status, body, headers = domain_error(known)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        known = mapped(exc)  # e.g. psycopg's own errors, from the group-commit writer
        if known is not None:
            status, body, headers = domain_error(known)
            return JSONResponse(body, status_code=status, headers=headers)
        log.exception("unhandled error")
        return JSONResponse(error_body("internal", f"internal error: {type(exc).__name__}"), status_code=500)
