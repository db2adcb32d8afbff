/** Runs the `tether` CLI as a subprocess, the way a user does, and captures what it prints. */

import { goFixture, repoRoot } from "../helpers.ts";

export const KV_COOKIE = ["--cookie-key", "TETHER_KV_PLUGIN", "--cookie-value", "kv-7d3f2a"];

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `deno run -A cli.ts ...args`, in `cwd` (default the repository), with `env` added to a minimal environment. */
export async function tether(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; stdin?: string } = {},
): Promise<CliResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-prompt", `${repoRoot}/cli.ts`, ...args],
    cwd: options.cwd ?? repoRoot,
    env: { NO_COLOR: "1", ...options.env },
    stdin: options.stdin !== undefined ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** The Go KV plugin binary (built on demand). */
export const goKvPlugin = (): Promise<string> => goFixture("kvplugin");
/** The Go SFTPGo plugin binary (built on demand). */
export const goSftpgoPlugins = (): Promise<string> => goFixture("sftpgo-plugins");
/** The TypeScript KV plugin. */
export const tsKvPlugin = `${repoRoot}/examples/kv/plugin.ts`;
