/**
 * The reference Go host (tests/interop/go/cmd/kvhost, hashicorp/go-plugin
 * v1.8.0) launching Tether's TypeScript KV plugin (examples/kv/plugin.ts):
 * every step of kvhost's `all` scenario with and without AutoMTLS (calls,
 * broker callbacks both ways, stdio, logs, ping, a graceful kill), the log
 * levels as go-plugin records them, and go-plugin's own refusal when the host
 * asks for broker multiplexing. Every test checks that no process and no
 * socket is left.
 *
 * @module
 */

import assert from "node:assert/strict";
import { denoPlugin, ignoreWithoutGo, isAlive } from "../helpers.ts";
import {
  assertAllStepsOk,
  type HostLogEntry,
  inSandbox,
  isListening,
  kvHandshake,
  LEVELS,
  runKvhost,
  step,
} from "./support.ts";

const ignore = ignoreWithoutGo();

const ALL_STEPS = [
  "start",
  "put_get",
  "list",
  "broker_host_serves",
  "broker_plugin_serves",
  "stdio",
  "logs",
  "ping",
  "kill",
];

/** The pid go-plugin logged for the plugin it started. */
function pluginPid(log: HostLogEntry[]): number {
  const started = log.find((e) => e["@message"] === "plugin started");
  assert.ok(started && typeof started.pid === "number", "host log has no 'plugin started' entry with a pid");
  return started.pid as number;
}

for (const autoMTLS of [true, false]) {
  Deno.test({
    name: `Go host (go-plugin) -> TypeScript plugin (automtls=${autoMTLS}): scenario all`,
    ignore,
    fn: () =>
      inSandbox(async (sandbox) => {
        const { code, report, log, stderr } = await runKvhost(
          sandbox,
          [`-automtls=${autoMTLS}`, "-scenario", "all", "-timeout", "60s"],
          sandbox.tsPlugin,
        );
        assertAllStepsOk(report, ALL_STEPS);
        assert.equal(code, 0, stderr);
        assert.match(step(report, "start").detail, /protocol=grpc version=1/);

        // AutoMTLS really was used (or really was not).
        const mtls = log.some((e) => e["@message"] === "configuring client automatic mTLS");
        assert.equal(mtls, autoMTLS);

        // Broker callbacks in both directions, with the answers checked by kvhost.
        assert.match(step(report, "broker_host_serves").detail, /2\+40=42/);
        assert.match(step(report, "broker_plugin_serves").detail, /20\+22=42/);

        // stdio: kvhost saw out-line on SyncStdout and err-line on SyncStderr; go-plugin
        // received them over GRPCStdio on the right channels.
        assert.equal(step(report, "stdio").detail, "out-line on SyncStdout, err-line on SyncStderr");
        const channels = log.filter((e) => e["@message"] === "received data").map((e) => e.channel);
        assert.deepEqual(channels, ["STDOUT", "STDERR"]);

        // Logs: kvhost checked the levels; check them here too, with the plugin's fields.
        assert.equal(
          step(report, "logs").detail,
          LEVELS.map((l) => `msg-${l}=${l}`).join(" "),
        );
        const emitted = log.filter((e) => e["@message"].startsWith("msg-"));
        assert.deepEqual(
          emitted.map((e) => `${e["@message"]}@${e["@level"]}`),
          LEVELS.map((l) => `msg-${l}@${l}`),
          "each log entry of the plugin must appear once, at its own level",
        );
        for (const entry of emitted) {
          assert.equal(entry.source, "emit", `source field of ${entry["@message"]}`);
          // go-plugin names the plugin's logger after the command's basename.
          assert.equal(entry["@module"], "kvhost.deno");
          // The plugin's 6-digit @timestamp parsed (go-plugin forwards it as "timestamp").
          assert.equal(typeof entry.timestamp, "string", `timestamp of ${entry["@message"]} not parsed`);
        }
        // Nothing of the plugin's stderr was unparsable JSON or a stray plain line.
        const pluginLines = log.filter((e) => e["@module"] === "kvhost.deno");
        assert.deepEqual(pluginLines.filter((e) => !e["@message"].startsWith("msg-")), []);

        // Kill: graceful (Shutdown, exit within 2 s), process reaped, clean exit.
        assert.equal(step(report, "kill").ok, true);
        const killMs = Number(/duration_ms=([\d.]+)/.exec(step(report, "kill").detail)?.[1]);
        assert.ok(killMs < 2000, `kill took ${killMs} ms`);
        assert.equal(report.host_log.includes("plugin failed to exit gracefully"), false);
        const exited = log.find((e) => e["@message"] === "plugin process exited");
        assert.ok(exited, "go-plugin did not log the plugin's exit");
        assert.equal(exited["@level"], "info", `plugin exit was not clean: ${JSON.stringify(exited)}`);
        assert.equal(exited.error, undefined);
        assert.equal(isAlive(pluginPid(log)), false);
      }),
  });
}

