"""Each API call described once, as a `Call`: method, path, what to send and how to read the answer. The sync
and async clients only send them, so both speak to the API identically."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from cloudfn.models import (
    Alert,
    AlertRule,
    Anomaly,
    DeadLetter,
    Function,
    FunctionConfig,
    FunctionMetrics,
    FunctionVersion,
    Invocation,
    Pipeline,
    Task,
    Timeseries,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
LOOKUP_MAX_IDS = 1000  # the batch read's cap per request (CONTRACT.md)


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and the decoder of its successful answer; `hold_s` is how long the server may hold it."""

    method: str
    path: str
    decode: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    data: dict[str, str] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hold_s: float = 0.0

    def request_args(self) -> dict[str, Any]:
        """Keyword arguments for httpx's `request` (without the timeout)."""
        args: dict[str, Any] = {"params": self.params, "headers": self.headers}
        if self.content is not None:
            args["content"] = self.content
        if self.data is not None:
            args["data"] = self.data
        if self.files is not None:
            args["files"] = self.files
        return args


def seg(value: str | int) -> str:
    """One URL path segment, escaped."""
    return quote(str(value), safe="")


def _one(model: type[M]) -> Callable[[httpx.Response], M]:
    return lambda r: model.model_validate(r.json())


def _many(model: type[M], key: str) -> Callable[[httpx.Response], list[M]]:
    return lambda r: [model.model_validate(x) for x in r.json()[key]]


def _json(r: httpx.Response) -> Any:
    return r.json() if r.content else None


def _none(_: httpx.Response) -> None:
    return None


def _text(r: httpx.Response) -> str:
    return r.text


def _task_or_accepted(r: httpx.Response) -> Task | Invocation:
    """200 with `wait` is the finished record; 202 is the acceptance."""
    body = r.json()
    return Task.model_validate(body) if r.status_code == 200 else Invocation.model_validate(body)


def json_body(value: Any) -> tuple[bytes, dict[str, str]]:
    """A JSON request body and its content type."""
    return json.dumps(value).encode(), {"content-type": "application/json"}


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


# functions

def deploy(name: str, archive: bytes, handler: str | None,
           config: FunctionConfig | Mapping[str, Any] | None) -> Call[Function]:
    """POST /v1/functions: upload a ZIP as NAME's new version."""
    form = {"name": name}
    if handler:
        form["handler"] = handler
    cfg = config.to_json() if isinstance(config, FunctionConfig) else dict(config or {})
    if cfg:
        form["config"] = json.dumps(cfg)
    return Call("POST", "/v1/functions", _one(Function), data=form,
                files={"archive": ("bundle.zip", archive, "application/zip")})


def functions() -> Call[list[Function]]:
    """GET /v1/functions."""
    return Call("GET", "/v1/functions", _many(Function, "functions"))


def function(name: str) -> Call[Function]:
    """GET /v1/functions/{name}."""
    return Call("GET", f"/v1/functions/{seg(name)}", _one(Function))


def versions(name: str) -> Call[list[FunctionVersion]]:
    """GET /v1/functions/{name}/versions."""
    return Call("GET", f"/v1/functions/{seg(name)}/versions", _many(FunctionVersion, "versions"))


def set_state(name: str, action: str) -> Call[Function]:
    """POST /v1/functions/{name}/activate or /deactivate."""
    return Call("POST", f"/v1/functions/{seg(name)}/{action}", _one(Function))


def rollback(name: str, version: int | None) -> Call[Function]:
    """POST /v1/functions/{name}/rollback (to the previous version, or to `version`)."""
    return Call("POST", f"/v1/functions/{seg(name)}/rollback", _one(Function), params=_drop_none({"version": version}))


def delete(name: str) -> Call[None]:
    """DELETE /v1/functions/{name}."""
    return Call("DELETE", f"/v1/functions/{seg(name)}", _none)


def env(name: str) -> Call[Any]:
    """GET /v1/functions/{name}/env: the names of its environment variables."""
    return Call("GET", f"/v1/functions/{seg(name)}/env", _json)


def set_env(name: str, values: Mapping[str, str]) -> Call[Any]:
    """PUT /v1/functions/{name}/env."""
    body, headers = json_body(dict(values))
    return Call("PUT", f"/v1/functions/{seg(name)}/env", _json, content=body, headers=headers)


def invoke(name: str, event: Any, *, wait_s: float | None, version: int | None,
           idempotency_key: str | None) -> Call[Task | Invocation]:
    """POST /v1/functions/{name}/invocations (held up to `wait_s` for the finished record)."""
    return _invocation(f"/v1/functions/{seg(name)}/invocations", event, wait_s, idempotency_key,
                       {"version": version})


def _invocation(path: str, event: Any, wait_s: float | None, idempotency_key: str | None,
                params: Mapping[str, Any]) -> Call[Task | Invocation]:
    body, headers = json_body(event)
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return Call("POST", path, _task_or_accepted, params=_drop_none({**params, "wait": wait_s}), content=body,
                headers=headers, hold_s=wait_s or 0.0)


# tasks

def task(task_id: str, wait_s: int | None = None) -> Call[Task]:
    """GET /v1/tasks/{id}; `wait` asks a server with the long-poll to answer when the task ends (others ignore it)."""
    return Call("GET", f"/v1/tasks/{seg(task_id)}", _one(Task), params=_drop_none({"wait": wait_s or None}),
                hold_s=float(wait_s or 0))


