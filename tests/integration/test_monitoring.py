"""The monitoring path end to end: lake, DuckDB aggregates vs PostgreSQL, Prometheus, detector actor, alerts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import duckdb
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.conftest import deploy, free_port, own_workers_started

SPIN = ("import time\n"
        "def handler(event, context):\n"
        "    time.sleep(float(event.get('sleep_ms', 0)) / 1000)\n"
        "    t = time.perf_counter()\n"
        "    while time.perf_counter() - t < event.get('ms', 10) / 1000:\n"
        "        pass\n"
        "    if event.get('fail'):\n"
        "        raise ValueError('asked to fail')\n"
        "    return {'ok': True}\n")


def waits(sleep_ms: int, ms: int = 10) -> dict[str, Any]:
    """An event of SPIN that also sleeps; always the same size, so that only the duration moves (a new input
    size is itself something the detector may rightly report)."""
    return {"ms": ms, "sleep_ms": f"{sleep_ms:05d}"}


SECRET = "whsec_" + base64.b64encode(b"integration-secret").decode()


class Receiver:
    """A local HTTP endpoint that records POSTs; answers 500 to the first `fail_first`."""

    def __init__(self, fail_first: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first = fail_first
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = 500 if len(outer.requests) < outer.fail_first else 200
                outer.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                       "body": body, "status": status, "path": self.path})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()


def signature_ok(req: dict[str, Any], secret: str) -> bool:
    """Standard Webhooks verification, written independently of the platform's signer."""
    h = req["headers"]
    key = base64.b64decode(secret[len("whsec_"):]) if secret.startswith("whsec_") else secret.encode()
    msg = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + req["body"]
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    return any(part.split(",", 1)[1] == want for part in h["webhook-signature"].split() if "," in part)


def wait_for(pred: Any, timeout: float = 30.0, every: float = 0.2) -> Any:
    """Poll until pred() is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    return pred()


def run(api: httpx.Client, name: str, event: dict[str, Any]) -> dict[str, Any]:
    r = api.post(f"/v1/functions/{name}/invocations", params={"wait": 60}, json=event)
    assert r.status_code == 200, r.text
    return dict(r.json())


def anomalies(api: httpx.Client, function: str, task_id: str | None = None) -> list[dict[str, Any]]:
    """A function's anomalies (of one task, if given), newest first."""
    found = api.get("/v1/anomalies", params={"function": function}).json()["anomalies"]
    return [a for a in found if task_id is None or a["task_id"] == task_id]


def test_lake_duckdb_and_postgres_agree(api: httpx.Client, api_server: Any, settings: Any,
                                        database_url: str) -> None:
    assert deploy(api, "lakefn", files={"main.py": SPIN}).status_code == 201
    own_workers_started(api_server)
    n = 30
    recs = [run(api, "lakefn", {"ms": 1 + i % 5, "fail": i % 10 == 0}) for i in range(n)]
    lake = str(settings.lake_path)

    def lake_rows() -> int:
        try:
            return int(duckdb.sql(f"select count(*) from read_parquet('{lake}/**/*.parquet', hive_partitioning=true,"
                                  " hive_types={'function': VARCHAR}) where function = 'lakefn'").fetchone()[0])
        except duckdb.Error:
            return 0

    assert wait_for(lambda: lake_rows() == n, 20) is True, (lake_rows(), [(r["status"], r["error"]) for r in recs
                                                                          if r["status"] != "succeeded"])
    m = api.get("/v1/functions/lakefn/metrics", params={"window": "1h"}).json()
    eng = create_engine(database_url)
    with eng.connect() as c:
        pg = c.execute(text(
            "SELECT count(*), count(*) FILTER (WHERE status <> 'succeeded'), max(duration_ms),"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms), max(peak_memory_mb)"
            " FROM execution_metrics WHERE function = 'lakefn'")).one()
    eng.dispose()
    assert m["count"] == pg[0] == n
    assert m["errors"] == pg[1] == 3 and abs(m["error_rate"] - 0.1) < 1e-9
    assert m["duration_ms"]["max"] == pytest.approx(pg[2])
    assert m["duration_ms"]["p95"] == pytest.approx(pg[3])
    assert m["peak_memory_mb"]["max"] == pytest.approx(pg[4])
    assert api.get("/v1/functions/lakefn/metrics", params={"window": "soon"}).status_code == 400
    # the overview's figures of every function in one query: the same as the function's own
    every = api.get("/v1/metrics", params={"window": "1h"}).json()
    got = every["functions"]["lakefn"]
    assert every["window_s"] == 3600 and (got["count"], got["errors"]) == (m["count"], m["errors"])
    assert got["duration_ms"]["p95"] == pytest.approx(m["duration_ms"]["p95"])
    assert got["peak_memory_mb"]["max"] == m["peak_memory_mb"]["max"]
    assert api.get("/v1/metrics", params={"window": "soon"}).status_code == 400


