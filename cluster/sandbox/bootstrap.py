"""Sandbox child: stdlib only, run as `python -I -S -B bootstrap.py` inside the jail (already isolated,
already the function's uid, see jail.py); sets the function's environment, then serves invocations.

Protocol (both directions): a 12-byte header `>III` = (header_len, body_len, logs_len), then the JSON
header, the raw body and the raw logs. The first parent message is the init spec; the child answers with
a ready message, then serves `invoke` messages until its pipe closes. This file must not import anything
outside the standard library: it runs with no site-packages. The supervisor checks every reply
(protocol.py) and measures each invocation itself (measure.py); `cpu_wait_ms` and `handler_ms` here are
the child's own word, used only where a lie can harm no one but this function.
"""

from __future__ import annotations

import ctypes
import errno
import io
import json
import logging
import os
import resource
import signal
import struct
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~3 ms of every cold start
    from typing import Any

FRAME = struct.Struct(">III")
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
TRUNCATED = "\n[... log output truncated: limit of {limit} bytes reached ...]\n"


class CpuLimitExceeded(BaseException):  # noqa: N818 - the name is the error type users see
    """Raised in the handler when its per-invocation CPU allowance (RLIMIT_CPU soft limit) is used up."""


class Channel:
    """Blocking length-prefixed framing over two pipe fds."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd

    def _read(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = os.read(self.rfd, min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def recv(self) -> tuple[dict[str, Any], bytes]:
        hlen, blen, _ = FRAME.unpack(self._read(FRAME.size))
        header = json.loads(self._read(hlen))
        return header, self._read(blen) if blen else b""

    def send(self, header: dict[str, Any], body: bytes = b"", logs: bytes = b"") -> None:
        h = json.dumps(header, separators=(",", ":")).encode()
        data = memoryview(FRAME.pack(len(h), len(body), len(logs)) + h + body + logs)
        while data:
            data = data[os.write(self.wfd, data) :]


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def _settle(spec: dict[str, Any]) -> dict[str, Any]:
    """The jail (bwrap) has already isolated this process before the interpreter started; here only what
    belongs to the process itself: the parent-death signal, the function's environment, the work dir."""
    libc = _libc()
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if spec.get("parent_pid") and os.getppid() != spec["parent_pid"]:
        os._exit(70)  # the supervisor died before the death signal was armed
    if spec.get("check_only"):
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.environ.clear()
    os.environ.update(spec["env"])
    os.chdir(spec["work_dir"])
    return {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid()}


def _apply_rlimits(limits: dict[str, list[int]]) -> None:
    for name, (soft, hard) in limits.items():
        res = getattr(resource, name)
        cur_soft, cur_hard = resource.getrlimit(res)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard) if hard != resource.RLIM_INFINITY else cur_hard
            soft = min(soft, hard) if soft != resource.RLIM_INFINITY else hard
        resource.setrlimit(res, (soft, hard))


