/**
 * PluginClient's lifecycle: start, kill (idempotent, graceful via Shutdown,
 * SIGKILL after the grace period), `exited`, `await using`, and cleanup of
 * processes and sockets.
 */

import assert from "node:assert/strict";
import { PluginClient, type ServiceClient, TetherError } from "../../mod.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { eventually, ignoreWithoutGo, isAlive } from "../helpers.ts";
import { bytes, inSandbox, Recorder, rejectsWith, type Sandbox, text } from "./support.ts";

function socketExists(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket === true;
  } catch {
    return false;
  }
}

async function gracefulKill(
  box: Sandbox,
  options: Parameters<Sandbox["client"]>[0],
  whileRunning: (client: PluginClient) => void = () => {},
) {
  const logger = new Recorder();
  const client = box.client({ ...options, logger });
  await client.start();
  await client.ping();
  whileRunning(client);
  const pid = client.pid!;
  const address = client.endpoint!.address;
  // Each launch gets a private directory inside unixSocketDir.
  assert.ok(address.startsWith(`${box.dir}/tether-`), address);
  assert.ok(socketExists(address));
  assert.equal(client.hasExited, false);

  // Twice at once, then again after: all resolve, one process end.
  await Promise.all([client.kill(), client.kill()]);
  await client.kill();

  assert.ok(client.hasExited);
  assert.ok(!isAlive(pid), "the plugin is still alive after kill()");
  // Shutdown made it exit by itself within the grace period: no SIGKILL.
  assert.deepEqual(await client.exited, { code: 0, signal: null, killed: false });
  assert.deepEqual(logger.find("failed to exit gracefully"), []);
  assert.ok(!socketExists(address), `socket ${address} is still there`);
  return client;
}

Deno.test("lifecycle: TS plugin: kill() is idempotent, exits via Shutdown with code 0, socket removed", async () => {
  await inSandbox(async (box) => {
    let kv: ServiceClient<typeof KV> | undefined;
    const client = await gracefulKill(box, box.tsKv(), (started) => kv = started.dispense(KV));
    // After kill, the client refuses further use with `closed` (a TetherError, not grpc-js's
    // "Channel has been shut down"), for new and for earlier dispensed service clients.
    assert.throws(() => client.dispense(KV), (e) => e instanceof TetherError && e.code === "closed");
    await rejectsWith(client.ping(), "closed");
    await rejectsWith(kv!.get({ key: "a" }), "closed");
    const error = await rejectsWith(client.start(), "closed");
    assert.match(error.message, /was killed/);
  });
});

Deno.test({
  name: "lifecycle: Go plugin: kill() is idempotent, exits via Shutdown with code 0, socket removed",
  ignore: ignoreWithoutGo(),
  fn: () => inSandbox(async (box) => void await gracefulKill(box, await box.goKv())),
});

Deno.test("lifecycle: `await using` kills the plugin at the end of the block", async () => {
  await inSandbox(async (box) => {
    let pid: number | undefined;
    let address: string | undefined;
    {
      await using client = new PluginClient(box.tsKv());
      await client.start();
      const kv = client.dispense(KV);
      await kv.put({ key: "k", value: bytes("v") });
      assert.equal(text((await kv.get({ key: "k" })).value), "v");
      pid = client.pid;
      address = client.endpoint?.address;
      assert.ok(pid !== undefined && isAlive(pid));
    }
    box.watchPid(pid!);
    assert.ok(!isAlive(pid!), "plugin alive after the `await using` block");
    assert.ok(!socketExists(address!));
  });
});

Deno.test("lifecycle: start() twice returns the same promise; a killed-before-start client cannot start", async () => {
  await inSandbox(async (box) => {
    const client = box.client(box.tsKv());
    const first = client.start();
    assert.equal(client.start(), first);
    await first;
    await client.ping();

    const never = box.client(box.tsKv());
    await never.kill();
    await rejectsWith(never.start(), "closed");
    assert.equal(never.pid, undefined);
    assert.throws(() => never.broker, (e) => e instanceof TetherError && e.code === "closed");
  });
});

Deno.test("lifecycle: using a client before start() is a `closed` error that says to start it", async () => {
  const client = new PluginClient({
    cmd: "unused",
    handshake: { protocolVersion: 1, magicCookieKey: "K", magicCookieValue: "V" },
  });
  assert.throws(
    () => client.dispense(KV),
    (e) => e instanceof TetherError && e.code === "closed" && /start\(\)/.test(e.message),
  );
  assert.equal(client.endpoint, undefined);
  assert.equal(client.protocolVersion, undefined);
  await client.kill();
});

Deno.test("lifecycle: constructor rejects a handshake without cookie or version (config)", () => {
  for (
    const handshake of [
      { protocolVersion: 1, magicCookieKey: "", magicCookieValue: "v" },
      { protocolVersion: 1, magicCookieKey: "k", magicCookieValue: "" },
      { magicCookieKey: "k", magicCookieValue: "v" },
    ]
  ) {
    assert.throws(
      () => new PluginClient({ cmd: "x", handshake }),
      (e) => e instanceof TetherError && e.code === "config",
    );
  }
});

