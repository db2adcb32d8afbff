/**
 * The host's receive limits (src/receive_limits.ts) against Go go-plugin
 * plugins: the per-message limit (`maxReceiveMessageBytes`) refuses an answer
 * on its announced length with RESOURCE_EXHAUSTED and leaves the connection
 * usable; the process-wide receive budget (`setReceiveBudget`) fails the calls
 * whose bytes do not fit while others go on; and every path (success, refusal,
 * cancel, deadline, the plugin's death) gives the bytes back: the budget
 * returns to 0.
 */

import assert from "node:assert/strict";
import {
  DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
  DEFAULT_RECEIVE_BUDGET_BYTES,
  GrpcStatus,
  PluginClient,
  type PluginClientOptions,
  receiveBudget,
  setReceiveBudget,
  TetherError,
} from "../../mod.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { setChannelImplementation } from "../../src/channel.ts";
import { H2Channel } from "../../src/h2channel.ts";
import { frame, MessageDecoder } from "../../src/grpc_wire.ts";
import { Buffer } from "node:buffer";
import { eventually, goFixture, ignoreWithoutGo } from "../helpers.ts";
import { inSandbox, kvHandshake, rejectsWith, type Sandbox, sleep } from "./support.ts";

const MiB = 2 ** 20;
/** A Terraform-schema-sized value, as the benchmark stores (benchplugin takes Puts this large). */
const BIG = 7 * MiB;

async function benchPlugin(box: Sandbox, extra: Partial<PluginClientOptions> = {}): Promise<PluginClient> {
  const client = box.client({
    cmd: await goFixture("benchplugin"),
    args: [box.marker],
    handshake: kvHandshake,
    unixSocketDir: box.dir,
    name: "benchplugin",
    ...extra,
  });
  await client.start();
  return client;
}

/** The HTTP/2 sessions the lean calls of `run` went out on, in order (a new one means a new dial). */
async function sessionsUsed(run: () => Promise<unknown>): Promise<unknown[]> {
  const used: unknown[] = [];
  const original = H2Channel.prototype.session;
  H2Channel.prototype.session = function (this: H2Channel) {
    const session = original.call(this);
    if (session instanceof Promise) session.then((s) => used.push(s));
    else used.push(session);
    return session;
  };
  try {
    await run();
  } finally {
    H2Channel.prototype.session = original;
  }
  return used;
}

/** Waits for the budget to be back to 0 (a call's bytes go back as its status is delivered). */
async function budgetBackToZero(): Promise<void> {
  assert.ok(
    await eventually(() => receiveBudget().heldBytes === 0, 5000),
    `receive budget still holds ${receiveBudget().heldBytes} bytes`,
  );
}

Deno.test({
  name:
    "answer limits: an answer over maxReceiveMessageBytes fails with RESOURCE_EXHAUSTED naming the plugin " +
    "and the option; the next call on the same connection works; raised, the answer arrives",
  ignore: ignoreWithoutGo(),
  fn: () =>
    inSandbox(async (box) => {
      const limited = await benchPlugin(box, { maxReceiveMessageBytes: 4 * MiB });
      const kv = limited.dispense(KV);
      await kv.put({ key: "big", value: new Uint8Array(BIG).fill(7) });
      const error = await rejectsWith(kv.get({ key: "big" }), "rpc");
      assert.equal(error.status, GrpcStatus.RESOURCE_EXHAUSTED);
      assert.match(
        error.message,
        new RegExp(
          `RESOURCE_EXHAUSTED: Received message larger than max \\((\\d+) vs\\. ${4 * MiB}\\); ` +
            "raise maxReceiveMessageBytes for plugin benchplugin$",
        ),
      );
      // The announced length is the serialised GetResponse: the value plus a few bytes of framing.
      const announced = Number(/max \((\d+) vs/.exec(error.message)![1]);
      assert.ok(announced > BIG && announced < BIG + 16, `announced ${announced}`);
      // Only the stream was reset: the same HTTP/2 session (and the plugin) serves the next calls.
      const sessions = await sessionsUsed(async () => {
        await kv.put({ key: "small", value: new Uint8Array([1, 2, 3]) });
        await rejectsWith(kv.get({ key: "big" }), "rpc");
        assert.deepEqual([...(await kv.get({ key: "small" })).value], [1, 2, 3]);
      });
      assert.equal(sessions.length, 3);
      assert.equal(
        new Set(sessions).size,
        1,
        "a refusal dropped the connection: the next call dialled again",
      );
      assert.equal(limited.running, true);
      await budgetBackToZero();

      const raised = await benchPlugin(box, { maxReceiveMessageBytes: 8 * MiB });
      const kv2 = raised.dispense(KV);
      await kv2.put({ key: "big", value: new Uint8Array(BIG).fill(9) });
      const answer = await kv2.get({ key: "big" });
      assert.equal(answer.value.length, BIG);
      assert.ok(answer.value.every((byte) => byte === 9));
      await budgetBackToZero();
    }),
});

Deno.test({
  name: "answer limits: the default limit (128 MiB) takes a 7 MiB answer; grpc-js's channel applies the " +
    "same per-message limit",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    assert.equal(DEFAULT_MAX_RECEIVE_MESSAGE_BYTES, 128 * MiB);
    await inSandbox(async (box) => {
      const kv = (await benchPlugin(box)).dispense(KV);
      await kv.put({ key: "big", value: new Uint8Array(BIG) });
      assert.equal((await kv.get({ key: "big" })).value.length, BIG);
    });
    await setChannelImplementation("grpc-js");
    try {
      await inSandbox(async (box) => {
        const kv = (await benchPlugin(box, { maxReceiveMessageBytes: 4 * MiB })).dispense(KV);
        await kv.put({ key: "big", value: new Uint8Array(BIG) });
        const error = await rejectsWith(kv.get({ key: "big" }), "rpc");
        assert.equal(error.status, GrpcStatus.RESOURCE_EXHAUSTED);
        // grpc-js's own words ("vs" without the dot grpc-go writes).
        assert.match(error.message, /Received message larger than max \(\d+ vs 4194304\)$/);
        assert.equal((await kv.get({ key: "absent" })).found, false);
      });
    } finally {
      await setChannelImplementation("lean");
    }
  },
});

