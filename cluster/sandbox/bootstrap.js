'use strict';
// Sandbox child for Node.js functions (`runtime: nodejs20`): run as `node <heap flags> bootstrap.js RFD WFD`
// inside the same jail as the Python bootstrap (already isolated, already the function's uid, rlimits
// already applied by the supervisor: Node cannot set its own). Speaks the same protocol as bootstrap.py:
// a 12-byte header `>III` = (header_len, body_len, logs_len), then the JSON header, the raw body and the
// raw logs; the init spec first, a ready message back, then `invoke` and `batch` messages until the pipe
// closes. The protocol runs on the fds RFD and WFD; fds 1 and 2 are an append-only memfd the supervisor
// handed in (what child processes and raw fd writes print, and V8's last words), read back after each call.
// Handlers run the way Lambda's Node.js 20 runtime runs them: `file.export` resolved from the code dir
// (.js, .mjs or .cjs; CommonJS or ES module), called as handler(event, context, callback); a returned
// promise settles the call, else the callback, else the event loop running empty (the result is then null).

const fs = require('fs');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const RFD = Number(process.argv[2]);
const WFD = Number(process.argv[3]);
const LOG_FD = 1;
const MAX_TYPE = 200;
const MAX_MESSAGE = 64 * 1024;
const MAX_STACK = 200;
const EXTENSIONS = ['.js', '.mjs', '.cjs'];

class EndOfInput extends Error {}

function readExact(n) {
  const buf = Buffer.allocUnsafe(n);
  let off = 0;
  while (off < n) {
    let got;
    try {
      got = fs.readSync(RFD, buf, off, n - off, null);
    } catch (e) {
      if (e.code === 'EAGAIN' || e.code === 'EINTR') continue;
      throw e;
    }
    if (got === 0) throw new EndOfInput();
    off += got;
  }
  return buf;
}

function recv() {
  const frame = readExact(12);
  const hlen = frame.readUInt32BE(0);
  const blen = frame.readUInt32BE(4);
  const llen = frame.readUInt32BE(8);
  const header = JSON.parse(readExact(hlen).toString('utf8'));
  const body = blen ? readExact(blen) : Buffer.alloc(0);
  if (llen) readExact(llen);
  return [header, body];
}

function send(header, body = Buffer.alloc(0), logs = Buffer.alloc(0)) {
  const h = Buffer.from(JSON.stringify(header), 'utf8');
  const frame = Buffer.alloc(12);
  frame.writeUInt32BE(h.length, 0);
  frame.writeUInt32BE(body.length, 4);
  frame.writeUInt32BE(logs.length, 8);
  const data = Buffer.concat([frame, h, body, logs]);
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(WFD, data, off, data.length - off);
    } catch (e) {
      if (e.code === 'EAGAIN' || e.code === 'EINTR') continue;
      throw e;
    }
  }
}

/** stdout/stderr/console sink for one invocation, capped at `limit` bytes. */
class Capture {
  constructor(limit) {
    this.limit = limit;
    this.reset();
  }

  reset() {
    this.parts = [];
    this.size = 0;
    this.truncated = false;
  }

  write(text) {
    const n = Buffer.byteLength(text, 'utf8');
    if (this.size + n > this.limit) {
      if (!this.truncated) {
        this.parts.push(Buffer.from(text, 'utf8').subarray(0, Math.max(0, this.limit - this.size)).toString('utf8'));
        this.truncated = true;
      }
      this.size = this.limit;
      return;
    }
    this.parts.push(text);
    this.size += n;
  }

  take() {
    let text = this.parts.join('');
    if (this.truncated) text += `\n[... log output truncated: limit of ${this.limit} bytes reached ...]\n`;
    this.reset();
    return Buffer.from(text, 'utf8');
  }
}

function printable(value, fallback) {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_TYPE && /^[\x20-\x7e]+$/.test(value)
    ? value : fallback;
}

