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
import { resolvePath } from "./resolve.ts";

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
    const where = resolvePath(source.denoConfig);
    if (!("resolved" in where)) throw where.cause ?? new Error(`${where.unresolvable} is ${where.reason}`);
    config = where.resolved;
    if (!Deno.statSync(config).isFile) throw new Error("not a file");
  } catch (cause) {
    // A host without read access to it passes the path as given: deno run and deno info (which read it
    // themselves, and fail on a missing one) still get the same flag.
    if (cause instanceof Deno.errors.NotCapable) return ["--config", source.denoConfig, ...CONFIGURED];
    throw new TetherError(
      "config",
      `plugin ${source.plugin}: denoConfig ${source.denoConfig} is not a readable file: ${String(cause)}`,
      { plugin: source.plugin, cause },
    );
  }
  return ["--config", config, ...CONFIGURED];
}

const CONFIGURED = ["--no-lock", "--node-modules-dir=manual"];

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

/**
 * Where `path` really leads ({@linkcode resolvePath}). Fail closed: a path the
 * host cannot resolve refuses the launch, never judged by its name, since a
 * symlink on it could lead anywhere.
 */
function real(path: string, plugin: string, purpose: string): string {
  const where = resolvePath(path);
  if ("resolved" in where) return where.resolved;
  if (where.hostMayNotRead) {
    throw new TetherError(
      "permission",
      `plugin ${plugin}: cannot resolve ${path} (symlinks on it could lead anywhere): the host needs ` +
        `--allow-read on ${path} to ${purpose}: ${
          String(where.cause)
        }; run the host with --allow-read=${path}`,
      { plugin, cause: where.cause },
    );
  }
  throw new TetherError(
    "config",
    `plugin ${plugin}: cannot resolve ${path} to ${purpose}: ${
      where.unresolvable === path ? "" : `${where.unresolvable}: `
    }${where.reason}`,
    { plugin, cause: where.cause },
  );
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
  const graph = "check the plugin's module graph";
  const allowed = options.allowed.map((path) => [path, real(path, plugin, graph)]);
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
    const where = real(path, plugin, graph);
    const by = importer.get(module.specifier);
    const from = by ? ` (imported by ${by})` : "";
    if (options.singleFile && where !== real(entry, plugin, graph)) {
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

/** How many entries {@linkcode checkGrantLinks} looks at before it refuses (fail closed). */
export const MAX_GRANT_ENTRIES = 20_000;

/** Options of {@linkcode checkGrantLinks}. */
export interface GrantLinkOptions {
  /** The plugin's name, for errors. */
  readonly plugin: string;
  /** Absolute read grants (`["/"]` for everything). */
  readonly read: readonly string[];
  /** Absolute write grants (`["/"]` for everything). */
  readonly write: readonly string[];
  /** More directories links may lead into (for a read walk: the plugin's tree and the Deno cache). */
  readonly also?: readonly string[];
  /** What the read walk is called in errors (default "read grant"). */
  readonly label?: string;
  /** Entry budget (default {@linkcode MAX_GRANT_ENTRIES}). */
  readonly maxEntries?: number;
}

/**
 * Refuses a launch when a symlink inside a path grant leads outside the
 * grants. Deno checks a path grant against the path the plugin names, not
 * where it leads, so `<read grant>/link -> /etc/shadow` would be readable (and
 * importable) and a link in a write grant writable. Links in a read grant must
 * lead into a read or write grant, links in a write grant into a write grant.
 * The walk does not follow links and stops after `maxEntries` entries with an
 * error (it cannot vouch for what it did not see). It sees the grants as they
 * are at launch: a link another process plants later is not seen (namespaces
 * close that: only the grants are mounted).
 *
 * @throws {TetherError} `config` naming the link and where it leads, or the grant too large to walk.
 *
 * @example
 * ```ts ignore
 * import { checkGrantLinks } from "./graph.ts";
 * await checkGrantLinks({ plugin: "kv", read: ["/srv/kv/data"], write: ["/srv/kv/out"] });
 * ```
 */
export async function checkGrantLinks(options: GrantLinkOptions): Promise<void> {
  const { plugin } = options;
  const budget = { left: options.maxEntries ?? MAX_GRANT_ENTRIES };
  const roots = (paths: readonly string[]) =>
    paths.flatMap((p) => [p, real(p, plugin, "check the plugin's grants for symlinks leading out")]);
  const writeRoots = roots(options.write);
  const readRoots = [...roots(options.read), ...writeRoots, ...roots(options.also ?? [])];
  const walks: [string, string[], string][] = [
    ...options.write.map((p): [string, string[], string] => [p, writeRoots, "write"]),
    ...options.read.map((p): [string, string[], string] => [p, readRoots, "read"]),
  ];
  for (const [grant, inside, kind] of walks) {
    if (inside.includes("/")) continue;
    const name = kind === "read" ? options.label ?? "read grant" : "write grant";
    const walk = async (path: string, top: boolean): Promise<void> => {
      if (--budget.left < 0) {
        throw new TetherError(
          "config",
          `plugin ${plugin}: the ${name} ${grant} holds more than ${
            options.maxEntries ?? MAX_GRANT_ENTRIES
          } entries, too many to check for symlinks leading outside the grants (Deno's path grants do not ` +
            'resolve symlinks). Grant a narrower directory, or run it with isolation "namespaces"',
          { plugin },
        );
      }
      let info: Deno.FileInfo;
      try {
        info = await Deno.lstat(path);
      } catch (error) {
        // Not there (yet): nothing to follow. Anything else (the host may not read it) fails the launch.
        if (error instanceof Deno.errors.NotFound) return;
        throw error;
      }
      if (info.isSymlink && !top) {
        // A link the host cannot follow to its end (dangling, a loop) is refused like one leading out.
        const where = resolvePath(path);
        const target = "resolved" in where ? where.resolved : undefined;
        if (target === undefined || !inside.some((root) => under(target, root))) {
          throw new TetherError(
            "config",
            `plugin ${plugin}: ${path} in its ${name} ${grant} is a symlink leading ${
              "resolved" in where ? `to ${where.resolved}` : `where the host cannot follow (${where.reason})`
            }, outside its ${
              kind === "write" ? "write grants" : "read and write grants"
            }; Deno's path grants ` +
              "do not resolve symlinks, so the plugin could reach that file. Remove the link, grant its target, " +
              'or run it with isolation "namespaces"',
            { plugin },
          );
        }
        return;
      }
      if (!(top ? (await Deno.stat(path).catch(() => info)).isDirectory : info.isDirectory)) return;
      for await (const entry of Deno.readDir(path)) await walk(`${path}/${entry.name}`, false);
    };
    await walk(grant, true);
  }
}
