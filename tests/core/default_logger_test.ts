/**
 * A host that passes no logger shows its plugins' logs on its stderr, as a
 * go-plugin host does: info and above, under the plugin's name.
 */

import assert from "node:assert/strict";
import { repoRoot } from "../helpers.ts";

Deno.test("default logger: a host without a logger shows the plugin's info records on stderr, not its debug ones", async () => {
  const marker = `default-logger-${crypto.randomUUID()}`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-prompt", `${repoRoot}/tests/fixtures/hosts/default_logger.ts`, marker],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const line = stderr.split("\n").find((l) => l.includes(`${marker}-info`));
  assert.ok(line, `the info record is on the host's stderr:\n${stderr}`);
  assert.match(line, /\[INFO\]/);
  assert.match(line, /plugin=kv/);
  assert.ok(!stderr.includes(`${marker}-debug`), "debug records stay below the default level");
});
