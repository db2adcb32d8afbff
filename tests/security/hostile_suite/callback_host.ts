/**
 * Not a test: a Tether host run as its own process by the callback attempt (launch_callbacks.ts), so that
 * the kernel's account of its memory (VmHWM, read by the suite) is about this host and this attack only.
 * It starts `tests/fixtures/hostile_suite/callback_attacker.ts` in the Deno sandbox with the default receive
 * limits, serves an Adder callback on a brokered server (`broker.acceptAndServe`), prints `ready`, waits for
 * a line on stdin, asks the plugin (a KV `Get` naming the broker id) to call it, prints one JSON line of
 * what came of it, then waits for stdin to close, kills the plugin and exits. The protocol is
 * answer_host.ts's, so `runHost` (launch_answers.ts) drives both. Attacks: `callback` (one oversized
 * request), `callbacks` (16 concurrent requests just under the limit); `raised` sets a 4 GiB receive budget
 * (no budget in effect for 2 GiB, as before callbacks were counted).
 *
 * Usage: callback_host.ts '{"attack":"callback","sockets":…,"mode":…,"raised":false}'
 *
 * @module
 */

import {
  PluginClient,
  type PluginClientOptions,
  receiveBudget,
  registration,
  setReceiveBudget,
  silentLogger,
} from "../../../mod.ts";
import { Adder, KV } from "../../../src/gen/tether/kv/v1/kv_pb.ts";
import { repoRoot } from "../../helpers.ts";
import { kvHandshake } from "../support.ts";

const { attack, sockets, mode, raised } = JSON.parse(Deno.args[0]);
if (raised) setReceiveBudget(4 * 2 ** 30);
const client = new PluginClient({
  cmd: `${repoRoot}/tests/fixtures/hostile_suite/callback_attacker.ts`,
  runtime: "deno",
  handshake: kvHandshake,
  unixSocketDir: sockets,
  name: "callbacks",
  autoMTLS: false,
  isolation: mode,
  logger: silentLogger,
  killTimeoutMs: 1000,
} as PluginClientOptions);
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
try {
  await client.start();
  let added = 0;
  const id = client.broker.nextId();
  await client.broker.acceptAndServe(id, [
    registration(Adder, {
      add: ({ a, b }) => {
        added++;
        return { sum: a + b };
      },
    }),
  ]);
  console.log("ready");
  await lines.read();
  const key = attack === "callbacks" ? `many:${id}` : String(id);
  const answered = await client.dispense(KV).get({ key }, { timeoutMs: 120_000 }).then(
    (r) => new TextDecoder().decode(r.value).split("\n").map((status) => `callback answered ${status}`),
    (error) => [String(error).slice(0, 300)],
  );
  const outcomes = [...answered, ...(added > 0 ? [`the host's Adder ran ${added} time(s)`] : [])];
  console.log(JSON.stringify({ outcomes, heldAfter: receiveBudget().heldBytes, plugin: client.pid }));
  while (!(await lines.read()).done) { /* until the suite closes stdin */ }
} finally {
  await client.kill();
}
