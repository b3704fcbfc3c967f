"""Node.js functions (`runtime: nodejs20`) in the same jail as Python ones: Lambda's handler styles (async,
callback, sync), its context, errors, limits (timeout, memory through the cgroup and V8's heap, CPU, file
size), logs, warm reuse, the activation check and the jail's isolation, all in real jailed children."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from cluster.sandbox import SandboxPool
from core.models import FunctionConfig, TaskStatus

from .conftest import invoke, needs_root, sandbox_root, write_code

pytestmark = [needs_root, pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")]


def node(**overrides: Any) -> FunctionConfig:
    """A Node.js function's config."""
    return FunctionConfig(runtime="nodejs20", **{"timeout_s": 10, "memory_mb": 128, **overrides})


def run(pool: SandboxPool, code: Path, event: Any = None, *, key: str | None = None, handler: str = "index.handler",
        config: FunctionConfig | None = None) -> Any:
    """Invoke a Node.js handler."""
    return invoke(pool, code, event, key=key, handler=handler, config=config or node())


def js(tmp_path: Path, source: str, name: str = "index.js") -> Path:
    """A code dir holding one JavaScript file."""
    return write_code(tmp_path, source, name)


CONTEXT = """
exports.handler = async (event, context) => ({
  event,
  awsRequestId: context.awsRequestId,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  memoryLimitInMB: context.memoryLimitInMB,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  remaining: context.getRemainingTimeInMillis(),
  waits: context.callbackWaitsForEmptyEventLoop,
  env: { name: process.env.AWS_LAMBDA_FUNCTION_NAME, handler: process.env._HANDLER,
         root: process.env.LAMBDA_TASK_ROOT },
  uid: process.getuid(),
  cwd: process.cwd(),
});
"""


def test_async_handler_gets_event_and_lambda_context(pool: SandboxPool, tmp_path: Path) -> None:
    code = js(tmp_path, CONTEXT)
    out = run(pool, code, {"name": "Ada", "n": [1, 2]})
    assert out.status == TaskStatus.SUCCEEDED, out.error
    o = out.output
    assert o["event"] == {"name": "Ada", "n": [1, 2]}
    assert o["functionName"] == "fn" and o["functionVersion"] == "3" and o["memoryLimitInMB"] == "128"
    assert len(o["awsRequestId"]) == 32 and o["invokedFunctionArn"].endswith(":function:fn:3")
    assert o["logGroupName"] == "/cloudfn/fn" and o["logStreamName"] == "2026/01/01/[3]abc"
    assert 0 < o["remaining"] <= 10_000 and o["waits"] is True
    assert o["env"]["name"] == "fn" and o["env"]["handler"] == "index.handler" and o["env"]["root"].endswith("/code")
    assert o["uid"] == out.extra["isolation"]["uid"] != 0
    assert out.extra["isolation"]["jail"] == "bubblewrap" and out.extra["isolation"]["network"] == "none"
    assert out.cold_start and out.peak_memory_mb > 1 and out.cpu_ms > 0 and out.duration_ms > 0


CALLBACK = """
exports.handler = (event, context, callback) => {
  const result = { ticks: 0 };
  context.callbackWaitsForEmptyEventLoop = event.wait;
  setTimeout(() => { result.ticks += 1; }, 50);
  callback(null, result);
};
"""


@pytest.mark.parametrize(("wait", "ticks"), [(True, 1), (False, 0)])
def test_callback_handler_waits_for_the_event_loop_like_lambda(pool: SandboxPool, tmp_path: Path, wait: bool,
                                                                ticks: int) -> None:
    # Lambda answers a callback once the event loop is empty, unless callbackWaitsForEmptyEventLoop is false:
    # the pending timer's change shows in the serialised result only when the runtime waited for it.
    out = run(pool, js(tmp_path, CALLBACK), {"wait": wait})
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert out.output == {"ticks": ticks}


