/**
 * The memory side of the benchmark: a Tether host that starts one plugin of
 * each kind, makes `calls` Gets on each, lets it idle, and reads VmRSS from
 * /proc/<pid>/status (Linux only), plus what the host itself grows by:
 *
 * - `host_baseline_kib`: this process before it imports Tether;
 * - `host_loaded_kib`: after `import("../mod.ts")` (grpc-js, protobuf-es, X.509 code);
 * - `host_first_plugin_kib`: after its first plugin (the Go one) answered `calls` Gets and idled;
 * - per plugin: its RSS after `calls` Gets and `idle_ms` of rest.
 *
 * Prints one JSON object ({@linkcode MemoryResult}):
 *
 *   deno run -A bench/memory.ts [--calls 2000] [--idle-ms 1000] [--channel lean|grpc-js] --go <cmd> --ts <cmd args...>
 *
 * `--ts` takes the rest of the command line (the deno command of the TypeScript plugin). When it is a
 * TypeScript/JavaScript entry instead (`--ts examples/kv/plugin.ts`), Tether launches it as a `deno` plugin,
 * as an application would: sandboxed (`--deno-config`, default this repository's deno.json), with Tether's
 * idle memory trim on (`memoryTrim`'s default: the reading is taken `idle_ms` after the trimmer's SIGUSR2);
 * `--no-memory-trim` launches it with `memoryTrim: false`, for the untrimmed reading.
 *
 * `--trim`: Deno's opt-in memory trim before the idle readings: the TypeScript plugin is started with
 * `DENO_USR2_MEMORY_TRIM=1` and sent SIGUSR2 after its calls (glibc's `malloc_trim(0)` and a V8 GC), and
 * so is this host, if it was itself started with `DENO_USR2_MEMORY_TRIM=1`. What an application can do
 * today with `PluginClient`'s `env` and `pid`.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** One plugin's memory figures. */
export interface PluginMemory {
  /** RSS after the calls and the idle time, KiB. */
  rss_kib: number;
  /** Peak RSS (VmHWM), KiB. */
  hwm_kib: number;
  /** The anonymous part of RSS (heap, stacks, JIT code), KiB: what this process alone costs. */
  anon_kib: number;
  /** The file-backed part of RSS (mostly the executable's pages, shared by every process running it), KiB. */
  file_kib: number;
}

/** What bench/memory.ts prints. */
export interface MemoryResult {
  calls: number;
  idle_ms: number;
  host_baseline_kib: number;
  host_loaded_kib: number;
  host_first_plugin_kib: number;
  /** The host's anonymous RSS at the same three points, KiB. */
  host_anon_kib: { baseline: number; loaded: number; first_plugin: number };
  go_plugin: PluginMemory;
  ts_plugin: PluginMemory;
  /** How the TypeScript plugin ran: a `deno run` command, or a `deno` plugin with or without the idle trim. */
  ts_launch: "command" | "deno plugin, memoryTrim on" | "deno plugin, memoryTrim off";
  /** A bare `deno run` of a script that only waits, for scale. */
  bare_deno_kib: number;
}