for (const autoMTLS of [true, false]) {
  Deno.test({
    name:
      `Go host with GRPCBrokerMultiplex (autoMTLS=${autoMTLS}) -> TypeScript plugin: every step, multiplexed`,
    ignore,
    fn: () =>
      inSandbox(async (sandbox) => {
        const { report, log } = await runKvhost(
          sandbox,
          ["-mux", `-automtls=${autoMTLS}`, "-scenario", "all", "-timeout", "60s"],
          sandbox.tsPlugin,
        );
        assertAllStepsOk(report, ALL_STEPS);
        // go-plugin's client muxer logs its one yamux connection: proof that the plugin said "|true".
        assert.ok(log.some((e) => e["@message"] === "client muxer connected"), "the host did not multiplex");
        assert.equal(isAlive(pluginPid(log)), false);
      }),
  });
}

Deno.test({
  name: "Go host asking for broker multiplexing: control run against the Go plugin (which supports it)",
  ignore,
  fn: () =>
    inSandbox(async (sandbox) => {
      const { report, log } = await runKvhost(
        sandbox,
        ["-mux", "-automtls=true", "-scenario", "all", "-timeout", "60s"],
        { cmd: sandbox.goPlugin, args: [] },
      );
      // -mux really switches multiplexing on: a v1.8.0 plugin accepts it and the broker still works.
      assertAllStepsOk(report, ALL_STEPS);
      // The Go plugin logs how its yamux server routes each stream: proof that mux was on.
      assert.ok(
        log.some((e) => e["@message"] === "sending conn to brokered listener"),
        "no multiplexed broker stream",
      );
    }, {
      // go-plugin v1.8.0 itself leaves its main socket behind in mux mode: the plugin serves on a
      // grpcmux.GRPCServerMuxer whose Close() closes the yamux session but never the underlying
      // unix listener (internal/grpcmux/grpc_server_muxer.go:146), so the file is not unlinked.
      allowStaleSockets: 1,
      onStale: (paths) => {
        for (const path of paths) assert.equal(isListening(path), false, `${path} still has a listener`);
      },
    }),
});

Deno.test({
  name:
    "Go host with AutoMTLS -> TypeScript plugin that may not read PLUGIN_CLIENT_CERT: start refused, the grant named",
  ignore,
  fn: () =>
    inSandbox(async (sandbox) => {
      // Everything the plugin needs except the certificate's variable: before the fix, serve() took the
      // unreadable PLUGIN_CLIENT_CERT as unset and served plaintext to a host that asked for mTLS.
      const env = [
        kvHandshake.magicCookieKey,
        "PLUGIN_PROTOCOL_VERSIONS",
        "PLUGIN_UNIX_SOCKET_DIR",
        "PLUGIN_UNIX_SOCKET_GROUP",
        "PLUGIN_MIN_PORT",
        "PLUGIN_MAX_PORT",
        "PLUGIN_MULTIPLEX_GRPC",
        "TETHER_PLUGIN_SOCKET",
        "TMPDIR",
        "GRPC_*",
        "NODE_*",
      ];
      const ts = denoPlugin("examples/kv/plugin.ts", [
        "--allow-read",
        "--allow-write",
        "--allow-net",
        `--allow-env=${env.join(",")}`,
      ]);
      const { code, report, log } = await runKvhost(
        sandbox,
        ["-automtls=true", "-scenario", "all", "-timeout", "60s"],
        { cmd: ts.cmd, args: [...ts.args, sandbox.dir] },
      );
      assert.equal(code, 1);
      assert.equal(report.ok, false);
      const start = step(report, "start");
      assert.equal(start.ok, false, "the plugin started although it could not read the host's certificate");
      // go-plugin relays the plugin's hclog line at its level, with the plugin's own text.
      const refusal = log.find((e) =>
        typeof e["@message"] === "string" && e["@message"].includes("--allow-env=PLUGIN_CLIENT_CERT")
      );
      assert.ok(refusal, `the host log does not name the grant:\n${JSON.stringify(log, null, 1)}`);
      assert.equal(refusal["@level"], "error");
      assert.match(refusal["@message"], /may not read the environment variable PLUGIN_CLIENT_CERT/);
      // No handshake line was read, so go-plugin never tried to connect.
      assert.equal(log.some((e) => e["@message"] === "using plugin"), false);
    }),
});
