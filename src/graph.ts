/**
 * The module graph check of a TypeScript plugin. Deno does not permission-check
 * statically analysable local imports (`import("/etc/shadow", { with: { type:
 * "text" } })`, `require("/literal/path")`), so before launch Tether asks
 * `deno info --json` for the whole graph and refuses any local module outside
 * the plugin's own tree or its read grants, judged by where the file really
 * leads (symlinks followed).
 *
 * The plugin's own tree is the directory of its `denoConfig` when one is
 * given, else the directory of its entry (for `sha256` plugins: the entry
 * alone, which must be one bundled file).
 *
 * @module
 */

import { TetherError } from "./errors.ts";

/** What decides how a plugin's modules resolve. */
export interface ModuleSource {
  /** The plugin's name, for errors. */
  readonly plugin: string;
  /** The plugin is one verified bundle (`sha256`): no config, no npm. */
  readonly bundled: boolean;
  /** The host's `denoConfig`, absolute (the plugin's tree is its directory). */
  readonly denoConfig?: string;
}

/**
 * The module resolution flags of a plugin, the one list `deno run` and the
 * graph check's `deno info` both get, so the check sees exactly the graph
 * that runs. Never a config the plugin's tree offers on its own: without a
 * host `denoConfig` it is `--no-config` (no deno.json, package.json or import
 * map auto-discovery); with one, `--config <its real path>`. Always
 * `--no-lock` (the runtime writes no lockfile, wherever a config's
 * `lock.path` points) and, with a config, `--node-modules-dir=manual` (the
 * runtime never creates or fills `node_modules/`, whatever `nodeModulesDir`
 * says). `deno run` adds `--cached-only`, `deno info` `--no-remote`.
 *
 * @throws {TetherError} `config` when `denoConfig` is not a readable file.
 *
 * @example
 * ```ts
 * import { moduleFlags } from "./graph.ts";
 * console.log(moduleFlags({ plugin: "kv", bundled: false })); // ["--no-config", "--no-lock"]
 * ```
 */
export function moduleFlags(source: ModuleSource): string[] {
  if (source.bundled) return ["--no-config", "--no-npm", "--no-lock"];
  if (!source.denoConfig) return ["--no-config", "--no-lock"];
  let config: string;
  try {
    config = Deno.realPathSync(source.denoConfig);
    if (!Deno.statSync(config).isFile) throw new Error("not a file");
  } catch (cause) {
    throw new TetherError(
      "config",
      `plugin ${source.plugin}: denoConfig ${source.denoConfig} is not a readable file: ${String(cause)}`,
      { plugin: source.plugin, cause },
    );
  }
  return ["--config", config, "--no-lock", "--node-modules-dir=manual"];
}

/** Options of {@linkcode checkModuleGraph}. */
export interface GraphCheckOptions {
  /** The plugin's name, for errors. */
  readonly plugin: string;
  /** The absolute path of the entry that will run. */
  readonly entry: string;
  /** The module flags from {@linkcode moduleFlags}: exactly what `deno run` gets. */
  readonly moduleFlags: readonly string[];
  /** Absolute directories (or files) the plugin's modules may come from. */
  readonly allowed: readonly string[];
  /** One bundled file only (with `sha256`): any other local module is refused. */
  readonly singleFile?: boolean;
  /** Working directory of `deno info`, the same as the plugin's (config discovery starts there). */
  readonly cwd?: string;
}

interface InfoModule {
  specifier: string;
  kind?: string;
  local?: string;
  error?: string;
}

function under(path: string, root: string): boolean {
  return root === "/" || path === root || path.startsWith(`${root}/`);
}

function real(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

/**
 * Runs `deno info --json` on the entry and checks every local module.
 * Returns the real paths of the local modules the graph holds.
 *
 * @throws {TetherError} `config` naming the first file outside the tree or grants (and the module that
 *   imports it where Deno says), or why the graph could not be read.
 *
 * @example
 * ```ts ignore
 * import { checkModuleGraph } from "./graph.ts";
 * await checkModuleGraph({ plugin: "kv", entry: "/opt/kv/plugin.ts", moduleFlags: [], allowed: ["/opt/kv"] });
 * ```
 */
export async function checkModuleGraph(options: GraphCheckOptions): Promise<string[]> {
  const { plugin, entry } = options;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "info",
      "--json",
      "--no-remote",
      ...options.moduleFlags,
      entry,
    ],
    cwd: options.cwd,
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new TetherError(
      "config",
      `plugin ${plugin}: cannot analyse the module graph of ${entry}: ${
        new TextDecoder().decode(out.stderr).trim()
      }`,
      { plugin },
    );
  }
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules?: InfoModule[] };
  const modules = info.modules ?? [];
  const importer = new Map<string, string>();
  for (const module of modules as (InfoModule & { dependencies?: { code?: { specifier?: string } }[] })[]) {
    for (const dep of module.dependencies ?? []) {
      if (dep.code?.specifier) importer.set(dep.code.specifier, module.specifier);
    }
  }
  const allowed = options.allowed.map((path) => [path, real(path)]);
  const local: string[] = [];
  for (const module of modules) {
    if (options.singleFile && module.specifier.startsWith("npm:")) {
      throw new TetherError(
        "config",
        `plugin ${plugin}: with sha256, a deno plugin must be ONE bundled file, but it imports ${module.specifier}. ` +
          "Bundle it first: deno bundle --config deno.json plugin.ts -o plugin.bundle.js",
        { plugin },
      );
    }
    if (!module.specifier.startsWith("file:")) continue;
    const path = module.local ?? decodeURIComponent(new URL(module.specifier).pathname);
    const where = real(path);
    const by = importer.get(module.specifier);
    const from = by ? ` (imported by ${by})` : "";
    if (options.singleFile && where !== real(entry)) {
      throw new TetherError(
        "config",
        `plugin ${plugin}: with sha256, a deno plugin must be ONE bundled file so the digest covers all code ` +
          `that runs, but it imports ${path}${from}. ` +
          "Bundle it first: deno bundle --config deno.json plugin.ts -o plugin.bundle.js",
        { plugin },
      );
    }
    const ok = allowed.some(([root, rootReal]) =>
      (under(path, root) || under(path, rootReal)) && (under(where, root) || under(where, rootReal))
    );
    if (!ok) {
      throw new TetherError(
        "config",
        `plugin ${plugin}: module ${path}${
          where !== path ? ` (really ${where})` : ""
        }${from} is outside the ` +
          `plugin's own tree and its read grants (${
            options.allowed.join(", ")
          }); Deno loads literal imports ` +
          "without a read check, so Tether refuses to start it. Move the file into the plugin's tree or grant " +
          "read access to it",
        { plugin },
      );
    }
    local.push(where);
  }
  return local;
}
