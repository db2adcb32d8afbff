/**
 * `deno task demo`: Tether's main job with bundled example plugins.
 *
 * 1. The KV example: a TypeScript plugin (sandboxed) and, where Go is
 *    installed, the same service as a Go go-plugin plugin, each driven by the
 *    same host code.
 * 2. The SFTPGo layer: an SFTPGo `plugins:` YAML with TypeScript plugins of
 *    every type, run under PluginManager.
 *
 * @module
 */

import { runKvDemo } from "./kv/host.ts";

const root = new URL("../", import.meta.url).pathname;

function haveGo(): boolean {
  try {
    return new Deno.Command("go", { args: ["version"], stdout: "null", stderr: "null" }).outputSync().success;
  } catch {
    return false;
  }
}

console.log(
  "Tether demo\n\n1. KV plugin in TypeScript (deno runtime, deny-by-default permissions, AutoMTLS)",
);
await runKvDemo(`${root}examples/kv/plugin.ts`, "ts-kv");

console.log("\n2. The same host code against a Go go-plugin plugin");
if (haveGo()) {
  const build = await new Deno.Command("go", {
    args: ["build", "-o", "bin/", "./cmd/kvplugin"],
    cwd: `${root}tests/interop/go`,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (build.success) await runKvDemo(`${root}tests/interop/go/bin/kvplugin`, "go-kv");
  else console.log("  (building the Go plugin failed; see above)");
} else {
  console.log("  (Go is not installed: skipped. Install Go to see a Go plugin under the same host.)");
}

try {
  const { runSftpgoDemo } = await import("./sftpgo_demo.ts");
  console.log("\n3. SFTPGo plugins from examples/plugins.yaml under PluginManager");
  await runSftpgoDemo();
} catch (error) {
  if (!(error instanceof TypeError && String(error.message).includes("sftpgo_demo"))) throw error;
}
