/**
 * The lean call path (src/h2channel.ts, unary calls straight on it in
 * src/rpc.ts) against Go go-plugin plugins, each case run on the lean
 * channel and on grpc-js's own channel with the same expectations: unary,
 * server streaming, the broker's bidi stream, deadlines, cancellation,
 * statuses with their messages, request metadata, messages over 4 MiB,
 * AutoMTLS and plaintext. (No service here has a client-streaming method.)
 */

import assert from "node:assert/strict";
import { GrpcStatus, type PluginClient, type PluginClientOptions } from "../../mod.ts";
import * as http2 from "node:http2";
import { Buffer } from "node:buffer";
import { create, toBinary } from "@bufbuild/protobuf";
import { Adder, GetResponseSchema, KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { openChannel } from "../../src/channel.ts";
import { H2Channel } from "../../src/h2channel.ts";
import { type ChannelImplementation, setChannelImplementation } from "../../src/transport.ts";
import { createServiceClient, registration } from "../../src/rpc.ts";
import { goFixture, ignoreWithoutGo } from "../helpers.ts";
import { bytes, inSandbox, kvHandshake, rejectsWith, type Sandbox, text } from "./support.ts";

const channels: ChannelImplementation[] = ["lean", "grpc-js"];

/** How many calls `run` starts on an H2Channel (PluginClient keeps its channel private). */
async function countLeanCalls(run: () => Promise<unknown>): Promise<number> {
  let count = 0;
  const original = H2Channel.prototype.createCall;
  H2Channel.prototype.createCall = function (this: H2Channel, ...args: Parameters<typeof original>) {
    count++;
    return original.apply(this, args);
  };
  try {
    await run();
  } finally {
    H2Channel.prototype.createCall = original;
  }
  return count;
}

async function onChannel(
  channel: ChannelImplementation,
  run: (box: Sandbox, start: (options: PluginClientOptions) => Promise<PluginClient>) => Promise<void>,
): Promise<void> {
  setChannelImplementation(channel);
  try {
    await inSandbox(async (box) => {
      await run(box, async (options) => {
        const client = box.client(options);
        await client.start();
        return client;
      });
    });
  } finally {
    setChannelImplementation("lean");
  }
}

async function benchPlugin(
  box: Sandbox,
  extra: Partial<PluginClientOptions> = {},
): Promise<PluginClientOptions> {
  return {
    cmd: await goFixture("benchplugin"),
    args: [box.marker],
    handshake: kvHandshake,
    unixSocketDir: box.dir,
    ...extra,
  };
}

for (const channel of channels) {
  Deno.test({
    name: `h2 (${channel}): PluginClient's calls run on the channel chosen`,
    ignore: ignoreWithoutGo(),
    fn: () =>
      onChannel(channel, async (box, start) => {
        const client = await start(await box.goKv([], { autoMTLS: true }));
        const calls = await countLeanCalls(() => client.dispense(KV).get({ key: "x" }));
        assert.equal(calls, channel === "lean" ? 1 : 0);
      }),
  });

  Deno.test({
    name: `h2 (${channel}): unary and server streaming against a Go plugin, AutoMTLS and plaintext`,
    ignore: ignoreWithoutGo(),
    fn: () =>
      onChannel(channel, async (box, start) => {
        for (const autoMTLS of [true, false]) {
          const kv = (await start(await box.goKv([], { autoMTLS }))).dispense(KV);
          const keys = Array.from({ length: 50 }, (_, i) => `s/${String(i).padStart(2, "0")}`);
          for (const key of keys) await kv.put({ key, value: bytes(`value of ${key}`) });
          assert.equal(text((await kv.get({ key: "s/07" })).value), "value of s/07");
          assert.equal((await kv.get({ key: "absent" })).found, false);
          const listed: string[] = [];
          for await (const entry of kv.list({ prefix: "s/" })) {
            listed.push(`${entry.key}=${text(entry.value)}`);
          }
          assert.deepEqual(listed, keys.map((key) => `${key}=value of ${key}`));
          // A slow reader: the stream waits for it, nothing is lost.
          const slow: string[] = [];
          for await (const entry of kv.list({ prefix: "s/" })) {
            slow.push(entry.key);
            await new Promise((resolve) => setTimeout(resolve, 2));
          }
          assert.deepEqual(slow, keys);
          // Early break, then the connection still serves.
          for await (const _ of kv.list({ prefix: "s/" })) break;
          // Many calls in flight on the one connection.
          const answers = await Promise.all(keys.map((key) => kv.get({ key })));
          assert.deepEqual(answers.map((a) => text(a.value)), keys.map((key) => `value of ${key}`));
        }
      }),
  });

  Deno.test({
    name: `h2 (${channel}): the broker's bidi stream carries connections both ways with a Go plugin`,
    ignore: ignoreWithoutGo(),
    fn: () =>
      onChannel(channel, async (box, start) => {
        const client = await start(await box.goKv([], { autoMTLS: true }));
        const kv = client.dispense(KV);
        // Host -> plugin over the broker stream, then plugin dials the host's Adder.
        const brokerId = client.broker.nextId();
        await client.broker.acceptAndServe(brokerId, [
          registration(Adder, { add: ({ a, b }) => ({ sum: a + b }) }),
        ]);
        assert.equal((await kv.addViaHost({ adderBrokerId: brokerId, a: 20n, b: 22n })).sum, 42n);
        // Plugin -> host: the plugin announces an Adder, the host dials it (a second lean channel).
        const { brokerId: pluginAdder } = await kv.openAdder({});
        const connection = await client.broker.dial(pluginAdder);
        try {
          assert.equal((await connection.client(Adder).add({ a: 2n, b: 3n })).sum, 5n);
        } finally {
          connection.close();
        }
      }),
  });

  Deno.test({
    name: `h2 (${channel}): deadlines and cancellation reach a Go plugin, which keeps serving`,
    ignore: ignoreWithoutGo(),
    fn: () =>
      onChannel(channel, async (box, start) => {
        const kv = (await start(await box.goKv([], { autoMTLS: true }))).dispense(KV);
        const expired = await rejectsWith(kv.sleep({ millis: 30_000 }, { timeoutMs: 200 }), "rpc");
        assert.equal(expired.status, GrpcStatus.DEADLINE_EXCEEDED);
        assert.match(expired.message, /\/tether\.kv\.v1\.KV\/Sleep failed: DEADLINE_EXCEEDED/);

        const controller = new AbortController();
        const call = kv.sleep({ millis: 30_000 }, { signal: controller.signal });
        setTimeout(() => controller.abort(), 100);
        assert.equal((await rejectsWith(call, "rpc")).status, GrpcStatus.CANCELLED);

        const aborted = AbortSignal.abort();
        assert.equal(
          (await rejectsWith(kv.get({ key: "x" }, { signal: aborted }), "rpc")).status,
          GrpcStatus.CANCELLED,
        );

        // Stream with a deadline that passes while it is being read.
        const streamed = (async () => {
          for await (const _ of kv.list({ prefix: "" }, { timeoutMs: 1 })) {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        })();
        await streamed.catch(() => {});
        await kv.put({ key: "after", value: bytes("ok") });
        assert.equal(text((await kv.get({ key: "after" })).value), "ok");
      }),
  });

  Deno.test({
    name: `h2 (${channel}): statuses and messages from Go plugins arrive intact`,
    ignore: ignoreWithoutGo(),
    fn: () =>
      onChannel(channel, async (box, start) => {
        const client = await start(await box.goKv([], { autoMTLS: true }));
        const invalid = await rejectsWith(client.dispense(KV).emit({ logLevel: "loud" }), "rpc");
        assert.equal(invalid.status, GrpcStatus.INVALID_ARGUMENT);
        assert.match(invalid.message, /unknown log_level "loud"/);
        const unimplemented = await rejectsWith(client.dispense(Adder).add({ a: 1n, b: 2n }), "rpc");
        assert.equal(unimplemented.status, GrpcStatus.UNIMPLEMENTED);

        const errors = await start({
          cmd: await goFixture("errplugin"),
          args: [box.marker],
          handshake: kvHandshake,
          unixSocketDir: box.dir,
          autoMTLS: true,
        });
        const text100 = "ldap: bind failed for uid=alice,ou=people: invalid credentials (49) %41 ü";
        const unknown = await rejectsWith(errors.dispense(KV).get({ key: text100 }), "rpc");
        assert.equal(unknown.status, GrpcStatus.UNKNOWN);
        assert.ok(unknown.message.endsWith(`UNKNOWN: ${text100}`), unknown.message);
      }),
  });

  Deno.test({
    name: `h2 (${channel}): request metadata reaches a Go plugin; 7 MiB messages both ways`,
    ignore: ignoreWithoutGo(),
    fn: () =>
      onChannel(channel, async (box, start) => {
        const kv = (await start(await benchPlugin(box, { autoMTLS: true }))).dispense(KV);
        const sent = await kv.get({ key: "metadata:x-tether-test" }, {
          metadata: { "x-tether-test": "v1 2" },
        });
        assert.equal(sent.found, true);
        assert.equal(text(sent.value), "v1 2");
        assert.equal((await kv.get({ key: "metadata:x-tether-test" })).found, false);

        const big = new Uint8Array(7 * 1024 * 1024).map((_, i) => (i * 7) % 251);
        await kv.put({ key: "big", value: big }, { timeoutMs: 60_000 });
        const got = await kv.get({ key: "big" }, { timeoutMs: 60_000 });
        assert.equal(got.value.length, big.length);
        assert.deepEqual(got.value, big);
      }),
  });
}

Deno.test({
  name: "h2: the lean channel is the default under PluginClient",
  ignore: ignoreWithoutGo(),
  fn: () =>
    inSandbox(async (box) => {
      const client = box.client(await box.goKv([], { autoMTLS: true }));
      await client.start();
      assert.equal(await countLeanCalls(() => client.dispense(KV).get({ key: "x" })), 1);
    }),
});

/** A plaintext HTTP/2 server on a unix socket that answers every call with `answer`. */
async function rawServer(
  answer: (stream: import("node:http2").ServerHttp2Stream) => void,
): Promise<{ path: string; close(): Promise<void> }> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "h2t" });
  const path = `${dir}/s.sock`;
  const server = http2.createServer();
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    stream.on("error", () => {});
    answer(stream as import("node:http2").ServerHttp2Stream);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    path,
    close: async () => {
      await new Promise((resolve) => server.close(resolve));
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** One unary call of raw bytes on an H2Channel; resolves to the answer or the grpc-js error. */
async function rawCall(
  path: string,
  maxMessageBytes?: number,
): Promise<Buffer | { code: number; details: string }> {
  const grpc = await import("@grpc/grpc-js");
  const client = new grpc.Client(`unix:${path}`, grpc.credentials.createInsecure(), {
    channelFactoryOverride: (target: string) =>
      new H2Channel({
        target,
        authority: "localhost",
        maxMessageBytes,
      }) as unknown as import("@grpc/grpc-js").Channel,
  });
  try {
    return await new Promise((resolve) => {
      client.makeUnaryRequest(
        "/t.S/M",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from("hi"),
        (error, value) => resolve(error ? { code: error.code, details: error.details } : value!),
      );
    });
  } finally {
    client.close();
  }
}

function grpcFrame(body: Uint8Array, announced = body.length): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  new DataView(out.buffer).setUint32(1, announced);
  out.set(body, 5);
  return out;
}

