/**
 * The OS layer under a TypeScript plugin's Deno permissions: on Linux with
 * bubblewrap (`bwrap`), each `deno` plugin runs in its own mount, PID, IPC,
 * UTS, cgroup and user namespaces (and network namespace unless it was
 * granted TCP/UDP), seeing only the Deno binary, the system libraries, a
 * read-only module cache, its own tree and read grants (read-only), its write
 * grants and its private directory; `/tmp` is fresh, capabilities are dropped,
 * it gets a new session and dies with the host. Plus resource limits: a V8
 * heap cap and an RLIMIT_DATA cap applied with `prlimit` (util-linux).
 *
 * This module only builds commands and probes the platform; launch.ts decides
 * when they apply.
 *
 * @module
 */

import { TetherError } from "./errors.ts";
import type { Logger } from "./logs.ts";
import { normalizePath, resolvePath } from "./resolve.ts";
import { isPrivateName } from "./stale.ts";

/**
 * Which OS layer a `deno` plugin gets:
 * - `auto` (default): namespaces where bubblewrap works, else Deno's permissions alone (said once in the log);
 * - `namespaces`: namespaces or a `config` error saying why they are unavailable;
 * - `deno-only`: Deno's permissions (and the module graph check) alone.
 */
export type Isolation = "auto" | "namespaces" | "deno-only";

/** Memory limits of a `deno` plugin, in MiB. `0` switches a limit off. */
export interface ResourceLimits {
  /** V8 old-space heap (`--max-old-space-size`). Default {@linkcode DEFAULT_HEAP_MIB}. */
  readonly heapMiB?: number;
  /**
   * RLIMIT_DATA of the whole process (heap, ArrayBuffers, native allocations;
   * not V8's address-space reservations, which is why RLIMIT_AS cannot be used:
   * Deno needs more than 32 GiB of it to start). Default {@linkcode DEFAULT_DATA_MIB}.
   */
  readonly dataMiB?: number;
}

/** Default V8 heap cap of a `deno` plugin (MiB). */
export const DEFAULT_HEAP_MIB = 512;
/**
 * Default RLIMIT_DATA of a `deno` plugin (MiB). Measured with Deno 2.9.6 and the grpc-js KV example
 * (examples/kv/plugin.ts, deno-only): VmData 599 MiB once started, 643 MiB after 2,000 calls; but at 1024 MiB a
 * plugin answering one 64 MiB message (grpc-js copies it several times) ran out (hostile suite avail07), so the
 * default stays 2048 MiB. Lower it per plugin with `limits.dataMiB` (at least 1024).
 */
export const DEFAULT_DATA_MIB = 2048;
/** Smallest RLIMIT_DATA accepted (MiB): Deno itself needs about 600 MiB of it to start. */
export const MIN_DATA_MIB = 1024;

const BWRAP_PATHS = ["/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap"];
const PRLIMIT_PATHS = ["/usr/bin/prlimit", "/bin/prlimit", "/usr/local/bin/prlimit"];

/**
 * The first of `paths` that is a file. A path the host may not stat counts as
 * a candidate (running it needs only --allow-run, and a refused spawn names
 * that flag), so narrow host permissions do not read as "not installed".
 */
function firstExisting(paths: readonly string[]): string | undefined {
  let unknown: string | undefined;
  for (const path of paths) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) unknown ??= path;
    }
  }
  return unknown;
}

/** What {@linkcode probeNamespaces} found. */
export type NamespaceProbe = { readonly ok: true; readonly bwrap: string } | {
  readonly ok: false;
  readonly reason: string;
};

let probe: Promise<NamespaceProbe> | undefined;

/**
 * Whether bubblewrap can make namespaces here (probed once per host process:
 * it runs `bwrap --unshare-all ... true`).
 *
 * @example
 * ```ts ignore
 * import { probeNamespaces } from "./isolation.ts";
 * const found = await probeNamespaces();
 * console.log(found.ok ? `using ${found.bwrap}` : found.reason);
 * ```
 */
