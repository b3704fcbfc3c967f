"""The console's actions: each is one API call with the session's key; a refusal comes back as a message."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from panel_dashboard.client import ApiClient, ApiConfig, ApiRefused

Record = dict[str, Any]
INVOKE_WAIT_S = 30


class Actions:
    """What a logged-in user can do from the console, through the API with their own key."""

    def __init__(self, api_url: str, key: str) -> None:
        self.client = ApiClient(ApiConfig(api_url, key), timeout_s=INVOKE_WAIT_S + 15)

    async def deploy(self, name: str, archive: bytes | None, filename: str, config: str) -> Record:
        """Upload ARCHIVE (a ZIP) as a new version of NAME, with CONFIG (JSON text, may be empty)."""
        if not archive:
            raise ApiRefused(0, "choose a ZIP file or a folder to upload")
        data = {"name": name.strip()}
        if config.strip():
            parse_json(config, "config")  # say what is wrong before uploading
            data["config"] = config
        body = await self.client.call("POST", "/v1/functions", data=data,
                                      files={"archive": (filename or "bundle.zip", archive, "application/zip")})
        return dict(body)

    async def set_state(self, name: str, state: str) -> Record:
        """Activate or deactivate NAME."""
        verb = "activate" if state == "active" else "deactivate"
        return dict(await self.client.call("POST", f"/v1/functions/{name}/{verb}"))

    async def rollback(self, name: str, version: int) -> Record:
        """Make VERSION of NAME the active one again."""
        return dict(await self.client.call("POST", f"/v1/functions/{name}/rollback", params={"version": version}))

    async def delete(self, name: str) -> None:
        """Delete NAME (its past tasks stay readable)."""
        await self.client.call("DELETE", f"/v1/functions/{name}")

    async def function(self, name: str) -> Record:
        """NAME with its state and active version."""
        return dict(await self.client.call("GET", f"/v1/functions/{name}"))

    async def versions(self, name: str) -> list[Record]:
        """NAME's versions, as the API lists them."""
        return list((await self.client.call("GET", f"/v1/functions/{name}/versions") or {}).get("versions", []))

    async def invoke(self, name: str, event_text: str) -> Record:
        """Invoke NAME with EVENT_TEXT (JSON) and wait for the record (or the accepted task if it runs long)."""
        event = parse_json(event_text or "{}", "input")
        return dict(await self.client.call("POST", f"/v1/functions/{name}/invocations", json=event,
                                           params={"wait": INVOKE_WAIT_S}))

    async def logs(self, task_id: str) -> str:
        """What the task printed."""
        return str(await self.client.call("GET", f"/v1/tasks/{task_id}/logs") or "")

    async def metrics(self, name: str, window: str = "1h") -> Record:
        """NAME's aggregates over WINDOW."""
        return dict(await self.client.call("GET", f"/v1/functions/{name}/metrics", params={"window": window}))

    async def feedback(self, anomaly_id: int, verdict: str) -> Record:
        """Mark an anomaly a false positive or confirmed."""
        return dict(await self.client.call("POST", f"/v1/anomalies/{anomaly_id}/feedback", json={"verdict": verdict}))

    async def silence_alert(self, alert: Record, hours: float, by: str, comment: str) -> Record:
        """Silence ALERT's function (and its rule's name, when the alert carries it) for HOURS."""
        now = datetime.now(UTC)
        matchers = [{"name": "function", "value": str(alert.get("function", "")), "isRegex": False, "isEqual": True}]
        name = alert.get("rule_name") or (alert.get("labels") or {}).get("alertname")
        if name:
            matchers.append({"name": "alertname", "value": str(name), "isRegex": False, "isEqual": True})
        return dict(await self.client.call("POST", "/v1/silences", json={
            "matchers": matchers, "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=hours)).isoformat(),
            "createdBy": by, "comment": comment or f"silenced from the console (alert {alert.get('id')})"}))

    async def acknowledge(self, alert_id: int) -> Record:
        """Say a firing alert is being handled (the API records who and when)."""
        return dict(await self.client.call("POST", f"/v1/alerts/{alert_id}/ack"))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def parse_json(text: str, what: str) -> Any:
    """TEXT as JSON, or ApiRefused saying where it is malformed."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiRefused(0, f"the {what} is not valid JSON: {exc}") from None
