/**
 * The launch attempts' machinery: a probe plugin written at test time into a
 * fresh plugin tree (paths embedded literally, as an attacker who knows them
 * would write them), launched under Tether, and judged from the host's side
 * only: the random token must not reach any log, error or answer, and nothing
 * may be left behind.
 *
 * @module
 */

import { type DenoPermissions, PluginClient, type PluginClientOptions, TetherError } from "../../../mod.ts";
import type { AttemptClass } from "../../fixtures/hostile_suite/attempts.ts";
import { kvHandshake } from "../support.ts";
import { Records, withIsolation, type World } from "./world.ts";

/** An attempt with a launch of its own. */
export interface LaunchAttempt {
  readonly id: string;
  readonly cls: AttemptClass;
  readonly description: string;
  readonly expect: "denied" | "harmless";
  readonly reason?: string;
  /** Only in these isolation modes (default: both). */
  readonly modes?: readonly string[];
  /**
   * Runs alone: it is judged by decoy hits charged to the running attempt, or by the host's own memory, or it
   * loads the machine. The others run a few at a time.
   */
  readonly serial?: boolean;
  /** Evidence of an escape (empty: none), and a note for the report. */
  run(world: World): Promise<{ evidence: string[]; note: string }>;
}

export const GIB = 2 ** 30;

export interface Probe {
  /** Files of the plugin tree, by relative name. */
  files?: Record<string, string>;
  /** Symlinks in the tree: name -> target. */
  links?: Record<string, string>;
  /** The entry, relative to the tree (default main.ts). */
  entry?: string;
  cmd?: string;
  args?: string[];
  /** `tree` for the tree's deno.json, or an absolute path. */
  denoConfig?: string;
  permissions?: DenoPermissions;
  env?: Record<string, string>;
  runtime?: "deno" | "auto" | "native";
  startTimeoutMs?: number;
  extra?: Record<string, unknown>;
  /** Runs while the plugin is up (only if start succeeded). */
  whileUp?: (client: PluginClient) => Promise<void>;
}

export interface ProbeResult {
  /** The plugin's last stderr lines, for the report. */
  last: string;
  started: boolean;
  error?: unknown;
  /** Everything the host got from the plugin: logs, stderr, the error. */
  output: string;
  tree: string;
  pid?: number;
  leftover: string[];
}

export async function writeTree(world: World, id: string, probe: Probe): Promise<string> {
  const tree = `${world.dir}/trees/${id}`;
  await Deno.mkdir(tree, { recursive: true });
  for (const [name, content] of Object.entries(probe.files ?? {})) {
    const path = `${tree}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, content);
  }
  for (const [name, target] of Object.entries(probe.links ?? {})) {
    const path = `${tree}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.symlink(target, path);
  }
  return tree;
}

/** Launches a probe plugin and collects everything the host received. */
export async function probe(world: World, id: string, p: Probe): Promise<ProbeResult> {
  const tree = await writeTree(world, id, p);
  // A socket dir of its own, so "nothing left behind" is judged for this launch alone.
  const sockets = `${world.dir}/s-${id}`;
  await Deno.mkdir(sockets, { recursive: true });
  const logger = new Records([world.token, "GOT:"]);
  const options = withIsolation(world, {
    cmd: p.cmd ?? `${tree}/${p.entry ?? "main.ts"}`,
    args: p.args ?? [],
    runtime: p.runtime ?? "deno",
    handshake: kvHandshake,
    unixSocketDir: sockets,
    denoConfig: p.denoConfig === "tree" ? `${tree}/deno.json` : p.denoConfig,
    permissions: p.permissions ?? { read: [world.ctx.granted] },
    env: { [world.ctx.envSecretName]: `ENV-${world.token}`, ...p.env },
    name: id,
    logger,
    onPermissionEvent: (event) => world.events.push(event),
    startTimeoutMs: p.startTimeoutMs ?? 20_000,
    ...p.extra,
  } as PluginClientOptions);
  let client: PluginClient;
  try {
    client = new PluginClient(options);
  } catch (refused) {
    // Refused before anything ran (e.g. a bad option): nothing to leak or leave.
    return { started: false, error: refused, output: String(refused), tree, leftover: [], last: "" };
  }
  let started = false;
  let error: unknown;
  let pid: number | undefined;
  try {
    await client.start();
    started = true;
    pid = client.pid;
    await p.whileUp?.(client);
  } catch (caught) {
    error = caught;
    pid ??= client.pid;
  } finally {
    await client.kill();
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
  const leftover: string[] = [];
  if (pid !== undefined) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      if (!stat.includes(") Z ")) leftover.push(`process ${pid} still running`);
    } catch {
      // Gone.
    }
  }
  for (const entry of Deno.readDirSync(sockets)) {
    if (entry.name.startsWith("tether-")) leftover.push(`private dir ${entry.name} left`);
  }
  const output = `${logger.text()}\n${
    error instanceof Error ? `${error.name}: ${error.message}` : String(error ?? "")
  }`;
  const last = logger.records
    .filter((r) => !["starting plugin", "plugin process exited", "plugin address"].includes(r.message))
    .slice(-2)
    .map((r) => r.message.slice(0, 140))
    .join(" | ");
  return { started, error, output, tree, pid, leftover, last };
}