Deno.test({
  name: "answer limits: concurrent large answers over the receive budget: the excess calls fail with " +
    "RESOURCE_EXHAUSTED naming the budget, the others arrive, the budget returns to 0",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    assert.equal(receiveBudget().budgetBytes, DEFAULT_RECEIVE_BUDGET_BYTES);
    setReceiveBudget(20 * MiB);
    try {
      await inSandbox(async (box) => {
        const kv = (await benchPlugin(box)).dispense(KV);
        for (let i = 0; i < 6; i++) await kv.put({ key: `big/${i}`, value: new Uint8Array(BIG).fill(i) });
        const outcomes = await Promise.allSettled(
          Array.from({ length: 6 }, (_, i) => kv.get({ key: `big/${i}` })),
        );
        const arrived = outcomes.flatMap((outcome, i) =>
          outcome.status === "fulfilled" ? [[i, outcome.value.value] as const] : []
        );
        const refused = outcomes.flatMap((outcome) => outcome.status === "rejected" ? [outcome.reason] : []);
        assert.ok(arrived.length >= 1, "no answer arrived");
        assert.ok(refused.length >= 1, "every answer fitted: the budget was not exceeded");
        for (const [i, value] of arrived) {
          assert.equal(value.length, BIG);
          assert.ok(value.every((byte) => byte === i), `answer ${i} is not its own value`);
        }
        for (const error of refused) {
          assert.ok(error instanceof TetherError);
          assert.equal(error.status, GrpcStatus.RESOURCE_EXHAUSTED);
          assert.match(
            error.message,
            new RegExp(
              `would exceed the receive budget \\(\\d+ held \\+ \\d+ vs\\. max ${
                20 * MiB
              }, all plugins and ` +
                "calls of this process\\) receiving from plugin benchplugin; raise it with setReceiveBudget\\(\\)",
            ),
          );
        }
        await budgetBackToZero();
        // The refusals reset streams only: the connection serves the next call, and a lone answer fits.
        assert.equal((await kv.get({ key: "big/0" })).value.length, BIG);
        await budgetBackToZero();
      });
    } finally {
      setReceiveBudget(DEFAULT_RECEIVE_BUDGET_BYTES);
    }
  },
});

