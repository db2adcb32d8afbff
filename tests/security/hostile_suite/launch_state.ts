/**
 * Launch attempts on shared state: storage that persists across launches or is shared with the host.
 *
 * @module
 */

import { repoRoot } from "../../helpers.ts";
import { removeOriginStorage, storageHolding, type World } from "./world.ts";
import { type LaunchAttempt, note, probe, type ProbeResult } from "./probe.ts";

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

export const stateAttempts: LaunchAttempt[] = [
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
  {
    id: "lstate07",
    cls: "shared-state",
    description:
      "storage written by the storage launches (localStorage, CacheStorage, KV) is gone once they ended",
    expect: "denied",
    run: async (world) => {
      await storageLaunches(world);
      const left = storageHolding(`PERSIST-${world.token}`);
      removeOriginStorage(left);
      return {
        evidence: left.map((path) => `a finished launch's storage is still in DENO_DIR: ${path}`),
        note: "nothing left in DENO_DIR",
      };
    },
  },
  storage(
    "lstate06",
    "Deno.openKv() turned on by the plugin's own deno.json ('unstable': ['kv']), read by the next launch",
    "kv",
    "KV",
  ),
];
