/**
 * Shared pieces of the security suite: a recording logger, a TetherError
 * assertion, a short-path temporary directory, and the temp-dir leak check.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type LogRecord, TetherError } from "../../mod.ts";

export { kvHandshake } from "../../examples/kv/handshake.ts";

/** A logger that keeps every record. */
export class Recorder {
  readonly records: LogRecord[] = [];
  log(record: LogRecord): void {
    this.records.push(record);
  }
}

/**
 * Awaits `promise`, which must reject with a {@linkcode TetherError} of the
 * given code; returns the error for more checks.
 */
export async function rejectsWith(
  promise: Promise<unknown>,
  code: TetherError["code"],
): Promise<TetherError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof TetherError, `expected a TetherError, got ${String(error)}`);
    assert.equal(error.code, code, `expected code ${code}, got ${error.code}: ${error.message}`);
    return error;
  }
  assert.fail(`expected a rejection with code ${code}, but it resolved`);
}

/** A fresh directory under /tmp with a short path (unix socket paths are limited to 107 bytes). */
export function shortTempDir(prefix: string): Promise<string> {
  return Deno.makeTempDir({ dir: "/tmp", prefix });
}

/** Entries of `dir` whose name starts with `tether-` (a launch's private directory). */
export function tetherDirs(dir: string): string[] {
  return [...Deno.readDirSync(dir)].filter((entry) => entry.name.startsWith("tether-")).map((entry) =>
    `${dir}/${entry.name}`
  );
}

/** Polls `check` until it is true or `timeoutMs` passes. */
export async function eventually(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return check();
}

/** Bytes of a string. */
export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** A string of bytes. */
export function text(data: Uint8Array | undefined): string {
  return new TextDecoder().decode(data);
}
