/**
 * The notifier side of the benchmark: filesystem events into one TypeScript
 * notifier plugin (bench/fixtures/count_notifier.ts, which counts what
 * arrives), four ways, in one process run:
 *
 * 1. **ordered**: through {@linkcode PluginManager} (`sendFsEvent`, then
 *    `flush`), its default lane: one event at a time, in order;
 * 2. **unordered**: through {@linkcode PluginManager} with
 *    `tether: { notifier_order: unordered }`: a send per event, at most 250
 *    in flight (`notifierConcurrency`'s default, SFTPGo's bound);
 * 3. **sftpgo**: SFTPGo's own way (tests/interop/go/cmd/benchnotifier): a
 *    goroutine per event, unordered;
 * 4. **unordered_direct**: the same sends outside PluginManager: a
 *    PluginClient and a NotifierClient with up to 250 events in flight, no
 *    retry queue, no bookkeeping; what the manager's own overhead is
 *    measured against;
 * 5. **sftpgo_floor**: SFTPGo's sender into the floor plugin
 *    (bench/floor/plugin.ts: `node:http2` answering every event with a
 *    precomputed empty message, no Tether, no protobuf): the most any Deno
 *    plugin can take from that sender.
 *
 * Each run starts a fresh plugin; "lost" is events sent minus events the
 * plugin counted. Prints one JSON object ({@linkcode NotifierResult}):
 *
 *   deno run -A bench/notifier.ts [--events 20000] [--rounds 1] [--only ordered|unordered|sftpgo|unordered_direct|sftpgo_floor]
 *
 * With `--rounds N` every mode runs N times, interleaved, and its median round
 * is reported (with each round's rate).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { PluginManager } from "../src/sftpgo/manager.ts";
import { NotifierClient } from "../src/sftpgo/notifier_client.ts";
import { sftpgoHandshakes } from "../src/sftpgo/handshakes.ts";
import { PluginClient } from "../src/client.ts";
import { parsePluginsConfig } from "../src/sftpgo/config.ts";
import { goFixture, repoRoot } from "../tests/helpers.ts";
import { writeFloorCertificates } from "./floor/certs.ts";
import type { Logger } from "../mod.ts";

/** One delivery mode's figures. */
export interface NotifierModeResult {
  /** Events handed to the sender. */
  events: number;
  /** Events the plugin counted. */
  received: number;
  /** events - received. */
  lost: number;
  /** Sending the events until the last was delivered, seconds. */
  seconds: number;
  /** received / seconds (with `--rounds` > 1: of the median round). */
  events_per_s: number;
  /** With `--rounds` > 1: each round's events_per_s, in run order. */
  rounds_events_per_s?: number[];
}

/** What bench/notifier.ts prints. */
export interface NotifierResult {
  ordered: NotifierModeResult;
  unordered: NotifierModeResult;
  sftpgo: NotifierModeResult;
  unordered_direct: NotifierModeResult;
  sftpgo_floor: NotifierModeResult;
}

const plugin = `${repoRoot}/bench/fixtures/count_notifier.ts`;