def test_prometheus_exposition_parses(api: httpx.Client) -> None:
    assert deploy(api, "promfn", files={"main.py": SPIN}).status_code == 201
    run(api, "promfn", {"ms": 1})
    run(api, "promfn", {"ms": 1, "fail": True})
    body = api.get("/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(body)}
    inv = [s for s in fams["cloudfn_invocations"].samples if s.labels.get("function") == "promfn"]
    by_status = {s.labels["status"]: s.value for s in inv if s.name.endswith("_total")}
    assert by_status == {"succeeded": 1.0, "failed": 1.0}
    hist = [s for s in fams["cloudfn_duration_seconds"].samples
            if s.labels.get("function") == "promfn" and s.name.endswith("_count")]
    assert hist and hist[0].value == 2.0


def test_duration_jump_raises_an_anomaly_and_a_signed_webhook(api: httpx.Client, api_server: Any) -> None:
    hook = Receiver(fail_first=1)
    try:
        assert deploy(api, "jumpy", files={"main.py": SPIN}).status_code == 201
        own_workers_started(api_server)
        rule = {"name": "jumpy-anomaly", "function": "jumpy", "kind": "anomaly",
                "channels": [{"type": "webhook", "url": f"{hook.url}/hook", "secret": SECRET}]}
        r = api.post("/v1/alert-rules", json=rule)
        assert r.status_code == 201, r.text
        rule_id = r.json()["id"]
        normal = [run(api, "jumpy", waits(0))["metrics"] for _ in range(100)]
        early = anomalies(api, "jumpy")
        assert early == [], json.dumps({"anomalies": early, "runs": normal})
        # slower by waiting, not by computing: duration alone jumps (a CPU-bound slowdown moves CPU time as
        # much, and either may then stand out)
        slow = [run(api, "jumpy", waits(490)) for _ in range(5)]
        found = wait_for(lambda: anomalies(api, "jumpy"), 30)
        assert found, "no anomaly after a 50x slowdown"
        slow_ids = {s["task_id"] for s in slow}
        a = next(x for x in found if x["task_id"] in slow_ids)
        assert a["metric"] == "duration_ms" and a["observed"] > a["expected_high"]
        for k in ("id", "function", "version", "kind", "score", "detected_at", "detector", "expected_low"):
            assert k in a
        ok = wait_for(lambda: [q for q in hook.requests if q["status"] == 200], 30)
        assert ok, hook.requests
        assert hook.requests[0]["status"] == 500  # the first attempt failed and was retried
        assert hook.requests[0]["headers"]["webhook-id"] == ok[0]["headers"]["webhook-id"]
        assert signature_ok(ok[0], SECRET)
        payload = json.loads(ok[0]["body"])
        assert payload["version"] == "4" and payload["status"] == "firing"
        assert payload["alerts"][0]["labels"]["alertname"] == "jumpy-anomaly"
        assert payload["alerts"][0]["labels"]["function"] == "jumpy"
        alerts = api.get("/v1/alerts", params={"rule_id": rule_id}).json()["alerts"]
        assert len(alerts) == 1 and alerts[0]["state"] == "firing"
        statuses = [d["status"] for d in alerts[0]["deliveries"]]
        assert statuses[:2] == ["failed", "delivered"]
    finally:
        hook.close()


def test_threshold_rule_fires_once_and_resolves_to_slack(api: httpx.Client) -> None:
    slack = Receiver()
    try:
        assert deploy(api, "thresh", files={"main.py": SPIN}).status_code == 201
        rule = {"name": "thresh-errors", "function": "thresh", "kind": "threshold", "metric": "error_rate",
                "aggregate": "avg", "op": ">", "value": 0.5, "window_s": 4, "for_s": 0,
                "channels": [{"type": "slack", "webhook_url": f"{slack.url}/services/T0/B0/XYZ"}]}
        assert api.post("/v1/alert-rules", json=rule).status_code == 201
        for _ in range(4):
            run(api, "thresh", {"ms": 1, "fail": True})
        assert wait_for(lambda: len(slack.requests) >= 1, 20)
        time.sleep(1)
        # errors stop; after the window passes with successes only, the alert resolves
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(slack.requests) < 2:
            run(api, "thresh", {"ms": 1})
            time.sleep(0.5)
        bodies = [json.loads(r["body"]) for r in slack.requests]
        assert len(bodies) == 2, bodies
        assert "FIRING" in bodies[0]["text"].upper() and "RESOLVED" in bodies[1]["text"].upper()
        assert bodies[0]["blocks"][0]["type"] == "header"
    finally:
        slack.close()


@pytest.mark.parametrize(("rule", "needle"), [
    ({"name": "r", "function": "promfn", "kind": "threshold", "metric": "latency", "aggregate": "avg", "op": ">",
      "value": 1, "window_s": 60, "channels": [{"type": "webhook", "url": "http://x/y", "secret": "s"}]}, "metric"),
    ({"name": "r", "function": "promfn", "kind": "threshold", "metric": "cpu_ms", "aggregate": "avg", "op": "=>",
      "value": 1, "window_s": 60, "channels": [{"type": "webhook", "url": "http://x/y", "secret": "s"}]}, "op"),
    ({"name": "r", "function": "promfn", "kind": "anomaly", "channels": [{"type": "webhook", "url": "not-a-url",
                                                                       "secret": "s"}]}, "url"),
    ({"name": "r", "function": "promfn", "kind": "threshold", "metric": "cpu_ms", "aggregate": "avg", "op": ">",
      "value": 1, "window_s": 0, "channels": [{"type": "webhook", "url": "http://x/y", "secret": "s"}]}, "window"),
])
def test_bad_rules_get_a_4xx(api: httpx.Client, rule: dict[str, Any], needle: str) -> None:
    deploy(api, "promfn", files={"main.py": SPIN})
    r = api.post("/v1/alert-rules", json=rule)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]