Deno.test("lifecycle: a plugin that ignores Shutdown is SIGKILLed after the grace period, with a warning", async () => {
  await inSandbox(async (box) => {
    const logger = new Recorder();
    // bare_plugin serves no GRPCController, so Shutdown fails and it never exits by itself.
    const client = box.client(box.tsFake("bare_plugin.ts", [], { logger }));
    await client.start();
    await client.ping();
    const address = client.endpoint!.address;
    assert.ok(socketExists(address));

    const started = Date.now();
    await client.kill();
    const took = Date.now() - started;
    assert.ok(took < 15_000, `kill() took ${took} ms`);

    const exit = await client.exited;
    assert.deepEqual(exit, { code: 137, signal: "SIGKILL", killed: true });
    assert.ok(!isAlive(client.pid!));
    const warnings = logger.find("plugin failed to exit gracefully");
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0].level, "warn");
    assert.equal(warnings[0].fields.pid, client.pid);
    // A SIGKILLed plugin cannot unlink its socket: Tether did (go-plugin #119).
    assert.ok(!socketExists(address), "the killed plugin's socket is still there");
    // No GRPCStdio on that plugin: a warning, as go-plugin logs.
    assert.equal(logger.find("does not support the stdio service")[0]?.level, "warn");
  });
});

Deno.test("lifecycle: a plugin killed from outside: `exited` resolves (not killed by us), error logged, socket removed", async () => {
  await inSandbox(async (box) => {
    const logger = new Recorder();
    const client = box.client(box.tsKv({ logger }));
    await client.start();
    const address = client.endpoint!.address;
    Deno.kill(client.pid!, "SIGTERM");
    const exit = await client.exited;
    assert.deepEqual(exit, { code: 143, signal: "SIGTERM", killed: false });
    assert.ok(client.hasExited);
    const logged = logger.find("plugin process exited");
    assert.equal(logged.length, 1);
    assert.equal(logged[0].level, "error");
    assert.equal(logged[0].fields.signal, "SIGTERM");
    // Deno's default SIGTERM action leaves the socket; the host removes it.
    assert.ok(await eventually(() => !socketExists(address), 5_000), "stale socket after the plugin died");
    await rejectsWith(client.ping(), "exited");
  });
});

Deno.test("lifecycle: with no socket directory set, the plugin's socket goes in the temp dir and is removed", async () => {
  await inSandbox(async (box) => {
    box.checkTmp = true;
    const options = box.tsKv();
    const client = box.client({ ...options, unixSocketDir: undefined });
    await client.start();
    const address = client.endpoint!.address;
    const tmp = Deno.env.get("TMPDIR") || "/tmp";
    assert.ok(address.startsWith(`${tmp.replace(/\/$/, "")}/`), address);
    assert.ok(socketExists(address));
    const privateDir = address.slice(0, address.lastIndexOf("/"));
    await client.kill();
    assert.ok(!socketExists(address), "socket left behind");
    assert.ok(privateDir === tmp || !existsPath(privateDir), `private dir ${privateDir} left behind`);
    // Sandbox.close also checks that no new stale plugin* socket appeared in /tmp.
  });
});

function existsPath(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    "lifecycle: the exit is one state change: `running` is false and onExit has run before `exited` resolves",
  ignore: ignoreWithoutGo(),
  fn: () =>
    inSandbox(async (box) => {
      const client = box.client(await box.goKv());
      await client.start();
      assert.equal(client.running, true);
      const seen: { running: boolean; hasExited: boolean; filesLeft: boolean }[] = [];
      let exitedResolved = false;
      client.exited.then(() => exitedResolved = true);
      client.onExit(() => {
        // Called at the instant the exit is recorded: cleanup has not happened yet, and yet nobody can use it.
        seen.push({
          running: client.running,
          hasExited: client.hasExited,
          filesLeft: [...Deno.readDirSync(box.dir)].length > 0 && !exitedResolved,
        });
      });
      const started = Date.now();
      Deno.kill(client.pid!, "SIGKILL");
      await client.exited;
      assert.deepEqual(seen, [{ running: false, hasExited: true, filesLeft: true }]);
      assert.equal(client.sentAfterDeath(started), false, "a call made before the death is not 'after' it");
      assert.equal(client.sentAfterDeath(Date.now()), true);
      // Registered after the fact: called at once.
      let late = false;
      client.onExit(() => late = true);
      assert.ok(late);
      // Its private directory and owner marker are gone.
      assert.deepEqual([...Deno.readDirSync(box.dir)].map((e) => e.name), []);
    }),
});

Deno.test("lifecycle: dieWithHost needs a command path (no PATH lookup under setpriv), and says so", async () => {
  await inSandbox(async (box) => {
    const client = box.client({ ...box.shellFake("silent.sh"), cmd: "kvplugin" });
    const error = await rejectsWith(client.start(), "config");
    assert.match(error.message, /give its command as a path \(got "kvplugin"\)/);
    assert.deepEqual([...Deno.readDirSync(box.dir)].map((e) => e.name), [], "nothing left behind");
  });
});