async function counted(out: string): Promise<number> {
  for (let i = 0; i < 50; i++) {
    try {
      return JSON.parse(await Deno.readTextFile(out)).fs;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`the notifier plugin wrote no counts to ${out}`);
}

function figures(events: number, received: number, seconds: number): NotifierModeResult {
  return {
    events,
    received,
    lost: events - received,
    seconds: Math.round(seconds * 1000) / 1000,
    events_per_s: Math.round(received / seconds),
  };
}

/** PluginManager, in the lane `order` chooses. */
async function managed(
  events: number,
  dir: string,
  order: "ordered" | "unordered",
): Promise<NotifierModeResult> {
  const out = `${dir}/${order}.json`;
  const warnings: string[] = [];
  const logger: Logger = {
    log: (record) => {
      if (record.level === "warn" || record.level === "error") warnings.push(record.message);
    },
  };
  const yaml = `
- type: notifier
  cmd: ${plugin}
  args: [--out, ${out}]
  auto_mtls: true
  notifier_options: { fs_events: [upload] }
  tether:
    notifier_order: ${order}
    permissions: { write: [${out}] }
`;
  const manager = new PluginManager(parsePluginsConfig(yaml, "bench.yaml"), {
    baseDir: repoRoot,
    hostEnv: {},
    logger,
    denoConfig: `${repoRoot}/deno.json`,
  });
  await manager.start();
  let seconds: number;
  try {
    manager.notifier.sendFsEvent({ action: "upload", username: "warmup" });
    await manager.notifier.flush();
    const t0 = performance.now();
    for (let i = 0; i < events; i++) {
      manager.notifier.sendFsEvent({
        action: "upload",
        username: "bench",
        virtualPath: `/f${i}`,
        fileSize: i,
      });
    }
    if (!await manager.notifier.flush({ timeoutMs: 600_000 })) {
      throw new Error("notifier queue did not drain");
    }
    seconds = (performance.now() - t0) / 1000;
  } finally {
    await manager.stop();
  }
  if (warnings.length) console.error(`PluginManager warnings: ${warnings.slice(0, 3).join("; ")}`);
  return figures(events, (await counted(out)) - 1, seconds);
}

/** SFTPGo's sender: a goroutine per event; into the Tether plugin, or the floor plugin with `floorCerts`. */
async function sftpgo(events: number, dir: string, floorCerts?: string): Promise<NotifierModeResult> {
  const out = `${dir}/sftpgo.json`;
  const bin = await goFixture("benchnotifier");
  const target = floorCerts
    ? ["--no-config", "-A", `${repoRoot}/bench/floor/plugin.ts`, "--certs", floorCerts]
    : ["--config", `${repoRoot}/deno.json`, "-A", plugin];
  const result = await new Deno.Command(bin, {
    args: ["-events", String(events), "--", Deno.execPath(), "run", "--no-prompt", ...target, "--out", out],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!result.success) {
    throw new Error(`benchnotifier failed: ${new TextDecoder().decode(result.stderr)}`);
  }
  const go = JSON.parse(new TextDecoder().decode(result.stdout).trim().split("\n").pop()!);
  return figures(events, (await counted(out)) - 1, go.seconds);
}

/** Tether host, unordered: up to `inFlight` sends at once on one connection. */
async function unorderedDirect(events: number, dir: string, inFlight = 250): Promise<NotifierModeResult> {
  const out = `${dir}/direct.json`;
  const env: Record<string, string> = {};
  for (const name of ["HOME", "PATH", "DENO_DIR", "TMPDIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  const client = new PluginClient({
    cmd: Deno.execPath(),
    args: ["run", "--no-prompt", "--config", `${repoRoot}/deno.json`, "-A", plugin, "--out", out],
    env,
    handshake: sftpgoHandshakes.notifier,
    autoMTLS: true,
  });
  await client.start();
  let seconds: number;
  try {
    const notifier = new NotifierClient(client);
    await notifier.sendFsEvent({ action: "upload", username: "warmup" });
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: inFlight }, async () => {
      while (next < events) {
        const i = next++;
        await notifier.sendFsEvent({
          action: "upload",
          username: "bench",
          virtualPath: `/f${i}`,
          fileSize: i,
        });
      }
    }));
    seconds = (performance.now() - t0) / 1000;
  } finally {
    await client.kill();
  }
  return figures(events, (await counted(out)) - 1, seconds);
}

const MODES = ["ordered", "unordered", "sftpgo", "unordered_direct", "sftpgo_floor"] as const;
type Mode = typeof MODES[number];

/** The median round by rate (lost and received of that round; a loss in any round is kept). */
function median(runs: NotifierModeResult[]): NotifierModeResult {
  if (runs.length === 1) return runs[0];
  const sorted = [...runs].sort((a, b) => a.events_per_s - b.events_per_s);
  const mid = sorted[Math.floor(sorted.length / 2)];
  return {
    ...mid,
    lost: Math.max(...runs.map((r) => r.lost)),
    rounds_events_per_s: runs.map((r) => r.events_per_s),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      events: { type: "string", default: "20000" },
      rounds: { type: "string", default: "1" },
      only: { type: "string" },
    },
  });
  const events = Number(values.events);
  const rounds = Number(values.rounds);
  for (const [flag, n] of [["--events", events], ["--rounds", rounds]] as const) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected a positive integer, found ${n}`);
  }
  const only = values.only;
  if (only !== undefined && !(MODES as readonly string[]).includes(only)) {
    throw new Error(`--only: expected one of ${MODES.join(", ")}, found ${only}`);
  }
  const modes = MODES.filter((mode) => only === undefined || only === mode);
  // The floor plugin's certificate is made once, before any timing (bench/floor/certs.ts).
  const floorCerts = await Deno.makeTempDir({ prefix: "tether-bench-floor-certs-" });
  await writeFloorCertificates(floorCerts);
  const run = (mode: Mode, dir: string): Promise<NotifierModeResult> =>
    mode === "ordered" || mode === "unordered"
      ? managed(events, dir, mode)
      : mode === "sftpgo" || mode === "sftpgo_floor"
      ? sftpgo(events, dir, mode === "sftpgo_floor" ? floorCerts : undefined)
      : unorderedDirect(events, dir);
  const runs = new Map<Mode, NotifierModeResult[]>(modes.map((mode) => [mode, []]));
  // Rounds interleave the modes, so a change in the machine's load falls on all of them alike.
  for (let round = 0; round < rounds; round++) {
    for (const mode of modes) {
      const dir = await Deno.makeTempDir({ prefix: "tether-bench-notifier-" });
      try {
        runs.get(mode)!.push(await run(mode, dir));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  }
  await Deno.remove(floorCerts, { recursive: true });
  // --only (for profiling one sender) prints just that mode's figures.
  const result: Partial<NotifierResult> = Object.fromEntries(
    modes.map((mode) => [mode, median(runs.get(mode)!)]),
  );
  console.log(JSON.stringify(result));
}
