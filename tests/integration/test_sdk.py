"""The Python SDK (`cloudfn.Client`, `cloudfn.AsyncClient`) against the live API over real HTTP: every call the
CLI makes, records as models, the API's errors as exceptions, and invoke_many's bound on unfinished tasks."""

from __future__ import annotations

import io
import threading
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloudfn import (
    AsyncClient,
    Client,
    ConflictError,
    ConnectionFailedError,
    Function,
    FunctionConfig,
    HandlerCheckError,
    InvalidInputError,
    Invocation,
    LocalInputError,
    NotFoundError,
    Task,
    TaskFailedError,
    UnauthorizedError,
    WaitTimeoutError,
)
from tests.conftest import ROOT, free_port

EX = ROOT / "examples"
NAP = "import time\ndef handler(e, c):\n    time.sleep(e.get('s', 0.05))\n    return {'i': e.get('i')}\n"


def zip_of(files: dict[str, str]) -> bytes:
    """A ZIP holding these files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, src in files.items():
            z.writestr(name, src)
    return buf.getvalue()


def max_overlap(tasks: list[Task]) -> int:
    """The most tasks that were unfinished at one instant: accepted (created_at) and not yet ended (finished_at),
    from the platform's own records."""
    events: list[tuple[datetime, int]] = []
    for t in tasks:
        assert t.created_at is not None and t.finished_at is not None, t
        events += [(t.created_at, 1), (t.finished_at, -1)]
    live = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        live += step
        peak = max(peak, live)
    return peak


