"""Execution routes: pipelines, cancellation, resume, dead letters and redrive."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse

from core.errors import InvalidInput
from serve_app.dependencies import CallerDep, PlatformDep
from serve_app.fast_invoke import MAX_WAIT_S
from serve_app.params import TaskId


def register(app: FastAPI) -> None:
    """Add the execution routes to the app."""

    @app.post("/v1/pipelines", status_code=201)
    async def create_pipeline(request: Request, p: PlatformDep, c: CallerDep) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"null")
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"the body is not valid JSON: {exc}") from None
        return await p.pipelines.create(c, body)

    @app.get("/v1/pipelines/{name}")
    async def get_pipeline(p: PlatformDep, c: CallerDep, name: str) -> dict[str, Any]:
        return await p.pipelines.get(c, name)

    @app.post("/v1/pipelines/{name}/invocations")
    async def invoke_pipeline(request: Request, p: PlatformDep, c: CallerDep, name: str,
                              wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT_S)] = None,
                              idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        record, finished = await p.invoke_pipeline(c, name, await request.body(), wait_s=wait,
                                                   idempotency_key=idempotency_key)
        return JSONResponse(record, status_code=200 if finished else 202)

    @app.post("/v1/tasks/{task_id}/cancel")
    async def cancel(p: PlatformDep, c: CallerDep, task_id: TaskId) -> dict[str, Any]:
        return await p.cancel(c, task_id)

    @app.post("/v1/tasks/{task_id}/resume", status_code=202)
    async def resume(p: PlatformDep, c: CallerDep, task_id: TaskId) -> dict[str, Any]:
        return await p.pipelines.resume(c, task_id)

    @app.get("/v1/dead-letters")
    async def dead_letters(p: PlatformDep, c: CallerDep, function: str | None = None,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        return {"dead_letters": await p.dead_letters(c, function, limit)}

    @app.post("/v1/dead-letters/{task_id}/redrive", status_code=202)
    async def redrive(p: PlatformDep, c: CallerDep, task_id: TaskId) -> dict[str, Any]:
        return await p.redrive(c, task_id)
