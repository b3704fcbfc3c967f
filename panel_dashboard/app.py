"""App: one browser session's page, assembled from the views and refreshed from the cache every second."""

from __future__ import annotations

import panel as pn

from panel_dashboard.store import DataStore
from panel_dashboard.views import (
    AlertsView,
    ChartView,
    ExecutionsView,
    FunctionsView,
    HeaderView,
    NotificationsView,
    SilencesView,
    View,
)

REFRESH_MS = 1000

pn.extension("tabulator", sizing_mode="stretch_width")


class App:
    """The views of one session; a periodic callback redraws them when the store has a new snapshot."""

    def __init__(self, store: DataStore) -> None:
        self.store = store
        self.header = HeaderView(store)
        self.functions = FunctionsView(store)
        self.executions = ExecutionsView(store)
        self.chart = ChartView(store)
        self.alerts = AlertsView(store)
        self.silences = SilencesView(store)
        self.notifications = NotificationsView(store)
        self.views: list[View] = [self.header, self.functions, self.executions, self.chart, self.alerts,
                                  self.silences, self.notifications]
        self._seen = -1

    def refresh(self) -> None:
        """Redraw every view if the cache moved on since the last refresh."""
        snap = self.store.snapshot
        if snap.version == self._seen:
            return
        self._seen = snap.version
        for v in self.views:
            v.update(snap)

    def page(self) -> pn.template.FastListTemplate:
        """The page for a new session, with its periodic refresh registered."""
        self.refresh()
        pn.state.add_periodic_callback(self.refresh, period=REFRESH_MS)
        return pn.template.FastListTemplate(
            title="CloudFunctions", accent="#0969da", theme_toggle=False,
            main=[self.header.panel,
                  pn.Row(self.functions.panel, self.alerts.panel, sizing_mode="stretch_width"),
                  self.executions.panel,
                  self.chart.panel,
                  pn.Row(self.notifications.panel, self.silences.panel, sizing_mode="stretch_width")])


def make_page(store: DataStore) -> pn.template.FastListTemplate:
    """A fresh App for a new session."""
    return App(store).page()
