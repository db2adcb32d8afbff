/**
 * The Tether side of the benchmark: a Tether host (PluginClient, AutoMTLS,
 * unix socket) measuring one KV plugin the same way the Go reference
 * (tests/interop/go/internal/bench, run by `benchhost`) does:
 *
 * 1. spawn to first call: from `start()` until the first `Get` returns, on a
 *    fresh plugin each time (the first one in this process is "cold": it
 *    also pays for loading grpc-js and the crypto code);
 * 2. sequential unary latency: one 64-byte `Put`, `warmup` `Get`s, then `n`
 *    timed `Get`s; p50 and p99 by nearest rank;
 * 3. throughput: `concurrency` callers each looping on `Get` for `duration`.
 *
 * As a program it prints one JSON object (a {@linkcode TetherHostResult}); the
 * plugin gets HOME, PATH, DENO_DIR and TMPDIR from this process's environment:
 *
 *   deno run -A bench/tether_host.ts [--n 3000] [--warmup 200] [--concurrency 16]
 *     [--duration 3] [--spawn-runs 5] [--automtls=true] [--large-bytes N --large-n 10]
 *     [--channel lean|grpc-js] -- <cmd> [args...]
 *
 * `--channel grpc-js` runs the host on grpc-js's own channel instead of the
 * lean one (src/h2channel.ts), to compare the two in one run.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { PluginClient, type ServiceClient } from "../mod.ts";
import { KV } from "../src/gen/tether/kv/v1/kv_pb.ts";
import { type ChannelImplementation, setChannelImplementation } from "../src/channel.ts";
import { kvHandshake } from "../examples/kv/handshake.ts";

/** What to measure. */
export interface TetherHostOptions {
  /** The plugin's command. */
  readonly cmd: string;
  /** Its arguments. */
  readonly args: readonly string[];
  /** Sequential calls measured. */
  readonly n: number;
  /** Calls before measuring. */
  readonly warmup: number;
  /** Callers in flight during the throughput phase. */
  readonly concurrency: number;
  /** Length of the throughput phase, in seconds. */
  readonly durationS: number;
  /** Extra spawn-to-first-call samples, each on a fresh plugin, after the cold one. */
  readonly spawnRuns: number;
  /** AutoMTLS (default true), as in the Go reference. */
  readonly autoMTLS?: boolean;
  /** Size of the value behind the large-answer phase (Terraform-style schema); 0 or absent: no such phase. */
  readonly largeBytes?: number;
  /** Get calls of the large value timed. */
  readonly largeN?: number;
  /** Environment for the plugin (Tether passes nothing of its own). */
  readonly env?: Record<string, string>;
}

/** The figures, with the same names as the Go reference's JSON where they overlap. */
export interface TetherHostResult {
  /** First spawn in this host process: start() to the first Get's answer, ms. */
  spawn_to_first_call_ms: number;
  /** Median of the later spawns (a warm host process), ms; the cold figure when spawnRuns is 0. */
  spawn_to_first_call_warm_ms: number;
  /** Every warm spawn sample, ms. */
  spawn_samples_ms: number[];
  /** Sequential Get latency, microseconds. */
  seq_p50_us: number;
  seq_p99_us: number;
  /** Mean sequential latency, microseconds. */
  seq_mean_us: number;
  /** CPU time (user + system) per sequential call, microseconds: this host process, and the plugin's (Linux). */
  seq_host_cpu_us?: number;
  seq_plugin_cpu_us?: number;
  /** Get calls per second with `concurrency` in flight. */
  calls_per_sec: number;
  /** Median time of a Get answering `large_bytes` bytes, ms (when measured). */
  large_p50_ms?: number;
  large_bytes?: number;
  n: number;
  warmup: number;
  concurrency: number;
  duration_s: number;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** Nearest-rank percentile of sorted samples (as the Go reference). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil((p * sorted.length) / 100));
  return sorted[rank - 1];
}

/** The median of some samples. */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) return 0;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function newClient(options: TetherHostOptions): PluginClient {
  return new PluginClient({
    cmd: options.cmd,
    args: options.args,
    handshake: kvHandshake,
    autoMTLS: options.autoMTLS ?? true,
    env: options.env,
    startTimeoutMs: 30_000,
  });
}

/** Spawns a plugin, times start() to the first Get's answer, and returns the live client with that time. */
async function spawnToFirstCall(options: TetherHostOptions): Promise<{ client: PluginClient; ms: number }> {
  const client = newClient(options);
  const t0 = performance.now();
  try {
    await client.start();
    await client.dispense(KV).get({ key: "bench" });
  } catch (error) {
    await client.kill();
    throw error;
  }
  return { client, ms: performance.now() - t0 };
}

/** CPU time (user + system) a process has used, ms, from /proc (NaN where there is none). */
function cpuMs(pid: number | "self" | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1].split(" ");
    // utime and stime, in clock ticks of 10 ms (USER_HZ is 100 on Linux).
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return NaN;
  }
}

