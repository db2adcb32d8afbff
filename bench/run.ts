/**
 * `deno task bench`: Tether against go-plugin, in one run. Not a test: it
 * measures, prints a table with ratios, writes bench/results.json and draws
 * docs/performance.svg from it.
 *
 * Every pairing uses AutoMTLS over a unix socket and the KV plugin's `Get`
 * of a 64-byte value:
 *
 * | host                       | plugin                        | measured by            |
 * | -------------------------- | ----------------------------- | ---------------------- |
 * | Go (go-plugin) -- ref      | Go (bin/kvplugin)             | bin/benchhost          |
 * | Tether (lean channel)      | Go (bin/kvplugin)             | bench/tether_host.ts   |
 * | Tether (grpc-js channel)   | Go (bin/kvplugin)             | bench/tether_host.ts   |
 * | Go (go-plugin)             | TypeScript (examples/kv)      | bin/benchhost          |
 * | Tether (lean channel)      | TypeScript (examples/kv)      | bench/tether_host.ts   |
 *
 * Then, in the same run: Terraform-style large answers (a 7 MiB value read
 * back, bin/benchplugin), spawn of the bundled TypeScript plugin, memory
 * (bench/memory.ts) and the notifier rate through PluginManager
 * (bench/notifier.ts, against SFTPGo's own sender).
 *
 * The floors, interleaved with the rest: the same workloads with Tether's
 * code removed and only Deno's runtime layer left (bench/floor/): a floor
 * host (`node:http2` + `node:tls`, pre-encoded requests) against the Go
 * plugin and the floor plugin, the Go host against the floor plugin
 * (`node:http2` answering precomputed bytes), the floor host's large answers
 * and memory, the floor plugin's memory, the bare spawn of `deno` (to a
 * handshake line, with and without `node:http2` loaded and listening) and
 * SFTPGo's notifier sender into the floor plugin. Tether -> floor is what
 * Tether costs; floor -> Go is what Deno's runtime costs.
 *
 * Each measurement runs in its own host process, one after the other; the
 * pairings are measured `--rounds` times, interleaved, and each figure is the
 * median over the rounds (spawn samples are pooled).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { denoPlugin, goFixture, goModule, repoRoot } from "../tests/helpers.ts";
import { bundlePlugin } from "../src/bundle_cli.ts";
import { median, type TetherHostResult } from "./tether_host.ts";
import type { MemoryResult } from "./memory.ts";
import type { NotifierResult } from "./notifier.ts";
import { renderChart } from "./chart.ts";
import { writeFloorCertificates } from "./floor/certs.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string" },
    warmup: { type: "string" },
    concurrency: { type: "string" },
    duration: { type: "string" },
    "spawn-runs": { type: "string" },
    rounds: { type: "string" },
    "large-n": { type: "string" },
    events: { type: "string" },
    out: { type: "string", default: `${repoRoot}/bench/results.json` },
    chart: { type: "string", default: `${repoRoot}/docs/performance.svg` },
    quick: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (flags.help) {
  console.log(`usage: deno task bench [flags]

  --n N            sequential Get calls measured per pairing (default 3000; --quick 500)
  --warmup N       Get calls before measuring (default 200; --quick 50)
  --concurrency N  calls in flight in the throughput phase (default 16)
  --duration S     seconds of the throughput phase (default 3; --quick 1)
  --spawn-runs N   extra spawn-to-first-call samples per pairing and round (default 3; --quick 2)
  --rounds N       times each pairing is measured, interleaved; figures are medians (default 3; --quick 1)
  --large-n N      Gets of the 7 MiB value timed per host (default 10; --quick 3)
  --events N       fs events sent through PluginManager per notifier mode (default 20000; --quick 3000)
  --out FILE       where to write the JSON results (default bench/results.json)
  --chart FILE     where to write the SVG chart (default docs/performance.svg)
  --quick          smaller defaults, for a smoke run (~2 min)

The default run takes about 6-7 minutes on a 2-core machine (--quick: about 2).`);
  Deno.exit(0);
}

function positive(name: string, raw: string | undefined, fallback: number, allowZero = false): number {
  if (raw === undefined) return fallback;
  const value = Number(raw.replace(/s$/, ""));
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    console.error(`bench: --${name} must be a ${allowZero ? "non-negative" : "positive"} number, got ${raw}`);
    Deno.exit(2);
  }
  return value;
}

const config = {
  n: Math.round(positive("n", flags.n, flags.quick ? 500 : 3000)),
  warmup: Math.round(positive("warmup", flags.warmup, flags.quick ? 50 : 200, true)),
  concurrency: Math.round(positive("concurrency", flags.concurrency, 16)),
  durationS: positive("duration", flags.duration, flags.quick ? 1 : 3),
  spawnRuns: Math.round(positive("spawn-runs", flags["spawn-runs"], flags.quick ? 2 : 3, true)),
  rounds: Math.round(positive("rounds", flags.rounds, flags.quick ? 1 : 3)),
  largeBytes: 7 * 1024 * 1024,
  largeN: Math.round(positive("large-n", flags["large-n"], flags.quick ? 3 : 10)),
  memoryCalls: 2000,
  events: Math.round(positive("events", flags.events, flags.quick ? 3000 : 20000)),
};

const decoder = new TextDecoder();

async function run(cmd: string, args: string[], what: string, env?: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(cmd, { args, env, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const stdout = decoder.decode(out.stdout).trim();
  if (!out.success) {
    throw new Error(
      `${what} failed (exit ${out.code}):\n${cmd} ${args.join(" ")}\n${stdout}\n${
        decoder.decode(out.stderr)
      }`,
    );
  }
  return stdout.split("\n").pop() ?? "";
}

/** The Go reference (tests/interop/go/internal/bench) as benchhost prints it. */
interface GoHostResult {
  spawn_to_first_call_ms: number;
  seq_p50_us: number;
  seq_p99_us: number;
  calls_per_sec: number;
  large_p50_ms?: number;
  n: number;
  concurrency: number;
}

