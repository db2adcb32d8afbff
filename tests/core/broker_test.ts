/**
 * go-plugin's broker through PluginClient: the host serves a service the
 * plugin dials (callbacks), the plugin serves one the host dials, errors
 * cross both hops, and dialing an id nobody announced times out.
 */

import assert from "node:assert/strict";
import {
  GrpcStatus,
  type PluginClient,
  type PluginClientOptions,
  registration,
  TetherError,
} from "../../mod.ts";
import { Adder, KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { denoPlugin, ignoreWithoutGo } from "../helpers.ts";
import { inSandbox, rejectsWith, type Sandbox, text } from "./support.ts";

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
