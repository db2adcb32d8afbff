/**
 * Every way PluginClient.start() can fail before the plugin is usable, end to
 * end with fake plugins and the Go kvplugin: the TetherError code, a message
 * that says what happened, and no plugin process or socket left behind.
 */

import assert from "node:assert/strict";
import { TetherError } from "../../mod.ts";
import { encodeRawBase64 } from "../../src/handshake.ts";
import { generateCertificate } from "../../src/mtls.ts";
import { ignoreWithoutGo, isAlive } from "../helpers.ts";
import { inSandbox, Recorder, rejectsWith } from "./support.ts";

// Fakes that print a bad line then hang are SIGKILLed after this grace period.
const killTimeoutMs = 300;

function includes(message: string, ...fragments: string[]): void {
  for (const fragment of fragments) {
    assert.ok(message.includes(fragment), `message lacks ${JSON.stringify(fragment)}:\n${message}`);
  }
}

/** Starts a fake that prints `lines`, expects start() to fail with `code`, returns the error. */
async function startWithLines(lines: string[], code: Parameters<typeof rejectsWith>[1]) {
  let result: { message: string; pid: number | undefined } | undefined;
  await inSandbox(async (box) => {
    const client = box.client(box.shellFake("print_lines.sh", lines, { killTimeoutMs }));
    const error = await rejectsWith(client.start(), code);
    assert.equal(error.plugin, "print_lines.sh");
    // start() killed the plugin before rejecting.
    assert.ok(client.hasExited);
    assert.ok(!isAlive(client.pid!));
    result = { message: error.message, pid: client.pid };
  });
  return result!;
}

Deno.test("start: plugin exits without any output → exited, with the exit code", async () => {
  await inSandbox(async (box) => {
    const client = box.client(box.shellFake("exit_early.sh", ["0"]));
    const error = await rejectsWith(client.start(), "exited");
    includes(error.message, "exit_early.sh exited before we could connect", "exit code 0");
    assert.deepEqual(await client.exited, { code: 0, signal: null, killed: false });
  });
});

Deno.test("start: plugin closes stdout without a line (and keeps running) → exited, says so, is killed", async () => {
  await inSandbox(async (box) => {
    const client = box.client(box.shellFake("close_stdout.sh", [], { killTimeoutMs }));
    const error = await rejectsWith(client.start(), "exited");
    includes(error.message, "closed stdout without printing a handshake line");
    const exit = await client.exited;
    assert.equal(exit.killed, true);
    assert.equal(exit.signal, "SIGKILL");
    assert.ok(!isAlive(client.pid!));
  });
});

Deno.test("start: plugin exits early with stderr text → exited, message has the stderr text and exit code", async () => {
  await inSandbox(async (box) => {
    const logger = new Recorder();
    const client = box.client(
      box.shellFake("exit_early.sh", ["7", "config file /etc/plugin.hcl not found", "giving up"], { logger }),
    );
    const error = await rejectsWith(client.start(), "exited");
    includes(
      error.message,
      "exited before we could connect",
      "exit code 7",
      "config file /etc/plugin.hcl not found",
      "giving up",
    );
    assert.equal((await client.exited).code, 7);
    // The stderr lines also went to the logger (plain lines: debug, as go-plugin).
    const logged = logger.find("config file /etc/plugin.hcl not found");
    assert.equal(logged.length, 1);
    assert.equal(logged[0].level, "debug");
    assert.equal(logged[0].fields.plugin, "exit_early.sh");
  });
});

Deno.test({
  name: "start: Go kvplugin -exit-before-handshake 4 → exited with 'boom' and exit code 4",
  ignore: ignoreWithoutGo(),
  fn: () =>
    inSandbox(async (box) => {
      const client = box.client(await box.goKv(["-exit-before-handshake", "4"]));
      const error = await rejectsWith(client.start(), "exited");
      includes(error.message, "kvplugin exited before we could connect", "exit code 4", "boom");
    }),
});

Deno.test("start: output before the handshake line → handshake, Unrecognized remote plugin message", async () => {
  const { message } = await startWithLines(
    ["Starting my plugin v1.2...", "1|1|unix|/tmp/plugin1|grpc|"],
    "handshake",
  );
  includes(message, "Unrecognized remote plugin message", "Starting my plugin v1.2...");
});

Deno.test({
  name: "start: Go kvplugin -stdout-before-handshake → handshake, Unrecognized remote plugin message: hello",
  ignore: ignoreWithoutGo(),
  fn: () =>
    inSandbox(async (box) => {
      const client = box.client(await box.goKv(["-stdout-before-handshake"], { killTimeoutMs }));
      const error = await rejectsWith(client.start(), "handshake");
      includes(error.message, "Unrecognized remote plugin message", '"hello"');
      // The Go plugin was listening already when it was killed; the sandbox checks that its socket
      // (named in the second stdout line) did not stay behind.
      assert.ok(!isAlive(client.pid!));
    }),
});

Deno.test("start: bad core version → handshake", async () => {
  const { message } = await startWithLines(["2|1|unix|/tmp/plugin1|grpc|"], "handshake");
  includes(message, "incompatible core API version", "Plugin version: 2");
});

Deno.test("start: app version the host did not offer → handshake", async () => {
  const { message } = await startWithLines(["1|9|unix|/tmp/plugin1|grpc|"], "handshake");
  includes(message, "incompatible API version with plugin", "Plugin version: 9", "Client versions: [1]");
});

