/**
 * Fault injection against PluginManager with the Go reference plugins:
 * notifiers SIGKILLed while 10,000 events flow, an auth plugin killed in the
 * middle of a call, a hung (SIGSTOPped) plugin, a plugin that cannot come
 * back. Each must end in a typed error or a restart, never a hang, and no
 * event may be lost within the retry window.
 *
 * @module
 */

import assert from "node:assert/strict";
import { TetherError } from "../../mod.ts";
import { PluginManager } from "../../src/sftpgo/manager.ts";
import { eventually, goFixture, ignoreWithoutGo, isAlive } from "../helpers.ts";
import {
  assertAllGone,
  collectingLogger,
  goConfigs,
  readJsonLines,
  rejectsWithCode,
  sleep,
  testOptions,
  waitFor,
} from "./manager_support.ts";

const ignore = ignoreWithoutGo();

interface RecordedEvent {
  rpc: string;
  failed: boolean;
  event: { virtual_path: string };
}

const EVENTS = 10_000;

Deno.test({
  name: "faults: notifiers SIGKILLed while 10,000 events flow lose nothing and keep their order",
  ignore,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-faults-" });
    const killedOut = `${dir}/killed.jsonl`;
    const steadyOut = `${dir}/steady.jsonl`;
    const { logger, records } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(`
- type: notifier # killed twice while events flow
  cmd: tests/interop/go/bin/sftpgo-plugins
  args: [notifier, -out, ${killedOut}]
  notifier_options: { fs_events: [upload], retry_max_time: 60, retry_queue_max_size: 0 }
  tether: { restart: { initial_backoff_ms: 100 } }
- type: notifier # the same events, never disturbed
  cmd: tests/interop/go/bin/sftpgo-plugins
  args: [notifier, -out, ${steadyOut}]
  notifier_options: { fs_events: [upload], retry_max_time: 60 }
`),
      testOptions(logger),
    );
    await manager.start();
    const pids: (number | undefined)[] = manager.status().map((s) => s.pid);
    const started = performance.now();
    try {
      const kills: number[] = [];
      for (let i = 0; i < EVENTS; i++) {
        assert.equal(
          manager.notifier.sendFsEvent({
            action: "upload",
            username: "flow",
            virtualPath: `/seq/${i}`,
            fileSize: i,
          }),
          2,
        );
        if (i % 200 === 199) await sleep(1); // a steady stream rather than one burst
        if (i === 3_000 || i === 7_000) {
          // Mid-flow, with events in flight and queued (after the first restart, for the second kill).
          await waitFor("notifier#0 to run", () => manager.status()[0].state === "running", 10_000);
          const pid = manager.status()[0].pid!;
          pids.push(pid);
          Deno.kill(pid, "SIGKILL");
          kills.push(i);
        }
      }
      assert.equal(await manager.notifier.flush({ timeoutMs: 30_000 }), true, "queues drained");
      const elapsed = Math.round(performance.now() - started);
      const [killed, steady] = manager.status();
      pids.push(killed.pid, steady.pid);

      for (const [name, path] of [["killed", killedOut], ["steady", steadyOut]] as const) {
        const lines = await readJsonLines<RecordedEvent>(path);
        const seq = lines.map((l) => Number(l.event.virtual_path.slice("/seq/".length)));
        // At least once: an event the plugin wrote but could not acknowledge before SIGKILL comes again,
        // right after itself. Collapse those repeats; what remains must be exactly 0..9999 in order.
        const collapsed = seq.filter((n, i) => i === 0 || n !== seq[i - 1]);
        assert.equal(collapsed.length, EVENTS, `${name}: ${collapsed.length} distinct events delivered`);
        collapsed.forEach((n, i) => assert.equal(n, i, `${name}: event ${n} at position ${i}`));
        assert.ok(
          seq.length - collapsed.length <= (name === "killed" ? kills.length : 0),
          `${name}: duplicates`,
        );
        if (name === "killed") {
          const redelivered = seq.length - collapsed.length;
          console.log(
            `  10k fault run: killed at events ${kills.join(", ")}; delivered ${killed.delivered}, ` +
              `dropped ${killed.dropped}, restarts ${killed.restarts}, redelivered ${redelivered}, ` +
              `failed sends ${killed.failedSends}; ${elapsed} ms for ${EVENTS} events to 2 plugins`,
          );
        }
      }
      assert.deepEqual([killed.state, killed.restarts, killed.delivered, killed.queued, killed.dropped], [
        "running",
        2,
        EVENTS,
        0,
        0,
      ]);
      assert.deepEqual([steady.state, steady.restarts, steady.delivered, steady.queued, steady.dropped], [
        "running",
        0,
        EVENTS,
        0,
        0,
      ]);
      assert.ok(records.some((r) => r.level === "error" && r.message === "plugin exited unexpectedly"));
    } finally {
      const report = await manager.stop();
      assert.deepEqual([report.left, report.dropped], [0, 0]);
      await assertAllGone(pids);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

const AUTH = (tether: string) => `
- type: auth
  cmd: tests/interop/go/bin/sftpgo-plugins
  args: [auth]
  auth_options: { scope: 1 }
  tether: ${tether}
`;
const alice = { username: "alice", password: "wonderland", ip: "198.51.100.7", protocol: "SSH" };

Deno.test({
  name: "faults: an auth plugin killed mid-call fails that call with a typed error; the next call succeeds",
  ignore,
  fn: async () => {
    const { logger } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(AUTH("{ health_check_interval_ms: 0, restart: { initial_backoff_ms: 300 } }")),
      testOptions(logger),
    );
    await manager.start();
    const first = manager.status()[0].pid!;
    const pids: (number | undefined)[] = [first];
    try {
      assert.equal((await manager.auth.checkUserAndPass(alice)).user?.username, "alice");
      // Freeze it so the next call is surely in flight, then kill it.
      await stopProcess(first);
      const call = manager.auth.checkUserAndPass(alice);
      await sleep(100);
      Deno.kill(first, "SIGKILL");
      const error = await rejectsWithCode(call, "exited");
      assert.equal(error.plugin, "auth#0");
      assert.match(error.message, /plugin auth#0 exited during the call \(.*signal SIGKILL\)/);

      // A call made while it restarts waits for it (300 ms backoff) instead of failing.
      const waited = performance.now();
      assert.equal((await manager.auth.checkUserAndPass(alice)).user?.username, "alice");
      assert.ok(performance.now() - waited >= 100, "the call waited for the restart");
      const status = manager.status()[0];
      assert.deepEqual([status.state, status.restarts], ["running", 1]);
      assert.notEqual(status.pid, first);
      pids.push(status.pid);

      // Down longer than the call's deadline: a typed error at the deadline, never a hang.
      Deno.kill(status.pid!, "SIGKILL");
      await waitFor("the exit to be noticed", () => manager.status()[0].state === "restarting", 2000);
      const late = performance.now();
      const timeout = await rejectsWithCode(
        manager.auth.checkUserAndPass(alice, { timeoutMs: 50 }),
        "exited",
      );
      assert.ok(performance.now() - late < 1000);
      assert.match(timeout.message, /plugin auth#0 is restarting .* not back within 50 ms/);
      await waitFor("the second restart", () => manager.status()[0].restarts === 2, 5000);
      pids.push(manager.status()[0].pid);
      assert.equal((await manager.auth.checkUserAndPass(alice)).user?.username, "alice");
    } finally {
      await manager.stop();
      await assertAllGone(pids);
    }
  },
});

Deno.test({
  name: "faults: a hung plugin is found by health checks, killed and restarted",
  ignore,
  fn: async () => {
    const { logger, records } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(AUTH("{ health_check_interval_ms: 200, restart: { initial_backoff_ms: 50 } }")),
      testOptions(logger),
    );
    await manager.start();
    const hung = manager.status()[0].pid!;
    const pids: (number | undefined)[] = [hung];
    try {
      await sleep(500); // a few healthy checks first
      await stopProcess(hung);
      const stopped = performance.now();
      // A call made to the frozen plugin fails when the hang is detected, not at its 20 s deadline.
      const stuck = manager.auth.checkUserAndPass(alice).then(() => undefined, (error) => error);
      await waitFor("the restart", () => manager.status()[0].restarts === 1, 10_000);
      const detectedMs = Math.round(performance.now() - stopped);
      const error = await stuck;
      assert.ok(error instanceof TetherError && error.code === "exited", String(error));
      assert.match(error.message, /auth#0/);
      assert.ok(!isAlive(hung), "the hung process was killed");
      const status = manager.status()[0];
      pids.push(status.pid);
      assert.equal(status.state, "running");
      assert.match(status.lastError ?? "", /hung: 3 health checks in a row failed/);
      assert.ok(records.some((r) => r.message === "killed hung plugin"));
      assert.ok(detectedMs < 5000, `detected and restarted after ${detectedMs} ms`);
      console.log(
        `  hang detected and plugin restarted ${detectedMs} ms after SIGSTOP (200 ms health checks)`,
      );
      assert.equal((await manager.auth.checkUserAndPass(alice)).user?.username, "alice");
    } finally {
      await manager.stop();
      await assertAllGone(pids);
    }
  },
});

Deno.test({
  name:
    "faults: a plugin that cannot come back fails for good after max_restarts; calls and events fail fast",
  ignore,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-faults-" });
    const binary = await goFixture("sftpgo-plugins");
    const wrapper = `${dir}/once.sh`;
    // Runs the real plugin the first time (per type) only; every restart exits at once.
    await Deno.writeTextFile(
      wrapper,
      `#!/bin/sh\nif [ -e ${dir}/started-$1 ]; then echo "database unreachable" >&2; exit 1; fi\n` +
        `: > ${dir}/started-$1\nexec ${binary} "$@"\n`,
    );
    await Deno.chmod(wrapper, 0o755);
    const { logger, records } = collectingLogger();
    const restart =
      "{ health_check_interval_ms: 0, restart: { initial_backoff_ms: 20, max_backoff_ms: 40, max_restarts: 3 } }";
    const manager = new PluginManager(
      await goConfigs(`
- type: notifier
  cmd: ${wrapper}
  args: [notifier]
  notifier_options: { log_events: [1], retry_max_time: 60 }
  tether: ${restart}
- type: auth
  cmd: ${wrapper}
  args: [auth]
  auth_options: { scope: 1 }
  tether: ${restart}
`),
      testOptions(logger),
    );
    await manager.start();
    const pids = manager.status().map((s) => s.pid!);
    try {
      manager.notifier.sendLogEvent({ event: 1, username: "before" });
      assert.equal(await manager.notifier.flush({ timeoutMs: 5000 }), true);
      assert.equal((await manager.auth.checkUserAndPass(alice)).user?.username, "alice");
      for (const pid of pids) Deno.kill(pid, "SIGKILL");
      await waitFor(
        "the exits to be noticed",
        () => manager.status().every((s) => s.state !== "running"),
        2000,
      );
      // Taken while it restarts (retry_max_time 60)...
      for (let i = 0; i < 3; i++) {
        assert.equal(manager.notifier.sendLogEvent({ event: 1, username: `e${i}` }), 1);
      }
      await waitFor("both to fail for good", () => manager.status().every((s) => s.state === "failed"), 5000);
      // ...and dropped, counted, once Tether gives up; so is anything sent afterwards.
      assert.equal(manager.notifier.sendLogEvent({ event: 1, username: "after" }), 0);
      const [notifier, auth] = manager.status();
      assert.deepEqual([notifier.delivered, notifier.queued, notifier.dropped, notifier.restarts], [
        1,
        0,
        4,
        0,
      ]);
      assert.equal(auth.failureStreak, 4);
      const began = performance.now();
      const error = await rejectsWithCode(manager.auth.checkUserAndPass(alice), "exited");
      assert.ok(performance.now() - began < 100, "fails fast, without waiting for the deadline");
      assert.match(error.message, /plugin auth#1 failed 4 time\(s\) in a row and Tether gave up/);
      assert.match(error.message, /database unreachable/);
      assert.match(error.message, /max_restarts/);
      assert.ok(records.some((r) => r.level === "error" && /giving up/.test(r.message)));
      const decision = await manager.ipFilter.checkIP("10.0.0.1", "SSH");
      assert.equal(decision.allowed, true);
    } finally {
      const report = await manager.stop();
      assert.deepEqual([report.delivered, report.left, report.dropped], [1, 0, 4]);
      await assertAllGone(pids);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "faults: an ipfilter that is down allows (as SFTPGo); one that hangs past the deadline denies",
  ignore,
  fn: async () => {
    const { logger } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(`
- type: ipfilter
  cmd: tests/interop/go/bin/sftpgo-plugins
  args: [ipfilter]
  tether: { health_check_interval_ms: 0, call_timeout_ms: 300, restart: { initial_backoff_ms: 1000 } }
`),
      testOptions(logger),
    );
    await manager.start();
    const first = manager.status()[0].pid!;
    try {
      assert.equal((await manager.ipFilter.checkIP("10.1.2.3", "SSH")).allowed, false);
      await stopProcess(first);
      const slow = await manager.ipFilter.checkIP("198.51.100.7", "SSH");
      assert.equal(slow.allowed, false, "no answer within call_timeout_ms: an error, so denied");
      assert.match(slow.reason ?? "", /ipfilter#0 did not answer: .*DEADLINE_EXCEEDED/);
      Deno.kill(first, "SIGKILL");
      await waitFor("the exit to be noticed", () => manager.status()[0].state === "restarting", 2000);
      const down = await manager.ipFilter.checkIP("10.1.2.3", "SSH");
      assert.deepEqual(down, {
        allowed: true,
        plugin: "ipfilter#0",
        reason: "ipfilter#0 is restarting: allowed, as SFTPGo does",
      });
      await waitFor("the restart", () => manager.status()[0].state === "running", 5000);
      assert.equal((await manager.ipFilter.checkIP("10.1.2.3", "SSH")).allowed, false);
    } finally {
      const pids = [first, manager.status()[0].pid];
      await manager.stop();
      await assertAllGone(pids);
    }
  },
});

/**
 * SIGSTOP takes effect thread by thread: a call sent the moment kill() returns can still be answered by a
 * Go thread not yet stopped. Wait until the kernel reports the process stopped (state T).
 */
async function stopProcess(pid: number): Promise<void> {
  Deno.kill(pid, "SIGSTOP");
  const stopped = await eventually(() => {
    try {
      return /^\d+ \(.*\) [tT]/.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
    } catch {
      return false;
    }
  }, 5000);
  assert.ok(stopped, `process ${pid} did not stop`);
}
