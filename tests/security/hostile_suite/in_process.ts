/**
 * Runs the in-process attempts (tests/fixtures/hostile_suite/attempts.ts)
 * in launches of the bundled hostile plugin and judges each one from the
 * host's side: the answer must hold no secret token, decoys must stay
 * unreached, files outside the grants unchanged, the neighbour alive, and
 * forged records never attributed to the runtime. The plugin's claim of
 * success counts against it too (it is the attacker's own word).
 *
 * @module
 */

import { KV } from "../../../src/gen/tether/kv/v1/kv_pb.ts";
import { type PermissionEvent, PluginClient } from "../../../mod.ts";
import { type Attempt, ATTEMPTS } from "../../fixtures/hostile_suite/attempts.ts";
import { kvHandshake, text } from "../support.ts";
import {
  hostNice,
  plantGrantLinks,
  Records,
  removeOriginStorage,
  storageHolding,
  UNTRUSTED_SOURCES,
  withIsolation,
  type World,
} from "./world.ts";

/** The judgement of one attempt. */
export interface Verdict {
  readonly id: string;
  readonly cls: string;
  readonly description: string;
  readonly expect: "denied" | "harmless";
  readonly reason?: string;
  readonly outcome: "denied" | "harmless" | "escaped";
  readonly detail: string;
}

/** Judges an attempt from what it claimed and what the host found. */
export function judge(
  attempt: Pick<Attempt, "id" | "cls" | "description" | "expect" | "reason">,
  claimed: string | null,
  evidence: string[],
  note: string,
): Verdict {
  const escaped = evidence.length > 0 || (attempt.expect === "denied" && claimed !== null);
  const detail = escaped
    ? [
      ...evidence,
      ...(attempt.expect === "denied" && claimed !== null ? [`got: ${claimed.slice(0, 160)}`] : []),
    ]
      .join("; ")
    : note.slice(0, 200);
  return {
    id: attempt.id,
    cls: attempt.cls,
    description: attempt.description,
    expect: attempt.expect,
    reason: attempt.reason,
    outcome: escaped ? "escaped" : attempt.expect,
    detail,
  };
}

/**
 * Attempts that Deno's flags cannot prevent in any mode (a write grant on a socket path covers what is below
 * it) and that the host contains instead: the path each one plants in its private dir.
 */
const CONTAINED_ATTEMPTS: Record<string, string> = {
  fs33: "p-broker-7.sock",
  fs34: "h-broker-8.sock",
};

/**
 * Evidence unless the host contained the misuse within 3 s: its watcher logged it, killed the plugin, and the
 * planted path is gone (it was inside the launch's own private dir all along).
 */