Deno.test({
  name: "start: Go kvplugin -versions 2,3 against host version 1 → handshake, names both sides' versions",
  ignore: ignoreWithoutGo(),
  fn: () =>
    inSandbox(async (box) => {
      const client = box.client(await box.goKv(["-versions", "2,3"], { killTimeoutMs }));
      const error = await rejectsWith(client.start(), "handshake");
      // go-plugin's Serve falls back to its lowest version when nothing matches.
      includes(
        error.message,
        "incompatible API version with plugin",
        "Plugin version: 2",
        "Client versions: [1]",
      );
    }),
});

Deno.test({
  name: "start: version negotiation: host offers [1,2,3], Go kvplugin -versions 2,3 → version 3",
  ignore: ignoreWithoutGo(),
  fn: () =>
    inSandbox(async (box) => {
      const options = await box.goKv(["-versions", "2,3"]);
      const client = box.client({
        ...options,
        handshake: { ...options.handshake, protocolVersions: [1, 2, 3] },
      });
      await client.start();
      assert.equal(client.protocolVersion, 3);
      await client.ping();
    }),
});

Deno.test("start: netrpc plugin → handshake, says net/rpc is not supported", async () => {
  const { message } = await startWithLines(["1|1|unix|/tmp/plugin1|netrpc|"], "handshake");
  includes(message, "net/rpc", "not support");
});

Deno.test("start: missing protocol field means netrpc → handshake, not supported", async () => {
  const { message } = await startWithLines(["1|1|unix|/tmp/plugin1"], "handshake");
  includes(message, "net/rpc", "not support");
});

Deno.test("start: unknown network → handshake, unknown address type", async () => {
  const { message } = await startWithLines(["1|1|npipe|\\\\.\\pipe\\plugin|grpc|"], "handshake");
  includes(message, "unknown address type: npipe");
});

Deno.test("start: padded certificate → tls, error parsing server cert (padding)", async () => {
  const { certDer } = await generateCertificate();
  const padded = btoa(String.fromCharCode(...certDer.subarray(0, 61)));
  assert.ok(padded.endsWith("="));
  const { message } = await startWithLines([`1|1|unix|/tmp/plugin1|grpc|${padded}`], "tls");
  includes(message, "error parsing server cert", "padded");
});

Deno.test("start: garbage certificate → tls, error parsing server cert", async () => {
  const { message } = await startWithLines([`1|1|unix|/tmp/plugin1|grpc|${"*".repeat(80)}`], "tls");
  includes(message, "error parsing server cert", "not base64");
});

Deno.test("start: valid base64 that is not a certificate → tls, error parsing server cert", async () => {
  const junk = encodeRawBase64(crypto.getRandomValues(new Uint8Array(90)));
  const { message } = await startWithLines([`1|1|unix|/tmp/plugin1|grpc|${junk}`], "tls");
  includes(message, "error parsing server cert");
});

Deno.test("start: no certificate in the line although AutoMTLS is on → tls, suggests autoMTLS: false", async () => {
  const { message } = await startWithLines(["1|1|unix|/tmp/plugin1|grpc|"], "tls");
  includes(message, "sent no certificate", "autoMTLS: false");
});

Deno.test("start: plugin never prints → start_timeout, and the process is killed", async () => {
  await inSandbox(async (box) => {
    const logger = new Recorder();
    const client = box.client(box.shellFake("silent.sh", [], { startTimeoutMs: 500, killTimeoutMs, logger }));
    const error = await rejectsWith(client.start(), "start_timeout");
    includes(error.message, "timeout while waiting for plugin silent.sh to start", "500 ms");
    assert.ok(!isAlive(client.pid!), "the silent plugin is still running");
    const exit = await client.exited;
    assert.equal(exit.killed, true);
    assert.equal(exit.signal, "SIGKILL");
    assert.equal(logger.find("plugin failed to exit gracefully")[0]?.level, "warn");
  });
});

Deno.test("start: the line names a socket nobody listens on → fails, says it could not connect, plugin killed", async () => {
  await inSandbox(async (box) => {
    const client = box.client(
      box.tsFake("bare_plugin.ts", ["--no-listen"], { autoMTLS: false, killTimeoutMs }),
    );
    const error = await client.start().then(() => assert.fail("start() resolved"), (e) => e);
    assert.ok(error instanceof TetherError);
    includes(error.message, "could not connect to plugin", "plugin-nobody-listens", "ENOENT");
    // The plugin was alive and well: `exited` ("the plugin process is gone") would send users looking
    // for a crash that did not happen.
    assert.notEqual(error.code, "exited", `a live plugin was reported as exited: ${error.message}`);
    assert.ok(!isAlive(client.pid!));
  });
});

Deno.test("start: command not found → config; not executable → permission", async () => {
  await inSandbox(async (box) => {
    const missing = box.client({ ...box.shellFake("silent.sh"), cmd: `${box.dir}/no-such-plugin` });
    const notFound = await rejectsWith(missing.start(), "config");
    includes(notFound.message, "command not found", "no-such-plugin");

    const script = `${box.dir}/not-executable.sh`;
    await Deno.writeTextFile(script, "#!/bin/sh\nexit 0\n", { mode: 0o644 });
    const denied = box.client({ ...box.shellFake("silent.sh"), cmd: script });
    const error = await rejectsWith(denied.start(), "permission");
    includes(error.message, "not allowed to run", script);
    await Deno.remove(script);
  });
});

Deno.test("start: after a failed start, start() again returns the first call's promise (as documented)", async () => {
  await inSandbox(async (box) => {
    const client = box.client(box.shellFake("exit_early.sh", ["3", "nope"]));
    const first = await rejectsWith(client.start(), "exited");
    // Not `closed` ("was killed"): the caller never killed it, and the first error says why it failed.
    const again = await rejectsWith(client.start(), "exited");
    assert.equal(again, first);
    await client.kill();
    await client.kill();
    assert.equal((await client.exited).code, 3);
  });
});
