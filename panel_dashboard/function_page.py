"""A function's page: its state and versions, the management buttons, invoke, the lake's charts over a chosen
window with anomalies marked and explained, every anomaly with feedback, and its newest executions (live)."""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from panel_dashboard.actions import Actions
from panel_dashboard.auth import Login
from panel_dashboard.charts import Chart, TimeAxis
from panel_dashboard.client import ApiRefused
from panel_dashboard.console import Outcome, may_invoke, may_manage
from panel_dashboard.frames import (
    CHARTS,
    anomalies_frame,
    executions_frame,
    marks_frame,
    series_frame,
    versions_frame,
)
from panel_dashboard.store import WINDOWS, DataStore, Snapshot
from panel_dashboard.tables import HtmlTable, one_decimal

DEFAULT_WINDOW = "1h"


class ManageView:
    """Activate, deactivate, roll back to a chosen version, and delete after a confirmation (developer and up)."""

    def __init__(self, name: str, actions: Actions) -> None:
        self.name = name
        self.actions = actions
        self.versions = HtmlTable(versions_frame([]), css="versions-table", height=160, placeholder="No versions")
        self.activate = pn.widgets.Button(label="Activate", color="success", width=110,
                                          css_classes=["activate-button"])
        self.deactivate = pn.widgets.Button(label="Deactivate", color="warning", width=110,
                                            css_classes=["deactivate-button"])
        self.version = pn.widgets.Select(label="Version", options=[], width=110, css_classes=["rollback-version"])
        self.rollback = pn.widgets.Button(label="Roll back to this version", width=200,
                                          css_classes=["rollback-button"])
        self.delete = pn.widgets.Button(label="Delete…", color="danger", width=110, css_classes=["delete-button"])
        self.confirm = pn.widgets.Button(label=f"Yes, delete {name}", color="danger", width=200,
                                         css_classes=["confirm-delete"])
        self.cancel = pn.widgets.Button(label="Cancel", width=100, css_classes=["cancel-delete"])
        self.confirm_row = pn.Row(pn.pane.Markdown(f"Delete **{name}**? New invocations will get 404; past tasks stay "
                                                   "readable."), self.confirm, self.cancel, visible=False)
        self.outcome = Outcome("manage-outcome")
        self.activate.on_click(self._activate)
        self.deactivate.on_click(self._deactivate)
        self.rollback.on_click(self._rollback)
        self.delete.on_click(self._ask)
        self.cancel.on_click(self._ask)
        self.confirm.on_click(self._delete)
        self.panel = pn.Column("### Versions", self.versions.pane,
                               pn.Row(self.activate, self.deactivate, self.version,
                                      pn.Column(pn.Spacer(height=18), self.rollback), pn.Column(pn.Spacer(height=18),
                                                                                                self.delete)),
                               self.confirm_row, self.outcome.pane, sizing_mode="stretch_width")

    async def load(self) -> None:
        """Fetch the versions (at page load and after each change)."""
        try:
            fn = await self.actions.function(self.name)
            df = versions_frame(await self.actions.versions(self.name), fn.get("active_version"))
        except Exception as exc:
            self.outcome.refused(exc)
            return
        self.versions.value = df
        self.version.options = [str(v) for v in df["version"]]

    async def _run(self, call: Any, done: str) -> None:
        try:
            fn = await call
            self.outcome.ok(f"**{self.name}** {done}: state {fn.get('state')}, active version "
                            f"{fn.get('active_version')}")
        except Exception as exc:
            self.outcome.refused(exc)
        await self.load()

    async def _activate(self, _event: Any) -> None:
        await self._run(self.actions.set_state(self.name, "active"), "activated")

    async def _deactivate(self, _event: Any) -> None:
        await self._run(self.actions.set_state(self.name, "inactive"), "deactivated")

    async def _rollback(self, _event: Any) -> None:
        if not self.version.value:
            self.outcome.refused(ApiRefused(0, "pick the version to roll back to"))
            return
        await self._run(self.actions.rollback(self.name, int(self.version.value)),
                        f"rolled back to version {self.version.value}")

    def _ask(self, _event: Any) -> None:
        self.confirm_row.visible = not self.confirm_row.visible

    async def _delete(self, _event: Any) -> None:
        self.confirm_row.visible = False
        try:
            await self.actions.delete(self.name)
            self.outcome.ok(f"**{self.name}** deleted. [Back to the functions](./)")
        except Exception as exc:
            self.outcome.refused(exc)


