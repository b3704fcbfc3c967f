"""The dashboard's views: each owns its Panel components and redraws itself from a Snapshot."""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
from bokeh.models.widgets.tables import NumberFormatter

from panel_dashboard.frames import (
    alerts_frame,
    executions_frame,
    functions_frame,
    notifications_frame,
    silences_frame,
)
from panel_dashboard.store import DataStore, Snapshot

ROLLOVER = 200
FUNCTION_LINK = {"type": "link", "urlPrefix": "function?name=", "target": "_self"}  # Tabulator's link formatter
STATUS_COLORS = {"succeeded": "#1a7f37", "failed": "#cf222e", "timed_out": "#cf222e", "cancelled": "#6e7781",
                 "running": "#0969da", "queued": "#9a6700"}


class View:
    """A piece of the page: `panel` is what gets laid out, `update` redraws from the cache."""

    panel: pn.viewable.Viewable

    def __init__(self, store: DataStore) -> None:
        self.store = store

    def update(self, snap: Snapshot) -> None:
        """Redraw from SNAP (called by the session's periodic callback)."""
        raise NotImplementedError


class HeaderView(View):
    """The API URL, the time of the last successful poll, and a banner when the API is unreachable."""

    def __init__(self, store: DataStore) -> None:
        super().__init__(store)
        self.info = pn.pane.Markdown(self._info(store.snapshot), margin=(0, 10))
        self.banner = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.panel = pn.Column(self.info, self.banner, sizing_mode="stretch_width")

    def _info(self, snap: Snapshot) -> str:
        """The header line."""
        last = snap.last_ok.strftime("%Y-%m-%d %H:%M:%S UTC") if snap.last_ok else "never"
        return f"**API** `{self.store.api_url}` &nbsp;·&nbsp; **last successful poll** {last}"

    def update(self, snap: Snapshot) -> None:
        """Refresh the header line and show or hide the banner."""
        self.info.object = self._info(snap)
        lead = "**API unreachable or failing** — showing the last data seen."
        self.banner.object = f"{lead} {snap.error}" if snap.error else ""
        self.banner.visible = bool(snap.error)


class FunctionsView(View):
    """Functions with state, active version and last-hour count, error rate and p95 duration; each name links to
    its function page."""

    def __init__(self, store: DataStore) -> None:
        super().__init__(store)
        self.table = pn.widgets.Tabulator(functions_frame([], {}), show_index=False, disabled=True,
                                          sizing_mode="stretch_width", height=320, layout="fit_data_stretch",
                                          formatters={"function": FUNCTION_LINK}, css_classes=["functions-table"],
                                          configuration={"placeholder": "No functions deployed"})
        self.count = pn.pane.Markdown("", css_classes=["functions-count"], margin=(0, 10))
        self.panel = pn.Column("### Functions", self.count, self.table, sizing_mode="stretch_width")

    def update(self, snap: Snapshot) -> None:
        """Replace the rows when anything changed."""
        df = functions_frame(snap.functions, snap.metrics)
        if not df.equals(self.table.value):
            self.table.value = df
        self.count.object = f"{len(df):,} functions" if snap.last_ok else "Loading…"


class ExecutionsView(View):
    """The newest executions, newest first; new tasks are streamed in and changed ones patched."""

    def __init__(self, store: DataStore) -> None:
        super().__init__(store)
        fmt = NumberFormatter(format="0.0")
        self.table = pn.widgets.Tabulator(
            executions_frame([]), hidden_columns=["index"], disabled=True, sizing_mode="stretch_width", height=340,
            layout="fit_data_stretch", sorters=[{"field": "index", "dir": "desc"}],
            formatters={"duration_ms": fmt, "memory_mb": fmt},
            titles={"version": "ver", "duration_ms": "duration ms", "memory_mb": "peak MB"},
            widths={"task_id": 310, "function": 170, "version": 70, "status": 120, "duration_ms": 130,
                    "memory_mb": 110, "created": 100, "finished": 100},
            configuration={"placeholder": "No executions yet"})
        if self.table.style is not None:
            self.table.style.map(_status_style, subset=["status"])
        self.panel = pn.Column("### Newest executions", self.table, sizing_mode="stretch_width")

    def update(self, snap: Snapshot) -> None:
        """Patch rows whose fields changed and stream the new ones (full reset if order is inconsistent)."""
        new = executions_frame(snap.tasks)
        old = self.table.value
        pos = {tid: idx for idx, tid in zip(old.index, old["task_id"], strict=True)}
        fresh = [tid for tid in new["task_id"] if tid not in pos]
        if old.empty or (fresh and list(new["task_id"].iloc[-len(fresh):]) != fresh):
            # First fill (streaming into an empty Tabulator renders nothing in Panel 1.9), or the new
            # tasks are not all newer than the shown ones: replace the rows.
            self.table.value = new.set_axis(range(1, len(new) + 1))
            return
        patch: dict[str, list[tuple[Any, Any]]] = {}
        for _, row in new[new["task_id"].isin(pos)].iterrows():
            idx = pos[row["task_id"]]
            for col in new.columns:
                if not _same(old.at[idx, col], row[col]):
                    patch.setdefault(col, []).append((idx, row[col]))
        if patch:
            self.table.patch(patch, as_index=True)
        if fresh:
            self.table.stream(new[new["task_id"].isin(fresh)], rollover=ROLLOVER, follow=False)


