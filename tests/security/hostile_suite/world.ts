/**
 * The world a hostile suite run attacks, built by the host: canaries with a
 * random token, decoy listeners that record who reached them, a neighbour
 * plugin, the bundled hostile plugin and its SHA-256, and the host-side
 * detectors (processes, files, memory) the verdicts rest on.
 *
 * @module
 */

import dgram from "node:dgram";
import {
  type LogRecord,
  type PermissionEvent,
  PluginClient,
  type PluginClientOptions,
} from "../../../mod.ts";
import type { HostileContext } from "../../fixtures/hostile_suite/attempts.ts";
import { kvHandshake, shortTempDir } from "../support.ts";
import { repoRoot } from "../../helpers.ts";
import { sha256Hex } from "../../../src/integrity.ts";

/** The isolation modes the sandbox offers (PluginClient option `isolation`). */
export type IsolationMode = "namespaces" | "deno-only";

/**
 * A logger that keeps records, but only their first 2 KiB: a plugin can log lines of any length and a test
 * harness that kept them all would itself be the memory the availability attempts measure. Every record is
 * searched IN FULL for the `watch` strings first; `seen` keeps an excerpt around each hit.
 */
export class Records {
  readonly records: LogRecord[] = [];
  readonly seen: string[] = [];
  constructor(readonly watch: readonly string[] = []) {}
  log(record: LogRecord): void {
    const full = `${record.message} ${JSON.stringify(record.fields)}`;
    for (const needle of this.watch) {
      const at = full.indexOf(needle);
      if (at >= 0) this.seen.push(full.slice(Math.max(0, at - 60), at + needle.length + 60));
    }
    const fields = JSON.stringify(record.fields).length > 2048
      ? { plugin: record.fields.plugin, truncated: true }
      : record.fields;
    this.records.push({ ...record, message: record.message.slice(0, 2048), fields });
  }
  text(): string {
    return [...this.records.map((r) => `${r.message} ${JSON.stringify(r.fields)}`), ...this.seen].join("\n");
  }
}

/** Everything a run needs. */
export interface World {
  readonly mode: IsolationMode;
  readonly dir: string;
  /** Where launches put their private dirs. */
  readonly sockets: string;
  readonly ctx: HostileContext;
  /** The random token in every secret: any answer, log or file containing it is a leak. */
  readonly token: string;
  readonly bundle: string;
  readonly bundleSha256: string;
  /** Who reached a decoy: `<current attempt id> <first line>`. */
  readonly hits: string[];
  /** The attempt running now (decoy hits are charged to it). */
  current: string;
  readonly neighbor: PluginClient;
  /** Entries of root right after setup. */
  readonly rootEntries: Set<string>;
  readonly canaryStat: Deno.FileInfo;
  /** Permission events of every launch (plugin name, source, target). */
  readonly events: PermissionEvent[];
  readonly hostNice: string;
  close(): Promise<void>;
}

/** Options every launch of the suite gets: the isolation mode (cast: the option is the sandbox branch's). */
export function withIsolation(world: World, options: PluginClientOptions): PluginClientOptions {
  return { ...options, isolation: world.mode } as PluginClientOptions;
}

function random(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
}

/** Nice value of the host (field 19 of /proc/self/stat). */
export function hostNice(): string {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16];
}

/** Pids of every process below `pid`. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry.name));
      children.set(ppid, list);
    } catch {
      // Gone.
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const child of children.get(p) ?? []) {
      out.push(child);
      walk(child);
    }
  };
  walk(pid);
  return out;
}

let denoDir: string | undefined;

/**
 * Files of DENO_DIR's per-origin storage (localStorage, CacheStorage, KV: `location_data`) that hold `marker`
 * (as UTF-8 or UTF-16): storage a plugin wrote that outlived its launch.
 */
export function storageHolding(marker: string): string[] {
  denoDir ??= (JSON.parse(
    new TextDecoder().decode(
      new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).outputSync().stdout,
    ),
  ) as { denoDir: string }).denoDir;
  const needles = [
    new TextEncoder().encode(marker),
    new Uint8Array([...marker].flatMap((c) => [c.charCodeAt(0), 0])),
  ];
  const found: string[] = [];
  const walk = (dir: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.isFile) {
        try {
          const bytes = Deno.readFileSync(path);
          if (needles.some((needle) => indexOf(bytes, needle) >= 0)) found.push(path);
        } catch {
          // Gone or unreadable.
        }
      }
    }
  };
  walk(`${denoDir}/location_data`);
  return found;
}