def tasks(function: str | None, status: str | None, limit: int) -> Call[list[Task]]:
    """GET /v1/tasks: recent tasks, newest first."""
    return Call("GET", "/v1/tasks", _many(Task, "tasks"),
                params=_drop_none({"function": function, "status": status, "limit": limit}))


def lookup(task_ids: Sequence[str]) -> Call[list[Task]]:
    """POST /v1/tasks/lookup: up to 1,000 records in request order, unknown ids left out."""
    body, headers = json_body({"ids": list(task_ids)})
    return Call("POST", "/v1/tasks/lookup", _many(Task, "tasks"), content=body, headers=headers)


def logs(task_id: str) -> Call[str]:
    """GET /v1/tasks/{id}/logs."""
    return Call("GET", f"/v1/tasks/{seg(task_id)}/logs", _text)


def cancel(task_id: str) -> Call[Task]:
    """POST /v1/tasks/{id}/cancel."""
    return Call("POST", f"/v1/tasks/{seg(task_id)}/cancel", _one(Task))


def resume(task_id: str) -> Call[Invocation]:
    """POST /v1/tasks/{id}/resume: a failed pipeline run continues from its failed step."""
    return Call("POST", f"/v1/tasks/{seg(task_id)}/resume", _one(Invocation))


def dead_letters(function: str | None, limit: int) -> Call[list[DeadLetter]]:
    """GET /v1/dead-letters."""
    return Call("GET", "/v1/dead-letters", _many(DeadLetter, "dead_letters"),
                params=_drop_none({"function": function, "limit": limit}))


def redrive(task_id: str) -> Call[Invocation]:
    """POST /v1/dead-letters/{id}/redrive."""
    return Call("POST", f"/v1/dead-letters/{seg(task_id)}/redrive", _one(Invocation))


# pipelines

def create_pipeline(name: str, steps: Sequence[str | Mapping[str, Any]]) -> Call[Pipeline]:
    """POST /v1/pipelines: steps as function names, `fn@VERSION`, or {"function", "version"?}."""
    body, headers = json_body({"name": name, "steps": [step_spec(s) for s in steps]})
    return Call("POST", "/v1/pipelines", _one(Pipeline), content=body, headers=headers)


def step_spec(step: str | Mapping[str, Any]) -> dict[str, Any]:
    """A pipeline step's JSON from `fn`, `fn@VERSION` or a mapping."""
    if not isinstance(step, str):
        return dict(step)
    fn, at, version = step.partition("@")
    return {"function": fn, "version": int(version)} if at and version.isdigit() else {"function": step}


def pipeline(name: str) -> Call[Pipeline]:
    """GET /v1/pipelines/{name}."""
    return Call("GET", f"/v1/pipelines/{seg(name)}", _one(Pipeline))


def invoke_pipeline(name: str, event: Any, *, wait_s: float | None,
                    idempotency_key: str | None) -> Call[Task | Invocation]:
    """POST /v1/pipelines/{name}/invocations."""
    return _invocation(f"/v1/pipelines/{seg(name)}/invocations", event, wait_s, idempotency_key, {})


# monitoring

def metrics(name: str, window: str) -> Call[FunctionMetrics]:
    """GET /v1/functions/{name}/metrics."""
    return Call("GET", f"/v1/functions/{seg(name)}/metrics", _one(FunctionMetrics), params={"window": window})


def timeseries(name: str, window: str, bucket: str) -> Call[Timeseries]:
    """GET /v1/functions/{name}/timeseries."""
    return Call("GET", f"/v1/functions/{seg(name)}/timeseries", _one(Timeseries),
                params={"window": window, "bucket": bucket})


def prometheus() -> Call[str]:
    """GET /metrics: the Prometheus text exposition."""
    return Call("GET", "/metrics", _text)


def anomalies(function: str | None, kind: str | None, since: str | None, limit: int) -> Call[list[Anomaly]]:
    """GET /v1/anomalies, newest first."""
    return Call("GET", "/v1/anomalies", _many(Anomaly, "anomalies"),
                params=_drop_none({"function": function, "kind": kind, "since": since, "limit": limit}))


def feedback(anomaly_id: int, verdict: str) -> Call[Any]:
    """POST /v1/anomalies/{id}/feedback (`false_positive` or `confirmed`)."""
    body, headers = json_body({"verdict": verdict})
    return Call("POST", f"/v1/anomalies/{seg(anomaly_id)}/feedback", _json, content=body, headers=headers)


def create_rule(rule: Mapping[str, Any]) -> Call[AlertRule]:
    """POST /v1/alert-rules (anything but an object is sent as it is, for the API to refuse with its message)."""
    body, headers = json_body(dict(rule) if isinstance(rule, Mapping) else rule)
    return Call("POST", "/v1/alert-rules", _one(AlertRule), content=body, headers=headers)


def rules() -> Call[list[AlertRule]]:
    """GET /v1/alert-rules."""
    return Call("GET", "/v1/alert-rules", _many(AlertRule, "rules"))


def delete_rule(rule_id: int) -> Call[None]:
    """DELETE /v1/alert-rules/{id}."""
    return Call("DELETE", f"/v1/alert-rules/{seg(rule_id)}", _none)


def alerts(state: str | None, rule_id: int | None, limit: int) -> Call[list[Alert]]:
    """GET /v1/alerts, newest first, with their deliveries."""
    return Call("GET", "/v1/alerts", _many(Alert, "alerts"),
                params=_drop_none({"state": state, "rule_id": rule_id, "limit": limit}))


def health() -> Call[Any]:
    """GET /healthz (no key needed)."""
    return Call("GET", "/healthz", _json)