type Plugin = { cmd: string; args: string[] };
type Kind = "go" | "typescript" | "floor";

/** One pairing's figures, the same shape for both hosts. */
interface Figures {
  host: "go" | "tether" | "tether-grpc-js" | "floor";
  plugin: Kind;
  seq_p50_us: number;
  seq_p99_us: number;
  calls_per_sec: number;
  /** Spawn to first call, first plugin started by a fresh host process. */
  spawn_first_ms: number;
  /**
   * Spawn to first call, typical: the median over the samples taken in a warm host process (Tether:
   * every spawn but the first of each process; Go: every sample, one fresh benchhost each).
   */
  spawn_typical_ms: number;
  spawn_samples_ms: number[];
  /** Tether host only: CPU per sequential call, host process and plugin process, microseconds. */
  seq_host_cpu_us?: number;
  seq_plugin_cpu_us?: number;
}

async function benchhost(args: string[], plugin: Plugin, what: string): Promise<GoHostResult> {
  const bin = await goFixture("benchhost");
  return JSON.parse(
    await run(bin, [
      "-automtls=true",
      "-concurrency",
      String(config.concurrency),
      ...args,
      "--",
      plugin.cmd,
      ...plugin.args,
    ], what),
  );
}

/** Spawn samples from fresh Go hosts (no latency or throughput phase). */
async function goSpawns(plugin: Plugin, count: number, what: string): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const one = await benchhost(
      ["-n", "1", "-warmup", "0", "-duration", "0s"],
      plugin,
      `benchhost spawn -> ${what}`,
    );
    samples.push(one.spawn_to_first_call_ms);
  }
  return samples;
}

async function goHost(plugin: Plugin, kind: Kind): Promise<Figures> {
  const full = await benchhost(
    [
      "-n",
      String(config.n),
      "-warmup",
      String(config.warmup),
      "-duration",
      `${config.durationS * 1000}ms`,
    ],
    plugin,
    `benchhost -> ${kind} plugin`,
  );
  const samples = [
    full.spawn_to_first_call_ms,
    ...await goSpawns(plugin, config.spawnRuns, `${kind} plugin`),
  ];
  return {
    host: "go",
    plugin: kind,
    seq_p50_us: full.seq_p50_us,
    seq_p99_us: full.seq_p99_us,
    calls_per_sec: full.calls_per_sec,
    spawn_first_ms: full.spawn_to_first_call_ms,
    spawn_typical_ms: round(median(samples)),
    spawn_samples_ms: samples,
  };
}

async function tetherHostRun(plugin: Plugin, args: string[], what: string): Promise<TetherHostResult> {
  return JSON.parse(
    await run(Deno.execPath(), [
      "run",
      "-A",
      "--config",
      `${repoRoot}/deno.json`,
      `${repoRoot}/bench/tether_host.ts`,
      "--concurrency",
      String(config.concurrency),
      ...args,
      "--",
      plugin.cmd,
      ...plugin.args,
    ], what),
  );
}

async function tetherHost(plugin: Plugin, kind: Kind, channel: "lean" | "grpc-js"): Promise<Figures> {
  const result = await tetherHostRun(plugin, [
    "--channel",
    channel,
    "--n",
    String(config.n),
    "--warmup",
    String(config.warmup),
    "--duration",
    String(config.durationS),
    "--spawn-runs",
    String(config.spawnRuns),
  ], `Tether host (${channel}) -> ${kind} plugin`);
  return {
    host: channel === "lean" ? "tether" : "tether-grpc-js",
    plugin: kind,
    seq_p50_us: result.seq_p50_us,
    seq_p99_us: result.seq_p99_us,
    calls_per_sec: result.calls_per_sec,
    spawn_first_ms: result.spawn_to_first_call_ms,
    spawn_typical_ms: result.spawn_to_first_call_warm_ms,
    spawn_samples_ms: [result.spawn_to_first_call_ms, ...result.spawn_samples_ms],
    seq_host_cpu_us: result.seq_host_cpu_us,
    seq_plugin_cpu_us: result.seq_plugin_cpu_us,
  };
}

/** The floor host (bench/floor/host.ts): one JSON object, its mode chosen by `args`. */
async function floorHostRun<T = TetherHostResult>(
  plugin: Plugin,
  args: string[],
  what: string,
  hostFlags: string[] = [],
  env?: Record<string, string>,
): Promise<T> {
  return JSON.parse(
    await run(
      Deno.execPath(),
      [
        "run",
        ...hostFlags,
        "--no-config",
        "-A",
        `${repoRoot}/bench/floor/host.ts`,
        "--certs",
        floorCerts,
        ...args,
        "--",
        plugin.cmd,
        ...plugin.args,
      ],
      what,
      env,
    ),
  );
}

async function floorHost(plugin: Plugin, kind: Kind): Promise<Figures> {
  const result = await floorHostRun(plugin, [
    "--concurrency",
    String(config.concurrency),
    "--n",
    String(config.n),
    "--warmup",
    String(config.warmup),
    "--duration",
    String(config.durationS),
    "--spawn-runs",
    String(config.spawnRuns),
  ], `floor host -> ${kind} plugin`);
  return {
    host: "floor",
    plugin: kind,
    seq_p50_us: result.seq_p50_us,
    seq_p99_us: result.seq_p99_us,
    calls_per_sec: result.calls_per_sec,
    spawn_first_ms: result.spawn_to_first_call_ms,
    spawn_typical_ms: result.spawn_to_first_call_warm_ms,
    spawn_samples_ms: [result.spawn_to_first_call_ms, ...result.spawn_samples_ms],
    seq_host_cpu_us: result.seq_host_cpu_us,
  };
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

async function versionOf(cmd: string, args: string[]): Promise<string> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output();
    return decoder.decode(out.stdout).trim();
  } catch {
    return "unknown";
  }
}

