"""The embedded PostgreSQL under `cloudfn up` is supervised: SIGKILL its postmaster mid-burst and the platform
starts it again; requests meanwhile get 503 with Retry-After (never a 500), and every accepted task ends."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bench.platform_proc import PlatformProcess

pytestmark = pytest.mark.slow
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


def test_postmaster_killed_mid_burst_is_restarted_and_every_accepted_task_ends() -> None:
    from core.db.embedded import EmbeddedPostgres, data_dir_for

    with PlatformProcess() as plat:
        pg = EmbeddedPostgres(data_dir_for(plat.home))  # reads its pid file only; the platform owns the server
        first_pid = pg.postmaster_pid()
        assert first_pid is not None
        answers: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        lock = threading.Lock()
        killed = threading.Event()

        def submit(i: int) -> None:
            with plat.client(timeout=60) as c:
                for k in range(40):
                    try:
                        r = c.post("/v1/functions/hello/invocations", json={"name": f"n{i}-{k}"})
                    except httpx.TransportError:
                        continue  # no answer at all: nothing was promised
                    with lock:
                        answers.append((r.status_code, r.json(), dict(r.headers)))
                        if len(answers) == 120 and not killed.is_set():
                            os.kill(first_pid, signal.SIGKILL)  # mid-burst: 120 answered, 200 to go
                            killed.set()
                    if r.status_code == 503:  # a well-behaved client: wait as told, go on
                        time.sleep(float(r.headers["retry-after"]))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(submit, range(8)))
        assert killed.is_set()

        deadline = time.monotonic() + 120
        while pg.postmaster_pid() in (None, first_pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        second_pid = pg.postmaster_pid()
        assert second_pid is not None and second_pid != first_pid  # started again by the platform
        assert "embedded PostgreSQL had stopped; starting it again" in plat.log.read_text()

        statuses = {status for status, _, _ in answers}
        assert statuses <= {202, 503}, statuses  # never a 500
        for status, body, headers in answers:
            if status == 503:
                assert body["error"]["code"] == "database_unavailable" and int(headers["retry-after"]) >= 1
        accepted = [body["task_id"] for status, body, _ in answers if status == 202]
        assert len(accepted) > 120  # accepting again once the database is back (the burst outlasts the outage)
        print(f"postmaster {first_pid} -> {second_pid}: {len(accepted)} accepted, "
              f"{sum(1 for s, _, _ in answers if s == 503)} answered 503, {320 - len(answers)} unanswered")

        ended: dict[str, str] = {}
        deadline = time.monotonic() + 180
        with plat.client(timeout=90) as c:
            while len(ended) < len(accepted) and time.monotonic() < deadline:
                for tid in [t for t in accepted if t not in ended]:
                    r = c.get(f"/v1/tasks/{tid}", params={"wait": 30})
                    if r.status_code == 200 and r.json()["status"] in TERMINAL:
                        ended[tid] = r.json()["status"]
                    elif r.status_code == 503:
                        time.sleep(float(r.headers.get("retry-after", "1")))
        assert len(ended) == len(accepted), f"{len(accepted) - len(ended)} accepted tasks never ended"
        assert set(ended.values()) == {"succeeded"}, {s: list(ended.values()).count(s) for s in set(ended.values())}
