/**
 * The `tether` CLI as a user runs it (a subprocess of `deno run -A cli.ts`): every command against the Go
 * reference plugins (tests/interop/go) and the TypeScript KV plugin (examples/kv/plugin.ts), including failures
 * with their exit codes and messages. Each launching test runs the plugin from a fresh directory and checks
 * that no plugin process is left afterwards.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { file_tether_kv_v1_kv } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { eventually, ignoreWithoutGo, isAlive, processesMatching, repoRoot } from "../helpers.ts";
import { goKvPlugin, KV_COOKIE, tether, tsKvPlugin } from "./support.ts";

const ignore = ignoreWithoutGo();

/** Runs `fn` with a private directory holding a symlink to the Go KV plugin; checks nothing is left running. */
async function withPluginDir(fn: (dir: string, goPlugin: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tether-cli-" });
  const goPlugin = `${dir}/kvplugin`;
  await Deno.symlink(await goKvPlugin(), goPlugin);
  try {
    await fn(dir, goPlugin);
  } finally {
    const gone = await eventually(() => processesMatching(dir).filter(isAlive).length === 0, 5000);
    for (const pid of processesMatching(dir)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    await Deno.remove(dir, { recursive: true });
    assert.ok(gone, "plugin processes left behind");
  }
}

// ---------------------------------------------------------------------------------------------------------------
// General

Deno.test("tether --help lists the commands and exit codes; no command is a usage error (2)", async () => {
  const help = await tether(["--help"]);
  assert.equal(help.code, 0);
  for (const word of ["checksum", "inspect", "call", "pack", "sftpgo check", "sftpgo run", "Exit codes"]) {
    assert.ok(help.stdout.includes(word), word);
  }
  assert.equal((await tether([])).code, 2);
  const unknown = await tether(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
});

Deno.test("every command has --help (exit 0); an unknown flag is a usage error (exit 2)", async () => {
  for (const command of [["checksum"], ["inspect"], ["call"], ["sftpgo"], ["pack"]]) {
    const help = await tether([...command, "--help"]);
    assert.equal(help.code, 0, command.join(" "));
    assert.match(help.stdout, /^Usage: tether /, command.join(" "));
    assert.match(help.stdout, /Exit codes/, command.join(" "));
    const bad = await tether([...command, "--frobnicate"]);
    assert.equal(bad.code, 2, command.join(" "));
    assert.match(bad.stderr, /--frobnicate/);
    assert.match(bad.stderr, /--help" for usage/);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// checksum

Deno.test("checksum prints the SHA-256 SFTPGo's sha256sum expects, like the sha256sum tool", async () => {
  const file = await goKvPlugin();
  const expected = createHash("sha256").update(await Deno.readFile(file)).digest("hex");
  const plain = await tether(["checksum", file]);
  assert.equal(plain.code, 0);
  assert.equal(plain.stdout, `${expected}  ${file}\n`);
  // No colour codes when NO_COLOR is set or stdout is not a terminal.
  assert.ok(!plain.stdout.includes("\x1b["));
  const json = await tether(["checksum", "--json", file]);
  assert.equal(json.code, 0);
  assert.deepEqual(JSON.parse(json.stdout), [{
    file,
    sha256: expected,
    bytes: (await Deno.stat(file)).size,
  }]);
  const ok = await tether(["checksum", "--verify", expected.toUpperCase(), file]);
  assert.equal(ok.code, 0);
});

Deno.test("checksum --verify mismatch exits 3; an unreadable file exits 1; no FILE is a usage error", async () => {
  const file = await goKvPlugin();
  const bad = await tether(["checksum", "--verify", "0".repeat(64), file]);
  assert.equal(bad.code, 3);
  assert.match(bad.stderr, new RegExp(`mismatch: ${file} has SHA-256 [0-9a-f]{64}, expected 0{64}`));
  const missing = await tether(["checksum", "/nonexistent/plugin"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read \/nonexistent\/plugin/);
  assert.equal((await tether(["checksum"])).code, 2);
  assert.equal((await tether(["checksum", "--verify", "abc", file])).code, 2);
});

// ---------------------------------------------------------------------------------------------------------------
// inspect

interface InspectReport {
  handshake: { protocolVersion: number; network: string; address: string; mtls: boolean };
  health: string;
  reflection: string | null;
  services: { name: string; methods: { name: string; kind: string }[] }[];
  startMs: number;
  logs: { level: string; message: string }[];
  exit: { code: number; killed: boolean };
  runtime: string;
}

function assertKvInspect(report: InspectReport, runtime: string): void {
  assert.equal(report.runtime, runtime);
  assert.equal(report.handshake.protocolVersion, 1);
  assert.equal(report.handshake.network, "unix");
  assert.equal(report.handshake.mtls, true);
  assert.equal(report.health, "SERVING");
  assert.equal(report.reflection, "v1");
  const names = report.services.map((s) => s.name);
  for (
    const service of [
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "plugin.GRPCBroker",
      "plugin.GRPCController",
      "plugin.GRPCStdio",
      "tether.kv.v1.KV",
    ]
  ) assert.ok(names.includes(service), `${service} in ${names}`);
  const kv = report.services.find((s) => s.name === "tether.kv.v1.KV")!;
  assert.deepEqual(kv.methods.map((m) => m.name), [
    "Get",
    "Put",
    "List",
    "AddViaHost",
    "OpenAdder",
    "Emit",
    "Sleep",
  ]);
  assert.equal(kv.methods.find((m) => m.name === "List")?.kind, "server_streaming");
  assert.ok(report.startMs >= 0);
  assert.ok(report.logs.some((l) => l.message === "starting plugin"));
  // Clean stop: go-plugin's Shutdown answered, the process exited by itself.
  assert.deepEqual({ code: report.exit.code, killed: report.exit.killed }, { code: 0, killed: false });
}

Deno.test({
  name: "inspect a Go plugin: handshake, health, services and methods from reflection, logs, clean stop",
  ignore,
  fn: () =>
    withPluginDir(async (_dir, goPlugin) => {
      const result = await tether(["inspect", "--json", ...KV_COOKIE, "--", goPlugin]);
      assert.equal(result.code, 0, result.stderr);
      assertKvInspect(JSON.parse(result.stdout), "native");
      const text = await tether(["inspect", ...KV_COOKIE, "--", goPlugin]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^handshake {2}protocol version 1, unix \S+, mTLS \(AutoMTLS\)$/m);
      assert.match(text.stdout, /^health {5}SERVING$/m);
      assert.match(
        text.stdout,
        /^ {4}List\(tether\.kv\.v1\.ListRequest\) returns \(tether\.kv\.v1\.Entry\) \[server streaming\]$/m,
      );
    }),
});

Deno.test({
  name: "inspect a Tether (TypeScript) plugin: the same services, served by serve()'s reflection",
  ignore,
  fn: () =>
    withPluginDir(async (dir) => {
      const result = await tether(["inspect", "--json", ...KV_COOKIE, "--", tsKvPlugin, dir]);
      assert.equal(result.code, 0, result.stderr);
      assertKvInspect(JSON.parse(result.stdout), "deno");
    }),
});

Deno.test({
  name:
    "inspect failures: bad cookie and crash at start exit 4 with the launcher's message; missing cookie is usage",
  ignore,
  fn: () =>
    withPluginDir(async (_dir, goPlugin) => {
      const bad = await tether([
        "inspect",
        "--cookie-key",
        "TETHER_KV_PLUGIN",
        "--cookie-value",
        "wrong",
        "--",
        goPlugin,
      ]);
      assert.equal(bad.code, 4);
      assert.match(bad.stderr, /^tether: error: plugin did not start: /);
      // go-plugin's own refusal, from the plugin's stderr.
      assert.match(bad.stderr, /This binary is a plugin/);
      const crash = await tether([
        "inspect",
        ...KV_COOKIE,
        "--",
        `${repoRoot}/tests/fixtures/plugins/exit_early.sh`,
        "3",
        "boom: cannot open database",
      ]);
      assert.equal(crash.code, 4);
      assert.match(crash.stderr, /plugin did not start: .*exit/s);
      assert.match(crash.stderr, /boom: cannot open database/);
      const wrongSum = await tether(["inspect", ...KV_COOKIE, "--sha256", "0".repeat(64), "--", goPlugin]);
      assert.equal(wrongSum.code, 4);
      assert.match(
        wrongSum.stderr,
        /plugin did not start: plugin kvplugin: checksums did not match .*expected SHA-256 0{64}/,
      );
      const noCookie = await tether(["inspect", "--", goPlugin]);
      assert.equal(noCookie.code, 2);
      assert.match(noCookie.stderr, /--cookie-key and --cookie-value/);
      const noCmd = await tether(["inspect", ...KV_COOKIE]);
      assert.equal(noCmd.code, 2);
    }),
});

// ---------------------------------------------------------------------------------------------------------------
// call

Deno.test({
  name: "call: JSON in and out over reflection, on a Go plugin and a Tether plugin",
  ignore,
  fn: () =>
    withPluginDir(async (dir, goPlugin) => {
      for (const argv of [[goPlugin], [tsKvPlugin, dir]]) {
        const put = await tether([
          "call",
          ...KV_COOKIE,
          "--",
          ...argv,
          "tether.kv.v1.KV/Put",
          '{"key": "a", "value": "aGk="}',
        ]);
        assert.equal(put.code, 0, put.stderr);
        assert.deepEqual(JSON.parse(put.stdout), {});
        const open = await tether([
          "call",
          "--json",
          ...KV_COOKIE,
          "--",
          ...argv,
          "tether.kv.v1.KV.OpenAdder",
          "{}",
        ]);
        assert.equal(open.code, 0, open.stderr);
        const { response } = JSON.parse(open.stdout);
        assert.equal(typeof response.brokerId, "number", open.stdout);
        // Request from stdin; a server stream prints each message (an empty store: none).
        const list = await tether([
          "call",
          "--json",
          ...KV_COOKIE,
          "--",
          ...argv,
          "tether.kv.v1.KV/List",
          "-",
        ], {
          stdin: '{"prefix": ""}',
        });
        assert.equal(list.code, 0, list.stderr);
        assert.deepEqual(JSON.parse(list.stdout), { responses: [] });
      }
    }),
});

Deno.test({
  name:
    "call a bidi stream with a JSON array of requests (the reflection service of a Go and a Tether plugin)",
  ignore,
  fn: () =>
    withPluginDir(async (dir, goPlugin) => {
      for (const argv of [[goPlugin], [tsKvPlugin, dir]]) {
        const result = await tether([
          "call",
          "--json",
          ...KV_COOKIE,
          "--",
          ...argv,
          "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
          '[{"listServices": ""}, {"fileByFilename": "nope.proto"}, {"listServices": ""}]',
        ]);
        assert.equal(result.code, 0, result.stderr);
        const { responses } = JSON.parse(result.stdout);
        assert.equal(responses.length, 3, result.stdout);
        for (const list of [responses[0], responses[2]]) {
          assert.ok(
            list.listServicesResponse.service.some((s: { name: string }) => s.name === "tether.kv.v1.KV"),
          );
        }
        assert.equal(responses[1].errorResponse.errorCode, 5);
      }
    }),
});

Deno.test({
  name: "call with --descriptor-set (no reflection needed) gives the same answer",
  ignore,
  fn: () =>
    withPluginDir(async (dir, goPlugin) => {
      const set = `${dir}/kv.binpb`;
      await Deno.writeFile(
        set,
        toBinary(
          FileDescriptorSetSchema,
          create(FileDescriptorSetSchema, { file: [file_tether_kv_v1_kv.proto] }),
        ),
      );
      const result = await tether([
        "call",
        "--json",
        "--descriptor-set",
        set,
        ...KV_COOKIE,
        "--",
        goPlugin,
        "tether.kv.v1.KV/Get",
        '{"key": "nope"}',
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), { response: {} });
    }),
});

Deno.test({
  name:
    "call failures: unknown method/service (5), request not fitting the type (5), plugin exiting in the call (5), bad JSON (2)",
  ignore,
  fn: () =>
    withPluginDir(async (_dir, goPlugin) => {
      const method = await tether(["call", ...KV_COOKIE, "--", goPlugin, "tether.kv.v1.KV/Delete", "{}"]);
      assert.equal(method.code, 5);
      assert.match(method.stderr, /service tether\.kv\.v1\.KV has no method Delete; it has Get, Put, List/);
      const service = await tether(["call", ...KV_COOKIE, "--", goPlugin, "tether.kv.v9.KV/Get", "{}"]);
      assert.equal(service.code, 5);
      assert.match(
        service.stderr,
        /no service tether\.kv\.v9\.KV on this plugin; it serves .*tether\.kv\.v1\.KV/,
      );
      const fit = await tether(["call", ...KV_COOKIE, "--", goPlugin, "tether.kv.v1.KV/Get", '{"kee": "a"}']);
      assert.equal(fit.code, 5);
      assert.match(fit.stderr, /the request does not fit tether\.kv\.v1\.GetRequest/);
      const exit = await tether([
        "call",
        ...KV_COOKIE,
        "--",
        goPlugin,
        "tether.kv.v1.KV/Sleep",
        '{"exitCode": 7}',
      ]);
      assert.equal(exit.code, 5);
      assert.match(exit.stderr, /tether\.kv\.v1\.KV\/Sleep failed: /);
      const json = await tether(["call", ...KV_COOKIE, "--", goPlugin, "tether.kv.v1.KV/Get", "{nope"]);
      assert.equal(json.code, 2);
      assert.match(json.stderr, /the request is not JSON/);
    }),
});

Deno.test("call --timeout takes a whole number of milliseconds from 1: 1.5, abc, -1 and 0 are usage errors naming the flag", async () => {
  // The plugin path does not exist: a value that got past the check would fail to start (exit 4), not exit 2.
  const missing = `${repoRoot}/tests/fixtures/plugins/no-such-plugin`;
  for (const value of ["1.5", "abc", "-1", "0", "1e3", "2147483648"]) {
    const result = await tether(["call", ...KV_COOKIE, "--timeout", value, "--", missing, "a.B/C", "{}"]);
    assert.equal(result.code, 2, `${value}: ${result.stderr}`);
    assert.ok(
      result.stderr.includes(
        `--timeout must be an integer from 1 to 2147483647, found ${JSON.stringify(value)}`,
      ),
      `${value}: ${result.stderr}`,
    );
  }
  // A value that is one of the command's flags is still refused as a missing value.
  const flag = await tether(["call", ...KV_COOKIE, "--timeout", "--json", "--", missing, "a.B/C", "{}"]);
  assert.equal(flag.code, 2, flag.stderr);
  assert.match(flag.stderr, /--timeout' argument is ambiguous/);
  const ok = await tether(["call", ...KV_COOKIE, "--timeout", "1500", "--", missing, "a.B/C", "{}"]);
  assert.equal(ok.code, 4, ok.stderr);
  assert.match(ok.stderr, /plugin did not start/);
});

Deno.test("call: --protocol-version offers versions (the plugin picks its highest offered); --allow is checked", async () => {
  const plugin = `${repoRoot}/tests/fixtures/plugins/versioned.ts`;
  for (const [offered, picked] of [[["1", "2"], "v2"], [["5", "1"], "v5"], [[], "v1"]] as const) {
    const result = await tether([
      "call",
      ...KV_COOKIE,
      ...offered.flatMap((v) => ["--protocol-version", v]),
      "--",
      plugin,
      "tether.kv.v1.KV/Get",
      '{"key": "x"}',
    ]);
    assert.equal(result.code, 0, result.stderr);
    const response = JSON.parse(result.stdout);
    assert.equal(atob(response.value), picked, offered.join(","));
  }
  const badAllow = await tether(["call", ...KV_COOKIE, "--allow", "disk=/", "--", plugin, "a.B/C", "{}"]);
  assert.equal(badAllow.code, 2);
  assert.match(
    badAllow.stderr,
    /--allow takes KIND=VALUE with KIND read, write, net, env, sys, run, ffi or import/,
  );
});

Deno.test({
  name:
    "call --max-receive-message-bytes limits the plugin's answers (a larger one fails naming the option); " +
    "0 is a usage error",
  ignore,
  fn: () =>
    withPluginDir(async (_dir, goPlugin) => {
      const args = (limit: string) => [
        "call",
        "--max-receive-message-bytes",
        limit,
        ...KV_COOKIE,
        "--",
        goPlugin,
        "tether.kv.v1.KV/Get",
        '{"key": "a"}',
      ];
      // The first answer is the reflection service's file descriptor, a few hundred bytes.
      const limited = await tether(args("100"));
      assert.equal(limited.code, 1, limited.stderr);
      assert.match(
        limited.stderr,
        /RESOURCE_EXHAUSTED: Received message larger than max \(\d+ vs\. 100\); raise maxReceiveMessageBytes for plugin kvplugin/,
      );
      const roomy = await tether(args("65536"));
      assert.equal(roomy.code, 0, roomy.stderr);
      const zero = await tether(args("0"));
      assert.equal(zero.code, 2);
      assert.match(
        zero.stderr,
        /--max-receive-message-bytes must be an integer from 1 to 2147483647, found "0"/,
      );
    }),
});
