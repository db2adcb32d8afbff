/**
 * One rule for every timer value the protocol side takes (src/timers.ts):
 * whole milliseconds from 1 to 2^31-1, else a `config` error naming the
 * field, the range and the value. Checked where PluginClient is made and
 * where the broker dials; per-call `timeoutMs` is in rpc_test.ts.
 */

import assert from "node:assert/strict";
import { PluginClient, TetherError } from "../../mod.ts";
import { Broker } from "../../src/broker.ts";
import { MAX_TIMER_MS, validateTimerMs } from "../../src/timers.ts";
import { kvHandshake, rejectsWith } from "./support.ts";

const BAD = [0, -1, 1.5, NaN, Infinity, 2 ** 31, "5" as unknown as number];

Deno.test("validateTimerMs: 1 .. 2^31-1 and undefined pass; anything else is a config error naming field and value", () => {
  assert.equal(validateTimerMs(1, "f"), 1);
  assert.equal(validateTimerMs(MAX_TIMER_MS, "f"), MAX_TIMER_MS);
  assert.equal(validateTimerMs(undefined, "f"), undefined);
  for (const value of BAD) {
    assert.throws(
      () => validateTimerMs(value, "plugins[0].startTimeoutMs"),
      (error: unknown) =>
        error instanceof TetherError && error.code === "config" &&
        error.message.startsWith(
          "plugins[0].startTimeoutMs must be a whole number of milliseconds from 1 to 2147483647",
        ) &&
        error.message.endsWith(`got ${typeof value === "number" ? String(value) : JSON.stringify(value)}`),
      String(value),
    );
  }
});

Deno.test("PluginClient: startTimeoutMs and killTimeoutMs are checked when the client is made", () => {
  for (const field of ["startTimeoutMs", "killTimeoutMs"] as const) {
    for (const value of BAD) {
      assert.throws(
        () => new PluginClient({ cmd: "/bin/true", handshake: kvHandshake, [field]: value }),
        (error: unknown) =>
          error instanceof TetherError && error.code === "config" &&
          error.message.startsWith(`${field} must be`),
        `${field}=${value}`,
      );
    }
  }
});

Deno.test("Broker.dial: a timeoutMs outside the range is a config error, not an instant or endless wait", async () => {
  const broker = new Broker(undefined, { network: "unix" });
  try {
    for (const value of BAD) {
      const error = await rejectsWith(broker.dial(1, value), "config");
      assert.match(error.message, /^timeoutMs must be a whole number/);
    }
  } finally {
    broker.close();
  }
});