export function probeNamespaces(): Promise<NamespaceProbe> {
  probe ??= (async (): Promise<NamespaceProbe> => {
    if (Deno.build.os !== "linux") {
      return { ok: false, reason: `namespaces need Linux (this is ${Deno.build.os})` };
    }
    const bwrap = firstExisting(BWRAP_PATHS);
    if (!bwrap) {
      return { ok: false, reason: `bubblewrap is not installed (looked for ${BWRAP_PATHS.join(", ")})` };
    }
    const truePath = firstExisting(["/usr/bin/true", "/bin/true"]) ?? "/bin/true";
    try {
      const out = await new Deno.Command(bwrap, {
        args: [
          "--die-with-parent",
          "--unshare-all",
          "--cap-drop",
          "ALL",
          "--ro-bind",
          "/",
          "/",
          "--proc",
          "/proc",
          "--",
          truePath,
        ],
        clearEnv: true,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
      if (!out.success) {
        return {
          ok: false,
          reason: `${bwrap} cannot create namespaces here: ${new TextDecoder().decode(out.stderr).trim()}`,
        };
      }
    } catch (cause) {
      const flag = cause instanceof Deno.errors.NotCapable ? `; run the host with --allow-run=${bwrap}` : "";
      return { ok: false, reason: `cannot run ${bwrap}: ${String(cause)}${flag}` };
    }
    return { ok: true, bwrap };
  })();
  return probe;
}

let said = false;

/**
 * Decides the OS layer for one launch: the bwrap path, or `undefined` for
 * Deno's permissions alone.
 *
 * @throws {TetherError} `config` when `namespaces` is asked for and unavailable.
 *
 * @example
 * ```ts ignore
 * const bwrap = await resolveIsolation("auto", "kv", logger);
 * ```
 */
export async function resolveIsolation(
  isolation: Isolation | undefined,
  plugin: string,
  logger: Logger,
): Promise<string | undefined> {
  const wanted = isolation ?? "auto";
  if (wanted !== "auto" && wanted !== "namespaces" && wanted !== "deno-only") {
    throw new TetherError(
      "config",
      `plugin ${plugin}: isolation must be "auto", "namespaces" or "deno-only", found ${
        JSON.stringify(isolation)
      }`,
      { plugin },
    );
  }
  if (wanted === "deno-only") return undefined;
  const found = await probeNamespaces();
  if (found.ok) {
    if (wanted === "auto" && !said) {
      said = true;
      logger.log({
        level: "info",
        message: "TypeScript plugins run in their own namespaces (bubblewrap)",
        fields: { bwrap: found.bwrap },
      });
    }
    return found.bwrap;
  }
  if (wanted === "namespaces") {
    throw new TetherError(
      "config",
      `plugin ${plugin}: isolation "namespaces" is not available: ${found.reason}. ` +
        'Install bubblewrap (apt-get install bubblewrap) or set isolation: "deno-only" to rely on Deno\'s ' +
        "permissions alone",
      { plugin },
    );
  }
  if (!said) {
    said = true;
    logger.log({
      level: "warn",
      message: "TypeScript plugins run WITHOUT namespaces (Deno permissions and the module graph check only)",
      fields: { reason: found.reason },
    });
  }
  return undefined;
}

/** A path a launch binds into a plugin's namespace, and the config field it came from (named in errors). */
export interface BindPath {
  /** The path as configured: the plugin names it so (Deno's flags hold it to this path). */
  readonly path: string;
  /** Where it came from, e.g. `permissions.write[0]`. */
  readonly field: string;
  /**
   * A grant of the plugin's config (default), not a path the host chose (its tree, a socket directory):
   * only grants are held off the host's private directories (the tree is the operator's own choice).
   */
  readonly grant?: boolean;
}

/** One bind mount: the host path as resolved when checked, mounted where the plugin names it. */
export interface Bind {
  /** The real host path, resolved by {@linkcode resolvePath} when the launch was checked. */
  readonly source: string;
  /** The path inside the namespace (the configured path, normalised). */
  readonly dest: string;
  /** Read-write (a write grant) or read-only. */
  readonly writable: boolean;
}

/** Options of {@linkcode checkGrantPath} and {@linkcode grantBinds}. */
export interface GrantBindOptions {
  /** The plugin's name, for errors. */
  readonly plugin: string;
  /** The launch's private directory: the others next to it (its parent) are refused to a grant. */
  readonly privateDir: string;
  /** Bound read-only: the plugin's tree, its read grants. A plain string is a grant named by its path. */
  readonly readOnly: readonly (string | BindPath)[];
  /** Bound read-write: its write grants (and a socket directory of the host's choosing). */
  readonly readWrite: readonly (string | BindPath)[];
}

/** Kernel file systems: their entries are the host's processes, devices and magic links that lead anywhere. */
const KERNEL_DIRS = ["/proc", "/sys", "/dev"] as const;

function inside(path: string, root: string): boolean {
  return root === "/" || path === root || path.startsWith(`${root}/`);
}

function parentOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

function lexists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function asBindPath(entry: string | BindPath): Required<BindPath> {
  return typeof entry === "string" ? { path: entry, field: "path", grant: true } : { grant: true, ...entry };
}

/**
 * Why the namespace may not bind `real` (a resolved path) for a grant, or
 * `undefined`. Kernel file systems never: the namespace has its own `/proc`
 * and `/dev`, and the host's hold magic links (`/proc/<pid>/root`,
 * `/proc/<pid>/fd/*`, `/dev/fd`) that reopen anything the host's processes
 * hold, past any bind. Tether's private directories never: the launch's own
 * is bound already, another launch's holds its sockets and audit, and a
 * directory holding them all (their parent) exposes every one, with the
 * owner markers the host's sweep trusts.
 */
function refusal(real: string, privateDir: string, grant: boolean): string | undefined {
  const kernel = KERNEL_DIRS.find((dir) => inside(real, dir));
  if (kernel) {
    return `it leads to ${real}, in ${kernel}, a kernel file system (the host's processes, devices and magic ` +
      "links such as /proc/<pid>/root that lead anywhere); the namespace has its own /proc and /dev";
  }
  if (!grant) return undefined;
  const own = resolvedOr(privateDir);
  const base = parentOf(own);
  if (inside(base, real)) {
    return `it leads to ${real}, which holds ${base}, where the host keeps every launch's private directory ` +
      "(sockets, permission audit, owner markers)";
  }
  if (inside(real, base)) {
    const top = `${base === "/" ? "" : base}/${real.slice(base === "/" ? 1 : base.length + 1).split("/")[0]}`;
    if (isPrivateName(top.slice(top.lastIndexOf("/") + 1)) && !inside(real, own)) {
      return `it leads to ${real}, into ${top}, another launch's private directory or owner marker`;
    }
  }
  return undefined;
}

function resolvedOr(path: string): string {
  const where = resolvePath(path);
  return "resolved" in where ? where.resolved : normalizePath(path);
}

/**
 * Resolves one path a launch would bind ({@linkcode resolvePath}) and refuses
 * what no isolation mode may grant, before any process starts: a path the
 * host cannot follow to its end (a dangling symlink, a loop, a path through a
 * file, a directory the host may not read: it leads wherever that later
 * leads), one leading into `/proc`, `/sys` or `/dev`, and a grant leading
 * into another launch's private directory or holding them all.
 *
 * @param writable Whether it is bound read-write (only named in errors).
 * @returns The real path (for a path that does not exist yet: its existing prefix resolved, the rest appended).
 * @throws {TetherError} `config` naming the plugin, the field, the path and why (`permission` when the host's
 *   own Deno permissions keep it from resolving the path, naming the `--allow-read` it needs).
 *
 * @example
 * ```ts ignore
 * import { checkGrantPath } from "./isolation.ts";
 * checkGrantPath("kv", { path: "/srv/kv/out", field: "permissions.write[0]" }, "/tmp/tether-x", true);
 * ```
 */
export function checkGrantPath(
  plugin: string,
  entry: string | BindPath,
  privateDir: string,
  writable: boolean,
): string {
  const { path, field, grant } = asBindPath(entry);
  const where = resolvePath(path);
  const what = `plugin ${plugin}: ${field} ${path}`;
  if (!("resolved" in where)) {
    const at = where.unresolvable === normalizePath(path) ? "" : `${where.unresolvable}: `;
    if (where.hostMayNotRead) {
      throw new TetherError(
        "permission",
        `${what} cannot be resolved (symlinks on it could lead anywhere): ${at}${where.reason}; run the host ` +
          `with --allow-read=${path} so it can see where the grant leads`,
        { plugin, cause: where.cause },
      );
    }
    throw new TetherError(
      "config",
      `${what} cannot be resolved: ${at}${where.reason}. A ${
        writable ? "write" : "read"
      } grant must lead somewhere the host can follow now (it would lead wherever that later appears); ` +
        "remove the link or grant its target",
      { plugin, cause: where.cause },
    );
  }
  const written = normalizePath(path);
  const mountedOver = KERNEL_DIRS.find((dir) => inside(written, dir));
  const why = refusal(where.resolved, privateDir, grant) ??
    (mountedOver
      ? `it would be bound at ${written}, in ${mountedOver}, which the namespace mounts afresh over any bind ` +
        "(and a path there is a kernel object's name on the host)"
      : undefined);
  if (why) throw new TetherError("config", `${what} is refused: ${why}; grant a narrower path`, { plugin });
  return where.resolved;
}

/**
 * The bind mounts of a plugin's namespace for its tree and grants, each
 * resolved once, here ({@linkcode checkGrantPath}): the source is the real
 * path seen by the check, so a symlink swapped afterwards does not change
 * what bwrap mounts. Nothing wider than needed: a read path that does not
 * exist yet is bound as itself (bwrap's `-try` skips it if it is still
 * missing: nothing to read); a write grant that does not exist yet is bound
 * as its directory, which must exist (so the file the plugin creates lands
 * on the host) and pass the same rules: a directory holding the host's
 * private directories is refused rather than bound read-write.
 *
 * @throws {TetherError} as {@linkcode checkGrantPath}, and `config` for a write grant whose directory does not exist.
 *
 * @example
 * ```ts ignore
 * import { grantBinds } from "./isolation.ts";
 * const binds = grantBinds({ plugin: "kv", privateDir: "/tmp/tether-x", readOnly: ["/opt/kv"], readWrite: [] });
 * ```
 */
export function grantBinds(options: GrantBindOptions): Bind[] {
  const { plugin, privateDir } = options;
  const binds = new Map<string, Bind>();
  const add = (entry: string | BindPath, writable: boolean) => {
    const named = asBindPath(entry);
    const real = checkGrantPath(plugin, named, privateDir, writable);
    let source = real;
    let dest = normalizePath(named.path);
    if (!writable && !lexists(source)) {
      // Bound when the plugin starts, a path made later would never appear inside: say so now, not as NotFound.
      throw new TetherError(
        "config",
        `plugin ${plugin}: ${named.field} ${named.path} does not exist. Under namespaces a read grant is bound ` +
          "when the plugin starts, so a file made later would never appear to the plugin; create it before the " +
          "start (an empty file will do), grant its directory, or run the plugin with isolation: deno-only",
        { plugin },
      );
    }
    if (writable && !lexists(source)) {
      // Bind its directory, so what the plugin creates lands on the host; only the one directory.
      source = parentOf(source);
      dest = parentOf(dest);
      if (!lexists(source)) {
        throw new TetherError(
          "config",
          `plugin ${plugin}: ${named.field} ${named.path} does not exist, nor does its directory ${source}: the ` +
            "namespace would have to bind a wider directory read-write for it to land on the host; create " +
            `${source} first`,
          { plugin },
        );
      }
      const why = refusal(source, privateDir, named.grant);
      if (why) {
        throw new TetherError(
          "config",
          `plugin ${plugin}: ${named.field} ${named.path} does not exist yet, so its directory would be bound ` +
            `read-write, and that is refused: ${why}; create ${named.path} first or grant a narrower path`,
          { plugin },
        );
      }
    }
    binds.set(`${writable ? "w" : "r"}:${dest}`, { source, dest, writable });
  };
  for (const entry of options.readOnly) add(entry, false);
  for (const entry of options.readWrite) add(entry, true);
  return [...binds.values()];
}

/** What the plugin's namespace holds. */
export interface SandboxSpec {
  /** The plugin's name, for errors. */
  readonly plugin?: string;
  /** The bwrap binary. */
  readonly bwrap: string;
  /** The Deno binary (bound read-only at its path). */
  readonly deno: string;
  /** Deno's cache directory (read-only; its `location_data` is a fresh tmpfs). */
  readonly denoDir?: string;
  /** The launch's private directory (read-write: sockets, audit file, verified copy). */
  readonly privateDir: string;
  /** Bound read-only ({@linkcode grantBinds}): the plugin's tree, its read grants. */
  readonly readOnly: readonly (string | BindPath)[];
  /** Bound read-write ({@linkcode grantBinds}): the plugin's write grants. */
  readonly readWrite: readonly (string | BindPath)[];
  /** Keep the host's network namespace (the plugin was granted TCP/UDP hosts). */
  readonly shareNet: boolean;
  /** Working directory inside the namespace (created empty if not bound). */
  readonly cwd: string;
}

/**
 * The `bwrap` arguments that run `command` in the namespace described by
 * `spec`. The tree and grants are bound as {@linkcode grantBinds} resolves
 * them (it throws for one no namespace may bind), and before what Tether
 * mounts itself (the Deno binary and cache, the private directory, `/proc`,
 * `/dev`), so no grant can cover those. The environment is NOT put on the
 * command line (`--setenv` would show secrets in `/proc/<pid>/cmdline`, which
 * every user can read): spawn bwrap with `clearEnv: true` and only the
 * plugin's variables, which is what `--clearenv` plus `--setenv` would give.
 *
 * @throws {TetherError} as {@linkcode grantBinds}.
 *
 * @example
 * ```ts ignore
 * import { bwrapArgs } from "./isolation.ts";
 * const args = bwrapArgs({
 *   bwrap: "/usr/bin/bwrap", deno: "/usr/bin/deno", privateDir: "/tmp/tether-x", readOnly: ["/opt/p"],
 *   readWrite: [], shareNet: false, cwd: "/opt/p",
 * }, ["/usr/bin/deno", "run", "/opt/p/main.ts"]);
 * console.log(args.includes("--unshare-all")); // true
 * ```
 */
export function bwrapArgs(spec: SandboxSpec, command: readonly string[]): string[] {
  const binds = grantBinds({
    plugin: spec.plugin ?? "(unnamed)",
    privateDir: spec.privateDir,
    readOnly: spec.readOnly,
    readWrite: spec.readWrite,
  });
  const args = ["--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL"];
  if (spec.shareNet) args.push("--share-net");
  for (const lib of ["/usr/lib", "/usr/lib64", "/lib", "/lib64"]) args.push("--ro-bind-try", lib, lib);
  args.push("--tmpfs", "/tmp");
  for (const bind of binds) args.push(bind.writable ? "--bind-try" : "--ro-bind-try", bind.source, bind.dest);
  // Tether's own mounts come after the grants: a grant that holds one of these paths does not cover it.
  args.push("--ro-bind", spec.deno, spec.deno);
  if (spec.shareNet) {
    for (
      const file of [
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/nsswitch.conf",
        "/etc/ssl",
        "/etc/ca-certificates",
      ]
    ) {
      args.push("--ro-bind-try", file, file);
    }
  }
  if (spec.denoDir) {
    args.push("--ro-bind-try", spec.denoDir, spec.denoDir);
    if (exists(`${spec.denoDir}/location_data`)) args.push("--tmpfs", `${spec.denoDir}/location_data`);
  }
  args.push("--bind", spec.privateDir, spec.privateDir);
  args.push("--proc", "/proc", "--dev", "/dev");
  const bound = [spec.privateDir, ...binds.map((bind) => bind.dest), spec.denoDir ?? "/nonexistent"];
  if (!bound.some((dir) => spec.cwd === dir || spec.cwd.startsWith(`${dir}/`))) args.push("--dir", spec.cwd);
  args.push("--chdir", spec.cwd, "--", ...command);
  return args;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Where prlimit is, or `undefined` (then RLIMIT_DATA cannot be applied).
 *
 * @example
 * ```ts ignore
 * console.log(findPrlimit()); // "/usr/bin/prlimit"
 * ```
 */
export function findPrlimit(): string | undefined {
  return firstExisting(PRLIMIT_PATHS);
}

/**
 * The memory limits that apply, with defaults filled in and values checked.
 *
 * @throws {TetherError} `config` naming the field on a negative, fractional or absurd value.
 *
 * @example
 * ```ts
 * import { resolveLimits } from "./isolation.ts";
 * console.log(resolveLimits(undefined, "kv")); // { heapMiB: 512, dataMiB: 2048 }
 * ```
 */
export function resolveLimits(limits: ResourceLimits | undefined, plugin: string): Required<ResourceLimits> {
  const heapMiB = limits?.heapMiB ?? DEFAULT_HEAP_MIB;
  const dataMiB = limits?.dataMiB ?? DEFAULT_DATA_MIB;
  for (const [field, value] of [["heapMiB", heapMiB], ["dataMiB", dataMiB]] as const) {
    if (!Number.isSafeInteger(value) || value < 0 || value > 1024 * 1024) {
      throw new TetherError(
        "config",
        `plugin ${plugin}: limits.${field} must be a whole number of MiB from 0 (off) to 1048576, found ${
          JSON.stringify(value)
        }`,
        { plugin },
      );
    }
  }
  // Deno 2.9.6 does not start below ~600 MiB of RLIMIT_DATA (measured), before any heap.
  if (dataMiB > 0 && (dataMiB < MIN_DATA_MIB || dataMiB < heapMiB + 512)) {
    throw new TetherError(
      "config",
      `plugin ${plugin}: limits.dataMiB (${dataMiB}) must be at least ${MIN_DATA_MIB} and leave 512 MiB above ` +
        `limits.heapMiB (${heapMiB}) for Deno itself, or 0 for no data limit`,
      { plugin },
    );
  }
  return { heapMiB, dataMiB };
}

/**
 * V8's young generation for a `deno` plugin: `--max-semi-space-size=1` (MiB). A plugin is a small server that
 * mostly waits; V8's default semi-spaces (grown under allocation) are resident memory it rarely needs.
 * Measured (docs/security.md): RSS after 2,000 KV calls 113-117 -> 93-96 MiB, no throughput cost.
 */
export const PLUGIN_SEMI_SPACE_MIB = 1;

/**
 * The one `--v8-flags=` argument a `deno` plugin's `deno run` gets: the
 * small young generation and, unless switched off, the heap limit, in one
 * comma-separated list (one `--v8-flags`, one place that decides them).
 *
 * @example
 * ```ts
 * import { v8Flags } from "./isolation.ts";
 * console.log(v8Flags({ heapMiB: 512, dataMiB: 2048 }));
 * // "--v8-flags=--max-semi-space-size=1,--max-old-space-size=512"
 * ```
 */
export function v8Flags(limits: Required<ResourceLimits>): string {
  const flags = [`--max-semi-space-size=${PLUGIN_SEMI_SPACE_MIB}`];
  if (limits.heapMiB > 0) flags.push(`--max-old-space-size=${limits.heapMiB}`);
  return `--v8-flags=${flags.join(",")}`;
}

/**
 * Which memory limit a plugin's death points to, from its exit and the last
 * lines of its stderr, or `undefined`.
 *
 * @example
 * ```ts
 * import { limitFromExit } from "./isolation.ts";
 * console.log(limitFromExit(["# Fatal JavaScript out of memory: Reached heap limit"], { heapMiB: 512, dataMiB: 0 }));
 * // "heap"
 * ```
 */
export function limitFromExit(
  stderrTail: readonly string[],
  limits: Required<ResourceLimits>,
): "heap" | "data" | undefined {
  const text = stderrTail.join("\n");
  if (
    limits.heapMiB > 0 &&
    /Reached heap limit|Fatal JavaScript out of memory|JavaScript heap out of memory/.test(text)
  ) {
    return "heap";
  }
  if (
    limits.dataMiB > 0 &&
    /memory allocation of \d+ bytes failed|Array buffer allocation failed|Fatal process out of memory|Cannot allocate memory/
      .test(text)
  ) {
    return "data";
  }
  return undefined;
}
