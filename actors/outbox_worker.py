"""The outbox's delivery worker: claims due notices with a lease, sends each once per claim, records every
attempt, and schedules the next one with backoff (or Retry-After) until the receiver acknowledges it.

At-least-once: a notice is a committed row before anything is sent; a crash mid-send leaves it pending, and
a new worker (`release_claims` at start) sends it again with the same de-duplication id.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine

from analytics.alerting.delivery import Notifier
from analytics.alerting.group_message import GroupMessage
from analytics.alerting.labels import channel_label
from analytics.alerting.rules import Channel
from core.db.outbox import OutboxRow, claim_due, record_attempt, release_claims, retry_delay

log = logging.getLogger(__name__)
LEASE_S = 60.0  # longer than one attempt can take (the Notifier's timeout is 5 s)
POLL_S = 0.25
RETRY_AFTER_CAP_S = 300.0
_CHANNEL = TypeAdapter(Channel)


class OutboxWorker:
    """Sends what the outbox holds; `wake` makes it look at once (the engine sets it after enqueueing)."""

    def __init__(self, engine: Engine, notifier: Notifier, *, lease_s: float = LEASE_S, poll_s: float = POLL_S,
                 backoff_s: float = 1.0, backoff_max_s: float = 300.0, max_workers: int = 8,
                 wake: threading.Event | None = None) -> None:
        self.engine = engine
        self.notifier = notifier
        self.lease_s, self.poll_s = lease_s, poll_s
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.wake = wake or threading.Event()
        self.sent = 0
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="outbox")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Void claims a dead worker left, then send in a background thread."""
        release_claims(self.engine, time.time())
        self._thread = threading.Thread(target=self._loop, daemon=True, name="outbox")
        self._thread.start()

    def stop(self) -> None:
        """Stop claiming; in-flight sends finish."""
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(5)
        self._pool.shutdown(wait=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.wake.wait(self.poll_s)
            self.wake.clear()
            try:
                self.run_once()
            except Exception:
                log.exception("outbox pass failed")

    def run_once(self, now: float | None = None, *, wait: bool = False) -> int:
        """Claim the due notices and send them (in the pool; `wait` blocks until done); return how many."""
        rows = claim_due(self.engine, time.time() if now is None else now, self.lease_s)
        futures = [self._pool.submit(self.send, row) for row in rows]
        if wait:
            for f in futures:
                f.result()
        return len(rows)

    def send(self, row: OutboxRow) -> bool:
        """One attempt at one notice, recorded; True if the receiver acknowledged it."""
        label = channel_label(row.channel)
        attempt = row.attempts + 1
        try:
            channel = _CHANNEL.validate_python(row.channel)
        except ValidationError as exc:
            record_attempt(self.engine, row, attempt=attempt, ok=False, at=time.time(), channel_label=label,
                           error=f"stored channel is invalid: {exc.errors()[0]['msg']}", retry_at=None)
            return False
        outcome = self.notifier.send_once(channel, GroupMessage(row.dedup_id, row.payload))
        at = time.time()
        retry_at = None
        if not outcome.ok and outcome.retryable:
            delay = (min(max(outcome.retry_after_s, 0.0), RETRY_AFTER_CAP_S) if outcome.retry_after_s is not None
                     else retry_delay(attempt, self.backoff_s, self.backoff_max_s))
            retry_at = at + delay
        record_attempt(self.engine, row, attempt=attempt, ok=outcome.ok, at=at, error=outcome.error,
                       channel_label=label, retry_at=retry_at)
        if outcome.ok:
            self.sent += 1
        return outcome.ok