/** Removes the origin directories (`location_data/<hash>`) holding these files: the suite leaves nothing behind. */
export function removeOriginStorage(paths: readonly string[]): void {
  const dirs = new Set(
    paths.map((path) => /^(.*\/location_data\/(?:web_cache\/)?[0-9a-f]{64})\//.exec(path)?.[1]),
  );
  for (const dir of dirs) {
    if (dir) Deno.removeSync(dir, { recursive: true });
  }
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Resident memory (bytes) of a process and everything below it. */
export function treeRss(pid: number): number {
  let total = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const status = Deno.readTextFileSync(`/proc/${p}/status`);
      const match = /VmRSS:\s+(\d+) kB/.exec(status);
      if (match) total += Number(match[1]) * 1024;
    } catch {
      // Gone.
    }
  }
  return total;
}

/** Whether `pid` (or any process below it) runs in a mount namespace other than the host's. */
export function inOwnNamespaces(pid: number): { mnt: boolean; pid: boolean; net: boolean } {
  const own = (kind: string) => {
    const host = Deno.readLinkSync(`/proc/self/ns/${kind}`);
    return [pid, ...descendants(pid)].some((p) => {
      try {
        return Deno.readLinkSync(`/proc/${p}/ns/${kind}`) !== host;
      } catch {
        return false;
      }
    });
  };
  return { mnt: own("mnt"), pid: own("pid"), net: own("net") };
}

/** Whether bubblewrap can make namespaces here. */
export async function namespacesAvailable(): Promise<string | undefined> {
  try {
    const out = await new Deno.Command("bwrap", {
      args: ["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true"],
      stdout: "null",
      stderr: "piped",
    }).output();
    return out.success ? undefined : new TextDecoder().decode(out.stderr).trim() || `exit ${out.code}`;
  } catch (error) {
    return String(error);
  }
}

/** Bundles the hostile plugin into `dir` (one file, as an operator deploys a plugin with a digest). */
export async function hostileBundle(dir: string): Promise<{ path: string; sha256: string }> {
  const path = `${dir}/hostile.bundle.js`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--config",
      `${repoRoot}/deno.json`,
      `${repoRoot}/tests/fixtures/hostile_suite/plugin.ts`,
      "-o",
      path,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno bundle of the hostile plugin failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return { path, sha256: await sha256Hex(await Deno.readFile(path)) };
}

/**
 * Plants the links "someone else" left in the read grant (fs44, mod19): `link.txt` -> the canary,
 * `linkmod.js` -> the outside module. Returns a function that removes them.
 */
export async function plantGrantLinks(
  granted: string,
  canary: string,
  outsideModule: string,
): Promise<() => void> {
  await Deno.symlink(canary, `${granted}/link.txt`);
  await Deno.symlink(outsideModule, `${granted}/linkmod.js`);
  return () => {
    for (const name of ["link.txt", "linkmod.js"]) Deno.removeSync(`${granted}/${name}`);
  };
}

