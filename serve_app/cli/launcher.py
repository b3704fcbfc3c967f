"""`cloudfn up`: PostgreSQL, Ray, the Serve API, the dashboard and the examples, in the foreground."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from core.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def say(msg: str) -> None:
    """Progress on stderr, flushed."""
    print(f"[cloudfn] {msg}", file=sys.stderr, flush=True)


def prepare_database(settings: Settings) -> tuple[str, Any]:
    """Start embedded PostgreSQL unless CLOUDFN_DATABASE_URL is set; migrate; return (url, server)."""
    from core.db.embedded import EmbeddedPostgres, data_dir_for
    from core.db.migrate import upgrade

    server = None
    url = settings.database_url
    if not url:
        server = EmbeddedPostgres(data_dir_for(settings.home))
        say(f"starting embedded PostgreSQL in {server.data_dir}")
        url = server.start()
        from cluster.ray_runtime import haproxy_dir

        server.guard(kill_match=str(haproxy_dir(settings)))
    upgrade(url)
    write_private(settings.home / "database.url", url)  # for batch jobs (python -m analytics.jobs.retrain)
    return url, server


def supervise_database(server: Any) -> None:
    """Start the embedded PostgreSQL again if its postmaster died; the API answers 503 meanwhile and the writer
    holds results back until it is up (the socket and URL stay the same)."""
    if server.postmaster_pid() is not None:
        return
    say("embedded PostgreSQL had stopped; starting it again")
    try:
        server.ensure_running()
        say(f"embedded PostgreSQL is up again (pid {server.postmaster_pid()})")
    except Exception as exc:  # e.g. the old server's backends still hold its shared memory: next turn
        say(f"embedded PostgreSQL did not start yet ({exc}); trying again")


def report_sandbox() -> None:
    """Say at start whether functions will run in the jail, not at all, or without it."""
    from cluster.sandbox.mode import insecure
    from cluster.sandbox.probe import jail_problem

    if insecure():
        say("WARNING: CLOUDFN_SANDBOX=insecure: functions run WITHOUT the jail (no namespaces, no seccomp, no uid "
            "of their own); task records say \"sandbox\": \"insecure\". Development only.")
        return
    problem = jail_problem()
    if problem:
        say(f"SANDBOX UNAVAILABLE: deploy and invoke answer 503 sandbox_unavailable until this is fixed: {problem}")
    else:
        say("sandbox   bubblewrap jail ok (own uid, namespaces, seccomp, cgroups)")


PRIVATE_FILES = ("admin.key", "secrets.key", "database.url", "ray.address")


def settle_modes(settings: Settings) -> None:
    """After every component has started: CLOUDFN_HOME 0700 and its key files 0600, whatever a component
    did to them on the way (the embedded PostgreSQL opens up its data directory's parents)."""
    os.chmod(settings.home, 0o700)
    for name in PRIVATE_FILES:
        path = settings.home / name
        if path.exists():
            os.chmod(path, 0o600)
    if (settings.home / "pgdata").exists() and os.geteuid() == 0:
        say(f"note: {settings.home}/pgdata (from an earlier version) needs its parents open to PostgreSQL's user")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)


