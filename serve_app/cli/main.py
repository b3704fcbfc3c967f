"""`cloudfn`: the command-line interface over the REST API (CONTRACT.md's CLI table)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar, cast

import typer
from rich.console import Console
from rich.table import Table

from cloudfn import Client, CloudFnError, Task
from core.settings import Settings
from serve_app.cli import keys as cli_keys
from serve_app.cli.client import client_for
from serve_app.cli.common import fail
from serve_app.cli.notifications import notifications_app
from serve_app.cli.silences import silence_app

app = typer.Typer(help="CloudFunctions: deploy, invoke and watch serverless functions on Ray.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
P = ParamSpec("P")
R = TypeVar("R")



def client() -> Client:
    """The SDK's client, pointed at the API by the environment (CLOUDFN_API_URL, CLOUDFN_API_KEY, ...)."""
    return client_for(Settings())


def emit(data: Any) -> None:
    """Print JSON to stdout."""
    print(json.dumps(data, indent=2, default=str))


def call(fn: Callable[P, R], *args: P.args, **kw: P.kwargs) -> R:
    """Run an SDK call, turning its errors into one-line failures."""
    try:
        return fn(*args, **kw)
    except CloudFnError as exc:
        fail(str(exc))


@app.command()
def up() -> None:
    """Start the platform in the foreground (Ctrl-C stops everything)."""
    from serve_app.cli.launcher import run

    raise typer.Exit(run(Settings()))


