"""Where a batch of invocations runs, behind one interface for the dispatcher: Ray tasks in a version's own
runtime_env, Ray tasks from the bundle's bytes while that env's workers start (a bridge), the version's shared warm
host (`serve_app.dispatch.warm_hosts.HostRunner`) or its express lane (`serve_app.dispatch.lanes.Lane`), which have
the same methods."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import ray


class Runner(Protocol):
    """Runs batches: `submit` returns an awaitable Ray ref; `release` follows every submitted call."""

    cancel_kills_call: bool  # True: cancelling one invocation may kill its call (its batch mates share it)

    def submit(self, common: dict[str, Any], items: list[tuple[str, bytes]]) -> Any: ...

    def cancel(self, ref: Any, task_id: str) -> None:
        """Stop a running invocation alone in its call (only when `cancel_kills_call`)."""

    def abort(self, ref: Any) -> None:
        """The call overran its backstop: stop it."""

    def failed(self) -> None:
        """The call raised (its executor was lost)."""

    def release(self) -> None:
        """The call ended, either way."""


@dataclass
class TaskRunner:
    """Ray tasks of `remote`, each given `lead` before the batch's own arguments."""

    remote: Any  # execute.options(...) or execute_package.options(...)
    lead: tuple[Any, ...] = ()
    runtime_env: dict[str, Any] | None = field(default=None, repr=False)  # the version's, for its lane
    cancel_kills_call: bool = True

    def submit(self, common: dict[str, Any], items: list[tuple[str, bytes]]) -> Any:
        """One Ray task for the batch."""
        return self.remote.remote(*self.lead, common, items)

    def cancel(self, ref: Any, task_id: str) -> None:
        """Kill the task's worker (its sandboxed child dies with it)."""
        ray.cancel(ref, force=True)

    def abort(self, ref: Any) -> None:
        """Kill the task's worker (its sandboxed child dies with it)."""
        ray.cancel(ref, force=True)

    def failed(self) -> None:
        """Nothing to do: Ray replaces a lost task worker."""

    def release(self) -> None:
        """Nothing to do: tasks hold nothing between calls."""


def when_answered(ref: Any, on_ok: Callable[[], None], on_error: Callable[[BaseException | None], None]) -> None:
    """Call `on_ok` once a Ray call answers, `on_error` (with the exception) if it fails; never blocks."""

    def done(fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            on_error(None if fut.cancelled() else fut.exception())
        else:
            on_ok()

    asyncio.ensure_future(ref).add_done_callback(done)
