/**
 * AutoMTLS against impostors, beyond tests/core/mtls_test.ts (which covers
 * plaintext, no client certificate, a stranger's certificate, a swapped
 * server certificate and fresh plugin certificates): look-alike certificates
 * forged with the same serial, subject, validity and extensions as the real
 * ones but another key (of the host's certificate, whose PEM any same-user
 * process can read in /proc/<pid>/environ, and of the plugin's own) cannot call
 * a TypeScript or Go plugin, with a by-hand control showing that the real key
 * is served on the same harness; a plugin serving a forged copy of the
 * certificate it announced is refused by the host; and the host's
 * certificate, too, is new for each launch.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { connect as tlsConnect } from "node:tls";
import { PluginClient } from "../../mod.ts";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import {
  type CertificateBundle,
  certificateDerToPem,
  certificatePemToDer,
  generateCertificate,
} from "../../src/mtls.ts";
import { parseHandshakeLine } from "../../src/handshake.ts";
import { createServiceClient } from "../../src/rpc.ts";
import { forgeCertificate } from "../fixtures/hostile/forge.ts";
import { goFixture, ignoreWithoutGo, repoRoot } from "../helpers.ts";
import { bytes, kvHandshake, rejectsWith, shortTempDir, tetherDirs, text } from "./support.ts";

const tsKvPlugin = `${repoRoot}/examples/kv/plugin.ts`;
const impostor = `${repoRoot}/tests/fixtures/hostile/impostor_plugin.ts`;
const denoConfig = `${repoRoot}/deno.json`;

/** The certificate a TLS server at `socket` presents (read without verifying it). */
function servedCertificate(socket: string): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const conn = tlsConnect({ path: socket, rejectUnauthorized: false, ALPNProtocols: ["h2"] }, () => {
      const raw = conn.getPeerCertificate().raw;
      conn.destroy();
      resolve(new Uint8Array(raw));
    });
    conn.on("error", reject);
  });
}

/** The certificate a plugin process was given as PLUGIN_CLIENT_CERT (the host's), from /proc. */
async function hostCertificateOf(pid: number): Promise<Uint8Array> {
  const environ = (await Deno.readTextFile(`/proc/${pid}/environ`)).split("\0");
  const pem = environ.find((entry) => entry.startsWith("PLUGIN_CLIENT_CERT="))!.slice(
    "PLUGIN_CLIENT_CERT=".length,
  );
  return certificatePemToDer(pem);
}

/** One health check over gRPC with these credentials; resolves to the error text, or "ok". */
async function healthCall(socket: string, credentials: grpc.ChannelCredentials): Promise<string> {
  const channel = new grpc.Client(`unix:${socket}`, credentials, {
    "grpc.ssl_target_name_override": "localhost",
    "grpc.default_authority": "localhost",
  });
  try {
    await createServiceClient(channel, Health).check({ service: "" }, { timeoutMs: 3000 });
    return "ok";
  } catch (error) {
    return String(error);
  } finally {
    channel.close();
  }
}

/** Client credentials presenting `identity` (or no certificate), trusting the plugin's served certificate. */
function clientCredentials(pluginCertPem: string, identity?: CertificateBundle): grpc.ChannelCredentials {
  const verify = { checkServerIdentity: () => undefined };
  return identity
    ? grpc.credentials.createSsl(
      Buffer.from(pluginCertPem),
      Buffer.from(identity.keyPem),
      Buffer.from(identity.certPem),
      verify,
    )
    : grpc.credentials.createSsl(Buffer.from(pluginCertPem), null, null, verify);
}

/** The interesting part of a failed call's error text. */
function reason(outcome: string): string {
  return outcome.replace(/^[^]*?(Last error: |failed: )/, "").split("\n")[0].slice(0, 90);
}

/** Look-alike identities of `host` and `plugin`: same fields, other keys (nobody but them holds the real keys). */
async function lookAlikes(host: Uint8Array, plugin: Uint8Array): Promise<[string, CertificateBundle][]> {
  return [
    [
      "a forged copy of the host's certificate (same serial, subject, extensions; other key)",
      await forgeCertificate(host),
    ],
    ["a forged copy of the plugin's own certificate", await forgeCertificate(plugin)],
  ];
}

/** Look-alike clients are refused by the plugin `client` runs, and the real host still works. */
async function assertLookAlikesRefused(client: PluginClient): Promise<void> {
  const socket = client.endpoint!.address;
  const pluginCert = await servedCertificate(socket);
  const pluginCertPem = certificateDerToPem(pluginCert);
  for (const [label, identity] of await lookAlikes(await hostCertificateOf(client.pid!), pluginCert)) {
    const outcome = await healthCall(socket, clientCredentials(pluginCertPem, identity));
    assert.notEqual(outcome, "ok", `${client.name}: a client with ${label} was served`);
    console.log(`  ${client.name}: ${label}: refused (${reason(outcome)})`);
  }
  // The host's own connection was never disturbed.
  const kv = client.dispense(KV);
  await kv.put({ key: "after", value: bytes("still serving") });
  assert.equal(text((await kv.get({ key: "after" })).value), "still serving");
}

/**
 * Launches a plugin by hand, as a host would, with `identity` as the host certificate
 * (PLUGIN_CLIENT_CERT); returns its socket and certificate, and a function that kills it.
 */