@app.command()
def deploy(path: Path, name: Annotated[str, typer.Option(help="function name")],
           handler: Annotated[str | None, typer.Option(
               help="module.function (Python, default main.handler) or file.export (Node.js, default index.handler)")
           ] = None,
           runtime: Annotated[str | None, typer.Option(help="python3.11 (default) or nodejs20")] = None,
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
    if runtime is not None:
        cfg["runtime"] = runtime
    res = call(client().deploy, name, path, handler=handler, config=cfg or None)
    out.print(f"deployed [bold]{res.name}[/bold] version {res.version} "
              f"({res.state}, sha256 {(res.sha256 or '')[:12]})")


@app.command()
def invoke(name: str, input: Annotated[str | None, typer.Option("--input", help="event JSON")] = None,
           input_file: Annotated[Path | None, typer.Option("--input-file", help="file with the event JSON")] = None,
           wait: Annotated[bool, typer.Option("--wait", help="wait and print the finished task record")] = False,
           version: Annotated[int | None, typer.Option(help="invoke this version")] = None) -> None:
    """Invoke NAME asynchronously; print the task id (or, with --wait, the finished record)."""
    event = parse_event(input if input is not None else (input_file.read_text() if input_file else "null"))
    report(call(client().invoke, name, event, wait=wait, version=version or None))


def parse_event(body: str) -> Any:
    """The event JSON given on the command line (a one-line failure if it is not JSON)."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        fail(f"the input is not valid JSON: {exc}")


def report(answer: Any) -> None:
    """Print a finished task's record as JSON, or an accepted invocation's task id."""
    if isinstance(answer, Task):
        emit(answer.raw)
    else:
        print(answer.task_id)


@app.command()
def task(task_id: str) -> None:
    """Print a task record as JSON."""
    emit(call(client().task, task_id).raw)


@app.command()
def logs(task_id: str) -> None:
    """Print a task's logs."""
    sys.stdout.write(call(client().logs, task_id))


@app.command()
def functions(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """List functions."""
    data = call(client().functions)
    if as_json:
        emit([f.raw for f in data])
        return
    t = Table("name", "state", "version", "handler", "timeout_s", "memory_mb", "updated")
    for f in data:
        t.add_row(f.name, f.state, str(f.active_version), f.handler or "", str(f.config.get("timeout_s", "")),
                  str(f.config.get("memory_mb", "")), f.raw["updated_at"][:19])
    out.print(t)


@app.command()
def versions(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List a function's versions."""
    data = call(client().versions, name)
    if as_json:
        emit([v.raw for v in data])
        return
    t = Table("version", "sha256", "handler", "created")
    for v in data:
        t.add_row(str(v.version), v.sha256[:12], v.handler, v.raw["created_at"][:19])
    out.print(t)


@app.command()
def activate(name: str) -> None:
    """Activate a function."""
    r = call(client().activate, name)
    out.print(f"{r.name}: {r.state}")


@app.command()
def deactivate(name: str) -> None:
    """Deactivate a function (invocations get 409)."""
    r = call(client().deactivate, name)
    out.print(f"{r.name}: {r.state}")


@app.command()
def rollback(name: str, version: Annotated[int | None, typer.Option(help="target version")] = None) -> None:
    """Make an earlier version active again."""
    r = call(client().rollback, name, version or None)
    out.print(f"{r.name}: active version {r.active_version}")


@app.command()
def delete(name: str) -> None:
    """Delete a function (its tasks stay readable)."""
    call(client().delete, name)
    out.print(f"{name}: deleted")


@app.command()
def metrics(name: str, window: Annotated[str, typer.Option(help="e.g. 15m, 1h, 7d")] = "1h",
            as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Aggregates of NAME's executions over a window (DuckDB over the lake)."""
    m = call(client().metrics, name, window).raw
    if as_json:
        emit(m)
        return
    d, c, mem = m["duration_ms"], m["cpu_ms"], m["peak_memory_mb"]
    t = Table("figure", "value", title=f"{name}, last {window}")
    rows = [("count", m["count"]), ("errors", m["errors"]), ("error rate", m["error_rate"]),
            ("duration p50 / p95 / p99 ms", f"{_f(d['p50'])} / {_f(d['p95'])} / {_f(d['p99'])}"),
            ("duration avg / max ms", f"{_f(d['avg'])} / {_f(d['max'])}"),
            ("cpu avg / max ms", f"{_f(c['avg'])} / {_f(c['max'])}"),
            ("peak memory avg / max MB", f"{_f(mem['avg'])} / {_f(mem['max'])}"), ("cold starts", m["cold_starts"])]
    for k, v in rows:
        t.add_row(k, _f(v) if not isinstance(v, str) else v)
    out.print(t)


def _f(v: Any) -> str:
    return "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))


@app.command()
def anomalies(name: Annotated[str | None, typer.Argument(help="function (all if omitted)")] = None,
              kind: Annotated[str | None, typer.Option(help="outlier, timeseries, drift, regression")] = None,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Detected anomalies, newest first."""
    data = [a.raw for a in call(client().anomalies, function=name or None, kind=kind or None)]
    if as_json:
        emit(data)
        return
    t = Table("id", "detected", "function", "v", "kind", "metric", "observed", "expected", "score", "detector")
    for a in data:
        t.add_row(str(a["id"]), a["detected_at"][:19], a["function"], str(a["version"]), a["kind"], a["metric"],
                  _f(a["observed"]), f"{_f(a['expected_low'])}..{_f(a['expected_high'])}", _f(a["score"]),
                  a["detector"])
    out.print(t)


@app.command()
def feedback(anomaly_id: int, verdict: Annotated[str, typer.Argument(help="false_positive or confirmed")]) -> None:
    """Tell the detectors whether an anomaly was real."""
    call(client().feedback, anomaly_id, cast(Any, verdict))  # any other word: the API's 400 says which are valid
    out.print(f"anomaly {anomaly_id}: {verdict}")


@app.command()
def alerts(state: Annotated[str | None, typer.Option(help="firing or resolved")] = None,
           as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Alerts with their delivery history."""
    data = [a.raw for a in call(client().alerts, state=cast(Any, state or None))]  # the API refuses other states
    if as_json:
        emit(data)
        return
    t = Table("id", "rule", "function", "state", "value", "started", "resolved", "deliveries")
    for a in data:
        ok = sum(1 for d in a["deliveries"] if d["status"] == "delivered")
        t.add_row(str(a["id"]), str(a["rule_id"]), a["function"], a["state"], _f(a["value"]), a["started_at"][:19],
                  (a["resolved_at"] or "")[:19], f"{ok} ok / {len(a['deliveries'])}")
    out.print(t)


@app.command()
def cancel(task_id: str) -> None:
    """Cancel a queued or running task (its process is killed); prints the record."""
    emit(call(client().cancel, task_id).raw)


@app.command()
def resume(task_id: str) -> None:
    """Continue a failed pipeline run from its failed step."""
    emit(call(client().resume, task_id).raw)


@app.command("dead-letters")
def dead_letters(function: Annotated[str | None, typer.Option(help="only this function")] = None,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Tasks that failed for good, with their input."""
    rows = [d.raw for d in call(client().dead_letters, function=function or None)]
    if as_json:
        emit(rows)
        return
    t = Table("task", "function", "status", "attempts", "error", "failed at")
    for d in rows:
        err = d.get("error") or {}
        t.add_row(d["task_id"], d["function"], d["status"], str(d["attempts"]),
                  f"{err.get('type', '')}: {str(err.get('message', ''))[:60]}", (d["failed_at"] or "")[:19])
    out.print(t)


@app.command()
def redrive(task_id: str) -> None:
    """Run a dead letter again (its next attempt, same task id)."""
    emit(call(client().redrive, task_id).raw)


cli_keys.register(app)  # cloudfn tenants ..., cloudfn keys ...
pipeline_app = typer.Typer(help="Pipelines: chains of functions.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("create")
def pipeline_create(name: str, steps: Annotated[list[str], typer.Argument(help="functions in order; fn or fn@VERSION")]
                    ) -> None:
    """Create (or replace) a pipeline."""
    emit(call(client().create_pipeline, name, steps).raw)


@pipeline_app.command("invoke")
def pipeline_invoke(name: str, input: Annotated[str, typer.Option("--input", help="first step's event JSON")] = "null",
                    wait: Annotated[bool, typer.Option("--wait")] = False) -> None:
    """Run a pipeline; print the run's task id (or, with --wait, its record with every step)."""
    report(call(client().invoke_pipeline, name, parse_event(input), wait=wait))


@pipeline_app.command("show")
def pipeline_show(name: str) -> None:
    """Print a pipeline's definition."""
    emit(call(client().pipeline, name).raw)


rules_app = typer.Typer(help="Alert rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


@rules_app.command("create")
def rules_create(rule: Annotated[str, typer.Argument(help="the rule as JSON, or @FILE")]) -> None:
    """Create an alert rule."""
    text = Path(rule[1:]).read_text() if rule.startswith("@") else rule
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"the rule is not valid JSON: {exc}")
    emit(call(client().create_rule, body).raw)


@rules_app.command("list")
def rules_list() -> None:
    """List alert rules (JSON)."""
    emit([r.raw for r in call(client().rules)])


@rules_app.command("delete")
def rules_delete(rule_id: int) -> None:
    """Delete an alert rule."""
    call(client().delete_rule, rule_id)
    out.print(f"rule {rule_id}: deleted")


app.add_typer(silence_app, name="silence")
app.add_typer(notifications_app, name="notifications")

detect_app = typer.Typer(help="Anomaly detection tools.", no_args_is_help=True)
app.add_typer(detect_app, name="detect")


@detect_app.command("backtest")
def detect_backtest(path: Path) -> None:
    """Score a `timestamp,value` CSV with the live streaming detector: one score in [0, 1] per row."""
    from analytics.detection import backtest_scores, read_backtest_csv

    try:
        rows = read_backtest_csv(path)
    except (OSError, ValueError) as exc:
        fail(f"{path}: {exc}")
    write = sys.stdout.write
    for score in backtest_scores(rows):
        write(f"{score:.6f}\n")


@detect_app.command("retrain")
def detect_retrain(function: Annotated[str | None, typer.Option(help="only this function")] = None,
                   submit: Annotated[bool, typer.Option(help="run as a Ray job on the cluster")] = True,
                   ) -> None:
    """Refit every function's detector models from the lake's history (as a Ray job)."""
    import os
    import subprocess

    settings = Settings()
    args = [sys.executable, "-m", "analytics.jobs.retrain"] + (["--function", function] if function else [])
    env = dict(os.environ, CLOUDFN_HOME=str(settings.home))
    if not submit:
        raise typer.Exit(subprocess.call(args, env=env))
    addr_file = settings.home / "ray.address"
    if not addr_file.exists():
        fail(f"no {addr_file}: is `cloudfn up` running? (or pass --no-submit to run it here)")
    ray_cli = str(Path(sys.executable).with_name("ray"))
    dash = ["--address", addr_file.read_text().strip()]
    env.setdefault("RAY_AUTH_MODE", "token")
    runtime_env = json.dumps({"env_vars": {"CLOUDFN_HOME": str(settings.home)}})
    cmd = [ray_cli, "job", "submit", *dash, "--runtime-env-json", runtime_env, "--", *args]
    for _ in range(20):  # the node's job agent may still be starting right after `cloudfn up`
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        no_agent = False
        assert proc.stdout is not None
        for line in proc.stdout:  # stream the job's logs as they come
            no_agent = no_agent or "No available agent" in line
            sys.stdout.write(line)
        code = proc.wait()
        if code == 0 or not no_agent:
            raise typer.Exit(code)
        time.sleep(3)
    fail("ray job submit: the cluster's job agent did not become available in 60 s")


def main() -> None:
    """Console-script entry point."""
    app()
