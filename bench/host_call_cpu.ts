/**
 * The host's CPU per call with 16 in flight, against a floor call on the same HTTP/2 session, in one
 * process: each pair of bursts runs `--calls` Tether `Get`s (`PluginClient.dispense(KV).get`) and
 * `--calls` floor calls (a `node:http2` request of pre-encoded bytes, bench/floor/host.ts's `call`, on the
 * session Tether's channel dialled), and the ratio of their CPU per call (`process.cpuUsage`) is taken.
 * A ratio within one process moves much less with the load of a shared machine than calls/s or CPU per
 * call across runs do, so A/B runs of two trees compare medians of it, interleaved:
 *
 *   for i in 1 2 3 4 5 6; do for tree in /tmp/old /tmp/new; do
 *     deno run -A --config $tree/deno.json bench/host_call_cpu.ts --tree $tree -- tests/interop/go/bin/kvplugin
 *   done; done
 *
 * (`/tmp/old`, `/tmp/new`: `git archive <commit> | tar -x -C <dir>` with `node_modules` linked in.) Prints
 * one JSON object: the median ratio, the median CPU per call of each side (µs) and every pair's ratio.
 *
 * @module
 */

import { parseArgs } from "node:util";
import process from "node:process";
import { Buffer } from "node:buffer";
import type * as Http2 from "node:http2";

const { values, positionals } = parseArgs({
  args: Deno.args,
  options: {
    tree: { type: "string", default: new URL("..", import.meta.url).pathname },
    calls: { type: "string", default: "1500" },
    pairs: { type: "string", default: "11" },
    concurrency: { type: "string", default: "16" },
  },
  allowPositionals: true,
});
const tree = values.tree!.replace(/\/$/, "");
const [cmd, ...args] = positionals;
if (!cmd) {
  console.error(
    "usage: deno run -A bench/host_call_cpu.ts [--tree DIR] [--calls 1500] [--pairs 11] -- <plugin>",
  );
  Deno.exit(2);
}
const { PluginClient } = await import(`${tree}/mod.ts`);
const { KV, GetRequestSchema } = await import(`${tree}/src/gen/tether/kv/v1/kv_pb.ts`);
const { H2Channel } = await import(`${tree}/src/h2channel.ts`);
const { kvHandshake } = await import(`${tree}/examples/kv/handshake.ts`);
const { create, toBinary } = await import("@bufbuild/protobuf");

// The channel the client dials, caught on its first session() so the floor calls share its session.
let channel: { session(): Http2.ClientHttp2Session | Promise<Http2.ClientHttp2Session | Error> } | undefined;
const session = H2Channel.prototype.session;
H2Channel.prototype.session = function (this: typeof channel) {
  channel ??= this;
  return session.call(this);
};

const client = new PluginClient({
  cmd,
  args,
  handshake: kvHandshake,
  autoMTLS: true,
  startTimeoutMs: 30_000,
});
await client.start();
try {
  const kv = client.dispense(KV);
  await kv.put({ key: "bench", value: new Uint8Array(64).fill(97) });
  const request = { key: "bench" };
  const message = toBinary(GetRequestSchema, create(GetRequestSchema, request));
  const body = Buffer.alloc(message.length + 5);
  body.writeUInt32BE(message.length, 1);
  body.set(message, 5);
  const h2 = await channel!.session() as Http2.ClientHttp2Session;

  const floorCall = () =>
    new Promise<void>((resolve, reject) => {
      const stream = h2.request({
        ":method": "POST",
        ":path": "/tether.kv.v1.KV/Get",
        ":scheme": "https",
        ":authority": "localhost",
        "content-type": "application/grpc",
        "te": "trailers",
      }, { endStream: false });
      let status: unknown;
      stream.on("response", (headers) => status = headers["grpc-status"] ?? status);
      stream.on("data", () => {});
      stream.on("trailers", (trailers) => status = trailers["grpc-status"]);
      stream.on("error", reject);
      stream.on("close", () => status === "0" ? resolve() : reject(new Error(`grpc-status ${status}`)));
      stream.end(body);
    });
  const burst = async (n: number, floor: boolean) => {
    let left = n;
    await Promise.all(
      Array.from({ length: Number(values.concurrency) }, async () => {
        while (left-- > 0) await (floor ? floorCall() : kv.get(request));
      }),
    );
  };
  const cpuPerCall = async (n: number, floor: boolean) => {
    const before = process.cpuUsage();
    await burst(n, floor);
    const used = process.cpuUsage(before);
    return (used.user + used.system) / n;
  };

  await burst(3000, true);
  await burst(3000, false);
  const calls = Number(values.calls);
  const ratios: number[] = [];
  const tether: number[] = [];
  const floor: number[] = [];
  for (let i = 0; i < Number(values.pairs); i++) {
    const f = await cpuPerCall(calls, true);
    const t = await cpuPerCall(calls, false);
    ratios.push(t / f);
    tether.push(t);
    floor.push(f);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const round = (x: number) => Math.round(x * 1000) / 1000;
  console.log(JSON.stringify({
    ratio: round(median(ratios)),
    tether_cpu_us: round(median(tether)),
    floor_cpu_us: round(median(floor)),
    ratios: ratios.map(round),
  }));
} finally {
  await client.kill();
}
