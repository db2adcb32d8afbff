/**
 * Launch attempts on the size of the plugin's answers: make the host hold
 * more memory than its receive limits allow (docs/security.md, "The size of
 * one answer"). The attacker (tests/fixtures/hostile_suite/answer_attacker.ts)
 * has read src/receive_limits.ts and src/grpc_wire.ts. Each attempt runs a
 * host of its own (answer_host.ts, default limits) as a subprocess and is
 * judged by the kernel's account of that host's memory, which the plugin
 * cannot write to: VmHWM (peak resident set) from /proc/<host pid>/status,
 * against the host's resident set once its plugin had started, and by the
 * calls' own statuses.
 *
 * @module
 */

import { repoRoot } from "../../helpers.ts";
import { descendants, type World } from "./world.ts";
import type { LaunchAttempt } from "./probe.ts";

const MIB = 2 ** 20;

export interface HostRun {
  outcomes: string[];
  heldAfter: number;
  /** Resident set once the plugin had started, and the peak after the attack (bytes). */
  rssReady: number;
  peak: number;
  evidence: string[];
}

function statusKiB(pid: number, field: string): number {
  const match = Deno.readTextFileSync(`/proc/${pid}/status`).match(new RegExp(`${field}:\\s+(\\d+) kB`));
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/**
 * Runs one attack's host to the end; `raised` lifts its limits (for measuring what they prevent). `script`
 * is the host (in this directory) speaking answer_host.ts's protocol.
 */
export async function runHost(
  world: Pick<World, "dir" | "mode">,
  attack: string,
  raised = false,
  script = "answer_host.ts",
): Promise<HostRun> {
  const sockets = `${world.dir}/s-answers-${attack}`;
  await Deno.mkdir(sockets, { recursive: true });
  const host = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--config",
      `${repoRoot}/deno.json`,
      `${repoRoot}/tests/security/hostile_suite/${script}`,
      JSON.stringify({ attack, sockets, mode: world.mode, raised }),
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(host.stderr).text();
  const reader = host.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const line = async (): Promise<string> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the answer host ended early: ${(await stderr).slice(-500)}`);
      buffered += value;
    }
    const end = buffered.indexOf("\n");
    const first = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    return first;
  };
  const writer = host.stdin.getWriter();
  let plugin: number | undefined;
  try {
    if ((await line()) !== "ready") throw new Error("the answer host did not start its plugin");
    const rssReady = statusKiB(host.pid, "VmRSS");
    await writer.write(new TextEncoder().encode("go\n"));
    const result = JSON.parse(await line()) as { outcomes: string[]; heldAfter: number; plugin: number };
    plugin = result.plugin;
    const peak = statusKiB(host.pid, "VmHWM");
    const evidence = result.heldAfter === 0
      ? []
      : [`the receive budget still held ${result.heldAfter} bytes after every call had ended`];
    return { outcomes: result.outcomes, heldAfter: result.heldAfter, rssReady, peak, evidence };
  } finally {
    await writer.close().catch(() => {});
    const ended = await Promise.race([
      host.status.then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), 10_000)),
    ]);
    if (!ended) {
      for (const pid of [...descendants(host.pid), host.pid]) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // Gone meanwhile.
        }
      }
      await host.status;
    }
    await reader.cancel().catch(() => {});
    await stderr.catch(() => "");
    if (plugin !== undefined) {
      try {
        if (!Deno.readTextFileSync(`/proc/${plugin}/stat`).includes(") Z ")) Deno.kill(plugin, "SIGKILL");
      } catch {
        // Gone, as it should be.
      }
    }
    await Deno.remove(sockets, { recursive: true }).catch(() => {});
  }
}

function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(0)} MiB`;
}

/** An attempt judged by the host's peak growth (`allowance`) and by `judge` on the calls' outcomes. */
function answerAttack(
  id: string,
  attack: string,
  description: string,
  allowance: number,
  judge: (outcomes: string[]) => string[],
): LaunchAttempt {
  return {
    id,
    cls: "availability",
    description,
    expect: "denied",
    // The host's receive path is the same in both isolation modes: run once.
    modes: ["deno-only"],
    serial: true,
    run: async (world) => {
      const run = await runHost(world, attack);
      const growth = run.peak - run.rssReady;
      const evidence = [...run.evidence, ...judge(run.outcomes)];
      if (growth > allowance) {
        evidence.push(`the HOST's peak resident set grew by ${mib(growth)} (allowed ${mib(allowance)})`);
      }
      return {
        evidence,
        note: `host VmRSS ${mib(run.rssReady)} at start, VmHWM ${mib(run.peak)} (+${mib(growth)}); ` +
          `${summarise(run.outcomes)}`,
      };
    },
  };
}

function summarise(outcomes: string[]): string {
  const counts = new Map<string, number>();
  for (const outcome of outcomes) {
    const kind = outcome.replace(/\d+/g, "N").slice(0, 140);
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return [...counts].map(([kind, n]) => `${n}x ${kind}`).join("; ");
}

const OVER_LIMIT = /RESOURCE_EXHAUSTED: Received message larger than max \(\d+ vs\. 134217728\)/;
const OVER_BUDGET = /RESOURCE_EXHAUSTED: Received messages held at once would exceed the receive budget/;

export const answerAttempts: LaunchAttempt[] = [
  answerAttack(
    "answer01",
    "one",
    "one answer announced as 2^31-16 bytes (go-plugin's limit), then 1.5 GiB of zeros streamed into it",
    64 * MIB,
    ([outcome]) => OVER_LIMIT.test(outcome) ? [] : [`the call did not fail on the limit: ${outcome}`],
  ),
  answerAttack(
    "answer02",
    "many",
    "16 concurrent Gets, each answered with a complete 128 MiB - 64 byte message (just under the limit): " +
      "2 GiB at once against a 512 MiB budget",
    // The 512 MiB budget, plus what the garbage collector has not taken back yet: up to 16 MiB of pieces
    // per call refused (src/grpc_wire.ts copies a message into its own buffer after 16 MiB), 256 MiB for
    // 16 calls, plus the HTTP/2 flow-control windows (32 MiB). Measured: about +820 MiB; with the limits
    // raised the same attack holds about 2 GiB.
    1024 * MIB,
    (outcomes) => {
      const found: string[] = [];
      if (!outcomes.some((o) => OVER_BUDGET.test(o))) found.push("no call failed on the receive budget");
      const other = outcomes.filter((o) => !OVER_BUDGET.test(o) && !/^answered \d+$/.test(o));
      if (other.length > 0) found.push(`unexpected outcomes: ${other.join(" | ").slice(0, 300)}`);
      return found;
    },
  ),
  answerAttack(
    "answer03",
    "slow",
    "a server stream of 1000 entries of 8 MiB pushed as fast as flow control allows while the host reads " +
      "one entry every 200 ms",
    256 * MIB,
    ([outcome]) => /^read 15 entries, then stopped$/.test(outcome) ? [] : [`the stream ended: ${outcome}`],
  ),
  answerAttack(
    "answer04",
    "goaway",
    "48 Gets in a row, each answered with 16 MiB and then a GOAWAY on the host's client connection once no " +
      "stream is open (Deno's destroy-inside-receive, which deferDestroy mends only for H2Server's sessions)",
    // One 16 MiB answer at a time, plus garbage not yet collected; a host that dies fails runHost.
    256 * MIB,
    (outcomes) => {
      const other = outcomes.filter((o) => !/^answered \d+$/.test(o));
      return outcomes.length === 48 && other.length === 0
        ? []
        : [`${outcomes.length} calls, unexpected outcomes: ${other.join(" | ").slice(0, 300)}`];
    },
  ),
];
