"""`cloudfn`: the command-line interface over the REST API (CONTRACT.md's CLI table)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings
from serve_app.client import ApiError, Client, load_archive

app = typer.Typer(help="CloudFunctions: deploy, invoke and watch serverless functions on Ray.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def fail(message: str, code: int = 1) -> None:
    """One line on stderr, non-zero exit."""
    print(f"cloudfn: {message}", file=sys.stderr)
    raise typer.Exit(code)


def client() -> Client:
    """An API client from the environment."""
    return Client(Settings())


def emit(data: Any) -> None:
    """Print JSON to stdout."""
    print(json.dumps(data, indent=2, default=str))


def call(fn: Any, *args: Any, **kw: Any) -> Any:
    """Run an API call, turning errors into one-line failures."""
    try:
        return fn(*args, **kw)
    except ApiError as exc:
        fail(str(exc))


@app.command()
def up() -> None:
    """Start the platform in the foreground (Ctrl-C stops everything)."""
    from serve_app.launcher import run

    raise typer.Exit(run(Settings()))


@app.command()
def deploy(path: Path, name: Annotated[str, typer.Option(help="function name")],
           handler: Annotated[str | None, typer.Option(help="module.function, default main.handler")] = None,
           timeout: Annotated[float | None, typer.Option(help="timeout in seconds")] = None,
           memory: Annotated[int | None, typer.Option(help="memory limit in MB")] = None,
           config: Annotated[str | None, typer.Option(help="config JSON (timeout_s, memory_mb, env, ...)")] = None,
           ) -> None:
    """Upload a ZIP or a folder as a new version of NAME."""
    if not path.exists():
        fail(f"{path} does not exist")
    cfg: dict[str, Any] = {}
    if config:
        try:
            cfg = json.loads(config)
        except json.JSONDecodeError as exc:
            fail(f"--config is not valid JSON: {exc}")
    if timeout is not None:
        cfg["timeout_s"] = timeout
    if memory is not None:
        cfg["memory_mb"] = memory
    res = call(client().deploy, name, load_archive(path), handler, cfg or None)
    out.print(f"deployed [bold]{res['name']}[/bold] version {res['version']} "
              f"({res['state']}, sha256 {res['sha256'][:12]})")


@app.command()
def invoke(name: str, input: Annotated[str | None, typer.Option("--input", help="event JSON")] = None,
           input_file: Annotated[Path | None, typer.Option("--input-file", help="file with the event JSON")] = None,
           wait: Annotated[bool, typer.Option("--wait", help="wait and print the finished task record")] = False,
           version: Annotated[int | None, typer.Option(help="invoke this version")] = None) -> None:
    """Invoke NAME asynchronously; print the task id (or, with --wait, the finished record)."""
    body = input if input is not None else (input_file.read_text() if input_file else "null")
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        fail(f"the input is not valid JSON: {exc}")
    c = client()
    params: dict[str, Any] = {"wait": 60} if wait else {}
    if version:
        params["version"] = version
    rec = call(c.json, "POST", f"/v1/functions/{name}/invocations", content=body,
               headers={"content-type": "application/json"}, params=params)
    if not wait:
        print(rec["task_id"])
        return
    while rec.get("status") not in TERMINAL:
        time.sleep(0.5)
        rec = call(c.json, "GET", f"/v1/tasks/{rec['task_id']}")
    emit(rec)


@app.command()
def task(task_id: str) -> None:
    """Print a task record as JSON."""
    emit(call(client().json, "GET", f"/v1/tasks/{task_id}"))


@app.command()
def logs(task_id: str) -> None:
    """Print a task's logs."""
    r = call(client().request, "GET", f"/v1/tasks/{task_id}/logs")
    sys.stdout.write(r.text)


@app.command()
def functions(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """List functions."""
    data = call(client().json, "GET", "/v1/functions")["functions"]
    if as_json:
        emit(data)
        return
    t = Table("name", "state", "version", "handler", "timeout_s", "memory_mb", "updated")
    for f in data:
        cfg = f.get("config") or {}
        t.add_row(f["name"], f["state"], str(f.get("active_version")), f.get("handler", ""),
                  str(cfg.get("timeout_s", "")), str(cfg.get("memory_mb", "")), f["updated_at"][:19])
    out.print(t)


@app.command()
def versions(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List a function's versions."""
    data = call(client().json, "GET", f"/v1/functions/{name}/versions")["versions"]
    if as_json:
        emit(data)
        return
    t = Table("version", "sha256", "handler", "created")
    for v in data:
        t.add_row(str(v["version"]), v["sha256"][:12], v["handler"], v["created_at"][:19])
    out.print(t)


@app.command()
def activate(name: str) -> None:
    """Activate a function."""
    r = call(client().json, "POST", f"/v1/functions/{name}/activate")
    out.print(f"{r['name']}: {r['state']}")


@app.command()
def deactivate(name: str) -> None:
    """Deactivate a function (invocations get 409)."""
    r = call(client().json, "POST", f"/v1/functions/{name}/deactivate")
    out.print(f"{r['name']}: {r['state']}")


@app.command()
def rollback(name: str, version: Annotated[int | None, typer.Option(help="target version")] = None) -> None:
    """Make an earlier version active again."""
    r = call(client().json, "POST", f"/v1/functions/{name}/rollback", params={"version": version} if version else {})
    out.print(f"{r['name']}: active version {r['active_version']}")


@app.command()
def delete(name: str) -> None:
    """Delete a function (its tasks stay readable)."""
    call(client().request, "DELETE", f"/v1/functions/{name}")
    out.print(f"{name}: deleted")


def main() -> None:
    """Console-script entry point."""
    app()
