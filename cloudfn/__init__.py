"""`cloudfn`: the Python SDK, a typed client of the REST API (`Client`, `AsyncClient`), its records as pydantic
models and its errors as one exception hierarchy.

It owns nothing on the server side and talks to the platform only over HTTP: it must not import the server
packages (`core`, `cluster`, `actors`, `analytics`, `serve_app`, `panel_dashboard`) nor `ray`, so that it installs
and runs wherever a user's script does. The CLI (`serve_app.cli.main`) is built on it.
"""

from cloudfn.aio import AsyncClient
from cloudfn.bundle import zip_folder
from cloudfn.client import Client
from cloudfn.connection import Connection
from cloudfn.errors import (
    ApiError,
    BundleTooLargeError,
    CloudFnError,
    ConflictError,
    ConnectionFailedError,
    ForbiddenError,
    HandlerCheckError,
    InvalidInputError,
    LocalInputError,
    NotFoundError,
    OverloadedError,
    SandboxUnavailableError,
    ServerError,
    ServiceUnavailableError,
    TaskFailedError,
    UnauthorizedError,
    WaitTimeoutError,
)
from cloudfn.models import (
    Alert,
    AlertDelivery,
    AlertRule,
    Anomaly,
    DeadLetter,
    Function,
    FunctionConfig,
    FunctionMetrics,
    FunctionVersion,
    Invocation,
    Pipeline,
    PipelineStep,
    Task,
    TaskError,
    TaskMetrics,
    Timeseries,
)

__all__ = [
    "Alert", "AlertDelivery", "AlertRule", "Anomaly", "ApiError", "AsyncClient", "BundleTooLargeError", "Client",
    "CloudFnError", "ConflictError", "Connection", "ConnectionFailedError", "DeadLetter", "ForbiddenError",
    "Function", "FunctionConfig", "FunctionMetrics", "FunctionVersion", "HandlerCheckError", "InvalidInputError",
    "Invocation", "LocalInputError", "NotFoundError", "OverloadedError", "Pipeline", "PipelineStep",
    "SandboxUnavailableError", "ServerError", "ServiceUnavailableError", "Task", "TaskError", "TaskFailedError",
    "TaskMetrics", "Timeseries", "UnauthorizedError", "WaitTimeoutError", "zip_folder",
]
