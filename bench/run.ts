/**
 * `deno task bench`: Tether against go-plugin, in one run. Not a test: it
 * measures, prints a table with ratios and writes bench/results.json.
 *
 * Every pairing uses AutoMTLS over a unix socket and the KV plugin's `Get`
 * of a 64-byte value:
 *
 * | host                    | plugin                        | measured by            |
 * | ----------------------- | ----------------------------- | ---------------------- |
 * | Go (go-plugin) -- ref   | Go (bin/kvplugin)             | bin/benchhost          |
 * | Tether                  | Go (bin/kvplugin)             | bench/tether_host.ts   |
 * | Go (go-plugin)          | TypeScript (examples/kv)      | bin/benchhost          |
 * | Tether                  | TypeScript (examples/kv)      | bench/tether_host.ts   |
 *
 * Each measurement runs in its own host process, one after the other; the
 * four pairings are measured `--rounds` times, interleaved, and each figure
 * is the median over the rounds (spawn samples are pooled).
 *
 *   deno task bench [--rounds 3] [--n 3000] [--warmup 200] [--concurrency 16]
 *                   [--duration 3] [--spawn-runs 3] [--out bench/results.json] [--quick]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { denoPlugin, goFixture, goModule, repoRoot } from "../tests/helpers.ts";
import { median, type TetherHostResult } from "./tether_host.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    n: { type: "string" },
    warmup: { type: "string" },
    concurrency: { type: "string" },
    duration: { type: "string" },
    "spawn-runs": { type: "string" },
    rounds: { type: "string" },
    out: { type: "string", default: `${repoRoot}/bench/results.json` },
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
  --out FILE       where to write the JSON results (default bench/results.json)
  --quick          smaller defaults, for a smoke run (~10 s)

The default run takes about 70 s on a 2-core machine.`);
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
};

const decoder = new TextDecoder();

async function run(cmd: string, args: string[], what: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).output();
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
  n: number;
  concurrency: number;
}

/** One pairing's figures, the same shape for both hosts. */
interface Figures {
  host: "go" | "tether";
  plugin: "go" | "typescript";
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
}