@pytest.mark.parametrize(("source", "expected"), [
    ("exports.handler = (event, context, callback) => callback(null, event * 2);", 42),
    ("exports.handler = (event, context) => { context.succeed({ legacy: event }); };", {"legacy": 21}),
    ("exports.handler = function (event) { return event * 2; };", None),  # Lambda ignores a sync return value
    ("exports.handler = (event) => Promise.resolve([event]);", [21]),
    ("module.exports = { handler: async () => undefined };", None),
])
def test_sync_and_callback_styles(pool: SandboxPool, tmp_path: Path, source: str, expected: Any) -> None:
    out = run(pool, js(tmp_path, source), 21)
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert out.output == expected


@pytest.mark.parametrize(("source", "etype", "message"), [
    ("exports.handler = async () => { throw new TypeError('bad input'); };", "TypeError", "bad input"),
    ("exports.handler = () => { null.x; };", "TypeError", "Cannot read properties of null (reading 'x')"),
    ("exports.handler = (e, c, cb) => cb(new RangeError('too far'));", "RangeError", "too far"),
    ("exports.handler = async () => { throw 'plain string'; };", "string", "plain string"),
    ("class Custom extends Error { constructor(m) { super(m); this.name = 'CustomError'; } }\n"
     "exports.handler = async () => { throw new Custom('mine'); };", "CustomError", "mine"),
    ("exports.handler = (e, context) => context.fail(new Error('legacy fail'));", "Error", "legacy fail"),
])
def test_throwing_handler_records_type_message_and_stack(pool: SandboxPool, tmp_path: Path, source: str, etype: str,
                                                         message: str) -> None:
    out = run(pool, js(tmp_path, source), {})
    assert out.status == TaskStatus.FAILED and out.error is not None and out.output is None
    assert (out.error["type"], out.error["message"]) == (etype, message)
    if etype != "string":
        assert any("index.js" in line for line in out.error["stack"]), out.error["stack"]


def test_error_escaping_the_handler_fails_the_call_and_retires_the_child(pool: SandboxPool, tmp_path: Path) -> None:
    code = js(tmp_path, """
        exports.handler = async (event) => {
          if (event === 'throw') setTimeout(() => { throw new SyntaxError('from a timer'); }, 0);
          if (event === 'reject') Promise.reject(new Error('nobody listens'));
          return new Promise((resolve) => setTimeout(() => resolve('done'), 200));
        };
    """)
    key = f"t/node/escape/{uuid.uuid4().hex}"
    for event, etype in (("throw", "SyntaxError"), ("reject", "Runtime.UnhandledPromiseRejection")):
        out = run(pool, code, event, key=key)
        assert out.status == TaskStatus.FAILED and out.error is not None and out.error["type"] == etype, out.error
        assert pool.warm_count(key) == 0, "a child whose state an escaped error may have broken is not reused"
    after = run(pool, code, "fine", key=key)
    assert after.status == TaskStatus.SUCCEEDED and after.output == "done" and after.cold_start


COUNTER = """
const crypto = require('crypto');
const TOKEN = crypto.randomBytes(8).toString('hex');
let calls = 0;
exports.handler = async () => {
  calls += 1;
  console.log('call', calls);
  return { calls, token: TOKEN, pid: process.pid };
};
"""


def test_warm_second_call_reuses_the_child(pool: SandboxPool, tmp_path: Path) -> None:
    code = js(tmp_path, COUNTER)
    key = f"t/node/warm/{uuid.uuid4().hex}"
    first, second = run(pool, code, key=key), run(pool, code, key=key)
    assert first.status == second.status == TaskStatus.SUCCEEDED
    assert first.cold_start and not second.cold_start and "init_ms" in first.extra and "init_ms" not in second.extra
    assert (first.output["calls"], second.output["calls"]) == (1, 2)
    assert first.output["token"] == second.output["token"] and first.output["pid"] == 2  # pid 2: in the jail
    assert pool.warm_count(key) == 1
    assert "\tINFO\tcall 2\n" in second.logs and "call 1" not in second.logs