/** Builds the world. */
export async function buildWorld(mode: IsolationMode): Promise<World> {
  const token = random();
  const dir = await shortTempDir("hs");
  const root = `${dir}/root`;
  const sockets = `${dir}/s`;
  const granted = `${root}/granted`;
  const out = `${root}/out`;
  for (const d of [root, sockets, granted, out]) await Deno.mkdir(d, { mode: 0o755 });
  const canary = `${root}/secret.txt`;
  await Deno.writeTextFile(canary, `CANARY-${token}\n`);
  await Deno.writeTextFile(`${root}/keep.txt`, `KEEP-${token}\n`);
  await Deno.writeTextFile(`${root}/secret.json`, JSON.stringify({ secret: `JSON-${token}` }));
  await Deno.writeTextFile(
    `${root}/mod.js`,
    `export const secret = "MODULE-${token}";\nconsole.error("GOT:MODULE-${token}");\n`,
  );
  await Deno.writeTextFile(`${root}/worker.js`, `postMessage("WORKER-${token}");\n`);
  await Deno.writeTextFile(`${root}/mod.cjs`, `module.exports = { secret: "CJS-${token}" };\n`);
  await Deno.writeTextFile(`${root}/.env`, `HOSTILE_DOTENV=DOTENV-${token}\n`);
  await Deno.symlink(canary, `${root}/link`);
  await Deno.writeTextFile(`${granted}/public.txt`, "public\n");
  // Someone else (not the plugin) left links in the granted directory. Without namespaces Tether refuses to
  // launch a plugin whose read grant holds such a link (fs44, mod19 are then judged on launches of their own,
  // see in_process.ts), so there the shared grant gets them only for those launches.
  if (mode === "namespaces") await plantGrantLinks(granted, canary, `${root}/mod.js`);

  const hits: string[] = [];
  const world: { current: string } = { current: "setup" };
  const record = (line: string) => hits.push(`${world.current} ${line.split("\n")[0].slice(0, 120)}`);

  const tcp = Deno.listen({ hostname: "0.0.0.0", port: 0 });
  const tcpPort = (tcp.addr as Deno.NetAddr).port;
  const unixDecoy = `${root}/decoy.sock`;
  const unix = Deno.listen({ transport: "unix", path: unixDecoy });
  const accepting = [tcp, unix].map(async (listener) => {
    try {
      for await (const conn of listener) {
        const at = world.current;
        (async () => {
          const buf = new Uint8Array(256);
          const n = await Promise.race([
            conn.read(buf).catch(() => null),
            new Promise<null>((r) => setTimeout(() => r(null), 300)),
          ]);
          hits.push(
            `${at} connection: ${
              new TextDecoder().decode(buf.subarray(0, n ?? 0)).split("\n")[0].slice(0, 120)
            }`,
          );
          try {
            conn.close();
          } catch {
            // Closed.
          }
        })();
      }
    } catch {
      // Closed.
    }
  });
  const udp = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", () => resolve()));
  udp.on("message", (message) => record(`udp: ${message}`));
  const udpPort = udp.address().port;

  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/redirect") {
      return Response.redirect(`http://127.0.0.1:${tcpPort}/${url.searchParams.get("to")}`, 302);
    }
    return new Response("granted host\n");
  });
  const httpPort = http.addr.port;

  const bundle = await hostileBundle(dir);
  const events: PermissionEvent[] = [];
  const neighborEnvName = "HOSTILE_NEIGHBOR_SECRET";
  const hostEnvName = "HOSTILE_HOST_SECRET";
  Deno.env.set(hostEnvName, `HOSTENV-${token}`);
  const neighbor = new PluginClient(
    {
      cmd: bundle.path,
      sha256: bundle.sha256,
      runtime: "deno",
      handshake: kvHandshake,
      unixSocketDir: sockets,
      env: { [neighborEnvName]: `NEIGHBOR-${token}` },
      name: "neighbor",
      args: ["{}"],
      isolation: mode,
    } as PluginClientOptions,
  );
  await neighbor.start();

  const ctx: HostileContext = {
    root,
    canary,
    keep: `${root}/keep.txt`,
    secretJson: `${root}/secret.json`,
    outsideModule: `${root}/mod.js`,
    outsideWorker: `${root}/worker.js`,
    outsideCjs: `${root}/mod.cjs`,
    dotenv: `${root}/.env`,
    hostLink: `${root}/link`,
    granted,
    out,
    tcpPort,
    udpPort,
    httpPort,
    unixDecoy,
    hostPid: Deno.pid,
    neighborPid: neighbor.pid!,
    neighborSocket: neighbor.endpoint!.address,
    envSecretName: "HOSTILE_ENV_SECRET",
    hostEnvName,
    neighborEnvName,
    repo: repoRoot,
    // The key is not the secret (the value is), so the plugin may know it.
    hostStorageKey: `hostile-host-${random()}`,
  };
  // The host's own storage (same origin as a plugin run with the repository's deno.json).
  localStorage.setItem(ctx.hostStorageKey, `HOSTSTORE-${token}`);
  try {
    const cache = await caches.open("tether-host");
    await cache.put(`https://host.invalid/${ctx.hostStorageKey}`, new Response(`HOSTCACHE-${token}`));
  } catch {
    // No CacheStorage in this host.
  }

  const rootEntries = new Set([...Deno.readDirSync(root)].map((e) => e.name));
  const canaryStat = await Deno.stat(canary);
  return Object.assign(world, {
    mode,
    dir,
    sockets,
    ctx,
    token,
    bundle: bundle.path,
    bundleSha256: bundle.sha256,
    hits,
    neighbor,
    rootEntries,
    canaryStat,
    events,
    hostNice: hostNice(),
    close: async () => {
      await neighbor.kill();
      tcp.close();
      unix.close();
      udp.close();
      await http.shutdown();
      await Promise.all(accepting);
      localStorage.removeItem(ctx.hostStorageKey);
      await caches.delete("tether-host").catch(() => false);
      Deno.env.delete(hostEnvName);
      await Deno.remove(dir, { recursive: true });
    },
  }) as World;
}

/**
 * The labels Tether gives permission events, all of them "the plugin's word" (it writes its own audit). A
 * forged record that came out with any other label would pass as the runtime's: an escape.
 */
export const UNTRUSTED_SOURCES: readonly string[] = ["plugin", "plugin-audit"];
