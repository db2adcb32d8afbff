/**
 * The host's lean client streams (src/calls.ts on H2Call, no grpc-js) at their edges, against grpc-go
 * (tests/interop/go/cmd/streamplugin, a go-plugin plugin whose KV.List misbehaves by prefix, and grpc-go's
 * reflection service for a bidi stream): cancel and deadline mid-stream, flow control both ways, an error
 * status after some messages, a trailers-only error, half-close. The plugin logs how each List call ended
 * ("<prefix> sent=<n> err=<error>"), so the tests see what grpc-go saw, and each connection's begin and end
 * ("conn begin", "conn end"), so they see that a cancel left the connection up.
 */

import assert from "node:assert/strict";
import { GrpcStatus, type HandlerContext, type PluginClient, registration, TetherError } from "../../mod.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import * as v1 from "../../src/gen/grpc/reflection/v1/reflection_pb.ts";
import { openChannel, setChannelImplementation } from "../../src/channel.ts";
import { H2Channel } from "../../src/h2channel.ts";
import { createServiceClient } from "../../src/rpc.ts";
import { startServer } from "../../src/listen.ts";
import { eventually, goFixture, ignoreWithoutGo } from "../helpers.ts";
import { inSandbox, kvHandshake, type Sandbox, sleep } from "./support.ts";

const ENTRY_BYTES = 64 * 1024;
/** How grpc-go's handler of a stream the host reset ends (not "transport is closing": the connection stays). */
const RESET = /code = Canceled/;
const logs: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const log of logs) {
    try {
      Deno.removeSync(log);
    } catch {
      // Already gone.
    }
  }
});

async function streamPlugin(box: Sandbox): Promise<{ client: PluginClient; log: string }> {
  // Outside the sandbox's socket directory, which must be empty at the end.
  const log = await Deno.makeTempFile({ prefix: "streamplugin-", suffix: ".log" });
  logs.push(log);
  const client = box.client({
    cmd: await goFixture("streamplugin"),
    args: [box.marker],
    handshake: kvHandshake,
    unixSocketDir: box.dir,
    env: { STREAMPLUGIN_LOG: log },
  });
  await client.start();
  return { client, log };
}

/** The plugin's record of the List call for `prefix`, once that call has ended in the plugin. */
async function ended(log: string, prefix: string): Promise<{ sent: number; err: string }> {
  let line: string | undefined;
  const found = await eventually(() => {
    let text = "";
    try {
      text = Deno.readTextFileSync(log);
    } catch {
      return false;
    }
    line = text.split("\n").find((l) => l.startsWith(`${prefix} `));
    return line !== undefined;
  }, 10_000);
  assert.ok(found, `the plugin never ended its List(${prefix}) call`);
  const match = line!.match(/ sent=(\d+) err=(.*)$/)!;
  return { sent: Number(match[1]), err: match[2] };
}

/**
 * Asserts the plugin has seen exactly one connection from the host, still open: a cancel did not take it down
 * (Deno's nghttp2 used to end the whole connection after a reset stream with DATA in flight, see
 * docs/protocol.md "Cancelling a stream"), and the calls after it did not need a new one.
 */
function oneConnectionUp(log: string): void {
  const lines = Deno.readTextFileSync(log).split("\n");
  assert.equal(lines.filter((l) => l === "conn begin").length, 1, "the host dialled the plugin again");
  assert.equal(lines.filter((l) => l === "conn end").length, 0, "the host's connection to the plugin ended");
}

async function rejection(run: () => Promise<unknown>): Promise<TetherError> {
  try {
    await run();
  } catch (error) {
    assert.ok(error instanceof TetherError, `not a TetherError: ${error}`);
    return error;
  }
  assert.fail("the call did not fail");
}

const go = { ignore: ignoreWithoutGo() };

Deno.test({
  ...go,
  name: "lean streams: openChannel opens the lean channel by default; a server stream from grpc-go on it",
  fn: () =>
    inSandbox(async (box) => {
      const { client } = await streamPlugin(box);
      const channel = openChannel(client.reattachConfig!, undefined);
      channel.close(); // Never dialled: the lean channel dials on its first call.
      assert.ok(channel instanceof H2Channel, "openChannel did not open the lean channel");
      const keys: string[] = [];
      for await (const entry of client.dispense(KV).list({ prefix: "ok/" })) keys.push(entry.key);
      assert.deepEqual(keys, ["0", "1", "2"]);
    }),
});

