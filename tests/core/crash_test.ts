/**
 * A plugin that dies in the middle of a call: the call (and any other call in
 * flight) rejects with code `exited` naming the exit code, the host carries
 * on, nothing is left behind, and a new plugin can be started.
 */

import assert from "node:assert/strict";
import type { PluginClientOptions } from "../../mod.ts";
import { GrpcStatus } from "../../mod.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { ignoreWithoutGo, isAlive } from "../helpers.ts";
import { bytes, inSandbox, Recorder, rejectsWith, type Sandbox, text } from "./support.ts";

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

async function dieMidCall(box: Sandbox, options: PluginClientOptions): Promise<void> {
  const logger = new Recorder();
  const client = box.client({ ...options, logger });
  await client.start();
  const kv = client.dispense(KV);
  await kv.put({ key: "before", value: bytes("crash") });
  const address = client.endpoint!.address;
  const pid = client.pid!;

  // A call that would take long is in flight when another call makes the plugin exit.
  const pending = kv.sleep({ millis: 60_000 });
  pending.catch(() => {});
  const error = await rejectsWith(kv.sleep({ millis: 0, exitCode: 3 }), "exited");
  assert.match(error.message, /exited during the call \(exit code 3\)/);
  assert.equal(error.plugin, client.name);
  assert.equal(error.status, GrpcStatus.UNAVAILABLE);
  const other = await rejectsWith(pending, "exited");
  assert.match(other.message, /exit code 3/);

  assert.deepEqual(await client.exited, { code: 3, signal: null, killed: false });
  assert.ok(client.hasExited);
  assert.ok(!isAlive(pid));
  assert.ok(isAlive(Deno.pid), "the host went down with its plugin");
  const logged = logger.find("plugin process exited");
  assert.equal(logged.length, 1);
  assert.equal(logged[0].level, "error");
  assert.equal(logged[0].fields.code, 3);

  // A crashed plugin cannot unlink its socket; the host cleans up after it.
  assert.ok(!exists(address), `stale socket ${address}`);
  // Later calls fail the same way, with a TetherError.
  await rejectsWith(kv.get({ key: "before" }), "exited");
  // kill() after the crash is harmless.
  await client.kill();
  await client.kill();

  // The host can start the plugin again: a fresh process with fresh state.
  const second = box.client(options);
  await second.start();
  assert.notEqual(second.pid, pid);
  const kv2 = second.dispense(KV);
  assert.equal((await kv2.get({ key: "before" })).found, false);
  await kv2.put({ key: "after", value: bytes("ok") });
  assert.equal(text((await kv2.get({ key: "after" })).value), "ok");
  await second.kill();
  assert.deepEqual(await second.exited, { code: 0, signal: null, killed: false });
}

Deno.test("crash: TS plugin exits mid-call → the call rejects with exited (exit code 3); a new plugin starts", async () => {
  await inSandbox(async (box) => await dieMidCall(box, box.tsKv()));
});

Deno.test({
  name: "crash: Go plugin exits mid-call → the call rejects with exited (exit code 3); a new plugin starts",
  ignore: ignoreWithoutGo(),
  fn: () => inSandbox(async (box) => await dieMidCall(box, await box.goKv())),
});

Deno.test({
  name: "crash: Go plugin exits mid-call, plaintext (autoMTLS: false) → exited as well",
  ignore: ignoreWithoutGo(),
  fn: () =>
    inSandbox(async (box) => {
      const client = box.client(await box.goKv([], { autoMTLS: false }));
      await client.start();
      const error = await rejectsWith(client.dispense(KV).sleep({ exitCode: 42 }), "exited");
      assert.match(error.message, /exit code 42/);
      assert.equal((await client.exited).code, 42);
    }),
});

Deno.test("crash: the exited error carries the plugin's last stderr lines", async () => {
  await inSandbox(async (box) => {
    const client = box.client(box.tsKv());
    await client.start();
    const kv = client.dispense(KV);
    await kv.emit({ logLevel: "error", logMessage: "about to fall over" });
    const error = await rejectsWith(kv.sleep({ exitCode: 9 }), "exited");
    assert.match(error.message, /Last lines of the plugin's stderr/);
    assert.match(error.message, /about to fall over/);
  });
});
