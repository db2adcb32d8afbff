/**
 * Reattach, both sides, against go-plugin v1.8.0:
 * - a Go plugin started on its own in go-plugin's Test/debug mode (kvplugin -debug prints its
 *   ReattachConfig) is reattached by a Tether host, called (unary, streaming, broker both ways),
 *   left running by kill(), and reattached again by a second host (a host restart); without
 *   `test`, kill() stops it as go-plugin does;
 * - a Tether plugin served with `debug` prints go-plugin's and Terraform's reattach
 *   configurations; a Go host (kvhost -reattach) attaches with it, twice, and its Kill leaves it
 *   running.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  parseReattachConfig,
  PluginClient,
  type ReattachConfig,
  registration,
  type TetherError,
} from "../../mod.ts";
import { generateCertificate } from "../../src/mtls.ts";
import { REATTACH_PREFIX } from "../../plugin.ts";
import { Adder, KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { eventually, goFixture, ignoreWithoutGo, isAlive } from "../helpers.ts";
import {
  type HostLogEntry,
  inSandbox,
  isListening,
  kvHandshake,
  type KvhostReport,
  type Sandbox,
} from "./support.ts";

const ignore = ignoreWithoutGo();
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A plugin started by the test itself, as a debugger or supervisor would. */
interface Started {
  readonly child: Deno.ChildProcess;
  /** Everything it printed on stdout so far. */
  stdout(): string;
  /** The line starting with `prefix`, once printed. */
  line(prefix: string): Promise<string>;
}

