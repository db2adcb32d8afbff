/**
 * Attempts that need a launch of their own: the attack is the plugin's code
 * graph, its configuration, its handshake, its resource use, or the host's
 * options. Each plugin here is written at test time into a fresh plugin tree
 * (paths embedded literally, as an attacker who knows them would write them)
 * and judged from the host's side only: the random token must not reach any
 * log, error or answer, decoys must stay unreached, and nothing may be left.
 *
 * @module
 */

import { type DenoPermissions, PluginClient, type PluginClientOptions, TetherError } from "../../../mod.ts";
import type { AttemptClass } from "../../fixtures/hostile_suite/attempts.ts";
import { KV } from "../../../src/gen/tether/kv/v1/kv_pb.ts";
import { encodeRawBase64 } from "../../../src/handshake.ts";
import { generateCertificate } from "../../../src/mtls.ts";
import { ConfigError, parsePluginsConfig } from "../../../src/sftpgo/config.ts";
import { repoRoot } from "../../helpers.ts";
import { kvHandshake, text } from "../support.ts";
import { startHostile } from "./in_process.ts";
import { descendants, inOwnNamespaces, Records, treeRss, withIsolation, type World } from "./world.ts";

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

const GIB = 2 ** 30;

interface Probe {
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

interface ProbeResult {
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

async function writeTree(world: World, id: string, probe: Probe): Promise<string> {
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
async function probe(world: World, id: string, p: Probe): Promise<ProbeResult> {
  const tree = await writeTree(world, id, p);
  // A socket dir of its own, so "nothing left behind" is judged for this launch alone.
  const sockets = `${world.dir}/s-${id}`;
  await Deno.mkdir(sockets, { recursive: true });
  const logger = new Records();
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
function leaks(world: World, result: ProbeResult, opts: { mustNotStart?: boolean } = {}): string[] {
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

function note(result: ProbeResult): string {
  const error = result.error;
  if (!(error instanceof Error)) return result.last ? `started; last words: ${result.last}` : "started";
  const [first, ...rest] = error.message.split("\n");
  const tail = rest.map((l) => l.trim()).filter((l) => l && !/experimental feature|Last lines of/.test(l))
    .slice(0, 3);
  return `${error instanceof TetherError ? `${error.code}: ` : ""}${first.slice(0, 140)}` +
    (tail.length > 0 ? `; stderr: ${tail.join(" / ").slice(0, 220)}` : "");
}

function fileUrl(path: string): string {
  return new URL(`file://${path}`).href;
}

/** A launch attempt that probes a module graph / code and judges by leaks. */
function graph(
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

function existing(paths: string[]): string[] {
  return paths.filter((path) => {
    try {
      Deno.lstatSync(path);
      return true;
    } catch {
      return false;
    }
  }).map((path) => `the runtime wrote ${path}`);
}

const reader = (world: World) =>
  `try { console.error("GOT:" + Deno.readTextFileSync(${
    JSON.stringify(world.ctx.canary)
  })); } catch (e) { console.error("refused: " + e); }\n` +
  `try { console.error("GOT:" + Deno.env.get(${
    JSON.stringify(world.ctx.envSecretName)
  })); } catch (e) { console.error("refused: " + e); }\n` +
  `Deno.exit(3);\n`;

async function outside(world: World): Promise<string> {
  const dir = `${world.dir}/outside`;
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

// ------------------------------------------------------------------ module system
const moduleAttempts: LaunchAttempt[] = [
  graph("lmod01", "static text import of a file outside the tree (literal path)", (w) => ({
    files: {
      "main.ts": `import s from ${
        JSON.stringify(w.ctx.canary)
      } with { type: "text" };\nconsole.error("GOT:" + s);\n`,
    },
  })),
  graph("lmod02", "static JSON import of a file outside the tree", (w) => ({
    files: {
      "main.ts": `import j from ${
        JSON.stringify(w.ctx.secretJson)
      } with { type: "json" };\nconsole.error("GOT:" + JSON.stringify(j));\n`,
    },
  })),
  graph("lmod03", "static bytes import of a file outside the tree", (w) => ({
    files: {
      "main.ts": `import b from ${JSON.stringify(w.ctx.canary)} with { type: "bytes" };\n` +
        `console.error("GOT:" + new TextDecoder().decode(b));\n`,
    },
  })),
  graph("lmod04", "static import of an ES module outside the tree (absolute path)", (w) => ({
    files: {
      "main.ts": `import { secret } from ${
        JSON.stringify(w.ctx.outsideModule)
      };\nconsole.error("GOT:" + secret);\n`,
    },
  })),
  graph("lmod05", "static import of an ES module outside the tree (relative ../../root/mod.js)", () => ({
    files: { "main.ts": `import { secret } from "../../root/mod.js";\nconsole.error("GOT:" + secret);\n` },
  })),
  graph("lmod06", "literal dynamic import() of a text file outside", (w) => ({
    files: {
      "main.ts": `const m = await import(${
        JSON.stringify(w.ctx.canary)
      }, { with: { type: "text" } });\nconsole.error("GOT:" + m.default);\n`,
    },
  })),
  graph("lmod07", "literal dynamic import() of a JSON file outside", (w) => ({
    files: {
      "main.ts":
        `const m = await import(${JSON.stringify(w.ctx.secretJson)}, { with: { type: "json" } });\n` +
        `console.error("GOT:" + JSON.stringify(m.default));\n`,
    },
  })),
  graph("lmod08", "literal dynamic import() of bytes outside", (w) => ({
    files: {
      "main.ts": `const m = await import(${JSON.stringify(w.ctx.canary)}, { with: { type: "bytes" } });\n` +
        `console.error("GOT:" + new TextDecoder().decode(m.default));\n`,
    },
  })),
  graph("lmod09", 'literal import("/etc/shadow", { with: { type: "text" } })', () => ({
    files: {
      "main.ts": `const m = await import("/etc/shadow", { with: { type: "text" } });\n` +
        `console.error("GOT:" + m.default.length + " bytes of /etc/shadow");\n`,
    },
  })),
  graph("lmod10", "require() of an outside CommonJS module from a .cjs entry", (w) => ({
    entry: "main.cjs",
    files: {
      "main.cjs": `const m = require(${
        JSON.stringify(w.ctx.outsideCjs)
      });\nconsole.error("GOT:" + m.secret);\n`,
    },
  })),
  graph("lmod11", "createRequire with a literal outside path", (w) => ({
    files: {
      "main.ts":
        `import { createRequire } from "node:module";\nconst require = createRequire(import.meta.url);\n` +
        `console.error("GOT:" + require(${JSON.stringify(w.ctx.outsideCjs)}).secret);\n`,
    },
  })),
  graph("lmod12", "symlink inside the plugin tree pointing at a module outside", (w) => ({
    links: { "link.js": w.ctx.outsideModule },
    files: { "main.ts": `import { secret } from "./link.js";\nconsole.error("GOT:" + secret);\n` },
  })),
  graph("lmod13", "symlinked directory inside the tree (-> the secrets' directory)", (w) => ({
    links: { "sub": w.ctx.root },
    files: {
      "main.ts":
        `import s from "./sub/secret.txt" with { type: "text" };\nimport { secret } from "./sub/mod.js";\n` +
        `console.error("GOT:" + s + secret);\n`,
    },
  })),
  graph(
    "lmod14",
    "import map in the plugin's own deno.json (given as denoConfig) mapping a bare name outside",
    (w) => ({
      denoConfig: "tree",
      files: {
        "deno.json": JSON.stringify({ imports: { "innocent": fileUrl(w.ctx.outsideModule) } }),
        "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n`,
      },
    }),
  ),
  graph(
    "lmod15",
    "auto-discovered deno.json (no denoConfig given) with an import map leading outside",
    (w) => ({
      files: {
        "deno.json": JSON.stringify({ imports: { "innocent": fileUrl(w.ctx.outsideModule) } }),
        "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n`,
      },
    }),
  ),
  graph("lmod16", "deno.json naming an import map file outside the tree", async (w) => {
    const dir = await outside(w);
    await Deno.writeTextFile(
      `${dir}/import_map.json`,
      JSON.stringify({ imports: { "innocent": fileUrl(w.ctx.outsideModule) } }),
    );
    return {
      denoConfig: "tree",
      files: {
        "deno.json": JSON.stringify({ importMap: `${dir}/import_map.json` }),
        "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n`,
      },
    };
  }),
  graph("lmod17", "auto-discovered deno.json with a 'permissions' set granting read and env", (w) => ({
    files: {
      "deno.json": JSON.stringify({ permissions: { default: { read: true, env: true, sys: true } } }),
      "main.ts": reader(w),
    },
  })),
  graph(
    "lmod18",
    "package in the tree's node_modules whose package.json main is ../../../../root/mod.js",
    () => ({
      files: {
        "package.json": JSON.stringify({
          name: "innocent-app",
          type: "module",
          dependencies: { innocent: "*" },
        }),
        "node_modules/innocent/package.json": JSON.stringify({
          name: "innocent",
          main: "../../../../root/mod.js",
        }),
        "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n`,
      },
    }),
  ),
  graph("lmod19", "node_modules/<pkg> symlinked to a package outside the tree", async (w) => {
    const dir = await outside(w);
    await Deno.mkdir(`${dir}/evilpkg`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/evilpkg/package.json`,
      JSON.stringify({ name: "evilpkg", type: "module", main: "index.js" }),
    );
    await Deno.writeTextFile(`${dir}/evilpkg/index.js`, `export const secret = "PKG-${w.token}";\n`);
    return {
      links: { "node_modules/evilpkg": `${dir}/evilpkg` },
      files: {
        "package.json": JSON.stringify({ name: "innocent", type: "module", dependencies: { evilpkg: "*" } }),
        "main.ts": `import { secret } from "evilpkg";\nconsole.error("GOT:" + secret);\n`,
      },
    };
  }),
  graph("lmod20", "static import of a data: module that literally imports the canary", (w) => {
    const inner = `import s from ${
      JSON.stringify(fileUrl(w.ctx.canary))
    } with { type: "text" }; console.error("GOT:" + s);`;
    return {
      files: {
        "main.ts": `import ${JSON.stringify(`data:text/javascript,${encodeURIComponent(inner)}`)};\n`,
      },
    };
  }),
  graph("lmod21", "literal text import of /proc/self/environ (its own ungranted env)", () => ({
    files: {
      "main.ts":
        `import env from "/proc/self/environ" with { type: "text" };\nconsole.error("GOT:" + env);\n`,
    },
  })),
  graph("lmod22", "Worker from a literal local file outside the tree", (w) => ({
    files: {
      "main.ts":
        `const worker = new Worker(${JSON.stringify(fileUrl(w.ctx.outsideWorker))}, { type: "module" });\n` +
        `worker.onmessage = (e) => { console.error("GOT:" + e.data); Deno.exit(3); };\n` +
        `worker.onerror = (e) => { console.error("refused: " + e.message); Deno.exit(4); };\n` +
        `setTimeout(() => Deno.exit(5), 4000);\n`,
    },
  })),
  graph(
    "lmod23",
    "deno.json in the tree that is a symlink to a config outside (its import map leads outside)",
    async (w) => {
      const dir = await outside(w);
      await Deno.writeTextFile(
        `${dir}/deno.json`,
        JSON.stringify({ imports: { "innocent": fileUrl(w.ctx.outsideModule) } }),
      );
      return {
        links: { "deno.json": `${dir}/deno.json` },
        files: { "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n` },
      };
    },
  ),
  graph(
    "lmod24",
    "the plugin's own deno.json sets lock.path outside: does the runtime write the lockfile there?",
    async (w) => ({
      files: {
        "deno.json": JSON.stringify({ lock: { path: `${await outside(w)}/escaped-lmod24.lock` } }),
        "main.ts":
          `import YAML from "npm:yaml@2.9.1";\nconsole.error("loaded " + typeof YAML);\nDeno.exit(3);\n`,
      },
    }),
    "fs-modules",
    (w) => existing([`${w.dir}/outside/escaped-lmod24.lock`]),
  ),
  graph(
    "lmod25",
    "the plugin's own deno.json points lock.path at an existing host JSON file: is it overwritten?",
    async (w) => {
      await Deno.writeTextFile(
        `${await outside(w)}/victim.json`,
        `{"version":"5","owner":"host-${w.token}"}\n`,
      );
      return {
        files: {
          "deno.json": JSON.stringify({ lock: { path: `${w.dir}/outside/victim.json` } }),
          "main.ts":
            `import YAML from "npm:yaml@2.9.1";\nconsole.error("loaded " + typeof YAML);\nDeno.exit(3);\n`,
        },
      };
    },
    "fs-modules",
    (w) =>
      Deno.readTextFileSync(`${w.dir}/outside/victim.json`) === `{"version":"5","owner":"host-${w.token}"}\n`
        ? []
        : ["the runtime overwrote a host file outside the grants with a lockfile"],
  ),
  graph(
    "lmod26",
    "npm import with the plugin's deno.json (nodeModulesDir auto): does the runtime write node_modules/ and " +
      "deno.lock into the plugin's tree (not granted for writing)?",
    () => ({
      files: {
        "deno.json": JSON.stringify({ nodeModulesDir: "auto" }),
        "main.ts":
          `import YAML from "npm:yaml@2.9.1";\nconsole.error("loaded " + typeof YAML);\nDeno.exit(3);\n`,
      },
    }),
    "fs-modules",
    (_w, tree) => existing([`${tree}/node_modules`, `${tree}/deno.lock`]),
  ),
];

// ------------------------------------------------------------------ decision channels (issue 7: the broker's fd)
const channelAttempts: LaunchAttempt[] = [
  graph(
    "lchan01",
    "forged broker answer: first statement writes a granted request with id 1 on fd 3 " +
      "(node:net Socket({fd: 3})), then reads the canary",
    (w) => ({
      files: {
        "main.ts": `import net from "node:net";\n` +
          `const line = JSON.stringify({ v: 1, pid: 1, id: 1, datetime: new Date().toISOString(), permission: "env", value: "GRPC_TRACE" }) + "\\n";\n` +
          `try { const s = new net.Socket({ fd: 3, readable: false, writable: true }); s.on("error", () => {}); s.write(line); } catch (e) { console.error("refused: " + e); }\n` +
          `await new Promise((r) => setTimeout(r, 300));\n` + reader(w),
      },
    }),
    "decision-channels",
  ),
  {
    id: "lchan02",
    cls: "decision-channels",
    description: "forge audit records on every fd 3..40 at start-up (before any real check) and end",
    expect: "denied",
    run: async (world) => {
      const before = world.events.length;
      const result = await probe(world, "lchan02", {
        files: {
          "main.ts": `import net from "node:net";\nimport fs from "node:fs";\n` +
            `const line = JSON.stringify({ v: 1, pid: 1, id: 77, datetime: new Date().toISOString(), permission: "read", value: "/FORGED-lchan02" }) + "\\n";\n` +
            `for (let fd = 3; fd <= 40; fd++) { try { const s = new net.Socket({ fd, readable: false, writable: true }); s.on("error", () => {}); s.write(line); } catch { try { fs.writeSync(fd, line); } catch { /* no */ } } }\n` +
            `await new Promise((r) => setTimeout(r, 300));\nDeno.exit(3);\n`,
        },
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const evidence = leaks(world, result);
      for (const event of world.events.slice(before)) {
        if (event.target?.includes("FORGED-lchan02") && event.source === "deno") {
          evidence.push(
            `the host reported a forged record as the runtime's: ${event.permission} ${event.target}`,
          );
        }
      }
      return { evidence, note: note(result) };
    },
  },
  graph(
    "lchan03",
    "set DENO_PERMISSION_BROKER_PATH-like variables from inside (Deno.env.set) then read",
    (w) => ({
      files: {
        "main.ts":
          `try { Deno.env.set("DENO_PERMISSION_BROKER_PATH", "/tmp/nowhere.sock"); } catch (e) { console.error("refused: " + e); }\n` +
          reader(w),
      },
    }),
    "decision-channels",
  ),
];

// ------------------------------------------------------------------ shared state across launches and with the host
const STORAGE_PROBE = `
const [mode, value] = Deno.args;
if (mode === "write") {
  try { localStorage.setItem("hostile-persist", value); } catch (e) { console.error("ls refused " + e); }
  try { const c = await caches.open("hostile"); await c.put("https://persist.invalid/p", new Response(value)); } catch (e) { console.error("cache refused " + e); }
  try { const kv = await Deno.openKv(); await kv.set(["hostile-persist"], value); kv.close(); } catch (e) { console.error("kv refused " + e); }
} else {
  const key = mode === "read-host" ? value : "hostile-persist";
  try { console.error("LS=" + localStorage.getItem(key)); } catch (e) { console.error("ls refused " + e); }
  try { const c = await caches.open(mode === "read-host" ? "tether-host" : "hostile"); const r = await c.match(mode === "read-host" ? "https://host.invalid/" + key : "https://persist.invalid/p"); console.error("CACHE=" + (r ? await r.text() : null)); } catch (e) { console.error("cache refused " + e); }
  try { const kv = await Deno.openKv(); console.error("KV=" + (await kv.get([key])).value); kv.close(); } catch (e) { console.error("kv refused " + e); }
}
Deno.exit(3);
`;

type StorageRuns = { reader: ProbeResult; host: ProbeResult; kv: ProbeResult };
let storageRun: Promise<StorageRuns> | undefined;
let storageWorld: World | undefined;
function storageLaunches(world: World): Promise<StorageRuns> {
  if (storageWorld !== world) storageRun = undefined;
  storageWorld = world;
  storageRun ??= (async () => {
    const files = { "storage.ts": STORAGE_PROBE };
    await probe(world, "lstate", { files, entry: "storage.ts", args: ["write", `PERSIST-${world.token}`] });
    const reader = await probe(world, "lstate", { files, entry: "storage.ts", args: ["read"] });
    // The plugin's own deno.json turns on the unstable KV API (no flag from Tether).
    const kvFiles = { ...files, "deno.json": JSON.stringify({ unstable: ["kv"] }) };
    await probe(world, "lstate-kv", {
      files: kvFiles,
      entry: "storage.ts",
      args: ["write", `PERSIST-${world.token}`],
    });
    const kv = await probe(world, "lstate-kv", { files: kvFiles, entry: "storage.ts", args: ["read"] });
    const host = await probe(world, "lstate-host", {
      files,
      entry: "storage.ts",
      args: ["read-host", world.ctx.hostStorageKey],
      denoConfig: `${repoRoot}/deno.json`,
    });
    return { reader, host, kv };
  })();
  return storageRun;
}

function storage(id: string, description: string, which: keyof StorageRuns, label: string): LaunchAttempt {
  return {
    id,
    cls: "shared-state",
    description,
    expect: "denied",
    run: async (world) => {
      const runs = await storageLaunches(world);
      const result = runs[which];
      const line = result.output.split("\n").find((l) => l.includes(`${label}=`)) ?? "";
      const evidence = line.includes(world.token)
        ? [`${line.slice(line.indexOf(label), line.indexOf(label) + 60)}`]
        : [];
      evidence.push(...result.leftover);
      return { evidence, note: line.slice(line.indexOf(label), line.indexOf(label) + 60) || note(result) };
    },
  };
}

const stateAttempts: LaunchAttempt[] = [
  storage(
    "lstate01",
    "localStorage written by one launch, read by the next launch of the same plugin",
    "reader",
    "LS",
  ),
  storage("lstate02", "CacheStorage written by one launch, read by the next", "reader", "CACHE"),
  storage(
    "lstate03",
    "Deno.openKv() default database written by one launch, read by the next",
    "reader",
    "KV",
  ),
  storage(
    "lstate04",
    "the host's localStorage, read by a plugin run with the host's deno.json",
    "host",
    "LS",
  ),
  storage(
    "lstate05",
    "the host's CacheStorage, read by a plugin run with the host's deno.json",
    "host",
    "CACHE",
  ),
  storage(
    "lstate06",
    "Deno.openKv() turned on by the plugin's own deno.json ('unstable': ['kv']), read by the next launch",
    "kv",
    "KV",
  ),
];

// ------------------------------------------------------------------ availability
async function withHostile(
  world: World,
  id: string,
  fn: (client: PluginClient) => Promise<string[]>,
): Promise<string[]> {
  const logger = new Records();
  const client = await startHostile(world, id, logger);
  const pid = client.pid!;
  let evidence: string[] = [];
  try {
    evidence = await fn(client);
  } finally {
    await client.kill();
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
  if (
    [pid, ...descendants(pid)].some((p) => {
      try {
        return !Deno.readTextFileSync(`/proc/${p}/stat`).includes(") Z ");
      } catch {
        return false;
      }
    })
  ) evidence.push(`plugin process ${pid} outlived kill()`);
  if ((await world.neighbor.ping().then(() => true, () => false)) === false) {
    evidence.push("the other plugin stopped answering");
  }
  return evidence;
}

/**
 * A memory bomb: the plugin (and everything below its pid) must never hold 1 GiB resident. This assumes the
 * sandbox's DEFAULT memory cap is below 1 GiB (no option is passed: a default that lets a plugin take more is
 * what this attempt calls an escape).
 */
function memoryBomb(id: string, mode: "heap" | "offheap", description: string): LaunchAttempt {
  return {
    id,
    cls: "availability",
    description,
    expect: "denied",
    run: async (world) => {
      let peak = 0;
      let answer = "";
      const evidence = await withHostile(world, id, async (client) => {
        const call = client.dispense(KV).get({ key: `avail:${mode}` }, { timeoutMs: 60_000 }).then(
          (r) => answer = text(r.value),
          (e) => answer = `failed: ${String(e).slice(0, 120)}`,
        );
        let settled = false;
        call.finally(() => settled = true);
        while (!settled) {
          peak = Math.max(peak, treeRss(client.pid!));
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        return peak >= GIB
          ? [`the plugin held ${(peak / GIB).toFixed(2)} GiB resident: no memory cap (${answer})`]
          : [];
      });
      return { evidence, note: `peak ${(peak / 2 ** 20).toFixed(0)} MiB; ${answer}` };
    },
  };
}

const FLOODS = ["stdout", "stderrline", "bigreply", "timers"] as const;
type Floods = Map<string, { evidence: string[]; note: string }>;
let floodRun: Promise<Floods> | undefined;
let floodWorld: World | undefined;

/** One launch for the floods (each judged on its own call), so the suite stays quick. */
function floods(world: World): Promise<Floods> {
  if (floodWorld !== world) floodRun = undefined;
  floodWorld = world;
  floodRun ??= (async () => {
    const results: Floods = new Map();
    const shared = await withHostile(world, "floods", async (client) => {
      for (const mode of FLOODS) {
        const before = Deno.memoryUsage().rss;
        const outcome = await client.dispense(KV).get({ key: `avail:${mode}` }, { timeoutMs: 30_000 }).then(
          (r) => `answered ${r.value?.length ?? 0} bytes`,
          (e) => `failed: ${String(e).slice(0, 120)}`,
        );
        await new Promise((resolve) => setTimeout(resolve, 300));
        const growth = Deno.memoryUsage().rss - before;
        const found: string[] = [];
        if (growth > 256 * 2 ** 20) found.push(`the HOST grew by ${(growth / 2 ** 20).toFixed(0)} MiB`);
        await client.ping().catch((e) => found.push(`plugin no longer answers after ${mode}: ${e}`));
        results.set(mode, {
          evidence: found,
          note: `${outcome}; host grew ${(growth / 2 ** 20).toFixed(0)} MiB`,
        });
      }
      return [];
    });
    for (const mode of FLOODS) results.get(mode)?.evidence.push(...shared);
    return results;
  })();
  return floodRun;
}

function hostGrowth(
  id: string,
  description: string,
  mode: typeof FLOODS[number],
  reason: string,
): LaunchAttempt {
  return {
    id,
    cls: "availability",
    description,
    expect: "harmless",
    reason,
    run: async (world) => (await floods(world)).get(mode)!,
  };
}

const availabilityAttempts: LaunchAttempt[] = [
  {
    id: "avail01",
    cls: "availability",
    description: "busy loop in a handler",
    expect: "harmless",
    reason:
      "it burns only its own process: the host's call ends at its deadline, other plugins answer, kill() ends it",
    run: async (world) => {
      let outcome = "";
      const evidence = await withHostile(world, "avail01", async (client) => {
        outcome = await client.dispense(KV).get({ key: "avail:busy" }, { timeoutMs: 1000 }).then(
          () => "answered?!",
          (e) => `call ended: ${String(e).slice(0, 100)}`,
        );
        return outcome === "answered?!" ? ["a busy loop answered"] : [];
      });
      return { evidence, note: outcome };
    },
  },
  {
    id: "avail02",
    cls: "availability",
    description: "a handler that never answers",
    expect: "harmless",
    reason: "the host's deadline ends the call; the plugin keeps serving other calls; kill() ends it",
    run: async (world) => {
      let outcome = "";
      const evidence = await withHostile(world, "avail02", async (client) => {
        outcome = await client.dispense(KV).get({ key: "avail:never" }, { timeoutMs: 1000 }).then(
          () => "answered?!",
          (e) => `call ended: ${String(e).slice(0, 100)}`,
        );
        const found: string[] = [];
        await client.ping().catch((e) => found.push(`no longer serves: ${e}`));
        return found;
      });
      return { evidence, note: outcome };
    },
  },
  memoryBomb("avail03", "heap", "memory bomb on the V8 heap (up to 1.125 GiB)"),
  memoryBomb("avail04", "offheap", "memory bomb off the heap (ArrayBuffers, up to 1.125 GiB)"),
  hostGrowth(
    "avail05",
    "64 MiB flood on stdout after the handshake",
    "stdout",
    "stdout after the handshake is drained line by line and dropped; host-verified: the host's memory stays bounded",
  ),
  hostGrowth(
    "avail06",
    "one 64 MiB stderr line without a newline",
    "stderrline",
    "host-verified: the host's memory stays bounded (<256 MiB growth) and the plugin still answers",
  ),
  hostGrowth(
    "avail07",
    "a 64 MiB answer",
    "bigreply",
    "gRPC's receive limit refuses it; host-verified: the host's memory stays bounded",
  ),
  hostGrowth(
    "avail08",
    "timers with huge, infinite, NaN and negative delays",
    "timers",
    "timer overflow only affects the plugin's own event loop; host-verified: it still answers",
  ),
  {
    id: "avail09",
    cls: "availability",
    description: "ignore SIGTERM/SIGINT, then the host kills it",
    expect: "denied",
    run: async (world) => {
      const evidence = await withHostile(world, "avail09", async (client) => {
        await client.dispense(KV).get({ key: "avail:ignoreterm" });
        return [];
      });
      return { evidence, note: "kill() ended it" };
    },
  },
];

/** The host dies (SIGKILL) under a plugin that disabled exit and ignores signals: the plugin must not outlive it. */
const outliveAttempt: LaunchAttempt = {
  id: "avail10",
  cls: "availability",
  description:
    "outlive the host: disable Deno.exit, ignore SIGTERM/SIGHUP/SIGPIPE, then the host is SIGKILLed",
  expect: "denied",
  run: async (world) => {
    const sockets = `${world.dir}/s-avail10`;
    await Deno.mkdir(sockets, { recursive: true });
    const host = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--config",
        `${repoRoot}/deno.json`,
        `${repoRoot}/tests/security/hostile_suite/orphan_host.ts`,
        JSON.stringify({ bundle: world.bundle, sha256: world.bundleSha256, sockets, mode: world.mode }),
      ],
      stdout: "piped",
      stderr: "null",
      stdin: "null",
    }).spawn();
    const reader = host.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let line = "";
    while (!line.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      line += value;
    }
    reader.releaseLock();
    host.kill("SIGKILL");
    await host.status;
    await host.stdout.cancel().catch(() => {});
    if (!line.includes("\n")) throw new Error("the orphaning host did not start its plugin");
    const { tree, privateDir } = JSON.parse(line) as { tree: number[]; privateDir: string };
    const alive = () =>
      tree.filter((pid) => {
        try {
          return !Deno.readTextFileSync(`/proc/${pid}/stat`).includes(") Z ");
        } catch {
          return false;
        }
      });
    // Give a dying sandbox a moment (the plugin's own parent watch polls every second).
    for (let i = 0; i < 30 && alive().length > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const survivors = alive();
    const evidence = survivors.length > 0
      ? [`plugin process(es) ${survivors.join(", ")} outlived the host by 3 s (killed now by the test)`]
      : [];
    for (const pid of survivors) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    await Deno.remove(privateDir, { recursive: true }).catch(() => {});
    return { evidence, note: "the plugin ended with its host" };
  },
};

// ------------------------------------------------------------------ protocol lies
const LIAR = `
const [template, mode] = Deno.args;
const socket = Deno.env.get("TETHER_PLUGIN_SOCKET") ?? "";
const privateDir = socket.slice(0, socket.lastIndexOf("/"));
if (mode === "listen") {
  const listener = Deno.listen({ transport: "unix", path: socket });
  (async () => { for await (const conn of listener) conn.close(); })();
}
if (mode === "junk") console.log("hello from the plugin before its handshake");
if (mode === "huge") { const chunk = new TextEncoder().encode("z".repeat(1 << 20)); for (let i = 0; i < 32; i++) Deno.stdout.writeSync(chunk); }
if (mode === "closeout") { Deno.stdout.close(); await new Promise((r) => setTimeout(r, 30000)); }
console.log(template.replaceAll("{SOCK}", socket).replaceAll("{PRIV}", privateDir));
if (mode === "exit") Deno.exit(0);
await new Promise((r) => setTimeout(r, 8000));
`;

let certLine: Promise<string> | undefined;
const cert = () => certLine ??= generateCertificate().then((c) => encodeRawBase64(c.certDer));

/** Decoys of one attempt: a unix socket at `<world.dir>/decoy-<id>.sock` and a TCP port; they count connections. */
interface Decoy {
  readonly unix: string;
  readonly tcpPort: number;
  readonly hits: string[];
  close(): Promise<void>;
}

function decoy(world: World, id: string): Decoy {
  const unix = `${world.dir}/decoy-${id}.sock`;
  const listeners = [
    Deno.listen({ transport: "unix", path: unix }),
    Deno.listen({ hostname: "0.0.0.0", port: 0 }),
  ];
  const hits: string[] = [];
  const serving = listeners.map(async (listener) => {
    try {
      for await (const conn of listener) {
        hits.push(`${id} reached ${listener.addr.transport === "unix" ? unix : "a TCP decoy"}`);
        conn.close();
      }
    } catch {
      // Closed.
    }
  });
  return {
    unix,
    tcpPort: (listeners[1].addr as Deno.NetAddr).port,
    hits,
    close: async () => {
      for (const listener of listeners) listener.close();
      await Promise.all(serving);
    },
  };
}

function lie(
  id: string,
  description: string,
  line: (w: World, cert: string, decoy: Decoy) => string,
  mode = "",
  extra: Partial<Probe> = {},
): LaunchAttempt {
  return {
    id,
    cls: "protocol-lies",
    description,
    expect: "denied",
    run: async (world) => {
      const before = Deno.memoryUsage().rss;
      const own = decoy(world, id);
      try {
        const result = await probe(world, id, {
          files: { "liar.ts": LIAR },
          entry: "liar.ts",
          args: [line(world, await cert(), own), mode],
          startTimeoutMs: 8000,
          ...extra,
        });
        const evidence = leaks(world, result, { mustNotStart: true });
        if (own.hits.length > 0) {
          evidence.push(`the host connected where the plugin said (${own.hits.length}x): ${own.hits[0]}`);
        }
        const growth = Deno.memoryUsage().rss - before;
        if (growth > 256 * 2 ** 20) evidence.push(`the HOST grew by ${(growth / 2 ** 20).toFixed(0)} MiB`);
        return { evidence, note: note(result) };
      } finally {
        await own.close();
      }
    },
  };
}

const protocolAttempts: LaunchAttempt[] = [
  lie(
    "proto01",
    "handshake naming the host's own unix socket (a foreign address)",
    (_w, c, d) => `1|1|unix|${d.unix}|grpc|${c}`,
  ),
  lie(
    "proto02",
    "handshake naming a TCP listener of the host (a foreign address)",
    (_w, c, d) => `1|1|tcp|127.0.0.1:${d.tcpPort}|grpc|${c}`,
  ),
  lie(
    "proto03",
    "handshake naming another plugin's socket",
    (w, c) => `1|1|unix|${w.ctx.neighborSocket}|grpc|${c}`,
  ),
  lie(
    "proto04",
    "handshake address leaving its private dir with ../",
    // The private dir is <world.dir>/s-proto04/tether-*: two levels up is where this attempt's decoy listens.
    (_w, c) => `1|1|unix|{PRIV}/../../decoy-proto04.sock|grpc|${c}`,
  ),
  lie("proto05", "absurd app protocol version", (_w, c) => `1|99999999999999999999|unix|{SOCK}|grpc|${c}`),
  lie("proto06", "negative core protocol version", (_w, c) => `-1|1|unix|{SOCK}|grpc|${c}`),
  lie("proto07", "garbage certificate", () => {
    const bytes = crypto.getRandomValues(new Uint8Array(300));
    return `1|1|unix|{SOCK}|grpc|${encodeRawBase64(bytes)}`;
  }, "listen"),
  lie(
    "proto08",
    "a foreign (valid, self-signed) certificate on a socket that does not speak TLS",
    (_w, c) => `1|1|unix|{SOCK}|grpc|${c}`,
    "listen",
  ),
  lie(
    "proto09",
    "no certificate although the host asked for AutoMTLS (fail-open mTLS)",
    () => `1|1|unix|{SOCK}|grpc|`,
    "listen",
  ),
  lie("proto10", "output before the handshake line", (_w, c) => `1|1|unix|{SOCK}|grpc|${c}`, "junk"),
  lie("proto11", "a 32 MiB first line with no newline", () => "", "huge"),
  lie(
    "proto12",
    "valid-looking handshake, then exit at once",
    (_w, c) => `1|1|unix|{SOCK}|grpc|${c}`,
    "exit",
  ),
  lie("proto13", "net/rpc protocol in the handshake", () => `1|1|unix|{SOCK}|netrpc|`, "listen"),
  lie("proto14", "closes stdout without a handshake and keeps running", () => "", "closeout", {
    startTimeoutMs: 2000,
  }),
  lie(
    "proto15",
    "handshake naming a unix socket in the write grant the plugin made itself",
    (w, c) => `1|1|unix|${w.ctx.out}/own.sock|grpc|${c}`,
  ),
];

// ------------------------------------------------------------------ host inputs
/** The config loader's documented errors: TetherError, or the SFTPGo loader's ConfigError naming file:line:col. */
function clearConfigError(error: unknown): string[] {
  if (error instanceof TetherError) return [];
  if (error instanceof ConfigError && /\.yaml:\d+:\d+/.test(error.message)) return [];
  return [`not a clear config error: ${String(error).slice(0, 120)}`];
}

function input(
  id: string,
  description: string,
  build: (w: World) => Probe | Promise<Probe>,
  reason?: string,
): LaunchAttempt {
  return {
    id,
    cls: "host-inputs",
    description,
    expect: reason ? "harmless" : "denied",
    reason,
    run: async (world) => {
      const result = await probe(world, id, await build(world));
      return { evidence: leaks(world, result), note: note(result) };
    },
  };
}

const readerTree = (w: World) => ({ "reader.ts": reader(w) });

const inputAttempts: LaunchAttempt[] = [
  input("input01", "cmd '--allow-all' (runtime deno) with the real entry as its first arg", (w) => ({
    files: readerTree(w),
    cmd: "--allow-all",
    args: [`${w.dir}/trees/input01/reader.ts`],
  })),
  input("input02", "cmd '--import-map=<outside map>' smuggling an import map", async (w) => {
    const dir = await outside(w);
    await Deno.writeTextFile(
      `${dir}/map2.json`,
      JSON.stringify({ imports: { "innocent": fileUrl(w.ctx.outsideModule) } }),
    );
    return {
      files: { "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n` },
      cmd: `--import-map=${dir}/map2.json`,
      args: [`${w.dir}/trees/input02/main.ts`],
    };
  }),
  input("input03", "read grant with a comma (granted,<secrets dir>)", (w) => ({
    files: readerTree(w),
    entry: "reader.ts",
    permissions: { read: [`${w.ctx.granted},${w.ctx.root}`] },
  })),
  input("input04", "net grant starting with '-' (--allow-all)", (w) => ({
    files: readerTree(w),
    entry: "reader.ts",
    permissions: { net: ["--allow-all"] },
  })),
  input("input05", "env grant with a comma naming the secret variable", (w) => ({
    files: readerTree(w),
    entry: "reader.ts",
    permissions: { env: [`HOSTILE_OK,${w.ctx.envSecretName}`] },
  })),
  input("input06", "plugin args '-A --allow-read' after the entry", (w) => ({
    files: readerTree(w),
    entry: "reader.ts",
    args: ["-A", "--allow-read", "--allow-env"],
  })),
  input(
    "input07",
    "'..' in a read grant (<granted>/../granted names the grant itself, not its parent)",
    (w) => ({
      files: readerTree(w),
      entry: "reader.ts",
      permissions: { read: [`${w.ctx.granted}/../granted`] },
    }),
  ),
  {
    id: "input08",
    cls: "host-inputs",
    description: "env option LD_PRELOAD=<outside .so> (native code before Deno's sandbox starts)",
    expect: "denied",
    run: async (world) => {
      const dir = await outside(world);
      const marker = `${dir}/ldpreload-marker`;
      await Deno.writeTextFile(
        `${dir}/evil.c`,
        `#include <stdio.h>\n__attribute__((constructor)) static void init(void) { FILE *f = fopen("${marker}", "w"); if (f) { fputs("x", f); fclose(f); } }\n`,
      );
      const cc = await new Deno.Command("cc", {
        args: ["-shared", "-fPIC", "-o", `${dir}/evil.so`, `${dir}/evil.c`],
        stderr: "piped",
      })
        .output();
      if (!cc.success) throw new Error(`cc failed: ${new TextDecoder().decode(cc.stderr)}`);
      const result = await probe(world, "input08", {
        files: readerTree(world),
        entry: "reader.ts",
        env: { LD_PRELOAD: `${dir}/evil.so` },
      });
      const evidence = leaks(world, result);
      try {
        Deno.lstatSync(marker);
        evidence.push("the preloaded library ran in the plugin's process");
      } catch {
        // Good.
      }
      return { evidence, note: note(result) };
    },
  },
  {
    id: "input09",
    cls: "host-inputs",
    description: "env option DENO_PERMISSION_BROKER_PATH=<an attacker's broker that allows everything>",
    expect: "denied",
    run: async (world) => {
      const dir = await outside(world);
      const listener = Deno.listen({ transport: "unix", path: `${dir}/evil-broker.sock` });
      const serving = (async () => {
        for await (const conn of listener) {
          (async () => {
            let pending = "";
            try {
              for await (const chunk of conn.readable.pipeThrough(new TextDecoderStream())) {
                pending += chunk;
                let i: number;
                while ((i = pending.indexOf("\n")) >= 0) {
                  const request = JSON.parse(pending.slice(0, i));
                  pending = pending.slice(i + 1);
                  await conn.write(
                    new TextEncoder().encode(JSON.stringify({ id: request.id, result: "allow" }) + "\n"),
                  );
                }
              }
            } catch {
              // Gone.
            }
          })();
        }
      })().catch(() => {});
      try {
        const result = await probe(world, "input09", {
          files: readerTree(world),
          entry: "reader.ts",
          env: { DENO_PERMISSION_BROKER_PATH: `${dir}/evil-broker.sock` },
        });
        return { evidence: leaks(world, result), note: note(result) };
      } finally {
        listener.close();
        await serving;
      }
    },
  },
  {
    id: "input10",
    cls: "host-inputs",
    description: "startTimeoutMs 2**40 (a timer that overflows)",
    expect: "denied",
    run: async (world) => {
      let client: PluginClient;
      try {
        client = new PluginClient(withIsolation(world, {
          cmd: world.bundle,
          sha256: world.bundleSha256,
          runtime: "deno",
          handshake: kvHandshake,
          unixSocketDir: world.sockets,
          args: ["{}"],
          name: "input10",
          startTimeoutMs: 2 ** 40,
        }));
      } catch (refused) {
        // Refusing a timer it cannot honour is a fine answer too.
        const clear = refused instanceof TetherError && refused.code === "config";
        return {
          evidence: clear ? [] : [`unclear refusal: ${String(refused)}`],
          note: `refused: ${String(refused).slice(0, 140)}`,
        };
      }
      const evidence: string[] = [];
      let outcome = "started";
      try {
        await client.start();
        await client.ping();
      } catch (error) {
        outcome = String(error).slice(0, 160);
        if (error instanceof TetherError && error.code === "start_timeout") {
          evidence.push(`a huge start timeout fired at once: ${outcome}`);
        }
      } finally {
        await client.kill();
      }
      return { evidence, note: outcome };
    },
  },
  input("input11", "startTimeoutMs -5", (w) => ({
    files: readerTree(w),
    entry: "reader.ts",
    startTimeoutMs: -5,
  })),
  {
    id: "input12",
    cls: "host-inputs",
    description: "plugin name with ../ and an integrityDir (where does the verified copy go?)",
    expect: "denied",
    run: async (world) => {
      const integrityDir = `${world.dir}/integrity`;
      const client = new PluginClient(withIsolation(world, {
        cmd: world.bundle,
        sha256: world.bundleSha256,
        runtime: "deno",
        handshake: kvHandshake,
        unixSocketDir: world.sockets,
        integrityDir,
        args: ["{}"],
        name: "../../escaped-input12",
      }));
      try {
        await client.start().catch(() => {});
      } finally {
        await client.kill();
      }
      const evidence: string[] = [];
      for (const dir of [world.dir, `${world.dir}/..`]) {
        for (const entry of Deno.readDirSync(dir)) {
          if (entry.name.includes("escaped-input12")) {
            evidence.push(`the copy landed outside integrityDir: ${dir}/${entry.name}`);
          }
        }
      }
      return { evidence, note: "copy stayed in integrityDir" };
    },
  },
  {
    id: "input13",
    cls: "host-inputs",
    description: "YAML alias bomb in a plugins config",
    expect: "denied",
    run: () => {
      const lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"];
      for (let i = 1; i < 12; i++) lines.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(", ")}]`);
      lines.push("plugins: *a11");
      const start = Date.now();
      try {
        parsePluginsConfig(lines.join("\n"), "bomb.yaml");
        return Promise.resolve({ evidence: ["an alias bomb was accepted"], note: "" });
      } catch (error) {
        const evidence = clearConfigError(error);
        if (Date.now() - start > 20_000) evidence.push("the host spent over 20 s on it");
        return Promise.resolve({ evidence, note: String(error).split("\n")[0].slice(0, 160) });
      }
    },
  },
  {
    id: "input14",
    cls: "host-inputs",
    description: "100000-deep nesting in a plugins config",
    expect: "denied",
    run: () => {
      try {
        parsePluginsConfig(`plugins: ${"[".repeat(100_000)}${"]".repeat(100_000)}`, "deep.yaml");
        return Promise.resolve({ evidence: ["deep nesting was accepted"], note: "" });
      } catch (error) {
        return Promise.resolve({
          evidence: clearConfigError(error),
          note: String(error).split("\n")[0].slice(0, 160),
        });
      }
    },
  },
  {
    id: "input15",
    cls: "host-inputs",
    description:
      "env option overriding the handshake's own variable TETHER_PLUGIN_SOCKET (-> the host's socket)",
    expect: "denied",
    run: async (world) => {
      const result = await probe(world, "input15", {
        files: {
          "main.ts": `console.error("SOCK=" + Deno.env.get("TETHER_PLUGIN_SOCKET"));\nDeno.exit(3);\n`,
        },
        env: { TETHER_PLUGIN_SOCKET: world.ctx.unixDecoy },
      });
      const evidence = leaks(world, result);
      if (result.output.includes(`SOCK=${world.ctx.unixDecoy}`)) {
        evidence.push("the env option replaced Tether's socket path");
      }
      return { evidence, note: note(result) };
    },
  },
];

/** The isolation of the launch is real (namespaces mode only). */
const isolationAttempts: LaunchAttempt[] = [{
  id: "iso01",
  cls: "host-inputs",
  description:
    "isolation: 'namespaces' is honoured: a plugin with no TCP grant runs in its own mount, pid and " +
    "network namespaces (seen from the host's /proc)",
  expect: "denied",
  modes: ["namespaces"],
  run: async (world) => {
    const client = new PluginClient(withIsolation(world, {
      cmd: world.bundle,
      sha256: world.bundleSha256,
      runtime: "deno",
      handshake: kvHandshake,
      unixSocketDir: world.sockets,
      permissions: { read: [world.ctx.granted] },
      args: [JSON.stringify(world.ctx)],
      name: "iso01",
    }));
    const evidence: string[] = [];
    try {
      await client.start();
      const ns = inOwnNamespaces(client.pid!);
      const missing = Object.entries(ns).filter(([, own]) => !own).map(([kind]) => kind);
      if (missing.length > 0) evidence.push(`runs in the host's ${missing.join(", ")} namespace(s)`);
      // And it still works through its socket.
      const answer = text((await client.dispense(KV).get({ key: "control:read" })).value);
      if (answer !== "public\n") evidence.push(`the granted file read ${JSON.stringify(answer)}`);
    } finally {
      await client.kill();
    }
    return { evidence, note: "own mount, pid and network namespaces" };
  },
}];

const serial = (a: LaunchAttempt): LaunchAttempt => ({ ...a, serial: true });
// Judged by the host's own memory.
const SERIAL_LIES = new Set(["proto11"]);

/** Every attempt with a launch of its own, in the order they are reported. */
export const LAUNCH_ATTEMPTS: readonly LaunchAttempt[] = [
  ...isolationAttempts.map(serial),
  ...moduleAttempts,
  ...channelAttempts,
  ...stateAttempts,
  ...availabilityAttempts.map(serial),
  serial(outliveAttempt),
  ...protocolAttempts.map((a) => SERIAL_LIES.has(a.id) ? serial(a) : a),
  ...inputAttempts,
];