Deno.test({
  ...go,
  name: "lean streams: an error status after some messages arrives after them, as a TetherError",
  fn: () =>
    inSandbox(async (box) => {
      const { client, log } = await streamPlugin(box);
      const kv = client.dispense(KV);
      const keys: string[] = [];
      const error = await rejection(async () => {
        for await (const entry of kv.list({ prefix: "fail-after/" })) keys.push(entry.key);
      });
      assert.deepEqual(keys, ["0", "1", "2"]);
      assert.equal(error.code, "rpc");
      assert.equal(error.status, GrpcStatus.FAILED_PRECONDITION);
      assert.match(error.message, /List failed: FAILED_PRECONDITION: failed after three/);
      assert.equal((await ended(log, "fail-after/")).sent, 3);
    }),
});

Deno.test({
  ...go,
  name: "lean streams: a trailers-only error (no message) fails the first read",
  fn: () =>
    inSandbox(async (box) => {
      const { client } = await streamPlugin(box);
      const kv = client.dispense(KV);
      const keys: string[] = [];
      const error = await rejection(async () => {
        for await (const entry of kv.list({ prefix: "fail-now/" })) keys.push(entry.key);
      });
      assert.deepEqual(keys, []);
      assert.equal(error.status, GrpcStatus.FAILED_PRECONDITION);
      assert.match(error.message, /FAILED_PRECONDITION: nothing to list here/);
      // The connection is fine afterwards.
      await client.ping();
    }),
});

Deno.test({
  ...go,
  name: "lean streams: an AbortSignal mid-stream cancels the call in the plugin; the reader gets CANCELLED",
  fn: () =>
    inSandbox(async (box) => {
      const { client, log } = await streamPlugin(box);
      const kv = client.dispense(KV);
      const controller = new AbortController();
      let read = 0;
      const error = await rejection(async () => {
        for await (const _ of kv.list({ prefix: "endless/16" }, { signal: controller.signal })) {
          if (++read === 5) controller.abort();
        }
      });
      assert.equal(read, 5);
      assert.equal(error.status, GrpcStatus.CANCELLED);
      assert.match((await ended(log, "endless/16")).err, RESET);
      await client.ping();
      oneConnectionUp(log);
    }),
});

Deno.test({
  ...go,
  name: "lean streams: an early break cancels the endless stream in the plugin, without an error",
  fn: () =>
    inSandbox(async (box) => {
      const { client, log } = await streamPlugin(box);
      let read = 0;
      for await (const _ of client.dispense(KV).list({ prefix: "endless/8" })) if (++read === 3) break;
      assert.equal(read, 3);
      // The handler learns of the cancel from the RST_STREAM, and the connection (with thousands of small DATA
      // frames in flight at the cancel) stays up for the next call.
      assert.match((await ended(log, "endless/8")).err, RESET);
      await client.ping();
      oneConnectionUp(log);
    }),
});

Deno.test({
  ...go,
  name:
    "lean streams: five endless streams cancelled at once all end Canceled in the plugin, on the same connection",
  fn: () =>
    inSandbox(async (box) => {
      const { client, log } = await streamPlugin(box);
      const kv = client.dispense(KV);
      const prefixes = [1, 2, 3, 4, 5].map((n) => `endless/${n}`);
      const readers = prefixes.map((prefix) => kv.list({ prefix })[Symbol.asyncIterator]());
      // All five flowing, then cancelled within a few ms of each other: the resets share one zero-window round
      // trip (H2Channel.resetQuietly), or each waits for its own, and every one still reaches the plugin.
      await Promise.all(readers.map(async (reader) => {
        for (let i = 0; i < 3; i++) assert.equal((await reader.next()).done, false);
        await reader.return?.(undefined);
      }));
      for (const prefix of prefixes) assert.match((await ended(log, prefix)).err, RESET, prefix);
      await client.ping();
      oneConnectionUp(log);
    }),
});

