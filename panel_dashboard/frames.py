"""Turns the API's records into the DataFrames the views show (pure functions, no Panel)."""

from __future__ import annotations

from typing import Any

import pandas as pd

Record = dict[str, Any]
DASH = "—"

EXECUTION_COLUMNS = ["task_id", "function", "version", "status", "duration_ms", "memory_mb", "created", "finished"]
FUNCTION_COLUMNS = ["function", "state", "version", "runs (1h)", "error rate", "p95 ms"]
ALERT_COLUMNS = ["alert", "function", "rule", "value", "since", "last delivery", "acknowledged"]
SILENCE_COLUMNS = ["silence", "matchers", "state", "ends", "by", "comment"]
NOTIFICATION_COLUMNS = ["time", "alert", "functions", "status", "channel", "delivery", "attempts"]


def _num(v: Any) -> float | None:
    """A float, or None for missing/non-numeric values."""
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _clock(iso: Any) -> str:
    """HH:MM:SS (UTC) of an ISO timestamp, or an empty string."""
    if not iso:
        return ""
    ts = pd.Timestamp(iso)
    return ts.strftime("%H:%M:%S")


def _naive_utc(iso: str) -> pd.Timestamp:
    """A timestamp in UTC without a zone (Bokeh plots naive datetimes as given)."""
    ts = pd.Timestamp(iso)
    return ts.tz_convert(None) if ts.tzinfo is not None else ts


def _fmt(v: Any, spec: str) -> str:
    """V formatted with SPEC, or the dash if it is not a number."""
    n = _num(v)
    return DASH if n is None else format(n, spec)


def functions_frame(functions: list[Record], metrics: dict[str, Record | None]) -> pd.DataFrame:
    """One row per function: state, active version and the last hour's figures (dash when unknown)."""
    rows = []
    for f in functions:
        m = metrics.get(f["name"]) or {}
        raw = m.get("duration_ms")
        dur: Record = raw if isinstance(raw, dict) else {}
        rate = _num(m.get("error_rate"))
        rows.append({"function": f["name"], "state": str(f.get("state", "")),
                     "version": DASH if f.get("active_version") is None else str(f["active_version"]),
                     "runs (1h)": _fmt(m.get("count"), ".0f"),
                     "error rate": DASH if rate is None else f"{rate:.1%}",
                     "p95 ms": _fmt(dur.get("p95"), ".1f")})
    return pd.DataFrame(rows, columns=FUNCTION_COLUMNS)


def executions_frame(tasks: list[Record]) -> pd.DataFrame:
    """The tasks oldest first (the API lists newest first), indexed by task id."""
    rows = []
    for t in reversed(tasks):
        m = t.get("metrics") or {}
        rows.append({"task_id": t["task_id"], "function": t.get("function", ""), "version": t.get("version"),
                     "status": t.get("status", ""), "duration_ms": _num(m.get("duration_ms")),
                     "memory_mb": _num(m.get("peak_memory_mb")), "created": _clock(t.get("created_at")),
                     "finished": _clock(t.get("finished_at"))})
    return pd.DataFrame(rows, columns=EXECUTION_COLUMNS)


def alerts_frame(alerts: list[Record]) -> pd.DataFrame:
    """One row per firing alert with its latest delivery's status."""
    rows = []
    for a in alerts:
        deliveries = a.get("deliveries") or []
        last = deliveries[-1] if deliveries else {}
        rows.append({"alert": str(a.get("id", "")), "function": a.get("function", ""),
                     "rule": str(a.get("rule_id", "")), "value": _fmt(a.get("value"), ".4g"),
                     "since": _clock(a.get("started_at")),
                     "last delivery": f"{last.get('channel', '')} {last.get('status', '')}".strip() or DASH,
                     "acknowledged": (f"{a['acknowledged_by']} at {_clock(a.get('acknowledged_at'))}"
                                      if a.get("acknowledged_by") else DASH)})
    return pd.DataFrame(rows, columns=ALERT_COLUMNS)


def _matcher_text(m: Record) -> str:
    op = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[
        (bool(m.get("isRegex")), bool(m.get("isEqual", True)))]
    return f"{m.get('name', '')}{op}\"{m.get('value', '')}\""


def silences_frame(silences: list[Record]) -> pd.DataFrame:
    """Active and pending silences, as amtool prints their matchers."""
    rows = [{"silence": str(s.get("id", ""))[:8],
             "matchers": ", ".join(_matcher_text(m) for m in s.get("matchers", [])),
             "state": (s.get("status") or {}).get("state", ""),
             "ends": str(s.get("endsAt", ""))[:19].replace("T", " "),
             "by": s.get("createdBy", ""), "comment": s.get("comment", "")}
            for s in silences if (s.get("status") or {}).get("state") != "expired"]
    return pd.DataFrame(rows, columns=SILENCE_COLUMNS)


