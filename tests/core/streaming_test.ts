/**
 * Server streams (kv.list): complete iteration, early `break` (cancels the
 * call without an error, and the plugin sees it), AbortSignal and deadline
 * mid-stream.
 */

import assert from "node:assert/strict";
import { GrpcStatus, type PluginClient, type PluginClientOptions, TetherError } from "../../mod.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { ignoreWithoutGo } from "../helpers.ts";
import { bytes, inSandbox, type Sandbox, sleep, text } from "./support.ts";

async function started(box: Sandbox, options: PluginClientOptions): Promise<PluginClient> {
  const client = box.client(options);
  await client.start();
  return client;
}

async function listAndBreak(client: PluginClient): Promise<void> {
  const kv = client.dispense(KV);
  const keys = Array.from({ length: 40 }, (_, i) => `s/${String(i).padStart(2, "0")}`);
  // Shuffled inserts; the plugin lists in key order.
  for (const key of [...keys].reverse()) await kv.put({ key, value: bytes(`value of ${key}`) });
  await kv.put({ key: "other", value: bytes("x") });

  const all: { key: string; value: string }[] = [];
  for await (const entry of kv.list({ prefix: "s/" })) all.push({ key: entry.key, value: text(entry.value) });
  assert.deepEqual(all, keys.map((key) => ({ key, value: `value of ${key}` })));

  const none = [];
  for await (const entry of kv.list({ prefix: "nothing/" })) none.push(entry);
  assert.deepEqual(none, []);

  // Early break: no error, and the connection is fine afterwards.
  const firstThree: string[] = [];
  for await (const entry of kv.list({ prefix: "s/" })) {
    firstThree.push(entry.key);
    if (firstThree.length === 3) break;
  }
  assert.deepEqual(firstThree, keys.slice(0, 3));

  // Breaking many streams in a row leaks nothing that breaks later calls.
  for (let i = 0; i < 20; i++) {
    for await (const _ of kv.list({ prefix: "" })) break;
  }
  assert.equal(text((await kv.get({ key: "other" })).value), "x");
  await client.ping();
}

Deno.test("stream: TS plugin: list streams every entry in order; early break cancels without error", async () => {
  await inSandbox(async (box) => await listAndBreak(await started(box, box.tsKv())));
});

Deno.test({
  name: "stream: Go plugin: list streams every entry in order; early break cancels without error",
  ignore: ignoreWithoutGo(),
  fn: () => inSandbox(async (box) => await listAndBreak(await started(box, await box.goKv()))),
});

Deno.test("stream: an early break cancels the stream in the plugin (its endless stream stops)", async () => {
  await inSandbox(async (box) => {
    const client = await started(box, box.tsFake("cancel_probe.ts"));
    const kv = client.dispense(KV);
    const received: string[] = [];
    for await (const entry of kv.list({ prefix: "n" })) {
      received.push(entry.key);
      if (received.length === 5) break;
    }
    assert.deepEqual(received, ["n0", "n1", "n2", "n3", "n4"]);
    let seen = "";
    for (let i = 0; i < 200 && !seen.includes("list:aborted"); i++) {
      await sleep(50);
      seen = text((await kv.get({ key: "seen" })).value);
    }
    assert.match(seen, /list:aborted/, `the plugin's stream was not cancelled: ${seen}`);
  });
});

Deno.test("stream: AbortSignal and deadline end an endless stream with CANCELLED / DEADLINE_EXCEEDED", async () => {
  await inSandbox(async (box) => {
    const client = await started(box, box.tsFake("cancel_probe.ts"));
    const kv = client.dispense(KV);

    const controller = new AbortController();
    let count = 0;
    const cancelled = await (async () => {
      try {
        for await (const _ of kv.list({ prefix: "a" }, { signal: controller.signal })) {
          if (++count === 3) controller.abort();
        }
      } catch (error) {
        return error;
      }
    })();
    assert.ok(cancelled instanceof TetherError, String(cancelled));
    assert.equal(cancelled.code, "rpc");
    assert.equal(cancelled.status, GrpcStatus.CANCELLED);
    assert.ok(count >= 3);

    const expired = await (async () => {
      try {
        for await (const _ of kv.list({ prefix: "d" }, { timeoutMs: 300 })) {
          // Endless until the deadline.
        }
      } catch (error) {
        return error;
      }
    })();
    assert.ok(expired instanceof TetherError, String(expired));
    assert.equal(expired.code, "rpc");
    assert.equal(expired.status, GrpcStatus.DEADLINE_EXCEEDED);
    await client.ping();
  });
});

Deno.test("stream: the plugin dying mid-stream ends the iteration with exited", async () => {
  await inSandbox(async (box) => {
    const client = await started(box, box.tsFake("cancel_probe.ts"));
    const kv = client.dispense(KV);
    let count = 0;
    const error = await (async () => {
      try {
        for await (const _ of kv.list({ prefix: "z" })) {
          if (++count === 3) Deno.kill(client.pid!, "SIGKILL");
        }
      } catch (error) {
        return error;
      }
    })();
    assert.ok(error instanceof TetherError, String(error));
    assert.equal(error.code, "exited", error.message);
    assert.match(error.message, /SIGKILL/);
  });
});
