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
}];
