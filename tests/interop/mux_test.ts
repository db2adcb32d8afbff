/**
 * A Tether host with grpcBrokerMultiplex (go-plugin's GRPCBrokerMultiplex) against the Go plugin
 * (go-plugin v1.8.0 multiplexes when asked) and the TypeScript plugin: put/get/list, the broker both
 * ways over knocks and yamux streams, stdio, ping, kill; a plugin that does not multiplex is refused.
 * (A Go host with multiplexing driving the TypeScript plugin is in go_host_ts_plugin_test.ts.)
 *
 * @module
 */

import assert from "node:assert/strict";
import { PluginClient, type PluginClientOptions, registration } from "../../mod.ts";
import { Adder, KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { ignoreWithoutGo } from "../helpers.ts";
import { collectingLogger, inSandbox, kvHandshake, type Sandbox, textSink } from "./support.ts";

const ignore = ignoreWithoutGo();
const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function everyStep(client: PluginClient, stdout: () => string): Promise<void> {
  const kv = client.dispense(KV);
  await kv.put({ key: "a", value: encoder.encode("1") });
  assert.equal(decoder.decode((await kv.get({ key: "a" })).value), "1");
  await kv.put({ key: "p/c", value: encoder.encode("3") });
  await kv.put({ key: "p/b", value: encoder.encode("2") });
  const listed: string[] = [];
  for await (const entry of kv.list({ prefix: "p/" })) {
    listed.push(`${entry.key}=${decoder.decode(entry.value)}`);
  }
  assert.deepEqual(listed, ["p/b=2", "p/c=3"]);
  // The host serves; the plugin knocks and opens a stream to reach it.
  for (const [a, b] of [[2n, 40n], [6n, 36n]]) {
    const id = client.broker.nextId();
    await client.broker.acceptAndServe(id, [registration(Adder, { add: (r) => ({ sum: r.a + r.b }) })]);
    assert.equal((await kv.addViaHost({ adderBrokerId: id, a, b }, { timeoutMs: 10_000 })).sum, 42n);
  }
  // The plugin serves; the host knocks and opens a stream.
  const { brokerId } = await kv.openAdder({});
  const connection = await client.broker.dial(brokerId);
  try {
    assert.equal((await connection.client(Adder).add({ a: 20n, b: 22n }, { timeoutMs: 10_000 })).sum, 42n);
  } finally {
    connection.close();
  }
  await kv.emit({ stdout: "out-line\n" });
  for (let i = 0; i < 100 && !stdout().includes("out-line"); i++) await new Promise((r) => setTimeout(r, 20));
  assert.match(stdout(), /out-line/);
  await client.ping();
}

function options(sandbox: Sandbox, plugin: "go" | "ts", autoMTLS: boolean): PluginClientOptions {
  return {
    ...(plugin === "go" ? { cmd: sandbox.goPlugin } : sandbox.tsPlugin),
    handshake: kvHandshake,
    env: sandbox.pluginEnv,
    unixSocketDir: sandbox.dir,
    startTimeoutMs: 20_000,
    grpcBrokerMultiplex: true,
    autoMTLS,
  };
}

for (const plugin of ["go", "ts"] as const) {
  for (const autoMTLS of [true, false]) {
    Deno.test({
      name:
        `mux: Tether host with grpcBrokerMultiplex -> ${plugin} plugin (autoMTLS=${autoMTLS}): every step`,
      ignore,
      fn: () =>
        inSandbox(
          async (sandbox) => {
            const logger = collectingLogger();
            const out = textSink();
            const client = new PluginClient({
              ...options(sandbox, plugin, autoMTLS),
              logger,
              stdout: out.sink,
            });
            try {
              await client.start();
              sandbox.track(client.endpoint);
              await everyStep(client, out.text);
              if (plugin === "go") {
                // The Go plugin logs how its yamux server routes each stream: proof that mux was on.
                assert.ok(logger.records.some((r) => r.message === "sending conn to brokered listener"));
              }
            } finally {
              await client.kill();
            }
            assert.equal((await client.exited).killed, false, "it ended on Shutdown");
          },
        ),
    });
  }
}

Deno.test({
  name: "mux: a plugin that does not multiplex is refused with go-plugin's message",
  ignore,
  fn: () =>
    inSandbox(async (sandbox) => {
      // A go-plugin plugin older than 1.6 prints no 7th field; the fixture's line is forged via a shell plugin.
      const client = new PluginClient({
        cmd: "/bin/sh",
        args: ["-c", `echo "1|1|unix|${sandbox.dir}/none|grpc|"; exec sleep 30`],
        handshake: kvHandshake,
        unixSocketDir: sandbox.dir,
        grpcBrokerMultiplex: true,
        autoMTLS: false,
      });
      await assert.rejects(
        client.start(),
        /client requested gRPC broker multiplexing but plugin does not support the feature \(its handshake line has no 7th field\)/,
      );
      await client.kill();
    }),
});

Deno.test("mux: a sandboxed deno plugin with grpcBrokerMultiplex is a config error, nothing started", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tmx" });
  try {
    const client = new PluginClient({
      cmd: new URL("../../examples/kv/plugin.ts", import.meta.url).pathname,
      handshake: kvHandshake,
      unixSocketDir: dir,
      grpcBrokerMultiplex: true,
    });
    await assert.rejects(
      client.start(),
      /grpcBrokerMultiplex is not supported for a sandboxed deno plugin/,
    );
    assert.equal(client.pid, undefined);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