class CountingTransport(httpx.HTTPTransport):
    """The real HTTP transport, counting invocation requests in flight (the most seen at once)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        counted = request.method == "POST" and request.url.path.endswith("/invocations")
        if counted:
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
        try:
            response = super().handle_request(request)
            response.read()
            if counted:
                with self.lock:
                    self.statuses.append(response.status_code)
            return response
        finally:
            if counted:
                with self.lock:
                    self.now -= 1


@pytest.fixture()
def client(api_server: Any, admin_key: str) -> Any:
    with Client(api_server.url, admin_key) as c:
        yield c


@pytest.fixture(scope="module")
def sdk_hello(api_server: Any, admin_key: str) -> str:
    with Client(api_server.url, admin_key) as c:
        fn = c.deploy("sdk-hello", EX / "hello")
    assert isinstance(fn, Function) and fn.name == "sdk-hello" and fn.state == "active"
    return fn.name


def test_deploy_a_folder_then_invoke_and_read_back(client: Client, sdk_hello: str) -> None:
    fn = client.function(sdk_hello)
    assert fn.handler == "main.handler" and fn.sha256 is not None and len(fn.sha256) == 64
    assert fn.version is not None and fn.version >= 1 and fn.active_version == fn.version
    rec = client.invoke(sdk_hello, {"name": "Ada"}, wait=True)
    assert isinstance(rec, Task) and rec.status == "succeeded" and rec.done and rec.succeeded
    assert rec.output["greeting"] == "Hello, Ada!" and rec.output["request_id"] == rec.task_id
    assert rec.metrics.peak_memory_mb is not None and rec.metrics.peak_memory_mb > 1
    assert isinstance(rec.metrics.cold_start, bool) and isinstance(rec.finished_at, datetime)
    assert rec.raw["task_id"] == rec.task_id and rec.raw["metrics"]["duration_ms"] == rec.metrics.duration_ms
    again = client.task(rec.task_id)
    assert again.status == "succeeded" and again.output == rec.output
    assert "greeting Ada" in client.logs(rec.task_id)
    assert sdk_hello in [f.name for f in client.functions()]


def test_deploy_a_zip_path_or_bytes_with_a_config(client: Client, tmp_path: Path) -> None:
    data = zip_of({"main.py": NAP})
    (tmp_path / "nap.zip").write_bytes(data)
    first = client.deploy("sdk-nap", tmp_path / "nap.zip", config=FunctionConfig(timeout_s=5, memory_mb=256))
    assert first.config["timeout_s"] == 5 and first.config["memory_mb"] == 256
    second = client.deploy("sdk-nap", data, config={"timeout_s": 7})
    assert second.version == (first.version or 0) + 1 and second.config["timeout_s"] == 7
    assert {first.version, second.version} <= {v.version for v in client.versions("sdk-nap")}
    back = client.rollback("sdk-nap", first.version)
    assert back.active_version == first.version
    assert client.function("sdk-nap").config["timeout_s"] == 5


def test_invoke_async_then_wait_and_result(client: Client, sdk_hello: str) -> None:
    accepted = client.invoke(sdk_hello, {"name": "Bo"})
    assert isinstance(accepted, Invocation) and accepted.status in ("queued", "running")
    done = client.wait(accepted.task_id, timeout_s=120)
    assert done.task_id == accepted.task_id and done.status == "succeeded"
    assert client.result(accepted.task_id)["greeting"] == "Hello, Bo!"


def test_wait_many_returns_every_record_in_order(client: Client, sdk_hello: str) -> None:
    ids = [client.invoke(sdk_hello, {"name": f"n{i}"}).task_id for i in range(6)]
    recs = client.wait_many(list(reversed(ids)), timeout_s=120)
    assert [r.task_id for r in recs] == list(reversed(ids))
    assert all(r.status == "succeeded" for r in recs)
    assert [r.output["echo"]["name"] for r in recs] == [f"n{i}" for i in reversed(range(6))]
    assert [t.task_id for t in client.lookup([ids[0], "no-such-task", ids[1]])] == [ids[0], ids[1]]
    with pytest.raises(NotFoundError):
        client.wait_many([ids[0], "no-such-task"], timeout_s=30)


def test_api_errors_become_exceptions_with_the_api_codes(client: Client, api_server: Any, sdk_hello: str) -> None:
    with pytest.raises(NotFoundError) as nf:
        client.task("no-such-task")
    assert nf.value.status == 404 and nf.value.code == "not_found" and "no-such-task" in nf.value.message
    with pytest.raises(NotFoundError):
        client.function("sdk-missing")
    with pytest.raises(InvalidInputError) as bad_zip:
        client.deploy("sdk-bad", b"not a zip")
    assert bad_zip.value.status == 400 and bad_zip.value.code.startswith("invalid") and "ZIP" in bad_zip.value.message
    with pytest.raises(InvalidInputError) as bad_name:
        client.deploy("Not_A_Name", zip_of({"main.py": NAP}))
    assert bad_name.value.status == 400 and bad_name.value.code == "invalid_input"
    with pytest.raises(HandlerCheckError) as check:
        client.deploy("sdk-nohandler", zip_of({"main.py": "x = 1\n"}))
    assert check.value.status == 422 and check.value.code == "handler_check_failed"
    with Client(api_server.url, "wrong-key") as stranger, pytest.raises(UnauthorizedError) as unauth:
        stranger.functions()
    assert unauth.value.status == 401 and unauth.value.code == "unauthorized"
    client.deploy("sdk-toggle", EX / "hello")
    client.deactivate("sdk-toggle")
    with pytest.raises(ConflictError) as conflict:
        client.invoke("sdk-toggle", {})
    assert conflict.value.status == 409 and "HTTP 409" in str(conflict.value)
    assert client.activate("sdk-toggle").state == "active"
    client.delete("sdk-toggle")
    with pytest.raises(NotFoundError):
        client.invoke("sdk-toggle", {})
    with Client(f"http://127.0.0.1:{free_port()}", "k", timeout_s=5) as nowhere, \
            pytest.raises(ConnectionFailedError):
        nowhere.functions()
    with pytest.raises(LocalInputError):
        client.deploy("sdk-missing", "/nonexistent/folder/or.zip")


def test_failures_and_timeouts_of_tasks(client: Client) -> None:
    client.deploy("sdk-fail", EX / "fail")
    rec = client.invoke("sdk-fail", {"order": 3}, wait=True)
    assert rec.status == "failed" and rec.error is not None and rec.error.type == "PaymentDeclined"
    assert any("main.py" in frame for frame in rec.error.stack)
    with pytest.raises(TaskFailedError) as failed:
        client.result(rec.task_id)
    assert failed.value.task.task_id == rec.task_id and "PaymentDeclined" in str(failed.value)
    client.deploy("sdk-sleeper", zip_of({"main.py": NAP}))
    slow = client.invoke("sdk-sleeper", {"s": 20})
    with pytest.raises(WaitTimeoutError) as late:
        client.wait(slow.task_id, timeout_s=1)
    assert late.value.task is not None and late.value.task.status in ("queued", "running")
    assert client.cancel(slow.task_id).task_id == slow.task_id
    assert client.wait(slow.task_id, timeout_s=60).status == "cancelled"


def test_invoke_many_keeps_at_most_concurrency_tasks_unfinished(api_server: Any, admin_key: str) -> None:
    transport = CountingTransport()
    with Client(api_server.url, admin_key, transport=transport) as c:
        c.deploy("sdk-fan", zip_of({"main.py": NAP}), config={"max_concurrency": 16})
        inputs = [{"s": 0.3, "i": i} for i in range(12)]
        tasks = c.invoke_many("sdk-fan", inputs, concurrency=3, progress=True)
        assert [t.output for t in tasks] == [{"i": i} for i in range(12)]
        assert all(t.status == "succeeded" for t in tasks)
        assert 2 <= max_overlap(tasks) <= 3, max_overlap(tasks)
        assert 2 <= transport.peak <= 3, transport.peak
        assert c.map("sdk-fan", [{"i": i} for i in range(5)], concurrency=2) == [{"i": i} for i in range(5)]


def test_invoke_many_retries_what_a_full_queue_refused(api_server: Any, admin_key: str) -> None:
    transport = CountingTransport()
    with Client(api_server.url, admin_key, transport=transport) as c:
        c.deploy("sdk-narrow", zip_of({"main.py": NAP}), config={"max_concurrency": 1, "max_queue": 1})
        # four at once against room for two (one running for 2 s, one queued): two are refused with 429
        tasks = c.invoke_many("sdk-narrow", [{"s": 2.0, "i": i} for i in range(4)], concurrency=4)
    assert [t.output for t in tasks] == [{"i": i} for i in range(4)]
    assert transport.statuses.count(429) >= 2 and transport.statuses.count(202) + \
        transport.statuses.count(200) == 4, transport.statuses


def test_map_raises_for_a_failed_task(client: Client) -> None:
    client.deploy("sdk-odd", zip_of({"main.py": "def handler(e, c):\n    assert e % 2 == 0, 'odd'\n    return e\n"}))
    with pytest.raises(TaskFailedError) as failed:
        client.map("sdk-odd", [0, 2, 3, 4], concurrency=2)
    assert failed.value.error is not None and failed.value.error.type == "AssertionError"


def test_pipelines_rules_metrics_and_lists(client: Client, sdk_hello: str) -> None:
    add1 = "def handler(e, c):\n    return {'x': e['x'] + 1}\n"
    client.deploy("sdk-add1", zip_of({"main.py": add1}))
    p = client.create_pipeline("sdk-p2", ["sdk-add1", "sdk-add1"])
    assert [s.function for s in p.steps] == ["sdk-add1", "sdk-add1"]
    assert client.pipeline("sdk-p2").name == "sdk-p2"
    run = client.invoke_pipeline("sdk-p2", {"x": 1}, wait=True)
    assert run.status == "succeeded" and run.output == {"x": 3}
    assert run.steps is not None and [s.status for s in run.steps] == ["succeeded", "succeeded"]
    m = client.metrics(sdk_hello, window="1h")
    assert m.function == sdk_hello and m.count >= 1 and m.duration_ms.p50 is not None
    rule = client.create_rule({"name": "sdk-slow", "function": sdk_hello, "kind": "threshold",
                               "metric": "duration_ms", "aggregate": "p95", "op": ">", "value": 60000,
                               "window_s": 60, "for_s": 0,
                               "channels": [{"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s"}]})
    assert rule.kind == "threshold" and rule.name == "sdk-slow"
    assert rule.id in [r.id for r in client.rules()]
    client.delete_rule(rule.id)
    assert rule.id not in [r.id for r in client.rules()]
    with pytest.raises(NotFoundError):
        client.delete_rule(rule.id)
    assert isinstance(client.anomalies(function=sdk_hello), list)
    assert isinstance(client.alerts(), list) and isinstance(client.dead_letters(), list)
    assert any(t.function == sdk_hello for t in client.tasks(function=sdk_hello, limit=5))
    assert "cloudfn" in client.prometheus() or client.prometheus() == ""
    assert client.health()["status"] == "ok"


async def test_async_client_deploys_invokes_waits_and_maps_errors(api_server: Any, admin_key: str) -> None:
    async with AsyncClient(api_server.url, admin_key) as c:
        fn = await c.deploy("sdk-async", zip_of({"main.py": NAP}), config={"max_concurrency": 16})
        assert fn.name == "sdk-async" and fn.state == "active"
        rec = await c.invoke("sdk-async", {"i": 1}, wait=True)
        assert rec.status == "succeeded" and rec.output == {"i": 1}
        accepted = await c.invoke("sdk-async", {"i": 2, "s": 0.2})
        assert (await c.result(accepted.task_id, timeout_s=60)) == {"i": 2}
        tasks = await c.invoke_many("sdk-async", [{"s": 0.3, "i": i} for i in range(8)], concurrency=2)
        assert [t.output for t in tasks] == [{"i": i} for i in range(8)]
        assert 1 <= max_overlap(tasks) <= 2, max_overlap(tasks)
        many = await c.wait_many([t.task_id for t in tasks], timeout_s=30)
        assert [t.task_id for t in many] == [t.task_id for t in tasks]
        with pytest.raises(NotFoundError) as nf:
            await c.task("no-such-task")
        assert nf.value.code == "not_found"
        with pytest.raises(InvalidInputError):
            await c.deploy("sdk-bad", b"not a zip")
    async with AsyncClient(api_server.url, "wrong-key") as stranger:
        with pytest.raises(UnauthorizedError):
            await stranger.functions()


def test_the_readme_example_runs_as_written(api_server: Any, admin_key: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    section = (ROOT / "README.md").read_text().split("\n## Python SDK\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("CLOUDFN_API_URL", api_server.url)
    monkeypatch.setenv("CLOUDFN_API_KEY", admin_key)
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md#python-sdk", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "succeeded Hello, Ada!" in out and "Hello, Bo!" in out
    assert "['Hello, a!', 'Hello, b!'" in out and "404 not_found" in out
    assert "['Hello, 0!', 'Hello, 1!', 'Hello, 2!']" in out