class InvokeView:
    """Invoke with a JSON input and show the record, the logs and the function's figures (invoker and up)."""

    def __init__(self, name: str, actions: Actions) -> None:
        self.name = name
        self.actions = actions
        self.input = pn.widgets.TextAreaInput(label="Input (JSON)", value="{}", height=90, sizing_mode="stretch_width",
                                              css_classes=["invoke-input"])
        self.button = pn.widgets.Button(label="Invoke", color="primary", width=120, css_classes=["invoke-button"])
        self.outcome = Outcome("invoke-outcome")
        self.result = pn.pane.JSON({}, depth=2, name="Result", css_classes=["invoke-result"], visible=False)
        self.logs = pn.pane.HTML("", css_classes=["invoke-logs"], visible=False, sizing_mode="stretch_width")
        self.metrics = pn.pane.JSON({}, depth=2, css_classes=["invoke-metrics"], visible=False)
        self.button.on_click(self._invoke)
        shown = pn.Row(pn.Column("**Result**", self.result), pn.Column("**Figures (1h)**", self.metrics))
        self.panel = pn.Column("### Invoke", self.input, self.button, self.outcome.pane, shown, self.logs,
                               sizing_mode="stretch_width")

    async def _invoke(self, _event: Any) -> None:
        self.button.disabled = True
        try:
            task = await self.actions.invoke(self.name, self.input.value or "{}")
            self.result.object, self.result.visible = task, True
            status = task.get("status")
            self.outcome.ok(f"task `{task.get('task_id')}` **{status}**")
            if status not in (None, "queued", "running"):
                text = await self.actions.logs(str(task["task_id"]))
                self.logs.object = logs_html(text)
                self.logs.visible = True
            self.metrics.object, self.metrics.visible = await self.actions.metrics(self.name), True
        except Exception as exc:
            self.outcome.refused(exc)
        finally:
            self.button.disabled = False


class ChartsView:
    """Duration, CPU, memory and error rate per bucket over the chosen window, from the lake, anomalies marked."""

    def __init__(self, name: str, store: DataStore) -> None:
        self.name = name
        self.store = store
        self.window = pn.widgets.RadioButtonGroup(label="Window", options=list(WINDOWS), value=DEFAULT_WINDOW,
                                                  css_classes=["window-pick"])
        self.note = pn.pane.Markdown("", css_classes=["charts-note"])
        axis = TimeAxis()
        self.charts = {title: Chart(title, axis) for title in CHARTS}
        self._drawn: tuple[Any, ...] | None = None
        self.window.param.watch(lambda _e: self._ask(), "value")
        self.panel = pn.Column("### Over time (from the lake)", pn.Row(self.window, self.note),
                               pn.GridBox(*(pn.pane.Bokeh(c.figure, sizing_mode="stretch_width")
                                            for c in self.charts.values()), ncols=2, sizing_mode="stretch_width"),
                               sizing_mode="stretch_width")

    def _ask(self) -> None:
        self.store.watch_series(self.name, str(self.window.value))
        self.update(self.store.snapshot)

    def update(self, snap: Snapshot) -> None:
        """Redraw when the window's points or the anomalies changed."""
        window = str(self.window.value)
        self.store.watch_series(self.name, window)
        points = snap.series.get((self.name, window))
        if points is None:
            failed = snap.series_errors.get((self.name, window))
            self.note.object = f"Loading {window}…" + (f" (last try: {failed}; trying again)" if failed else "")
            return
        anomalies = snap.anomalies.get(self.name)
        key = (window, tuple((p.get("start"), p.get("count")) for p in points),
               tuple(a.get("id") for a in anomalies or []))
        if key == self._drawn:
            return
        self._drawn = key
        df = series_frame(points)
        start = df["time"].iloc[0] if len(df) else None
        total = int(df["count"].sum())
        marked = 0
        for title, (col, metrics) in CHARTS.items():
            marks = marks_frame(anomalies, metrics, start)
            marked += len(marks)
            self.charts[title].draw(df, col, marks)
        self.note.object = f"{total:,} executions over {window} · {marked} anomalies marked (red; hover for why)"


