/**
 * How much a hostile plugin can make a Tether host buffer with one answer
 * (docs/security.md, "the size of one answer"): starts
 * `bench/fixtures/big_answer_plugin.ts`, makes one `Get` with a 20 s deadline,
 * and prints the host's RSS before and its peak during the call.
 *
 *     deno run -A --config deno.json bench/big_answer.ts
 *
 * @module
 */
import { PluginClient } from "../mod.ts";
import { KV } from "../src/gen/tether/kv/v1/kv_pb.ts";

const rssMiB = () => Number(Deno.readTextFileSync("/proc/self/status").match(/VmRSS:\s+(\d+)/)![1]) / 1024;
const client = new PluginClient({
  name: "big-answer",
  cmd: Deno.execPath(),
  args: ["run", "-A", new URL("./fixtures/big_answer_plugin.ts", import.meta.url).pathname],
  runtime: "native",
  handshake: { magicCookieKey: "BIG_ANSWER", magicCookieValue: "1", protocolVersion: 1 },
  autoMTLS: false,
});
await client.start();
const before = rssMiB();
let peak = before;
const sampler = setInterval(() => peak = Math.max(peak, rssMiB()), 50);
const outcome = await client.dispense(KV).get({ key: "x" }, { timeoutMs: 20_000 })
  .then(() => "answered", (error) => String(error).slice(0, 160));
clearInterval(sampler);
await client.kill();
console.log(
  `${outcome}\nhost RSS before the call ${before.toFixed(0)} MiB, peak during it ${peak.toFixed(0)} MiB`,
);
