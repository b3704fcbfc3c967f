"""The console's management widgets on the main page: deploy an upload, and acknowledge or silence an alert."""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from core.access import Role
from panel_dashboard.actions import Actions
from panel_dashboard.auth import Login
from panel_dashboard.bundle import zip_folder
from panel_dashboard.client import ApiRefused
from panel_dashboard.store import Snapshot

EXAMPLE_CONFIG = '{"timeout_s": 30, "memory_mb": 256}'


class Outcome:
    """A message line under an action: green when it worked, red with the API's message when refused."""

    def __init__(self, css: str) -> None:
        self.pane = pn.pane.Alert("", alert_type="success", visible=False, css_classes=[css],
                                  sizing_mode="stretch_width")

    def ok(self, text: str) -> None:
        """Say it worked."""
        self.pane.alert_type, self.pane.object, self.pane.visible = "success", text, True

    def refused(self, exc: Exception) -> None:
        """Say why not (an ApiRefused's message, or the unexpected error's)."""
        text = str(exc) if isinstance(exc, ApiRefused) else f"unexpected error: {exc!r}"
        # the API's message may quote what the user typed: shown as text, never as markup
        self.pane.alert_type, self.pane.object, self.pane.visible = "danger", html.escape(text), True


class DeployView:
    """Upload a ZIP, or a folder (zipped here), with a JSON config as a new version of a function (developer and
    up); whichever of the two was picked last is deployed."""

    def __init__(self, actions: Actions) -> None:
        self.actions = actions
        self.name = pn.widgets.TextInput(label="Function name", placeholder="my-function", width=240,
                                         css_classes=["deploy-name"])
        self.archive = pn.widgets.FileInput(accept=".zip", multiple=False, css_classes=["deploy-archive"])
        self.folder = pn.widgets.FileInput(directory=True, css_classes=["deploy-folder"])
        self.config = pn.widgets.TextAreaInput(label="Config (JSON)", value=EXAMPLE_CONFIG, height=80,
                                               css_classes=["deploy-config"], sizing_mode="stretch_width")
        self.button = pn.widgets.Button(label="Deploy", color="primary", width=120, css_classes=["deploy-button"])
        self.outcome = Outcome("deploy-outcome")
        self.picked = "archive"
        self.archive.param.watch(self._archive_picked, "value")
        self.folder.param.watch(self._folder_picked, ["value", "filename"])
        self.button.on_click(self._deploy)
        self.panel = pn.Column("### Deploy", pn.Row(self.name, pn.Column("ZIP archive", self.archive),
                                                    pn.Column("or a folder", self.folder)),
                               self.config, self.button, self.outcome.pane, sizing_mode="stretch_width")

    def _archive_picked(self, *_events: Any) -> None:
        self.picked = "archive"

    def _folder_picked(self, *_events: Any) -> None:
        self.picked = "folder"

    def upload(self) -> tuple[bytes | None, str]:
        """The bundle to send and its file name: the ZIP as picked, or the picked folder zipped."""
        if self.picked == "folder":
            paths, contents = self.folder.filename, self.folder.value
            paths = [paths] if isinstance(paths, str) else list(paths or [])
            contents = [contents] if isinstance(contents, bytes) else list(contents or [])
            folder = paths[0].replace("\\", "/").split("/")[0] if paths else "folder"
            return zip_folder(paths, contents), f"{folder}.zip"
        raw = self.archive.value
        return (raw if isinstance(raw, bytes) else None), str(self.archive.filename or "")

    async def _deploy(self, _event: Any) -> None:
        """Send the upload; say which version it made, or why not."""
        self.button.disabled = True
        try:
            archive, filename = self.upload()
            v = await self.actions.deploy(self.name.value or "", archive, filename, self.config.value or "")
            self.outcome.ok(f"Deployed **{v.get('name')}** version **{v.get('version')}** ({v.get('state', '')})")
        except Exception as exc:  # a refusal is shown, never raised into the session
            self.outcome.refused(exc)
        finally:
            self.button.disabled = False


class AlertActionsView:
    """Pick a firing alert, then acknowledge it, or create a silence from it for how long and why (developer and
    up)."""

    def __init__(self, actions: Actions, login: Login) -> None:
        self.actions = actions
        self.login = login
        self.alerts: dict[str, dict[str, Any]] = {}
        self.pick = pn.widgets.Select(label="Alert", options=[], width=320, css_classes=["silence-alert"])
        self.hours = pn.widgets.FloatInput(label="Hours", value=2.0, start=0.05, end=24 * 30, width=90)
        self.comment = pn.widgets.TextInput(label="Comment", placeholder="why", width=260,
                                            css_classes=["silence-comment"])
        self.button = pn.widgets.Button(label="Silence", color="warning", width=110,
                                        css_classes=["silence-button"])
        self.outcome = Outcome("alert-outcome")
        self.ack = pn.widgets.Button(label="Acknowledge", color="primary", width=130, css_classes=["ack-button"])
        self.button.on_click(self._silence)
        self.ack.on_click(self._acknowledge)
        row = pn.Row(self.pick, pn.Column(pn.Spacer(height=18), self.ack), self.hours, self.comment,
                     pn.Column(pn.Spacer(height=18), self.button))
        self.panel = pn.Column(row, self.outcome.pane, sizing_mode="stretch_width")

    def update(self, snap: Snapshot) -> None:
        """Offer the alerts firing now."""
        self.alerts = {f"#{a.get('id')} {(a.get('labels') or {}).get('alertname', a.get('rule_id'))} · "
                       f"{a.get('function', '')}": a for a in snap.alerts or []}
        options = list(self.alerts)
        if options != self.pick.options:
            self.pick.options = options

    async def _acknowledge(self, _event: Any) -> None:
        alert = self.alerts.get(self.pick.value or "")
        if alert is None:
            self.outcome.refused(ApiRefused(0, "pick a firing alert to acknowledge"))
            return
        try:
            body = await self.actions.acknowledge(int(alert["id"]))
            again = " (it already was)" if body.get("already_acknowledged") else ""
            self.outcome.ok(f"Alert **#{body.get('id')}** acknowledged by **{body.get('acknowledged_by')}**{again}")
        except Exception as exc:
            self.outcome.refused(exc)

    async def _silence(self, _event: Any) -> None:
        alert = self.alerts.get(self.pick.value or "")
        if alert is None:
            self.outcome.refused(ApiRefused(0, "pick a firing alert to silence"))
            return
        try:
            body = await self.actions.silence_alert(alert, float(self.hours.value or 1), self.login.key_name or
                                                    self.login.tenant, self.comment.value or "")
            self.outcome.ok(f"Silence **{str(body.get('silenceID', ''))[:8]}** created for "
                            f"{alert.get('function')} ({self.hours.value:g} h)")
        except Exception as exc:
            self.outcome.refused(exc)


def may_manage(login: Login) -> bool:
    """Whether LOGIN's role may deploy and change functions, rules and silences."""
    return login.may(Role.developer)


def may_invoke(login: Login) -> bool:
    """Whether LOGIN's role may invoke and read results."""
    return login.may(Role.invoker)
