/**
 * Launch attempts on the host's callbacks: the services the host serves its plugin on brokered servers
 * (`broker.acceptAndServe`) take requests the plugin writes, so they are answers of a kind too
 * (docs/security.md, "The size of one answer"). The attacker (tests/fixtures/hostile_suite/callback_attacker.ts)
 * has read src/broker.ts. Judged as the answer attempts are (launch_answers.ts): by the kernel's account of
 * the host's peak memory (VmHWM), which the plugin cannot write to, and by the status the host's server gave.
 *
 * @module
 */

import type { LaunchAttempt } from "./probe.ts";
import { runHost } from "./launch_answers.ts";

const MIB = 2 ** 20;
const OVER_LIMIT = /^callback answered 8 Received message larger than max \(2147483632 vs\. 134217728\)/;

export const callbackAttempts: LaunchAttempt[] = [{
  id: "callback01",
  cls: "availability",
  description: "the plugin dials the host's brokered callback server and sends one request announced as " +
    "2^31-16 bytes (go-plugin's limit), then streams 1.5 GiB of zeros into it",
  expect: "denied",
  // The host's brokered server is the same in both isolation modes: run once.
  modes: ["deno-only"],
  serial: true,
  run: async (world) => {
    const run = await runHost(world, "callback", false, "callback_host.ts");
    const growth = run.peak - run.rssReady;
    const evidence = [...run.evidence];
    const [outcome, ...rest] = run.outcomes;
    if (!OVER_LIMIT.test(outcome)) evidence.push(`the request was not refused on the limit: ${outcome}`);
    evidence.push(...rest);
    if (growth > 64 * MIB) {
      evidence.push(`the HOST's peak resident set grew by ${(growth / MIB).toFixed(0)} MiB (allowed 64 MiB)`);
    }
    return {
      evidence,
      note:
        `host VmRSS ${(run.rssReady / MIB).toFixed(0)} MiB at start, VmHWM ${
          (run.peak / MIB).toFixed(0)
        } MiB ` +
        `(+${(growth / MIB).toFixed(0)} MiB); ${run.outcomes.join("; ").slice(0, 200)}`,
    };
  },
}, {
  id: "callback02",
  cls: "availability",
  description:
    "the plugin opens 16 connections to the host's brokered callback server at once and sends on " +
    "each a complete request of 128 MiB - 64 bytes (just under the limit): 2 GiB at once against the host's " +
    "512 MiB receive budget",
  expect: "denied",
  modes: ["deno-only"],
  serial: true,
  run: async (world) => {
    let run;
    try {
      run = await runHost(world, "callbacks", false, "callback_host.ts");
    } catch (error) {
      // Before H2Server deferred session destroys (src/h2server.ts, deferDestroy) the host died here in 10 of 12
      // runs: Deno 2.9.6's node:http2 freed a session inside nghttp2 on the plugin's GOAWAY (SIGSEGV, or nghttp2's
      // assertion `stream->closed_next == NULL` in find_stream_on_goaway_func). A death is an escape again.
      return {
        evidence: [`the HOST process died during the attack: ${String(error).slice(0, 400)}`],
        note: "host died",
      };
    }
    const growth = run.peak - run.rssReady;
    const evidence = [...run.evidence, ...judgeMany(run.outcomes)];
    // As answer02: the 512 MiB budget, plus up to 16 MiB of pieces per refused request not yet collected
    // (256 MiB for 16), plus HTTP/2 flow-control windows (8 MiB a stream). Before callbacks were counted the
    // whole 2 GiB was held at once.
    if (growth > 1024 * MIB) {
      evidence.push(
        `the HOST's peak resident set grew by ${(growth / MIB).toFixed(0)} MiB (allowed 1024 MiB)`,
      );
    }
    return {
      evidence,
      note:
        `host VmRSS ${(run.rssReady / MIB).toFixed(0)} MiB at start, VmHWM ${(run.peak / MIB).toFixed(0)} ` +
        `MiB (+${(growth / MIB).toFixed(0)} MiB); ${summariseMany(run.outcomes)}`,
    };
  },
}];

const OVER_BUDGET = new RegExp(
  "^callback answered 8 Received messages held at once would exceed the receive budget .* receiving a " +
    "request from plugin callbacks; the host can raise it with setReceiveBudget\\(\\)$",
);
const SERVED = /^callback answered 0 $/;
const RAN = /^the host's Adder ran \d+ time\(s\)$/;

/** callback02's statuses: some requests refused on the budget, the rest served, nothing else. */
function judgeMany(outcomes: string[]): string[] {
  const found: string[] = [];
  const statuses = outcomes.filter((o) => !RAN.test(o));
  if (statuses.length !== 16) found.push(`expected 16 statuses, got ${statuses.length}: ${statuses[0]}`);
  if (!statuses.some((o) => OVER_BUDGET.test(o))) found.push("no request was refused on the receive budget");
  const other = statuses.filter((o) => !OVER_BUDGET.test(o) && !SERVED.test(o));
  if (other.length > 0) found.push(`unexpected statuses: ${other.join(" | ").slice(0, 300)}`);
  return found;
}

function summariseMany(outcomes: string[]): string {
  const refused = outcomes.filter((o) => OVER_BUDGET.test(o)).length;
  const served = outcomes.filter((o) => SERVED.test(o)).length;
  const other = outcomes.filter((o) => !OVER_BUDGET.test(o) && !SERVED.test(o) && !RAN.test(o));
  return `${served} served, ${refused} refused on the budget` +
    (other.length ? `, other: ${other[0].slice(0, 120)}` : "");
}
