/**
 * The crash race of issue 8: a notifier plugin (Go, sftpgo/sdk) panics on a
 * marked event; the good events behind it, older than `retry_max_time` by
 * the time the plugin is back, must still all be delivered, in order, because
 * they never reached a live plugin. The poison is dropped and counted, and
 * status(), the stop report and the log account for every event.
 *
 * @module
 */

import assert from "node:assert/strict";
import { PluginManager } from "../../src/sftpgo/manager.ts";
import { goFixture, ignoreWithoutGo } from "../helpers.ts";
import { assertAllGone, collectingLogger, goConfigs, testOptions } from "./manager_support.ts";

const ROUNDS = 10;
const GOOD_PER_ROUND = 20;

Deno.test({
  name: "crash race: 10 rounds of a poison event + 20 good ones (retry_max_time 1): every good event " +
    "delivered in order, each poison dropped and counted",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-race-" });
    const out = `${dir}/delivered.txt`;
    const binary = await goFixture("crashnotifier");
    const { logger, records } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(`
- type: notifier
  cmd: ${binary}
  args: [-out, ${out}]
  notifier_options: { fs_events: [upload], retry_max_time: 1 }
  tether: { health_check_interval_ms: 0, restart: { initial_backoff_ms: 20, max_backoff_ms: 100 } }
`),
      testOptions(logger),
    );
    await manager.start();
    const pids: (number | undefined)[] = [manager.status()[0].pid];
    const expected: string[] = [];
    let report;
    try {
      for (let round = 0; round < ROUNDS; round++) {
        assert.equal(manager.notifier.sendFsEvent({ action: "upload", username: `poison-${round}` }), 1);
        for (let i = 0; i < GOOD_PER_ROUND; i++) {
          const username = `good-${round}-${i}`;
          expected.push(username);
          // Offered right away, while the poison is in flight or the plugin is restarting: admitted.
          assert.equal(manager.notifier.sendFsEvent({ action: "upload", username }), 1, username);
        }
        assert.equal(await manager.notifier.flush({ timeoutMs: 30_000 }), true, `round ${round} flushed`);
        pids.push(manager.status()[0].pid);
      }
      const delivered = (await Deno.readTextFile(out)).split("\n").filter((line) => line !== "");
      assert.deepEqual(delivered, expected, "every good event, once, in order");
      const status = manager.status()[0];
      assert.deepEqual([status.delivered, status.queued, status.dropped], [
        ROUNDS * GOOD_PER_ROUND,
        0,
        ROUNDS,
      ]);
      assert.ok(status.restarts >= ROUNDS, `restarted after each poison (${status.restarts})`);
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