Deno.test({
  name: "answer limits: a stream's unread answers count against the budget and go back on cancel, deadline " +
    "and the plugin's death",
  ignore: ignoreWithoutGo(),
  fn: () =>
    inSandbox(async (box) => {
      const client = box.client({
        cmd: await goFixture("kvplugin"),
        args: [box.marker],
        handshake: kvHandshake,
        unixSocketDir: box.dir,
      });
      await client.start();
      const kv = client.dispense(KV);
      // 1 MiB entries: grpc-go's default 4 MiB receive limit in kvplugin takes each Put.
      for (let i = 0; i < 24; i++) {
        await kv.put({ key: `e/${String(i).padStart(2, "0")}`, value: new Uint8Array(MiB).fill(i) });
      }

      /** Reads one entry of a List, then stops reading: the next answers wait in the host, counted. */
      const stalled = async (options: { timeoutMs?: number; signal?: AbortSignal } = {}) => {
        const stream = kv.list({ prefix: "e/" }, options)[Symbol.asyncIterator]();
        const first = await stream.next();
        assert.equal(first.done, false);
        assert.ok(
          await eventually(() => receiveBudget().heldBytes >= MiB, 5000),
          `the unread answers are not counted (${receiveBudget().heldBytes} bytes held)`,
        );
        return stream;
      };

      // Cancel: the consumer stops early.
      const cancelled = await stalled();
      await cancelled.return!(undefined);
      await budgetBackToZero();

      // An AbortSignal while answers wait unread.
      const abort = new AbortController();
      const aborted = await stalled({ signal: abort.signal });
      abort.abort();
      await budgetBackToZero();
      await assert.rejects(
        () => aborted.next(),
        (error: TetherError) => error.status === GrpcStatus.CANCELLED,
      );

      // The deadline passes while answers wait unread: released without the consumer reading again.
      const late = await stalled({ timeoutMs: 1500 });
      await sleep(1600);
      await budgetBackToZero();
      await assert.rejects(
        () => late.next(),
        (error: TetherError) => error.status === GrpcStatus.DEADLINE_EXCEEDED,
      );

      // The plugin dies mid-stream: the consumer reads what arrived, then the failure; nothing stays held.
      const orphan = await stalled();
      Deno.kill(client.pid!, "SIGKILL");
      let failure: unknown;
      try {
        while (!(await orphan.next()).done) { /* what arrived before the death */ }
      } catch (error) {
        failure = error;
      }
      assert.ok(failure instanceof TetherError, `the stream did not fail: ${String(failure)}`);
      await budgetBackToZero();
    }),
});

Deno.test("answer limits: maxReceiveMessageBytes and setReceiveBudget refuse what is not a byte count", () => {
  const base = { cmd: "/bin/true", handshake: kvHandshake };
  for (const bad of [0, -1, 1.5, 2 ** 31, Number.NaN, "1024" as unknown as number]) {
    assert.throws(
      () => new PluginClient({ ...base, maxReceiveMessageBytes: bad }),
      (error: TetherError) =>
        error instanceof TetherError && error.code === "config" &&
        error.message ===
          "PluginClient: maxReceiveMessageBytes must be an integer number of bytes from 1 to " +
            `2147483647 (2^31-1, go-plugin's own limit), got ${
              typeof bad === "string" ? '"1024"' : String(bad)
            }`,
    );
  }
  for (const good of [1, 2 ** 31 - 1]) new PluginClient({ ...base, maxReceiveMessageBytes: good });
  for (const bad of [0, 1.5, Number.POSITIVE_INFINITY, 2 ** 53]) {
    assert.throws(
      () => setReceiveBudget(bad),
      (error: TetherError) =>
        error instanceof TetherError && error.code === "config" &&
        error.message.startsWith("setReceiveBudget: the receive budget must be an integer number of bytes") &&
        error.message.endsWith(`got ${String(bad)}`),
    );
  }
  assert.equal(receiveBudget().budgetBytes, DEFAULT_RECEIVE_BUDGET_BYTES);
});

Deno.test("answer limits: the decoder holds what arrived, not what a prefix announces, then one exact buffer", () => {
  let taken = 0;
  const decoder = new MessageDecoder(128 * MiB, {
    take: (bytes) => {
      taken += bytes;
      return undefined;
    },
  });
  const out: Buffer[] = [];
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(100 * MiB, 1);
  assert.equal(decoder.push(prefix, out), undefined);
  assert.equal(taken, 0, "the announced length alone took memory");
  const chunk = Buffer.alloc(MiB, 1);
  for (let i = 0; i < 12; i++) decoder.push(chunk, out);
  assert.equal(taken, 12 * MiB, "pieces are counted as they arrive");
  // 1/8 of 100 MiB = 12.5 MiB: the 13th MiB moves the message into its own buffer, counted at full length.
  decoder.push(chunk, out);
  assert.equal(taken, 100 * MiB);
  for (let i = 13; i < 100; i++) decoder.push(chunk, out);
  assert.equal(taken, 100 * MiB, "bytes written into the message's buffer were counted twice");
  assert.equal(out.length, 1);
  assert.equal(out[0].length, 100 * MiB);
  assert.ok(out[0].every((byte) => byte === 1));
  // A refusal by the accounting ends the decoding with its status.
  const refusing = new MessageDecoder(1024, { take: () => [GrpcStatus.RESOURCE_EXHAUSTED, "no room"] });
  assert.deepEqual(refusing.push(frame(Buffer.from("abc")), []), [GrpcStatus.RESOURCE_EXHAUSTED, "no room"]);
});
