/**
 * `deno task bundle-plugin <entry.ts> [out.js]`: bundles a TypeScript plugin
 * (all its code and npm dependencies) into ONE file with `deno bundle`, and
 * prints the file's SHA-256, ready for `sha256` / `sha256sum`. Tether runs a
 * `deno` plugin with a digest only as such a single file, so the digest covers
 * every line of code that runs.
 *
 * @module
 */

import { sha256Hex } from "./integrity.ts";

/**
 * Bundles `entry` into `out` with the given deno.json, and returns the bundle's SHA-256.
 *
 * @example
 * ```ts ignore
 * import { bundlePlugin } from "./bundle_cli.ts";
 * const digest = await bundlePlugin("plugins/auth.ts", "dist/auth.js", "deno.json");
 * ```
 */
export async function bundlePlugin(entry: string, out: string, config?: string): Promise<string> {
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", ...(config ? ["--config", config] : []), entry, "-o", out],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!result.success) throw new Error(`deno bundle ${entry} failed (exit code ${result.code})`);
  return await sha256Hex(await Deno.readFile(out));
}

if (import.meta.main) {
  const [entry, outArg] = Deno.args;
  if (!entry) {
    console.error("usage: deno task bundle-plugin <plugin.ts> [out.js]");
    Deno.exit(2);
  }
  const out = outArg ?? entry.replace(/\.(ts|tsx|mts|js|mjs)$/, "") + ".bundle.js";
  const config = await Deno.stat("deno.json").then(() => "deno.json", () => undefined);
  const digest = await bundlePlugin(entry, out, config);
  console.log(`${digest}  ${out}`);
  console.log(`\nIn an SFTPGo plugins: entry:\n  cmd: ${out}\n  sha256sum: ${digest}`);
}
