"""Session-wide real parts: embedded PostgreSQL (or CLOUDFN_DATABASE_URL), one local Ray, the API over HTTP."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Alerting for the session's platform: the default fast grouping, plus an inhibition rule tests can rely on
ALERTING_YAML = """\
route:
  group_by: [alertname]
  group_wait: 500ms
  group_interval: 10s
inhibit_rules:
  - source_matchers: ['alertname="function-down"']
    target_matchers: ['metric="duration_ms"']
    equal: [function]
"""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def cf_home() -> Iterator[Path]:
    """A temporary CLOUDFN_HOME for the session."""
    # the platform's lake flush thread may still be writing while the session ends: never an error at teardown
    with tempfile.TemporaryDirectory(prefix="cfhome-", ignore_cleanup_errors=True) as d:
        yield Path(d)


@pytest.fixture(scope="session")
def database_url(cf_home: Path) -> Iterator[str]:
    """A migrated PostgreSQL: the external one if CLOUDFN_DATABASE_URL is set, else an embedded one."""
    from core.db.embedded import STATE_ROOT, EmbeddedPostgres, data_dir_for
    from core.db.migrate import upgrade

    url = os.environ.get("CLOUDFN_DATABASE_URL")
    server = None
    if not url:
        server = EmbeddedPostgres(data_dir_for(cf_home))
        url = server.start()
    upgrade(url)
    yield url
    if server is not None:
        server.stop()
        if server.data_dir.is_relative_to(STATE_ROOT):
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[Any]:
    """The session's SMTP server (aiosmtpd): CLOUDFN_SMTP_URL of the in-process platform points here."""
    from tests.receivers import MailSink, smtp_controller

    sink = MailSink()
    controller, _ = smtp_controller(sink)
    yield sink
    controller.stop()


@pytest.fixture(scope="session")
def twilio() -> Iterator[Any]:
    """The session's Twilio Messages API stand-in: CLOUDFN_SMS_URL of the in-process platform points here."""
    from tests.receivers import TwilioStandIn

    stand_in = TwilioStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture(scope="session")
def settings(cf_home: Path, mail_sink: Any, twilio: Any) -> Any:
    """Settings for the in-process platform, with e-mail and SMS going to the session's local receivers."""
    from core.settings import Settings

    alerting = cf_home / "alerting.yaml"  # the session's routing tree, not the repository's configs/alerting.yaml
    alerting.write_text(ALERTING_YAML)
    return Settings(home=cf_home, api_port=free_port(), dashboard_port=free_port(),
                    smtp_url=mail_sink.url, smtp_from="CloudFn <alerts@cloudfn.test>",
                    sms_url=twilio.url, sms_sid=twilio.sid, sms_token=twilio.token, sms_from="+15005550006",
                    alerting_config=alerting)


@pytest.fixture(scope="session")
def ray_cluster(settings: Any) -> Iterator[Any]:
    """One local Ray cluster for the whole session (2 CPUs)."""
    import ray

    from cluster.ray_runtime import start_or_join

    info = start_or_join(settings.model_copy(update={"ray_num_cpus": 2}))
    yield info
    ray.shutdown()


class ApiServer:
    """The FastAPI app with a real Platform, served by uvicorn on a free port in a thread."""

    def __init__(self, settings: Any, database_url: str, **platform_options: Any) -> None:
        import uvicorn

        from serve_app.http.app import create_app
        from serve_app.platform import Platform

        self.platform = Platform(settings, database_url, **platform_options)
        self.app = create_app(self.platform)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        from serve_app.cli.launcher import wait_healthy

        self.thread.start()
        wait_healthy(self.url, timeout_s=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="session")
def api_server(settings: Any, database_url: str, ray_cluster: Any) -> Iterator[ApiServer]:
    """The API, started once per session."""
    from core.auth import ensure_admin_key
    from core.db.engine import make_engine

    eng = make_engine(database_url, pool_size=1)
    ensure_admin_key(eng, settings.admin_key_path)
    eng.dispose()
    srv = ApiServer(settings, database_url)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def admin_key(api_server: ApiServer, settings: Any) -> str:
    """The admin key the platform created."""
    return str(settings.admin_key_path.read_text().strip())


@pytest.fixture()
def api(api_server: ApiServer, admin_key: str) -> Iterator[httpx.Client]:
    """An authenticated HTTP client for the API."""
    with httpx.Client(base_url=api_server.url, headers={"Authorization": f"Bearer {admin_key}"},
                      timeout=120) as c:
        yield c


def zip_dir(path: Path) -> bytes:
    """Zip a folder (the CLI's way)."""
    from core.bundles import zip_folder

    return zip_folder(path)


def own_workers_started(server: ApiServer, timeout_s: float = 60.0) -> None:
    """Wait until every newly deployed version runs in its own runtime_env worker (no bridge left): tests that
    measure executions' timing start from that steady state, not during a worker's start-up."""
    import time

    deadline = time.monotonic() + timeout_s
    while server.platform._bridges and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server.platform._bridges, "a new version's own worker did not start"


def zip_files(files: dict[str, str]) -> bytes:
    """A ZIP holding these files (name -> source)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, src in files.items():
            z.writestr(n, src)
    return buf.getvalue()


def deploy(api: httpx.Client, name: str, folder: Path | None = None, *, files: dict[str, str] | None = None,
           config: dict[str, Any] | None = None, handler: str | None = None) -> httpx.Response:
    """Deploy a folder or a dict of files as NAME; return the raw response."""
    import json

    if files is not None:
        data = zip_files(files)
    else:
        assert folder is not None
        data = zip_dir(folder)
    form: dict[str, str] = {"name": name}
    if config is not None:
        form["config"] = json.dumps(config)
    if handler is not None:
        form["handler"] = handler
    return api.post("/v1/functions", data=form, files={"archive": ("f.zip", data, "application/zip")})
