"""The host's warm ledger: every warm child of every pool on this host, its memory and when it was last used.

Each Ray worker has its own `SandboxPool`; the memory budget (`CLOUDFN_WARM_MEMORY_MB`) is per host, so the
pools share a directory under the sandbox root (0700, owned by the supervisor's uid; no jail binds it) with
one small file per warm child (`c-<child pid>`: key, hosting worker, PSS, last use) and one per hosting
worker (`h-<worker pid>`: its own PSS while it holds warm children). Every pool computes the same plan from
it: walk the children from the most recently used down, adding each child's PSS and, the first time one of
its children is kept, its worker's; every child from the point the budget is exceeded on is evicted by the
pool that owns it (a pool only ever kills its own children). Evictions are counted per worker (`e-<pid>`).
Memory is proportional set size from /proc/<pid>/smaps_rollup (shared pages counted once across processes).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20


def pss_kib(pid: int) -> int:
    """Proportional set size of one process in KiB (0 if it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    return os.path.exists(f"/proc/{pid}")


@dataclass(frozen=True)
class WarmEntry:
    """One warm child as its pool last wrote it."""

    pid: int
    key: str
    host: int  # the worker process holding it
    pss_kib: int
    used: float  # wall-clock time of its last invocation
    busy: bool = False


@dataclass(frozen=True)
class WarmState:
    """The host's warm state: children, the PSS of the workers holding them, evictions so far."""

    children: list[WarmEntry]
    hosts: dict[int, tuple[str, int]]  # worker pid -> (kind, PSS KiB)
    evictions: int

    @property
    def functions(self) -> int:
        """Distinct versions with at least one warm child."""
        return len({c.key for c in self.children})

    @property
    def children_kib(self) -> int:
        """PSS of the warm children."""
        return sum(c.pss_kib for c in self.children)

    def hosts_kib(self, kind: str | None = None) -> int:
        """PSS of the workers holding warm children (of one kind, or all)."""
        return sum(k for h, (knd, k) in self.hosts.items() if kind is None or knd == kind)

    def total_kib(self) -> int:
        """The host's warm memory: the children and the workers holding them."""
        return self.children_kib + self.hosts_kib()

    def plan(self, budget_kib: int) -> set[int]:
        """The pids of the children to evict beyond the budget (never a busy one, never the most recently
        used): first a version's extra children (a burst's, beyond its most recently used one), then whole
        versions, least recently used first."""
        total = 0
        counted: set[int] = set()
        evict: set[int] = set()
        newest = sorted(self.children, key=lambda c: c.used, reverse=True)
        seen: set[str] = set()
        extra: set[int] = set()
        for c in newest:
            if c.key in seen:
                extra.add(c.pid)
            seen.add(c.key)
        ranked = [c for c in newest if c.pid not in extra] + [c for c in newest if c.pid in extra]
        full = False  # strictly in that order: once one child does not fit, no later one stays
        for i, c in enumerate(ranked):
            cost = c.pss_kib + (self.hosts.get(c.host, ("", 0))[1] if c.host not in counted else 0)
            full = full or (i > 0 and total + cost > budget_kib)
            if full and not c.busy:
                evict.add(c.pid)
                continue
            total += cost
            counted.add(c.host)
        return evict


class WarmLedger:
    """The ledger directory of one sandbox root (one per host in production)."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root) / "warm"
        self._mine: dict[str, object] = {}  # the entries this process wrote last, by file name

    def ensure(self) -> None:
        """Create the directory (0700)."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _write(self, name: str, doc: object) -> None:
        tmp = self.dir / f".{name}.{os.getpid()}"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.dir / name)

    def _remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / name).unlink()

    def publish(self, host_kind: str, entries: Iterable[WarmEntry], host_pss_kib: int) -> None:
        """Replace this worker's entries with `entries` (its live warm children) and its own PSS; a file is
        rewritten only when its content changed."""
        me = os.getpid()
        docs: dict[str, object] = {f"c-{e.pid}": {"key": e.key, "host": me, "pss_kib": e.pss_kib, "used": e.used,
                                                  "busy": e.busy} for e in entries}
        if docs:
            docs[f"h-{me}"] = {"kind": host_kind, "pss_kib": host_pss_kib}
        for name, doc in docs.items():
            if self._mine.get(name) != doc:
                self._write(name, doc)
        for name in self._mine.keys() - docs.keys():
            self._remove(name)
        self._mine = docs

    def count_evictions(self, n: int) -> None:
        """Add `n` to this worker's eviction count."""
        name = f"e-{os.getpid()}"
        try:
            before = int((self.dir / name).read_text())
        except (OSError, ValueError):
            before = 0
        self._write(name, before + n)

    def withdraw(self) -> None:
        """Remove every entry of this worker (it is closing)."""
        for name in self._mine:
            self._remove(name)
        self._mine = {}

    def read(self) -> WarmState:
        """Every live entry (entries of dead children or dead workers are removed on the way)."""
        children: list[WarmEntry] = []
        hosts: dict[int, tuple[str, int]] = {}
        evictions = 0
        for name in self._names():
            doc = self._load(name)
            if doc is None:
                continue
            kind, _, pid_s = name.partition("-")
            pid = int(pid_s)
            if kind == "e":
                evictions += int(doc) if isinstance(doc, int) else 0
            elif kind == "h" and isinstance(doc, dict):
                if alive(pid):
                    hosts[pid] = (str(doc.get("kind", "")), int(doc.get("pss_kib", 0)))
                else:
                    self._remove(name)
            elif kind == "c" and isinstance(doc, dict):
                host = int(doc.get("host", 0))
                if alive(pid) and alive(host):
                    children.append(WarmEntry(pid, str(doc.get("key", "")), host, int(doc.get("pss_kib", 0)),
                                              float(doc.get("used", 0.0)), bool(doc.get("busy", False))))
                else:
                    self._remove(name)
        return WarmState(children, {h: v for h, v in hosts.items() if any(c.host == h for c in children)},
                         evictions)

    def _names(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.dir) if n[:2] in ("c-", "h-", "e-") and n[2:].isdigit()]
        except FileNotFoundError:
            return []

    def _load(self, name: str) -> object:
        try:
            return json.loads((self.dir / name).read_text())
        except (OSError, ValueError):
            return None