class Capture(io.TextIOBase):
    """stdout/stderr/logging sink for one invocation, capped at `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False

    def reset(self) -> None:
        self.parts, self.size, self.truncated = [], 0, False

    def write(self, s: str) -> int:  # type: ignore[override]
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        n = len(s)
        if self.size + n > self.limit:
            if not self.truncated:
                self.parts.append(s[: max(0, self.limit - self.size)])
                self.truncated = True
            self.size = self.limit
            return n
        self.parts.append(s)
        self.size += n
        return n

    def getvalue(self) -> str:
        text = "".join(self.parts)
        return text + TRUNCATED.format(limit=self.limit) if self.truncated else text

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 1

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class Context:
    """The Lambda-style `context` argument."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.function_name: str = fields["function_name"]
        self.function_version: str = fields["function_version"]
        self.aws_request_id: str = fields["aws_request_id"]
        self.memory_limit_in_mb: int = fields["memory_limit_in_mb"]
        self.invoked_function_arn: str = fields["invoked_function_arn"]
        self.log_group_name: str = fields["log_group_name"]
        self.log_stream_name: str = fields["log_stream_name"]
        self._deadline: float = fields["deadline_epoch"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


class _RequestId(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _error(exc: BaseException, etype: str | None = None, skip: int = 0) -> dict[str, Any]:
    import traceback
    tb = exc.__traceback__
    for _ in range(skip):
        tb = tb.tb_next if tb is not None else None
    try:
        message = str(exc)
    except Exception:  # a hostile __str__
        message = "<unprintable exception>"
    try:
        stack = [line.rstrip("\n") for line in traceback.format_list(traceback.extract_tb(tb))]
    except Exception:
        stack = []
    return {"type": etype or type(exc).__name__, "message": message, "stack": stack}


def _classify(exc: BaseException) -> str | None:
    if isinstance(exc, MemoryError):
        return "MemoryLimitExceeded"
    if isinstance(exc, CpuLimitExceeded):
        return "CpuLimitExceeded"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "FileSizeLimitExceeded"
    return None


class ProcStats:
    """This thread's schedstat, opened once (each read is then one pread); the supervisor measures the rest."""

    def __init__(self) -> None:
        try:
            self.schedstat: int | None = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self.schedstat = None

    def run_delay_ns(self) -> int:
        """Nanoseconds this thread has spent runnable but waiting for a CPU (0 when unknown)."""
        if self.schedstat is None:
            return 0
        try:
            return int(os.pread(self.schedstat, 64, 0).split()[1])
        except (OSError, IndexError, ValueError):
            return 0


class Runtime:
    """Loads the handler the way Lambda's Python runtime does and runs invocations."""

    def __init__(self, spec: dict[str, Any], fdlog: int) -> None:
        self.spec = spec
        self.cap = spec["max_output_bytes"]
        self.capture = Capture(self.cap)
        self.fdlog = fdlog
        self.cpu_s: float = spec["cpu_s"]
        self.cpu_hard: int = spec["rlimits"]["RLIMIT_CPU"][1]
        self.handler: Any = None
        self.two_args = True
        self.req = _RequestId()
        self.proc = ProcStats()
        sys.stdout = sys.stderr = self.capture
        root = logging.getLogger()
        root.handlers.clear()
        handler = logging.StreamHandler(self.capture)
        fmt = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
                                "%Y-%m-%dT%H:%M:%S")
        fmt.converter = time.gmtime
        handler.setFormatter(fmt)
        handler.terminator = ""
        handler.addFilter(self.req)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        signal.signal(signal.SIGXCPU, self._on_sigxcpu)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self.cpu_exceeded = False
        self.pid = os.getpid()

    def _on_sigxcpu(self, signum: int, frame: Any) -> None:
        self.cpu_exceeded = True
        raise CpuLimitExceeded(f"CPU time limit of {self.cpu_s:g} s exceeded")

    def load(self) -> dict[str, Any] | None:
        """Import and resolve the handler; None or the failure."""
        import importlib
        import inspect

        name = self.spec["handler"]
        modname, _, fname = name.rpartition(".")
        modname = modname.replace("/", ".")
        try:
            module = importlib.import_module(modname)
        except BaseException as exc:
            return _error(exc, _classify(exc) or type(exc).__name__)
        fn = getattr(module, fname, None)
        if fn is None:
            return {"type": "HandlerNotFound", "message": f"Handler {fname!r} missing on module {modname!r}",
                    "stack": []}
        if not callable(fn):
            return {"type": "HandlerNotCallable",
                    "message": f"{name!r} is a {type(fn).__name__}, not a callable", "stack": []}
        try:
            sig: Any = inspect.signature(fn)
        except (TypeError, ValueError):  # no introspectable signature (some builtins): assume (event, context)
            sig = None
        if sig is not None:
            params = list(sig.parameters.values())
            pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            required = [p for p in pos if p.default is p.empty]
            varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
            required_kw = [p for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
            if len(required) > 2 or required_kw or (not pos and not varargs):
                return {"type": "HandlerSignatureError",
                        "message": f"handler {name!r} must take (event, context) or (event); signature is {sig}",
                        "stack": []}
            self.two_args = varargs or len(pos) >= 2
        self.handler = fn
        return None

    def _fd_logs(self) -> str:
        """Output written straight to fds 1/2 (subprocesses, C code) since the last call."""
        size = os.fstat(self.fdlog).st_size
        if not size:
            return ""
        data = os.pread(self.fdlog, min(size, self.cap), 0)
        os.ftruncate(self.fdlog, 0)
        os.lseek(self.fdlog, 0, os.SEEK_SET)
        return data.decode("utf-8", "replace")

    def invoke(self, header: dict[str, Any], body: bytes) -> tuple[dict[str, Any], bytes, bytes]:
        ctx = Context(header["ctx"])
        self.capture.reset()
        self.req.request_id = ctx.aws_request_id
        used = sum(os.times()[:4])
        if used + self.cpu_s >= self.cpu_hard:
            retire = True
        else:
            retire = False
            resource.setrlimit(resource.RLIMIT_CPU, (int(used + self.cpu_s) + 1, self.cpu_hard))
        out = b""
        error: dict[str, Any] | None = None
        wait0 = self.proc.run_delay_ns()
        t0 = time.perf_counter()
        try:
            event = json.loads(body)
            result = self.handler(event, ctx) if self.two_args else self.handler(event)
            t1 = time.perf_counter()
            wait1 = self.proc.run_delay_ns()
            try:
                out = json.dumps(result, allow_nan=False).encode()
            except (ValueError, RecursionError) as exc:  # NaN, Infinity, nesting beyond the recursion limit
                error = {"type": "OutputNotJSON",
                         "message": f"handler returned a value that is not JSON: {exc}", "stack": []}
            except TypeError as exc:
                error = {"type": "OutputNotSerializable",
                         "message": f"handler returned a value that is not JSON-serialisable: {exc}",
                         "stack": []}
        except BaseException as exc:
            t1 = time.perf_counter()
            wait1 = self.proc.run_delay_ns()
            etype = _classify(exc) or ("CpuLimitExceeded" if self.cpu_exceeded else None)
            error = _error(exc, etype, skip=1)
            del exc
        if os.getpid() != self.pid:  # a process the handler forked returned into the runtime: not ours to answer
            os._exit(0)
        if self.cpu_exceeded:
            retire = True
            if error is None or error["type"] != "CpuLimitExceeded":
                error = {"type": "CpuLimitExceeded",
                         "message": f"CPU time limit of {self.cpu_s:g} s exceeded", "stack": []}
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_hard, self.cpu_hard))
        if error is None and len(out) > self.cap:
            error = {"type": "OutputLimitExceeded",
                     "message": f"output of {len(out)} bytes exceeds the limit of {self.cap} bytes", "stack": []}
        if error is not None:
            out = b""
        fd_text = self._fd_logs()
        if fd_text:
            self.capture.write(fd_text)
        logs = self.capture.getvalue().encode("utf-8", "replace")
        self.capture.reset()
        resp = {
            "status": "succeeded" if error is None else "failed",
            "error": error,
            "cpu_wait_ms": max(0.0, min((wait1 - wait0) / 1e6, (t1 - t0) * 1000.0)),
            "handler_ms": (t1 - t0) * 1000.0,
            "retire": retire,
        }
        return resp, out, logs


