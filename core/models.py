"""Domain models shared by every layer: function config, task status, the outcome of one execution."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"  # task and pipeline-run ids
NAME_RE = re.compile(NAME_PATTERN)
HANDLER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*([./][A-Za-z_][A-Za-z0-9_]*)*\.[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_HANDLER = "main.handler"
Runtime = Literal["python3.11", "nodejs20"]
PYTHON_RUNTIME: Runtime = "python3.11"
NODE_RUNTIME: Runtime = "nodejs20"
RUNTIMES = (PYTHON_RUNTIME, NODE_RUNTIME)
DEFAULT_HANDLERS: dict[str, str] = {PYTHON_RUNTIME: DEFAULT_HANDLER, NODE_RUNTIME: "index.handler"}
# Lambda's Node.js handler: `path/to/file.export` (the file without .js/.mjs/.cjs, then a property path)
NODE_HANDLER_RE = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_-]*/)*[A-Za-z0-9_][A-Za-z0-9_-]*"
                             r"(?:\.[A-Za-z_$][A-Za-z0-9_$]*)+$")
NODE_EXTENSIONS = (".js", ".mjs", ".cjs")
DEFAULT_NAMESPACE = "default"
INT32_MAX = 2**31 - 1  # the largest id or version an `integer` column holds (larger ones are a 4xx, not a 5xx)
INT64_MAX = 2**63 - 1  # ... a `bigint` column


class TaskStatus(StrEnum):
    """Lifecycle of a task; the last four are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True once the task can no longer change."""
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED)


class WebhookDestination(BaseModel):
    """Deliver the task record to a URL, signed per Standard Webhooks with `secret` (as alert webhooks are)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"]
    url: str = Field(max_length=2048)
    secret: str = Field(min_length=1, max_length=1024)


class FunctionDestination(BaseModel):
    """Invoke a function of the same namespace with the task record as its event."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    name: str = Field(pattern=NAME_PATTERN)


Destination = Annotated[WebhookDestination | FunctionDestination, Field(discriminator="type")]
DESTINATION_KEYS = ("on_success", "on_failure")


class FunctionConfig(BaseModel):
    """A version's execution settings (the `config` JSON of an upload)."""

    model_config = ConfigDict(extra="forbid")

    runtime: Runtime = Field(
        default=PYTHON_RUNTIME, description="the language runtime: python3.11 or nodejs20")
    timeout_s: float = Field(default=60.0, gt=0, le=900)
    memory_mb: int = Field(default=512, ge=32, le=16384)
    cpu_s: float | None = Field(default=None, gt=0, description="CPU-time limit; default = timeout_s")
    max_processes: int = Field(default=32, ge=1, le=4096)
    max_open_files: int = Field(default=256, ge=16, le=65536)
    max_file_mb: int = Field(default=64, ge=1, le=10240)
    max_output_kb: int = Field(default=6144, ge=1, le=1048576, description="result + logs cap, like Lambda's 6 MB")
    network: bool = False
    cpus: float = Field(default=0.25, gt=0, le=64, description="Ray CPUs reserved per running invocation")
    env: dict[str, str] = Field(default_factory=dict)
    max_retries: int = Field(default=0, ge=0, le=20)
    retry_backoff_s: float = Field(default=1.0, ge=0, le=3600)
    retry_on_timeout: bool = False
    max_concurrency: int = Field(default=64, ge=1, le=10000)
    max_queue: int = Field(default=10000, ge=0, le=1_000_000)
    max_batch: int = Field(default=32, ge=1, le=256,
                           description="queued invocations one Ray task may run while executions are short; 1: never")
    on_success: Destination | None = Field(default=None, description="where a succeeded task's record goes")
    on_failure: Destination | None = Field(default=None, description="where a failed or timed-out task's record goes")

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                raise ValueError(f"environment variable name {k!r} is not a valid identifier")
        return v


def handler_module_path(handler: str) -> tuple[str, str]:
    """Split `pkg/mod.func` or `pkg.mod.func` into (`pkg/mod.py`, `func`)."""
    if not HANDLER_RE.match(handler):
        raise ValueError(f"handler {handler!r} is not of the form module.function (e.g. main.handler)")
    module, _, func = handler.rpartition(".")
    return module.replace(".", "/") + ".py", func


