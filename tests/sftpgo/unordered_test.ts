/**
 * The unordered notifier lane (`tether: { notifier_order: unordered }`)
 * against a real Go notifier plugin (sftpgo/sdk) that panics on a marked
 * event: the good events sent alongside the poison, some in flight when it
 * dies, some sent to the dead process, are all delivered (order free), each
 * acknowledged once; each poison is dropped and counted. Then SFTPGo's retry
 * rules while the plugin is down: `retry_queue_max_size` and
 * `retry_max_time: 0`; and a notifier SIGKILLed twice while 10,000 events
 * flow loses none of them.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { PluginClient } from "../../src/client.ts";
import { PluginManager } from "../../src/sftpgo/manager.ts";
import { Semaphore } from "../../src/sftpgo/retry_queue.ts";
import { UnorderedLane } from "../../src/sftpgo/unordered_lane.ts";
import { goFixture, ignoreWithoutGo } from "../helpers.ts";
import {
  assertAllGone,
  collectingLogger,
  goConfigs,
  readJsonLines,
  sleep,
  testOptions,
  waitFor,
} from "./manager_support.ts";

const ROUNDS = 10;
const GOOD_PER_ROUND = 20;

async function crashManager(out: string, notifierOptions: string, backoffMs = 20) {
  const binary = await goFixture("crashnotifier");
  const { logger, records } = collectingLogger();
  const manager = new PluginManager(
    await goConfigs(`
- type: notifier
  cmd: ${binary}
  args: [-out, ${out}]
  notifier_options: ${notifierOptions}
  tether:
    notifier_order: unordered
    health_check_interval_ms: 0
    restart: { initial_backoff_ms: ${backoffMs}, max_backoff_ms: ${backoffMs} }
`),
    testOptions(logger),
  );
  return { manager, records };
}

async function deliveredLines(out: string): Promise<string[]> {
  try {
    return (await Deno.readTextFile(out)).split("\n").filter((line) => line !== "");
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
}

Deno.test({
  name:
    "unordered lane, crash race: 10 rounds of a poison event sent together with 20 good ones: every good " +
    "event delivered and acknowledged once (order free), each poison dropped and counted",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-unordered-" });
    const out = `${dir}/delivered.txt`;
    const { manager, records } = await crashManager(out, "{ fs_events: [upload], retry_max_time: 30 }");
    await manager.start();
    const pids: (number | undefined)[] = [manager.status()[0].pid];
    const expected: string[] = [];
    let report;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        await waitFor("the plugin running", () => manager.status()[0].state === "running");
        // The poison is older than retry_max_time: admitted (the plugin runs), sent, and dropped after the
        // crash it causes, so each round ends. The good events are fresh: those the crash cut off are retried.
        const old = new Date(Date.now() - 60_000);
        assert.equal(
          manager.notifier.sendFsEvent({ action: "upload", username: `poison-${round}`, timestamp: old }),
          1,
        );
        for (let i = 0; i < GOOD_PER_ROUND; i++) {
          const username = `good-${round}-${i}`;
          expected.push(username);
          assert.equal(manager.notifier.sendFsEvent({ action: "upload", username }), 1, username);
        }
        assert.equal(await manager.notifier.flush({ timeoutMs: 30_000 }), true, `round ${round} flushed`);
        pids.push(manager.status()[0].pid);
      }
      const status = manager.status()[0];
      assert.deepEqual(
        [status.delivered, status.queued, status.dropped],
        [ROUNDS * GOOD_PER_ROUND, 0, ROUNDS],
        "each good event acknowledged once, each poison dropped",
      );
      assert.ok(status.restarts >= ROUNDS, `restarted after each poison (${status.restarts})`);
      const lines = await deliveredLines(out);
      assert.deepEqual(
        [...new Set(lines)].sort(),
        [...expected].sort(),
        "every good event arrived, nothing else",
      );
      // At least once: a good event the plugin wrote but could not acknowledge before the poison killed it was
      // sent again. Each such duplicate is a failed send of a good event, so the duplicates are bounded by those.
      const duplicates = lines.length - expected.length;
      assert.ok(status.failedSends > ROUNDS, "the crashes cut off good events in flight (the race happened)");
      assert.ok(
        duplicates <= status.failedSends - ROUNDS,
        `${duplicates} duplicate(s), ${status.failedSends - ROUNDS} failed sends of good events`,
      );
      const drops = records.filter((r) => r.message === "notifier event dropped");
      assert.equal(drops.reduce((n, r) => n + Number(r.fields.count), 0), ROUNDS);
      for (const drop of drops) assert.match(String(drop.fields.reason), /older than retry_max_time/);
    } finally {
      report = await manager.stop();
      await assertAllGone(pids);
      await Deno.remove(dir, { recursive: true });
    }
    assert.deepEqual([report.delivered, report.left, report.dropped], [ROUNDS * GOOD_PER_ROUND, 0, ROUNDS]);
  },
});

/** Crashes the plugin with a poison event (dropped: retry_max_time refuses it) and waits until it is down. */
async function crash(manager: PluginManager): Promise<void> {
  const old = new Date(Date.now() - 60_000);
  manager.notifier.sendFsEvent({ action: "upload", username: "poison", timestamp: old });
  await waitFor("the plugin down", () => manager.status()[0].state !== "running");
}

