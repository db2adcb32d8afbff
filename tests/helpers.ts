/**
 * Shared test helpers: the Go interop fixtures (built on demand), the
 * TypeScript example plugin's command line, and leak checks.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** The repository root. */
export const repoRoot: string = fileURLToPath(new URL("../", import.meta.url)).replace(/\/$/, "");
/** The Go interop module. */
export const goModule: string = `${repoRoot}/tests/interop/go`;
/** Where the Go fixtures are built. */
export const goBin: string = `${goModule}/bin`;

/** Whether a Go toolchain is on PATH. */
export function haveGo(): boolean {
  try {
    return new Deno.Command("go", { args: ["version"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

/**
 * `ignore` value for tests that need Go: never ignored under CI=true (a missing
 * toolchain must fail there), ignored with a loud notice elsewhere.
 */
export function ignoreWithoutGo(): boolean {
  if (haveGo()) return false;
  if (Deno.env.get("CI") === "true") return false;
  console.warn(
    "NOTICE: Go is not installed: the Go interop tests are IGNORED (not passed). Install Go 1.26+.",
  );
  return true;
}

let built: Promise<void> | undefined;

/** Builds the Go fixtures once per test process (go build is incremental), and returns a binary's path. */
export async function goFixture(name: string): Promise<string> {
  built ??= (async () => {
    const out = await new Deno.Command("go", {
      args: ["build", "-o", "bin/", "./cmd/..."],
      cwd: goModule,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`building the Go fixtures failed:\n${new TextDecoder().decode(out.stderr)}`);
    }
  })();
  await built;
  return `${goBin}/${name}`;
}

/** Command line that runs a TypeScript plugin of this repo with Deno. */
export function denoPlugin(entry: string, permissions: string[] = ["-A"]): { cmd: string; args: string[] } {
  return {
    cmd: Deno.execPath(),
    args: ["run", "--no-prompt", "--config", `${repoRoot}/deno.json`, ...permissions, `${repoRoot}/${entry}`],
  };
}

/** Process ids whose command line contains `needle` (Linux /proc). */
export function processesMatching(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).replaceAll("\0", " ");
      if (cmdline.includes(needle) && Number(entry.name) !== Deno.pid) pids.push(Number(entry.name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** Whether a process is alive (and not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** Polls `check` until it is true or `timeoutMs` passes. */
export async function eventually(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

/** Unix socket files named `plugin*` in a directory. */
export function pluginSockets(dir = "/tmp"): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    if (!entry.name.startsWith("plugin")) continue;
    try {
      if (Deno.lstatSync(`${dir}/${entry.name}`).isSocket) found.push(`${dir}/${entry.name}`);
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}
