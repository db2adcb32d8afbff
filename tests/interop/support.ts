/**
 * Support for the interop tests: a private, uniquely named sandbox per test so
 * the leak checks (processes, unix sockets) see only what this test started,
 * even when other test suites run kvplugin or the TypeScript plugin at the
 * same time.
 *
 * - Plugins get `TMPDIR=<sandbox dir>`: go-plugin (`os.CreateTemp`) and
 *   Tether's `serve()` put their sockets there, and so does a Go host's broker.
 *   A Tether host is given `unixSocketDir: <sandbox dir>`: its per-launch
 *   private directory (with the plugin's and its broker's sockets) goes there.
 * - The sandbox path is a marker in every command line we start: the Go plugin
 *   runs through a symlink inside the sandbox, the TypeScript plugin gets the
 *   sandbox path as an (ignored) script argument.
 *
 * @module
 */

import assert from "node:assert/strict";
import { denoPlugin, eventually, goFixture, isAlive, processesMatching } from "../helpers.ts";
import type { Endpoint, LogLevel, LogRecord } from "../../mod.ts";

/** The hclog levels, lowest first. */
export const LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warn", "error"];

/** The KV handshake (same as examples/kv/handshake.ts and the Go fixtures). */
export { kvHandshake } from "../../examples/kv/handshake.ts";

/** One test's private directory and marker. */
export interface Sandbox {
  /** Private directory; plugins get it as TMPDIR. Its path is the marker. */
  readonly dir: string;
  /** The Go KV plugin, as a symlink inside {@linkcode Sandbox.dir}. */
  readonly goPlugin: string;
  /** Command line of the TypeScript KV plugin, marked with the sandbox path. */
  readonly tsPlugin: { cmd: string; args: string[] };
  /** Environment for a plugin started by a Tether host (only TMPDIR). */
  readonly pluginEnv: Record<string, string>;
  /** Unix socket paths seen during the test that must be gone afterwards. */
  readonly sockets: Set<string>;
  /** Records an endpoint whose socket must be gone at the end. */
  track(endpoint: Endpoint | undefined): void;
}

/**
 * Runs `fn` in a fresh sandbox, then checks that nothing is left behind: no
 * process whose command line carries the sandbox path, no socket, file or
 * directory in the sandbox (a Tether host given `unixSocketDir: sandbox.dir`
 * makes its per-launch private directories there), and no tracked socket
 * anywhere (e.g. a host broker listener in /tmp). `allowStaleSockets` lets a test accept (and
 * clean) sockets of plugins that were SIGKILLed by design; `onStale` sees them.
 */
export async function inSandbox(
  fn: (sandbox: Sandbox) => Promise<void>,
  options: { allowStaleSockets?: number; onStale?: (paths: string[]) => void } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tether-interop-" });
  const goPlugin = `${dir}/kvplugin`;
  await Deno.symlink(await goFixture("kvplugin"), goPlugin);
  const ts = denoPlugin("examples/kv/plugin.ts");
  const sockets = new Set<string>();
  const sandbox: Sandbox = {
    dir,
    goPlugin,
    tsPlugin: { cmd: ts.cmd, args: [...ts.args, dir] },
    pluginEnv: { TMPDIR: dir },
    sockets,
    track: (endpoint) => {
      if (endpoint?.network === "unix") sockets.add(endpoint.address);
    },
  };
  try {
    await fn(sandbox);
  } finally {
    // Whatever happened in the test, report leftovers and clean them up so one
    // failure does not cascade into the next test.
    const leftovers = await eventually(() => processesMatching(dir).filter(isAlive).length === 0, 5000)
      ? []
      : processesMatching(dir).filter(isAlive);
    for (const pid of leftovers) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    // Everything the test left in the sandbox (sockets, a Tether host's private launch
    // directories, ...), except the symlink we put there.
    const left = entriesUnder(dir).filter((path) => path !== goPlugin);
    const leftSockets = left.filter(isSocket);
    const tracked = [...sockets].filter(exists);
    const stale = [...new Set([...leftSockets, ...tracked])];
    const otherLeft = left.filter((path) =>
      !leftSockets.includes(path) && !stale.some((s) => s.startsWith(`${path}/`))
    );
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    for (const path of tracked) await Deno.remove(path).catch(() => {});
    assert.deepEqual(leftovers.map((pid) => `${pid}: ${cmdline(pid)}`), [], "plugin processes left behind");
    const allowed = options.allowStaleSockets ?? 0;
    assert.ok(
      stale.length <= allowed,
      `unix sockets left behind (allowed ${allowed}): ${JSON.stringify(stale)}`,
    );
    options.onStale?.(stale);
    assert.deepEqual(otherLeft, [], "files or directories left behind in the sandbox");
  }
}