def test_rule_on_unknown_function_is_404(api: httpx.Client) -> None:
    r = api.post("/v1/alert-rules", json={"name": "r", "function": "ghost", "kind": "anomaly",
                                          "channels": [{"type": "webhook", "url": "http://x/y", "secret": "s"}]})
    assert r.status_code == 404


def test_a_crashed_detector_actor_is_recreated_with_its_models_and_anomalies(api: httpx.Client,
                                                                           api_server: Any) -> None:
    import ray

    assert deploy(api, "phoenix", files={"main.py": SPIN}).status_code == 201
    for _ in range(80):
        run(api, "phoenix", {"ms": 5})
    slow = run(api, "phoenix", {"ms": 300})
    before = wait_for(lambda: anomalies(api, "phoenix", slow["task_id"]), 20)
    assert before
    shard = api_server.platform.detectors[0]
    assert ray.get(shard.persist.remote()) >= 0  # models saved (the actor also does this every 10 s)
    ray.kill(shard, no_restart=False)  # a crash: Ray restarts it (max_restarts=-1)
    time.sleep(2)
    again = run(api, "phoenix", {"ms": 300})
    after = wait_for(lambda: anomalies(api, "phoenix", again["task_id"]), 30)
    assert after, "the recreated actor did not reload the fitted model"
    ids = {a["id"] for a in anomalies(api, "phoenix")}
    assert before[0]["id"] in ids  # nothing stored before the crash was lost


