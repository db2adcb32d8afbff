/**
 * The floor host: bench/tether_host.ts's measurements with Tether taken out
 * of the call path and only Deno's runtime layer left. It launches a
 * go-plugin KV plugin itself (go-plugin's environment: the magic cookie,
 * `PLUGIN_PROTOCOL_VERSIONS`, `PLUGIN_CLIENT_CERT` for AutoMTLS, with a
 * certificate made before the run by bench/floor/certs.ts), reads the
 * handshake line, dials the unix socket with `node:tls` + `node:http2` (the
 * same HTTP/2 windows as Tether's channel), and sends gRPC request bytes
 * encoded once at start, reading each answer and its trailers. No protobuf
 * runtime, no Tether import.
 *
 * Three modes, each printing one JSON object:
 *
 *   deno run -A bench/floor/host.ts --certs DIR [--n 3000] [--warmup 200] [--concurrency 16]
 *     [--duration 3] [--spawn-runs 5] [--large-bytes N --large-n 10] -- <cmd> [args...]
 *   deno run -A bench/floor/host.ts --certs DIR --memory [--calls 2000] [--idle-ms 1000] [--trim] --go <cmd> -- <cmd> [args...]
 *   deno run -A bench/floor/host.ts --certs DIR --line-only N -- <cmd> [args...]
 *
 * The first gives bench/tether_host.ts's figures (same names). `--memory`
 * gives bench/memory.ts's: this host's VmRSS before it loads `node:http2` and
 * `node:tls`, after, and after its first plugin (`--go`) answered `--calls`
 * Gets and idled; then the RSS of the plugin after `--` after the same calls.
 * With `--trim`, the plugin (and this host, if started with `DENO_USR2_MEMORY_TRIM=1`) gets Deno's opt-in
 * memory trim before the idle reading. `--line-only N` times N launches from spawn to the handshake line (the
 * spawn floor of bench/floor/bare.ts).
 *
 * @module
 */

import { parseArgs } from "node:util";
import type * as Http2 from "node:http2";
import type * as Tls from "node:tls";
import {
  getRequest,
  type HandshakeLine,
  KV_COOKIE,
  parseHandshakeLine,
  putRequest,
  readCerts,
  rss,
  SESSION_WINDOW,
  STREAM_WINDOW,
  VALUE64,
} from "./wire.ts";

// Loaded in main, after --memory's first reading (as bench/memory.ts imports Tether after its own).
let http2: typeof Http2;
let tls: typeof Tls;

const round2 = (x: number) => Math.round(x * 100) / 100;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.max(1, Math.ceil((p * sorted.length) / 100)) - 1];
}

function median(samples: readonly number[]): number {
  if (samples.length === 0) return 0;
  const s = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** CPU time (user + system) this process has used, ms, in 10 ms clock ticks (NaN without /proc). */
function cpuMs(): number {
  try {
    const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/** A launched plugin: its process, its handshake line, and (once dialled) its HTTP/2 session. */
interface Launched {
  child: Deno.ChildProcess;
  line: HandshakeLine;
  session?: Http2.ClientHttp2Session;
}

let certsDir = "";
/**
 * `--trim`: Deno's opt-in memory trim (`DENO_USR2_MEMORY_TRIM=1`, then SIGUSR2: glibc's `malloc_trim(0)`
 * and a V8 GC) in the plugin and, when this host was started with that variable, in the host, once the
 * calls are done and before the idle reading.
 */
let trim = false;

/** Starts `cmd` with go-plugin's environment and reads its handshake line (stdout is drained after it). */
async function launch(cmd: string, args: string[]): Promise<Launched> {
  const host = readCerts(certsDir, "host");
  const env: Record<string, string> = {};
  for (const name of ["HOME", "PATH", "DENO_DIR", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const child = new Deno.Command(cmd, {
    args,
    clearEnv: true,
    env: {
      ...env,
      [KV_COOKIE.key]: KV_COOKIE.value,
      PLUGIN_PROTOCOL_VERSIONS: String(KV_COOKIE.version),
      PLUGIN_MIN_PORT: "10000",
      PLUGIN_MAX_PORT: "25000",
      PLUGIN_CLIENT_CERT: host.certPem,
      ...(trim ? { DENO_USR2_MEMORY_TRIM: "1" } : {}),
    },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      await child.status;
      throw new Error(`floor host: ${cmd} ended before its handshake line (got ${JSON.stringify(text)})`);
    }
    text += decoder.decode(value, { stream: true });
  }
  // The rest of stdout is read and dropped, as go-plugin does.
  (async () => {
    try {
      while (!(await reader.read()).done) { /* drained */ }
    } catch { /* the process ended */ }
  })();
  return { child, line: parseHandshakeLine(text.slice(0, text.indexOf("\n"))) };
}

/** Dials the plugin: TLS (the plugin's certificate pinned, ALPN h2) and HTTP/2, ready once SETTINGS came. */
function dial(launched: Launched): Promise<Http2.ClientHttp2Session> {
  const host = readCerts(certsDir, "host");
  const { line } = launched;
  if (line.network !== "unix") throw new Error(`floor host: only unix sockets, got ${line.network}`);
  if (!line.certPem) throw new Error("floor host: the plugin printed no certificate (AutoMTLS only)");
  const socket = tls.connect({
    path: line.address,
    ca: line.certPem,
    key: host.keyPem,
    cert: host.certPem,
    servername: "localhost",
    ALPNProtocols: ["h2"],
  });
  const session = http2.connect("https://localhost", {
    createConnection: () => socket,
    settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
  });
  launched.session = session;
  return new Promise((resolve, reject) => {
    session.once("remoteSettings", () => {
      session.setLocalWindowSize(SESSION_WINDOW);
      resolve(session);
    });
    session.once("error", reject);
  });
}

/** One unary call: the pre-encoded request, the answer's bytes (one piece when `keep`), status 0 required. */
function call(
  session: Http2.ClientHttp2Session,
  path: string,
  body: Uint8Array,
  keep = false,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      ":scheme": "https",
      ":authority": "localhost",
      "content-type": "application/grpc",
      "te": "trailers",
    }, { endStream: false });
    let bytes = 0;
    const chunks: Buffer[] = [];
    let status: unknown;
    stream.on("response", (headers) => status = headers["grpc-status"] ?? status);
    stream.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
      if (keep) chunks.push(chunk);
    });
    stream.on("trailers", (trailers) => status = trailers["grpc-status"]);
    stream.on("error", reject);
    stream.on("close", () => {
      if (status !== "0") reject(new Error(`floor host: ${path} ended with grpc-status ${status}`));
      else {
        // The message in one piece, as a host needs it to decode (Go's reader copies it too).
        if (keep) Buffer.concat(chunks, bytes);
        resolve(bytes);
      }
    });
    stream.end(body);
  });
}

