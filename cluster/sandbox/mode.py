"""The sandbox mode: the jail (the default, failing closed) or, with `CLOUDFN_SANDBOX=insecure`, a plain
child process with rlimits only, for development on hosts where the jail cannot run."""

from __future__ import annotations

import os

INSECURE = "insecure"
MODES = ("", "jail", INSECURE)


class SandboxUnavailable(RuntimeError):
    """The jail cannot be applied on this host; nothing may run."""


def insecure() -> bool:
    """True when functions run without the jail (CLOUDFN_SANDBOX=insecure)."""
    return os.environ.get("CLOUDFN_SANDBOX", "").strip().lower() == INSECURE


def label() -> str:
    """What task records carry as `sandbox`."""
    return INSECURE if insecure() else "jail"