Deno.test({
  name: "unordered lane, plugin down: retry_queue_max_size bounds the retry queue, the rest is dropped and " +
    "counted; the queued events are delivered once the plugin is back",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-unordered-" });
    const out = `${dir}/delivered.txt`;
    // A restart backoff long enough for the events below to be offered while the plugin is down.
    const { manager, records } = await crashManager(
      out,
      "{ fs_events: [upload], retry_max_time: 30, retry_queue_max_size: 5 }",
      1_500,
    );
    await manager.start();
    const pids: (number | undefined)[] = [manager.status()[0].pid];
    let report;
    try {
      await crash(manager);
      const taken = Array.from(
        { length: 8 },
        (_, i) => manager.notifier.sendFsEvent({ action: "upload", username: `e${i}` }),
      );
      assert.equal(
        manager.status()[0].state,
        "restarting",
        "all eight were offered while the plugin was down",
      );
      assert.deepEqual(taken, [1, 1, 1, 1, 1, 0, 0, 0]);
      assert.equal(await manager.notifier.flush({ timeoutMs: 30_000 }), true);
      pids.push(manager.status()[0].pid);
      assert.deepEqual((await deliveredLines(out)).sort(), ["e0", "e1", "e2", "e3", "e4"]);
      const status = manager.status()[0];
      assert.deepEqual([status.delivered, status.queued, status.dropped], [5, 0, 1 + 3]);
      const reasons = records.filter((r) => r.message === "notifier event dropped").map((r) =>
        String(r.fields.reason)
      );
      assert.equal(reasons.filter((r) => /retry queue is full \(retry_queue_max_size 5\)/.test(r)).length, 3);
    } finally {
      report = await manager.stop();
      await assertAllGone(pids);
      await Deno.remove(dir, { recursive: true });
    }
    assert.deepEqual([report.delivered, report.left, report.dropped], [5, 0, 4]);
  },
});

Deno.test({
  name: "unordered lane, plugin down with retry_max_time 0: events are dropped at once, as SFTPGo drops them",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-unordered-" });
    const out = `${dir}/delivered.txt`;
    const { manager, records } = await crashManager(out, "{ fs_events: [upload] }", 1_500);
    await manager.start();
    const pids: (number | undefined)[] = [manager.status()[0].pid];
    let report;
    try {
      await crash(manager);
      assert.equal(manager.notifier.sendFsEvent({ action: "upload", username: "while-down" }), 0);
      assert.equal(manager.status()[0].state, "restarting");
      await waitFor("the plugin back", () => manager.status()[0].state === "running");
      assert.equal(manager.notifier.sendFsEvent({ action: "upload", username: "after" }), 1);
      assert.equal(await manager.notifier.flush({ timeoutMs: 30_000 }), true);
      pids.push(manager.status()[0].pid);
      assert.deepEqual(await deliveredLines(out), ["after"]);
      const reasons = records.filter((r) => r.message === "notifier event dropped").map((r) =>
        String(r.fields.reason)
      );
      assert.ok(reasons.some((r) => /is not running and retry_max_time is 0/.test(r)), reasons.join("; "));
    } finally {
      report = await manager.stop();
      await assertAllGone(pids);
      await Deno.remove(dir, { recursive: true });
    }
    assert.deepEqual([report.delivered, report.left, report.dropped], [1, 0, 2]);
  },
});

