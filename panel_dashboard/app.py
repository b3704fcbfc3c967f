"""The console's pages for one browser session: the tenant overview at `/` and a function's page at
`/function?name=…`, both redrawn from the tenant's poller cache every REFRESH_MS."""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from panel_dashboard.actions import Actions
from panel_dashboard.auth import LOGOUT_URL, Login
from panel_dashboard.console import AlertActionsView, DeployView, may_manage
from panel_dashboard.function_page import FunctionPage
from panel_dashboard.store import DataStore, Snapshot
from panel_dashboard.views import (
    AlertsView,
    ExecutionsView,
    FunctionsView,
    HeaderView,
    NotificationsView,
    SilencesView,
    View,
)

REFRESH_MS = 250  # a session only compares a version number unless the poller has news

pn.extension("tabulator", sizing_mode="stretch_width")
BAR_CSS = (".bar{background:#0969da;color:#fff;font:600 20px system-ui,sans-serif;padding:14px 20px;"
           "margin-bottom:6px}")


class Refresher:
    """Redraws a page's parts when the store has a new snapshot."""

    def __init__(self, store: DataStore, parts: list[Any]) -> None:
        self.store = store
        self.parts = parts
        self._seen = -1

    def refresh(self) -> None:
        """Redraw every part if the cache moved on since the last refresh."""
        snap: Snapshot = self.store.snapshot
        if snap.version == self._seen:
            return
        self._seen = snap.version
        for part in self.parts:
            part.update(snap)


def who(login: Login) -> pn.pane.Markdown:
    """The logged-in line: tenant, role, key name and the logout link."""
    name = html.escape(login.key_name).replace("`", "'")  # a key's name is free text
    return pn.pane.Markdown(f"tenant **{login.tenant}** · role **{login.role.name}** · key `{name}` · "
                            f"[log out]({LOGOUT_URL.lstrip('/')})", css_classes=["who"], margin=(0, 10))


def template(login: Login, main: list[Any]) -> pn.Column:
    """The page frame: a title bar and the logged-in line above MAIN (no Panel template: its web components cost
    a page load a few hundred milliseconds of script for a header)."""
    bar = pn.pane.HTML(f"<div class='bar'>CloudFunctions · {html.escape(login.tenant)}</div>",
                       stylesheets=[BAR_CSS], sizing_mode="stretch_width", margin=0)
    return pn.Column(bar, who(login), *main, sizing_mode="stretch_width", margin=(0, 0, 24, 0),
                     styles={"max-width": "1500px", "margin": "0 auto"})


def overview_page(store: DataStore, actions: Actions, login: Login) -> pn.Column:
    """The tenant's functions (live figures), deploy, alerts with acknowledging and silencing, notifications and
    silences. All laid out at once: a Tabulator laid out after the page was shown stayed empty when rows came."""
    header, functions, executions = HeaderView(store), FunctionsView(store), ExecutionsView(store)
    alerts, silences, notifications = AlertsView(store), SilencesView(store), NotificationsView(store)
    parts: list[View | AlertActionsView] = [header, functions, executions, alerts, silences, notifications]
    main: list[Any] = [header.panel, functions.panel]
    alert_column: Any = alerts.panel
    if may_manage(login):
        alert_actions = AlertActionsView(actions, login)
        parts.append(alert_actions)
        main.append(DeployView(actions).panel)
        alert_column = pn.Column(alerts.panel, alert_actions.panel, sizing_mode="stretch_width")
    main += [alert_column, pn.Row(notifications.panel, silences.panel, sizing_mode="stretch_width"),
             executions.panel]
    refresher = Refresher(store, parts)
    refresher.refresh()
    pn.state.add_periodic_callback(refresher.refresh, period=REFRESH_MS)
    return template(login, main)


def function_page(name: str, store: DataStore, actions: Actions, login: Login) -> pn.Column:
    """One function's page (see function_page.FunctionPage)."""
    header = HeaderView(store)
    page = FunctionPage(name, store, actions, login)
    store.watch(name)
    refresher = Refresher(store, [header, page])
    refresher.refresh()
    pn.state.add_periodic_callback(refresher.refresh, period=REFRESH_MS)
    pn.state.onload(page.load)
    return template(login, [header.panel, page.panel])