/** An error as the protocol carries it: {type, message, stack}, named the way Lambda names it. */
function toError(err, type) {
  try {
    if (err instanceof Error) {
      const stack = typeof err.stack === 'string' ? err.stack.split('\n').slice(1).map((l) => l.trim()) : [];
      return {
        type: type || printable(err.name, printable(err.constructor && err.constructor.name, 'Error')),
        message: String(err.message).slice(0, MAX_MESSAGE),
        stack: stack.filter((l) => l).slice(0, MAX_STACK).map((l) => l.slice(0, 4096)),
      };
    }
    return { type: type || printable(typeof err, 'Error'), message: String(err).slice(0, MAX_MESSAGE), stack: [] };
  } catch (_) { // a hostile getter or toString
    return { type: type || 'Error', message: '<unprintable error>', stack: [] };
  }
}

function plainError(type, message) {
  return { type, message, stack: [] };
}

function classify(err) {
  if (err && err.code === 'EFBIG') return 'FileSizeLimitExceeded';
  if (err instanceof RangeError && /allocation failed|Array buffer allocation/i.test(String(err.message))) {
    return 'MemoryLimitExceeded';
  }
  return undefined;
}

class Runtime {
  constructor(spec) {
    this.spec = spec;
    this.cap = spec.max_output_bytes;
    this.capture = new Capture(this.cap);
    this.cpuLimitUs = spec.cpu_s * 1e6;
    this.cpuHardUs = spec.rlimits.RLIMIT_CPU[1] * 1e6;
    this.requestId = '';
    this.handler = null;
    this.current = null; // the running invocation's settle function
    this.fatal = null; // an error thrown outside any invocation: fails the next one
    this.broken = false; // an error escaped the handler (uncaught exception, unhandled rejection): retire
    try {
      this.schedstat = fs.openSync('/proc/thread-self/schedstat', 'r');
    } catch (_) {
      this.schedstat = null;
    }
    this.patchOutput();
    process.on('uncaughtException', (err) => this.escaped(err, undefined));
    process.on('unhandledRejection', (reason) => this.escaped(reason, 'Runtime.UnhandledPromiseRejection'));
    process.on('SIGXFSZ', () => {}); // writes past RLIMIT_FSIZE fail with EFBIG instead of killing the child
  }

