/**
 * Support for the PluginManager tests (manager_test.ts, faults_test.ts): the
 * Go fixture YAML, a logger that keeps what it gets, and small waits.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Logger, LogRecord } from "../../mod.ts";
import { TetherError } from "../../mod.ts";
import { loadPluginsConfig, type PluginConfigList } from "../../src/sftpgo/config.ts";
import type { PluginManagerOptions } from "../../src/sftpgo/manager.ts";
import { goFixture, isAlive, repoRoot } from "../helpers.ts";

/** The YAML with the Go reference plugin of every type (cmd relative to the repository root). */
export const GO_PLUGINS_YAML = `${repoRoot}/tests/fixtures/manager/go-plugins.yaml`;

/** A logger that keeps every record; `echo` (or TETHER_TEST_LOG=1) also prints warnings and errors. */
export function collectingLogger(echo = Deno.env.get("TETHER_TEST_LOG") === "1"): {
  logger: Logger;
  records: LogRecord[];
} {
  const records: LogRecord[] = [];
  return {
    records,
    logger: {
      log(record) {
        records.push(record);
        if (echo && (record.level === "warn" || record.level === "error")) {
          console.error(`[${record.level}] ${record.message} ${JSON.stringify(record.fields)}`);
        }
      },
    },
  };
}

/** Loads a YAML of Go plugins after making sure the Go fixtures are built. */
export async function loadGoConfigs(path: string = GO_PLUGINS_YAML): Promise<PluginConfigList> {
  await goFixture("sftpgo-plugins");
  return await loadPluginsConfig(path);
}

/** Parses a YAML document (the Go fixtures built first). */
export async function goConfigs(yaml: string): Promise<PluginConfigList> {
  await goFixture("sftpgo-plugins");
  const { parsePluginsConfig } = await import("../../src/sftpgo/config.ts");
  return parsePluginsConfig(yaml, "test.yaml");
}

/** Manager options for tests: cmd relative to the repo, an empty host environment, the given logger. */
export function testOptions(logger: Logger, extra: PluginManagerOptions = {}): PluginManagerOptions {
  return { baseDir: repoRoot, hostEnv: {}, logger, ...extra };
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every 20 ms until it is true; fails the test after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** The JSON lines of a file (none if it does not exist). */
export async function readJsonLines<T = Record<string, unknown>>(path: string): Promise<T[]> {
  const text = await Deno.readTextFile(path).catch((error) => {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  });
  return text.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line) as T);
}

/** Asserts that `promise` rejects with a TetherError of `code`; returns it. */
export async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<TetherError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof TetherError, `expected a TetherError, got ${error}`);
    assert.equal(error.code, code, `expected code ${code}, got ${error.code}: ${error.message}`);
    return error;
  }
  assert.fail(`expected a rejection with code ${code}`);
}

/** Asserts that none of these processes is alive. */
export async function assertAllGone(pids: readonly (number | undefined)[]): Promise<void> {
  const alive = () => pids.filter((pid): pid is number => pid !== undefined && isAlive(pid));
  await waitFor(`processes ${alive().join(", ")} to exit`, () => alive().length === 0, 5000);
}
