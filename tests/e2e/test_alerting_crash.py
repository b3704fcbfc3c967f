"""kill -9 of the whole platform between a notification's commit and its acknowledgement, then a restart: the
outbox sends it again, once to a de-duplicating receiver, at least once to a plain one."""

from __future__ import annotations

import signal
import time

import pytest

from bench.platform_proc import PlatformProcess, zip_handler
from tests.integration.test_alerting_platform import SECRET, count_rule
from tests.integration.test_monitoring import SPIN, wait_for
from tests.receivers import SlackStandIn, WebhookSink

pytestmark = pytest.mark.slow


def test_kill_9_of_the_platform_mid_send_then_restart_delivers_once_to_a_deduplicating_receiver() -> None:
    hook, plain = WebhookSink(SECRET), SlackStandIn()
    plat = PlatformProcess()
    try:
        with plat:
            with plat.client(timeout=60) as c:
                r = c.post("/v1/functions", data={"name": "crashy"},
                           files={"archive": ("f.zip", zip_handler(SPIN), "application/zip")})
                assert r.status_code == 201, r.text
                hook.hold.set()  # the first copy is read, then left unanswered
                r = c.post("/v1/alert-rules", json=count_rule("crashy-up", "crashy", [
                    {"type": "webhook", "url": hook.url, "secret": SECRET},
                    {"type": "slack", "webhook_url": plain.url}]))
                assert r.status_code == 201, r.text
                rule_id = r.json()["id"]
                assert c.post("/v1/functions/crashy/invocations", params={"wait": 60},
                              json={"ms": 1}).status_code == 200
            assert hook.held.wait(90), "the notice never reached the webhook"
            plat.stop(signal.SIGKILL)  # the whole process group: API, Ray, the dispatcher, PostgreSQL's client
            time.sleep(2)
            hook.release.set()  # only now: no process of the killed platform can see the acknowledgement
            plat.__enter__()  # start again on the same home (the same database, the same outbox)
            assert wait_for(lambda: len(hook.received) >= 2, 120), hook.received
            ids = {q["headers"]["webhook-id"] for q in hook.received}
            assert len(ids) == 1 and len(hook.processed) == 1  # the same notice again, processed exactly once
            assert len(plain.messages) >= 1  # a plain receiver: at least once
            with plat.client(timeout=60) as c:
                alerts = c.get("/v1/alerts", params={"rule_id": rule_id}).json()["alerts"]
            assert len(alerts) == 1  # the restart did not open a second episode
    finally:
        hook.close()
        plain.close()
