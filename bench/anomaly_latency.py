"""Live path latency: from an execution's end to its anomaly record, to the anomaly webhook's arrival, and to
the alert e-mail's arrival at a local SMTP server (aiosmtpd), through the default routing and grouping.

    .venv/bin/python -m bench.anomaly_latency [--rounds 3]

Each round: a fresh function runs 100 times at ~10 ms, an anomaly rule with a local webhook and an e-mail
channel is created, then the function runs once at ~500 ms; prints JSON lines with the latencies per round and
their p50/p95 (2-core shared machine: noisy). Also counts anomalies among the 100 normal runs (false positives).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import threading
import time
import zipfile
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from bench.platform_proc import PlatformProcess, free_port

SPIN = ("import time\ndef handler(e, c):\n    t = time.perf_counter()\n"
        "    while time.perf_counter() - t < e.get('ms', 10) / 1000:\n        pass\n    return 1\n")


def receiver() -> tuple[str, list[float]]:
    """A local webhook endpoint recording arrival times."""
    arrivals: list[float] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("content-length", 0)))
            arrivals.append(time.time())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    port = free_port()
    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}/hook", arrivals


class MailArrivals:
    """aiosmtpd handler recording when each message arrived, by recipient."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        for rcpt in envelope.rcpt_tos:
            self.arrivals.setdefault(rcpt, time.time())
        return "250 OK"


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (nearest rank), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main() -> None:
    """Run the rounds and print JSON lines."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("main.py", SPIN)
    to_record: list[float] = []
    to_hook: list[float] = []
    to_mail: list[float] = []
    mail = MailArrivals()
    smtp_port = free_port()
    smtp = Controller(mail, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    env = {"CLOUDFN_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "CLOUDFN_SMTP_FROM": "bench@cloudfn.test"}
    with PlatformProcess(extra_env=env) as plat, plat.client(timeout=60) as c:
        for r in range(a.rounds):
            name = f"lat{r}"
            url, arrivals = receiver()
            assert c.post("/v1/functions", data={"name": name},
                          files={"archive": ("f.zip", buf.getvalue(), "application/zip")}).status_code == 201
            for _ in range(100):
                c.post(f"/v1/functions/{name}/invocations", params={"wait": 30}, json={"ms": 10})
            time.sleep(3)
            # the rule is created now so that its first episode is the slow execution's anomaly
            rcpt = f"{name}@bench.test"
            rule = c.post("/v1/alert-rules", json={
                "name": f"{name}-anomaly", "function": name, "kind": "anomaly",
                "channels": [{"type": "webhook", "url": url, "secret": "s"}, {"type": "email", "to": rcpt}]})
            assert rule.status_code == 201, rule.text
            time.sleep(1.5)
            rec = c.post(f"/v1/functions/{name}/invocations", params={"wait": 30}, json={"ms": 500}).json()
            end = datetime.fromisoformat(rec["finished_at"]).timestamp()
            found = None
            deadline = time.time() + 30
            while time.time() < deadline and found is None:
                an = c.get("/v1/anomalies", params={"function": name}).json()["anomalies"]
                found = next((x for x in an if x["task_id"] == rec["task_id"]), None)
                time.sleep(0.05)
            while time.time() < deadline and not (arrivals and rcpt in mail.arrivals):
                time.sleep(0.05)
            row: dict[str, Any] = {"bench": "anomaly_latency", "round": r}
            all_an = c.get("/v1/anomalies", params={"function": name}).json()["anomalies"]
            row["false_positives_in_100_normal"] = sum(1 for x in all_an if x["task_id"] != rec["task_id"])
            if found:
                row["to_record_ms"] = (datetime.fromisoformat(found["detected_at"]).timestamp() - end) * 1000
                to_record.append(row["to_record_ms"])
            if arrivals:
                row["to_webhook_ms"] = (arrivals[0] - end) * 1000
                to_hook.append(row["to_webhook_ms"])
            if rcpt in mail.arrivals:
                row["to_email_ms"] = (mail.arrivals[rcpt] - end) * 1000
                to_mail.append(row["to_email_ms"])
            print(json.dumps(row), flush=True)
    smtp.stop()
    print(json.dumps({"bench": "anomaly_latency_median", "to_record_ms": statistics.median(to_record) if to_record
                      else None, "to_webhook_ms": statistics.median(to_hook) if to_hook else None,
                      "to_email_ms": statistics.median(to_mail) if to_mail else None}))
    for label, values in (("to_record_ms", to_record), ("to_webhook_ms", to_hook), ("to_email_ms", to_mail)):
        print(json.dumps({"bench": "anomaly_latency_percentiles", "path": label, "n": len(values),
                          "p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}))


if __name__ == "__main__":
    main()
