"""Fail closed: deploy and invoke are refused (503 `sandbox_unavailable`, nothing stored or queued) while the
jail cannot be applied on this host; `CLOUDFN_SANDBOX=insecure` runs functions anyway, loudly."""

from __future__ import annotations

import asyncio
import logging
import time

from cluster.sandbox.egress import missing_tools
from cluster.sandbox.mode import insecure, label
from cluster.sandbox.probe import jail_problem, node_problem
from core.errors import SandboxUnavailableError
from core.models import NODE_RUNTIME, PYTHON_RUNTIME

log = logging.getLogger(__name__)
REPROBE_S = 30.0


class SandboxGate:
    """Knows whether the jail works here (probed at start, probed again after a failure)."""

    def __init__(self) -> None:
        self.problem: str | None = None
        self.egress_problem: str | None = None
        self.node_problem: str | None = None
        self._probed_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def mode(self) -> str:
        """What task records carry as `sandbox`: "jail" or "insecure"."""
        return label()

    async def probe(self) -> None:
        """Start one jailed child now; remember why it failed, if it did."""
        self.problem = await asyncio.to_thread(jail_problem)
        self.node_problem = await asyncio.to_thread(node_problem)
        missing = missing_tools()
        self.egress_problem = (f"network egress needs {', '.join(missing)} (Debian: slirp4netns, nftables, "
                               "util-linux)") if missing and not insecure() else None
        self._probed_at = time.monotonic()
        if insecure():
            log.warning("CLOUDFN_SANDBOX=insecure: functions run WITHOUT the jail (no namespaces, no seccomp, "
                        "no per-function uid); every task record says \"sandbox\": \"insecure\". "
                        "Never use this for code you do not trust.")
        elif self.problem:
            log.error("the sandbox jail cannot be applied on this host, so deploy and invoke answer 503 "
                      "sandbox_unavailable: %s", self.problem)

    async def require(self, *, network: bool = False, runtime: str = PYTHON_RUNTIME) -> None:
        """Raise SandboxUnavailableError unless functions (with `network: true`, egress too; Node.js ones, a
        Node.js 20 too) may run here, re-probing a failed jail (or a missing Node.js) now and then."""
        node = runtime == NODE_RUNTIME
        if self.problem is None and not (network and self.egress_problem) and not (node and self.node_problem):
            return
        async with self._lock:
            stale = time.monotonic() - self._probed_at > REPROBE_S
            if (self.problem is not None or (node and self.node_problem is not None)) and stale:
                await self.probe()
        if self.problem is not None:
            raise SandboxUnavailableError(f"the function sandbox cannot be applied on this host: {self.problem}",
                                          detail={"reason": self.problem})
        if network and self.egress_problem is not None:
            raise SandboxUnavailableError(f"functions with network: true cannot run on this host: "
                                          f"{self.egress_problem}", detail={"reason": self.egress_problem})
        if node and self.node_problem is not None:
            raise SandboxUnavailableError(f"Node.js functions cannot run on this host: {self.node_problem}",
                                          detail={"reason": self.node_problem})