Deno.test({
  ...go,
  name: "lean streams: a deadline mid-stream ends the stream with DEADLINE_EXCEEDED, in the plugin too",
  fn: () =>
    inSandbox(async (box) => {
      const { client, log } = await streamPlugin(box);
      let read = 0;
      const error = await rejection(async () => {
        for await (const _ of client.dispense(KV).list({ prefix: "endless/32" }, { timeoutMs: 300 })) {
          read++;
          await sleep(20);
        }
      });
      assert.ok(read > 0, "no message arrived before the deadline");
      assert.equal(error.status, GrpcStatus.DEADLINE_EXCEEDED);
      // grpc-go's own timer (grpc-timeout) or the host's RST_STREAM ends the handler, whichever is first.
      assert.match(
        (await ended(log, "endless/32")).err,
        /DeadlineExceeded|Canceled|deadline/,
      );
      await client.ping();
      oneConnectionUp(log);
    }),
});

Deno.test({
  ...go,
  name: "lean streams: a host that does not read pauses the plugin (HTTP/2 flow control); nothing piles up",
  fn: () =>
    inSandbox(async (box) => {
      const { client, log } = await streamPlugin(box);
      const prefix = `endless/${ENTRY_BYTES}`;
      const stream = client.dispense(KV).list({ prefix })[Symbol.asyncIterator]();
      assert.equal((await stream.next()).value?.value.length, ENTRY_BYTES);
      // Not reading for a while: an unpaused stream would take hundreds of MiB meanwhile.
      await sleep(1500);
      await stream.return?.(undefined);
      const { sent, err } = await ended(log, prefix);
      assert.match(err, RESET);
      // What flow control lets through: the stream's window (8 MiB), grpc-go's and the sockets' buffers.
      assert.ok(
        sent * ENTRY_BYTES <= 24 << 20,
        `the plugin sent ${sent} entries of 64 KiB to a host not reading`,
      );
    }),
});

Deno.test({
  ...go,
  name:
    "lean streams: bidi with grpc-go's reflection: answers in order, the stream ends when the host half-closes",
  fn: () =>
    inSandbox(async (box) => {
      const { client } = await streamPlugin(box);
      const stub = client.dispense(v1.ServerReflection);
      async function* requests() {
        for (let i = 0; i < 50; i++) {
          yield { host: String(i), messageRequest: { case: "listServices" as const, value: "" } };
        }
      }
      const hosts: string[] = [];
      for await (const answer of stub.serverReflectionInfo(requests(), { timeoutMs: 10_000 })) {
        assert.equal(answer.messageResponse.case, "listServicesResponse");
        hosts.push(answer.validHost);
      }
      assert.deepEqual(hosts, Array.from({ length: 50 }, (_, i) => String(i)));
    }),
});

Deno.test({
  ...go,
  name: "lean streams: bidi: a failing request iterable cancels the call; the reader gets CANCELLED",
  fn: () =>
    inSandbox(async (box) => {
      const { client, log } = await streamPlugin(box);
      const stub = client.dispense(v1.ServerReflection);
      const gate = Promise.withResolvers<void>();
      async function* requests() {
        yield { host: "a", messageRequest: { case: "listServices" as const, value: "" } };
        await gate.promise;
        throw new Error("no more requests");
      }
      const hosts: string[] = [];
      const error = await rejection(async () => {
        for await (const answer of stub.serverReflectionInfo(requests())) {
          hosts.push(answer.validHost);
          gate.resolve();
        }
      });
      assert.deepEqual(hosts, ["a"]);
      assert.equal(error.status, GrpcStatus.CANCELLED);
      await client.ping();
      oneConnectionUp(log);
    }),
});

