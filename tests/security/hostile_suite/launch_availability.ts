/**
 * Launch attempts on availability: busy loops, memory bombs, floods, signals, outliving the host.
 *
 * @module
 */

import type { PluginClient } from "../../../mod.ts";
import { KV } from "../../../src/gen/tether/kv/v1/kv_pb.ts";
import { repoRoot } from "../../helpers.ts";
import { text } from "../support.ts";
import { startHostile } from "./in_process.ts";
import { descendants, Records, treeRss, type World } from "./world.ts";
import { GIB, type LaunchAttempt } from "./probe.ts";
import { DEFAULT_DATA_MIB } from "../../../src/isolation.ts";

// ------------------------------------------------------------------ availability
function withHostile(
  world: World,
  id: string,
  fn: (client: PluginClient) => Promise<string[]>,
): Promise<string[]> {
  return withHostileLogged(world, id, new Records([world.token]), fn);
}

/** The DENO_AUDIT_PERMISSIONS file of the deno process at or below `pid` (its environment, same uid). */
function auditFileOf(pid: number): string | undefined {
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const env = Deno.readTextFileSync(`/proc/${p}/environ`).split("\0");
      const found = env.find((entry) => entry.startsWith("DENO_AUDIT_PERMISSIONS="));
      if (found) return found.slice("DENO_AUDIT_PERMISSIONS=".length);
    } catch {
      // Gone, or not ours.
    }
  }
  return undefined;
}

async function withHostileLogged(
  world: World,
  id: string,
  logger: Records,
  fn: (client: PluginClient) => Promise<string[]>,
): Promise<string[]> {
  const client = await startHostile(world, id, logger);
  const pid = client.pid!;
  let evidence: string[] = [];
  try {
    evidence = await fn(client);
  } finally {
    await client.kill();
  }
  evidence.push(...logger.seen.map((excerpt) => `a host secret in the plugin's logs: ${excerpt}`));
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
const MIB = 2 ** 20;

function memoryBomb(id: string, mode: "heap" | "offheap", description: string): LaunchAttempt {
  // The heap bomb asks for 1.125 GiB (over the 512 MiB heap cap); the off-heap one for 256 MiB more than the
  // default RLIMIT_DATA, whatever that is.
  const cap = DEFAULT_DATA_MIB * MIB;
  const target = mode === "heap" ? 1.125 * GIB : cap + 256 * MIB;
  return {
    id,
    cls: "availability",
    description,
    expect: "denied",
    run: async (world) => {
      let peak = 0;
      let answer = "";
      const evidence = await withHostile(world, id, async (client) => {
        const call = client.dispense(KV).get({ key: `avail:${mode}:${target}` }, { timeoutMs: 60_000 }).then(
          (r) => answer = text(r.value),
          (e) => answer = `failed: ${String(e).slice(0, 120)}`,
        );
        let settled = false;
        call.finally(() => settled = true);
        while (!settled) {
          peak = Math.max(peak, treeRss(client.pid!));
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        if (mode === "heap") {
          return peak >= GIB
            ? [`the plugin held ${(peak / GIB).toFixed(2)} GiB resident: no memory cap (${answer})`]
            : [];
        }
        // Off the heap only RLIMIT_DATA holds it: the bomb asks for more than the default cap, which must stop
        // it before it holds that much (the cap holds, whatever its value).
        const found: string[] = [];
        if (peak >= cap) {
          found.push(`the plugin held ${(peak / MIB).toFixed(0)} MiB resident, at or past the cap`);
        }
        if (answer.startsWith("held")) {
          found.push(`it allocated all ${target} bytes past the cap (${answer})`);
        }
        return found;
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

export const availabilityAttempts: LaunchAttempt[] = [
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
  memoryBomb(
    "avail04",
    "offheap",
    `memory bomb off the heap (ArrayBuffers, up to the default data cap + 256 MiB = ${
      DEFAULT_DATA_MIB + 256
    } MiB)`,
  ),
  hostGrowth(
    "avail05",
    "32 MiB flood on stdout after the handshake",
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
    id: "avail11",
    cls: "availability",
    description: "flood its permission audit past 64 MiB (600,000 granted checks), then one denied check",
    expect: "denied",
    serial: true,
    run: async (world) => {
      const nonce = crypto.randomUUID();
      const end = `/tether-audit-flood-end-${nonce}`;
      let outcome = "";
      let allocated = 0;
      let audit = "";
      const logger = new Records([world.token]);
      const evidence = await withHostileLogged(world, "avail11", logger, async (client) => {
        audit = auditFileOf(client.pid!) ?? "";
        outcome = await client.dispense(KV).get({ key: `avail:auditflood:600000:${nonce}` }, {
          timeoutMs: 120_000,
        })
          .then((r) => text(r.value), (e) => `failed: ${String(e).slice(0, 200)}`);
        try {
          allocated = (Deno.statSync(audit).blocks ?? 0) * 512;
        } catch {
          // Gone with the plugin (killed for the flood).
        }
        // The host follows the audit every 100 ms: give it a moment to reach the last line.
        for (let i = 0; i < 50 && !world.events.some((e) => e.target === end); i++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        return [];
      });
      const seen = world.events.some((e) => e.plugin === "avail11" && e.target === end);
      const lost = logger.records.some((r) => /bytes of audit lost/.test(String(r.fields.reason)));
      const ended = /resource_limit|faster than the host could read/.test(outcome);
      if (!seen && !lost && !ended) {
        evidence.push(
          `the host never saw the denied check after the flood, counted no loss, and the plugin lived on`,
        );
      }
      if (allocated > 72 * 2 ** 20) evidence.push(`the audit file held ${allocated} bytes on disk`);
      if (audit === "") evidence.push("could not find the plugin's audit file (test harness)");
      return {
        evidence,
        note: `${outcome}; end denial ${seen ? "seen" : "not seen"}${lost ? ", lost lines reported" : ""}${
          ended ? ", plugin ended" : ""
        }; audit file ${(allocated / 2 ** 20).toFixed(1)} MiB on disk`,
      };
    },
  },
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
export const outliveAttempt: LaunchAttempt = {
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
