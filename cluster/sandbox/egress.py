"""Egress for `network: true`: the child keeps its own network namespace; slirp4netns (a user-mode network
stack, run by the supervisor) gives it a route out through the host's sockets, and an nftables ruleset inside
the namespace lets it reach public destinations only.

Refused inside the namespace, before slirp4netns sees a packet: loopback beyond the namespace's own,
RFC 1918 and shared (100.64/10) ranges, link-local (cloud metadata at 169.254.169.254), multicast and
reserved ranges, IPv6 loopback, ULA, link-local and v4-mapped addresses, and every address and subnet of the
host itself (its services listen there). `CLOUDFN_EGRESS_ALLOW` (comma-separated CIDRs) opens chosen ranges.
Names resolve through slirp4netns's DNS forwarder at 10.0.2.3, which asks the host's resolver on the
function's behalf (the host's resolver usually sits at a private address the rules refuse).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

DNS_FORWARDER = "10.0.2.3"
RESOLV_CONF = f"nameserver {DNS_FORWARDER}\noptions edns0\n"
REFUSED_V4 = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
              "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4")
REFUSED_V6 = ("::/127", "::ffff:0:0/96", "64:ff9b::/96", "fc00::/7", "fe80::/10", "ff00::/8")
TOOLS = ("slirp4netns", "nft", "nsenter")


class EgressUnavailable(RuntimeError):
    """The egress stack cannot be set up (a tool missing, the namespace gone, slirp4netns not ready)."""


def missing_tools() -> list[str]:
    """The programs egress needs that this host lacks."""
    return [t for t in TOOLS if shutil.which(t) is None]


def allowed_networks(setting: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """CLOUDFN_EGRESS_ALLOW parsed; raises ValueError naming a bad entry."""
    nets = []
    for part in (p.strip() for p in setting.split(",")):
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ValueError(f"CLOUDFN_EGRESS_ALLOW: {part!r} is not a CIDR ({exc})") from None
    return nets


def host_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Every address of this host and the subnet it sits on."""
    nets = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6) or not a.address:
                continue
            addr = a.address.split("%")[0]
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.ip_network(addr))
                if a.netmask:
                    nets.append(ipaddress.ip_interface(f"{addr}/{a.netmask}").network)
    return nets


def ruleset(allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
            host: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The nftables ruleset loaded into the child's namespace."""
    v4 = [str(n) for n in [*map(ipaddress.ip_network, REFUSED_V4), *host] if n.version == 4]
    v6 = [str(n) for n in [*map(ipaddress.ip_network, REFUSED_V6), *host] if n.version == 6]
    lines = ["table inet cloudfn_egress {", "  chain out {", "    type filter hook output priority 0; policy accept;",
             '    oifname "lo" accept',
             f"    ip daddr {DNS_FORWARDER} udp dport 53 accept", f"    ip daddr {DNS_FORWARDER} tcp dport 53 accept"]
    a4 = [str(n) for n in allow if n.version == 4]
    a6 = [str(n) for n in allow if n.version == 6]
    if a4:
        lines.append(f"    ip daddr {{ {', '.join(a4)} }} accept")
    if a6:
        lines.append(f"    ip6 daddr {{ {', '.join(a6)} }} accept")
    lines.append(f"    ip daddr {{ {', '.join(sorted(set(v4)))} }} reject")
    lines.append(f"    ip6 daddr {{ {', '.join(sorted(set(v6)))} }} reject")
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def namespace_pid(pids: Callable[[], list[int]], timeout_s: float = 5.0) -> int:
    """A process of the child in its own network namespace once bwrap is done setting it up: one that bwrap
    exec'd (its command, no longer bwrap). bwrap adds 127.0.0.1 to the namespace's loopback with NLM_F_EXCL;
    slirp4netns --configure brings that loopback up, which makes the kernel add the address first, so
    attaching earlier fails the jail now and then ("loopback: Failed RTM_NEWADDR"). The exec'd child waits for
    its init message, so nothing of the function runs meanwhile."""
    own = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in pids():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/ns/net") != own and Path(f"/proc/{pid}/comm").read_text() != "bwrap\n":
                    return pid
        time.sleep(0.002)
    raise EgressUnavailable("the child's network namespace did not appear")


@dataclass
class Egress:
    """One child's slirp4netns; closing it ends the stack (and it ends by itself if the supervisor dies)."""

    proc: subprocess.Popen[bytes]
    exit_fd: int

    @classmethod
    def attach(cls, pid: int, allow: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
               cgroup_procs: list[int], timeout_s: float = 5.0) -> Egress:
        """Load the ruleset into `pid`'s network namespace, then connect it through slirp4netns."""
        netns = f"/proc/{pid}/ns/net"
        rules = ruleset(allow, host_networks())
        done = subprocess.run(["nsenter", f"--net={netns}", "nft", "-f", "-"], input=rules.encode(),
                              capture_output=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise EgressUnavailable(f"nft refused the egress rules: {done.stderr.decode(errors='replace')[:300]}")
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()

        def join_cgroup() -> None:
            me = str(os.getpid()).encode()
            for fd in cgroup_procs:
                os.write(fd, me)

        try:
            proc = subprocess.Popen(
                ["slirp4netns", "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox",
                 "--enable-seccomp", "-r", str(ready_w), "-e", str(exit_r), "--netns-type=path", netns, "tap0"],
                pass_fds=[ready_w, exit_r, *cgroup_procs], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, preexec_fn=join_cgroup, start_new_session=True)
        except OSError as exc:
            for fd in (ready_r, ready_w, exit_r, exit_w):
                os.close(fd)
            raise EgressUnavailable(f"could not start slirp4netns: {exc}") from exc
        os.close(ready_w)
        os.close(exit_r)
        egress = cls(proc, exit_w)
        try:
            ready, _, _ = select.select([ready_r], [], [], timeout_s)
            if not ready or os.read(ready_r, 1) != b"1":
                why = proc.stderr.read(2000).decode(errors="replace") if proc.poll() is not None and proc.stderr \
                    else "not ready in time"
                raise EgressUnavailable(f"slirp4netns: {why.strip()}")
        except BaseException:
            egress.close()
            raise
        finally:
            os.close(ready_r)
        return egress

    def close(self) -> None:
        """Stop the stack."""
        with contextlib.suppress(OSError):
            os.close(self.exit_fd)
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