def test_feedback_false_positive_stops_the_same_pattern(api: httpx.Client, api_server: Any) -> None:
    assert deploy(api, "fbfn", files={"main.py": SPIN}).status_code == 201
    own_workers_started(api_server)  # the calls below run as they will stay (not through the deploy's bridge)
    for _ in range(80):
        run(api, "fbfn", waits(0, ms=5))
    # slower by waiting (a CPU-bound slowdown is stretched by a crowded host, and may look new the second time)
    first = run(api, "fbfn", waits(300, ms=5))
    found = wait_for(lambda: anomalies(api, "fbfn", first["task_id"]), 40)
    assert found, anomalies(api, "fbfn")
    r = api.post(f"/v1/anomalies/{found[0]['id']}/feedback", json={"verdict": "false_positive"})
    assert r.status_code == 200
    second = run(api, "fbfn", waits(300, ms=5))
    time.sleep(3)
    assert anomalies(api, "fbfn", second["task_id"]) == []
    assert api.post(f"/v1/anomalies/{found[0]['id']}/feedback", json={"verdict": "maybe"}).status_code == 400
    assert api.post("/v1/anomalies/999999/feedback", json={"verdict": "confirmed"}).status_code == 404


def test_anomaly_rule_reaches_email_and_sms(api: httpx.Client, api_server: Any, mail_sink: Any,
                                            twilio: Any) -> None:
    import email

    assert deploy(api, "jumpy-mail", files={"main.py": SPIN}).status_code == 201
    own_workers_started(api_server)
    rule = {"name": "jumpy-mail-anomaly", "function": "jumpy-mail", "kind": "anomaly",
            "channels": [{"type": "email", "to": ["oncall@example.com"]}, {"type": "sms", "to": "+4915112345678"}]}
    r = api.post("/v1/alert-rules", json=rule)
    assert r.status_code == 201, r.text
    for _ in range(100):
        run(api, "jumpy-mail", {"ms": 10})
    for _ in range(5):
        run(api, "jumpy-mail", {"ms": 500})
    mails = wait_for(lambda: [m for m in mail_sink.messages if m["to"] == ["oncall@example.com"]], 30)
    texts = wait_for(lambda: [m for m in twilio.messages if m["form"]["To"] == "+4915112345678"], 30)
    assert mails and texts, (mail_sink.messages, twilio.messages, anomalies(api, "jumpy-mail"))
    parsed = email.message_from_bytes(mails[0]["content"])
    assert mails[0]["from"] == "alerts@cloudfn.test" and parsed["From"] == "CloudFn <alerts@cloudfn.test>"
    assert parsed["Subject"].startswith("[FIRING] jumpy-mail-anomaly on jumpy-mail")
    assert "jumpy-mail: anomaly detected" in parsed.get_payload(decode=True).decode()
    assert texts[0]["form"]["From"] == "+15005550006"
    assert texts[0]["form"]["Body"].startswith("[FIRING] jumpy-mail-anomaly on jumpy-mail")
    want = "Basic " + base64.b64encode(f"{twilio.sid}:{twilio.token}".encode()).decode()
    assert texts[0]["headers"]["authorization"] == want
    alerts = api.get("/v1/alerts", params={"rule_id": r.json()["id"]}).json()["alerts"]
    delivered = {d["channel"].split(":")[0] for d in alerts[0]["deliveries"] if d["status"] == "delivered"}
    assert delivered == {"email", "sms"}


@pytest.mark.parametrize(("channel", "needle"), [
    ({"type": "email", "to": "oncall@example.com"}, "channel email needs CLOUDFN_SMTP_URL, CLOUDFN_SMTP_FROM"),
    ({"type": "sms", "to": "+4915112345678"}, "channel sms needs CLOUDFN_SMS_SID, CLOUDFN_SMS_TOKEN, CLOUDFN_SMS_FROM"),
])
def test_rule_with_an_unconfigured_channel_is_refused(api: httpx.Client, api_server: Any, channel: dict[str, Any],
                                                      needle: str) -> None:
    from analytics.alerting.channel_config import ChannelSettings
    from core.settings import Settings

    deploy(api, "promfn", files={"main.py": SPIN})
    configured = api_server.platform.channels
    api_server.platform.channels = ChannelSettings.from_settings(Settings(
        home=api_server.platform.settings.home, smtp_url=None, smtp_from=None, sms_sid=None, sms_token=None))
    try:
        r = api.post("/v1/alert-rules", json={"name": "r", "function": "promfn", "kind": "anomaly",
                                              "channels": [{"type": "webhook", "url": "http://x/y", "secret": "s"},
                                                           channel]})
    finally:
        api_server.platform.channels = configured
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]
    assert channel["type"] in r.json()["error"]["missing"]
    names = [x["name"] for x in api.get("/v1/alert-rules").json()["rules"]]
    assert "r" not in names
