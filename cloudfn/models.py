"""The API's records as pydantic models. Fields mirror the JSON; fields the server adds later are kept (extra
fields allowed), and `raw` is the object exactly as the API sent it (what the CLI prints)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidatorFunctionWrapHandler, model_validator

TaskStatus = Literal["queued", "running", "succeeded", "failed", "timed_out", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "timed_out", "cancelled"})


class Record(BaseModel):
    """Base of every record: extra fields kept, the API's JSON object kept as `raw`."""

    model_config = ConfigDict(extra="allow")
    _raw: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_raw(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        model = handler(data)
        if isinstance(data, dict) and isinstance(model, Record):
            model._raw = data
        return model

    @property
    def raw(self) -> dict[str, Any]:
        """The JSON object as the API answered it (or, for a record built in code, its JSON form)."""
        return self._raw if self._raw is not None else self.model_dump(mode="json")


class TaskMetrics(Record):
    """An execution's measurements (None until it ran)."""

    duration_ms: float | None = None
    cpu_ms: float | None = None
    cpu_wait_ms: float | None = None
    peak_memory_mb: float | None = None
    queue_ms: float | None = None
    cold_start: bool | None = None
    input_bytes: int | None = None
    output_bytes: int | None = None


class TaskError(Record):
    """Why a task failed: the exception's class name, its message and the formatted traceback frames."""

    type: str = ""
    message: str = ""
    stack: list[str] = Field(default_factory=list)


class PipelineStep(Record):
    """One step of a pipeline run, as its task record lists it."""

    task_id: str
    function: str
    version: int | None = None
    status: TaskStatus
    output: Any = None
    error: TaskError | None = None
    metrics: TaskMetrics | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Task(Record):
    """A task record (`GET /v1/tasks/{id}`); a pipeline run's also lists its `steps`."""

    task_id: str
    function: str
    version: int | None = None
    status: TaskStatus
    output: Any = None
    error: TaskError | None = None
    metrics: TaskMetrics = Field(default_factory=TaskMetrics)
    attempt: int | None = None
    namespace: str | None = None
    kind: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    sandbox: str | None = None
    node: str | None = None
    steps: list[PipelineStep] | None = None

    @property
    def done(self) -> bool:
        """True once the task can no longer change."""
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        """True if the handler returned a value."""
        return self.status == "succeeded"


class Invocation(Record):
    """An accepted invocation (202): the task id to wait on and its status then."""

    task_id: str
    status: TaskStatus
    idempotent_replay: bool = False


class FunctionConfig(BaseModel):
    """A version's settings for `deploy` (unset fields take the platform's defaults; more keys are passed on)."""

    model_config = ConfigDict(extra="allow")

    timeout_s: float | None = None
    memory_mb: int | None = None
    cpu_s: float | None = None
    cpus: float | None = None
    network: bool | None = None
    env: dict[str, str] | None = None
    max_retries: int | None = None
    retry_backoff_s: float | None = None
    retry_on_timeout: bool | None = None
    max_concurrency: int | None = None
    max_queue: int | None = None
    runtime: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `config` form field's object: only what was set."""
        return self.model_dump(mode="json", exclude_none=True)


class FunctionVersion(Record):
    """One uploaded version of a function."""

    version: int
    handler: str
    sha256: str
    config: dict[str, Any] = Field(default_factory=dict)
    size_bytes: int | None = None
    created_at: datetime | None = None


class Function(Record):
    """A function with its active version (what deploy, show, activate, deactivate and rollback answer)."""

    name: str
    namespace: str | None = None
    state: str
    active_version: int | None = None
    version: int | None = None
    handler: str | None = None
    sha256: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    size_bytes: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class DurationStats(Record):
    """Duration quantiles of a window, in ms (None without executions)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    avg: float | None = None
    max: float | None = None


class Stats(Record):
    """Average and maximum of a figure over a window (None without executions)."""

    avg: float | None = None
    max: float | None = None


class FunctionMetrics(Record):
    """`GET /v1/functions/{name}/metrics`: a window's aggregates."""

    function: str
    window_s: float
    count: int
    errors: int = 0
    error_rate: float | None = None
    duration_ms: DurationStats = Field(default_factory=DurationStats)
    cpu_ms: Stats = Field(default_factory=Stats)
    peak_memory_mb: Stats = Field(default_factory=Stats)
    cold_starts: int = 0
    rate_per_s: float | None = None


class Timeseries(Record):
    """`GET /v1/functions/{name}/timeseries`: bucketed figures of a window."""

    function: str
    window_s: float
    bucket_s: float
    points: list[dict[str, Any]] = Field(default_factory=list)


class PipelineStepSpec(Record):
    """One step of a pipeline definition: a function, pinned to a version or following its active one."""

    function: str
    version: int | None = None


class Pipeline(Record):
    """A pipeline definition."""

    name: str
    steps: list[PipelineStepSpec]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class DeadLetter(Record):
    """A function task that failed for good, with its input."""

    task_id: str
    function: str
    version: int | None = None
    status: TaskStatus
    input: Any = None
    error: TaskError | None = None
    attempts: int = 1
    created_at: datetime | None = None
    failed_at: datetime | None = None


class Anomaly(Record):
    """A detected anomaly."""

    id: int
    function: str
    version: int | None = None
    kind: str
    metric: str
    observed: float | None = None
    expected_low: float | None = None
    expected_high: float | None = None
    score: float
    task_id: str | None = None
    detected_at: datetime
    detector: str
    details: dict[str, Any] | None = None
    feedback: str | None = None


class AlertRule(Record):
    """An alert rule with its id and evaluation state (webhook secrets masked); the rule's own keys are kept."""

    id: int
    name: str
    function: str
    kind: Literal["threshold", "anomaly"]
    channels: list[dict[str, Any]] = Field(default_factory=list)
    state: str | None = None
    created_at: datetime | None = None


class AlertDelivery(Record):
    """One attempt to deliver an alert's notification to a channel."""

    channel: str
    attempt: int
    status: str
    at: datetime
    error: str | None = None


class Alert(Record):
    """An alert, firing or resolved, with its delivery history."""

    id: int
    rule_id: int
    function: str
    state: str
    value: float | None = None
    started_at: datetime
    resolved_at: datetime | None = None
    deliveries: list[AlertDelivery] = Field(default_factory=list)