def wait_healthy(url: str, timeout_s: float = 120.0) -> None:
    """Poll /healthz until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API at {url} did not become healthy in {timeout_s:.0f}s")


def deploy_examples(settings: Settings) -> None:
    """Deploy each folder of examples/ unless its active version already has the same content."""
    from cloudfn import CloudFnError
    from core.bundles import validate_and_repack, zip_folder
    from serve_app.cli.client import client_for

    if not EXAMPLES.is_dir():
        return
    with client_for(settings) as c:
        for d in sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and (p / "main.py").exists()):
            data = zip_folder(d)
            sha = validate_and_repack(data, "main.handler", _limits(settings)).sha256
            try:
                if c.function(d.name).sha256 == sha:
                    continue
            except CloudFnError:
                pass
            try:
                v = c.deploy(d.name, data)
                say(f"deployed example {d.name} v{v.version}")
            except CloudFnError as exc:
                say(f"could not deploy example {d.name}: {exc}")


def _limits(settings: Settings) -> Any:
    from core.bundles import BundleLimits

    return BundleLimits.from_settings(settings)


def start_dashboard(settings: Settings) -> subprocess.Popen[bytes]:
    """The dashboard in its own process (stopped with the platform)."""
    env = dict(os.environ, CLOUDFN_API_URL=settings.resolved_api_url)
    return subprocess.Popen([sys.executable, "-m", "panel_dashboard", "--port", str(settings.dashboard_port)],
                            env=env)


def run(settings: Settings) -> int:
    """Run until SIGINT/SIGTERM; stop everything started here."""
    import ray
    from ray import serve

    from analytics.alerting.channel_config import ChannelSettings
    from analytics.alerting.config import checked_alerting_config
    from analytics.lakes import open_lake
    from cluster.ray_runtime import kill_strays, start_or_join
    from core.auth import ensure_admin_key
    from core.db.engine import make_engine
    from serve_app.cli.serve_config import load_serve_options
    from serve_app.deployment import build

    try:
        serve_options = load_serve_options(settings)  # a bad file stops here, before anything starts
        open_lake(settings.lake_location)  # and so does a lake URI or AWS_* setting that cannot work
    except ValueError as exc:  # ServeConfigError is one
        say(f"failed: {exc}")
        return 2
    settings = settings.model_copy(update={"api_host": serve_options.host, "api_port": serve_options.port,
                                           "api_replicas": serve_options.replica_bound()})
    settings.home.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.home, 0o700)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    db_server = dash = None
    try:
        # a bad configs/alerting.yaml stops the start here, with the file, the field and what is wrong
        checked_alerting_config(settings.alerting_config, ChannelSettings.from_settings(settings))
        url, db_server = prepare_database(settings)
        engine = make_engine(url, pool_size=1)
        ensure_admin_key(engine, settings.admin_key_path)
        engine.dispose()
        if kill_strays(settings):
            say("killed processes a previous run of this instance left behind")
        say("starting Ray")
        info = start_or_join(settings, serve_options.env_vars)
        say(f"serve      {serve_options.describe()}")
        serve.start(http_options={"host": serve_options.host, "port": serve_options.port},
                    proxy_location=serve_options.proxy_location,
                    controller_options=({"runtime_env": {"env_vars": serve_options.controller_env_vars}}
                                        if serve_options.controller_env_vars else None))
        serve.run(build(settings, url, serve_options.deployment), name=serve_options.app_name,
                  route_prefix=serve_options.route_prefix, blocking=False)
        api = settings.resolved_api_url
        wait_healthy(api)
        report_sandbox()
        dash = start_dashboard(settings)
        deploy_examples(settings)
        settle_modes(settings)
        say(f"API        {api}")
        say(f"dashboard  http://127.0.0.1:{settings.dashboard_port}")
        if info.dashboard_url:
            write_private(settings.home / "ray.address", info.dashboard_url)
            say(f"Ray        {info.dashboard_url}  (RAY_AUTH_MODE=token ray job submit --address {info.dashboard_url})")
        say(f"admin key  {settings.admin_key_path}")
        say("ready; Ctrl-C stops everything")
        while not stop.wait(0.5):
            if dash.poll() is not None:
                say("the dashboard exited; restarting it")
                dash = start_dashboard(settings)
            if db_server is not None:
                supervise_database(db_server)
        return 0
    except Exception as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        say("stopping")
        if dash is not None:
            dash.terminate()
            try:
                dash.wait(10)
            except subprocess.TimeoutExpired:
                dash.kill()
        try:
            if ray.is_initialized():
                ray.shutdown()  # also ends Serve's actors; serve.shutdown() alone takes ~30 s here
        except Exception as exc:
            say(f"error while stopping Ray: {exc}")
        if db_server is not None:
            db_server.stop()
        say("stopped")


