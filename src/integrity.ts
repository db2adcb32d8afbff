/**
 * Integrity without a time-of-check/time-of-use gap: the plugin file is read
 * once, those bytes are hashed with Web Crypto, and if they match, the same
 * bytes are written into a directory only the host can write (0700) and that
 * copy is what runs. Replacing the original after the check changes nothing.
 *
 * @module
 */

import { TetherError } from "./errors.ts";

/**
 * Hex SHA-256 of some bytes, with Web Crypto.
 *
 * @example
 * ```ts
 * import { sha256Hex } from "./integrity.ts";
 * console.log(await sha256Hex(new TextEncoder().encode("abc")));
 * // "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
 * ```
 */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(bytes)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** The result of {@linkcode verifyIntoPrivateCopy}. */
export interface VerifiedCopy {
  /** The copy to run: it holds exactly the verified bytes. */
  readonly path: string;
  /** The verified digest (lower-case hex). */
  readonly sha256: string;
  /** How many bytes were verified. */
  readonly size: number;
}

/**
 * Reads `source` once, checks its SHA-256 against `expected`, and writes the
 * verified bytes to `destination` (mode `mode`, in a directory the caller made
 * private). The copy is written under a temporary name and renamed, so a
 * reader never sees a partial file.
 *
 * @throws {TetherError} `checksum` naming the file and both digests on a mismatch; `config` if unreadable.
 *
 * @example
 * ```ts ignore
 * const copy = await verifyIntoPrivateCopy("./plugin", expected, `${privateDir}/plugin`, 0o500);
 * new Deno.Command(copy.path).spawn();
 * ```
 */
export async function verifyIntoPrivateCopy(
  source: string,
  expected: string,
  destination: string,
  mode: number,
  plugin = source,
): Promise<VerifiedCopy> {
  const want = expected.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(want)) {
    throw new TetherError(
      "config",
      `plugin ${plugin}: sha256 must be 64 hex digits, found ${JSON.stringify(expected)}`,
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(source);
  } catch (cause) {
    const denied = cause instanceof Deno.errors.NotCapable;
    throw new TetherError(
      denied ? "permission" : "config",
      `plugin ${plugin}: cannot read ${source} to verify it: ${String(cause)}` +
        (denied ? `; run the host with --allow-read=${source}` : ""),
      { cause, plugin },
    );
  }
  const actual = await sha256Hex(bytes);
  if (!constantTimeEqual(actual, want)) {
    throw new TetherError(
      "checksum",
      `plugin ${plugin}: checksums did not match for ${source}: expected SHA-256 ${want}, found ${actual}; ` +
        "refusing to start it (update sha256 if the plugin was upgraded on purpose)",
      { plugin },
    );
  }
  const temporary = `${destination}.${crypto.randomUUID()}.tmp`;
  await Deno.writeFile(temporary, bytes, { mode: 0o600, createNew: true });
  await Deno.chmod(temporary, mode);
  await Deno.rename(temporary, destination);
  return { path: destination, sha256: actual, size: bytes.length };
}