async function launchByHand(
  cmd: string,
  args: string[],
  identity: CertificateBundle,
  dir: string,
): Promise<{ socket: string; certDer: Uint8Array; stop(): Promise<void> }> {
  const child = new Deno.Command(cmd, {
    args,
    clearEnv: true,
    env: {
      [kvHandshake.magicCookieKey]: kvHandshake.magicCookieValue,
      PLUGIN_PROTOCOL_VERSIONS: "1",
      PLUGIN_MIN_PORT: "10000",
      PLUGIN_MAX_PORT: "25000",
      PLUGIN_CLIENT_CERT: identity.certPem,
      PLUGIN_UNIX_SOCKET_DIR: dir,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  while (!buffered.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${cmd} exited before its handshake line`);
    buffered += value;
  }
  const line = parseHandshakeLine(buffered.slice(0, buffered.indexOf("\n")), [1]);
  return {
    socket: line.address,
    certDer: line.serverCertDer!,
    stop: async () => {
      child.kill("SIGKILL");
      await reader.cancel();
      await child.status;
    },
  };
}

// The harness itself: with a plugin launched by hand, the identity it was given is served, and only it.
for (const kind of ["typescript", "go"] as const) {
  Deno.test({
    name: `mTLS (control): a ${kind} plugin serves the holder of PLUGIN_CLIENT_CERT's key, not a look-alike`,
    ignore: kind === "go" && ignoreWithoutGo(),
    fn: async () => {
      const dir = await shortTempDir("tsm");
      const identity = await generateCertificate();
      const plugin = kind === "go"
        ? await launchByHand(await goFixture("kvplugin"), [], identity, dir)
        : await launchByHand(
          Deno.execPath(),
          ["run", "-A", "--config", denoConfig, tsKvPlugin],
          identity,
          dir,
        );
      try {
        const pluginCertPem = certificateDerToPem(plugin.certDer);
        assert.deepEqual(await servedCertificate(plugin.socket), plugin.certDer);
        assert.equal(await healthCall(plugin.socket, clientCredentials(pluginCertPem, identity)), "ok");
        for (const [label, other] of await lookAlikes(identity.certDer, plugin.certDer)) {
          const outcome = await healthCall(plugin.socket, clientCredentials(pluginCertPem, other));
          assert.notEqual(outcome, "ok", `a client with ${label} was served`);
        }
        // And the real identity still works afterwards.
        assert.equal(await healthCall(plugin.socket, clientCredentials(pluginCertPem, identity)), "ok");
      } finally {
        await plugin.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test("mTLS: look-alike certificates cannot call a TypeScript plugin", async () => {
  const dir = await shortTempDir("tsm");
  const client = new PluginClient({
    cmd: tsKvPlugin,
    denoConfig,
    handshake: kvHandshake,
    unixSocketDir: dir,
  });
  try {
    await client.start();
    await assertLookAlikesRefused(client);
  } finally {
    await client.kill();
    assert.deepEqual(tetherDirs(dir), []);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "mTLS: look-alike certificates cannot call a Go plugin",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await shortTempDir("tsm");
    const client = new PluginClient({
      cmd: await goFixture("kvplugin"),
      handshake: kvHandshake,
      unixSocketDir: dir,
    });
    try {
      await client.start();
      await assertLookAlikesRefused(client);
    } finally {
      await client.kill();
      assert.deepEqual(tetherDirs(dir), []);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// tests/core covers a swapped certificate (the fixture's --swap); a forged look-alike is the stronger impostor.
Deno.test(`mTLS: the host refuses a plugin serving a forged copy of the certificate it announced`, async () => {
  const dir = await shortTempDir("tsm");
  const client = new PluginClient({
    cmd: impostor,
    args: ["--forge"],
    denoConfig,
    handshake: kvHandshake,
    unixSocketDir: dir,
    killTimeoutMs: 500,
    startTimeoutMs: 20_000,
  });
  try {
    const error = await rejectsWith(client.start(), "tls");
    // Refused during the TLS handshake (the announced certificate is the only CA: the served one does
    // not chain to it), or by the pin on the exact DER bytes.
    assert.match(error.message, /not the one from its handshake line/);
    console.log(`  ${error.message.split("\n")[0]}`);
    assert.ok(client.hasExited, "the impostor was not stopped");
  } finally {
    await client.kill();
    assert.deepEqual(tetherDirs(dir), []);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mTLS: each launch has a new host certificate and a new plugin certificate (TypeScript and Go)", async (t) => {
  const plugins: [string, () => Promise<string>][] = [["typescript", () => Promise.resolve(tsKvPlugin)]];
  if (!ignoreWithoutGo()) plugins.push(["go", () => goFixture("kvplugin")]);
  for (const [label, cmd] of plugins) {
    await t.step(label, async () => {
      const dir = await shortTempDir("tsm");
      const seen: { plugin: Uint8Array; host: Uint8Array }[] = [];
      try {
        for (let launch = 0; launch < 2; launch++) {
          const client = new PluginClient({
            cmd: await cmd(),
            denoConfig,
            handshake: kvHandshake,
            unixSocketDir: dir,
          });
          try {
            await client.start();
            seen.push({
              plugin: await servedCertificate(client.endpoint!.address),
              host: await hostCertificateOf(client.pid!),
            });
          } finally {
            await client.kill();
          }
        }
        const [first, second] = seen;
        assert.notDeepEqual(first.plugin, second.plugin, "the plugin reused its certificate");
        assert.notDeepEqual(first.host, second.host, "the host reused its certificate");
        assert.notDeepEqual(first.plugin, first.host);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
});
