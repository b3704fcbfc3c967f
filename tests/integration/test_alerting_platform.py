"""Alerting through the running platform: every channel from one rule firing, silences over the API and the CLI,
and a kill -9 of the dispatcher actor while a notice is in flight."""

from __future__ import annotations

import base64
import email
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import deploy
from tests.integration.test_monitoring import SPIN, run, wait_for
from tests.receivers import SlackStandIn, WebhookSink

SECRET = "whsec_" + base64.b64encode(b"platform-alert-secret").decode()


def count_rule(name: str, function: str, channels: list[dict[str, Any]]) -> dict[str, Any]:
    """Fires as soon as one invocation of `function` is in the lake."""
    return {"name": name, "function": function, "kind": "threshold", "metric": "invocations", "aggregate": "count",
            "op": ">=", "value": 1, "window_s": 600, "channels": channels, "labels": {"severity": "critical"}}


def test_every_channel_delivers_from_one_rule_firing(api: httpx.Client, mail_sink: Any, twilio: Any) -> None:
    hook, slack = WebhookSink(SECRET), SlackStandIn()
    try:
        assert deploy(api, "four-ways", files={"main.py": SPIN}).status_code == 201
        channels = [{"type": "webhook", "url": hook.url, "secret": SECRET},
                    {"type": "slack", "webhook_url": slack.url},
                    {"type": "email", "to": ["four@example.com"]},
                    {"type": "sms", "to": "+4915100000004"}]
        r = api.post("/v1/alert-rules", json=count_rule("four-ways-up", "four-ways", channels))
        assert r.status_code == 201, r.text
        run(api, "four-ways", {"ms": 1})
        mails = wait_for(lambda: [m for m in mail_sink.messages if m["to"] == ["four@example.com"]], 30)
        texts = wait_for(lambda: [m for m in twilio.messages if m["form"]["To"] == "+4915100000004"], 30)
        assert wait_for(lambda: hook.processed and slack.messages, 30)
        (body,) = hook.processed.values()  # verified with the standardwebhooks library
        labels = body["alerts"][0]["labels"]
        assert labels["alertname"] == "four-ways-up" and labels["function"] == "four-ways"
        assert labels["severity"] == "critical" and labels["tenant"] == "default" and labels["metric"] == "invocations"
        assert labels["version"] == "1" and labels["kind"] == "threshold"
        msg = slack.messages[0]["body"]
        assert msg["text"].startswith("[FIRING] four-ways-up")
        assert msg["metadata"]["event_payload"]["notification_id"].startswith("cfn-")
        parsed = email.message_from_bytes(mails[0]["content"])
        assert parsed["Subject"].startswith("[FIRING] four-ways-up on four-ways")
        assert parsed["Message-ID"].startswith("<cfn-")
        assert "severity=critical" in parsed.get_payload(decode=True).decode()
        assert texts[0]["form"]["Body"].startswith("[FIRING] four-ways-up on four-ways")
        alerts = wait_for(lambda: [a for a in api.get("/v1/alerts", params={"rule_id": r.json()["id"]}).json()["alerts"]
                                   if len({d["channel"].split(":")[0] for d in a["deliveries"]}) == 4], 20)
        assert {d["channel"].split(":")[0] for d in alerts[0]["deliveries"] if d["status"] == "delivered"} == {
            "webhook", "slack", "email", "sms"}
        assert alerts[0]["labels"]["tenant"] == "default"
        # one notice per channel: nothing was sent twice
        assert len(hook.received) == 1 and len(slack.messages) == 1 and len(mails) == 1 and len(texts) == 1
        notices = [n for n in api.get("/v1/alert-notifications").json()["notifications"]
                   if n["alertname"] == "four-ways-up"]
        assert sorted(n["channel"].split(":")[0] for n in notices) == ["email", "slack", "sms", "webhook"]
        assert {n["state"] for n in notices} == {"delivered"} and {tuple(n["functions"]) for n in notices} == {
            ("four-ways",)}
    finally:
        hook.close()
        slack.close()


