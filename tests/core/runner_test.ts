/**
 * A host's own PluginRunner (go-plugin's RunnerFunc): the client hands it the protocol's variables,
 * it launches the plugin however it likes (here: Deno.Command directly, in a directory of its own)
 * and the client connects, calls, and kills through it; the runner's cleanup runs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { PluginClient, type PluginRunner, type RunningPlugin, type RunRequest } from "../../mod.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { goFixture, ignoreWithoutGo, isAlive } from "../helpers.ts";
import { kvHandshake, text } from "./support.ts";

class DirectRunner implements PluginRunner {
  requests: RunRequest[] = [];
  cleaned = false;
  constructor(readonly cmd: string, readonly dir: string) {}

  run(request: RunRequest): Promise<RunningPlugin> {
    this.requests.push(request);
    const child = new Deno.Command(this.cmd, {
      env: { ...request.protocolEnv, PLUGIN_UNIX_SOCKET_DIR: this.dir },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return Promise.resolve({
      pid: child.pid,
      stdout: child.stdout,
      stderr: child.stderr,
      status: child.status.then(({ code, signal }) => ({ code, signal })),
      pin: { socketDir: this.dir },
      brokerDir: this.dir,
      kill: (signal) => {
        try {
          child.kill(signal);
        } catch {
          // Gone.
        }
      },
      killNow: () => child.kill("SIGKILL"),
      cleanup: () => {
        this.cleaned = true;
        return Promise.resolve();
      },
    });
  }
}

Deno.test({
  name: "runner: a host's own PluginRunner launches the Go plugin; the client connects, calls and kills",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "trun" });
    try {
      const runner = new DirectRunner(await goFixture("kvplugin"), dir);
      const client = new PluginClient({ handshake: kvHandshake, runner, name: "direct" });
      await client.start();
      assert.equal(runner.requests.length, 1);
      const env = runner.requests[0].protocolEnv;
      assert.equal(env[kvHandshake.magicCookieKey], kvHandshake.magicCookieValue);
      assert.ok(env.PLUGIN_CLIENT_CERT?.includes("BEGIN CERTIFICATE"), "AutoMTLS certificate handed over");
      assert.equal(runner.requests[0].cookieKey, kvHandshake.magicCookieKey);
      assert.ok(client.endpoint!.address.startsWith(`${dir}/`));
      const kv = client.dispense(KV);
      await kv.put({ key: "k", value: new TextEncoder().encode("v") });
      assert.equal(text((await kv.get({ key: "k" })).value), "v");
      const pid = client.pid!;
      await client.kill();
      assert.equal(isAlive(pid), false);
      assert.equal((await client.exited).killed, false, "it ended on Shutdown, not SIGKILL");
      assert.equal(runner.cleaned, true);
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