  patchOutput() {
    const cap = this.capture;
    const levels = { log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'DEBUG', trace: 'TRACE' };
    for (const [method, level] of Object.entries(levels)) {
      console[method] = (...args) => {
        let text = util.format(...args);
        if (method === 'trace') text = `Trace: ${text}\n${new Error().stack.split('\n').slice(2).join('\n')}`;
        cap.write(`${new Date().toISOString()}\t${this.requestId}\t${level}\t${text}\n`);
      };
    }
    const raw = (chunk, encoding, cb) => {
      cap.write(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
      const done = typeof encoding === 'function' ? encoding : cb;
      if (typeof done === 'function') process.nextTick(done);
      return true;
    };
    process.stdout.write = raw;
    process.stderr.write = raw;
  }

  escaped(err, type) {
    const error = toError(err, type);
    this.broken = true;
    if (this.current) this.current(error);
    else this.fatal = error;
  }

  runDelayNs() {
    if (this.schedstat === null) return 0;
    try {
      const buf = Buffer.alloc(64);
      const n = fs.readSync(this.schedstat, buf, 0, 64, 0);
      return Number(buf.subarray(0, n).toString().split(' ')[1]) || 0;
    } catch (_) {
      return 0;
    }
  }

  cpuUs() {
    const u = process.cpuUsage();
    return u.user + u.system;
  }

  fdLogs() {
    try {
      const size = fs.fstatSync(LOG_FD).size;
      if (!size) return '';
      const buf = Buffer.alloc(Math.min(size, this.cap));
      const n = fs.readSync(LOG_FD, buf, 0, buf.length, 0);
      fs.ftruncateSync(LOG_FD, 0);
      return buf.subarray(0, n).toString('utf8');
    } catch (_) {
      return '';
    }
  }

  async load() {
    const handler = this.spec.handler;
    const slash = handler.lastIndexOf('/');
    const dot = handler.indexOf('.', slash + 1);
    if (dot < 0) return plainError('Runtime.MalformedHandlerName', `bad handler ${handler}`);
    const stem = handler.slice(0, dot);
    const props = handler.slice(dot + 1).split('.');
    const base = path.resolve(this.spec.code_dir, stem);
    const file = EXTENSIONS.map((ext) => base + ext).find((f) => fs.existsSync(f));
    if (!file) {
      return plainError('Runtime.ImportModuleError', `Error: Cannot find module '${stem}' (looked for ${stem}.js, `
        + `${stem}.mjs and ${stem}.cjs in ${this.spec.code_dir})`);
    }
    let mod;
    try {
      if (file.endsWith('.mjs')) {
        mod = await import(pathToFileURL(file).href);
      } else {
        try {
          mod = require(file);
        } catch (err) {
          if (!err || err.code !== 'ERR_REQUIRE_ESM') throw err;
          mod = await import(pathToFileURL(file).href); // a .js file in a "type": "module" package
        }
      }
    } catch (err) {
      return toError(err, classify(err));
    }
    let fn = mod;
    for (const p of props) fn = fn === null || fn === undefined ? undefined : fn[p];
    if (fn === undefined) {
      return plainError('HandlerNotFound', `${handler} is undefined or not exported`);
    }
    if (typeof fn !== 'function') {
      return plainError('HandlerNotCallable', `${handler} is a ${typeof fn}, not a function`);
    }
    this.handler = fn;
    return null;
  }

  context(c) {
    const deadlineMs = c.deadline_epoch * 1000;
    return {
      functionName: c.function_name,
      functionVersion: c.function_version,
      invokedFunctionArn: c.invoked_function_arn,
      memoryLimitInMB: String(c.memory_limit_in_mb),
      awsRequestId: c.aws_request_id,
      logGroupName: c.log_group_name,
      logStreamName: c.log_stream_name,
      identity: undefined,
      clientContext: undefined,
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () => Math.max(0, Math.floor(deadlineMs - Date.now())),
    };
  }

  /** Run the handler the way Lambda's Node.js 20 runtime does; resolves to [error, result]. */
  call(event, ctx) {
    return new Promise((resolve) => {
      let settled = false;
      let answer = null; // [error, result] once the callback has been called
      const settle = (error, result) => {
        if (settled) return;
        settled = true;
        this.current = null;
        process.removeListener('beforeExit', onEmptyLoop);
        resolve([error, result]);
      };
      const onEmptyLoop = () => (answer ? settle(...answer) : settle(null, null));
      const callback = (err, result) => {
        if (answer) return;
        answer = [err === undefined || err === null ? null : toError(err), result];
        if (!ctx.callbackWaitsForEmptyEventLoop) settle(...answer);
      };
      ctx.done = (err, result) => settle(err === undefined || err === null ? null : toError(err), result);
      ctx.succeed = (result) => settle(null, result);
      ctx.fail = (err) => settle(toError(err === undefined || err === null ? 'handled' : err), null);
      this.current = (error) => settle(error, null);
      process.on('beforeExit', onEmptyLoop);
      if (this.fatal) {
        const error = this.fatal;
        this.fatal = null;
        settle(error, null);
        return;
      }
      let ret;
      try {
        ret = this.handler(event, ctx, callback);
      } catch (err) {
        settle(toError(err, classify(err)), null);
        return;
      }
      if (ret !== null && (typeof ret === 'object' || typeof ret === 'function') && typeof ret.then === 'function') {
        Promise.resolve(ret).then((result) => settle(null, result),
          (err) => settle(toError(err === undefined || err === null ? 'rejected' : err, classify(err)), null));
      }
    });
  }

  async invoke(header, body) {
    const ctx = this.context(header.ctx);
    this.requestId = ctx.awsRequestId;
    const cpu0 = this.cpuUs();
    const wait0 = this.runDelayNs();
    const t0 = process.hrtime.bigint();
    let error = null;
    let result = null;
    let event;
    try {
      event = JSON.parse(body.length ? body.toString('utf8') : 'null');
    } catch (err) {
      error = toError(err);
    }
    if (!error) [error, result] = await this.call(event, ctx);
    const handlerMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const waitMs = Math.max(0, Math.min((this.runDelayNs() - wait0) / 1e6, handlerMs));
    const cpu1 = this.cpuUs();
    // Like Lambda, a runtime whose process state an escaped error may have broken is not reused.
    let retire = cpu1 + this.cpuLimitUs >= this.cpuHardUs || this.broken || error?.type === 'MemoryLimitExceeded';
    let out = Buffer.alloc(0);
    if (!error) {
      try {
        const text = JSON.stringify(result === undefined ? null : result);
        out = Buffer.from(text === undefined ? 'null' : text, 'utf8');
      } catch (err) {
        error = plainError('OutputNotSerializable',
          `handler returned a value that is not JSON-serialisable: ${toError(err).message}`);
      }
    }
    if (cpu1 - cpu0 > this.cpuLimitUs) {
      error = plainError('CpuLimitExceeded', `CPU time limit of ${this.spec.cpu_s} s exceeded`);
      retire = true;
    }
    if (!error && out.length > this.cap) {
      error = plainError('OutputLimitExceeded', `output of ${out.length} bytes exceeds the limit of ${this.cap} bytes`);
    }
    if (error) out = Buffer.alloc(0);
    const fdText = this.fdLogs();
    if (fdText) this.capture.write(fdText);
    const reply = {
      status: error ? 'failed' : 'succeeded',
      error,
      cpu_wait_ms: waitMs,
      handler_ms: handlerMs,
      retire,
    };
    return [reply, out, this.capture.take()];
  }
}

function settleProcess(spec) {
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, spec.env);
  process.chdir(spec.work_dir);
  process.umask(0o077);
  if (spec.parent_pid && process.ppid !== spec.parent_pid) process.exit(70);
  return { uid: process.getuid(), gid: process.getgid(), pid: process.pid };
}

