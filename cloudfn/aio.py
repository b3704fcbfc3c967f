"""`AsyncClient`: the asyncio client (httpx.AsyncClient), the same calls as `Client`, awaited."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx

from cloudfn import calls
from cloudfn.bundle import load_archive
from cloudfn.client import DEFAULT_TIMEOUT_S, LOOKUP_MISSING, OVERLOAD_RETRIES
from cloudfn.connection import Connection
from cloudfn.errors import (
    ApiError,
    ConnectionFailedError,
    LocalInputError,
    NotFoundError,
    OverloadedError,
    TaskFailedError,
    WaitTimeoutError,
    from_response,
)
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
from cloudfn.progress import progress_bar
from cloudfn.waiting import Deadline, Pauses, chunks

T = TypeVar("T")
FALLBACK_GETS = 16  # concurrent single GETs when the server has no batch read


class AsyncClient:
    """The asyncio client of the CloudFunctions API; `url` and `key` resolve as for `Client`. Use it in one event
    loop; close it with `await aclose()` (or `async with`)."""

    def __init__(self, url: str | None = None, key: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.connection = Connection.resolve(url, key)
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(base_url=self.connection.url, headers=self.connection.headers,
                                       timeout=timeout_s, transport=transport)
        self._lookup_missing = asyncio.Event()  # set once the server answered that it has no batch read

    @property
    def url(self) -> str:
        """The API's base URL."""
        return self.connection.url

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # transport

    async def request(self, method: str, path: str, *, hold_s: float = 0.0, **kwargs: Any) -> httpx.Response:
        """Send any request (for routes without a method here); raise the mapped error on an error answer."""
        timeout = self.timeout_s + hold_s if hold_s else httpx.USE_CLIENT_DEFAULT
        try:
            r = await self._http.request(method, path, timeout=timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise ConnectionFailedError(self.url, exc) from None
        if r.status_code >= 400:
            raise from_response(r)
        return r

    async def _send(self, call: calls.Call[T]) -> T:
        return call.decode(await self.request(call.method, call.path, hold_s=call.hold_s, **call.request_args()))

    # functions

    async def deploy(self, name: str, source: str | os.PathLike[str] | bytes, *, handler: str | None = None,
                     config: FunctionConfig | Mapping[str, Any] | None = None) -> Function:
        """Upload a ZIP (path or bytes) or a folder (zipped in a thread) as NAME's new, active version."""
        archive = await asyncio.to_thread(load_archive, source)
        return await self._send(calls.deploy(name, archive, handler, config))

    async def functions(self) -> list[Function]:
        """Every function of the key's tenant."""
        return await self._send(calls.functions())

    async def function(self, name: str) -> Function:
        """A function with its active version."""
        return await self._send(calls.function(name))

    async def versions(self, name: str) -> list[FunctionVersion]:
        """A function's versions."""
        return await self._send(calls.versions(name))

    async def activate(self, name: str) -> Function:
        """Let a function be invoked again."""
        return await self._send(calls.set_state(name, "activate"))

    async def deactivate(self, name: str) -> Function:
        """Refuse a function's invocations (409) until activated."""
        return await self._send(calls.set_state(name, "deactivate"))

    async def rollback(self, name: str, version: int | None = None) -> Function:
        """Make the previous version (or `version`) active again."""
        return await self._send(calls.rollback(name, version))

    async def delete(self, name: str) -> None:
        """Delete a function; its past tasks stay readable."""
        await self._send(calls.delete(name))

    async def env(self, name: str) -> Any:
        """The names of a function's environment variables (values are never returned)."""
        return await self._send(calls.env(name))

    async def set_env(self, name: str, values: Mapping[str, str]) -> Any:
        """Replace a function's environment variables (a new version)."""
        return await self._send(calls.set_env(name, values))

    # invocations and tasks

    @overload
    async def invoke(self, name: str, event: Any = None, *, wait: Literal[False] = False,
                     timeout_s: float | None = None, version: int | None = None,
                     idempotency_key: str | None = None) -> Invocation: ...

    @overload
    async def invoke(self, name: str, event: Any = None, *, wait: Literal[True], timeout_s: float | None = None,
                     version: int | None = None, idempotency_key: str | None = None) -> Task: ...

    @overload
    async def invoke(self, name: str, event: Any = None, *, wait: bool, timeout_s: float | None = None,
                     version: int | None = None, idempotency_key: str | None = None) -> Invocation | Task: ...

    async def invoke(self, name: str, event: Any = None, *, wait: bool = False, timeout_s: float | None = None,
                     version: int | None = None, idempotency_key: str | None = None) -> Invocation | Task:
        """Invoke NAME with a JSON event: the accepted task's id, or with `wait` its finished record (waiting at
        most `timeout_s`, else WaitTimeoutError)."""
        deadline = Deadline(timeout_s)
        answer = await self._send(calls.invoke(name, event, wait_s=deadline.hold() if wait else None,
                                               version=version, idempotency_key=idempotency_key))
        return await self._finish(answer, wait, deadline)

    async def _finish(self, answer: Task | Invocation, wait: bool, deadline: Deadline) -> Invocation | Task:
        if not wait:
            return answer if isinstance(answer, Invocation) else Invocation(task_id=answer.task_id,
                                                                               status=answer.status)
        if isinstance(answer, Task) and answer.done:
            return answer
        return await self._wait(answer.task_id, deadline, 0.5)

    async def task(self, task_id: str) -> Task:
        """A task's record now."""
        return await self._send(calls.task(task_id))

    async def tasks(self, *, function: str | None = None, status: str | None = None, limit: int = 50) -> list[Task]:
        """Recent tasks, newest first."""
        return await self._send(calls.tasks(function, status, limit))

    async def lookup(self, task_ids: Sequence[str]) -> list[Task]:
        """Many records at once, in request order, unknown ids left out (`POST /v1/tasks/lookup` in batches of
        1,000; concurrent single GETs on a server without it)."""
        out: list[Task] = []
        for batch in chunks(task_ids, calls.LOOKUP_MAX_IDS):
            if not self._lookup_missing.is_set():
                try:
                    found: list[Task] = await self._send(calls.lookup(batch))
                    out.extend(found)
                    continue
                except ApiError as exc:
                    if exc.status not in LOOKUP_MISSING:
                        raise
                    self._lookup_missing.set()
            gate = asyncio.Semaphore(FALLBACK_GETS)

            async def one(task_id: str, gate: asyncio.Semaphore = gate) -> Task | None:
                async with gate:
                    try:
                        return await self.task(task_id)
                    except NotFoundError:
                        return None

            out += [t for t in await asyncio.gather(*map(one, batch)) if t is not None]
        return out

    async def wait(self, task_id: str, timeout_s: float | None = None, *, poll_s: float = 0.5) -> Task:
        """The task's record once it has ended (WaitTimeoutError after `timeout_s`)."""
        return await self._wait(task_id, Deadline(timeout_s), poll_s)

    async def _wait(self, task_id: str, deadline: Deadline, poll_s: float) -> Task:
        pauses = Pauses(poll_s)
        while True:
            task = await self._send(calls.task(task_id, wait_s=deadline.hold()))
            if task.done:
                return task
            if deadline.expired():
                raise WaitTimeoutError(task_id, deadline.timeout_s or 0.0, task)
            await asyncio.sleep(pauses.next(deadline))

    async def wait_many(self, task_ids: Iterable[str], timeout_s: float | None = None, *,
                        poll_s: float = 0.5) -> list[Task]:
        """The records of all these tasks once each has ended, in the order given (NotFoundError for an unknown
        id, WaitTimeoutError after `timeout_s`)."""
        ids = list(task_ids)
        deadline, pauses, done = Deadline(timeout_s), Pauses(poll_s), dict[str, Task]()
        while pending := [i for i in dict.fromkeys(ids) if i not in done]:
            found = {t.task_id: t for t in await self.lookup(pending)}
            if missing := [i for i in pending if i not in found]:
                raise NotFoundError(404, "not_found", f"no task with id {missing[0]!r}")
            done.update((i, t) for i, t in found.items() if t.done)
            if len(done) < len(set(ids)):
                if deadline.expired():
                    first = next(i for i in ids if i not in done)
                    raise WaitTimeoutError(first, deadline.timeout_s or 0.0, found[first])
                await asyncio.sleep(pauses.next(deadline))
        return [done[i] for i in ids]

    async def result(self, task_id: str, timeout_s: float | None = None) -> Any:
        """A finished task's output; TaskFailedError if it ended otherwise."""
        task = await self.wait(task_id, timeout_s)
        if not task.succeeded:
            raise TaskFailedError(task)
        return task.output

    async def invoke_many(self, name: str, inputs: Iterable[Any], *, concurrency: int = 8,
                          timeout_s: float | None = None, version: int | None = None,
                          progress: bool = False) -> list[Task]:
        """Invoke NAME once per input with at most `concurrency` tasks unfinished at any time; return the finished
        records in input order. A full queue (429) is retried after its Retry-After; any other error stops
        the fan-out and is raised. `progress` shows a bar on stderr."""
        items = list(inputs)
        if concurrency < 1:
            raise LocalInputError(f"concurrency must be at least 1, not {concurrency}")
        deadline, results = Deadline(timeout_s), list[Task | None]([None] * len(items))
        next_index = iter(range(len(items)))
        with progress_bar(progress, len(items), name) as done:

            async def worker() -> None:
                for i in next_index:  # shared: each index is taken by exactly one worker
                    results[i] = await self._run_one(name, items[i], version, deadline)
                    done()

            workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(items))))]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
        return [r for r in results if r is not None]

    async def map(self, name: str, inputs: Iterable[Any], *, concurrency: int = 8, timeout_s: float | None = None,
                  version: int | None = None, progress: bool = False) -> list[Any]:
        """`invoke_many`'s outputs in input order; TaskFailedError for the first task that did not succeed."""
        tasks = await self.invoke_many(name, inputs, concurrency=concurrency, timeout_s=timeout_s, version=version,
                                       progress=progress)
        for t in tasks:
            if not t.succeeded:
                raise TaskFailedError(t)
        return [t.output for t in tasks]

    async def _run_one(self, name: str, event: Any, version: int | None, deadline: Deadline) -> Task:
        for attempt in range(OVERLOAD_RETRIES + 1):
            try:
                answer = await self._send(calls.invoke(name, event, wait_s=deadline.hold(), version=version,
                                                       idempotency_key=None))
                break
            except OverloadedError as exc:
                if attempt == OVERLOAD_RETRIES or deadline.expired():
                    raise
                await asyncio.sleep(min(exc.retry_after_s, deadline.remaining() or exc.retry_after_s))
        if isinstance(answer, Task) and answer.done:
            return answer
        return await self._wait(answer.task_id, deadline, 0.5)

    async def logs(self, task_id: str) -> str:
        """What the task's handler printed and logged."""
        return await self._send(calls.logs(task_id))

    async def cancel(self, task_id: str) -> Task:
        """Cancel a queued or running task (its process is killed)."""
        return await self._send(calls.cancel(task_id))

    async def resume(self, task_id: str) -> Invocation:
        """Continue a failed pipeline run from its failed step."""
        return await self._send(calls.resume(task_id))

    async def dead_letters(self, *, function: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Tasks that failed for good, newest first, with their input."""
        return await self._send(calls.dead_letters(function, limit))

    async def redrive(self, task_id: str) -> Invocation:
        """Run a dead letter again (its next attempt, same task id)."""
        return await self._send(calls.redrive(task_id))

    # pipelines

    async def create_pipeline(self, name: str, steps: Sequence[str | Mapping[str, Any]]) -> Pipeline:
        """Create or replace a pipeline; a step is `fn`, `fn@VERSION` or {"function", "version"?}."""
        return await self._send(calls.create_pipeline(name, steps))

    async def pipeline(self, name: str) -> Pipeline:
        """A pipeline's definition."""
        return await self._send(calls.pipeline(name))

    @overload
    async def invoke_pipeline(self, name: str, event: Any = None, *, wait: Literal[False] = False,
                              timeout_s: float | None = None, idempotency_key: str | None = None) -> Invocation: ...

    @overload
    async def invoke_pipeline(self, name: str, event: Any = None, *, wait: Literal[True],
                              timeout_s: float | None = None, idempotency_key: str | None = None) -> Task: ...

    @overload
    async def invoke_pipeline(self, name: str, event: Any = None, *, wait: bool, timeout_s: float | None = None,
                              idempotency_key: str | None = None) -> Invocation | Task: ...

    async def invoke_pipeline(self, name: str, event: Any = None, *, wait: bool = False,
                              timeout_s: float | None = None, idempotency_key: str | None = None) -> Invocation | Task:
        """Run a pipeline with the first step's event: the run's task id, or with `wait` its record with steps."""
        deadline = Deadline(timeout_s)
        answer = await self._send(calls.invoke_pipeline(name, event, wait_s=deadline.hold() if wait else None,
                                                        idempotency_key=idempotency_key))
        return await self._finish(answer, wait, deadline)

    # monitoring

    async def metrics(self, name: str, window: str = "1h") -> FunctionMetrics:
        """Aggregates of a function's executions over a window (`15m`, `1h`, `7d`)."""
        return await self._send(calls.metrics(name, window))

    async def timeseries(self, name: str, window: str = "1h", bucket: str = "1m") -> Timeseries:
        """A function's figures per bucket over a window."""
        return await self._send(calls.timeseries(name, window, bucket))

    async def prometheus(self) -> str:
        """The platform's Prometheus text exposition."""
        return await self._send(calls.prometheus())

    async def anomalies(self, *, function: str | None = None, kind: str | None = None, since: str | None = None,
                        limit: int = 100) -> list[Anomaly]:
        """Detected anomalies, newest first."""
        return await self._send(calls.anomalies(function, kind, since, limit))

    async def feedback(self, anomaly_id: int, verdict: Literal["false_positive", "confirmed"]) -> Any:
        """Tell the detectors whether an anomaly was real."""
        return await self._send(calls.feedback(anomaly_id, verdict))

    async def create_rule(self, rule: Mapping[str, Any]) -> AlertRule:
        """Create an alert rule (CONTRACT.md's rule JSON)."""
        return await self._send(calls.create_rule(rule))

    async def rules(self) -> list[AlertRule]:
        """The alert rules."""
        return await self._send(calls.rules())

    async def delete_rule(self, rule_id: int) -> None:
        """Delete an alert rule."""
        await self._send(calls.delete_rule(rule_id))

    async def alerts(self, *, state: Literal["firing", "resolved"] | None = None, rule_id: int | None = None,
                     limit: int = 100) -> list[Alert]:
        """Alerts with their delivery history, newest first."""
        return await self._send(calls.alerts(state, rule_id, limit))

    async def health(self) -> Any:
        """`GET /healthz`'s body (ServiceUnavailableError when the platform is not healthy)."""
        return await self._send(calls.health())