def _serve(chan: Channel) -> None:
    spec, _ = chan.recv()
    t0 = time.perf_counter()
    try:
        iso = _settle(spec)
        os.umask(0o077)
        try:
            fdlog = os.open(".", os.O_TMPFILE | os.O_RDWR, 0o600)
        except OSError:  # filesystems without O_TMPFILE
            fdlog = os.open(".stdout", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            os.unlink(".stdout")
        os.dup2(fdlog, 1)
        os.dup2(fdlog, 2)
        for path in reversed(spec["sys_path"]):
            sys.path.insert(0, path)
        runtime = Runtime(spec, fdlog)
        _apply_rlimits(spec["rlimits"])
        load_error = runtime.load()
    except BaseException as exc:
        chan.send({"ok": False, "setup_error": _error(exc, "SandboxSetupFailed")})
        return
    ready: dict[str, Any] = {"ok": load_error is None, "error": load_error, "isolation": iso,
                             "init_ms": (time.perf_counter() - t0) * 1000.0,
                             "cpu_total_s": sum(os.times()[:4])}
    chan.send(ready, logs=runtime.capture.getvalue().encode("utf-8", "replace"))
    runtime.capture.reset()
    if load_error is not None or spec.get("check_only"):
        return
    while True:
        try:
            header, body = chan.recv()
        except EOFError:
            return
        if header.get("op") == "batch":
            if not _serve_batch(chan, runtime, header, body):
                return
        elif not _answer(chan, *runtime.invoke(header, body)):
            return


def _answer(chan: Channel, resp: dict[str, Any], out: bytes, logs: bytes) -> bool:
    """Send one invocation's reply; False when this child must retire now."""
    try:
        chan.send(resp, out, logs)
    except MemoryError:
        chan.send({"status": "failed", "retire": True, "error": {
            "type": "MemoryLimitExceeded", "message": "out of memory sending the result", "stack": []}})
        return False
    return not resp["retire"]


def _serve_batch(chan: Channel, runtime: Runtime, header: dict[str, Any], body: bytes) -> bool:
    """Several invocations in one request frame (events concatenated, `sizes` apart), one reply frame each,
    sent as each ends; each one's deadline counts from its own start. False when this child must retire."""
    at = 0
    for ctx, size in zip(header["ctxs"], header["sizes"], strict=True):
        event, at = body[at : at + size], at + size
        ctx["deadline_epoch"] = time.time() + header["timeout_s"]
        if not _answer(chan, *runtime.invoke({"ctx": ctx}, event)):
            return False
    return True


def main() -> None:
    """Move the protocol pipes off fds 0/1, park fds 0-2 on /dev/null, and serve."""
    rfd, wfd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    try:  # noqa: SIM105 - importing contextlib costs cold-start time
        _serve(Channel(rfd, wfd))
    except (EOFError, BrokenPipeError):
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