const EVENTS = 10_000;

Deno.test({
  name: "unordered lane: a notifier SIGKILLed twice while 10,000 events flow loses none (order free), and " +
    "flush waits for every one",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-unordered-" });
    const out = `${dir}/killed.jsonl`;
    const { logger } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(`
- type: notifier
  cmd: tests/interop/go/bin/sftpgo-plugins
  args: [notifier, -out, ${out}]
  notifier_options: { fs_events: [upload], retry_max_time: 60 }
  tether: { notifier_order: unordered, restart: { initial_backoff_ms: 100 } }
`),
      testOptions(logger),
    );
    await manager.start();
    const pids: (number | undefined)[] = [manager.status()[0].pid];
    let report;
    try {
      for (let i = 0; i < EVENTS; i++) {
        const taken = manager.notifier.sendFsEvent({
          action: "upload",
          username: "flow",
          virtualPath: `/seq/${i}`,
        });
        assert.equal(taken, 1, `event ${i} admitted`);
        if (i % 200 === 199) await sleep(1); // a steady stream rather than one burst
        if (i === 3_000 || i === 7_000) {
          await waitFor("the notifier to run", () => manager.status()[0].state === "running", 10_000);
          const pid = manager.status()[0].pid!;
          pids.push(pid);
          Deno.kill(pid, "SIGKILL");
        }
      }
      assert.equal(await manager.notifier.flush({ timeoutMs: 60_000 }), true, "flush waited for every event");
      const status = manager.status()[0];
      pids.push(status.pid);
      const seq = (await readJsonLines<{ event: { virtual_path: string } }>(out))
        .map((l) => Number(l.event.virtual_path.slice("/seq/".length)));
      const distinct = new Set(seq);
      assert.equal(distinct.size, EVENTS, `${distinct.size} distinct events delivered`);
      for (let i = 0; i < EVENTS; i++) assert.ok(distinct.has(i), `event ${i} delivered`);
      assert.ok(seq.length - EVENTS <= status.failedSends, "duplicates only of sends cut off by a kill");
      assert.deepEqual(
        [status.state, status.restarts, status.delivered, status.queued, status.dropped],
        ["running", 2, EVENTS, 0, 0],
      );
    } finally {
      report = await manager.stop();
      await assertAllGone(pids);
      await Deno.remove(dir, { recursive: true });
    }
    assert.deepEqual([report.delivered, report.left, report.dropped], [EVENTS, 0, 0]);
  },
});