const GET = "/tether.kv.v1.KV/Get";
const PUT = "/tether.kv.v1.KV/Put";
const GET_BENCH = getRequest("bench");

/** Ends a plugin as go-plugin does: Shutdown, up to 2 s for it to exit, then SIGKILL. */
async function stop(launched: Launched): Promise<void> {
  const { child, line } = launched;
  if (line.protocol === "grpc") {
    try {
      const session = launched.session ?? await dial(launched);
      await Promise.race([call(session, "/plugin.GRPCController/Shutdown", new Uint8Array(5)), sleep(2000)])
        .catch(() => {});
      session.destroy();
    } catch { /* gone already */ }
  } else child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
  await child.status;
  clearTimeout(timer);
}

/** Spawn to first answer: launch, line, dial, the first Get answered. */
async function spawnToFirstCall(cmd: string, args: string[]): Promise<{ launched: Launched; ms: number }> {
  const t0 = performance.now();
  const launched = await launch(cmd, args);
  try {
    await call(await dial(launched), GET, GET_BENCH);
  } catch (error) {
    await stop(launched);
    throw error;
  }
  return { launched, ms: performance.now() - t0 };
}

async function measure(cmd: string, args: string[], o: Record<string, number>) {
  const { launched, ms: coldMs } = await spawnToFirstCall(cmd, args);
  const session = launched.session!;
  try {
    await call(session, PUT, putRequest("bench", VALUE64));
    for (let i = 0; i < o.warmup; i++) await call(session, GET, GET_BENCH);
    const latencies = new Array<number>(o.n);
    const cpu0 = cpuMs();
    for (let i = 0; i < o.n; i++) {
      const t = performance.now();
      await call(session, GET, GET_BENCH);
      latencies[i] = (performance.now() - t) * 1000;
    }
    const cpu = cpuMs() - cpu0;
    latencies.sort((a, b) => a - b);

    let calls = 0;
    const start = performance.now();
    const deadline = start + o.duration * 1000;
    await Promise.all(Array.from({ length: o.concurrency }, async () => {
      while (performance.now() < deadline) {
        await call(session, GET, GET_BENCH);
        calls++;
      }
    }));
    const elapsedS = (performance.now() - start) / 1000;

    let large: { large_p50_ms: number; large_bytes: number } | undefined;
    if (o.largeBytes && o.largeN) {
      const big = new Uint8Array(o.largeBytes).map((_, i) => (i * 7) & 0xff);
      await call(session, PUT, putRequest("large", big));
      const getLarge = getRequest("large");
      await call(session, GET, getLarge, true); // warm-up, as the others
      const times: number[] = [];
      for (let i = 0; i < o.largeN; i++) {
        const t = performance.now();
        const bytes = await call(session, GET, getLarge, true);
        times.push(performance.now() - t);
        if (bytes < o.largeBytes) throw new Error(`floor host: large Get gave ${bytes} bytes`);
      }
      times.sort((a, b) => a - b);
      large = { large_p50_ms: round2(percentile(times, 50)), large_bytes: o.largeBytes };
    }
    await stop(launched);

    const samples: number[] = [];
    for (let i = 0; i < o.spawnRuns; i++) {
      const spawned = await spawnToFirstCall(cmd, args);
      samples.push(spawned.ms);
      await stop(spawned.launched);
    }
    return {
      spawn_to_first_call_ms: round2(coldMs),
      spawn_to_first_call_warm_ms: round2(samples.length ? median(samples) : coldMs),
      spawn_samples_ms: samples.map(round2),
      seq_p50_us: round2(percentile(latencies, 50)),
      seq_p99_us: round2(percentile(latencies, 99)),
      ...(Number.isFinite(cpu) ? { seq_host_cpu_us: round2((cpu * 1000) / o.n) } : {}),
      calls_per_sec: round2(elapsedS > 0 ? calls / elapsedS : 0),
      ...large,
      n: o.n,
      warmup: o.warmup,
      concurrency: o.concurrency,
      duration_s: o.duration,
    };
  } finally {
    if (launched.child.pid && !launched.session?.destroyed) await stop(launched).catch(() => {});
  }
}