async function containment(client: PluginClient, logger: Records, planted: string): Promise<string[]> {
  const deadline = Date.now() + 3000;
  const logged = () =>
    logger.records.some((r) => r.message === "plugin misused a socket path it was granted; killing it");
  while (Date.now() < deadline && !(client.hasExited && logged() && !exists(planted))) {
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  const evidence: string[] = [];
  if (!logged()) evidence.push("the host never noticed the misused socket path");
  if (!client.hasExited) evidence.push("the plugin still runs after misusing a socket path");
  if (exists(planted) && !Deno.lstatSync(planted).isSocket) evidence.push(`${planted} is still there`);
  return evidence;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function removeIfThere(path: string): boolean {
  if (!exists(path)) return false;
  Deno.removeSync(path, { recursive: true });
  return true;
}

function filesContaining(dir: string, token: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const entry of Deno.readDirSync(d)) {
      const path = `${d}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.isFile) {
        try {
          if (Deno.readTextFileSync(path).includes(token)) found.push(path);
        } catch {
          // Unreadable.
        }
      }
    }
  };
  walk(dir);
  return found;
}

/** Host-side checks run right after an attempt; each returns evidence of an escape. */
function hostChecks(
  world: World,
  id: string,
  privateDir: string,
  socket: string,
  claimed: string | null,
): string[] {
  const evidence: string[] = [];
  const c = world.ctx;
  const check = (cond: boolean, what: string) => cond && evidence.push(what);
  switch (id) {
    case "fs32":
      check(exists(`${privateDir}/escaped-fs32`), "a file appeared in the private dir");
      break;
    case "fs35":
      check(exists(`${socket}/escaped-fs35`), "wrote below its socket");
      break;
    case "fs28":
      check(removeIfThere("/dev/shm/hostile-fs28"), "created /dev/shm/hostile-fs28 on the host");
      break;
    case "fs41":
      for (const e of Deno.readDirSync("/tmp")) {
        if (e.name.startsWith("hostile-fs41-")) {
          Deno.removeSync(`/tmp/${e.name}`);
          evidence.push(`created /tmp/${e.name} on the host`);
        }
      }
      break;
    case "state08":
      check(removeIfThere("/root/.cache/deno/hostile-state08"), "wrote into the host's DENO_DIR");
      break;
    case "state09":
      check(removeIfThere(`${c.repo}/node_modules/.hostile-state09`), "wrote into the host's node_modules");
      break;
    case "state12":
      check(removeIfThere("/tmp/hostile-state12"), "created /tmp/hostile-state12 on the host");
      break;
    case "net22":
      check(
        Deno.readTextFileSync("/proc/net/unix").includes("@hostile-net22"),
        "listens on an abstract socket in the host's network namespace",
      );
      break;
    case "proc10":
      check(world.neighbor.hasExited, "the neighbour plugin died");
      break;
    case "proc15":
      check(hostNice() !== world.hostNice, "the host's nice value changed");
      break;
    case "env15":
      check(claimed === Deno.cwd(), `its working directory is the host's (${Deno.cwd()})`);
      break;
  }
  // Always: the files the host owns.
  try {
    const canary = Deno.statSync(c.canary);
    check(canary.mode !== world.canaryStat.mode, "the canary's mode changed");
    check(canary.mtime?.getTime() !== world.canaryStat.mtime?.getTime(), "the canary's mtime changed");
  } catch {
    evidence.push("the canary is gone");
  }
  try {
    check(Deno.readTextFileSync(c.keep) !== `KEEP-${world.token}\n`, "the kept file changed");
  } catch {
    evidence.push("the kept file is gone");
  }
  for (const name of Deno.readDirSync(c.root)) {
    if (!world.rootEntries.has(name.name)) {
      evidence.push(`new entry outside the grants: ${c.root}/${name.name}`);
      Deno.removeSync(`${c.root}/${name.name}`, { recursive: true });
    }
  }
  for (const path of filesContaining(c.out, world.token)) {
    evidence.push(`secret copied into the write grant: ${path}`);
    Deno.removeSync(path);
  }
  return evidence;
}

/** Starts the bundled hostile plugin with the suite's grants. */
export async function startHostile(world: World, name: string, logger: Records): Promise<PluginClient> {
  const client = new PluginClient(withIsolation(world, {
    cmd: world.bundle,
    sha256: world.bundleSha256,
    runtime: "deno",
    handshake: kvHandshake,
    unixSocketDir: world.sockets,
    permissions: {
      read: [world.ctx.granted],
      write: [world.ctx.out],
      net: [`127.0.0.1:${world.ctx.httpPort}`],
    },
    env: { [world.ctx.envSecretName]: `ENV-${world.token}` },
    args: [JSON.stringify(world.ctx)],
    name,
    logger,
    onPermissionEvent: (event: PermissionEvent) => world.events.push(event),
    startTimeoutMs: 30_000,
    killTimeoutMs: 1000,
  }));
  await client.start();
  return client;
}

/** Attempts through links the host found planted in the read grant. */
const LINK_ATTEMPTS = ["fs44", "mod19"];

/**
 * Without namespaces, a read grant holding a link that leads outside the grants refuses the launch, so the
 * main launch cannot carry fs44/mod19: each gets a launch of its own with the links planted before it. A
 * refused launch that names the planted link is the denial; a launch that starts runs the attempt for real
 * and is judged like any other.
 */
async function linkedLaunch(world: World, attempt: Attempt): Promise<Verdict> {
  const remove = await plantGrantLinks(world.ctx.granted, world.ctx.canary, world.ctx.outsideModule);
  // Its own log (the main launch's log must hold only the main plugin's records: chan09); searched for secrets.
  const logger = new Records([world.token]);
  const leaked = () => logger.seen.map((excerpt) => `a host secret in the plugin's logs: ${excerpt}`);
  try {
    let client: PluginClient;
    try {
      client = await startHostile(world, `hostile-${attempt.id}`, logger);
    } catch (error) {
      const message = String(error);
      const named = /is a symlink leading to/.test(message) && message.includes(`${world.ctx.granted}/link`);
      return judge(
        attempt,
        null,
        [
          ...(named
            ? []
            : [`the launch failed for another reason than the planted link: ${message.slice(0, 200)}`]),
          ...leaked(),
        ],
        `launch refused: ${message.slice(0, 180)}`,
      );
    }
    let verdict: (leaks: string[]) => Verdict;
    try {
      const socket = client.endpoint!.address;
      const response = await client.dispense(KV).get({ key: `attempt:${attempt.id}` }, { timeoutMs: 10_000 });
      const raw = text(response.value);
      const answer = JSON.parse(raw) as { got: string | null; err: string };
      const evidence = hostChecks(
        world,
        attempt.id,
        socket.slice(0, socket.lastIndexOf("/")),
        socket,
        answer.got,
      );
      if (raw.includes(world.token)) evidence.push("the answer holds a host secret");
      verdict = (leaks) => judge(attempt, answer.got, [...evidence, ...leaks], answer.err);
    } finally {
      await client.kill();
    }
    return verdict(leaked());
  } finally {
    remove();
  }
}

/** Runs the attempts of one launch kind; returns the verdicts and the launches' logs. */
export async function runInProcess(
  world: World,
  launch: "main" | "channels",
  onLaunch: (client: PluginClient) => void,
): Promise<{ verdicts: Verdict[]; controls: string[] }> {
  const attempts = ATTEMPTS.filter((a) => a.launch === launch);
  const verdicts: Verdict[] = [];
  const controls: string[] = [];
  const storedMarkers = new Map<string, string>();
  const name = `hostile-${launch}`;
  const logger = new Records([world.token]);
  let client = await startHostile(world, name, logger);
  onLaunch(client);
  const kv = () => client.dispense(KV);
  // Positive controls: the grants work (so a denial below is the sandbox, not a broken plugin).
  controls.push(text((await kv().get({ key: "control:read" })).value));
  controls.push(text((await kv().get({ key: "control:write" })).value));
  for (const attempt of attempts) {
    world.current = attempt.id;
    const socket = client.endpoint!.address;
    const privateDir = socket.slice(0, socket.lastIndexOf("/"));
    let claimed: string | null = null;
    let note = "";
    let raw = "";
    const rssBefore = Deno.memoryUsage().rss;
    if (world.mode === "deno-only" && LINK_ATTEMPTS.includes(attempt.id)) {
      verdicts.push(await linkedLaunch(world, attempt));
      continue;
    }
    try {
      const response = await kv().get({ key: `attempt:${attempt.id}` }, { timeoutMs: 10_000 });
      raw = text(response.value);
      const answer = JSON.parse(raw) as { got: string | null; err: string };
      if (answer.err.startsWith("UNKNOWN ATTEMPT")) throw new Error(`the plugin does not know ${attempt.id}`);
      claimed = answer.got;
      note = answer.err;
    } catch (error) {
      const last = logger.records.slice(-2).map((r) => r.message.slice(0, 160)).join(" | ");
      note = `no answer (${String(error).slice(0, 120)}); plugin ${
        client.hasExited ? "exited" : "wedged"
      }; last words: ${last}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 15));
    const evidence = hostChecks(world, attempt.id, privateDir, socket, claimed);
    const planted = CONTAINED_ATTEMPTS[attempt.id];
    if (planted) evidence.push(...await containment(client, logger, `${privateDir}/${planted}`));
    const growth = Deno.memoryUsage().rss - rssBefore;
    if (growth > 256 * 2 ** 20) evidence.push(`the HOST grew by ${(growth / 2 ** 20).toFixed(0)} MiB`);
    if (raw.includes(world.token)) evidence.push("the answer holds a host secret");
    for (const hit of world.hits.filter((h) => h.startsWith(`${attempt.id} `))) {
      evidence.push(`decoy reached: ${hit}`);
    }
    if (attempt.id === "state13" && claimed?.startsWith("KEEP-")) storedMarkers.set("state13", claimed);
    verdicts.push(judge(attempt, claimed, evidence, note));
    if (note.startsWith("no answer") || client.hasExited) {
      // Judge the rest in a fresh launch.
      await client.kill();
      client = await startHostile(world, name, logger);
      onLaunch(client);
    }
  }
  world.current = `${launch}-end`;
  await client.kill();
  // What it stored must not outlive the launch.
  const kept = verdicts.find((v) => v.id === "state13");
  const marker = kept ? storedMarkers.get("state13") : undefined;
  // Late evidence: forged records, forged identities, secrets in the plugin's logs.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const late = new Map<string, string[]>();
  const charge = (id: string, what: string) => late.set(id, [...(late.get(id) ?? []), what]);
  if (marker) {
    const left = storageHolding(marker);
    for (const path of left) charge("state13", `its storage outlived the launch: ${path}`);
    removeOriginStorage(left);
  }
  for (const event of world.events) {
    const marker = /FORGED-(\w+)/.exec(event.target ?? "");
    if (marker && !UNTRUSTED_SOURCES.includes(event.source)) {
      charge(marker[1], `forged record reported as the runtime's: ${event.target}`);
    }
  }
  for (const record of logger.records) {
    if (record.fields.plugin !== undefined && record.fields.plugin !== name) {
      charge("chan09", `a log record carries another plugin's name (${String(record.fields.plugin)})`);
    }
  }
  for (const excerpt of logger.seen) {
    charge(`${launch}-logs`, `a host secret in the plugin's logs: ${excerpt}`);
  }
  for (const [id, what] of late) {
    const index = verdicts.findIndex((v) => v.id === id);
    if (index < 0) {
      verdicts.push({
        id,
        cls: "decision-channels",
        description: "late evidence",
        expect: "denied",
        outcome: "escaped",
        detail: what.join("; "),
      });
      continue;
    }
    verdicts[index] = {
      ...verdicts[index],
      outcome: "escaped",
      detail: [verdicts[index].detail, ...what].filter((part) => part).join("; "),
    };
  }
  return { verdicts, controls };
}