def test_batch_runs_each_invocation_in_one_child(pool: SandboxPool, tmp_path: Path) -> None:
    import json

    from .conftest import make_context

    code = js(tmp_path, COUNTER)
    key = f"t/node/batch/{uuid.uuid4().hex}"
    calls = [(json.dumps(i).encode(), make_context()) for i in range(4)]
    outs = pool.invoke_many(key=key, code_dir=code, handler="index.handler", config=node(), calls=calls)
    assert [o.status for o in outs] == [TaskStatus.SUCCEEDED] * 4
    assert [o.output["calls"] for o in outs] == [1, 2, 3, 4]
    assert len({o.output["token"] for o in outs}) == 1


LOGS = """
exports.handler = async (event, context) => {
  console.log('hello %s', event.name, { n: 1 });
  console.error('bad thing');
  console.warn('careful');
  process.stdout.write('raw stdout\\n');
  require('child_process').execFileSync('/bin/echo', ['from a child process'], { stdio: 'inherit' });
  return context.awsRequestId;
};
"""


def test_console_and_stdout_captured_in_logs(pool: SandboxPool, tmp_path: Path) -> None:
    out = run(pool, js(tmp_path, LOGS), {"name": "Ada"})
    assert out.status == TaskStatus.SUCCEEDED, out.error
    rid = out.output
    assert f"\t{rid}\tINFO\thello Ada {{ n: 1 }}\n" in out.logs
    assert f"\t{rid}\tERROR\tbad thing\n" in out.logs and f"\t{rid}\tWARN\tcareful\n" in out.logs
    assert "raw stdout\n" in out.logs and "from a child process\n" in out.logs
    again = run(pool, js(tmp_path, LOGS), {"name": "Bo"})
    assert "hello Bo" in again.logs and "hello Ada" not in again.logs


def test_logs_capped_with_marker(pool: SandboxPool, tmp_path: Path) -> None:
    code = js(tmp_path, "exports.handler = async () => {\n"
                        "  for (let i = 0; i < 1000; i++) console.log('x'.repeat(100));\n};")
    out = run(pool, code, config=node(max_output_kb=4))
    assert out.status == TaskStatus.SUCCEEDED, out.error
    assert "log output truncated: limit of 4096 bytes" in out.logs and len(out.logs.encode()) < 4096 + 200


@pytest.mark.parametrize("source", [
    "exports.handler = async () => new Promise((resolve) => setTimeout(resolve, 60000));",
    "exports.handler = () => { for (;;) {} };",
])
def test_timeout_kills_and_next_call_is_cold(pool: SandboxPool, tmp_path: Path, source: str) -> None:
    code = js(tmp_path, source.replace("exports.handler = ", "exports.quick = async () => 'ok';\nexports.handler = "))
    key = f"t/node/timeout/{uuid.uuid4().hex}"
    cfg = node(timeout_s=0.5)
    out = run(pool, code, key=key, config=cfg)
    assert out.status == TaskStatus.TIMED_OUT and out.error is not None and out.error["type"] == "TimeoutError"
    assert pool.warm_count(key) == 0
    after = run(pool, code, key=key, handler="index.quick", config=node(timeout_s=30))  # a slow host's cold start
    assert after.status == TaskStatus.SUCCEEDED and after.output == "ok" and after.cold_start


@pytest.mark.parametrize("source", [
    # the JavaScript heap: V8 stops at its heap limit (sized from memory_mb) or the cgroup kills it first
    "const keep = [];\nexports.handler = async (mb) => {\n"
    "  for (let i = 0; i < mb * 8; i++) keep.push(new Array(16384).fill(i));\n  return keep.length;\n};",
    # memory outside V8's heap (Buffers): only the cgroup stops it
    "const keep = [];\nexports.handler = async (mb) => {\n"
    "  for (let i = 0; i < mb; i++) keep.push(Buffer.alloc(1 << 20, 1));\n  return keep.length;\n};",
])
def test_over_memory_is_memory_limit_exceeded(pool: SandboxPool, tmp_path: Path, source: str) -> None:
    code = js(tmp_path, source)
    key = f"t/node/mem/{uuid.uuid4().hex}"
    cfg = node(memory_mb=64, max_file_mb=1)
    out = run(pool, code, 1024, key=key, config=cfg)
    assert out.status == TaskStatus.FAILED and out.error is not None, out
    assert out.error["type"] == "MemoryLimitExceeded", out.error
    assert pool.warm_count(key) == 0
    small = run(pool, code, 1, key=key, config=cfg)
    assert small.status == TaskStatus.SUCCEEDED and small.cold_start and small.output >= 1