function startOnItsOwn(sandbox: Sandbox, cmd: string, args: string[]): Started {
  const child = new Deno.Command(cmd, {
    args,
    env: { TMPDIR: sandbox.dir },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let text = "";
  const reading = (async () => {
    for await (const chunk of child.stdout) text += decoder.decode(chunk, { stream: true });
  })();
  return {
    child,
    stdout: () => text,
    line: async (prefix) => {
      const found = () => text.split("\n").find((line) => line.trim().startsWith(prefix));
      const ok = await eventually(() => found() !== undefined, 30_000);
      assert.ok(ok, `no line starting with ${prefix} on the plugin's stdout within 30 s:\n${text}`);
      void reading;
      return found()!.trim();
    },
  };
}

async function stop(started: Started): Promise<void> {
  try {
    started.child.kill("SIGTERM");
  } catch {
    // Gone.
  }
  await started.child.status;
}

function reattachClient(sandbox: Sandbox, reattach: ReattachConfig): PluginClient {
  return new PluginClient({
    handshake: kvHandshake,
    reattach,
    autoMTLS: false,
    unixSocketDir: sandbox.dir,
    startTimeoutMs: 20_000,
  });
}

/** Put/get, list, and the broker both ways through a reattached client. */
async function exercise(client: PluginClient): Promise<void> {
  const kv = client.dispense(KV);
  await kv.put({ key: "p/b", value: encoder.encode("2") });
  await kv.put({ key: "p/a", value: encoder.encode("1") });
  const keys: string[] = [];
  for await (const entry of kv.list({ prefix: "p/" })) keys.push(entry.key);
  assert.deepEqual(keys, ["p/a", "p/b"]);
  // The host serves, the plugin dials.
  const hostId = client.broker.nextId();
  await client.broker.acceptAndServe(hostId, [registration(Adder, { add: ({ a, b }) => ({ sum: a + b }) })]);
  assert.equal((await kv.addViaHost({ adderBrokerId: hostId, a: 2n, b: 40n })).sum, 42n);
  // The plugin serves, the host dials.
  const { brokerId } = await kv.openAdder({});
  const connection = await client.broker.dial(brokerId);
  try {
    assert.equal((await connection.client(Adder).add({ a: 20n, b: 22n })).sum, 42n);
  } finally {
    connection.close();
  }
}

Deno.test({
  name: "reattach: Tether host -> Go plugin in debug mode: calls, broker both ways, kill() leaves it running",
  ignore,
  fn: () =>
    inSandbox(async (sandbox) => {
      const started = startOnItsOwn(sandbox, sandbox.goPlugin, ["-debug"]);
      try {
        const config = parseReattachConfig(
          (await started.line(REATTACH_PREFIX)).slice(REATTACH_PREFIX.length),
        );
        assert.equal(config.test, true);
        assert.equal(config.pid, started.child.pid);
        assert.equal(config.network, "unix");
        assert.ok(config.address.startsWith(`${sandbox.dir}/`));

        const first = reattachClient(sandbox, config);
        await first.start();
        assert.equal(first.reattached, true);
        assert.equal(first.pid, started.child.pid);
        assert.equal(first.protocolVersion, 1);
        await exercise(first);
        await first.kill();
        assert.equal(first.running, false);
        assert.ok(
          isAlive(started.child.pid),
          "kill() of a test-mode reattached plugin must leave it running",
        );

        // A host restart: a new host reattaches to the same process and finds its state.
        const second = reattachClient(sandbox, config);
        await second.start();
        const got = await second.dispense(KV).get({ key: "p/a" });
        assert.equal(got.found, true);
        assert.equal(decoder.decode(got.value), "1");
        await second.kill();
        assert.ok(isAlive(started.child.pid));
      } finally {
        await stop(started);
      }
    }, {
      // go-plugin's Test mode does not close brokered listeners when Serve ends: the Adder socket the Go
      // plugin served for this host's openAdder stays behind (the Go library's behaviour, cleaned by the
      // sandbox). Every socket of the Tether host is gone.
      allowStaleSockets: 1,
      onStale: (paths) => assert.ok(paths.every((path) => !isListening(path)), JSON.stringify(paths)),
    }),
});

Deno.test({
  name: "reattach: without test mode, kill() asks the reattached Go plugin to shut down, as go-plugin does",
  ignore,
  fn: () =>
    inSandbox(async (sandbox) => {
      const started = startOnItsOwn(sandbox, sandbox.goPlugin, ["-debug"]);
      try {
        const config = parseReattachConfig(
          (await started.line(REATTACH_PREFIX)).slice(REATTACH_PREFIX.length),
        );
        const client = reattachClient(sandbox, { ...config, test: false });
        await client.start();
        await client.ping();
        await client.kill();
        const status = await started.child.status;
        assert.equal(status.success, true, `the plugin ended with ${JSON.stringify(status)}`);
      } finally {
        await stop(started);
      }
    }),
});

Deno.test({
  name:
    "reattach: an attach that fails (plaintext plugin, TLS host) leaves the process alone, even without test",
  ignore,
  fn: () =>
    inSandbox(async (sandbox) => {
      const started = startOnItsOwn(sandbox, sandbox.goPlugin, ["-debug"]);
      try {
        const config = parseReattachConfig(
          (await started.line(REATTACH_PREFIX)).slice(REATTACH_PREFIX.length),
        );
        const certificate = await generateCertificate();
        const client = new PluginClient({
          handshake: kvHandshake,
          reattach: { ...config, test: false },
          tls: { certPem: certificate.certPem, keyPem: certificate.keyPem, caPem: certificate.certPem },
          unixSocketDir: sandbox.dir,
          startTimeoutMs: 10_000,
        });
        await assert.rejects(client.start(), (error: TetherError) => error.code === "tls");
        assert.ok(isAlive(started.child.pid), "a failed attach must not stop the plugin");
        // And it still serves a host that attaches properly.
        const good = reattachClient(sandbox, config);
        await good.start();
        await good.kill();
      } finally {
        await stop(started);
      }
    }),
});

Deno.test({
  name: "reattach: a reattach config that is not usable is a config error before anything connects",
  fn: () => {
    assert.throws(
      () =>
        new PluginClient({
          handshake: kvHandshake,
          reattach: { network: "unix", address: "/nonexistent/p.sock", protocolVersion: 1 },
        }),
      /cannot use AutoMTLS .* set autoMTLS: false/,
    );
    assert.throws(
      () =>
        new PluginClient({
          handshake: kvHandshake,
          autoMTLS: false,
          reattach: { network: "unix", address: "/nonexistent/p.sock", protocolVersion: 9 },
        }),
      /reattach.protocolVersion 9 is not one of the handshake's versions \(1\)/,
    );
    assert.throws(() => parseReattachConfig('{"a":{},"b":{}}'), /several providers, name one/);
    assert.throws(
      () =>
        parseReattachConfig(
          '{"Protocol":"netrpc","ProtocolVersion":1,"Addr":{"Network":"unix","String":"/p"}}',
        ),
      /Protocol is "netrpc", Tether speaks only "grpc"/,
    );
  },
});

async function kvhostReattach(sandbox: Sandbox, config: string): Promise<KvhostReport> {
  const out = await new Deno.Command(await goFixture("kvhost"), {
    args: ["-reattach", config],
    env: { TMPDIR: sandbox.dir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = decoder.decode(out.stdout).trim();
  try {
    return JSON.parse(stdout.split("\n").pop() ?? "");
  } catch {
    throw new Error(
      `kvhost printed no JSON report (exit ${out.code}):\n${stdout}\n${decoder.decode(out.stderr)}`,
    );
  }
}

Deno.test({
  name:
    "reattach: Go host -> Tether plugin in debug mode (go-plugin and TF_REATTACH_PROVIDERS formats), twice",
  ignore,
  fn: () =>
    inSandbox(async (sandbox) => {
      const started = startOnItsOwn(sandbox, sandbox.tsPlugin.cmd, [...sandbox.tsPlugin.args, "--debug"]);
      try {
        const goLine = await started.line(REATTACH_PREFIX);
        const tfLine = await started.line("TF_REATTACH_PROVIDERS=");
        const config = parseReattachConfig(goLine.slice(REATTACH_PREFIX.length));
        assert.deepEqual(
          parseReattachConfig(tfLine.slice("TF_REATTACH_PROVIDERS='".length, -1), "tether.dev/examples/kv"),
          config,
        );
        assert.equal(config.test, true);
        assert.equal(config.pid, started.child.pid);
        const expected = [
          "start",
          "put_get",
          "list",
          "broker_host_serves",
          "broker_plugin_serves",
          "ping",
          "kill",
        ];
        for (const round of [1, 2]) {
          const report = await kvhostReattach(sandbox, goLine);
          const log = report.host_log.split("\n").filter((l) => l.trim()).map((l) =>
            JSON.parse(l) as HostLogEntry
          );
          assert.deepEqual(report.steps.map((s) => s.name), expected, `round ${round}`);
          assert.deepEqual(report.steps.filter((s) => !s.ok), [], `round ${round}: ${JSON.stringify(log)}`);
          assert.equal(report.steps.at(-1)!.detail, "test mode: left running");
          assert.ok(isAlive(started.child.pid), `round ${round}: the plugin must keep serving`);
        }
        // A Tether host reattaches to it as well.
        const client = reattachClient(sandbox, config);
        await client.start();
        assert.equal((await client.dispense(KV).get({ key: "a" })).found, true);
        await client.kill();
      } finally {
        await stop(started);
      }
      assert.equal((await started.child.status).code, 0);
    }, {
      // go-plugin's Kill of a test-mode reattached client returns before closing it, so each kvhost run
      // leaves its own broker listener's socket (the Adder it served) behind when it exits. The Tether
      // plugin's sockets are all gone (serve() removes them on SIGTERM).
      allowStaleSockets: 2,
      onStale: (paths) => assert.ok(paths.every((path) => !isListening(path)), JSON.stringify(paths)),
    }),
});
