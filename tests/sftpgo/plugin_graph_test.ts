/**
 * What an SFTPGo TypeScript plugin loads at start: the static module graph (from `deno info --json`) of the
 * plugin-only entry point (src/sftpgo/plugin.ts, `@tether/tether/sftpgo/plugin`), of every example SFTPGo plugin
 * and of the TS plugin fixtures holds none of the host side: no grpc-js, yaml, zod or TOML parser, no
 * PluginManager, no config loader, no client. The same walk over sftpgo.ts (both sides) finds them, so the
 * check can fail.
 */

import assert from "node:assert/strict";
import { repoRoot } from "../helpers.ts";

interface DenoInfo {
  roots: string[];
  redirects?: Record<string, string>;
  modules: { specifier: string; dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[] }[];
}

/**
 * Every module `entry` loads at start (static imports only: type-only and dynamic imports are not followed),
 * each with the chain of imports that reaches it, for the error message.
 */
async function staticImports(entry: string): Promise<Map<string, string[]>> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(output.code, 0, `deno info ${entry}: ${new TextDecoder().decode(output.stderr)}`);
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as DenoInfo;
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const chains = new Map<string, string[]>();
  const queue = info.roots.map((root) => ({ specifier: root, chain: [] as string[] }));
  while (queue.length > 0) {
    const { specifier: raw, chain } = queue.shift()!;
    const specifier = info.redirects?.[raw] ?? raw;
    if (chains.has(specifier)) continue;
    const path = [...chain, short(specifier)];
    chains.set(specifier, path);
    for (const dependency of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dependency.code && !dependency.isDynamic) {
        queue.push({ specifier: dependency.code.specifier, chain: path });
      }
    }
  }
  return chains;
}

function short(specifier: string): string {
  const root = `file://${repoRoot}/`;
  return specifier.startsWith(root) ? specifier.slice(root.length) : specifier;
}

const HOST_PACKAGES = ["@grpc/grpc-js", "yaml", "zod", "toml-eslint-parser"];
const HOST_FILES = [
  /^src\/sftpgo\/manager\.ts$/,
  /^src\/sftpgo\/config\.ts$/,
  /^src\/sftpgo\/config\//,
  /^src\/sftpgo\/\w+_client\.ts$/,
  /^src\/sftpgo\/client_calls\.ts$/,
];

/** The host-side modules in a graph, each as the import chain that loads it. */
function hostSide(graph: Map<string, string[]>): string[] {
  const found: string[] = [];
  for (const [specifier, chain] of graph) {
    const name = short(specifier);
    const npm = name.match(/^npm:\/?(@[^/@]+\/[^/@]+|[^/@]+)@/)?.[1];
    if ((npm && HOST_PACKAGES.includes(npm)) || HOST_FILES.some((pattern) => pattern.test(name))) {
      found.push(chain.join(" -> "));
    }
  }
  return found.sort();
}

const PLUGINS = [
  "src/sftpgo/plugin.ts",
  ...["auth", "notifier", "kms", "ipfilter", "eventsearcher"].map((t) => `examples/sftpgo/plugins/${t}.ts`),
  ...["auth", "notifier", "kms", "ipfilter", "eventsearcher", "metadata"].map((t) =>
    `tests/fixtures/sftpgo/${t}.ts`
  ),
  "tests/fixtures/pack/canary_auth.ts",
];

Deno.test("sftpgo plugin graph: the plugin entry point, the example plugins and the TS fixtures load no host side (grpc-js, yaml, zod, TOML, manager, config, clients)", async () => {
  for (const entry of PLUGINS) {
    const graph = await staticImports(entry);
    assert.ok(
      [...graph.keys()].some((s) => s.endsWith("/src/h2server.ts")),
      `${entry}: the plugin's gRPC server (src/h2server.ts) is not in its graph; is the walk broken?`,
    );
    assert.deepEqual(hostSide(graph), [], `${entry} loads the host side at start`);
  }
});

Deno.test("sftpgo plugin graph: sftpgo.ts (both sides) does load the host side, so the check above can fail", async () => {
  const found = hostSide(await staticImports("sftpgo.ts"));
  for (
    const name of [
      // Not grpc-js: the host side loads none either now (lean_streams_test.ts walks mod.ts and sftpgo.ts).
      ...HOST_PACKAGES.filter((name) => name !== "@grpc/grpc-js"),
      "src/sftpgo/manager.ts",
      "src/sftpgo/config/",
      "src/sftpgo/auth_client.ts",
    ]
  ) {
    assert.ok(
      found.some((chain) => chain.split(" -> ").at(-1)!.includes(name)),
      `${name} in ${found.join("\n")}`,
    );
  }
});