/** Terraform-style large answers: the host reads one big message per call (as the Go reference). */
async function largeAnswers(
  kv: ServiceClient<typeof KV>,
  bytes: number,
  n: number,
): Promise<{ large_p50_ms: number; large_bytes: number }> {
  const big = new Uint8Array(bytes).map((_, i) => (i * 7) & 0xff);
  await kv.put({ key: "large", value: big });
  const request = { key: "large" };
  await kv.get(request); // warm-up: buffers and windows grown once
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const { value } = await kv.get(request);
    times.push(performance.now() - t);
    if (value.length !== bytes) throw new Error(`large get: ${value.length} bytes, want ${bytes}`);
  }
  times.sort((a, b) => a - b);
  return { large_p50_ms: round2(percentile(times, 50)), large_bytes: bytes };
}

/** Runs the whole measurement against one plugin command. */
export async function measureTetherHost(options: TetherHostOptions): Promise<TetherHostResult> {
  const { client, ms: coldMs } = await spawnToFirstCall(options);
  try {
    const kv = client.dispense(KV);
    const value = new Uint8Array(64).map((_, i) => 97 + (i % 26));
    await kv.put({ key: "bench", value });
    const request = { key: "bench" };
    for (let i = 0; i < options.warmup; i++) await kv.get(request);

    const latencies = new Array<number>(options.n);
    const hostCpu0 = cpuMs("self");
    const pluginCpu0 = cpuMs(client.pid);
    for (let i = 0; i < options.n; i++) {
      const t = performance.now();
      await kv.get(request);
      latencies[i] = (performance.now() - t) * 1000;
    }
    const hostCpu = cpuMs("self") - hostCpu0;
    const pluginCpu = cpuMs(client.pid) - pluginCpu0;
    const mean = latencies.reduce((a, b) => a + b, 0) / latencies.length;
    latencies.sort((a, b) => a - b);

    let calls = 0;
    const start = performance.now();
    const deadline = start + options.durationS * 1000;
    await Promise.all(
      Array.from({ length: options.concurrency }, async () => {
        while (performance.now() < deadline) {
          await kv.get(request);
          calls++;
        }
      }),
    );
    const elapsedS = (performance.now() - start) / 1000;
    const callsPerSec = elapsedS > 0 ? calls / elapsedS : 0;

    let large: { large_p50_ms: number; large_bytes: number } | undefined;
    if (options.largeBytes && options.largeN) {
      large = await largeAnswers(kv, options.largeBytes, options.largeN);
    }

    await client.kill();

    const samples: number[] = [];
    for (let i = 0; i < options.spawnRuns; i++) {
      const spawned = await spawnToFirstCall(options);
      samples.push(spawned.ms);
      await spawned.client.kill();
    }

    return {
      spawn_to_first_call_ms: round2(coldMs),
      spawn_to_first_call_warm_ms: round2(samples.length ? median(samples) : coldMs),
      spawn_samples_ms: samples.map(round2),
      seq_p50_us: round2(percentile(latencies, 50)),
      seq_p99_us: round2(percentile(latencies, 99)),
      seq_mean_us: round2(mean),
      ...(Number.isFinite(hostCpu) ? { seq_host_cpu_us: round2((hostCpu * 1000) / options.n) } : {}),
      ...(Number.isFinite(pluginCpu) ? { seq_plugin_cpu_us: round2((pluginCpu * 1000) / options.n) } : {}),
      calls_per_sec: round2(callsPerSec),
      ...large,
      n: options.n,
      warmup: options.warmup,
      concurrency: options.concurrency,
      duration_s: options.durationS,
    };
  } finally {
    await client.kill();
  }
}

if (import.meta.main) {
  const dash = Deno.args.indexOf("--");
  if (dash < 0 || dash === Deno.args.length - 1) {
    console.error(
      "usage: deno run -A bench/tether_host.ts [--n 3000] [--warmup 200] [--concurrency 16] [--duration 3] " +
        "[--spawn-runs 5] [--automtls=true|false] [--large-bytes 7340032 --large-n 10] " +
        "[--channel lean|grpc-js] -- <cmd> [args...]",
    );
    Deno.exit(2);
  }
  const { values } = parseArgs({
    args: Deno.args.slice(0, dash),
    options: {
      n: { type: "string", default: "3000" },
      warmup: { type: "string", default: "200" },
      concurrency: { type: "string", default: "16" },
      duration: { type: "string", default: "3" },
      "spawn-runs": { type: "string", default: "5" },
      automtls: { type: "string", default: "true" },
      "large-bytes": { type: "string", default: "0" },
      "large-n": { type: "string", default: "10" },
      channel: { type: "string", default: "lean" },
    },
  });
  if (values.channel !== "lean" && values.channel !== "grpc-js") {
    console.error(`--channel must be lean or grpc-js, got ${values.channel}`);
    Deno.exit(2);
  }
  await setChannelImplementation(values.channel as ChannelImplementation);
  const [cmd, ...args] = Deno.args.slice(dash + 1);
  // A Tether host passes none of its own environment; give the plugin what a Deno plugin needs
  // to find its cache (a Go host passes everything).
  const env: Record<string, string> = {};
  for (const name of ["HOME", "PATH", "DENO_DIR", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const result = await measureTetherHost({
    env,
    cmd,
    args,
    n: Number(values.n),
    warmup: Number(values.warmup),
    concurrency: Number(values.concurrency),
    durationS: Number(values.duration),
    spawnRuns: Number(values["spawn-runs"]),
    autoMTLS: values.automtls !== "false",
    largeBytes: Number(values["large-bytes"]),
    largeN: Number(values["large-n"]),
  });
  console.log(JSON.stringify(result));
}
