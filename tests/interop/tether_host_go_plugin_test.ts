/**
 * Tether's host (PluginClient) against the reference Go plugin
 * (tests/interop/go/cmd/kvplugin, hashicorp/go-plugin v1.8.0): start with and
 * without AutoMTLS, unary and streaming calls, ping, kill, version
 * negotiation, broker callbacks in both directions, and stdio and log
 * forwarding. Every test checks that no process and no socket is left.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type LogRecord, PluginClient, registration, TetherError } from "../../mod.ts";
import { Adder, KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { ignoreWithoutGo, isAlive } from "../helpers.ts";
import {
  collectingLogger,
  inSandbox,
  isListening,
  kvHandshake,
  LEVELS,
  type Sandbox,
  textSink,
} from "./support.ts";

const ignore = ignoreWithoutGo();
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function goClient(sandbox: Sandbox, options: Partial<ConstructorParameters<typeof PluginClient>[0]> = {}) {
  return new PluginClient({
    cmd: sandbox.goPlugin,
    handshake: kvHandshake,
    env: sandbox.pluginEnv,
    unixSocketDir: sandbox.dir,
    startTimeoutMs: 20_000,
    ...options,
  });
}

function gracefulExitProblems(records: LogRecord[]): LogRecord[] {
  return records.filter((r) => r.message.includes("failed to exit gracefully"));
}

for (const autoMTLS of [true, false]) {
  Deno.test({
    name: `Tether host -> Go plugin (autoMTLS=${autoMTLS}): put/get/list, ping, kill`,
    ignore,
    fn: () =>
      inSandbox(async (sandbox) => {
        const logger = collectingLogger();
        const client = goClient(sandbox, { autoMTLS, logger });
        try {
          await client.start();
          sandbox.track(client.endpoint);
          assert.equal(client.protocolVersion, 1);
          assert.equal(client.endpoint?.network, "unix");
          assert.ok(
            client.endpoint!.address.startsWith(`${sandbox.dir}/`),
            `Go plugin socket ${client.endpoint!.address} is not under unixSocketDir ${sandbox.dir}`,
          );
          const pid = client.pid!;
          assert.ok(isAlive(pid));

          const kv = client.dispense(KV);
          await kv.put({ key: "a", value: encoder.encode("1") });
          const got = await kv.get({ key: "a" });
          assert.equal(got.found, true);
          assert.equal(decoder.decode(got.value), "1");
          const missing = await kv.get({ key: "missing" });
          assert.equal(missing.found, false);

          // Out of order on purpose: the plugin sorts; the prefix filters "a" out.
          await kv.put({ key: "p/c", value: encoder.encode("3") });
          await kv.put({ key: "p/b", value: encoder.encode("2") });
          const listed: string[] = [];
          for await (const entry of kv.list({ prefix: "p/" })) {
            listed.push(`${entry.key}=${decoder.decode(entry.value)}`);
          }
          assert.deepEqual(listed, ["p/b=2", "p/c=3"]);

          await client.ping();

          const started = performance.now();
          await client.kill();
          const killMs = performance.now() - started;
          assert.equal(client.hasExited, true);
          const exit = await client.exited;
          // go-plugin's Serve returns after Shutdown: a clean exit, not our SIGKILL.
          assert.deepEqual(exit, { code: 0, signal: null, killed: false });
          assert.ok(
            killMs < 2000,
            `kill took ${killMs.toFixed(0)} ms: the Go plugin did not exit on Shutdown`,
          );
          assert.deepEqual(gracefulExitProblems(logger.records), []);
          assert.equal(isAlive(pid), false);
          assert.equal(isListening(client.endpoint!.address), false);

          // Kill is idempotent and later calls fail. (They should fail with a TetherError `closed`;
          // today a dispensed client rejects with grpc-js' plain "Channel has been shut down", and
          // its streaming methods throw that synchronously: reported as a src/rpc.ts bug.)
          await client.kill();
          await assert.rejects(kv.get({ key: "a" }), /shut down|killed|closed/);
          await assert.rejects(
            async () => await client.dispense(KV).get({ key: "a" }),
            /shut down|killed|closed/,
          );
        } finally {
          await client.kill();
        }
      }),
  });
}

Deno.test({
  name: "Tether host -> Go plugin: protocol version negotiation (PLUGIN_PROTOCOL_VERSIONS)",
  ignore,
  fn: async (t) => {
    // kvplugin -versions 2,3 serves the same plugin set under versions 2 and 3.
    const cases: { offered: number[]; chosen: number }[] = [
      { offered: [1, 2], chosen: 2 },
      { offered: [1, 2, 3], chosen: 3 },
      { offered: [3, 5], chosen: 3 },
    ];
    for (const { offered, chosen } of cases) {
      await t.step(
        `host offers ${offered.join(",")}: plugin picks ${chosen}`,
        () =>
          inSandbox(async (sandbox) => {
            const client = goClient(sandbox, {
              args: ["-versions", "2,3"],
              handshake: { ...kvHandshake, protocolVersion: undefined, protocolVersions: offered },
            });
            try {
              await client.start();
              sandbox.track(client.endpoint);
              assert.equal(client.protocolVersion, chosen);
              const kv = client.dispense(KV);
              await kv.put({ key: "v", value: encoder.encode(String(chosen)) });
              assert.equal(decoder.decode((await kv.get({ key: "v" })).value), String(chosen));
            } finally {
              await client.kill();
            }
          }),
      );
    }
    // The Go plugin printed its line (with its lowest version) and listens; the host refuses the
    // line and kills it without a Shutdown, so the plugin cannot unlink its socket. The per-launch
    // private directory (here inside the sandbox) goes with it: nothing may be left.
    await t.step(
      "no common version: start fails with go-plugin's diagnosis",
      () =>
        inSandbox(async (sandbox) => {
          const client = goClient(sandbox, {
            args: ["-versions", "2,3"],
            handshake: { ...kvHandshake, protocolVersion: undefined, protocolVersions: [4, 5] },
          });
          try {
            const error = await client.start().then(() => undefined, (e: unknown) => e);
            assert.ok(error instanceof TetherError, `start should fail, got ${String(error)}`);
            assert.equal(error.code, "handshake");
            assert.match(error.message, /incompatible API version/);
            assert.equal(
              client.hasExited,
              true,
              "a plugin that failed the handshake must be gone after start()",
            );
          } finally {
            await client.kill();
          }
        }),
    );
  },
});

for (const autoMTLS of [true, false]) {
  Deno.test({
    name: `Tether host <-> Go plugin broker callbacks (autoMTLS=${autoMTLS})`,
    ignore,
    fn: () =>
      inSandbox(async (sandbox) => {
        const client = goClient(sandbox, { autoMTLS });
        try {
          await client.start();
          sandbox.track(client.endpoint);
          const kv = client.dispense(KV);

          // The host serves an Adder on a broker id; the Go plugin dials it.
          const hostId = client.broker.nextId();
          let hostAdds = 0;
          const hostEndpoint = await client.broker.acceptAndServe(hostId, [
            registration(Adder, {
              add: ({ a, b }) => {
                hostAdds++;
                return { sum: a + b };
              },
            }),
          ]);
          sandbox.track(hostEndpoint);
          const viaHost = await kv.addViaHost({ adderBrokerId: hostId, a: 2n, b: 40n }, {
            timeoutMs: 10_000,
          });
          assert.equal(viaHost.sum, 42n);
          assert.equal(hostAdds, 1);

          // The Go plugin serves an Adder on its broker id; the host dials it.
          const { brokerId } = await kv.openAdder({});
          assert.ok(brokerId > 0);
          const connection = await client.broker.dial(brokerId);
          sandbox.track(connection.endpoint);
          try {
            assert.equal(
              (await connection.client(Adder).add({ a: 20n, b: 22n }, { timeoutMs: 10_000 })).sum,
              42n,
            );
          } finally {
            connection.close();
          }

          // A second round on fresh ids works too.
          const secondId = client.broker.nextId();
          assert.notEqual(secondId, hostId);
          sandbox.track(
            await client.broker.acceptAndServe(secondId, [
              registration(Adder, { add: ({ a, b }) => ({ sum: a * b }) }),
            ]),
          );
          assert.equal((await kv.addViaHost({ adderBrokerId: secondId, a: 6n, b: 7n })).sum, 42n);

          await client.kill();
          assert.equal(
            isListening(hostEndpoint.address),
            false,
            "the host's broker listener must close on kill",
          );
        } finally {
          await client.kill();
        }
      }),
  });
}

Deno.test({
  name: "Go plugin -> Tether host: stdout/stderr reach the sinks, log levels reach the logger",
  ignore,
  fn: () =>
    inSandbox(async (sandbox) => {
      const logger = collectingLogger();
      const stdout = textSink();
      const stderr = textSink();
      const client = goClient(sandbox, { logger, stdout: stdout.sink, stderr: stderr.sink });
      try {
        await client.start();
        sandbox.track(client.endpoint);
        const kv = client.dispense(KV);

        await kv.emit({ stdout: "out-line\n", stderr: "err-line\n" });
        const until = Date.now() + 3000;
        while (
          (!stdout.text().includes("out-line") || !stderr.text().includes("err-line")) && Date.now() < until
        ) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.equal(stdout.text(), "out-line\n");
        assert.equal(stderr.text(), "err-line\n");
        // What went through GRPCStdio is not also logged as a plugin log line.
        assert.deepEqual(logger.records.filter((r) => /out-line|err-line/.test(r.message)), []);

        for (const level of LEVELS) await kv.emit({ logLevel: level, logMessage: `msg-${level}` });
        const emitted = () => logger.records.filter((r) => r.message.startsWith("msg-"));
        const deadline = Date.now() + 3000;
        while (emitted().length < LEVELS.length && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const records = emitted();
        assert.deepEqual(
          records.map((r) => `${r.message}@${r.level}`),
          LEVELS.map((level) => `msg-${level}@${level}`),
          "each Emit must give exactly one record, at its own level, in order",
        );
        for (const record of records) {
          assert.equal(record.fields.source, "emit", `source field of ${record.message}`);
          assert.equal(record.fields.plugin, "kvplugin", `plugin field of ${record.message}`);
          // The Go plugin's hclog name and its 6-digit @timestamp are parsed, not left in the message.
          assert.equal(record.fields["@module"], "kvplugin");
          assert.ok(record.timestamp instanceof Date && !Number.isNaN(record.timestamp.getTime()));
        }

        // An unknown level is the plugin's InvalidArgument, surfaced as an rpc error.
        await assert.rejects(
          kv.emit({ logLevel: "loud", logMessage: "x" }),
          (e: unknown) => e instanceof TetherError && e.code === "rpc" && e.statusName === "INVALID_ARGUMENT",
        );
        await client.kill();
        assert.deepEqual(gracefulExitProblems(logger.records), []);
      } finally {
        await client.kill();
      }
    }),
});