@pytest.mark.parametrize(("body", "needle"), [
    ({"matchers": [], "startsAt": "2030-01-01T00:00:00Z", "endsAt": "2030-01-02T00:00:00Z", "createdBy": "a",
      "comment": "c"}, "matchers"),
    ({"matchers": [{"name": "function", "value": "(", "isRegex": True}], "startsAt": "2030-01-01T00:00:00Z",
      "endsAt": "2030-01-02T00:00:00Z", "createdBy": "a", "comment": "c"}, "regular expression"),
    ({"matchers": [{"name": "function", "value": "x", "isRegex": False}], "startsAt": "2030-01-02T00:00:00Z",
      "endsAt": "2030-01-01T00:00:00Z", "createdBy": "a", "comment": "c"}, "endsAt must be after startsAt"),
    ({"matchers": [{"name": "function", "value": "x", "isRegex": False}], "startsAt": "2030-01-01T00:00:00Z",
      "endsAt": "2030-01-02T00:00:00Z", "comment": "c"}, "createdBy"),
    ({"matchers": [{"name": "function", "value": ".*", "isRegex": True}], "startsAt": "2030-01-01T00:00:00Z",
      "endsAt": "2030-01-02T00:00:00Z", "createdBy": "a", "comment": "c"}, "match every alert"),
    ({"matchers": [{"name": "function", "value": "x", "isRegex": False}], "startsAt": "tomorrow",
      "endsAt": "2030-01-02T00:00:00Z", "createdBy": "a", "comment": "c"}, "startsAt"),
    ([1, 2], "JSON object"),
])
def test_bad_silences_get_a_4xx_with_a_message(api: httpx.Client, body: Any, needle: str) -> None:
    r = api.post("/v1/silences", json=body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


def test_silence_api_mutes_and_expiring_it_unmutes(api: httpx.Client) -> None:
    hook = WebhookSink(SECRET)
    try:
        assert deploy(api, "hush-fn", files={"main.py": SPIN}).status_code == 201
        now = datetime.now(UTC)
        r = api.post("/v1/silences", json={
            "matchers": [{"name": "function", "value": "hush-.*", "isRegex": True, "isEqual": True}],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "oncall", "comment": "deploying"})
        assert r.status_code == 200, r.text
        sid = r.json()["silenceID"]
        listed = {s["id"]: s for s in api.get("/v1/silences").json()}
        assert listed[sid]["status"]["state"] == "active" and listed[sid]["createdBy"] == "oncall"
        rule = api.post("/v1/alert-rules", json=count_rule("hush-up", "hush-fn", [
            {"type": "webhook", "url": hook.url, "secret": SECRET}])).json()
        run(api, "hush-fn", {"ms": 1})
        assert wait_for(lambda: api.get("/v1/alerts", params={"rule_id": rule["id"]}).json()["alerts"], 30)
        time.sleep(2)  # several flushes of the group: all muted
        assert hook.received == []
        assert api.delete(f"/v1/silences/{sid}").status_code == 200
        assert {s["id"]: s for s in api.get("/v1/silences").json()}[sid]["status"]["state"] == "expired"
        assert wait_for(lambda: hook.processed, 30)
        assert list(hook.processed.values())[0]["alerts"][0]["labels"]["function"] == "hush-fn"
        assert api.delete("/v1/silences/00000000-0000-0000-0000-000000000000").status_code == 404
        assert api.delete("/v1/silences/not-a-uuid").status_code in (400, 404, 422)
    finally:
        hook.close()


def test_cli_silence_add_list_expire(api_server: Any, admin_key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from serve_app.cli.main import app

    monkeypatch.setenv("CLOUDFN_API_URL", api_server.url)
    monkeypatch.setenv("CLOUDFN_API_KEY", admin_key)
    runner = CliRunner()
    added = runner.invoke(app, ["silence", "add", 'function=~"pay.*"', "severity!=info", "-c", "maintenance",
                                "-d", "2h", "-a", "ops"])
    assert added.exit_code == 0, added.output
    sid = added.output.strip()
    silences = {s["id"]: s for s in api_server_json(api_server, admin_key, "/v1/silences")}
    assert silences[sid]["matchers"] == [
        {"name": "function", "value": "pay.*", "isRegex": True, "isEqual": True},
        {"name": "severity", "value": "info", "isRegex": False, "isEqual": False}]
    listed = runner.invoke(app, ["silence", "list", "-q"])
    assert listed.exit_code == 0 and sid in listed.output.split()
    assert runner.invoke(app, ["silence", "expire", sid]).exit_code == 0
    assert sid not in runner.invoke(app, ["silence", "list", "-q"]).output.split()
    bad = runner.invoke(app, ["silence", "add", "function", "-c", "x"])
    assert bad.exit_code != 0 and "not a matcher" in bad.output
    listed_notices = runner.invoke(app, ["notifications", "list", "--json"])
    assert listed_notices.exit_code == 0
    rows = json.loads(listed_notices.output)
    assert isinstance(rows, list) and all({"receiver", "channel", "state", "attempts"} <= set(r) for r in rows)


def api_server_json(api_server: Any, key: str, path: str) -> Any:
    return httpx.get(api_server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30).json()


def pid_of(actor: Any) -> int | None:
    """The actor's process id, or None while it is down or restarting."""
    import ray

    try:
        return int(ray.get(actor.stats.remote(), timeout=10)["pid"])
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
        return None


def test_kill_9_of_the_dispatcher_mid_send_then_restart_delivers_once_to_a_deduplicating_receiver(
        api: httpx.Client, api_server: Any) -> None:
    """At the actor level: the dispatcher's process is killed (SIGKILL via ray.kill) while the webhook receiver
    holds the request unanswered; Ray restarts the actor, which sends what was not acknowledged."""
    import ray

    hook, plain = WebhookSink(SECRET), SlackStandIn()
    try:
        assert deploy(api, "crashy", files={"main.py": SPIN}).status_code == 201
        actor = api_server.platform.alerts
        pid = ray.get(actor.stats.remote(), timeout=30)["pid"]
        hook.hold.set()
        rule = api.post("/v1/alert-rules", json=count_rule("crashy-up", "crashy", [
            {"type": "webhook", "url": hook.url, "secret": SECRET},
            {"type": "slack", "webhook_url": plain.url}])).json()
        run(api, "crashy", {"ms": 1})
        assert hook.held.wait(30), "the notice never reached the webhook"
        ray.kill(actor, no_restart=False)  # SIGKILL; Ray restarts it (max_restarts=-1)
        assert wait_for(lambda: pid_of(actor) not in (pid, None), 60)  # a new process answers
        hook.release.set()  # only now: the killed process can no longer see the acknowledgement
        assert wait_for(lambda: len(hook.received) >= 2, 60), hook.received
        ids = {r["headers"]["webhook-id"] for r in hook.received}
        assert len(ids) == 1 and len(hook.processed) == 1  # the same notice again: processed exactly once
        assert len(plain.messages) >= 1  # a plain receiver: at least once
        alerts = api.get("/v1/alerts", params={"rule_id": rule["id"]}).json()["alerts"]
        assert len(alerts) == 1  # the restart did not open a second episode
        assert ray.get(actor.stats.remote(), timeout=30)["sent"] >= 1  # by the new process
    finally:
        hook.close()
        plain.close()


def test_a_rule_without_channels_is_refused_while_no_route_has_a_receiver(api: httpx.Client) -> None:
    deploy(api, "four-ways", files={"main.py": SPIN})
    rule = count_rule("nowhere", "four-ways", [])
    del rule["channels"]
    r = api.post("/v1/alert-rules", json=rule)
    assert r.status_code == 400, r.text
    assert "routes nowhere" in r.json()["error"]["message"]