function goModVersion(module: string): string {
  const gomod = Deno.readTextFileSync(`${goModule}/go.mod`);
  return new RegExp(`${module.replaceAll(".", "\\.")} (v[^\\s]+)`).exec(gomod)?.[1] ?? "unknown";
}

/** Medians over the rounds; spawn samples pooled (the Tether host's cold first spawns kept apart). */
function aggregate(all: Figures[]): Figures {
  const typical = all.flatMap((f) => f.host === "go" ? f.spawn_samples_ms : f.spawn_samples_ms.slice(1));
  return {
    host: all[0].host,
    plugin: all[0].plugin,
    seq_p50_us: round(median(all.map((f) => f.seq_p50_us))),
    seq_p99_us: round(median(all.map((f) => f.seq_p99_us))),
    calls_per_sec: round(median(all.map((f) => f.calls_per_sec))),
    spawn_first_ms: round(median(all.map((f) => f.spawn_first_ms))),
    spawn_typical_ms: round(median(typical.length ? typical : all.map((f) => f.spawn_first_ms))),
    spawn_samples_ms: all.flatMap((f) => f.spawn_samples_ms),
    ...(all[0].seq_host_cpu_us === undefined ? {} : {
      seq_host_cpu_us: round(median(all.map((f) => f.seq_host_cpu_us ?? NaN))),
    }),
    ...(all[0].seq_plugin_cpu_us === undefined ? {} : {
      seq_plugin_cpu_us: round(median(all.map((f) => f.seq_plugin_cpu_us ?? NaN))),
    }),
  };
}

type Ratios = { p50: number; p99: number; throughput: number; spawn_first: number; spawn_typical: number };
function ratios(f: Figures, base: Figures): Ratios {
  return {
    p50: round(f.seq_p50_us / base.seq_p50_us),
    p99: round(f.seq_p99_us / base.seq_p99_us),
    throughput: round(f.calls_per_sec / base.calls_per_sec),
    spawn_first: round(f.spawn_first_ms / base.spawn_first_ms),
    spawn_typical: round(f.spawn_typical_ms / base.spawn_typical_ms),
  };
}

// ---------------------------------------------------------------------------

const started = performance.now();
const loadAtStart = Deno.loadavg();
console.error("building the Go fixtures (tests/interop/go) and bundling the TypeScript plugin ...");
const kvplugin = await goFixture("kvplugin");
await goFixture("benchhost");
const goPlugin: Plugin = { cmd: kvplugin, args: [] };
const tsPlugin = denoPlugin("examples/kv/plugin.ts");
/** The same plugin on grpc-js's server: the plugin side's "before", in the same run. */
const tsGrpcJsServerPlugin = denoPlugin("bench/fixtures/kv_grpcjs_server.ts");
const scratch = await Deno.makeTempDir({ prefix: "tether-bench-" });
/** The floors' certificates, made once before any timing (a floor is a lower bound). */
const floorCerts = `${scratch}/floor-certs`;
await writeFloorCertificates(floorCerts);
const floorPlugin: Plugin = {
  cmd: Deno.execPath(),
  args: [
    "run",
    "--no-config",
    "--no-prompt",
    "-A",
    `${repoRoot}/bench/floor/plugin.ts`,
    "--certs",
    floorCerts,
  ],
};
/** The bare spawn floor (bench/floor/bare.ts): deno's start alone, and with node:http2 loaded and listening. */
const bareDeno: Plugin = {
  cmd: Deno.execPath(),
  args: ["run", "--no-config", "--no-prompt", "-A", `${repoRoot}/bench/floor/bare.ts`],
};
const bareDenoHttp2: Plugin = { cmd: bareDeno.cmd, args: [...bareDeno.args, "--http2"] };
const bundle = `${scratch}/kv.bundle.js`;
await bundlePlugin(`${repoRoot}/examples/kv/plugin.ts`, bundle, `${repoRoot}/deno.json`);
const tsBundled: Plugin = { cmd: Deno.execPath(), args: ["run", "--no-prompt", "-A", bundle] };
/** Deno's opt-in trim on SIGUSR2 (glibc's malloc_trim(0) and a V8 GC), for the "trimmed" memory readings. */
const TRIM_ENV = { ...Deno.env.toObject(), DENO_USR2_MEMORY_TRIM: "1" };
/** V8 flags for a small plugin heap (see docs/performance.md, "Hand runs"). */
const smallHeapFlags = "--v8-flags=--max-semi-space-size=1";
const tsBundledSmall: Plugin = {
  cmd: Deno.execPath(),
  args: ["run", "--no-prompt", "-A", smallHeapFlags, bundle],
};

