/**
 * How much a hostile plugin can make a Tether host buffer with one answer
 * (docs/security.md, "The size of one answer"): starts
 * `bench/fixtures/big_answer_plugin.ts` (it announces a 2^31-16-byte message
 * and streams `BIG_ANSWER_MIB` MiB of zeros, default 1500), makes one `Get`
 * with a 20 s deadline, and prints the outcome, the host's RSS before the call
 * and its peak (sampled every 50 ms, and the kernel's VmHWM).
 *
 *     deno run -A --config deno.json bench/big_answer.ts          # defaults: refused at once
 *     deno run -A --config deno.json bench/big_answer.ts --raised # limit 2^31-1 and a 4 GiB budget
 *
 * `--raised` shows what a host that raises both limits (go-plugin's own
 * receive limit) holds: about 1x what arrived.
 *
 * @module
 */
import { PluginClient, setReceiveBudget } from "../mod.ts";
import { KV } from "../src/gen/tether/kv/v1/kv_pb.ts";

const raised = Deno.args.includes("--raised");
const status = () => Deno.readTextFileSync("/proc/self/status");
const kib = (field: string) => Number(status().match(new RegExp(`${field}:\\s+(\\d+)`))![1]);
const mib = (field: string) => kib(field) / 1024;
if (raised) setReceiveBudget(4 * 2 ** 30);
const client = new PluginClient({
  name: "big-answer",
  cmd: Deno.execPath(),
  args: ["run", "-A", new URL("./fixtures/big_answer_plugin.ts", import.meta.url).pathname],
  runtime: "native",
  handshake: { magicCookieKey: "BIG_ANSWER", magicCookieValue: "1", protocolVersion: 1 },
  autoMTLS: false,
  ...(raised ? { maxReceiveMessageBytes: 2 ** 31 - 1 } : {}),
});
await client.start();
const before = mib("VmRSS");
let peak = before;
const sampler = setInterval(() => peak = Math.max(peak, mib("VmRSS")), 50);
const outcome = await client.dispense(KV).get({ key: "x" }, { timeoutMs: 20_000 })
  .then(() => "answered", (error) => String(error).slice(0, 200));
clearInterval(sampler);
await client.kill();
console.log(
  `${
    raised ? "limits raised (maxReceiveMessageBytes 2^31-1, budget 4 GiB)" : "default limits"
  }: ${outcome}\n` +
    `host RSS before the call ${before.toFixed(0)} MiB, peak during it ${peak.toFixed(0)} MiB ` +
    `(VmHWM ${mib("VmHWM").toFixed(0)} MiB)`,
);
