/**
 * go-plugin's broker through PluginClient: the host serves a service the
 * plugin dials (callbacks), the plugin serves one the host dials, errors
 * cross both hops, and dialing an id nobody announced times out. The host's
 * brokered servers take the host's receive limit and count the requests they
 * hold against its receive budget.
 */

import assert from "node:assert/strict";
import {
  GrpcStatus,
  type PluginClient,
  type PluginClientOptions,
  receiveBudget,
  registration,
  setReceiveBudget,
  TetherError,
} from "../../mod.ts";
import * as grpc from "@grpc/grpc-js";
import * as http2 from "node:http2";
import * as net from "node:net";
import { Buffer } from "node:buffer";
import { Broker, type ConnInfoInit } from "../../src/broker.ts";
import { GRPCBroker } from "../../src/gen/plugin/grpc_broker_pb.ts";
import { assertPinnedAddress } from "../../src/handshake.ts";
import { AsyncQueue } from "../../src/queue.ts";
import { createServiceClient } from "../../src/rpc.ts";
import { Adder, KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { denoPlugin, ignoreWithoutGo } from "../helpers.ts";
import { inSandbox, kvHandshake, rejectsWith, type Sandbox, text } from "./support.ts";

async function started(box: Sandbox, options: PluginClientOptions): Promise<PluginClient> {
  const client = box.client(options);
  await client.start();
  return client;
}

/** The host serves an Adder; the plugin dials it (addViaHost) and adds through it. */
async function hostServes(client: PluginClient, box: Sandbox): Promise<void> {
  const calls: [bigint, bigint][] = [];
  const id = client.broker.nextId();
  const endpoint = await client.broker.acceptAndServe(id, [
    registration(Adder, {
      add: ({ a, b }) => {
        calls.push([a, b]);
        return { sum: a + b };
      },
    }),
  ]);
  // The host's broker listener lives in the launch's private directory.
  assert.ok(endpoint.address.startsWith(`${box.dir}/`), endpoint.address);
  const kv = client.dispense(KV);
  assert.equal((await kv.addViaHost({ adderBrokerId: id, a: 20n, b: 22n })).sum, 42n);
  assert.deepEqual(calls, [[20n, 22n]]);

  // A second service on another id.
  const id2 = client.broker.nextId();
  assert.notEqual(id2, id);
  await client.broker.acceptAndServe(id2, [registration(Adder, { add: ({ a, b }) => ({ sum: a * b }) })]);
  assert.equal((await kv.addViaHost({ adderBrokerId: id2, a: 6n, b: 7n })).sum, 42n);
}

/** The plugin serves an Adder (openAdder); the host dials it. */
async function pluginServes(client: PluginClient, box: Sandbox): Promise<void> {
  const kv = client.dispense(KV);
  const { brokerId } = await kv.openAdder({});
  assert.ok(brokerId > 0);
  const connection = await client.broker.dial(brokerId);
  try {
    assert.equal(connection.endpoint.network, "unix");
    assert.ok(connection.endpoint.address.startsWith(`${box.dir}/`), connection.endpoint.address);
    const adder = connection.client(Adder);
    assert.equal((await adder.add({ a: 2n, b: 3n })).sum, 5n);
    assert.equal((await adder.add({ a: -10n, b: 4n })).sum, -6n);
  } finally {
    connection.close();
  }
  // Another one gets a fresh id.
  const second = await kv.openAdder({});
  assert.notEqual(second.brokerId, brokerId);
  const again = await client.broker.dial(second.brokerId);
  assert.equal((await again.client(Adder).add({ a: 1n, b: 1n })).sum, 2n);
  again.close();
}

for (const autoMTLS of [true, false]) {
  const mode = autoMTLS ? "AutoMTLS" : "plaintext";
  Deno.test(`broker: TS plugin, ${mode}: host serves, plugin dials`, async () => {
    await inSandbox(async (box) => await hostServes(await started(box, box.tsKv({ autoMTLS })), box));
  });
  Deno.test(`broker: TS plugin, ${mode}: plugin serves, host dials`, async () => {
    await inSandbox(async (box) => await pluginServes(await started(box, box.tsKv({ autoMTLS })), box));
  });
  Deno.test({
    name: `broker: Go plugin, ${mode}: both directions`,
    ignore: ignoreWithoutGo(),
    fn: () =>
      inSandbox(async (box) => {
        const client = await started(box, await box.goKv([], { autoMTLS }));
        await hostServes(client, box);
        await pluginServes(client, box);
      }),
  });
}

Deno.test("broker: dialing an id nobody announced fails with code broker after timeoutMs", async () => {
  await inSandbox(async (box) => {
    const client = await started(box, box.tsKv());
    const started_ = Date.now();
    const error = await rejectsWith(client.broker.dial(999, 300), "broker");
    assert.ok(Date.now() - started_ < 4_000, "the small timeoutMs was not used");
    assert.match(error.message, /timeout waiting for connection info for broker id 999/);
    // The broker still works afterwards.
    const { brokerId } = await client.dispense(KV).openAdder({});
    const connection = await client.broker.dial(brokerId, 10_000);
    assert.equal((await connection.client(Adder).add({ a: 1n, b: 2n })).sum, 3n);
    connection.close();
  });
});

Deno.test("broker: an error in the host's callback reaches the host through the plugin, status intact", async () => {
  await inSandbox(async (box) => {
    const client = await started(box, box.tsKv());
    const id = client.broker.nextId();
    await client.broker.acceptAndServe(id, [
      registration(Adder, {
        add: () => {
          throw new TetherError("rpc", "overflow in the host's adder", { status: GrpcStatus.OUT_OF_RANGE });
        },
      }),
    ]);
    const error = await rejectsWith(
      client.dispense(KV).addViaHost({ adderBrokerId: id, a: 1n, b: 2n }),
      "rpc",
    );
    assert.equal(error.status, GrpcStatus.OUT_OF_RANGE);
    assert.match(error.message, /overflow in the host's adder/);
  });
});

Deno.test("broker: after kill the broker refuses with closed, and its listeners are gone", async () => {
  await inSandbox(async (box) => {
    const client = await started(box, box.tsKv());
    const broker = client.broker;
    const endpoint = await broker.acceptAndServe(broker.nextId(), [
      registration(Adder, { add: ({ a, b }) => ({ sum: a + b }) }),
    ]);
    await client.kill();
    await rejectsWith(broker.acceptAndServe(broker.nextId(), []), "closed");
    await rejectsWith(broker.dial(1, 100), "closed");
    let gone = false;
    try {
      Deno.lstatSync(endpoint.address);
    } catch {
      gone = true;
    }
    assert.ok(gone, `host broker socket ${endpoint.address} left behind`);
  });
});

Deno.test("broker: the host survives a plugin stopping while a brokered connection is idle (subprocess)", async () => {
  await inSandbox(async (box) => {
    const { cmd, args } = denoPlugin("tests/fixtures/plugins/idle_broker_host.ts");
    const host = new Deno.Command(cmd, {
      args: [...args, box.dir, box.marker, "30"],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    box.watchPid(host.pid);
    const out = await host.output();
    // Exit 139 (SIGSEGV) or 134 (nghttp2 assertion) means the host process died because the plugin's
    // server sent a GOAWAY on the idle brokered session (denoland/deno#36788).
    assert.equal(
      out.code,
      0,
      `the host died (code ${out.code}, signal ${out.signal}): ${text(out.stderr).slice(-500)}`,
    );
    assert.equal(text(out.stdout).trim(), "done");
    // A dead host leaves its launches' private directories; nothing else.
    for (const entry of Deno.readDirSync(box.dir)) {
      await Deno.remove(`${box.dir}/${entry.name}`, { recursive: true });
    }
  });
});

/** What a broker has queued for the peer, after closing it (the stream then ends). */
async function drained(broker: Broker): Promise<ConnInfoInit[]> {
  broker.close();
  const sent: ConnInfoInit[] = [];
  for await (const info of broker.outgoing) sent.push(info);
  return sent;
}

function knock(serviceId: number, ack = false): ConnInfoInit {
  return { serviceId, network: "", address: "", knock: { knock: true, ack, error: "" } };
}

Deno.test("broker knocks: each id answered once with an ack carrying the refusal; acks and floods get nothing", async () => {
  const broker = new Broker(undefined, { network: "unix" });
  for (let i = 0; i < 10_000; i++) broker.receive(knock(1));
  broker.receive(knock(2, true));
  for (let id = 100; id < 300; id++) broker.receive(knock(id));
  const sent = await drained(broker);
  assert.deepEqual(sent[0], {
    serviceId: 1,
    network: "",
    address: "",
    knock: { knock: true, ack: true, error: "gRPC broker multiplexing is not supported by this side" },
  });
  assert.equal(sent.filter((info) => info.serviceId === 1).length, 1);
  assert.equal(sent.filter((info) => info.serviceId === 2).length, 0, "an ack was answered");
  // Distinct ids are answered up to a cap: a peer cannot make this side send without bound.
  assert.equal(sent.length, 64);
  assert.ok(sent.every((info) => info.knock?.ack === true));
});

Deno.test("broker knocks: two Tether brokers wired to each other go quiet after one answer (no knock ping-pong)", async () => {
  const a = new Broker(undefined, { network: "unix" });
  const b = new Broker(undefined, { network: "unix" });
  const delivered: string[] = [];
  const sentinelAtA = Promise.withResolvers<void>();
  const pump = async (from: Broker, to: Broker, name: string) => {
    for await (const info of from.outgoing) {
      delivered.push(`${name}:${info.serviceId}:${info.knock?.ack ? "ack" : "knock"}`);
      to.receive(info);
      if (to === a && info.serviceId === 9) sentinelAtA.resolve();
    }
  };
  const pumps = [pump(a, b, "a->b"), pump(b, a, "b->a")];
  a.receive(knock(7));
  // A later knock's answer travels the same queues: when it arrives, anything the first one set off
  // (in the old code, knocks answered with knocks, forever) would have been delivered before it.
  b.receive(knock(9));
  await sentinelAtA.promise;
  assert.deepEqual(delivered, ["a->b:7:ack", "b->a:9:ack"]);
  a.close();
  b.close();
  await Promise.all(pumps);
});

Deno.test("broker knocks: a real plugin process answers a knock flood once per id, over its broker stream", async () => {
  await inSandbox(async (box) => {
    const env: Record<string, string> = {
      [kvHandshake.magicCookieKey]: kvHandshake.magicCookieValue,
      PLUGIN_PROTOCOL_VERSIONS: "1",
      PLUGIN_UNIX_SOCKET_DIR: box.dir,
    };
    for (const name of ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME"]) {
      const value = Deno.env.get(name);
      if (value !== undefined) env[name] = value;
    }
    const { cmd, args } = denoPlugin("examples/kv/plugin.ts");
    const child = new Deno.Command(cmd, {
      args: [...args, box.marker],
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    box.watchPid(child.pid);
    let socket = "";
    let channel: grpc.Client | undefined;
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let line = "";
      while (!line.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error("plugin printed no handshake line");
        line += value;
      }
      reader.releaseLock();
      socket = line.split("|")[3];
      channel = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
      const requests = new AsyncQueue<ConnInfoInit>();
      const answers = createServiceClient(channel, GRPCBroker).startStream(requests);
      // 5000 knocks for id 1, then one for the sentinel id 2: the stream is ordered both ways, so
      // when the sentinel's answer arrives every answer to the flood has arrived before it.
      for (let i = 0; i < 5_000; i++) requests.push(knock(1));
      requests.push(knock(2));
      const received: ConnInfoInit[] = [];
      for await (const info of answers) {
        received.push(info);
        if (info.serviceId === 2) break;
      }
      assert.deepEqual(received.map((info) => [info.serviceId, info.knock?.ack]), [[1, true], [2, true]]);
      assert.match(received[0].knock!.error, /multiplexing is not supported/);
      requests.close();
    } finally {
      channel?.close();
      child.kill("SIGKILL");
      await child.status;
      if (socket) await Deno.remove(socket).catch(() => {});
    }
  });
});

Deno.test("broker: an announced address the pin refuses is never dialled", async () => {
  const outside = await Deno.makeTempDir({ dir: "/tmp", prefix: "tbpin" });
  const path = `${outside}/service.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  let connections = 0;
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        connections++;
        conn.close();
      }
    } catch {
      // Closed.
    }
  })();
  const broker = new Broker(
    undefined,
    { network: "unix" },
    undefined,
    (endpoint, id) =>
      assertPinnedAddress(endpoint, { plugin: "p", socketDir: "/tmp/launch-dir" }, `broker connection ${id}`),
  );
  try {
    broker.receive({ serviceId: 5, network: "unix", address: path });
    const error = await rejectsWith(broker.dial(5, 1_000), "handshake");
    assert.match(error.message, new RegExp(`announced unix "${path}" in broker connection 5`));
    assert.equal(connections, 0);
  } finally {
    broker.close();
    listener.close();
    await accepting;
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("broker: a flood of announcements nobody dials keeps only the newest 1024", async () => {
  const broker = new Broker(undefined, { network: "unix" });
  try {
    for (let id = 1; id <= 100_000; id++) {
      broker.receive({ serviceId: id, network: "unix", address: `/x/${id}` });
    }
    // The newest are still there (dial finds them at once, then fails to connect: nothing listens)...
    const newest = await broker.dial(100_000, 1);
    assert.equal(newest.endpoint.address, "/x/100000");
    newest.close();
    const edge = await broker.dial(100_000 - 1023, 1);
    edge.close();
    // ...the older ones were dropped: dialling waits for a new announcement and times out.
    await rejectsWith(broker.dial(100_000 - 1024, 1), "broker");
    await rejectsWith(broker.dial(1, 1), "broker");
  } finally {
    broker.close();
  }
});

/**
 * Sends one Add request whose prefix announces `announced` bytes, then half-closes, to a brokered server;
 * resolves with the call's grpc-status and grpc-message.
 */
async function announceRequest(socket: string, announced: number): Promise<[string, string]> {
  const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket) });
  session.on("error", () => {});
  try {
    const stream = session.request({
      ":method": "POST",
      ":path": "/tether.kv.v1.Adder/Add",
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("error", () => {});
    const prefix = Buffer.alloc(5 + 1024);
    prefix.writeUInt32BE(announced, 1);
    stream.end(prefix);
    stream.resume();
    const headers: http2.IncomingHttpHeaders = {};
    stream.on("response", (h) => Object.assign(headers, h));
    stream.on("trailers", (h) => Object.assign(headers, h));
    await new Promise((resolve) => stream.once("close", resolve));
    return [String(headers["grpc-status"]), decodeURIComponent(String(headers["grpc-message"] ?? ""))];
  } finally {
    session.destroy();
  }
}

Deno.test("broker: the host's brokered servers refuse a request over the host's maxReceiveMessageBytes", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "tether-broker-limit-" });
  const adder = registration(Adder, { add: ({ a, b }) => ({ sum: a + b }) });
  // A host's broker (it has receive options): its own limit, default 128 MiB, not go-plugin's 2^31-1.
  const host = new Broker(undefined, { network: "unix", socketDir: dir }, undefined, undefined, {
    peer: 'plugin "kv"',
  });
  const raised = new Broker(undefined, { network: "unix", socketDir: dir }, undefined, undefined, {
    maxReceiveMessageBytes: 1000,
  });
  // A plugin's broker: go-plugin's limit, as a Go host expects.
  const plugin = new Broker(undefined, { network: "unix", socketDir: dir });
  try {
    const hostServer = await host.acceptAndServe(host.nextId(), [adder]);
    const [code, message] = await announceRequest(hostServer.address, 2 ** 31 - 16);
    assert.equal(Number(code), GrpcStatus.RESOURCE_EXHAUSTED, message);
    assert.match(message, /Received message larger than max \(2147483632 vs\. 134217728\)/);

    const small = await raised.acceptAndServe(raised.nextId(), [adder]);
    const [smallCode, smallMessage] = await announceRequest(small.address, 1024);
    assert.equal(Number(smallCode), GrpcStatus.RESOURCE_EXHAUSTED, smallMessage);
    assert.match(smallMessage, /Received message larger than max \(1024 vs\. 1000\)/);

    // The plugin's server takes the announcement and waits for the message: the half-close cuts it short.
    const pluginServer = await plugin.acceptAndServe(plugin.nextId(), [adder]);
    const [pluginCode, pluginMessage] = await announceRequest(pluginServer.address, 2 ** 31 - 16);
    assert.equal(Number(pluginCode), GrpcStatus.INTERNAL, pluginMessage);
    assert.match(pluginMessage, /ended in the middle of a message/);
  } finally {
    host.close();
    raised.close();
    plugin.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A framed AddRequest {a: 1, b: 2} of exactly `length` bytes: its bulk an unknown bytes field 15 of zeros. */
function largeAdd(length: number): Buffer {
  const fixed = [0x08, 0x01, 0x10, 0x02, 0x7a];
  const inner = length - fixed.length - varint(length).length;
  const head = [...fixed, ...varint(inner)];
  assert.equal(head.length + inner, length);
  const framed = Buffer.alloc(5 + length);
  framed.writeUInt32BE(length, 1);
  framed.set(head, 5);
  return framed;
}

interface OpenCall {
  readonly session: http2.ClientHttp2Session;
  readonly stream: http2.ClientHttp2Stream;
  /** grpc-status and grpc-message once the stream closed. */
  readonly status: Promise<[number, string]>;
  /** Whether the status has come. */
  readonly settled: () => boolean;
}

/** Opens an Add call on a connection of its own to a brokered server; nothing is written yet. */
function openAdd(socket: string): OpenCall {
  const session = http2.connect("http://localhost", { createConnection: () => net.connect(socket) });
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": "/tether.kv.v1.Adder/Add",
    "content-type": "application/grpc",
    te: "trailers",
  });
  stream.on("error", () => {});
  stream.resume();
  const headers: http2.IncomingHttpHeaders = {};
  // A status can come before the caller half-closed (a refusal): the stream stays open until the caller ends it.
  let done = false;
  const take = (h: http2.IncomingHttpHeaders) => {
    Object.assign(headers, h);
    if (headers["grpc-status"] !== undefined) done = true;
  };
  stream.on("response", take);
  stream.on("trailers", take);
  const status = new Promise<[number, string]>((resolve) =>
    stream.once("close", () => {
      done = true;
      session.destroy();
      resolve([Number(headers["grpc-status"]), decodeURIComponent(String(headers["grpc-message"] ?? ""))]);
    })
  );
  return { session, stream, status, settled: () => done };
}

/** Waits (up to 20 s) for `condition`; fails naming `what` if it never holds. */
async function until(what: string, condition: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(condition(), `never happened: ${what} (budget holds ${receiveBudget().heldBytes} bytes)`);
}

const MIB = 2 ** 20;
const OVER_BUDGET =
  /^Received messages held at once would exceed the receive budget \(\d+ held \+ \d+ vs\. max 20971520, all plugins and calls of this process\) receiving a request from plugin "kv"; the host can raise it with setReceiveBudget\(\)$/;

/** A host's broker (it has receive options, as PluginClient gives it) serving an Adder on one socket. */
async function hostAdder(dir: string): Promise<{ broker: Broker; socket: string; added: () => number }> {
  let added = 0;
  const broker = new Broker(undefined, { network: "unix", socketDir: dir }, undefined, undefined, {
    peer: 'plugin "kv"',
  });
  const endpoint = await broker.acceptAndServe(broker.nextId(), [
    registration(Adder, {
      add: ({ a, b }) => {
        added++;
        return { sum: a + b };
      },
    }),
  ]);
  return { broker, socket: endpoint.address, added: () => added };
}

Deno.test("broker: the host's brokered servers count concurrent requests against the receive budget", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "tether-broker-budget-" });
  const { broker, socket, added } = await hostAdder(dir);
  setReceiveBudget(20 * MIB);
  try {
    // Six requests of 7 MiB at once (42 MiB) against a 20 MiB budget: the first 2 MiB of each arrive (past
    // 1/8, each decoder counts its whole message), so some must be refused before any is complete.
    const request = largeAdd(7 * MIB);
    const calls = Array.from({ length: 6 }, () => openAdd(socket));
    for (const call of calls) call.stream.write(request.subarray(0, 2 * MIB));
    await until("a request refused on the budget", () => calls.some((call) => call.settled()));
    for (const call of calls) call.stream.end(call.settled() ? undefined : request.subarray(2 * MIB));
    const statuses = await Promise.all(calls.map((call) => call.status));
    const refused = statuses.filter(([code]) => code === GrpcStatus.RESOURCE_EXHAUSTED);
    const served = statuses.filter(([code]) => code === GrpcStatus.OK);
    assert.equal(refused.length + served.length, 6, JSON.stringify(statuses));
    assert.ok(refused.length >= 1 && served.length >= 1, JSON.stringify(statuses));
    for (const [, message] of refused) assert.match(message, OVER_BUDGET);
    assert.equal(added(), served.length);
    // Every byte went back: to the handlers that ran, and from the calls refused.
    assert.equal(receiveBudget().heldBytes, 0);

    // The same server serves the next request, a large one too.
    const next = openAdd(socket);
    next.stream.end(largeAdd(7 * MIB));
    assert.deepEqual(await next.status, [GrpcStatus.OK, ""]);
    assert.equal(receiveBudget().heldBytes, 0);
  } finally {
    setReceiveBudget(512 * MIB);
    broker.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("broker: a request cut off mid-message gives its bytes back (cancel, lost connection, killed caller)", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "tether-broker-budget-" });
  const { broker, socket, added } = await hostAdder(dir);
  const request = largeAdd(4 * MIB);
  try {
    // The caller cancels (RST_STREAM) half-way.
    const cancelled = openAdd(socket);
    cancelled.stream.write(request.subarray(0, 2 * MIB));
    await until("the request counted", () => receiveBudget().heldBytes === 4 * MIB);
    cancelled.stream.close(http2.constants.NGHTTP2_CANCEL);
    await cancelled.status;
    await until("the cancelled request given back", () => receiveBudget().heldBytes === 0);

    // The connection is lost half-way.
    const lost = openAdd(socket);
    lost.stream.write(request.subarray(0, 2 * MIB));
    await until("the request counted", () => receiveBudget().heldBytes === 4 * MIB);
    lost.session.destroy();
    await until("the lost request given back", () => receiveBudget().heldBytes === 0);

    // A caller process killed half-way (SIGKILL), as a plugin that dies mid-callback.
    const caller = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import * as http2 from "node:http2"; import * as net from "node:net"; import { Buffer } from "node:buffer";
         const session = http2.connect("http://localhost", { createConnection: () => net.connect(${
          JSON.stringify(socket)
        }) });
         const stream = session.request({ ":method": "POST", ":path": "/tether.kv.v1.Adder/Add",
           "content-type": "application/grpc", te: "trailers" });
         const part = Buffer.alloc(5 + 2 * 2 ** 20); part.writeUInt32BE(4 * 2 ** 20, 1);
         stream.write(part, () => console.log("sent"));
         setInterval(() => {}, 1000);`,
      ],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const output = caller.stdout.pipeThrough(new TextDecoderStream()).getReader();
    try {
      assert.equal((await output.read()).value?.trim(), "sent");
      await until("the killed caller's request counted", () => receiveBudget().heldBytes === 4 * MIB);
    } finally {
      caller.kill("SIGKILL");
      await caller.status;
      await output.cancel();
    }
    await until("the killed caller's request given back", () => receiveBudget().heldBytes === 0);
    assert.equal(added(), 0);

    // The server still serves.
    const next = openAdd(socket);
    next.stream.end(request);
    assert.deepEqual(await next.status, [GrpcStatus.OK, ""]);
    assert.equal(added(), 1);
    assert.equal(receiveBudget().heldBytes, 0);
  } finally {
    broker.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
