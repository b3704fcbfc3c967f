"""The console without a browser: the frames its charts and tables show, one poller per tenant and role, the
session cookie, actions refusing bad input before calling the API, and a viewer's page without controls."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pandas as pd
import pytest
from tornado.web import create_signed_value

from core.access import Role
from panel_dashboard.actions import Actions
from panel_dashboard.auth import COOKIE, LOGIN_MAX_AGE_S, Login, Logins
from panel_dashboard.client import ApiClient, ApiConfig, ApiRefused
from panel_dashboard.frames import anomalies_frame, expected_text, marks_frame, series_frame, versions_frame
from panel_dashboard.pollers import Pollers
from panel_dashboard.store import DataStore, Snapshot

NOWHERE = "http://127.0.0.1:9"


def anomaly(i: int, metric: str, kind: str, at: str = "2026-01-01T10:00:30+00:00", **kw: Any) -> dict[str, Any]:
    return {"id": i, "function": "f", "version": 1, "kind": kind, "metric": metric, "observed": 900.0,
            "expected_low": 1.0, "expected_high": 10.0, "score": 0.987, "task_id": f"t-{i}", "detected_at": at,
            "detector": "isolation-forest", **kw}


def login(sid: str, tenant: str = "team-a", role: Role = Role.developer, key: str | None = None) -> Login:
    return Login(sid=sid, key=key or f"cfk_{sid}", tenant=tenant, role=role, key_name=sid, at=time.monotonic())


def test_series_frame_derives_the_error_rate_and_leaves_empty_buckets_empty() -> None:
    df = series_frame([{"start": 0.0, "count": 4, "errors": 1, "duration_ms_p95": 12.0, "cpu_ms_avg": 3.0,
                        "peak_memory_mb_max": 20.0, "duration_ms_p50": 5.0},
                       {"start": 60.0, "count": 0, "errors": 0, "duration_ms_p95": None}])
    assert list(df["time"]) == [pd.Timestamp("1970-01-01 00:00:00"), pd.Timestamp("1970-01-01 00:01:00")]
    assert df["error_rate"].iloc[0] == 0.25 and pd.isna(df["error_rate"].iloc[1])
    assert pd.isna(df["duration_ms_p95"].iloc[1])


def test_marks_explain_each_anomaly_on_its_metrics_chart_within_the_window() -> None:
    items = [anomaly(1, "duration_ms", "outlier"), anomaly(2, "cpu_ms", "drift"),
             anomaly(3, "duration_ms", "regression", at="2025-12-31T00:00:00+00:00")]
    marks = marks_frame(items, ("duration_ms",), pd.Timestamp("2026-01-01 09:00:00"))
    assert marks[["id", "metric", "observed", "expected", "detector", "score", "kind"]].to_dict("records") == [
        {"id": "1", "metric": "duration_ms", "observed": "900", "expected": "1 – 10", "detector": "isolation-forest",
         "score": "0.987", "kind": "outlier"}]
    assert marks["time"].iloc[0] == pd.Timestamp("2026-01-01 10:00:30") and marks["value"].iloc[0] == 900.0


def test_every_kind_of_anomaly_is_listed_with_its_feedback() -> None:
    items = [anomaly(1, "duration_ms", "outlier", feedback="false_positive"), anomaly(2, "cpu_ms", "drift"),
             anomaly(3, "error_rate", "regression"), anomaly(4, "invocations", "timeseries")]
    df = anomalies_frame(items)
    assert list(df["kind"]) == ["outlier", "drift", "regression", "timeseries"]
    assert list(df["feedback"]) == ["false_positive", "—", "—", "—"]
    assert expected_text({"expected_low": None, "expected_high": 3.5}) == "≤ 3.5"
    assert expected_text({}) == "—"


def test_versions_are_newest_first_with_the_active_one_marked() -> None:
    df = versions_frame([{"version": 1, "handler": "main.handler", "size_bytes": 2048},
                         {"version": 2, "handler": "main.handler"}], active=1)
    assert list(df["version"]) == [2, 1] and list(df["active"]) == ["", "✓"]
    assert df["size"].iloc[1] == "2,048"


def test_one_poller_per_tenant_and_role_stops_with_its_last_session_and_leaves_a_logged_out_key() -> None:
    async def run() -> None:
        pollers = Pollers(NOWHERE)
        a1, a2 = login("s1"), login("s2")
        store = pollers.acquire(a1, "tab-1")
        assert pollers.acquire(a1, "tab-2") is store and pollers.acquire(a2, "tab-3") is store
        viewer = pollers.acquire(login("s3", role=Role.viewer), "tab-4")
        other = pollers.acquire(login("s4", tenant="team-b"), "tab-5")
        assert len({id(store), id(viewer), id(other)}) == 3 and pollers.store_count() == 3
        pollers.logout(a1)  # a1's two tabs no longer count, and its key is no longer polled with
        assert store.running and store.client.config.key == a2.key
        pollers.release(a2.pair, "tab-3")
        assert not store.running and pollers.store_count() == 2
        assert pollers.acquire(a2, "tab-6") is not store  # a new session starts a fresh poller
        for s in list(pollers._stores.values()):
            s.stop()
        await asyncio.sleep(0)

    asyncio.run(run())


def test_the_session_cookie_names_a_live_login_only() -> None:
    logins = Logins(NOWHERE, "s" * 64)
    kept = login("sid-1")
    logins._by_sid[kept.sid] = kept
    signed = create_signed_value(logins.cookie_secret, COOKIE, kept.sid).decode()
    assert logins.from_cookie(signed) == kept
    assert logins.from_cookie(create_signed_value("another secret" * 4, COOKIE, kept.sid).decode()) is None
    tampered = signed[:-1] + ("0" if signed[-1] != "0" else "1")
    assert logins.from_cookie(tampered) is None
    assert logins.drop(kept.sid) == kept and logins.from_cookie(signed) is None
    old = dataclasses.replace(kept, at=time.monotonic() - LOGIN_MAX_AGE_S - 1)
    logins._by_sid[old.sid] = old
    assert logins.from_cookie(signed) is None  # a login past its age must log in again


def test_actions_refuse_bad_input_with_a_message_before_calling_the_api() -> None:
    actions = Actions(NOWHERE, "cfk_x")

    async def run() -> None:
        with pytest.raises(ApiRefused, match="choose a ZIP"):
            await actions.deploy("f", None, "", "{}")
        with pytest.raises(ApiRefused, match="config is not valid JSON"):
            await actions.deploy("f", b"PK", "f.zip", '{"timeout_s": ')
        with pytest.raises(ApiRefused, match="input is not valid JSON"):
            await actions.invoke("f", "{nope")
        with pytest.raises(ApiRefused, match="unreachable"):  # and a dead API is a message too, not a crash
            await actions.invoke("f", "{}")
        await actions.aclose()

    asyncio.run(run())


def test_a_viewers_function_page_has_no_management_or_invoke_controls() -> None:
    from panel_dashboard.function_page import FunctionPage

    store = DataStore(ApiClient(ApiConfig(NOWHERE, "cfk_v")))
    actions = Actions(NOWHERE, "cfk_v")
    viewer = FunctionPage("f", store, actions, login("v", role=Role.viewer))
    assert viewer.manage is None and viewer.invoke is None
    assert not viewer.anomalies.panel.objects[2].visible  # the feedback buttons' row
    dev = FunctionPage("f", store, actions, login("d", role=Role.developer))
    assert dev.manage is not None and dev.invoke is not None and dev.anomalies.panel.objects[2].visible
    invoker = FunctionPage("f", store, actions, login("i", role=Role.invoker))
    assert invoker.manage is None and invoker.invoke is not None
    viewer.update(Snapshot(functions=[{"name": "f", "state": "active", "active_version": 2}], version=1))
    assert "active version **2**" in viewer.summary.object


def test_a_picked_folder_is_zipped_from_inside_it_without_caches_and_bad_paths_are_refused() -> None:
    import io
    import zipfile

    from panel_dashboard.bundle import zip_folder

    data = zip_folder(["greeter/main.py", "greeter/lib/util.py", "greeter/__pycache__/main.cpython-311.pyc",
                       "greeter/lib/util.cpython-311.pyc"], [b"import lib.util", b"X = 1", b"junk", b"junk"])
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert sorted(z.namelist()) == ["lib/util.py", "main.py"] and z.read("lib/util.py") == b"X = 1"
    for paths, why in ((["greeter/../../etc/passwd"], "not inside it"), (["/etc/passwd"], "not inside it"),
                       (["greeter/__pycache__/a.pyc"], "no files")):
        with pytest.raises(ApiRefused, match=why):
            zip_folder(paths, [b"x"])
    with pytest.raises(ApiRefused, match="incomplete"):
        zip_folder(["greeter/main.py"], [])


def test_logs_and_refusals_are_shown_as_text_not_markup() -> None:
    from panel_dashboard.console import Outcome
    from panel_dashboard.function_page import logs_html

    assert "<script>" not in logs_html("```\n<script>alert(1)</script>") and "&lt;script&gt;" in logs_html("<script>")
    out = Outcome("x")
    out.refused(ApiRefused(400, "name '<img src=x onerror=alert(1)>' is not valid"))
    assert "<img" not in out.pane.object and out.pane.alert_type == "danger"


def test_the_charts_say_when_the_lake_could_not_answer_and_draw_when_it_did() -> None:
    from panel_dashboard.function_page import ChartsView

    charts = ChartsView("f", DataStore(ApiClient(ApiConfig(NOWHERE, "cfk_v"))))
    charts.update(Snapshot(series_errors={("f", "1h"): "GET /v1/functions/f/timeseries answered 503"}, version=1))
    assert "answered 503" in charts.note.object and "trying again" in charts.note.object
    points = [{"start": 0.0, "count": 3, "errors": 1, "duration_ms_p95": 9.0}, {"start": 30.0, "count": 2,
                                                                               "errors": 0, "duration_ms_p95": 5.0}]
    charts.update(Snapshot(series={("f", "1h"): points}, anomalies={"f": [anomaly(1, "duration_ms", "outlier",
                                                                                  at="1970-01-01T00:00:30Z")]},
                           version=2))
    assert charts.note.object.startswith("5 executions over 1h · 1 anomalies marked")
    duration = charts.charts["duration (ms)"]
    assert duration.series.data["value"] == [9.0, 5.0] and duration.series.data["count"] == [3, 2]
    assert duration.marks.data["detector"] == ["isolation-forest"] and duration.marks.data["time"] == [30_000.0]
    assert duration.marks.data["expected"] == ["1 – 10"]
    assert charts.charts["CPU (ms)"].marks.data["id"] == []


def test_the_function_pages_tables_escape_every_cell_and_say_when_empty() -> None:
    from panel_dashboard.tables import HtmlTable, one_decimal

    table = HtmlTable(pd.DataFrame(columns=["task_id", "duration_ms"]), css="t", height=100,
                      placeholder="No executions yet", formats={"duration_ms": one_decimal})
    assert "No executions yet" in table.pane.object and "<tr class=\"row\">" not in table.pane.object
    table.value = pd.DataFrame([{"task_id": "<img src=x onerror=alert(1)>", "duration_ms": 12.345},
                                {"task_id": "t-2", "duration_ms": None}])
    shown = table.pane.object
    assert shown.count('<tr class="row">') == 2 and "No executions yet" not in shown
    assert "<img" not in shown and "&lt;img src=x onerror=alert(1)&gt;" in shown
    assert "<td class=num>12.3</td>" in shown and "<td class=num>—</td>" in shown


def test_the_function_page_opens_with_its_charts_and_lays_out_the_rest_once_drawn() -> None:
    from panel_dashboard.function_page import FunctionPage

    store = DataStore(ApiClient(ApiConfig(NOWHERE, "cfk_d")))
    page = FunctionPage("f", store, Actions(NOWHERE, "cfk_d"), login("d", role=Role.developer))
    assert page.panel.objects == [page.summary, page.charts.panel, page.below] and page.below.objects == []
    page.update(Snapshot(functions=[{"name": "f", "state": "active", "active_version": 1}],
                         function_tasks={"f": [{"task_id": "t-1", "function": "f", "status": "succeeded"}]},
                         anomalies={"f": [anomaly(1, "duration_ms", "outlier")]}, version=1))
    page.lay_out_below()
    page.lay_out_below()  # once
    assert page.below.objects == [page.anomalies.panel, page.manage.panel, page.invoke.panel,  # type: ignore[union-attr]
                                  page.executions.panel]
    assert "t-1" in page.executions.table.pane.object and "isolation-forest" in page.anomalies.table.pane.object