async function goHost(plugin: { cmd: string; args: string[] }, kind: Figures["plugin"]): Promise<Figures> {
  const benchhost = await goFixture("benchhost");
  const common = ["-automtls=true", "-concurrency", String(config.concurrency)];
  const full: GoHostResult = JSON.parse(
    await run(benchhost, [
      ...common,
      "-n",
      String(config.n),
      "-warmup",
      String(config.warmup),
      "-duration",
      `${config.durationS * 1000}ms`,
      "--",
      plugin.cmd,
      ...plugin.args,
    ], `benchhost -> ${kind} plugin`),
  );
  // More spawn samples: one fresh benchhost per sample, no latency or throughput phase.
  const samples = [full.spawn_to_first_call_ms];
  for (let i = 0; i < config.spawnRuns; i++) {
    const one: GoHostResult = JSON.parse(
      await run(benchhost, [
        ...common,
        "-n",
        "1",
        "-warmup",
        "0",
        "-duration",
        "0s",
        "--",
        plugin.cmd,
        ...plugin.args,
      ], `benchhost spawn -> ${kind} plugin`),
    );
    samples.push(one.spawn_to_first_call_ms);
  }
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

async function tetherHost(
  plugin: { cmd: string; args: string[] },
  kind: Figures["plugin"],
): Promise<Figures> {
  const result: TetherHostResult = JSON.parse(
    await run(Deno.execPath(), [
      "run",
      "-A",
      "--config",
      `${repoRoot}/deno.json`,
      `${repoRoot}/bench/tether_host.ts`,
      "--n",
      String(config.n),
      "--warmup",
      String(config.warmup),
      "--concurrency",
      String(config.concurrency),
      "--duration",
      String(config.durationS),
      "--spawn-runs",
      String(config.spawnRuns),
      "--",
      plugin.cmd,
      ...plugin.args,
    ], `Tether host -> ${kind} plugin`),
  );
  return {
    host: "tether",
    plugin: kind,
    seq_p50_us: result.seq_p50_us,
    seq_p99_us: result.seq_p99_us,
    calls_per_sec: result.calls_per_sec,
    spawn_first_ms: result.spawn_to_first_call_ms,
    spawn_typical_ms: result.spawn_to_first_call_warm_ms,
    spawn_samples_ms: [result.spawn_to_first_call_ms, ...result.spawn_samples_ms],
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

// ---------------------------------------------------------------------------

const started = performance.now();
const loadAtStart = Deno.loadavg();
console.error("building the Go fixtures (tests/interop/go) ...");
const kvplugin = await goFixture("kvplugin");
await goFixture("benchhost");
const goPlugin = { cmd: kvplugin, args: [] as string[] };
const tsPlugin = denoPlugin("examples/kv/plugin.ts");

const pairings: [string, () => Promise<Figures>][] = [
  ["Go host -> Go plugin (reference)", () => goHost(goPlugin, "go")],
  ["Tether host -> Go plugin", () => tetherHost(goPlugin, "go")],
  ["Go host -> TypeScript plugin", () => goHost(tsPlugin, "typescript")],
  ["Tether host -> TypeScript plugin", () => tetherHost(tsPlugin, "typescript")],
];
const keys = ["go_host_go_plugin", "tether_host_go_plugin", "go_host_ts_plugin", "tether_host_ts_plugin"];
const rounds: Record<string, Figures[]> = Object.fromEntries(keys.map((k) => [k, []]));
for (let r = 1; r <= config.rounds; r++) {
  for (const [i, [label, measure]] of pairings.entries()) {
    console.error(`round ${r}/${config.rounds}: measuring ${label} ...`);
    rounds[keys[i]].push(await measure());
  }
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
  };
}
const results: Record<string, Figures> = Object.fromEntries(keys.map((k) => [k, aggregate(rounds[k])]));
const ref = results.go_host_go_plugin;

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
const versusGoHostGoPlugin: Record<string, Ratios> = {
  tether_host_go_plugin: ratios(results.tether_host_go_plugin, ref),
  go_host_ts_plugin: ratios(results.go_host_ts_plugin, ref),
  tether_host_ts_plugin: ratios(results.tether_host_ts_plugin, ref),
};
const tetherVsGoHost = {
  go_plugin: ratios(results.tether_host_go_plugin, results.go_host_go_plugin),
  ts_plugin: ratios(results.tether_host_ts_plugin, results.go_host_ts_plugin),
};

// --- table -------------------------------------------------------------------

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
  `${"".padEnd(34)}${pad("p50", 10)}${pad("p99", 10)}${pad("throughput", 12)}${pad("spawn 1st", 11)}${
    pad("spawn typ", 11)
  }`,
);
for (const [i, [label]] of pairings.entries()) {
  const f = results[keys[i]];
  lines.push(
    `${label.padEnd(34)}${pad(us(f.seq_p50_us), 10)}${pad(us(f.seq_p99_us), 10)}${
      pad(cps(f.calls_per_sec), 12)
    }${pad(ms(f.spawn_first_ms), 11)}${pad(ms(f.spawn_typical_ms), 11)}`,
  );
}
lines.push("");
lines.push("Ratios against Go host -> Go plugin (latency and spawn: x slower; throughput: fraction):");
for (
  const [key, label] of [
    ["tether_host_go_plugin", "Tether host -> Go plugin"],
    ["go_host_ts_plugin", "Go host -> TypeScript plugin"],
    ["tether_host_ts_plugin", "Tether host -> TypeScript plugin"],
  ] as const
) {
  const f = results[key];
  const r = versusGoHostGoPlugin[key];
  lines.push(
    `  ${label}: p50 ${us(f.seq_p50_us)} (${x(r.p50)} Go host), p99 ${us(f.seq_p99_us)} (${x(r.p99)}), ` +
      `${cps(f.calls_per_sec)} (${x(r.throughput)}), spawn ${ms(f.spawn_typical_ms)} (${
        x(r.spawn_typical)
      }; ` +
      `first ${ms(f.spawn_first_ms)}, ${x(r.spawn_first)})`,
  );
}
lines.push(
  `  Tether host vs Go host, same TypeScript plugin: p50 ${x(tetherVsGoHost.ts_plugin.p50)}, ` +
    `throughput ${x(tetherVsGoHost.ts_plugin.throughput)}, spawn ${
      x(tetherVsGoHost.ts_plugin.spawn_typical)
    }`,
);
const elapsedS = (performance.now() - started) / 1000;
lines.push("");
lines.push(
  `(${elapsedS.toFixed(0)} s; load average ${loadAtStart[0].toFixed(1)} -> ${
    Deno.loadavg()[0].toFixed(1)
  } on ` +
    `${navigator.hardwareConcurrency} CPUs; results in ${flags.out})`,
);
console.log(lines.join("\n"));

// --- results.json -------------------------------------------------------------

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
    ts_plugin_command: `deno ${tsPlugin.args.join(" ").replaceAll(repoRoot + "/", "")}`,
  },
  units: {
    seq_p50_us: "us",
    seq_p99_us: "us",
    calls_per_sec: "calls/s",
    spawn_first_ms: "ms",
    spawn_typical_ms: "ms",
  },
  results,
  rounds,
  ratios: {
    versus_go_host_go_plugin: versusGoHostGoPlugin,
    tether_host_versus_go_host: tetherVsGoHost,
    ts_plugin_versus_go_plugin: {
      go_host: ratios(results.go_host_ts_plugin, results.go_host_go_plugin),
      tether_host: ratios(results.tether_host_ts_plugin, results.tether_host_go_plugin),
    },
  },
};
Deno.writeTextFileSync(flags.out, JSON.stringify(output, null, 2) + "\n");