Deno.test("lean streams: a producer the server does not read from waits for drain (bounded), then finishes", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tls" });
  const release = Promise.withResolvers<void>();
  const server = await startServer(
    [
      registration(v1.ServerReflection, {
        async *serverReflectionInfo(requests: AsyncIterable<v1.ServerReflectionRequest>) {
          await release.promise;
          let n = 0;
          for await (const _ of requests) n++;
          yield { validHost: String(n) };
        },
      } as never),
    ],
    { network: "unix", socketDir: dir },
    undefined,
  );
  const channel = openChannel(server.endpoint, undefined);
  try {
    let pulled = 0;
    const total = 2000;
    const big = "x".repeat(ENTRY_BYTES);
    const requests = async function* () {
      for (; pulled < total;) {
        pulled++;
        yield { host: big, messageRequest: { case: "listServices" as const, value: "" } };
      }
    };
    const answers = createServiceClient(channel, v1.ServerReflection).serverReflectionInfo(requests())[
      Symbol.asyncIterator
    ]();
    const first = answers.next();
    // The server reads nothing yet: the producer stops once the windows and buffers are full.
    assert.ok(await eventually(() => pulled > 10, 10_000), "the producer never started");
    await sleep(1000);
    const stalled = pulled;
    assert.ok(stalled < total, `the producer sent all ${total} requests (128 MiB) to a server not reading`);
    release.resolve();
    const answer = await first;
    assert.equal(answer.value?.validHost, String(total));
    assert.equal((await answers.next()).done, true);
  } finally {
    channel.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test('lean streams: setChannelImplementation("grpc-js") loads grpc-js\'s channel when chosen; calls and metadata work on it', async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tls" });
  const server = await startServer(
    [
      registration(v1.ServerReflection, {
        async *serverReflectionInfo(
          requests: AsyncIterable<v1.ServerReflectionRequest>,
          context: HandlerContext,
        ) {
          for await (const request of requests) {
            yield { validHost: `${request.host}:${context.metadata.mode}` };
          }
        },
      } as never),
    ],
    { network: "unix", socketDir: dir },
    undefined,
  );
  try {
    const loading = setChannelImplementation("grpc-js");
    // This test process has not imported grpc-js: until it has loaded, opening a channel says so.
    assert.throws(
      () => openChannel(server.endpoint, undefined),
      (error: unknown) =>
        error instanceof TetherError && error.code === "config" &&
        /await setChannelImplementation/.test(error.message),
    );
    await loading;
    const channel = openChannel(server.endpoint, undefined);
    try {
      assert.ok(!(channel instanceof H2Channel), "grpc-js was chosen, the lean channel opened");
      const hosts: string[] = [];
      const requests = async function* () {
        yield { host: "a", messageRequest: { case: "listServices" as const, value: "" } };
        yield { host: "b", messageRequest: { case: "listServices" as const, value: "" } };
      };
      const stub = createServiceClient(channel, v1.ServerReflection);
      for await (const answer of stub.serverReflectionInfo(requests(), { metadata: { mode: "m" } })) {
        hosts.push(answer.validHost);
      }
      assert.deepEqual(hosts, ["a:m", "b:m"]);
    } finally {
      channel.close();
    }
  } finally {
    await setChannelImplementation("lean");
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(openChannel(server.endpoint, undefined) instanceof H2Channel, "lean is not back");
});

Deno.test("lean streams: the host's module graph (mod.ts, sftpgo.ts, cli.ts) loads no grpc-js", async () => {
  for (const entry of ["mod.ts", "sftpgo.ts", "cli.ts"]) {
    const graph = await staticGraph(entry);
    assert.ok(
      graph.some((s) => s.endsWith("/src/h2channel.ts")),
      `${entry}: the lean channel is not in its graph`,
    );
    assert.deepEqual(graph.filter((s) => s.includes("grpc-js")), [], `${entry} loads grpc-js at start`);
  }
});

/** The modules a program loads at start (static imports only), from `deno info --json`. */
async function staticGraph(entry: string): Promise<string[]> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: new URL("../../", import.meta.url),
    stderr: "inherit",
  }).output();
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    roots: string[];
    redirects?: Record<string, string>;
    modules: { specifier: string; dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[] }[];
  };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const stack = [...info.roots];
  while (stack.length > 0) {
    let specifier = stack.pop()!;
    specifier = info.redirects?.[specifier] ?? specifier;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dependency of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dependency.code && !dependency.isDynamic) stack.push(dependency.code.specifier);
    }
  }
  return [...seen];
}