class AnomaliesView:
    """Every anomaly of the function, of every kind, with its explanation; feedback buttons for developers."""

    def __init__(self, name: str, actions: Actions, manage: bool) -> None:
        self.name = name
        self.actions = actions
        self.table = HtmlTable(anomalies_frame([]), css="anomalies-table", height=220,
                               placeholder="No anomalies detected")
        self.pick = pn.widgets.Select(label="Anomaly", options=[], width=140, css_classes=["feedback-anomaly"])
        self.false_positive = pn.widgets.Button(label="False positive", width=140, css_classes=["feedback-fp"])
        self.confirmed = pn.widgets.Button(label="Confirmed", color="primary", width=120,
                                           css_classes=["feedback-confirmed"])
        self.outcome = Outcome("feedback-outcome")
        self.false_positive.on_click(self._false_positive)
        self.confirmed.on_click(self._confirmed)
        buttons = pn.Row(self.pick, pn.Column(pn.Spacer(height=18), self.false_positive),
                         pn.Column(pn.Spacer(height=18), self.confirmed), visible=manage)
        self.panel = pn.Column("### Anomalies", self.table.pane, buttons, self.outcome.pane,
                               sizing_mode="stretch_width")

    def update(self, snap: Snapshot) -> None:
        """Show the anomalies the poller holds for this function."""
        df = anomalies_frame(snap.anomalies.get(self.name))
        if not df.equals(self.table.value):
            self.table.value = df
            self.pick.options = [str(i) for i in df["id"]]

    async def _false_positive(self, _event: Any) -> None:
        await self._feedback("false_positive")

    async def _confirmed(self, _event: Any) -> None:
        await self._feedback("confirmed")

    async def _feedback(self, verdict: str) -> None:
        if not self.pick.value:
            self.outcome.refused(ApiRefused(0, "pick the anomaly the feedback is about"))
            return
        try:
            body = await self.actions.feedback(int(self.pick.value), verdict)
            self.outcome.ok(f"anomaly {body.get('id')} marked **{body.get('feedback')}**")
        except Exception as exc:
            self.outcome.refused(exc)


class FunctionExecutionsView:
    """This function's newest executions, newest first, as the poller sees them (live)."""

    def __init__(self, name: str, store: DataStore) -> None:
        self.name = name
        self.store = store
        self.table = HtmlTable(executions_frame([]), css="function-executions", height=300,
                               placeholder="No executions yet",
                               formats={"duration_ms": one_decimal, "memory_mb": one_decimal})
        self.panel = pn.Column("### Newest executions", self.table.pane, sizing_mode="stretch_width")

    def update(self, snap: Snapshot) -> None:
        """Replace the rows when the function's tasks changed."""
        self.store.watch(self.name)
        tasks = snap.function_tasks.get(self.name)
        if tasks is None:
            return
        df = executions_frame(tasks).iloc[::-1].reset_index(drop=True)
        if not df.equals(self.table.value):
            self.table.value = df


class FunctionPage:
    """One session's page for one function."""

    def __init__(self, name: str, store: DataStore, actions: Actions, login: Login) -> None:
        self.name = name
        self.store = store
        self.summary = pn.pane.Markdown("", css_classes=["function-summary"])
        self.manage = ManageView(name, actions) if may_manage(login) else None
        self.invoke = InvokeView(name, actions) if may_invoke(login) else None
        self.charts = ChartsView(name, store)
        self.anomalies = AnomaliesView(name, actions, may_manage(login))
        self.executions = FunctionExecutionsView(name, store)
        self._below: list[Any] = [self.anomalies.panel]
        if self.manage:
            self._below.append(self.manage.panel)
        if self.invoke:
            self._below.append(self.invoke.panel)
        self._below.append(self.executions.panel)
        # What the page opens with is the summary and the charts; the parts below them are laid out once the
        # browser has drawn those (`load`), so the charts do not wait for them (measured: the whole page at once
        # took the charts ~0.8 s longer to show). They hold no Tabulator, which would stay empty if laid out late.
        self.below = pn.Column(sizing_mode="stretch_width", css_classes=["function-below"])
        self.panel = pn.Column(self.summary, self.charts.panel, self.below, sizing_mode="stretch_width")

    def lay_out_below(self) -> None:
        """Add the anomalies, management, invoke and executions parts under the charts (once)."""
        if not self.below.objects:
            self.below.objects = list(self._below)

    async def load(self) -> None:
        """Once the browser has drawn the page: the parts below the charts, then the versions."""
        self.lay_out_below()
        if self.manage:
            await self.manage.load()

    def update(self, snap: Snapshot) -> None:
        """Redraw every part from the tenant's snapshot."""
        fn = next((f for f in snap.functions if f["name"] == self.name), None)
        if fn is None:
            self.summary.object = (f"## {self.name}\n\nNo function named `{self.name}` in this tenant "
                                   "(deleted, or not deployed yet). [Back to the functions](./)")
        else:
            m = snap.metrics.get(self.name) or {}
            self.summary.object = (f"## {self.name}\n\nstate **{fn.get('state')}** · active version "
                                   f"**{fn.get('active_version')}** · last hour: {m.get('count', '—')} runs · "
                                   f"[all functions](./)")
        self.charts.update(snap)
        self.anomalies.update(snap)
        self.executions.update(snap)


def logs_html(text: str) -> str:
    """What a task printed, escaped, as a preformatted block (a log may hold anything, markup included)."""
    body = html.escape(text.strip()) or "(nothing printed)"
    return f"<b>Logs</b><pre style='background:#f6f8fa;padding:8px;white-space:pre-wrap'>{body}</pre>"