Deno.test("h2: a message split into 1-byte DATA frames is put back together", async () => {
  const body = new Uint8Array(300).map((_, i) => i % 256);
  const server = await rawServer((stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    const framed = grpcFrame(body);
    for (const byte of framed) stream.write(new Uint8Array([byte]));
    stream.end();
  });
  try {
    const answer = await rawCall(server.path);
    assert.ok(answer instanceof Uint8Array, JSON.stringify(answer));
    assert.deepEqual(new Uint8Array(answer), body);
  } finally {
    await server.close();
  }
});

Deno.test("h2: a message announced over the limit ends the call with RESOURCE_EXHAUSTED, nothing allocated for it", async () => {
  const server = await rawServer((stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    // Announces 4 GiB - 1, sends 3 bytes.
    stream.write(grpcFrame(new Uint8Array([1, 2, 3]), 0xffff_ffff));
  });
  try {
    const answer = await rawCall(server.path, 1024);
    assert.deepEqual(answer, {
      code: GrpcStatus.RESOURCE_EXHAUSTED,
      details: `Received message larger than max (${0xffff_ffff} vs. 1024)`,
    });
  } finally {
    await server.close();
  }
});

Deno.test("h2: trailers-only errors, HTTP errors and a refused connection map to gRPC statuses as grpc-js maps them", async () => {
  const trailersOnly = await rawServer((stream) =>
    stream.respond({ ":status": 200, "grpc-status": "5", "grpc-message": "no%20such%20thing" }, {
      endStream: true,
    })
  );
  const httpError = await rawServer((stream) => stream.respond({ ":status": 503 }, { endStream: true }));
  try {
    assert.deepEqual(await rawCall(trailersOnly.path), {
      code: GrpcStatus.NOT_FOUND,
      details: "no such thing",
    });
    const unavailable = await rawCall(httpError.path) as { code: number; details: string };
    assert.equal(unavailable.code, GrpcStatus.UNAVAILABLE);
    assert.match(unavailable.details, /503/);
  } finally {
    await trailersOnly.close();
    await httpError.close();
  }
  const refused = await rawCall("/tmp/h2-no-such-socket") as { code: number; details: string };
  assert.equal(refused.code, GrpcStatus.UNAVAILABLE);
});

Deno.test("lean channel: a unary answer of two messages fails at once with UNIMPLEMENTED (no wait for a deadline)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tether-two-answers-" });
  const socket = `${dir}/p.sock`;
  const message = toBinary(GetResponseSchema, create(GetResponseSchema, { value: new Uint8Array([7]) }));
  const framed = Buffer.alloc(5 + message.length);
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  // A misbehaving plugin: two answers to a unary call, and then it never ends the stream.
  const server = http2.createServer();
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    stream.on("error", () => {});
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
    stream.write(framed);
    stream.write(framed);
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  const channel = openChannel({ network: "unix", address: socket }, undefined);
  try {
    const kv = createServiceClient(channel, KV);
    const error = await kv.get({ key: "k" }).catch((e: unknown) => e);
    assert.ok(error instanceof Error, "the call did not fail");
    assert.equal((error as { status?: number }).status, GrpcStatus.UNIMPLEMENTED);
    assert.match((error as Error).message, /Too many responses received/);
  } finally {
    channel.close();
    await new Promise((resolve) => server.close(resolve));
    await Deno.remove(dir, { recursive: true });
  }
});