def test_cpu_beyond_cpu_limit(pool: SandboxPool, tmp_path: Path) -> None:
    code = js(tmp_path, """
        exports.handler = async (seconds) => {
          const start = process.cpuUsage();
          for (;;) {
            const used = process.cpuUsage(start);
            if (used.user + used.system >= seconds * 1e6) return 'spun';
          }
        };
    """)
    key = f"t/node/cpu/{uuid.uuid4().hex}"
    cfg = node(timeout_s=30, cpu_s=1)
    out = run(pool, code, 1.5, key=key, config=cfg)
    assert out.status == TaskStatus.FAILED and out.error is not None and out.error["type"] == "CpuLimitExceeded"
    assert out.cpu_ms >= 1000
    again = run(pool, code, 0.01, key=key, config=cfg)
    assert again.status == TaskStatus.SUCCEEDED and again.output == "spun" and again.cold_start


def test_file_size_limit(pool: SandboxPool, tmp_path: Path) -> None:
    code = js(tmp_path, """
        const fs = require('fs');
        exports.handler = async (mb) => {
          const fd = fs.openSync('big.bin', 'w');
          for (let i = 0; i < mb; i++) fs.writeSync(fd, Buffer.alloc(1 << 20, 122));
          return mb;
        };
    """)
    out = run(pool, code, 3, config=node(max_file_mb=2))
    assert out.status == TaskStatus.FAILED and out.error is not None
    assert out.error["type"] == "FileSizeLimitExceeded", out.error


@pytest.mark.parametrize(("source", "etype"), [
    ("exports.handler = async () => ({ n: 10n });", "OutputNotSerializable"),
    ("exports.handler = async () => { const a = {}; a.self = a; return a; };", "OutputNotSerializable"),
    ("exports.handler = async () => 'x'.repeat(5000);", "OutputLimitExceeded"),
])
def test_bad_outputs(pool: SandboxPool, tmp_path: Path, source: str, etype: str) -> None:
    out = run(pool, js(tmp_path, source), config=node(max_output_kb=4))
    assert out.status == TaskStatus.FAILED and out.error is not None and out.error["type"] == etype


NETWORK = """
const net = require('net');
const dns = require('dns').promises;
function connect(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setTimeout(3000, () => { s.destroy(); resolve('ETIMEDOUT'); });
    s.on('connect', () => { s.destroy(); resolve('connected'); });
    s.on('error', (e) => resolve(e.code));
  });
}
exports.handler = async (event) => {
  let lookup;
  try { await dns.lookup('example.com'); lookup = 'resolved'; } catch (e) { lookup = e.code; }
  return { connect: await connect(event.host, 80), lookup,
           interfaces: Object.keys(require('os').networkInterfaces()) };
};
"""


def test_network_refused_inside_the_jail(pool: SandboxPool, tmp_path: Path) -> None:
    out = run(pool, js(tmp_path, NETWORK), {"host": "192.0.2.1"})  # TEST-NET-1: no route without the jail either
    assert out.status == TaskStatus.SUCCEEDED, out.error
    o = out.output
    assert o["connect"] == "ENETUNREACH" and o["lookup"] != "resolved", o
    assert o["interfaces"] == ["lo"], "only loopback in the jail's network namespace"