function answer(reply) {
  send(...reply);
  return !reply[0].retire;
}

async function serve() {
  const [spec] = recv();
  const t0 = process.hrtime.bigint();
  let runtime;
  let loadError;
  let iso;
  try {
    iso = settleProcess(spec);
    runtime = new Runtime(spec);
    loadError = await runtime.load();
  } catch (err) {
    send({ ok: false, setup_error: toError(err, 'SandboxSetupFailed') });
    return;
  }
  const initLogs = runtime.fdLogs();
  if (initLogs) runtime.capture.write(initLogs);
  send({
    ok: loadError === null, error: loadError, isolation: iso,
    init_ms: Number(process.hrtime.bigint() - t0) / 1e6, cpu_total_s: runtime.cpuUs() / 1e6,
  }, Buffer.alloc(0), runtime.capture.take());
  if (loadError !== null || spec.check_only) return;
  for (;;) {
    const [header, body] = recv();
    if (header.op === 'batch') {
      let at = 0;
      for (let i = 0; i < header.ctxs.length; i++) {
        const ctx = header.ctxs[i];
        const event = body.subarray(at, at + header.sizes[i]);
        at += header.sizes[i];
        ctx.deadline_epoch = Date.now() / 1000 + header.timeout_s;
        if (!answer(await runtime.invoke({ ctx }, event))) return;
      }
    } else if (!answer(await runtime.invoke(header, body))) {
      return;
    }
  }
}

serve().then(() => process.exit(0), (err) => {
  if (!(err instanceof EndOfInput) && !(err && err.code === 'EPIPE')) {
    try {
      fs.writeSync(2, `bootstrap: ${err && err.stack}\n`);
    } catch (_) { /* nothing left to report to */ }
  }
  process.exit(0);
});