def notifications_frame(notifications: list[Record]) -> pd.DataFrame:
    """The newest notices with where they went and whether they arrived."""
    rows = [{"time": _clock(n.get("created_at")), "alert": n.get("alertname", ""),
             "functions": ", ".join(n.get("functions") or []), "status": n.get("status", ""),
             "channel": n.get("channel", ""), "delivery": n.get("state", ""), "attempts": str(n.get("attempts", ""))}
            for n in notifications]
    return pd.DataFrame(rows, columns=NOTIFICATION_COLUMNS)


SERIES_COLUMNS = ["time", "count", "errors", "error_rate", "duration_ms_p50", "duration_ms_p95", "cpu_ms_avg",
                  "peak_memory_mb_max"]
MARK_COLUMNS = ["time", "value", "metric", "observed", "expected", "detector", "score", "kind", "id"]
ANOMALY_COLUMNS = ["id", "detected", "kind", "metric", "observed", "expected", "detector", "score", "version",
                   "task_id", "feedback"]
VERSION_COLUMNS = ["version", "active", "handler", "created", "size", "sha256"]
# chart -> (the series column it draws, the anomaly metrics marked on it)
CHARTS = {"duration (ms)": ("duration_ms_p95", ("duration_ms",)), "CPU (ms)": ("cpu_ms_avg", ("cpu_ms",)),
          "peak memory (MB)": ("peak_memory_mb_max", ("peak_memory_mb",)),
          "error rate": ("error_rate", ("error_rate",))}


def series_frame(points: list[Record]) -> pd.DataFrame:
    """The lake's per-bucket figures as rows with a naive-UTC time and the error rate (NaN for empty buckets)."""
    rows = []
    for p in points:
        count = int(p.get("count") or 0)
        rows.append({"time": pd.Timestamp(float(p["start"]), unit="s"), "count": count,
                     "errors": int(p.get("errors") or 0),
                     "error_rate": (int(p.get("errors") or 0) / count) if count else None,
                     **{c: _num(p.get(c)) for c in SERIES_COLUMNS[4:]}})
    return pd.DataFrame(rows, columns=SERIES_COLUMNS).astype({c: float for c in SERIES_COLUMNS[3:]})


def expected_text(a: Record) -> str:
    """An anomaly's expected range as text ("1.2 – 3.4", "≤ 3.4")."""
    lo, hi = _num(a.get("expected_low")), _num(a.get("expected_high"))
    if lo is None and hi is None:
        return DASH
    if lo is None:
        return f"≤ {hi:.4g}"
    if hi is None:
        return f"≥ {lo:.4g}"
    return f"{lo:.4g} – {hi:.4g}"


def marks_frame(anomalies: list[Record] | None, metrics: tuple[str, ...], start: pd.Timestamp | None) -> pd.DataFrame:
    """The anomalies of METRICS detected since START, as points (time, observed) with their explanation."""
    rows = []
    for a in anomalies or []:
        if a.get("metric") not in metrics or not a.get("detected_at") or _num(a.get("observed")) is None:
            continue
        when = _naive_utc(a["detected_at"])
        if start is not None and when < start:
            continue
        rows.append({"time": when, "value": _num(a.get("observed")), "metric": str(a.get("metric")),
                     "observed": _fmt(a.get("observed"), ".4g"), "expected": expected_text(a),
                     "detector": str(a.get("detector") or ""), "score": _fmt(a.get("score"), ".3f"),
                     "kind": str(a.get("kind") or ""), "id": str(a.get("id", ""))})
    return pd.DataFrame(rows, columns=MARK_COLUMNS)


def anomalies_frame(anomalies: list[Record] | None) -> pd.DataFrame:
    """Every anomaly of a function, of every kind, newest first, with its explanation and feedback."""
    rows = [{"id": int(a["id"]), "detected": str(a.get("detected_at", ""))[:19].replace("T", " "),
             "kind": str(a.get("kind") or ""), "metric": str(a.get("metric") or ""),
             "observed": _fmt(a.get("observed"), ".4g"), "expected": expected_text(a),
             "detector": str(a.get("detector") or ""), "score": _fmt(a.get("score"), ".3f"),
             "version": DASH if a.get("version") is None else str(a["version"]),
             "task_id": str(a.get("task_id") or DASH), "feedback": str(a.get("feedback") or DASH)}
            for a in anomalies or [] if a.get("id") is not None]
    return pd.DataFrame(rows, columns=ANOMALY_COLUMNS)


def versions_frame(versions: list[Record], active: Any = None) -> pd.DataFrame:
    """A function's versions, newest first, the ACTIVE one marked."""
    rows = [{"version": int(v["version"]), "active": "✓" if v["version"] == active else "",
             "handler": str(v.get("handler", "")), "created": str(v.get("created_at", ""))[:19].replace("T", " "),
             "size": _fmt(v.get("size_bytes"), ",.0f"), "sha256": str(v.get("sha256", ""))[:12]}
            for v in versions if v.get("version") is not None]
    return pd.DataFrame(rows, columns=VERSION_COLUMNS).sort_values("version", ascending=False).reset_index(drop=True)