/** The usual host-side judgement: no token, no claim (GOT:), nothing left. */
export function leaks(world: World, result: ProbeResult, opts: { mustNotStart?: boolean } = {}): string[] {
  const evidence: string[] = [];
  const index = result.output.indexOf(world.token);
  if (index >= 0) {
    evidence.push(
      `host secret reached the host's view of the plugin: ...${
        result.output.slice(Math.max(0, index - 80), index + 40)
      }`,
    );
  }
  const claim = /GOT:([^\n"]{0,80})/.exec(result.output);
  if (claim) evidence.push(`the plugin read it: GOT:${claim[1]}`);
  if (opts.mustNotStart && result.started) evidence.push("the host accepted the plugin");
  evidence.push(...result.leftover);
  return evidence;
}

export function note(result: ProbeResult): string {
  const error = result.error;
  if (!(error instanceof Error)) return result.last ? `started; last words: ${result.last}` : "started";
  const [first, ...rest] = error.message.split("\n");
  const tail = rest.map((l) => l.trim()).filter((l) => l && !/experimental feature|Last lines of/.test(l))
    .slice(0, 3);
  return `${error instanceof TetherError ? `${error.code}: ` : ""}${first.slice(0, 140)}` +
    (tail.length > 0 ? `; stderr: ${tail.join(" / ").slice(0, 220)}` : "");
}

export function fileUrl(path: string): string {
  return new URL(`file://${path}`).href;
}

/** A launch attempt that probes a module graph / code and judges by leaks. */
export function graph(
  id: string,
  description: string,
  build: (world: World) => Probe | Promise<Probe>,
  cls: AttemptClass = "fs-modules",
  check?: (world: World, tree: string) => string[] | Promise<string[]>,
): LaunchAttempt {
  return {
    id,
    cls,
    description,
    expect: "denied",
    run: async (world) => {
      const result = await probe(world, id, await build(world));
      const evidence = leaks(world, result);
      if (check) evidence.push(...await check(world, result.tree));
      return { evidence, note: note(result) };
    },
  };
}

export function existing(paths: string[]): string[] {
  return paths.filter((path) => {
    try {
      Deno.lstatSync(path);
      return true;
    } catch {
      return false;
    }
  }).map((path) => `the runtime wrote ${path}`);
}

export const reader = (world: World) =>
  `try { console.error("GOT:" + Deno.readTextFileSync(${
    JSON.stringify(world.ctx.canary)
  })); } catch (e) { console.error("refused: " + e); }\n` +
  `try { console.error("GOT:" + Deno.env.get(${
    JSON.stringify(world.ctx.envSecretName)
  })); } catch (e) { console.error("refused: " + e); }\n` +
  `Deno.exit(3);\n`;

export async function outside(world: World): Promise<string> {
  const dir = `${world.dir}/outside`;
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}
