/**
 * Environment modes, checked from inside a plugin (tests/interop/fixtures/env_plugin.ts answers
 * `get(NAME)` with its own variable NAME): `clean` passes none of the host's variables;
 * `inherit` passes them as go-plugin does, with configured `env` over the host's and the
 * protocol's variables over both; for a `deno` plugin the sandbox's env grants still decide
 * what it may read. Also the runner split: the same plugin through a grouped ProcessRunner.
 *
 * @module
 */

import assert from "node:assert/strict";
import { PluginClient, type PluginClientOptions, pluginEnv, ProcessRunner } from "../../mod.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { denoPlugin, repoRoot } from "../helpers.ts";
import { inSandbox, kvHandshake, rejectsWith, type Sandbox, text } from "./support.ts";

const HOST_VAR = "TETHER_PARITY_HOST_VAR";
const BOTH_VAR = "TETHER_PARITY_BOTH_VAR";

function envPlugin(box: Sandbox, extra: Partial<PluginClientOptions> = {}): PluginClientOptions {
  const { cmd, args } = denoPlugin("tests/interop/fixtures/env_plugin.ts");
  // Run natively (the test starts Deno itself with -A): the plugin reads whatever it was given.
  return {
    cmd,
    args: [...args, box.marker],
    runtime: "native",
    handshake: kvHandshake,
    unixSocketDir: box.dir,
    ...extra,
  };
}

async function read(client: PluginClient, name: string): Promise<string | undefined> {
  const answer = await client.dispense(KV).get({ key: name });
  return answer.found ? text(answer.value) : undefined;
}

function withHostEnv(fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    Deno.env.set(HOST_VAR, "from-host");
    Deno.env.set(BOTH_VAR, "from-host");
    Deno.env.set("PLUGIN_MIN_PORT", "1");
    try {
      await fn();
    } finally {
      Deno.env.delete(HOST_VAR);
      Deno.env.delete(BOTH_VAR);
      Deno.env.delete("PLUGIN_MIN_PORT");
    }
  };
}

Deno.test(
  "host env: clean (default) passes none of the host's variables, only env and the protocol's",
  withHostEnv(() =>
    inSandbox(async (box) => {
      const client = box.client(envPlugin(box, { env: { [BOTH_VAR]: "configured" } }));
      await client.start();
      assert.equal(await read(client, HOST_VAR), undefined);
      assert.equal(await read(client, BOTH_VAR), "configured");
      assert.equal(await read(client, "PLUGIN_MIN_PORT"), "10000");
    })
  ),
);

Deno.test(
  "host env: inherit passes the host's variables; env wins over them and the protocol's win over both",
  withHostEnv(() =>
    inSandbox(async (box) => {
      const client = box.client(
        envPlugin(box, { hostEnv: "inherit", env: { [BOTH_VAR]: "configured", PLUGIN_MAX_PORT: "3" } }),
      );
      await client.start();
      assert.equal(await read(client, HOST_VAR), "from-host");
      assert.equal(await read(client, BOTH_VAR), "configured");
      assert.equal(await read(client, "PLUGIN_MIN_PORT"), "10000");
      assert.equal(await read(client, "PLUGIN_MAX_PORT"), "25000");
      assert.equal(await read(client, "PATH"), Deno.env.get("PATH"));
    })
  ),
);

Deno.test(
  "host env: inherit through a grouped ProcessRunner; a deno plugin reads only what its sandbox grants",
  withHostEnv(() =>
    inSandbox(async (box) => {
      const entry = denoPlugin("tests/interop/fixtures/env_plugin.ts").args.at(-1)!;
      const client = box.client({
        handshake: kvHandshake,
        runner: new ProcessRunner({
          command: { cmd: entry, args: [box.marker], hostEnv: "inherit", runtime: "deno" },
          sandbox: {
            permissions: { env: [BOTH_VAR], read: [repoRoot] },
            denoConfig: `${repoRoot}/deno.json`,
            isolation: "deno-only",
          },
          privateDir: { base: box.dir },
        }),
      });
      await client.start();
      assert.equal(await read(client, BOTH_VAR), "from-host");
      // Passed on, but the sandbox grants no read of it.
      const denied = await rejectsWith(read(client, HOST_VAR), "rpc");
      assert.match(denied.message, new RegExp(`cannot read ${HOST_VAR}: NotCapable`));
    })
  ),
);

Deno.test("host env: pluginEnv keeps the protocol's variables and the sandbox's out of an inherited env", () => {
  Deno.env.set("PLUGIN_CLIENT_CERT", "host-cert");
  Deno.env.set("DENO_PERMISSION_BROKER_PATH", "/tmp/broker");
  Deno.env.set("KV_COOKIE", "host-cookie");
  try {
    const env = pluginEnv("inherit", { A: "1" }, { KV_COOKIE: "v", PLUGIN_MIN_PORT: "10000" }, "KV_COOKIE");
    assert.equal(env.PLUGIN_CLIENT_CERT, undefined);
    assert.equal(env.DENO_PERMISSION_BROKER_PATH, undefined);
    assert.equal(env.KV_COOKIE, "v");
    assert.equal(env.A, "1");
    assert.equal(env.PATH, Deno.env.get("PATH"));
  } finally {
    Deno.env.delete("PLUGIN_CLIENT_CERT");
    Deno.env.delete("DENO_PERMISSION_BROKER_PATH");
    Deno.env.delete("KV_COOKIE");
  }
});

Deno.test("host env: an unknown mode and a client with two sources are config errors", () => {
  assert.throws(() => pluginEnv("everything" as "clean", {}, {}), /hostEnv must be "clean" or "inherit"/);
  assert.throws(
    () =>
      new PluginClient({
        cmd: "/bin/true",
        runner: new ProcessRunner({ command: { cmd: "/bin/true" } }),
        handshake: kvHandshake,
      }),
    /exactly one of cmd, runner or reattach \(got cmd, runner\)/,
  );
});