/** VmRSS and VmHWM of a process, KiB, from /proc/<pid>/status. */
export function procMemory(pid: number | "self"): PluginMemory {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return {
    rss_kib: field("VmRSS"),
    hwm_kib: field("VmHWM"),
    anon_kib: field("RssAnon"),
    file_kib: field("RssFile"),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function bareDeno(idleMs: number): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "await new Promise((r) => setTimeout(r, 60_000));"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await sleep(Math.max(idleMs, 500));
    return procMemory(child.pid).rss_kib;
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

if (import.meta.main) {
  const ts = Deno.args.indexOf("--ts");
  if (ts < 0 || ts === Deno.args.length - 1) {
    console.error(
      "usage: deno run -A bench/memory.ts [--calls 2000] [--idle-ms 1000] --go <cmd> --ts <cmd> [args...]",
    );
    Deno.exit(2);
  }
  const { values } = parseArgs({
    args: Deno.args.slice(0, ts),
    options: {
      calls: { type: "string", default: "2000" },
      "idle-ms": { type: "string", default: "1000" },
      go: { type: "string" },
      channel: { type: "string", default: "lean" },
      trim: { type: "boolean", default: false },
      "memory-trim": { type: "boolean", default: true },
      "deno-config": { type: "string", default: new URL("../deno.json", import.meta.url).pathname },
    },
    allowNegative: true,
  });
  const calls = Number(values.calls);
  const idleMs = Number(values["idle-ms"]);
  const [tsCmd, ...tsArgs] = Deno.args.slice(ts + 1);

  const baseline = procMemory("self");
  const hostBaseline = baseline.rss_kib;
  const { PluginClient } = await import("../mod.ts");
  const { setChannelImplementation } = await import("../src/channel.ts");
  await setChannelImplementation(values.channel === "grpc-js" ? "grpc-js" : "lean");
  const { KV } = await import("../src/gen/tether/kv/v1/kv_pb.ts");
  const { kvHandshake } = await import("../examples/kv/handshake.ts");
  const { runtimeFor } = await import("../src/launch.ts");
  const { findTrimTarget } = await import("../src/memory_trim.ts");
  const loaded = procMemory("self");
  const hostLoaded = loaded.rss_kib;

  const env: Record<string, string> = {};
  for (const name of ["HOME", "PATH", "DENO_DIR", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }

  const memoryTrim = values["memory-trim"];
  let trims = 0;
  const logger = {
    log(record: import("../mod.ts").LogRecord) {
      if (record.message === "plugin idle: memory trimmed") trims++;
      else if (record.level === "warn" || record.level === "error") {
        console.error(record.message, record.fields);
      }
    },
  };

  /** Starts a plugin, makes `calls` Gets, idles, reads its memory; leaves it running. */
  const exercise = async (cmd: string, args: string[], trim = false) => {
    const sandboxed = runtimeFor(cmd) === "deno";
    const client = new PluginClient({
      cmd,
      args,
      handshake: kvHandshake,
      autoMTLS: true,
      logger,
      ...(sandboxed
        ? { denoConfig: values["deno-config"], memoryTrim: memoryTrim ? undefined : false }
        : { env: trim ? { ...env, DENO_USR2_MEMORY_TRIM: "1" } : env }),
    });
    await client.start();
    const kv = client.dispense(KV);
    await kv.put({ key: "bench", value: new Uint8Array(64).fill(97) });
    for (let i = 0; i < calls; i++) await kv.get({ key: "bench" });
    // Under bubblewrap the spawned process is bwrap: read the Deno process the launch started.
    const pid = sandboxed
      ? findTrimTarget(client.pid!, Deno.execPath(), ["/usr/bin/bwrap"])?.pid
      : client.pid;
    if (pid === undefined) throw new Error(`no Deno process found below ${client.pid}`);
    if (trim && !sandboxed) Deno.kill(client.pid!, "SIGUSR2");
    if (sandboxed && memoryTrim) {
      // Tether's own trimmer: wait for its SIGUSR2 after the calls (idleMs 2000 by default).
      const before = trims;
      const until = Date.now() + 60_000;
      while (trims === before && Date.now() < until) await sleep(50);
      if (trims === before) throw new Error("the plugin was not trimmed within 60 s of its calls");
    }
    await sleep(idleMs);
    return { client, memory: procMemory(pid), sandboxed };
  };

  const go = await exercise(values.go ?? "", []);
  if (values.trim && Deno.env.get("DENO_USR2_MEMORY_TRIM") === "1") {
    Deno.kill(Deno.pid, "SIGUSR2");
    await sleep(idleMs);
  }
  const firstPlugin = procMemory("self");
  const hostFirstPlugin = firstPlugin.rss_kib;
  const tsPlugin = await exercise(tsCmd, tsArgs, values.trim);
  await go.client.kill();
  await tsPlugin.client.kill();

  const result: MemoryResult = {
    calls,
    idle_ms: idleMs,
    host_baseline_kib: hostBaseline,
    host_loaded_kib: hostLoaded,
    host_first_plugin_kib: hostFirstPlugin,
    host_anon_kib: {
      baseline: baseline.anon_kib,
      loaded: loaded.anon_kib,
      first_plugin: firstPlugin.anon_kib,
    },
    go_plugin: go.memory,
    ts_plugin: tsPlugin.memory,
    ts_launch: !tsPlugin.sandboxed
      ? "command"
      : memoryTrim
      ? "deno plugin, memoryTrim on"
      : "deno plugin, memoryTrim off",
    bare_deno_kib: await bareDeno(idleMs),
  };
  console.log(JSON.stringify(result));
}
