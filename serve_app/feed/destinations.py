"""Completion destinations, like Lambda's: a function's `on_success` / `on_failure` receive the record of each of
its top-level tasks that ends succeeded, or failed / timed out (a cancelled task goes nowhere).

A `webhook` destination gets the record as JSON, signed per Standard Webhooks with its secret (as alert
webhooks are), the same `webhook-id` on every try; a `function` destination is invoked with the record as its
event, under the Idempotency-Key `destination:{task}:{attempt}` (so a second delivery is the same task). The
dispatcher reports each committed end; the delivery reads the record as `GET /v1/tasks/{id}` shows it, tries
with backoff (Retry-After honoured) and writes its outcome to `destination_deliveries`. A delivery cut short by a
restart has no row: `recover` finds it and sends it again. At least once: receivers deduplicate by
`webhook-id`. A task started by a destination does not trigger destinations itself (no loops).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from analytics.alerting.signing import signature_headers
from analytics.alerting.transports import classify_http
from core.db.deliveries import DeliveryLog
from core.db.tasks import TaskStore
from core.errors import CloudFnError, InvalidInput, Overloaded
from core.models import FunctionConfig, FunctionDestination, WebhookDestination
from serve_app.dispatch.dispatcher import Pending
from serve_app.write.writer import TaskResult

log = logging.getLogger(__name__)
USER_AGENT = "cloudfn-destinations/1"
KEY_PREFIX = "destination:"
# invoke(namespace, function, event JSON, Idempotency-Key) -> the started task's id
InvokeFn = Callable[[str, str, bytes, str], Awaitable[str]]


def destination_for(cfg: FunctionConfig, status: str) -> tuple[str, WebhookDestination | FunctionDestination] | None:
    """("on_success" | "on_failure", destination) for a task that ended with `status`, or None."""
    key = "on_success" if status == "succeeded" else "on_failure" if status in ("failed", "timed_out") else None
    dest = getattr(cfg, key) if key else None
    return None if key is None or dest is None else (key, dest)


@dataclass(frozen=True)
class Delivery:
    """One ended task to deliver."""

    namespace: str
    task_id: str
    attempt: int
    key: str  # on_success | on_failure
    dest: WebhookDestination | FunctionDestination

    @property
    def webhook_id(self) -> str:
        """Stable across tries (and across a restart): receivers deduplicate by it."""
        return f"msg_{self.task_id}_{self.attempt}"

    @property
    def target(self) -> str:
        """Where it goes, for the delivery row."""
        return self.dest.url if isinstance(self.dest, WebhookDestination) else f"function:{self.dest.name}"


@dataclass
class Tried:
    """The result of one try."""

    ok: bool
    retryable: bool
    error: str | None = None
    retry_after_s: float | None = None
    target_task_id: str | None = None


class Destinations:
    """Delivers ended tasks to their functions' destinations, at least once."""

    def __init__(self, store: TaskStore, log_: DeliveryLog, registry: Any, invoke: InvokeFn, *,
                 max_tries: int = 10, backoff_s: float = 0.5, backoff_max_s: float = 60.0,
                 retry_after_max_s: float = 120.0, timeout_s: float = 10.0) -> None:
        self.store = store
        self.deliveries = log_
        self.registry = registry  # resolves (namespace, function, version) to its runtime (config with secrets)
        self.invoke = invoke
        self.max_tries, self.backoff_s, self.backoff_max_s = max_tries, backoff_s, backoff_max_s
        self.retry_after_max_s, self.timeout_s = retry_after_max_s, timeout_s
        self._http: httpx.AsyncClient | None = None
        self._active: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._spawned: set[str] = set()  # tasks a destination started: their ends go nowhere

    def task_ended(self, p: Pending, result: TaskResult) -> None:
        """Dispatcher callback (after the end is committed): start the delivery if the function has one."""
        if p.parent_id is not None:
            return
        if p.task_id in self._spawned:
            self._spawned.discard(p.task_id)
            return
        found = destination_for(p.rt.config, result.status)
        if found is not None:
            self._start(Delivery(p.rt.namespace, p.task_id, result.attempt, *found))

    async def recover(self) -> None:
        """Send again what an earlier process ended without delivering (no delivery row)."""
        for u in await self.deliveries.undelivered():
            try:
                rt = await self.registry.resolve(u.namespace, u.function, u.version, require_active=False)
            except CloudFnError as exc:
                log.warning("destination of task %s not delivered: %s", u.task_id, exc)
                continue
            found = destination_for(rt.config, u.status)
            if found is not None:
                self._start(Delivery(u.namespace, u.task_id, u.attempt, *found))

    def _start(self, d: Delivery) -> None:
        if (d.task_id, d.attempt) in self._active:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(d))
        self._active[(d.task_id, d.attempt)] = task
        task.add_done_callback(lambda _: self._active.pop((d.task_id, d.attempt), None))

    async def _deliver(self, d: Delivery) -> None:
        """Try until delivered, refused for good, or out of tries; then write the outcome."""
        tries, outcome = 0, Tried(ok=False, retryable=False, error="not tried")
        try:
            record = await self.store.get(d.namespace, d.task_id)
            body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
            while tries < self.max_tries:
                tries += 1
                outcome = await self._try(d, body)
                if outcome.ok or not outcome.retryable or tries == self.max_tries:
                    break
                await asyncio.sleep(self._delay(tries, outcome.retry_after_s))
        except Exception as exc:  # the record could not be read: a later recovery tries again
            log.warning("destination of task %s not delivered (will retry at the next start): %r", d.task_id, exc)
            return
        if not outcome.ok:
            log.warning("destination %s of task %s failed after %d tries: %s", d.target, d.task_id, tries,
                        outcome.error)
        try:
            await self.deliveries.record(task_id=d.task_id, attempt=d.attempt, destination=d.key, target=d.target,
                                         webhook_id=d.webhook_id, status="delivered" if outcome.ok else "failed",
                                         tries=tries, error=outcome.error, target_task_id=outcome.target_task_id)
        except Exception as exc:  # delivered but not recorded: the next start delivers it again (at least once)
            log.warning("delivery of task %s not recorded: %r", d.task_id, exc)

    def _delay(self, failed_tries: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.retry_after_max_s)
        base = min(self.backoff_max_s, self.backoff_s * 2 ** (failed_tries - 1))
        return base / 2 + random.uniform(0, base / 2)

    async def _try(self, d: Delivery, body: bytes) -> Tried:
        if isinstance(d.dest, WebhookDestination):
            return await self._post(d.dest, d.webhook_id, body)
        try:
            task_id = await self.invoke(d.namespace, d.dest.name, body, f"{KEY_PREFIX}{d.task_id}:{d.attempt}")
        except Overloaded as exc:
            return Tried(ok=False, retryable=True, error=exc.message, retry_after_s=float(exc.retry_after_s))
        except InvalidInput as exc:  # the function refuses this event: trying again cannot help
            return Tried(ok=False, retryable=False, error=f"{exc.code}: {exc.message}")
        except CloudFnError as exc:  # deleted, inactive, sandbox unavailable: it may come back
            return Tried(ok=False, retryable=True, error=f"{exc.code}: {exc.message}")
        self._spawned.add(task_id)
        return Tried(ok=True, retryable=False, target_task_id=task_id)

    async def _post(self, dest: WebhookDestination, msg_id: str, body: bytes) -> Tried:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False,
                                           headers={"user-agent": USER_AGENT})
        headers = {"content-type": "application/json", **signature_headers(dest.secret, msg_id, int(time.time()), body)}
        try:
            resp = await self._http.post(dest.url, content=body, headers=headers)
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            return Tried(ok=False, retryable=True, error=f"{type(exc).__name__}: {exc}")
        out = classify_http(resp.status_code, resp.headers, resp.text)
        return Tried(ok=out.ok, retryable=out.retryable, error=out.error, retry_after_s=out.retry_after_s)

    async def drain(self, timeout_s: float = 60.0) -> None:
        """Wait (bounded) for the deliveries in progress to end."""
        if self._active:
            await asyncio.wait(list(self._active.values()), timeout=timeout_s)

    async def close(self) -> None:
        """Stop: deliveries in progress are left to the next start's `recover`."""
        for task in list(self._active.values()):
            task.cancel()
        if self._http is not None:
            await self._http.aclose()
