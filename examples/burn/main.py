"""Sleeps for `sleep_ms` then burns CPU for `cpu_ms` (defaults 0 and 50)."""

import time


def handler(event, context):
    event = event or {}
    time.sleep(event.get("sleep_ms", 0) / 1000)
    t0 = time.process_time()
    n = 0
    while (time.process_time() - t0) * 1000 < event.get("cpu_ms", 50):
        n += 1
    return {"iterations": n}