def prometheus_text(state: WarmState, budget_mb: int) -> str:
    """The host's warm state in the Prometheus text format (appended to /metrics for the operator)."""
    lines = [
        "# HELP cloudfn_warm_functions Function versions with at least one warm sandboxed child on this host.",
        "# TYPE cloudfn_warm_functions gauge", f"cloudfn_warm_functions {state.functions}",
        "# HELP cloudfn_warm_children Warm sandboxed children on this host.",
        "# TYPE cloudfn_warm_children gauge", f"cloudfn_warm_children {len(state.children)}",
        "# HELP cloudfn_warm_evictions_total Warm children evicted to keep this host within its memory budget.",
        "# TYPE cloudfn_warm_evictions_total counter", f"cloudfn_warm_evictions_total {state.evictions}",
        "# HELP cloudfn_warm_memory_budget_bytes CLOUDFN_WARM_MEMORY_MB of this host.",
        "# TYPE cloudfn_warm_memory_budget_bytes gauge", f"cloudfn_warm_memory_budget_bytes {budget_mb * MiB}",
        "# HELP cloudfn_warm_pss_bytes Proportional set size of the warm state by process kind.",
        "# TYPE cloudfn_warm_pss_bytes gauge",
        f'cloudfn_warm_pss_bytes{{kind="sandbox_child"}} {state.children_kib * 1024}',
    ]
    for kind in sorted({k for k, _ in state.hosts.values()} | {"task_worker", "express_lane"}):
        lines.append(f'cloudfn_warm_pss_bytes{{kind="{kind}"}} {state.hosts_kib(kind) * 1024}')
    return "\n".join(lines) + "\n"


def default_root() -> Path:
    """The host's sandbox root: env CLOUDFN_SANDBOX_ROOT or /tmp/cloudfn-sandbox-<uid>."""
    return Path(os.environ.get("CLOUDFN_SANDBOX_ROOT") or f"/tmp/cloudfn-sandbox-{os.getuid()}")


def host_metrics(budget_mb: int, root: Path | None = None) -> bytes:
    """This host's warm state as Prometheus text (the default sandbox root's ledger)."""
    return prometheus_text(WarmLedger(root or default_root()).read(), budget_mb).encode()