Deno.test("unordered lane: at most the semaphore's size in flight (shared with other lanes); idle and stop wait for every send", async () => {
  const { logger } = collectingLogger();
  const client = {} as PluginClient;
  const supervisor = { state: "running" as const, client, acquire: () => Promise.resolve(client) };
  const semaphore = new Semaphore(5);
  let inFlight = 0;
  let most = 0;
  const pending: (() => void)[] = [];
  const sent: string[] = [];
  const lane = new UnorderedLane({
    name: "notifier#0",
    supervisor,
    options: { retryMaxTime: 0, retryQueueMaxSize: 0 },
    semaphore,
    callTimeoutMs: 1_000,
    logger,
    send: (_client, item) => {
      inFlight++;
      most = Math.max(most, inFlight);
      return new Promise<void>((resolve) =>
        pending.push(() => {
          inFlight--;
          sent.push(String(item.event.username));
          resolve();
        })
      );
    },
  });
  // Another lane holds two of the five slots.
  assert.ok(semaphore.tryAcquire() && semaphore.tryAcquire());
  const now = BigInt(Date.now()) * 1_000_000n;
  for (let i = 0; i < 100; i++) {
    assert.equal(lane.offer({ kind: "log", event: { event: 5, username: `u${i}` }, timestampNs: now }), true);
  }
  assert.equal(inFlight, 3, "three slots were free");
  assert.equal(lane.counters.queued, 100);
  semaphore.release();
  semaphore.release();
  await Promise.resolve();
  assert.equal(inFlight, 5, "the slots given back went to the lane's waiting events");
  const idle = lane.idle();
  while (pending.length > 0 || inFlight > 0) {
    const batch = pending.splice(0);
    for (const done of batch) done();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  assert.equal(await idle, true);
  assert.equal(most, 5);
  assert.equal(sent.length, 100);
  assert.equal(new Set(sent).size, 100);
  assert.deepEqual(lane.counters, { delivered: 100, queued: 0, dropped: 0, failedSends: 0 });
  assert.equal(semaphore.available, 5, "every slot given back");

  // stop() waits for the sends in flight; events that had no slot yet are left, not sent.
  for (let i = 0; i < 10; i++) {
    lane.offer({ kind: "log", event: { event: 5, username: `v${i}` }, timestampNs: now });
  }
  let stopped = false;
  const stopping = lane.stop().then((left) => {
    stopped = true;
    return left;
  });
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(stopped, false, "stop waits for the five sends in flight");
  for (const done of pending.splice(0)) done();
  assert.equal(await stopping, 5, "the five without a slot are left");
  assert.equal(lane.counters.delivered, 105);
  assert.equal(
    lane.offer({ kind: "log", event: { event: 5 }, timestampNs: now }),
    false,
    "refused once stopped",
  );
  assert.equal(semaphore.available, 5);
});

Deno.test("unordered lane: an event the plugin keeps refusing is resent with a growing backoff while others flow, then dropped at retry_max_time", async () => {
  const { logger, records } = collectingLogger();
  const client = {} as PluginClient;
  const supervisor = { state: "running" as const, client, acquire: () => Promise.resolve(client) };
  let refusals = 0;
  const lane = new UnorderedLane({
    name: "notifier#0",
    supervisor,
    options: { retryMaxTime: 2, retryQueueMaxSize: 0 },
    semaphore: new Semaphore(250),
    callTimeoutMs: 1_000,
    logger,
    retryDelayMs: 50,
    send: async (_client, item) => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (item.event.username === "bad") {
        refusals++;
        throw new Error("refused by the plugin");
      }
    },
  });
  const now = () => BigInt(Date.now()) * 1_000_000n;
  lane.offer({ kind: "log", event: { event: 5, username: "bad" }, timestampNs: now() });
  // Good events keep succeeding the whole time the bad one is retried.
  let good = 0;
  const flow = (async () => {
    while (lane.counters.dropped === 0) {
      lane.offer({ kind: "log", event: { event: 5, username: `good${good++}` }, timestampNs: now() });
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  assert.equal(await lane.idle(10_000), true);
  await flow;
  assert.equal(await lane.idle(10_000), true);
  const counters = lane.counters;
  assert.deepEqual([counters.dropped, counters.delivered, counters.queued], [1, good, 0]);
  assert.equal(counters.failedSends, refusals);
  // Waits of 50, 100, 200, 400, 800 ms fit in 2 s: a handful of resends (fewer on a slow machine, never more),
  // not one per round trip of the good events.
  assert.ok(refusals >= 2 && refusals <= 8, `${refusals} sends of the refused event`);
  const drop = records.find((r) => r.message === "notifier event dropped");
  assert.match(
    String(drop?.fields.reason),
    /the send failed \(refused by the plugin\) and the event is older than retry_max_time \(2 s\)/,
  );
  await lane.stop();
});
