/**
 * `tether checksum FILE…`: the SHA-256 SFTPGo's `sha256sum` option expects (lower-case hex of the file's bytes,
 * what `sha256sum FILE` prints), with `--verify HEX` to compare.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { parse, str } from "./args.ts";
import { CliError, ExitCode, type Output, UsageError } from "./output.ts";

/** `tether checksum --help`. */
export const CHECKSUM_HELP = `Usage: tether checksum [--json] [--verify HEX] FILE...

Prints the SHA-256 of each FILE as SFTPGo's "sha256sum" plugin option expects it
(64 lower-case hex digits, the same as the sha256sum tool), followed by the file name.

Options:
  --verify HEX  compare with HEX (case-insensitive); exit 3 when it does not match
  --json        print [{"file": ..., "sha256": ..., "bytes": ...}]
  -h, --help    show this help

Exit codes: 0 ok, 1 a file cannot be read, 2 usage, 3 --verify mismatch.`;

/**
 * SHA-256 of a file, streamed (plugin binaries can be large); `onProgress` sees bytes read so far.
 *
 * @example
 * ```ts ignore
 * import { sha256File } from "./checksum.ts";
 * console.log((await sha256File("/usr/local/bin/sftpgo-plugin-auth")).sha256);
 * ```
 */
export async function sha256File(
  path: string,
  onProgress?: (done: number, total: number) => void,
): Promise<{ sha256: string; bytes: number }> {
  using file = await Deno.open(path, { read: true });
  const { size } = await file.stat();
  const hash = createHash("sha256");
  let done = 0;
  for await (const chunk of file.readable) {
    hash.update(chunk);
    done += chunk.byteLength;
    onProgress?.(done, size);
  }
  return { sha256: hash.digest("hex"), bytes: done };
}

/** Runs `tether checksum`; returns the exit code. */
export async function checksumCommand(args: string[], out: Output): Promise<number> {
  const { values, positionals } = parse(args, { verify: { type: "string" } });
  if (values.help) {
    out.line(CHECKSUM_HELP);
    return ExitCode.ok;
  }
  if (positionals.length === 0) throw new UsageError("checksum needs at least one FILE");
  const verify = str(values, "verify")?.toLowerCase();
  if (verify !== undefined && !/^[0-9a-f]{64}$/.test(verify)) {
    throw new UsageError(`--verify needs 64 hex digits, found ${JSON.stringify(verify)}`);
  }
  const results = [];
  let mismatch = false;
  for (const file of positionals) {
    let result;
    try {
      result = await sha256File(file, (done, total) => {
        if (total > 16 << 20) out.progress(`hashing ${file}: ${Math.floor((done / total) * 100)}%`);
      });
    } catch (error) {
      throw new CliError(
        `cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`,
        ExitCode.failure,
      );
    }
    out.clearProgress();
    const matches = verify === undefined ? undefined : result.sha256 === verify;
    if (matches === false) mismatch = true;
    results.push({ file, ...result, ...(matches !== undefined ? { matches } : {}) });
    if (!out.json) {
      out.line(`${result.sha256}  ${file}`);
      if (matches === false) {
        out.error(`${out.red("mismatch")}: ${file} has SHA-256 ${result.sha256}, expected ${verify}`);
      }
    }
  }
  if (out.json) out.emit(results);
  return mismatch ? ExitCode.invalid : ExitCode.ok;
}
