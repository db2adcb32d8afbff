/**
 * The plugin side (serve()), seen from outside the plugin process: the
 * cookie check, the handshake line it prints for a hand-made host
 * environment, version choice, SIGINT, Shutdown, and exiting when its host
 * dies.
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { GrpcStatus } from "../../mod.ts";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { GRPCController } from "../../src/gen/plugin/grpc_controller_pb.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { decodeRawBase64 } from "../../src/handshake.ts";
import { certificateDerToPem, generateCertificate } from "../../src/mtls.ts";
import { createServiceClient } from "../../src/rpc.ts";
import { channelCredentials, channelOptions, type TlsMaterial } from "../../src/transport.ts";
import { denoPlugin, eventually, ignoreWithoutGo, isAlive } from "../helpers.ts";
import { inSandbox, kvHandshake, Recorder, rejectsWith, type Sandbox, sleep, text } from "./support.ts";

const NOT_A_PLUGIN = "This binary is a plugin. These are not meant to be executed directly.\n" +
  "Please execute the program that consumes these plugins, which will\n" +
  "load any plugins automatically\n";

const MISCONFIGURED = "Misconfigured ServeConfig given to serve this plugin: no magic cookie\n" +
  "key or value was set. Please notify the plugin author and report\n" +
  "this as a bug.\n";

/** The environment a plugin needs to run at all (no PLUGIN_* or cookie). */
function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Runs a TS plugin by hand (no Tether host) and waits for it to exit. */
async function runToExit(entry: string, env: Record<string, string>, permissions?: string[]) {
  const { cmd, args } = denoPlugin(entry, permissions);
  const out = await new Deno.Command(cmd, { args, env, clearEnv: true, stdin: "null" }).output();
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** A TS plugin started by hand with a hand-made host environment. */
class HandMade {
  readonly child: Deno.ChildProcess;
  stderr = "";
  readonly #stdout: ReadableStreamDefaultReader<string>;
  readonly #drains: Promise<void>[] = [];

  constructor(entry: string, env: Record<string, string>, extraArgs: string[] = []) {
    const { cmd, args } = denoPlugin(entry);
    const child = new Deno.Command(cmd, {
      args: [...args, ...extraArgs],
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.#stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#drains.push((async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) this.stderr += chunk;
    })());
  }

  /** The first stdout line (without its newline). */
  async firstLine(): Promise<string> {
    let buffer = "";
    while (!buffer.includes("\n")) {
      const { value, done } = await this.#stdout.read();
      if (done) throw new Error(`stdout ended before a line; stderr: ${this.stderr}`);
      buffer += value;
    }
    const line = buffer.slice(0, buffer.indexOf("\n"));
    // Keep draining the rest.
    this.#drains.push((async () => {
      while (!(await this.#stdout.read()).done) { /* drop */ }
    })());
    return line;
  }

  /** Kills the process if it still runs, and waits for everything to end. */
  async close(): Promise<Deno.CommandStatus> {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    const status = await this.child.status;
    await Promise.allSettled(this.#drains);
    return status;
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("serve: run directly without the cookie → exit 1 and go-plugin's exact message on stderr", async () => {
  const result = await runToExit("examples/kv/plugin.ts", baseEnv());
  assert.equal(result.code, 1);
  assert.equal(result.stderr, NOT_A_PLUGIN);
  assert.equal(result.stdout, "");

  // A wrong cookie value is the same as none.
  const wrong = await runToExit("examples/kv/plugin.ts", {
    ...baseEnv(),
    [kvHandshake.magicCookieKey]: "not-the-value",
  });
  assert.equal(wrong.code, 1);
  assert.equal(wrong.stderr, NOT_A_PLUGIN);
});

Deno.test("serve: an empty cookie in the plugin's own config → exit 1 with go-plugin's Misconfigured message", async () => {
  const result = await runToExit("tests/fixtures/plugins/misconfigured.ts", {
    ...baseEnv(),
    TETHER_KV_PLUGIN: "",
  });
  assert.equal(result.code, 1);
  assert.equal(result.stderr, MISCONFIGURED);
  assert.equal(result.stdout, "");
});

function handMadeHostEnv(box: Sandbox, extra: Record<string, string> = {}): Record<string, string> {
  return {
    ...baseEnv(),
    [kvHandshake.magicCookieKey]: kvHandshake.magicCookieValue,
    PLUGIN_PROTOCOL_VERSIONS: "1",
    PLUGIN_MIN_PORT: "10000",
    PLUGIN_MAX_PORT: "25000",
    PLUGIN_UNIX_SOCKET_DIR: box.dir,
    ...extra,
  };
}

Deno.test("serve: with PLUGIN_CLIENT_CERT the first stdout line has 6 fields and an unpadded certificate; it serves mTLS", async () => {
  await inSandbox(async (box) => {
    const host = await generateCertificate();
    const plugin = new HandMade(
      "examples/kv/plugin.ts",
      handMadeHostEnv(box, { PLUGIN_CLIENT_CERT: host.certPem, PLUGIN_PROTOCOL_VERSIONS: "x,1" }),
      [box.marker],
    );
    let channel: grpc.Client | undefined;
    try {
      const line = await plugin.firstLine();
      const fields = line.split("|");
      assert.equal(fields.length, 6, line);
      const [core, app, network, address, protocol, cert] = fields;
      assert.equal(core, "1");
      assert.equal(app, "1");
      assert.equal(network, "unix");
      // PLUGIN_UNIX_SOCKET_DIR honoured, go-plugin's naming: <dir>/plugin<digits>.
      assert.match(address, new RegExp(`^${box.dir}/plugin\\d+$`));
      assert.equal(protocol, "grpc");
      assert.ok(cert.length > 50);
      assert.match(cert, /^[A-Za-z0-9+/]+$/, "certificate field is not unpadded std base64");
      const der = decodeRawBase64(cert);
      const pem = certificateDerToPem(der);

      // A hand-made host with the certificate it announced gets in; the plugin pinned our certificate.
      const tls: TlsMaterial = {
        certPem: host.certPem,
        keyPem: host.keyPem,
        peerCaPem: pem,
        pinnedPeerDer: der,
        serverName: "localhost",
      };
      channel = new grpc.Client(`unix:${address}`, channelCredentials(tls), channelOptions(tls));
      const health = await createServiceClient(channel, Health).check({ service: "plugin" }, {
        timeoutMs: 10_000,
      });
      assert.equal(health.status, HealthCheckResponse_ServingStatus.SERVING);

      // Shutdown: the plugin exits 0 by itself and unlinks its socket. Close our idle channel first,
      // as PluginClient.kill does: Deno's node:http2 can crash when a GOAWAY reaches an idle session
      // (denoland/deno#36788).
      await createServiceClient(channel, GRPCController).shutdown({}, { timeoutMs: 10_000 }).catch(() => {});
      channel.close();
      const status = await Promise.race([plugin.child.status, sleep(10_000).then(() => undefined)]);
      assert.ok(status, "the plugin did not exit after Shutdown");
      assert.equal(status.code, 0);
      assert.ok(!exists(address), "socket left after Shutdown");
      // An invalid PLUGIN_PROTOCOL_VERSIONS entry is reported, as go-plugin does.
      assert.match(plugin.stderr, /server sent invalid plugin version "x"/);
    } finally {
      channel?.close();
      await plugin.close();
    }
  });
});

Deno.test("serve: without PLUGIN_CLIENT_CERT the line's certificate field is empty and it serves plaintext", async () => {
  await inSandbox(async (box) => {
    const plugin = new HandMade("examples/kv/plugin.ts", handMadeHostEnv(box), [box.marker]);
    let channel: grpc.Client | undefined;
    try {
      const line = await plugin.firstLine();
      assert.match(line, new RegExp(`^1\\|1\\|unix\\|${box.dir}/plugin\\d+\\|grpc\\|$`));
      const address = line.split("|")[3];
      channel = new grpc.Client(`unix:${address}`, grpc.credentials.createInsecure());
      const kv = createServiceClient(channel, KV);
      await kv.put({ key: "k", value: new TextEncoder().encode("v") }, { timeoutMs: 10_000 });
      assert.equal(text((await kv.get({ key: "k" })).value), "v");
      await createServiceClient(channel, GRPCController).shutdown({}).catch(() => {});
      channel.close(); // See above: no GOAWAY on an idle session.
      assert.equal((await plugin.child.status).code, 0);
      assert.ok(!exists(address));
    } finally {
      channel?.close();
      await plugin.close();
    }
  });
});

Deno.test("serve: TETHER_PLUGIN_SOCKET names the exact socket path", async () => {
  await inSandbox(async (box) => {
    const path = `${box.dir}/exact.sock`;
    const plugin = new HandMade(
      "examples/kv/plugin.ts",
      handMadeHostEnv(box, { TETHER_PLUGIN_SOCKET: path }),
      [box.marker],
    );
    try {
      assert.equal((await plugin.firstLine()).split("|")[3], path);
      assert.ok(Deno.lstatSync(path).isSocket);
    } finally {
      await plugin.close();
      await Deno.remove(path).catch(() => {});
    }
  });
});

Deno.test("serve: the plugin ignores SIGINT and keeps serving", async () => {
  await inSandbox(async (box) => {
    const client = box.client(box.tsKv());
    await client.start();
    Deno.kill(client.pid!, "SIGINT");
    await sleep(500);
    assert.ok(isAlive(client.pid!));
    assert.equal(client.hasExited, false);
    await client.ping();
    await client.dispense(KV).put({ key: "after-sigint", value: new Uint8Array([1]) });
    await client.kill();
    assert.deepEqual(await client.exited, { code: 0, signal: null, killed: false });
  });
});

Deno.test({
  name: "serve: a Go plugin ignores SIGINT too (reference behaviour)",
  ignore: ignoreWithoutGo(),
  fn: () =>
    inSandbox(async (box) => {
      const client = box.client(await box.goKv());
      await client.start();
      Deno.kill(client.pid!, "SIGINT");
      await sleep(500);
      await client.ping();
    }),
});

Deno.test("serve: Shutdown makes the plugin exit by itself with code 0, well within go-plugin's 2 s", async () => {
  await inSandbox(async (box) => {
    const logger = new Recorder();
    const client = box.client(box.tsKv({ logger }));
    await client.start();
    await client.dispense(GRPCController).shutdown({}).catch(() => {});
    const exit = await Promise.race([client.exited, sleep(10_000).then(() => undefined)]);
    assert.ok(exit, "the plugin did not exit after Shutdown");
    assert.deepEqual(exit, { code: 0, signal: null, killed: false });
    await client.kill();
    assert.deepEqual(logger.find("failed to exit gracefully"), []);
  });
});

Deno.test("serve: the plugin exits on its own when its host process dies (even by SIGKILL)", async () => {
  await inSandbox(async (box) => {
    const { cmd, args } = denoPlugin("tests/fixtures/plugins/orphaning_host.ts");
    const host = new Deno.Command(cmd, {
      args: [...args, box.dir, box.marker],
      stdout: "piped",
      stderr: "inherit",
      stdin: "null",
    }).spawn();
    box.watchPid(host.pid);
    const reader = host.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    while (!buffer.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
    }
    const { pid, address } = JSON.parse(buffer.trim()) as { pid: number; address: string };
    box.watchPid(pid);
    assert.ok(isAlive(pid), "the plugin is not running");
    assert.ok(address.startsWith(`${box.dir}/`), address);

    host.kill("SIGKILL");
    await host.status;
    await reader.cancel();
    try {
      // serve() polls its parent once a second.
      assert.ok(await eventually(() => !isAlive(pid), 8_000), `plugin ${pid} outlived its host`);
      // It stopped cleanly: its socket is gone. (Its stderr pipe is broken now: logging must not kill
      // it before it unlinks the socket, go-plugin #114.)
      assert.ok(!exists(address), "orphaned plugin left its socket: it did not stop cleanly");
    } finally {
      // The dead host could not remove its launch's private directory, nor its owner marker next to it.
      const privateDir = address.slice(0, address.lastIndexOf("/"));
      await Deno.remove(privateDir, { recursive: true }).catch(() => {});
      await Deno.remove(`${privateDir}.owner`).catch(() => {});
    }
  });
});

Deno.test("serve: versioned plugin picks its highest version the host offers", async () => {
  await inSandbox(async (box) => {
    // The plugin speaks 1, 2 and 5.
    for (const [offered, expected] of [[[1, 2, 3], 2], [[5, 1], 5], [[1], 1]] as const) {
      const options = box.tsFake("versioned.ts");
      const client = box.client({
        ...options,
        handshake: { ...kvHandshake, protocolVersions: [...offered] },
      });
      await client.start();
      assert.equal(client.protocolVersion, expected);
      assert.equal(text((await client.dispense(KV).get({ key: "any" })).value), `v${expected}`);
      await client.kill();
    }
    // No common version: the plugin answers with its lowest, the host refuses.
    const options = box.tsFake("versioned.ts");
    const client = box.client({
      ...options,
      killTimeoutMs: 300,
      handshake: { ...kvHandshake, protocolVersion: undefined, protocolVersions: [3, 4] },
    });
    const error = await rejectsWith(client.start(), "handshake");
    assert.match(error.message, /Plugin version: 1, Client versions: \[4 3\]/);
  });
});

Deno.test("serve: PLUGIN_UNIX_SOCKET_DIR (unixSocketDir) is honoured by TS and Go plugins", async () => {
  await inSandbox(async (box) => {
    const ts = box.client(box.tsKv());
    await ts.start();
    assert.ok(ts.endpoint!.address.startsWith(`${box.dir}/`), ts.endpoint!.address);
    assert.equal(ts.endpoint!.network, "unix");
    if (!ignoreWithoutGo()) {
      const go = box.client(await box.goKv());
      await go.start();
      assert.ok(go.endpoint!.address.startsWith(`${box.dir}/`), go.endpoint!.address);
      assert.match(go.endpoint!.address, /\/plugin\d+$/);
    }
  });
});

Deno.test("serve: a handler error without a gRPC status reaches the host as UNKNOWN with its message", async () => {
  await inSandbox(async (box) => {
    // The KV example's addViaHost dials a broker id nobody announced: broker.dial throws a TetherError
    // without gRPC status after the 5 s broker timeout.
    const client = box.client(box.tsKv());
    await client.start();
    const error = await rejectsWith(
      client.dispense(KV).addViaHost({ adderBrokerId: 4242, a: 1n, b: 1n }),
      "rpc",
    );
    assert.equal(error.status, GrpcStatus.UNKNOWN);
    assert.match(error.message, /timeout waiting for connection info for broker id 4242/);
  });
});

/** Everything the KV example needs, with `--allow-env` limited to `envGrants`. */
function kvPermissions(envGrants: string[]): string[] {
  return ["--allow-read", "--allow-write", "--allow-net", `--allow-env=${envGrants.join(",")}`];
}

/** The protocol variables serve() must read, plus what grpc-js and the runtime read. */
const PROTOCOL_ENV = [
  kvHandshake.magicCookieKey,
  "PLUGIN_PROTOCOL_VERSIONS",
  "PLUGIN_CLIENT_CERT",
  "PLUGIN_UNIX_SOCKET_DIR",
  "PLUGIN_UNIX_SOCKET_GROUP",
  "PLUGIN_MIN_PORT",
  "PLUGIN_MAX_PORT",
  "PLUGIN_MULTIPLEX_GRPC",
];
const RUNTIME_ENV = ["GRPC_*", "TMPDIR", "NODE_*"];

Deno.test("serve: a PLUGIN_CLIENT_CERT it may not read → refuses to start (no plaintext), names --allow-env=PLUGIN_CLIENT_CERT", async () => {
  await inSandbox(async (box) => {
    const host = await generateCertificate();
    const grants = [...PROTOCOL_ENV.filter((name) => name !== "PLUGIN_CLIENT_CERT"), ...RUNTIME_ENV];
    const result = await runToExit(
      "examples/kv/plugin.ts",
      handMadeHostEnv(box, { PLUGIN_CLIENT_CERT: host.certPem }),
      kvPermissions(grants),
    );
    assert.equal(result.code, 1, result.stderr);
    // No handshake line: nothing was served, in plaintext or otherwise.
    assert.equal(result.stdout, "");
    const record = JSON.parse(result.stderr.trim().split("\n").pop()!);
    assert.equal(record["@level"], "error");
    assert.match(record["@message"], /may not read the environment variable PLUGIN_CLIENT_CERT/);
    assert.match(record["@message"], /--allow-env=PLUGIN_CLIENT_CERT/);
    assert.match(record["@message"], /refusing to start/);
    assert.deepEqual(record.denied, ["PLUGIN_CLIENT_CERT"]);
  });
});

Deno.test("serve: any protocol variable it may not read (cookie, versions, socket dir, ports) → refuses to start, names them all", async () => {
  await inSandbox(async (box) => {
    const missing = [
      kvHandshake.magicCookieKey,
      "PLUGIN_PROTOCOL_VERSIONS",
      "PLUGIN_UNIX_SOCKET_DIR",
      "PLUGIN_MAX_PORT",
    ];
    const grants = [...PROTOCOL_ENV.filter((name) => !missing.includes(name)), ...RUNTIME_ENV];
    const result = await runToExit("examples/kv/plugin.ts", handMadeHostEnv(box), kvPermissions(grants));
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stdout, "");
    const record = JSON.parse(result.stderr.trim().split("\n").pop()!);
    assert.deepEqual(record.denied, missing);
    assert.ok(record["@message"].includes(`--allow-env=${missing.join(",")}`), record["@message"]);

    // The control: with every grant, the same plugin starts and prints its handshake line.
    const plugin = new HandMade("examples/kv/plugin.ts", handMadeHostEnv(box), []);
    let socket: string | undefined;
    try {
      const line = await plugin.firstLine();
      assert.match(line, /^1\|1\|unix\|/);
      socket = line.split("|")[3];
    } finally {
      await plugin.close();
      // SIGKILLed: its socket stays behind.
      if (socket) await Deno.remove(socket).catch(() => {});
    }
  });
});

Deno.test("serve: a PLUGIN_CLIENT_CERT that is not a certificate → refuses to start instead of serving plaintext", async () => {
  await inSandbox(async (box) => {
    for (
      const garbage of ["not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]
    ) {
      const result = await runToExit(
        "examples/kv/plugin.ts",
        handMadeHostEnv(box, { PLUGIN_CLIENT_CERT: garbage }),
      );
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stdout, "", "no handshake line");
      assert.match(
        result.stderr,
        /cannot use the host's certificate \(PLUGIN_CLIENT_CERT\): refusing to start/,
      );
    }
  });
});