try {
  const pairings: [string, string, () => Promise<Figures>][] = [
    ["go_host_go_plugin", "Go host -> Go plugin (reference)", () => goHost(goPlugin, "go")],
    ["tether_host_go_plugin", "Tether host -> Go plugin", () => tetherHost(goPlugin, "go", "lean")],
    [
      "tether_grpcjs_host_go_plugin",
      "  same, grpc-js channel (before)",
      () => tetherHost(goPlugin, "go", "grpc-js"),
    ],
    ["floor_host_go_plugin", "  floor: Deno only (bench/floor)", () => floorHost(goPlugin, "go")],
    ["go_host_ts_plugin", "Go host -> TypeScript plugin", () => goHost(tsPlugin, "typescript")],
    [
      "go_host_ts_grpcjs_server_plugin",
      "  same, grpc-js server (before)",
      () => goHost(tsGrpcJsServerPlugin, "typescript"),
    ],
    ["go_host_floor_plugin", "  floor: Deno only (bench/floor)", () => goHost(floorPlugin, "floor")],
    [
      "tether_host_ts_plugin",
      "Tether host -> TypeScript plugin",
      () => tetherHost(tsPlugin, "typescript", "lean"),
    ],
    ["floor_host_floor_plugin", "  floor: Deno only (bench/floor)", () => floorHost(floorPlugin, "floor")],
  ];
  const keys = pairings.map(([key]) => key);
  const rounds: Record<string, Figures[]> = Object.fromEntries(keys.map((k) => [k, []]));
  const large: Record<string, number[]> = {
    go_host: [],
    tether_host: [],
    tether_grpcjs_host: [],
    floor_host: [],
  };
  /** Spawn to handshake line (no call): the Go plugin, bare deno, deno with node:http2 loaded and listening. */
  const lineSpawns: Record<string, number[]> = { go_plugin: [], bare_deno: [], bare_deno_http2: [] };
  const bundledSpawns: Record<string, number[]> = { go_host: [], tether_host: [] };
  const benchplugin: Plugin = { cmd: await goFixture("benchplugin"), args: [] };
  const largeArgs = ["--n", "1", "--warmup", "0", "--duration", "0", "--spawn-runs", "0"];
  const largeFlags = ["--large-bytes", String(config.largeBytes), "--large-n", String(config.largeN)];
  for (let r = 1; r <= config.rounds; r++) {
    for (const [key, label, measure] of pairings) {
      console.error(`round ${r}/${config.rounds}: ${label.trim()} ...`);
      rounds[key].push(await measure());
    }
    console.error(`round ${r}/${config.rounds}: large answers (${config.largeBytes} bytes) ...`);
    const goLarge = await benchhost(
      [
        "-n",
        "1",
        "-warmup",
        "0",
        "-duration",
        "0s",
        `-large-bytes=${config.largeBytes}`,
        `-large-n=${config.largeN}`,
      ],
      benchplugin,
      "benchhost large answers",
    );
    large.go_host.push(goLarge.large_p50_ms!);
    for (const channel of ["lean", "grpc-js"] as const) {
      const result = await tetherHostRun(
        benchplugin,
        ["--channel", channel, ...largeArgs, ...largeFlags],
        `Tether host (${channel}) large answers`,
      );
      large[channel === "lean" ? "tether_host" : "tether_grpcjs_host"].push(result.large_p50_ms!);
    }
    const floorLarge = await floorHostRun(
      benchplugin,
      [...largeArgs, ...largeFlags],
      "floor host large answers",
    );
    large.floor_host.push(floorLarge.large_p50_ms!);
    console.error(`round ${r}/${config.rounds}: spawn of the bundled TypeScript plugin ...`);
    bundledSpawns.go_host.push(...await goSpawns(tsBundled, config.spawnRuns + 1, "bundled TS plugin"));
    const bundled = await tetherHostRun(
      tsBundled,
      ["--n", "1", "--warmup", "0", "--duration", "0", "--spawn-runs", String(config.spawnRuns)],
      "Tether host -> bundled TS plugin (spawn)",
    );
    bundledSpawns.tether_host.push(...bundled.spawn_samples_ms);
    console.error(`round ${r}/${config.rounds}: spawn floors (to the handshake line) ...`);
    for (
      const [key, plugin] of [["go_plugin", goPlugin], ["bare_deno", bareDeno], [
        "bare_deno_http2",
        bareDenoHttp2,
      ]] as const
    ) {
      const lines = await floorHostRun<{ samples_ms: number[] }>(
        plugin,
        ["--line-only", String(config.spawnRuns + 1)],
        `spawn to handshake line (${key})`,
      );
      lineSpawns[key].push(...lines.samples_ms);
    }
  }

  console.error("memory: one plugin of each kind, 2,000 calls each ...");
  const memory = async (
    ts: Plugin,
    channel = "lean",
    hostFlags: string[] = [],
    trim = false,
    memoryFlags: string[] = [],
  ): Promise<MemoryResult> =>
    JSON.parse(
      await run(
        Deno.execPath(),
        [
          "run",
          ...hostFlags,
          "-A",
          "--config",
          `${repoRoot}/deno.json`,
          `${repoRoot}/bench/memory.ts`,
          "--calls",
          String(config.memoryCalls),
          "--channel",
          channel,
          ...(trim ? ["--trim"] : []),
          ...memoryFlags,
          "--go",
          kvplugin,
          "--ts",
          ts.cmd,
          ...ts.args,
        ],
        "bench/memory.ts",
        trim ? TRIM_ENV : undefined,
      ),
    );
  const memoryPlain = await memory(tsPlugin);
  const memoryBundled = await memory(tsBundled);
  const memorySmall = await memory(tsBundledSmall);
  const memoryGrpcJs = await memory(tsPlugin, "grpc-js");
  // The host is the application's process: its V8 flags are the application's choice. Measured for reference.
  const memoryHostSmall = await memory(tsPlugin, "lean", [smallHeapFlags]);
  // Deno's opt-in memory trim (DENO_USR2_MEMORY_TRIM=1, then SIGUSR2) in host and plugin before the idle readings.
  const memoryTrim = await memory(tsPlugin, "lean", [], true);
  // The plugin as Tether launches it (sandboxed, memoryTrim's default: SIGUSR2 from the host once idle), and
  // the same launch with memoryTrim: false.
  const tsLaunched: Plugin = { cmd: `${repoRoot}/examples/kv/plugin.ts`, args: [] };
  const memoryLaunched = await memory(tsLaunched);
  const memoryLaunchedUntrimmed = await memory(tsLaunched, "lean", [], false, ["--no-memory-trim"]);
  // The floors: the floor host's RSS with the Go plugin as its first plugin, then the floor plugin's.
  type FloorMemory = Omit<MemoryResult, "bare_deno_kib" | "idle_ms">;
  const memoryFloor: FloorMemory = await floorHostRun(
    floorPlugin,
    ["--memory", "--calls", String(config.memoryCalls), "--go", kvplugin],
    "floor host memory",
  );
  const memoryFloorTrim: FloorMemory = await floorHostRun(
    floorPlugin,
    ["--memory", "--trim", "--calls", String(config.memoryCalls), "--go", kvplugin],
    "floor host memory (trimmed)",
    [],
    TRIM_ENV,
  );
  // Both with V8's young generation capped (the flag Tether passes to `runtime: deno` plugins): the best floor.
  const memoryFloorSmall: FloorMemory = await floorHostRun(
    { cmd: floorPlugin.cmd, args: [floorPlugin.args[0], smallHeapFlags, ...floorPlugin.args.slice(1)] },
    ["--memory", "--calls", String(config.memoryCalls), "--go", kvplugin],
    "floor host memory (small heap)",
    [smallHeapFlags],
  );

  console.error(
    `notifier: ${config.events} fs events per mode and round (${config.rounds} rounds): PluginManager, SFTPGo's sender ...`,
  );
  const notifier: NotifierResult = JSON.parse(
    await run(Deno.execPath(), [
      "run",
      "-A",
      "--config",
      `${repoRoot}/deno.json`,
      `${repoRoot}/bench/notifier.ts`,
      "--events",
      String(config.events),
      // Interleaved rounds, each mode's median: one round of one mode is at the mercy of a busy moment.
      "--rounds",
      String(config.rounds),
    ], "bench/notifier.ts"),
  );

  const results: Record<string, Figures> = Object.fromEntries(keys.map((k) => [k, aggregate(rounds[k])]));
  const ref = results.go_host_go_plugin;
  const versusGoHostGoPlugin: Record<string, Ratios> = Object.fromEntries(
    keys.slice(1).map((k) => [k, ratios(results[k], ref)]),
  );
  const largeMedians = Object.fromEntries(Object.entries(large).map(([k, v]) => [k, round(median(v))]));
  const bundledSpawn = {
    go_host_ms: round(median(bundledSpawns.go_host)),
    tether_host_ms: round(median(bundledSpawns.tether_host)),
    samples_ms: bundledSpawns,
  };
  const mib = (kib: number) => round(kib / 1024, 1);
  const memoryFigures = {
    calls: config.memoryCalls,
    go_plugin_mib: mib(memoryPlain.go_plugin.rss_kib),
    ts_plugin_mib: mib(memoryPlain.ts_plugin.rss_kib),
    ts_plugin_bundled_mib: mib(memoryBundled.ts_plugin.rss_kib),
    ts_plugin_bundled_small_heap_mib: mib(memorySmall.ts_plugin.rss_kib),
    small_heap_flags: smallHeapFlags,
    bare_deno_mib: mib(memoryPlain.bare_deno_kib),
    host_loaded_added_mib: mib(memoryPlain.host_loaded_kib - memoryPlain.host_baseline_kib),
    host_first_plugin_added_mib: mib(memoryPlain.host_first_plugin_kib - memoryPlain.host_loaded_kib),
    // The anonymous part alone: what is not the deno executable's own (shared, file-backed) pages.
    go_plugin_anon_mib: mib(memoryPlain.go_plugin.anon_kib),
    ts_plugin_anon_mib: mib(memoryPlain.ts_plugin.anon_kib),
    ts_plugin_file_mib: mib(memoryPlain.ts_plugin.file_kib),
    ts_plugin_bundled_small_heap_anon_mib: mib(memorySmall.ts_plugin.anon_kib),
    host_first_plugin_added_anon_mib: mib(
      memoryPlain.host_anon_kib.first_plugin - memoryPlain.host_anon_kib.loaded,
    ),
    host_first_plugin_added_grpcjs_mib: mib(
      memoryGrpcJs.host_first_plugin_kib - memoryGrpcJs.host_loaded_kib,
    ),
    host_first_plugin_added_small_heap_mib: mib(
      memoryHostSmall.host_first_plugin_kib - memoryHostSmall.host_loaded_kib,
    ),
    ts_plugin_trimmed_mib: mib(memoryTrim.ts_plugin.rss_kib),
    ts_plugin_launched_mib: mib(memoryLaunched.ts_plugin.rss_kib),
    ts_plugin_launched_untrimmed_mib: mib(memoryLaunchedUntrimmed.ts_plugin.rss_kib),
    host_first_plugin_added_trimmed_mib: mib(memoryTrim.host_first_plugin_kib - memoryTrim.host_loaded_kib),
    raw: {
      plain: memoryPlain,
      bundled: memoryBundled,
      bundled_small_heap: memorySmall,
      grpcjs_channel: memoryGrpcJs,
      host_small_heap: memoryHostSmall,
      trimmed: memoryTrim,
      launched: memoryLaunched,
      launched_untrimmed: memoryLaunchedUntrimmed,
    },
  };
  const floorMemory = {
    floor_plugin_mib: mib(memoryFloor.ts_plugin.rss_kib),
    floor_plugin_anon_mib: mib(memoryFloor.ts_plugin.anon_kib),
    floor_plugin_file_mib: mib(memoryFloor.ts_plugin.file_kib),
    floor_host_loaded_added_mib: mib(memoryFloor.host_loaded_kib - memoryFloor.host_baseline_kib),
    floor_host_first_plugin_added_mib: mib(memoryFloor.host_first_plugin_kib - memoryFloor.host_loaded_kib),
    floor_host_first_plugin_added_anon_mib: mib(
      memoryFloor.host_anon_kib.first_plugin - memoryFloor.host_anon_kib.loaded,
    ),
    floor_plugin_small_heap_mib: mib(memoryFloorSmall.ts_plugin.rss_kib),
    floor_plugin_small_heap_anon_mib: mib(memoryFloorSmall.ts_plugin.anon_kib),
    floor_host_first_plugin_added_small_heap_mib: mib(
      memoryFloorSmall.host_first_plugin_kib - memoryFloorSmall.host_loaded_kib,
    ),
    floor_plugin_trimmed_mib: mib(memoryFloorTrim.ts_plugin.rss_kib),
    floor_plugin_trimmed_anon_mib: mib(memoryFloorTrim.ts_plugin.anon_kib),
    floor_host_first_plugin_added_trimmed_mib: mib(
      memoryFloorTrim.host_first_plugin_kib - memoryFloorTrim.host_loaded_kib,
    ),
    raw: { plain: memoryFloor, small_heap: memoryFloorSmall, trimmed: memoryFloorTrim },
  };
  const lineSpawn = {
    go_plugin_ms: round(median(lineSpawns.go_plugin)),
    bare_deno_ms: round(median(lineSpawns.bare_deno)),
    bare_deno_http2_ms: round(median(lineSpawns.bare_deno_http2)),
    samples_ms: lineSpawns,
  };
  const vf = versusGoHostGoPlugin;
  /** The targets' quantities for the floors of the same run: the best any Deno host or plugin can reach here. */
  const floorTargets = {
    tether_host_go_plugin_p50: vf.floor_host_go_plugin.p50,
    tether_host_go_plugin_throughput: vf.floor_host_go_plugin.throughput,
    go_host_ts_plugin_p50: vf.go_host_floor_plugin.p50,
    go_host_ts_plugin_throughput: vf.go_host_floor_plugin.throughput,
    tether_host_ts_plugin_p50: vf.floor_host_floor_plugin.p50,
    tether_host_ts_plugin_throughput: vf.floor_host_floor_plugin.throughput,
    ts_spawn_vs_go_spawn_go_host: round(results.go_host_floor_plugin.spawn_typical_ms / ref.spawn_typical_ms),
    ts_spawn_vs_go_spawn_tether_host: round(
      results.floor_host_floor_plugin.spawn_typical_ms / results.floor_host_go_plugin.spawn_typical_ms,
    ),
    bare_deno_line_vs_go_plugin_line: round(lineSpawn.bare_deno_ms / lineSpawn.go_plugin_ms),
    bare_deno_http2_line_vs_go_plugin_line: round(lineSpawn.bare_deno_http2_ms / lineSpawn.go_plugin_ms),
    large_answers_vs_go_host: round(largeMedians.floor_host / largeMedians.go_host),
    ts_plugin_idle_rss_mib: floorMemory.floor_plugin_mib,
    host_first_plugin_added_mib: floorMemory.floor_host_first_plugin_added_mib,
    notifier_unordered_events_per_s: notifier.sftpgo_floor.events_per_s,
  };
  const targets = {
    tether_host_go_plugin_p50: versusGoHostGoPlugin.tether_host_go_plugin.p50,
    tether_host_go_plugin_throughput: versusGoHostGoPlugin.tether_host_go_plugin.throughput,
    go_host_ts_plugin_p50: versusGoHostGoPlugin.go_host_ts_plugin.p50,
    go_host_ts_plugin_throughput: versusGoHostGoPlugin.go_host_ts_plugin.throughput,
    tether_host_ts_plugin_p50: versusGoHostGoPlugin.tether_host_ts_plugin.p50,
    tether_host_ts_plugin_throughput: versusGoHostGoPlugin.tether_host_ts_plugin.throughput,
    ts_spawn_vs_go_spawn_go_host: round(results.go_host_ts_plugin.spawn_typical_ms / ref.spawn_typical_ms),
    ts_spawn_vs_go_spawn_tether_host: round(
      results.tether_host_ts_plugin.spawn_typical_ms / results.tether_host_go_plugin.spawn_typical_ms,
    ),
    bundled_ts_spawn_vs_go_spawn_go_host: round(bundledSpawn.go_host_ms / ref.spawn_typical_ms),
    bundled_ts_spawn_vs_go_spawn_tether_host: round(
      bundledSpawn.tether_host_ms / results.tether_host_go_plugin.spawn_typical_ms,
    ),
    large_answers_vs_go_host: round(largeMedians.tether_host / largeMedians.go_host),
    large_answers_grpcjs_vs_go_host: round(largeMedians.tether_grpcjs_host / largeMedians.go_host),
    ts_plugin_idle_rss_mib: memoryFigures.ts_plugin_mib,
    host_first_plugin_added_mib: memoryFigures.host_first_plugin_added_mib,
    notifier_ordered_events_per_s: notifier.ordered.events_per_s,
    notifier_unordered_events_per_s: notifier.unordered.events_per_s,
    notifier_unordered_vs_sftpgo: round(notifier.unordered.events_per_s / notifier.sftpgo.events_per_s),
    notifier_sftpgo_events_per_s: notifier.sftpgo.events_per_s,
    notifier_unordered_direct_events_per_s: notifier.unordered_direct.events_per_s,
  };

  // --- table -----------------------------------------------------------------

  const us = (x: number) => `${x >= 1000 ? Math.round(x).toLocaleString("en-US") : x.toFixed(0)} us`;
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  const cps = (x: number) => `${Math.round(x).toLocaleString("en-US")}/s`;
  const pad = (s: string, n: number) => s.padStart(n);
  const x = (r: number) => `${r.toFixed(r < 1 ? 2 : 1)}x`;

  const lines: string[] = [];
  lines.push("");
  lines.push(
    `Tether vs go-plugin: AutoMTLS, unix socket, Get of a 64-byte value; ${config.n} sequential calls after ` +
      `${config.warmup} warmup, ${config.concurrency} in flight for ${config.durationS} s; spawn = start to ` +
      `first answer; median of ${config.rounds} round(s), ${
        config.rounds * (config.spawnRuns + 1)
      } spawns each`,
  );
  lines.push("");
  lines.push(
    `${"".padEnd(36)}${pad("p50", 10)}${pad("p99", 10)}${pad("throughput", 12)}${pad("spawn 1st", 11)}${
      pad("spawn typ", 11)
    }`,
  );
  for (const [key, label] of pairings) {
    const f = results[key];
    lines.push(
      `${label.padEnd(36)}${pad(us(f.seq_p50_us), 10)}${pad(us(f.seq_p99_us), 10)}${
        pad(cps(f.calls_per_sec), 12)
      }${pad(ms(f.spawn_first_ms), 11)}${pad(ms(f.spawn_typical_ms), 11)}`,
    );
  }
  lines.push("");
  lines.push("Ratios against Go host -> Go plugin (latency and spawn: x slower; throughput: fraction):");
  for (const [key, label] of pairings.slice(1)) {
    const r = versusGoHostGoPlugin[key];
    lines.push(
      `  ${label.trim().padEnd(34)} p50 ${x(r.p50).padStart(5)}  p99 ${x(r.p99).padStart(5)}  throughput ${
        x(r.throughput).padStart(5)
      }  spawn ${x(r.spawn_typical).padStart(5)} (first ${x(r.spawn_first)})`,
    );
  }
  const lean = results.tether_host_go_plugin;
  const before = results.tether_grpcjs_host_go_plugin;
  lines.push(
    `  CPU per sequential call, Tether host -> Go plugin: host ${
      us(lean.seq_host_cpu_us ?? NaN)
    } on the lean ` +
      `channel, ${us(before.seq_host_cpu_us ?? NaN)} on grpc-js's, floor host ${
        us(results.floor_host_go_plugin.seq_host_cpu_us ?? NaN)
      } (10 ms clock ticks over ${config.n} calls)`,
  );
  lines.push("");
  lines.push(
    `Large answers (${config.largeBytes} bytes, median of ${config.largeN} Gets x ${config.rounds} round(s)): ` +
      `Go host ${ms(largeMedians.go_host)}, Tether host ${ms(largeMedians.tether_host)} (${
        x(targets.large_answers_vs_go_host)
      }), grpc-js channel ${ms(largeMedians.tether_grpcjs_host)} (${
        x(targets.large_answers_grpcjs_vs_go_host)
      })`,
  );
  lines.push(
    `TypeScript plugin spawn vs Go plugin spawn, same host: Go host ${
      x(targets.ts_spawn_vs_go_spawn_go_host)
    }, ` +
      `Tether host ${x(targets.ts_spawn_vs_go_spawn_tether_host)}; bundled (deno bundle): Go host ${
        ms(bundledSpawn.go_host_ms)
      } (${x(targets.bundled_ts_spawn_vs_go_spawn_go_host)}), Tether host ${
        ms(bundledSpawn.tether_host_ms)
      } (${x(targets.bundled_ts_spawn_vs_go_spawn_tether_host)})`,
  );
  lines.push(
    `Memory (RSS after ${config.memoryCalls} calls, idle): Go plugin ${memoryFigures.go_plugin_mib} MiB, ` +
      `TypeScript plugin ${memoryFigures.ts_plugin_mib} MiB (bundled ${memoryFigures.ts_plugin_bundled_mib}, ` +
      `bundled + small heap ${memoryFigures.ts_plugin_bundled_small_heap_mib}), bare deno ${memoryFigures.bare_deno_mib} MiB; ` +
      `host: +${memoryFigures.host_loaded_added_mib} MiB loading Tether, +${memoryFigures.host_first_plugin_added_mib} MiB ` +
      `for its first plugin (grpc-js channel: +${memoryFigures.host_first_plugin_added_grpcjs_mib} MiB; host run with ${smallHeapFlags}: +${memoryFigures.host_first_plugin_added_small_heap_mib} MiB; anonymous memory only: TypeScript plugin ${memoryFigures.ts_plugin_anon_mib} MiB, ` +
      `Go plugin ${memoryFigures.go_plugin_anon_mib} MiB, host +${memoryFigures.host_first_plugin_added_anon_mib} MiB; ` +
      `trimmed (DENO_USR2_MEMORY_TRIM=1, SIGUSR2 after the calls): TypeScript plugin ${memoryFigures.ts_plugin_trimmed_mib} MiB, ` +
      `host +${memoryFigures.host_first_plugin_added_trimmed_mib} MiB; launched by Tether as a deno plugin ` +
      `(sandboxed, idle trim on by default): ${memoryFigures.ts_plugin_launched_mib} MiB, memoryTrim: false ` +
      `${memoryFigures.ts_plugin_launched_untrimmed_mib} MiB)`,
  );
  lines.push(
    `Notifier (${config.events} fs events into one TypeScript plugin, median of ${config.rounds} round(s)): PluginManager unordered ${
      Math.round(notifier.unordered.events_per_s).toLocaleString("en-US")
    }/s (${notifier.unordered.lost} lost, ${
      x(targets.notifier_unordered_vs_sftpgo)
    } SFTPGo's sender); PluginManager ordered ${
      Math.round(notifier.ordered.events_per_s).toLocaleString("en-US")
    }/s (${notifier.ordered.lost} lost); SFTPGo's sender (a goroutine per event) ${
      Math.round(notifier.sftpgo.events_per_s).toLocaleString("en-US")
    }/s (${notifier.sftpgo.lost} lost); Tether host unordered, 250 in flight, outside PluginManager ${
      Math.round(notifier.unordered_direct.events_per_s).toLocaleString("en-US")
    }/s (${notifier.unordered_direct.lost} lost)`,
  );
  const ft = floorTargets;
  lines.push(
    `Floors (bench/floor: Deno's node:http2/node:tls only, no Tether, precomputed bytes; same run): ` +
      `large answers, floor host ${ms(largeMedians.floor_host)} (${
        x(ft.large_answers_vs_go_host)
      } the Go host); ` +
      `spawn to first answer, floor plugin under the Go host ${
        ms(results.go_host_floor_plugin.spawn_typical_ms)
      } (${x(ft.ts_spawn_vs_go_spawn_go_host)} a Go plugin's); ` +
      `spawn to handshake line: Go plugin ${ms(lineSpawn.go_plugin_ms)}, bare deno ${
        ms(lineSpawn.bare_deno_ms)
      } (${x(ft.bare_deno_line_vs_go_plugin_line)}), deno with node:http2 listening ${
        ms(lineSpawn.bare_deno_http2_ms)
      } (${x(ft.bare_deno_http2_line_vs_go_plugin_line)}); ` +
      `memory: floor plugin ${floorMemory.floor_plugin_mib} MiB (anonymous ${floorMemory.floor_plugin_anon_mib}; ` +
      `small heap ${floorMemory.floor_plugin_small_heap_mib}, anonymous ${floorMemory.floor_plugin_small_heap_anon_mib}), ` +
      `floor host +${floorMemory.floor_host_loaded_added_mib} MiB loading node:http2/node:tls, +${floorMemory.floor_host_first_plugin_added_mib} MiB ` +
      `for its first plugin (anonymous +${floorMemory.floor_host_first_plugin_added_anon_mib}; small heap +${floorMemory.floor_host_first_plugin_added_small_heap_mib}); ` +
      `trimmed: floor plugin ${floorMemory.floor_plugin_trimmed_mib} MiB (anonymous ${floorMemory.floor_plugin_trimmed_anon_mib}), ` +
      `floor host +${floorMemory.floor_host_first_plugin_added_trimmed_mib} MiB; ` +
      `notifier: SFTPGo's sender into the floor plugin ${
        Math.round(notifier.sftpgo_floor.events_per_s).toLocaleString("en-US")
      }/s (${notifier.sftpgo_floor.lost} lost)`,
  );
  const elapsedS = (performance.now() - started) / 1000;
  lines.push("");
  lines.push(
    `(${elapsedS.toFixed(0)} s; load average ${loadAtStart[0].toFixed(1)} -> ${
      Deno.loadavg()[0].toFixed(1)
    } on ${navigator.hardwareConcurrency} CPUs; results in ${flags.out}, chart in ${flags.chart})`,
  );
  console.log(lines.join("\n"));

  // --- results.json -----------------------------------------------------------

  const denoJson = JSON.parse(Deno.readTextFileSync(`${repoRoot}/deno.json`));
  const output = {
    date: new Date().toISOString(),
    command: ["deno", "task", "bench", ...Deno.args].join(" "),
    elapsed_s: round(elapsedS, 1),
    environment: {
      os: Deno.build.os,
      arch: Deno.build.arch,
      os_release: Deno.osRelease(),
      cpus: navigator.hardwareConcurrency,
      load_average_start: loadAtStart,
      load_average_end: Deno.loadavg(),
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
      go: await versionOf("go", ["env", "GOVERSION"]),
      go_plugin: goModVersion("github.com/hashicorp/go-plugin"),
      grpc_go: goModVersion("google.golang.org/grpc"),
      grpc_js: String(denoJson.imports?.["@grpc/grpc-js"] ?? "unknown").replace(/^npm:/, ""),
    },
    config: {
      transport: "unix socket",
      tls: "AutoMTLS (ECDSA P-521, both sides)",
      call: "tether.kv.v1.KV/Get, 64-byte value",
      n: config.n,
      warmup: config.warmup,
      concurrency: config.concurrency,
      duration_s: config.durationS,
      rounds: config.rounds,
      spawn_samples_per_round: config.spawnRuns + 1,
      large_bytes: config.largeBytes,
      large_n: config.largeN,
      memory_calls: config.memoryCalls,
      notifier_events: config.events,
      ts_plugin_command: `deno ${tsPlugin.args.join(" ").replaceAll(repoRoot + "/", "")}`,
      ts_plugin_bundled_command:
        "deno run --no-prompt -A kv.bundle.js (deno bundle of examples/kv/plugin.ts)",
    },
    units: {
      seq_p50_us: "us",
      seq_p99_us: "us",
      calls_per_sec: "calls/s",
      spawn_first_ms: "ms",
      spawn_typical_ms: "ms",
      large_answers: "ms per Get",
      memory: "MiB (VmRSS)",
      notifier: "events/s",
    },
    results,
    rounds,
    large_answers: { ...largeMedians, bytes: config.largeBytes, samples_ms: large },
    bundled_ts_plugin_spawn: bundledSpawn,
    memory: memoryFigures,
    notifier,
    floors: {
      what: "bench/floor: the same workloads with Tether's code removed, only Deno's node:http2/node:tls " +
        "left; requests and answers precomputed, certificates made before the run",
      plugin_command: "deno run --no-config --no-prompt -A bench/floor/plugin.ts --certs DIR",
      host_command: "deno run --no-config -A bench/floor/host.ts --certs DIR ... -- <plugin>",
      spawn_to_line: lineSpawn,
      memory: floorMemory,
      targets: floorTargets,
    },
    ratios: {
      versus_go_host_go_plugin: versusGoHostGoPlugin,
      tether_host_versus_go_host: {
        go_plugin: ratios(results.tether_host_go_plugin, results.go_host_go_plugin),
        ts_plugin: ratios(results.tether_host_ts_plugin, results.go_host_ts_plugin),
      },
      lean_versus_grpcjs_channel: ratios(results.tether_host_go_plugin, results.tether_grpcjs_host_go_plugin),
      ts_plugin_versus_go_plugin: {
        go_host: ratios(results.go_host_ts_plugin, results.go_host_go_plugin),
        tether_host: ratios(results.tether_host_ts_plugin, results.tether_host_go_plugin),
      },
    },
    targets,
  };
  Deno.writeTextFileSync(flags.out, JSON.stringify(output, null, 2) + "\n");
  Deno.writeTextFileSync(flags.chart, renderChart(JSON.parse(Deno.readTextFileSync(flags.out))));
} finally {
  await Deno.remove(scratch, { recursive: true });
}