def node_handler_path(handler: str) -> tuple[str, str]:
    """Split Lambda's Node.js `dir/file.export.path` into (`dir/file`, `export.path`): the file is named
    without its extension (.js, .mjs or .cjs), up to the first dot of the last path segment."""
    if not NODE_HANDLER_RE.match(handler) or ".." in handler:
        raise ValueError(f"handler {handler!r} is not of the form file.export (e.g. index.handler, "
                         "src/app.handler)")
    slash = handler.rfind("/")
    dot = handler.index(".", slash + 1)
    return handler[:dot], handler[dot + 1:]


def check_handler(handler: str, runtime: str) -> None:
    """Raise ValueError when `handler` is not a valid handler string for `runtime`."""
    if runtime == NODE_RUNTIME:
        node_handler_path(handler)
    else:
        handler_module_path(handler)


@dataclass
class ExecutionOutcome:
    """What running one invocation produced, as the sandbox reports it."""

    status: TaskStatus
    output: Any = None
    output_json: str | None = None  # the output as the handler's runtime serialised it (checked JSON)
    error: dict[str, Any] | None = None
    logs: str = ""
    started_at: float = 0.0  # epoch seconds
    finished_at: float = 0.0
    duration_ms: float = 0.0
    cpu_ms: float = 0.0
    cpu_wait_ms: float = 0.0  # runnable but waiting for a CPU (host contention), within duration_ms
    handler_ms: float | None = None  # the handler's time as the child reports it (never above duration_ms);
    # only the dispatcher's batching of this function's own invocations reads it, since the measured duration
    # also holds the pipe round trip and wake-up delays of a loaded host
    peak_memory_mb: float = 0.0
    cold_start: bool = False
    input_bytes: int = 0
    output_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricRecord:
    """One execution's metrics: a row in PostgreSQL's `execution_metrics`, in the Parquet lake, and a detector input."""

    task_id: str
    namespace: str
    function: str
    version: int
    status: str  # a terminal TaskStatus value
    started_at: float  # epoch seconds
    finished_at: float  # epoch seconds
    duration_ms: float
    cpu_ms: float
    peak_memory_mb: float
    queue_ms: float
    cold_start: bool
    error_type: str | None = None
    input_bytes: int = 0
    output_bytes: int = 0
    attempt: int = 1
    cpu_wait_ms: float = 0.0  # part of duration_ms spent runnable but without a CPU (host contention)
    node: str | None = None  # the Ray node that ran it

    @property
    def is_error(self) -> bool:
        """True when the execution did not succeed."""
        return self.status != TaskStatus.SUCCEEDED.value

    def problem(self) -> str | None:
        """Why this row must not reach the lake, detectors or alerting (a non-finite or absurd number, a
        field of the wrong type), or None. Shared sinks set such a row aside instead of failing a batch."""
        for name, low, high in METRIC_BOUNDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or not low <= value <= high:
                return f"{name}={value!r} is outside [{low:g}, {high:g}]"
        if self.finished_at < self.started_at:
            return "finished_at is before started_at"
        for name in ("task_id", "namespace", "function", "status"):
            if not isinstance(getattr(self, name), str):
                return f"{name} is not a string"
        if not isinstance(self.cold_start, bool) or not isinstance(self.version, int):
            return "cold_start or version has the wrong type"
        return None


# (field, lowest, highest) a metric row may hold: a year 2001-2286 timestamp, at most a day of time, 1 TiB.
METRIC_BOUNDS = (("started_at", 1e9, 1e10), ("finished_at", 1e9, 1e10), ("duration_ms", 0.0, 8.64e7),
                 ("cpu_ms", 0.0, 8.64e7 * 1024), ("peak_memory_mb", 0.0, 1 << 20), ("queue_ms", 0.0, 8.64e7 * 30),
                 ("input_bytes", 0, 2**31 - 1), ("output_bytes", 0, 2**31 - 1), ("attempt", 1, 1000),
                 ("cpu_wait_ms", 0.0, 8.64e7), ("version", 1, INT32_MAX))


def masked_destinations(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config as the API shows it: completion destinations' secrets as `***`."""
    out = dict(config)
    for key in DESTINATION_KEYS:
        dest = out.get(key)
        if isinstance(dest, dict) and ("secret_sealed" in dest or "secret" in dest):
            out[key] = {k: v for k, v in dest.items() if k not in ("secret", "secret_sealed")} | {"secret": "***"}
    return out