class AlertsView(View):
    """The alerts currently firing."""

    def __init__(self, store: DataStore) -> None:
        super().__init__(store)
        self.note = pn.pane.Markdown("", margin=(0, 10))
        self.table = pn.widgets.Tabulator(alerts_frame([]), show_index=False, disabled=True, visible=False,
                                          sizing_mode="stretch_width", height=200, layout="fit_data_stretch")
        self.panel = pn.Column("### Firing alerts", self.note, self.table, sizing_mode="stretch_width")

    def update(self, snap: Snapshot) -> None:
        """Show the table, 'none firing', or a dash when the route is unavailable."""
        if snap.alerts is None:
            self.note.object = "— (alerts are not available from the API)"
            self.table.visible = False
            return
        df = alerts_frame(snap.alerts)
        self.note.object = f"**{len(df)} firing**" if len(df) else "No alerts firing."
        self.table.visible = bool(len(df))
        if not df.equals(self.table.value):
            self.table.value = df


class TableView(View):
    """A titled table of one optional part of the snapshot, with a note when it is empty or unavailable."""

    title = ""
    empty = ""

    def __init__(self, store: DataStore) -> None:
        super().__init__(store)
        self.note = pn.pane.Markdown("", margin=(0, 10))
        self.table = pn.widgets.Tabulator(self.frame([]), show_index=False, disabled=True, visible=False,
                                          sizing_mode="stretch_width", height=200, layout="fit_data_stretch")
        self.panel = pn.Column(f"### {self.title}", self.note, self.table, sizing_mode="stretch_width")

    def frame(self, records: list[Any]) -> pd.DataFrame:
        """The table's rows."""
        raise NotImplementedError

    def records(self, snap: Snapshot) -> list[Any] | None:
        """This view's part of the snapshot (None: the route is unavailable)."""
        raise NotImplementedError

    def update(self, snap: Snapshot) -> None:
        """Show the table, the empty note, or a dash when the route is unavailable."""
        records = self.records(snap)
        if records is None:
            self.note.object = f"— ({self.title.lower()} are not available from the API)"
            self.table.visible = False
            return
        df = self.frame(records)
        self.note.object = f"**{len(df)}**" if len(df) else self.empty
        self.table.visible = bool(len(df))
        if not df.equals(self.table.value):
            self.table.value = df


class SilencesView(TableView):
    """The tenant's active and pending silences."""

    title = "Silences"
    empty = "No silences."

    def frame(self, records: list[Any]) -> pd.DataFrame:
        return silences_frame(records)

    def records(self, snap: Snapshot) -> list[Any] | None:
        return snap.silences


class NotificationsView(TableView):
    """The newest alert notifications and their delivery."""

    title = "Notifications"
    empty = "No notifications yet."

    def frame(self, records: list[Any]) -> pd.DataFrame:
        return notifications_frame(records)

    def records(self, snap: Snapshot) -> list[Any] | None:
        return snap.notifications


def _status_style(status: Any) -> str:
    """CSS for a status cell."""
    color = STATUS_COLORS.get(str(status))
    return f"color: {color}; font-weight: 600" if color else ""


def _same(a: Any, b: Any) -> bool:
    """Equality that treats two missing values as equal."""
    if pd.isna(a) and pd.isna(b):
        return True
    return bool(a == b)
