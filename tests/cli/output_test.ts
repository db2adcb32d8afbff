import assert from "node:assert/strict";
import { ExitCode, useColor } from "../../src/cli/output.ts";

Deno.test("colours only on a terminal, and never when NO_COLOR is set (non-empty)", () => {
  assert.equal(useColor(true, {}), true);
  assert.equal(useColor(false, {}), false);
  assert.equal(useColor(true, { NO_COLOR: "1" }), false);
  // https://no-color.org: an empty NO_COLOR does not disable colour.
  assert.equal(useColor(true, { NO_COLOR: "" }), true);
});

Deno.test("exit codes are the documented ones", () => {
  assert.deepEqual(ExitCode, { ok: 0, failure: 1, usage: 2, invalid: 3, start: 4, call: 5 });
});
