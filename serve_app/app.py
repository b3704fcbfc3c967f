"""The FastAPI app: routes of CONTRACT.md over a `Platform` found in `app.state.platform`."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse

from core.errors import BundleTooLarge, InvalidInput
from serve_app import access_routes, errors, execution_routes, monitoring_routes, silence_routes
from serve_app.dependencies import CallerDep, PlatformDep, platform_of_scope
from serve_app.fast_invoke import MAX_WAIT_S, FastInvoke
from serve_app.fast_reads import FastReads
from serve_app.params import TaskId, VersionQuery
from serve_app.platform import Platform
from serve_app.replica_header import ReplicaHeader
from serve_app.task_reads import ids_of_json, ids_of_query, parse_wait


def create_app(platform: Platform) -> FastAPI:
    """The API over one replica's platform (the Serve deployment builds it in the replica, a test in-process)."""
    app = FastAPI(title="CloudFunctions", version="0.1.0")
    app.state.platform = platform
    errors.install(app)
    app.add_middleware(FastReads, platform_of=platform_of_scope)
    app.add_middleware(FastInvoke, platform_of=platform_of_scope)  # the hot path, seen first of the three
    app.add_middleware(ReplicaHeader)  # added last: the outermost, so every answer carries it

    # first: Serve matches each request against the routes in order (for its metrics), and this is the hot one
    @app.post("/v1/functions/{name}/invocations")
    async def invoke(request: Request, p: PlatformDep, c: CallerDep, name: str,
                     wait: Annotated[float | None, Query(ge=0, le=MAX_WAIT_S)] = None,
                     version: VersionQuery = None,
                     then: Annotated[str | None, Query(description="comma-separated functions to chain")] = None,
                     idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        body = await request.body()
        chain = [f.strip() for f in then.split(",") if f.strip()] if then else None
        record, finished = await p.invoke(c, name, body, version=version, wait_s=wait,
                                          idempotency_key=idempotency_key, then=chain)
        return JSONResponse(record, status_code=200 if finished else 202)

    @app.get("/healthz")
    async def healthz(p: PlatformDep) -> JSONResponse:
        try:
            parts = await p.healthy()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        ok = parts["database"] == "ok" and parts["ray"] == "ok"  # "sandbox" informs; deploy/invoke enforce it
        return JSONResponse({"status": "ok" if ok else "degraded", **parts}, status_code=200 if ok else 503)

    @app.post("/v1/functions", status_code=201)
    async def deploy(p: PlatformDep, c: CallerDep, name: Annotated[str, Form()],
                     archive: Annotated[UploadFile, File()], handler: Annotated[str | None, Form()] = None,
                     config: Annotated[str | None, Form()] = None) -> dict[str, Any]:
        data = await archive.read(p.limits.max_zip_bytes + 1)
        if len(data) > p.limits.max_zip_bytes:
            raise BundleTooLarge(f"the archive is larger than {p.limits.max_zip_bytes} bytes (CLOUDFN_MAX_ZIP_BYTES)")
        return await p.deploy(c, name=name, archive=data, handler=handler, config_json=config)

    @app.get("/v1/functions")
    async def list_functions(p: PlatformDep, c: CallerDep) -> dict[str, Any]:
        return {"functions": await p.functions.all(c.namespace)}

    @app.get("/v1/functions/{name}")
    async def get_function(p: PlatformDep, c: CallerDep, name: str) -> dict[str, Any]:
        return await p.functions.get(c.namespace, name)

    @app.get("/v1/functions/{name}/versions")
    async def list_versions(p: PlatformDep, c: CallerDep, name: str) -> dict[str, Any]:
        return {"versions": await p.functions.versions(c.namespace, name)}

    @app.post("/v1/functions/{name}/activate")
    async def activate(p: PlatformDep, c: CallerDep, name: str) -> dict[str, Any]:
        return await p.set_state(c, name, "active")

    @app.post("/v1/functions/{name}/deactivate")
    async def deactivate(p: PlatformDep, c: CallerDep, name: str) -> dict[str, Any]:
        return await p.set_state(c, name, "inactive")

    @app.post("/v1/functions/{name}/rollback")
    async def rollback(p: PlatformDep, c: CallerDep, name: str,
                       version: VersionQuery = None) -> dict[str, Any]:
        return await p.rollback(c, name, version)

    @app.put("/v1/functions/{name}/env")
    async def set_env(request: Request, p: PlatformDep, c: CallerDep, name: str) -> dict[str, Any]:
        try:
            body = json.loads(await request.body() or b"null")
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"the body is not valid JSON: {exc}") from None
        return await p.set_env(c, name, body)

    @app.get("/v1/functions/{name}/env")
    async def get_env(p: PlatformDep, c: CallerDep, name: str) -> dict[str, Any]:
        return {"function": name, "env": await p.functions.env_names(c.namespace, name, p.secrets.open)}

    @app.delete("/v1/functions/{name}", status_code=204)
    async def delete(p: PlatformDep, c: CallerDep, name: str) -> Response:
        await p.delete(c, name)
        return Response(status_code=204)

    @app.get("/v1/tasks")
    async def list_tasks(p: PlatformDep, c: CallerDep, function: str | None = None, status: str | None = None,
                         limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
                         ids: Annotated[str | None, Query(description="ID1,ID2,… (at most 100): these "
                                                          "records in this order")] = None) -> dict[str, Any]:
        if ids is not None:
            if function or status or limit is not None:
                raise InvalidInput("ids cannot be combined with function, status or limit")
            return {"tasks": await p.reads.lookup(c.namespace, ids_of_query(ids))}
        return {"tasks": await p.tasks.list(c.namespace, function=function, status=status, limit=limit or 50)}

    @app.post("/v1/tasks/lookup")
    async def lookup_tasks(request: Request, p: PlatformDep, c: CallerDep) -> dict[str, Any]:
        return {"tasks": await p.reads.lookup(c.namespace, ids_of_json(await request.body()))}

    @app.get("/v1/tasks/{task_id}")
    async def get_task(p: PlatformDep, c: CallerDep, task_id: TaskId,
                       wait: Annotated[str | None, Query(description="seconds (≤ 60) to wait for the task "
                                                         "to end")] = None) -> dict[str, Any]:
        if wait is None:
            return await p.reads.get(c.namespace, task_id)
        return await p.reads.wait(c.namespace, task_id, parse_wait(wait))

    @app.get("/v1/tasks/{task_id}/logs", response_class=PlainTextResponse)
    async def get_logs(p: PlatformDep, c: CallerDep, task_id: TaskId) -> str:
        return await p.tasks.logs(c.namespace, task_id)

    monitoring_routes.register(app)
    execution_routes.register(app)
    silence_routes.register(app)
    access_routes.register(app)
    return app
