/**
 * The figures docs/security.md and docs/deploy.md quote, from one rerunnable command (Linux only: it reads
 * /proc/<pid>/status):
 *
 *   deno run -A bench/footprint.ts [--calls 2000] [--runs 3]
 *
 * - the TypeScript KV example (`examples/kv/plugin.ts`) started by `PluginClient` with its defaults (deny by
 *   default, default `limits`, `isolation: "auto"`) and the repository's deno.json: the Deno process's VmData once started and after `calls`
 *   Gets, and its VmSize once started (the address space Deno reserves, which is why RLIMIT_AS cannot cap it);
 * - the same plugin packed with `tether pack` (a sealed executable run as a native plugin): the time from
 *   `start()` to the first answered Get, `runs` times, beside the unpacked plugin's for scale.
 *
 * Prints one JSON object ({@linkcode Footprint}). Timings depend on the machine and its load; each is one
 * launch, so rerun it rather than trusting one figure.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { PluginClient } from "../mod.ts";
import { KV } from "../src/gen/tether/kv/v1/kv_pb.ts";
import { kvHandshake } from "../examples/kv/handshake.ts";

/** What bench/footprint.ts prints. */
export interface Footprint {
  deno: string;
  calls: number;
  /** The Deno process of the unpacked TypeScript plugin, and whether bubblewrap started it (namespaces). */
  ts_plugin: { pid: number; under_bwrap: boolean };
  /** VmData once the handshake is done, MiB. */
  vmdata_start_mib: number;
  /** VmData after `calls` Gets, MiB. */
  vmdata_after_calls_mib: number;
  /** VmSize once the handshake is done (address space reserved), MiB. */
  vmsize_start_mib: number;
  /** `start()` to the first answered Get of the packed plugin, one figure a run, ms. */
  packed_first_answer_ms: number[];
  /** The same for the unpacked TypeScript plugin, ms. */
  unpacked_first_answer_ms: number[];
}

const repo = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const plugin = `${repo}/examples/kv/plugin.ts`;
// The example imports Tether from this checkout, so it runs with the repository's deno.json (as
// examples/kv/host.ts runs it).
const denoConfig = `${repo}/deno.json`;

/** A `/proc/<pid>/status` field in MiB (the kernel gives kB). */
function statusMiB(pid: number, field: string): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return Math.round(kib / 1024);
}

/** `pid` and all its descendants, parents first. */
function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^[0-9]+$/.test(entry.name)) continue;
    try {
      // The ppid is the 2nd field after the command, which is in parentheses and may hold spaces.
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry.name)]);
    } catch {
      // Gone meanwhile.
    }
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]) ?? []));
  return out;
}

/** The process running the plugin module: under bubblewrap the launched pid is bwrap, not Deno. */
function denoProcessOf(pid: number): { pid: number; under_bwrap: boolean } {
  const launched = Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
  for (const candidate of processTree(pid)) {
    try {
      const argv = Deno.readTextFileSync(`/proc/${candidate}/cmdline`).split("\0");
      if (argv.includes(plugin) && /deno$/.test(argv[0])) {
        return { pid: candidate, under_bwrap: launched === "bwrap" };
      }
    } catch {
      // Gone meanwhile.
    }
  }
  throw new Error(`no deno process running ${plugin} below pid ${pid}`);
}

function hostEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["HOME", "PATH", "DENO_DIR", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Milliseconds from `start()` to the first answered Get; the plugin is stopped afterwards. */
async function firstAnswerMs(cmd: string, args: string[]): Promise<number> {
  const client = new PluginClient({
    cmd,
    args,
    env: hostEnv(),
    handshake: kvHandshake,
    autoMTLS: true,
    ...(cmd === plugin ? { denoConfig } : {}),
  });
  const t0 = performance.now();
  try {
    await client.start();
    await client.dispense(KV).get({ key: "first" });
    return Math.round(performance.now() - t0);
  } finally {
    await client.kill();
  }
}

/** Packs the KV example with `tether pack` into `dir`; returns the packed file. */
async function packKv(dir: string): Promise<string> {
  const output = `${dir}/kv`;
  const packed = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${repo}/cli.ts`,
      "pack",
      "--cookie-key",
      kvHandshake.magicCookieKey,
      plugin,
      "-o",
      output,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!packed.success) {
    throw new Error(`tether pack failed (exit ${packed.code}): ${new TextDecoder().decode(packed.stderr)}`);
  }
  return output;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { calls: { type: "string", default: "2000" }, runs: { type: "string", default: "3" } },
  });
  const calls = Number(values.calls);
  const runs = Number(values.runs);
  if (!Number.isSafeInteger(calls) || calls < 0 || !Number.isSafeInteger(runs) || runs < 1) {
    console.error("usage: deno run -A bench/footprint.ts [--calls N (0 or more)] [--runs N (1 or more)]");
    Deno.exit(2);
  }

  const client = new PluginClient({
    cmd: plugin,
    env: hostEnv(),
    handshake: kvHandshake,
    autoMTLS: true,
    denoConfig,
  });
  await client.start();
  let memory: Pick<
    Footprint,
    "ts_plugin" | "vmdata_start_mib" | "vmdata_after_calls_mib" | "vmsize_start_mib"
  >;
  try {
    const deno = denoProcessOf(client.pid!);
    const vmdataStart = statusMiB(deno.pid, "VmData");
    const vmsizeStart = statusMiB(deno.pid, "VmSize");
    const kv = client.dispense(KV);
    await kv.put({ key: "bench", value: new Uint8Array(64).fill(97) });
    for (let i = 0; i < calls; i++) await kv.get({ key: "bench" });
    memory = {
      ts_plugin: deno,
      vmdata_start_mib: vmdataStart,
      vmdata_after_calls_mib: statusMiB(deno.pid, "VmData"),
      vmsize_start_mib: vmsizeStart,
    };
  } finally {
    await client.kill();
  }

  const dir = await Deno.makeTempDir({ prefix: "tether-footprint-" });
  try {
    const packed = await packKv(dir);
    const packedMs: number[] = [];
    const unpackedMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      packedMs.push(await firstAnswerMs(packed, []));
      unpackedMs.push(await firstAnswerMs(plugin, []));
    }
    const result: Footprint = {
      deno: Deno.version.deno,
      calls,
      ...memory,
      packed_first_answer_ms: packedMs,
      unpacked_first_answer_ms: unpackedMs,
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