/** bench/memory.ts's figures for the floors: the host's RSS at three points, the second plugin's after its calls. */
async function memory(goCmd: string, cmd: string, args: string[], calls: number, idleMs: number) {
  const exercise = async (c: string, a: string[]) => {
    const launched = await launch(c, a);
    const session = await dial(launched);
    await call(session, PUT, putRequest("bench", VALUE64));
    for (let i = 0; i < calls; i++) await call(session, GET, GET_BENCH);
    // Only a deno process has the handler (a Go plugin would die of SIGUSR2).
    if (trim && c !== goCmd) launched.child.kill("SIGUSR2");
    await sleep(idleMs);
    return { launched, memory: rss(launched.child.pid) };
  };
  const go = await exercise(goCmd, []);
  if (trim && Deno.env.get("DENO_USR2_MEMORY_TRIM") === "1") {
    Deno.kill(Deno.pid, "SIGUSR2");
    await sleep(idleMs);
  }
  const firstPlugin = rss("self");
  const plugin = await exercise(cmd, args);
  await stop(go.launched);
  await stop(plugin.launched);
  return { first_plugin: firstPlugin, go_plugin: go.memory, ts_plugin: plugin.memory };
}

if (import.meta.main) {
  const baseline = rss("self");
  const dash = Deno.args.indexOf("--");
  const { values } = parseArgs({
    args: Deno.args.slice(0, dash < 0 ? Deno.args.length : dash),
    options: {
      certs: { type: "string" },
      n: { type: "string", default: "3000" },
      warmup: { type: "string", default: "200" },
      concurrency: { type: "string", default: "16" },
      duration: { type: "string", default: "3" },
      "spawn-runs": { type: "string", default: "5" },
      "large-bytes": { type: "string", default: "0" },
      "large-n": { type: "string", default: "10" },
      memory: { type: "boolean", default: false },
      calls: { type: "string", default: "2000" },
      "idle-ms": { type: "string", default: "1000" },
      go: { type: "string" },
      "line-only": { type: "string" },
      trim: { type: "boolean", default: false },
    },
  });
  if (dash < 0 || dash === Deno.args.length - 1 || !values.certs || (values.memory && !values.go)) {
    console.error(
      "usage: deno run -A bench/floor/host.ts --certs DIR [--n N --warmup N --concurrency N --duration S " +
        "--spawn-runs N --large-bytes N --large-n N | --memory --go <cmd> [--calls N] | --line-only N] -- <cmd> [args...]",
    );
    Deno.exit(2);
  }
  certsDir = values.certs;
  trim = values.trim;
  http2 = await import("node:http2");
  tls = await import("node:tls");
  const loaded = rss("self");
  const [cmd, ...args] = Deno.args.slice(dash + 1);
  let result: unknown;
  if (values.memory) {
    const m = await memory(values.go!, cmd, args, Number(values.calls), Number(values["idle-ms"]));
    result = {
      calls: Number(values.calls),
      host_baseline_kib: baseline.rss_kib,
      host_loaded_kib: loaded.rss_kib,
      host_first_plugin_kib: m.first_plugin.rss_kib,
      host_anon_kib: {
        baseline: baseline.anon_kib,
        loaded: loaded.anon_kib,
        first_plugin: m.first_plugin.anon_kib,
      },
      go_plugin: m.go_plugin,
      ts_plugin: m.ts_plugin,
    };
  } else if (values["line-only"] !== undefined) {
    const samples: number[] = [];
    for (let i = 0; i < Number(values["line-only"]); i++) {
      const t0 = performance.now();
      const launched = await launch(cmd, args);
      samples.push(round2(performance.now() - t0));
      await stop(launched);
    }
    result = { spawn_to_line_ms: round2(median(samples)), samples_ms: samples };
  } else {
    result = await measure(cmd, args, {
      n: Number(values.n),
      warmup: Number(values.warmup),
      concurrency: Number(values.concurrency),
      duration: Number(values.duration),
      spawnRuns: Number(values["spawn-runs"]),
      largeBytes: Number(values["large-bytes"]),
      largeN: Number(values["large-n"]),
    });
  }
  console.log(JSON.stringify(result));
}