ISOLATION = """
const fs = require('fs');
function attempt(fn) { try { fn(); return 'ok'; } catch (e) { return e.code; } }
exports.handler = async () => ({
  procs: fs.readdirSync('/proc').filter((e) => /^\\d+$/.test(e)).map(Number).sort(),
  writeCode: attempt(() => fs.writeFileSync(__dirname + '/x.js', '1')),
  writeUsr: attempt(() => fs.writeFileSync('/usr/x', '1')),
  home: ['/home', '/root', '/var', '/run', '/work', '/sys'].filter((d) => attempt(() => fs.readdirSync(d)) === 'ok'
    && fs.readdirSync(d).length > 0),
  writeWork: attempt(() => fs.writeFileSync('scratch', '1')),
  setuid: attempt(() => process.setuid(0)),
});
"""


def test_same_jail_as_python(pool: SandboxPool, tmp_path: Path) -> None:
    out = run(pool, js(tmp_path, ISOLATION))
    assert out.status == TaskStatus.SUCCEEDED, out.error
    o = out.output
    assert o["procs"] == [1, 2], "its own pid namespace: the jail's init and node"
    assert o["writeCode"] in ("EROFS", "EACCES") and o["writeUsr"] in ("EROFS", "EACCES")
    assert o["home"] == [] or o["home"] == ["/root"], o["home"]  # /root holds at most the interpreter's copy
    assert o["writeWork"] == "ok" and o["setuid"] in ("EPERM", "EINVAL"), "uid 0 is neither allowed nor mapped"


@pytest.mark.parametrize(("files", "handler", "etype"), [
    ({"index.js": "exports.other = async () => 1;"}, "index.handler", "HandlerNotFound"),
    ({"index.js": "exports.handler = 42;"}, "index.handler", "HandlerNotCallable"),
    ({"index.js": "exports.handler = async ( => 1;"}, "index.handler", "SyntaxError"),
    ({"index.js": "throw new RangeError('boom at load');"}, "index.handler", "RangeError"),
    ({"index.js": "require('not-a-module-anywhere');"}, "index.handler", "Error"),
    ({"index.js": "exports.handler = async () => 1;"}, "app.handler", "Runtime.ImportModuleError"),
])
def test_activation_check_rejects(pool: SandboxPool, tmp_path: Path, files: dict[str, str], handler: str,
                                  etype: str) -> None:
    code = tmp_path / "code"
    code.mkdir()
    for name, text in files.items():
        (code / name).write_text(text)
    error = pool.check_handler(key=f"t/node/check/{uuid.uuid4().hex}", code_dir=code, handler=handler, config=node())
    assert error is not None and error["type"] == etype, error
    assert isinstance(error["message"], str) and isinstance(error["stack"], list)


@pytest.mark.parametrize(("files", "handler"), [
    ({"index.js": "exports.handler = async (e) => e;"}, "index.handler"),
    ({"index.mjs": "export const handler = async (e) => e;"}, "index.handler"),
    ({"package.json": '{"type": "module"}', "index.js": "export const handler = async (e) => e;"}, "index.handler"),
    ({"index.cjs": "module.exports.handler = async (e) => e;"}, "index.handler"),
    ({"src/app.js": "exports.handlers = { main: async (e) => e };"}, "src/app.handlers.main"),
    ({"my-fn.mjs": "const top = await Promise.resolve(1);\nexport async function run(e) { return e + top - 1; }"},
     "my-fn.run"),
])
def test_handler_forms_lambda_accepts(pool: SandboxPool, tmp_path: Path, files: dict[str, str], handler: str) -> None:
    code = tmp_path / "code"
    for name, text in files.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(text)
    assert pool.check_handler(key=f"t/node/ok/{uuid.uuid4().hex}", code_dir=code, handler=handler,
                              config=node()) is None
    out = run(pool, code, 7, handler=handler)
    assert out.status == TaskStatus.SUCCEEDED and out.output == 7, out.error


