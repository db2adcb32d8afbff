/**
 * Not a test: a Tether host run as its own process by the answer-size attempts
 * (launch_answers.ts), so that the kernel's account of its memory (VmHWM in
 * /proc/<pid>/status, read by the suite) is about this host and this attack
 * only. It starts `tests/fixtures/hostile_suite/answer_attacker.ts` in the
 * Deno sandbox with the default receive limits, prints `ready`, waits for a
 * line on stdin, runs the attack's calls, prints one JSON line of what came
 * of them (and the receive budget held afterwards), then waits for stdin to
 * close, kills the plugin and exits.
 *
 * Usage: answer_host.ts '{"attack":"one"|"many"|"slow"|"goaway","sockets":…,"mode":…[,"raised":true]}'
 * (`raised`: go-plugin's 2^31-1 limit and an 8 GiB budget, to measure what the defaults prevent)
 *
 * @module
 */

import {
  PluginClient,
  type PluginClientOptions,
  receiveBudget,
  setReceiveBudget,
  silentLogger,
} from "../../../mod.ts";
import { KV } from "../../../src/gen/tether/kv/v1/kv_pb.ts";
import { repoRoot } from "../../helpers.ts";
import { kvHandshake } from "../support.ts";

const { attack, sockets, mode, raised } = JSON.parse(Deno.args[0]);
// For measuring what the limits prevent (not used by the suite): go-plugin's limit and an 8 GiB budget.
if (raised) setReceiveBudget(8 * 2 ** 30);
const client = new PluginClient({
  cmd: `${repoRoot}/tests/fixtures/hostile_suite/answer_attacker.ts`,
  runtime: "deno",
  handshake: kvHandshake,
  unixSocketDir: sockets,
  args: [attack],
  name: `answers-${attack}`,
  autoMTLS: false,
  isolation: mode,
  logger: silentLogger,
  killTimeoutMs: 1000,
  ...(raised ? { maxReceiveMessageBytes: 2 ** 31 - 1 } : {}),
} as PluginClientOptions);
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
try {
  await client.start();
  console.log("ready");
  await lines.read();
  const kv = client.dispense(KV);
  const describe = (error: unknown) => String(error).slice(0, 300);
  const outcomes: string[] = [];
  if (attack === "one") {
    outcomes.push(
      await kv.get({ key: "x" }, { timeoutMs: 30_000 }).then((r) => `answered ${r.value.length}`, describe),
    );
  } else if (attack === "many") {
    const calls = Array.from(
      { length: 16 },
      () => kv.get({ key: "x" }, { timeoutMs: 60_000 }).then((r) => `answered ${r.value.length}`, describe),
    );
    outcomes.push(...await Promise.all(calls));
  } else if (attack === "goaway") {
    // One call at a time: each answer is followed by the plugin's GOAWAY, so every call dials again.
    for (let i = 0; i < 48; i++) {
      outcomes.push(
        await kv.get({ key: "x" }, { timeoutMs: 30_000 }).then((r) => `answered ${r.value.length}`, describe),
      );
    }
  } else {
    // Reads one entry every 200 ms for 3 s, then stops reading (the stream is cancelled).
    let read = 0;
    try {
      for await (const _entry of kv.list({ prefix: "" }, { timeoutMs: 60_000 })) {
        read++;
        if (read === 15) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      outcomes.push(`read ${read} entries, then stopped`);
    } catch (error) {
      outcomes.push(`after ${read} entries: ${describe(error)}`);
    }
  }
  // Every call has ended: the budget must be back to 0 once their statuses are delivered.
  await new Promise((resolve) => setTimeout(resolve, 200));
  console.log(JSON.stringify({ outcomes, heldAfter: receiveBudget().heldBytes, plugin: client.pid }));
  while (!(await lines.read()).done) { /* until the suite closes stdin */ }
} finally {
  await client.kill();
}