/** Every path under `dir`, depth first (directories before their contents). */
function entriesUnder(dir: string): string[] {
  const found: string[] = [];
  try {
    for (const entry of Deno.readDirSync(dir)) {
      const path = `${dir}/${entry.name}`;
      found.push(path);
      if (entry.isDirectory) found.push(...entriesUnder(path));
    }
  } catch {
    // Gone meanwhile.
  }
  return found;
}

function isSocket(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket === true;
  } catch {
    return false;
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function cmdline(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
  } catch {
    return "?";
  }
}

/** Whether a unix socket path has a listener (it appears in /proc/net/unix). */
export function isListening(path: string): boolean {
  try {
    return Deno.readTextFileSync("/proc/net/unix").split("\n").some((line) => line.endsWith(` ${path}`));
  } catch {
    return false;
  }
}

/** A logger that keeps every record. */
export function collectingLogger(): { log(record: LogRecord): void; records: LogRecord[] } {
  const records: LogRecord[] = [];
  return { log: (record) => void records.push(record), records };
}

/** An output sink that keeps the text written to it. */
export function textSink(): { sink: (chunk: Uint8Array) => void; text(): string } {
  const decoder = new TextDecoder();
  let text = "";
  return { sink: (chunk) => void (text += decoder.decode(chunk, { stream: true })), text: () => text };
}

/** One step of kvhost's report. */
export interface KvhostStep {
  name: string;
  ok: boolean;
  detail: string;
}

/** kvhost's JSON report. */
export interface KvhostReport {
  steps: KvhostStep[];
  ok: boolean;
  host_log: string;
  bench?: Record<string, number>;
}

/** One hclog JSON line of kvhost's host log. */
export type HostLogEntry = Record<string, unknown> & {
  "@level": string;
  "@message": string;
  "@module"?: string;
};

/** Runs bin/kvhost with `flags` against `plugin`, in the sandbox's TMPDIR; returns its report and exit code. */
export async function runKvhost(
  sandbox: Sandbox,
  flags: string[],
  plugin: { cmd: string; args: string[] },
): Promise<{ code: number; report: KvhostReport; log: HostLogEntry[]; stderr: string }> {
  const out = await new Deno.Command(await goFixture("kvhost"), {
    args: [...flags, "--", plugin.cmd, ...plugin.args],
    env: { TMPDIR: sandbox.dir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr);
  let report: KvhostReport;
  try {
    report = JSON.parse(stdout.split("\n").pop() ?? "");
  } catch {
    throw new Error(
      `kvhost printed no JSON report (exit ${out.code}):\n${stdout}\n--- stderr ---\n${stderr}`,
    );
  }
  const log = report.host_log.split("\n").filter((line) => line.trim() !== "").map((line) =>
    JSON.parse(line) as HostLogEntry
  );
  return { code: out.code, report, log, stderr };
}

/** The named step of a kvhost report (fails the test when it is missing). */
export function step(report: KvhostReport, name: string): KvhostStep {
  const found = report.steps.find((s) => s.name === name);
  assert.ok(found, `kvhost report has no ${name} step: ${JSON.stringify(report.steps)}`);
  return found;
}

/** Asserts every step of a kvhost report passed, naming the failing ones. */
export function assertAllStepsOk(report: KvhostReport, expected: readonly string[]): void {
  assert.deepEqual(report.steps.map((s) => s.name), expected, "kvhost ran other steps than expected");
  const failed = report.steps.filter((s) => !s.ok);
  assert.deepEqual(failed, [], `kvhost steps failed:\n${JSON.stringify(failed, null, 2)}`);
  assert.equal(report.ok, true);
}