def test_insecure_mode_runs_node_without_the_jail(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLOUDFN_SANDBOX", "insecure")
    root = sandbox_root()
    p = SandboxPool(root)
    try:
        out = run(p, js(tmp_path, "exports.handler = async () => process.pid;"))
        assert out.status == TaskStatus.SUCCEEDED, out.error
        assert out.extra["sandbox"] == "insecure" and out.output != 2
    finally:
        p.close()
        shutil.rmtree(root, ignore_errors=True)


LIMITS = """
const fs = require('fs');
const { spawnSync } = require('child_process');
exports.handler = async () => {
  const fds = [];
  let fdError = null;
  try { for (let i = 0; i < 1000; i++) fds.push(fs.openSync(__filename, 'r')); } catch (e) { fdError = e.code; }
  fds.forEach((fd) => fs.closeSync(fd));
  const sleepers = [];
  let procError = null;
  for (let i = 0; i < 64 && procError === null; i++) {
    const child = require('child_process').spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
    await new Promise((resolve) => {
      child.on('spawn', resolve);
      child.on('error', (e) => { procError = e.code; resolve(); });
    });
    if (procError === null) sleepers.push(child);
  }
  sleepers.forEach((c) => c.kill('SIGKILL'));
  return { opened: fds.length, fdError, started: sleepers.length, procError, echo: spawnSync('/bin/true').status };
};
"""


def test_smallest_limits_start_node_and_still_bound_the_function(pool: SandboxPool, tmp_path: Path) -> None:
    # Node's own fds and threads are allowed on top of max_open_files and max_processes
    out = run(pool, js(tmp_path, LIMITS), config=node(max_open_files=16, max_processes=4))
    assert out.status == TaskStatus.SUCCEEDED, out.error
    o = out.output
    assert o["fdError"] == "EMFILE" and 16 <= o["opened"] < 16 + 32, o
    assert o["procError"] == "EAGAIN" and o["started"] < 64, o


FORGE = """
const fs = require('fs');
exports.handler = async (event) => {
  require('child_process').spawn('/bin/sleep', ['600'], { detached: true, stdio: 'ignore' }).unref();
  const header = Buffer.from(event.header);
  const frame = Buffer.alloc(12);
  frame.writeUInt32BE(header.length, 0);
  fs.writeSync(Number(process.argv[3]), Buffer.concat([frame, header]));  // the protocol pipe back
  return 'forged';
};
"""


@pytest.mark.parametrize("header", [
    '{"status": "succeeded", "error": null, "retire": "no", "cpu_wait_ms": "fast"}',
    '{"status": "succeeded", "error": null, "cpu_wait_ms": NaN}',
    "not json at all",
])
def test_forged_reply_is_a_protocol_error_and_leaks_nothing(pool: SandboxPool, tmp_path: Path, header: str) -> None:
    import time

    from cluster.sandbox import layout

    from .conftest import uid_processes

    key = f"t/node/forge/{uuid.uuid4().hex}"
    layout.ensure_root(pool.root)
    uid = layout.allocate_uid(pool.root, key)
    before = set(uid_processes(uid))
    out = run(pool, js(tmp_path, FORGE), {"header": header}, key=key)
    assert out.status == TaskStatus.FAILED and out.error is not None, out
    assert out.error["type"] == "SandboxProtocolError" and out.output is None, out.error
    assert pool.warm_count(key) == 0
    deadline = time.monotonic() + 5
    while set(uid_processes(uid)) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(uid_processes(uid)) - before == set(), "the child, its jail and its detached process are all gone"


@pytest.mark.parametrize("fake", ["#!/bin/sh\necho v18.19.1\n", None])
def test_missing_or_old_node_is_sandbox_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    fake: str | None) -> None:
    from cluster.sandbox.probe import node_problem

    binary = tmp_path / "node"
    if fake is not None:
        binary.write_text(fake)
        binary.chmod(0o755)
    monkeypatch.setenv("CLOUDFN_SANDBOX_NODE", str(binary))
    problem = node_problem()
    assert problem is not None and ("v18.19.1" in problem and "20" in problem if fake else "--version" in problem)
    root = sandbox_root()  # a fresh root: the Node.js runtime is assembled once per root
    p = SandboxPool(root)
    try:
        out = run(p, js(tmp_path, "exports.handler = async () => 1;"))
        assert out.status == TaskStatus.FAILED and out.error is not None and out.error["type"] == "SandboxUnavailable"
        assert p.warm_count() == 0
    finally:
        p.close()
        shutil.rmtree(root, ignore_errors=True)
