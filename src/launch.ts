/**
 * Turns a plugin's launch options into the exact command Tether runs: a
 * private 0700 directory per launch (sockets, the verified copy, the
 * permission audit file; removed afterwards), the SHA-256 check over the
 * bytes that run, and for TypeScript plugins a `deno run` whose permissions
 * are decided by Deno's own `--allow-*`/`--deny-*` flags (nothing inside the
 * plugin's reach answers a permission check), after a check of its module
 * graph, with a private storage origin, memory limits and, where bubblewrap
 * works, its own namespaces.
 *
 * @module
 */

import { AUDIT_MAX_BACKLOG_BYTES, AuditReader, type AuditTamper, type PermissionEvent } from "./audit.ts";
import { pluginBrokerSocket } from "./broker.ts";
import { TetherError } from "./errors.ts";
import { track } from "./lifeline.ts";
import { checkGrantLinks, checkModuleGraph, moduleFlags } from "./graph.ts";
import { PluginEnv, protocolEnv } from "./handshake.ts";

export { protocolEnv };
import { sha256Hex, verifyIntoPrivateCopy } from "./integrity.ts";
import { makeMarkedDir, removeOwnerMarker, sweepStaleDirs } from "./stale.ts";
import {
  type BindPath,
  bwrapArgs,
  checkGrantPath,
  findPrlimit,
  grantBinds,
  type Isolation,
  limitFromExit,
  resolveIsolation,
  resolveLimits,
  type ResourceLimits,
  v8Flags,
} from "./isolation.ts";
import type { Logger } from "./logs.ts";
import {
  MEMORY_TRIM_ENV,
  type MemoryTrim,
  type MemoryTrimOption,
  resolveMemoryTrim,
  trimUnavailable,
} from "./memory_trim.ts";
import { type DenoPermissions, PermissionPolicy } from "./permissions.ts";

/** How a plugin runs: `native` executes the file; `deno` runs a TypeScript/JavaScript entry with `deno run`. */
export type PluginRuntime = "native" | "deno";

/** How many broker connections each side may open under the sandbox (their socket paths are granted up front). */
export const BROKER_SOCKET_SLOTS = 8;

/** The extensions Deno runs: the one list every layer (PluginClient, the SFTPGo config and manager) uses. */
export const DENO_EXTENSIONS: readonly string[] = ["ts", "tsx", "mts", "cts", "js", "mjs", "cjs", "jsx"];

const DENO_EXTENSION = new RegExp(`\\.(${DENO_EXTENSIONS.join("|")})$`, "i");

/**
 * The runtime for a plugin file: `deno` for TypeScript/JavaScript entries
 * (`.ts .tsx .mts .cts .js .mjs .cjs .jsx`, any case), else `native`; an
 * explicit `native`/`deno` wins. The one place this is decided.
 *
 * @example
 * ```ts
 * import { runtimeFor } from "./launch.ts";
 * console.log(runtimeFor("plugins/auth.ts")); // "deno"
 * console.log(runtimeFor("/usr/local/bin/sftpgo-plugin-auth")); // "native"
 * console.log(runtimeFor("plugins/auth.ts", "native")); // "native"
 * ```
 */
export function runtimeFor(path: string, explicit?: PluginRuntime | "auto"): PluginRuntime {
  if (explicit && explicit !== "auto") return explicit;
  return DENO_EXTENSION.test(path) ? "deno" : "native";
}

/** What {@linkcode prepareLaunch} needs. */
export interface LaunchOptions {
  readonly name: string;
  readonly cmd: string;
  readonly args: readonly string[];
  readonly runtime?: PluginRuntime | "auto";
  readonly sha256?: string;
  readonly permissions?: DenoPermissions;
  readonly denyPermissions?: DenoPermissions;
  readonly allowBroadPermissions?: boolean;
  readonly denoConfig?: string;
  readonly integrityDir?: string;
  readonly privateDirBase?: string;
  /**
   * The plugin's working directory (relative entries are resolved against it). Without it a `deno` plugin
   * starts in its own tree (nothing of the host's working directory shows); a native plugin in the host's.
   */
  readonly cwd?: string;
  /**
   * The socket path a host assigned (`TETHER_PLUGIN_SOCKET`: a packed plugin run by a Tether host, which
   * accepts no other address); default `<privateDir>/plugin.sock`. Its directory holds the broker sockets
   * too and is bound into the namespace.
   */
  readonly socketPath?: string;
  readonly uid?: number;
  readonly gid?: number;
  readonly cookieKey: string;
  readonly logger: Logger;
  readonly onPermissionEvent?: (event: PermissionEvent) => void;
  /** The environment configured for the plugin (checked: it may not carry variables that move a decision). */
  readonly env?: Readonly<Record<string, string>>;
  /** OS layer for a `deno` plugin (default `auto`). */
  readonly isolation?: Isolation;
  /** Memory limits of a `deno` plugin. */
  readonly limits?: ResourceLimits;
  /** Deno's memory trim of an idle `deno` plugin (default on; see `memory_trim.ts`). */
  readonly memoryTrim?: MemoryTrimOption;
  /**
   * Kill the plugin when its audit file holds a malformed line (default: report only). A socket path used as
   * anything but a socket always kills it.
   */
  readonly killOnAuditTamper?: boolean;
  /** Remove the launch's files on SIGTERM, SIGINT and SIGHUP before the host ends (default true). */
  readonly handleSignals?: boolean;
}

/** A launch ready to spawn. */
export interface PreparedLaunch {
  readonly runtime: PluginRuntime;
  /** The executable to spawn (the verified copy, Deno, or the prlimit/bwrap wrapper around Deno). */
  readonly cmd: string;
  /** Its arguments (for Deno: flags, the entry as an absolute path, then the plugin's args). */
  readonly args: string[];
  /** Variables to add to the plugin's environment. */
  readonly env: Record<string, string>;
  /** The working directory to spawn it in (`undefined`: the host's, for a native plugin without `cwd`). */
  readonly cwd?: string;
  /** The launch's private directory. */
  readonly privateDir: string;
  /** The exact socket path a Tether plugin listens on. */
  readonly socketPath: string;
  /** The OS layer a `deno` plugin got (`undefined` for native plugins). */
  readonly isolation?: "namespaces" | "deno-only";
  /**
   * The idle trim a `deno` plugin was started for (it has `DENO_USR2_MEMORY_TRIM=1`), with the executables
   * between the spawned process and Deno that fork (bubblewrap); `undefined`: never signal it.
   */
  readonly memoryTrim?: MemoryTrim & { readonly wrappers: readonly string[] };
  /** The socket path for the host's broker listener with this id. */
  hostBrokerSocket(id: number): string;
  /**
   * Starts following the plugin's permission audit and socket paths once it
   * is spawned; `kill` is called on tampering when `killOnAuditTamper` is set.
   */
  watch(kill: () => void): void;
  /** A `resource_limit` error when the plugin's death points to one of its memory limits, else `undefined`. */
  exitReason(stderrTail: readonly string[]): TetherError | undefined;
  /** Stops watching, removes the private directory, its owner marker and the launch's storage origin. */
  cleanup(): Promise<void>;
  /** Removes the private directory and its owner marker at once, synchronously (the host is going away). */
  removeNow(): void;
  /**
   * The caller now tracks the launch (its files and its process) for the host's end: the launch stops doing
   * it itself, so a signal does not remove the files while the caller is still stopping the plugin gracefully.
   */
  handOff(): void;
}

/** Socket path of a host-side broker listener in a launch's private directory. */
export function hostBrokerSocket(privateDir: string, id: number): string {
  return `${privateDir}/h-broker-${id}.sock`;
}

function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

function absolute(path: string, base: string): string {
  if (path.startsWith("/")) return path;
  if (path.startsWith("file:")) return decodeURIComponent(new URL(path).pathname);
  return `${base.replace(/\/$/, "")}/${path}`;
}

/**
 * Why a `deno` plugin's configured environment may not carry the variable
 * `name`, or `undefined` when it may. These variables change what the runtime
 * loads or how it decides, before or beside Deno's permission flags: the
 * dynamic loader's (`LD_*`, `DYLD_*`, `GLIBC_TUNABLES`: native code in the
 * plugin's process before any sandbox), Deno's own (`DENO_*`: V8 flags, TLS
 * trust, config discovery, a permission broker, the audit file, the module
 * cache; Tether sets the ones it needs per launch) and Node's (`NODE_OPTIONS`,
 * `NODE_PATH`, TLS trust), plus the npm registry the module cache is keyed
 * by. The one rule every layer (prepareLaunch, the SFTPGo config) asks.
 *
 * @example
 * ```ts
 * import { refusedDenoEnv } from "./launch.ts";
 * console.log(refusedDenoEnv("LD_PRELOAD") !== undefined); // true
 * console.log(refusedDenoEnv("API_TOKEN")); // undefined
 * ```
 */
export function refusedDenoEnv(name: string): string | undefined {
  const upper = name.toUpperCase();
  if (upper === "DENO_PERMISSION_BROKER_PATH") {
    return "a permission broker would replace Deno's flags as the decision, on a connection the plugin holds";
  }
  if (upper === "DENO_AUDIT_PERMISSIONS") return "Tether sets it for each launch";
  if (upper.startsWith("LD_") || upper.startsWith("DYLD_") || upper === "GLIBC_TUNABLES") {
    return "it makes the dynamic loader run or change native code in the plugin's process before Deno's " +
      "sandbox starts";
  }
  if (upper.startsWith("DENO_")) {
    return "it changes how the Deno runtime loads or decides (V8 flags, TLS trust, config discovery, the " +
      "module cache); Tether sets the DENO_ variables a plugin gets";
  }
  if (NODE_CONTROL.has(upper)) return "it changes what the runtime loads or which TLS peers it trusts";
  return undefined;
}

const NODE_CONTROL = new Set([
  "NODE_OPTIONS",
  "NODE_PATH",
  "NODE_EXTRA_CA_CERTS",
  "NODE_TLS_REJECT_UNAUTHORIZED",
  "NODE_COMPILE_CACHE",
  "NPM_CONFIG_REGISTRY",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
]);

/**
 * Refuses a `deno` plugin's configured environment if it carries a variable
 * {@linkcode refusedDenoEnv} names.
 *
 * @throws {TetherError} `config` naming the plugin and the variable.
 *
 * @example
 * ```ts
 * import { checkDenoEnv } from "./launch.ts";
 * checkDenoEnv("kv", { API_TOKEN: "x" }); // fine
 * ```
 */
export function checkDenoEnv(plugin: string, env: Readonly<Record<string, string>> | undefined): void {
  for (const name of Object.keys(env ?? {})) {
    const why = refusedDenoEnv(name);
    if (why) {
      throw new TetherError(
        "config",
        `plugin ${plugin}: env.${name} is not allowed for a deno plugin: ${why}. Remove it from the plugin's ` +
          "env (or env_vars/env_prefix in an SFTPGo config)",
        { plugin },
      );
    }
  }
}

let denoDirOnce: Promise<string | undefined> | undefined;
let saidSharedStorage = false;

/** The Deno cache directory the plugin uses (the host's), from `deno info --json`. */
function denoDir(): Promise<string | undefined> {
  denoDirOnce ??= new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "null",
  }).output().then((out) =>
    out.success ? JSON.parse(new TextDecoder().decode(out.stdout)).denoDir : undefined
  )
    .catch(() => undefined);
  return denoDirOnce;
}

/**
 * A DENO_DIR of the launch's own, inside its private directory (so removed
 * with it): the module cache's directories are links to the host's cache,
 * everything else is the launch's. Deno keeps localStorage and CacheStorage
 * under `<DENO_DIR>/location_data` (`<sha256(origin)>/` and
 * `web_cache/<sha256(origin)>/`) and has no other setting that moves them, so
 * this is how nothing a deno-only launch stores outlives it. The cache's
 * SQLite files (code cache, analysis caches) are not linked: a launch starts
 * them fresh rather than sharing a database (and its -wal) with the host.
 */
function launchDenoDir(privateDir: string, cache: string, uid?: number, gid?: number): string {
  const own = `${privateDir}/deno-dir`;
  Deno.mkdirSync(own, { mode: 0o700 });
  for (const entry of Deno.readDirSync(cache)) {
    if (entry.isDirectory && entry.name !== "location_data") {
      Deno.symlinkSync(`${cache}/${entry.name}`, `${own}/${entry.name}`);
    }
  }
  if (uid !== undefined || gid !== undefined) Deno.chownSync(own, uid ?? null, gid ?? null);
  return own;
}

/**
 * Creates a launch's private directory (0700) in `base` (default: the system
 * temp dir) with its owner marker written first (`makeMarkedDir`, see
 * `stale.ts`), synchronously: whatever ends the host from then on (SIGKILL
 * while verifying or checking the module graph, or between the two steps),
 * the next host's sweep removes what it left.
 */
function makePrivateDir(base: string | undefined, plugin: string, uid: number | undefined): string {
  try {
    return makeMarkedDir(base, { dirUid: uid });
  } catch (cause) {
    throw permissionOr(
      cause,
      `plugin ${plugin}: cannot create its private directory and owner marker`,
      deniedFlag(cause, base),
    );
  }
}

/** Removes a private directory and then its owner marker, synchronously. */
function removePrivateDirNow(privateDir: string): void {
  try {
    Deno.removeSync(privateDir, { recursive: true });
  } catch {
    // Already gone.
  }
  removeOwnerMarker(privateDir);
}

/**
 * Prepares a launch: private directory, verified copy, module graph check,
 * permission flags, audit file and the OS layer. Call `cleanup()` once the
 * process has exited.
 */
export async function prepareLaunch(options: LaunchOptions): Promise<PreparedLaunch> {
  const runtime = runtimeFor(options.cmd, options.runtime);
  if (runtime === "deno" && (options.uid !== undefined || options.gid !== undefined)) {
    options.logger.log({
      level: "warn",
      message: "uid/gid apply to the Deno process of a TypeScript plugin too",
      fields: { plugin: options.name },
    });
  }
  // Decided before anything is created, so a bad option leaves nothing behind.
  if (runtime === "deno") checkDenoEnv(options.name, options.env);
  const limits = runtime === "deno" ? resolveLimits(options.limits, options.name) : undefined;
  const trim = resolveMemoryTrim(options.memoryTrim, runtime, options.name);
  const bwrap = runtime === "deno"
    ? await resolveIsolation(options.isolation, options.name, options.logger)
    : undefined;
  // Synchronous, so the directory exists only once this code holds its path and can track it (below), and
  // has its owner marker before anything else happens: a host killed at any later point leaves it to the sweep.
  const privateDir = makePrivateDir(options.privateDirBase, options.name, options.uid);
  const base = privateDir.replace(/\/[^/]+$/, "");
  let audit: AuditReader | undefined;
  let socketTimer: ReturnType<typeof setInterval> | undefined;
  let cache: string | undefined;
  // A deno-only launch's storage in the shared DENO_DIR, when it could not have a DENO_DIR of its own.
  let sharedStorage: string[] = [];
  let stopWatching = () => {};
  // The launch's files go with the host from the moment they exist, whatever ends it (before the client
  // tracks the process, the launch may still be checking the module graph or verifying the plugin).
  const release = track({
    kill: () => cleanup(),
    killNow: () => removePrivateDirNow(privateDir),
    onSignals: options.handleSignals ?? true,
  });
  const cleanup = async () => {
    release();
    stopWatching();
    await audit?.stop();
    await Deno.remove(privateDir, { recursive: true }).catch(() => {});
    removeOwnerMarker(privateDir);
    for (const path of sharedStorage) await Deno.remove(path, { recursive: true }).catch(() => {});
  };
  try {
    // Directories of hosts that died without running code (SIGKILL), once per base directory per host.
    const removed = await sweepStaleDirs(base);
    if (removed.length > 0) {
      options.logger.log({
        level: "info",
        message: "removed private directories of hosts that died",
        fields: { plugin: options.name, removed },
      });
    }
    if (options.uid !== undefined || options.gid !== undefined) {
      // The plugin creates its sockets here.
      await Deno.chown(privateDir, options.uid ?? null, options.gid ?? null);
    }
    const socketPath = options.socketPath ?? `${privateDir}/plugin.sock`;
    const socketDir = dirname(socketPath);
    let target = options.cmd;
    if (options.sha256) {
      const dir = options.integrityDir ?? `${privateDir}/verified`;
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      const base = options.cmd.split("/").pop() || "plugin";
      const copy = await verifyIntoPrivateCopy(
        options.cmd,
        options.sha256,
        options.integrityDir ? `${dir}/${options.name.replace(/[^\w.-]/g, "_")}-${base}` : `${dir}/${base}`,
        runtime === "native" ? 0o500 : 0o400,
        options.name,
      );
      if (options.uid !== undefined || options.gid !== undefined) {
        await Deno.chown(dir, options.uid ?? null, options.gid ?? null);
        await Deno.chown(copy.path, options.uid ?? null, options.gid ?? null);
      }
      target = copy.path;
      options.logger.log({
        level: "debug",
        message: "plugin verified",
        fields: { plugin: options.name, sha256: copy.sha256, bytes: copy.size, runs: copy.path },
      });
    }

    if (runtime === "native") {
      return {
        runtime,
        cmd: target,
        args: [...options.args],
        env: { [PluginEnv.unixSocketDir]: socketDir, [PluginEnv.tetherSocketPath]: socketPath },
        cwd: options.cwd,
        privateDir,
        socketPath,
        hostBrokerSocket: (id) => hostBrokerSocket(privateDir, id),
        watch: () => {},
        exitReason: () => undefined,
        cleanup,
        removeNow: () => removePrivateDirNow(privateDir),
        handOff: release,
      };
    }

    const hostDir = options.cwd ?? Deno.cwd();
    // An absolute entry can never be read as one of deno's own flags (a cmd of `--inspect=...`).
    const entry = absolute(target, hostDir);
    const denoConfig = options.denoConfig ? absolute(options.denoConfig, hostDir) : undefined;
    const sockets = [socketPath];
    for (let id = 1; id <= BROKER_SOCKET_SLOTS; id++) {
      sockets.push(pluginBrokerSocket(socketPath, id), hostBrokerSocket(socketDir, id));
    }
    const policy = new PermissionPolicy({
      grants: options.permissions,
      deny: options.denyPermissions,
      allowBroadPermissions: options.allowBroadPermissions,
      protocol: { env: protocolEnv(options.cookieKey), sockets },
      source: `plugin ${options.name} permissions`,
    });
    if (policy.broad.length > 0) {
      options.logger.log({
        level: "warn",
        message: "plugin has broad permissions that escape the sandbox",
        fields: { plugin: options.name, grants: policy.broad },
      });
    }
    const modules = moduleFlags({ plugin: options.name, bundled: options.sha256 !== undefined, denoConfig });
    const tree = options.sha256 ? entry : denoConfig ? dirname(denoConfig) : dirname(entry);
    // Without a cwd from the host, the plugin starts in its own tree: a path it knows from import.meta.url
    // anyway, where Deno.cwd() (which needs no permission) would otherwise name the host's directory.
    const cwd = options.cwd ? absolute(options.cwd, Deno.cwd()) : options.sha256 ? dirname(entry) : tree;
    const readGrants = policy.readPaths;
    await checkModuleGraph({
      plugin: options.name,
      entry,
      moduleFlags: modules,
      allowed: [tree, ...readGrants],
      singleFile: options.sha256 !== undefined,
      cwd,
    });

    // What the namespace binds, named by config field. Every mode refuses a grant the host cannot follow to its
    // end, one into /proc, /sys or /dev, one into the host's private directories; namespaces also check what
    // each grant binds (grantBinds, which bwrapArgs calls again for the command) before anything starts.
    const all = options.permissions?.all === true;
    const grantPaths = (paths: readonly string[], kind: "read" | "write"): BindPath[] =>
      paths.map((path, index) =>
        all
          ? { path, field: "permissions.all", grant: false }
          : { path, field: `permissions.${kind}[${index}]` }
      );
    const readBinds: BindPath[] = [
      { path: tree, field: "the plugin's tree", grant: false },
      ...grantPaths(readGrants, "read"),
      ...(options.integrityDir && options.sha256
        ? [{ path: entry, field: "the verified entry", grant: false }]
        : []),
    ];
    const writeBinds: BindPath[] = [
      ...grantPaths(policy.writePaths, "write"),
      ...(socketDir === privateDir ? [] : [{ path: socketDir, field: "the socket directory", grant: false }]),
    ];
    if (bwrap) {
      grantBinds({ plugin: options.name, privateDir, readOnly: readBinds, readWrite: writeBinds });
    } else {
      for (const path of readBinds) checkGrantPath(options.name, path, privateDir, false);
      for (const path of writeBinds) checkGrantPath(options.name, path, privateDir, true);
    }

    cache = await denoDir();
    if (!bwrap) {
      // Without namespaces Deno's path grants are the only wall, and they do not resolve symlinks.
      await checkGrantLinks({
        plugin: options.name,
        read: readGrants,
        write: policy.writePaths,
      });
    }
    if (!bwrap && denoConfig && !options.sha256) {
      // npm packages of a manual node_modules/ load by where their links lead, outside the graph check's view
      // for CommonJS require(): each must lead into the tree, the read grants or the Deno cache. (In
      // namespaces a target elsewhere is not mounted.)
      await checkGrantLinks({
        plugin: options.name,
        read: [`${tree}/node_modules`],
        write: [],
        label: "npm packages directory",
        also: [tree, ...readGrants, ...(cache ? [cache] : [])],
      });
    }

    const auditPath = `${privateDir}/permission-audit.jsonl`;
    await Deno.writeFile(auditPath, new Uint8Array(), { mode: 0o600, createNew: true });
    if (options.uid !== undefined || options.gid !== undefined) {
      await Deno.chown(auditPath, options.uid ?? null, options.gid ?? null);
    }
    let killPlugin: (() => void) | undefined;
    let auditFlood: number | undefined;
    const onTamper = (tamper: AuditTamper) => {
      options.logger.log({
        level: "error",
        message: options.killOnAuditTamper
          ? "plugin tampered with its permission audit; killing it"
          : "plugin tampered with its permission audit",
        fields: {
          plugin: tamper.plugin,
          reason: tamper.reason,
          excerpt: tamper.excerpt,
          count: tamper.count,
        },
      });
      if (options.killOnAuditTamper) killPlugin?.();
    };
    const report = options.onPermissionEvent;
    audit = new AuditReader({
      path: auditPath,
      policy,
      plugin: options.name,
      onTamper,
      // More unread audit than the host can follow: end the plugin rather than run blind (or fill the disk).
      onFlood: (held) => {
        auditFlood = held;
        options.logger.log({
          level: "error",
          message: "plugin floods its permission audit faster than the host can read it; killing it",
          fields: { plugin: options.name, held, limit: AUDIT_MAX_BACKLOG_BYTES },
        });
        killPlugin?.();
      },
      onEvent: (event) => {
        options.logger.log({
          level: "warn",
          message: event.unresolved === undefined
            ? "plugin permission denied"
            : "plugin permission check on a path the host cannot resolve (labelled not allowed)",
          fields: {
            plugin: event.plugin,
            permission: event.permission,
            target: event.target,
            source: event.source,
            ...(event.unresolved === undefined ? {} : { unresolved: event.unresolved }),
          },
        });
        report?.(event);
      },
    });
    // Deno's --allow-write=<socket> also covers everything below that path: a plugin could make a directory
    // there and fill it. Nothing in Deno 2.9.6 grants one exact path, so the host watches the directory and
    // treats anything but a socket at a socket path as tampering: removed, reported, and the plugin killed.
    let socketTampers = 0;
    const checkSockets = () => {
      for (const path of sockets) {
        let info: Deno.FileInfo;
        try {
          info = Deno.lstatSync(path);
        } catch {
          continue;
        }
        if (!info.isDirectory && !info.isFile && !info.isSymlink) continue;
        socketTampers++;
        options.logger.log({
          level: "error",
          message: "plugin misused a socket path it was granted; killing it",
          fields: {
            plugin: options.name,
            path,
            found: info.isDirectory ? "directory" : info.isFile ? "file" : "symlink",
            count: socketTampers,
          },
        });
        killPlugin?.();
        try {
          Deno.removeSync(path, { recursive: true });
        } catch {
          // Gone already, or still being written: the next check tries again.
        }
      }
    };
    let watcher: Deno.FsWatcher | undefined;
    stopWatching = () => {
      clearInterval(socketTimer);
      try {
        watcher?.close();
      } catch {
        // Closed already.
      }
    };
    const watchSockets = () => {
      try {
        watcher = Deno.watchFs(privateDir, { recursive: false });
        (async () => {
          // The audit file in this directory changes on every permission check: only socket paths matter.
          const watched = new Set(sockets);
          for await (const event of watcher!) {
            if (event.paths.some((path) => watched.has(path))) checkSockets();
          }
        })().catch(() => {});
      } catch {
        // No inotify for the host: the timer below still checks.
      }
      socketTimer = setInterval(checkSockets, 200);
    };

    const origin = `http://tether-${crypto.randomUUID()}.invalid`;
    const denoArgs = [
      "run",
      ...modules,
      "--cached-only",
      ...policy.flags(),
      // A fresh origin per launch: localStorage, CacheStorage and KV are never shared with the host,
      // other plugins or earlier launches.
      `--location=${origin}/`,
      v8Flags(limits!),
      entry,
      ...options.args,
    ];
    let command = [Deno.execPath(), ...denoArgs];
    if (bwrap) {
      command = [
        bwrap,
        ...bwrapArgs({
          plugin: options.name,
          bwrap,
          deno: Deno.execPath(),
          denoDir: cache,
          privateDir,
          readOnly: readBinds,
          readWrite: writeBinds,
          shareNet: policy.needsNetwork,
          cwd,
        }, command),
      ];
    }
    if (limits!.dataMiB > 0) {
      const prlimit = findPrlimit();
      if (!prlimit) {
        throw new TetherError(
          "config",
          `plugin ${options.name}: limits.dataMiB needs prlimit (util-linux), which is not installed; install it ` +
            "or set limits.dataMiB: 0 to run without a data limit",
          { plugin: options.name },
        );
      }
      const bytes = limits!.dataMiB * 1024 * 1024;
      command = [prlimit, `--data=${bytes}:${bytes}`, "--", ...command];
    }
    const env: Record<string, string> = {
      [PluginEnv.unixSocketDir]: socketDir,
      [PluginEnv.tetherSocketPath]: socketPath,
      DENO_AUDIT_PERMISSIONS: auditPath,
      DENO_NO_UPDATE_CHECK: "1",
      NO_COLOR: "1",
    };
    const trimmed = trim && trimmable(options.name, options.logger)
      ? { ...trim, wrappers: bwrap ? [bwrap] : [] }
      : undefined;
    // The host's decision, never the configured env's (refusedDenoEnv): the handler it installs is what makes
    // the trimmer's SIGUSR2 safe.
    if (trimmed) env[MEMORY_TRIM_ENV] = "1";
    if (cache && bwrap) env.DENO_DIR = cache;
    if (cache && !bwrap) {
      try {
        env.DENO_DIR = launchDenoDir(privateDir, cache, options.uid, options.gid);
      } catch (error) {
        // Linking needs unscoped --allow-read and --allow-write in the host (Deno's rule for symlinks). Without
        // them the launch uses the shared DENO_DIR and its storage there is removed afterwards: both places
        // Deno 2.9.6 keeps an origin's storage, named by sha256(origin).
        if (!(error instanceof Deno.errors.NotCapable)) throw error;
        env.DENO_DIR = cache;
        const hash = await sha256Hex(new TextEncoder().encode(origin));
        sharedStorage = [`${cache}/location_data/${hash}`, `${cache}/location_data/web_cache/${hash}`];
        if (!saidSharedStorage) {
          saidSharedStorage = true;
          options.logger.log({
            level: "warn",
            message:
              "deno-only plugins share the host's DENO_DIR for storage (removed after each launch, which " +
              "needs --allow-write to it; a host killed with SIGKILL leaves it): run the host with unscoped " +
              "--allow-read and --allow-write to give each launch a DENO_DIR of its own",
            fields: { plugin: options.name, denoDir: cache, reason: String(error) },
          });
        }
      }
    }
    return {
      runtime,
      cmd: command[0],
      args: command.slice(1),
      env,
      cwd,
      privateDir,
      socketPath,
      isolation: bwrap ? "namespaces" : "deno-only",
      memoryTrim: trimmed,
      hostBrokerSocket: (id) => hostBrokerSocket(privateDir, id),
      watch: (kill) => {
        killPlugin = kill;
        audit?.start();
        watchSockets();
      },
      exitReason: (tail) => {
        if (auditFlood !== undefined) {
          return new TetherError(
            "resource_limit",
            `plugin ${options.name} was stopped: it made permission checks faster than the host could read ` +
              `their audit (${auditFlood} bytes not caught up with, limit ${AUDIT_MAX_BACKLOG_BYTES}), and the host does not ` +
              "run a plugin it cannot follow; find the loop that checks permissions (each file, env or net " +
              "access is one check)",
            { plugin: options.name },
          );
        }
        const limit = limitFromExit(tail, limits!);
        if (!limit) return undefined;
        const what = limit === "heap"
          ? `its V8 heap limit (limits.heapMiB = ${limits!.heapMiB} MiB)`
          : `its memory limit (limits.dataMiB = ${limits!.dataMiB} MiB, RLIMIT_DATA)`;
        return new TetherError(
          "resource_limit",
          `plugin ${options.name} ran out of memory: it reached ${what}; raise the limit if the plugin really ` +
            "needs more",
          { plugin: options.name },
        );
      },
      cleanup,
      removeNow: () => removePrivateDirNow(privateDir),
      handOff: release,
    };
  } catch (error) {
    await cleanup();
    // A permission the host lacks (reading the plugin, writing the private dir, running `deno info`): name the flag.
    throw permissionOr(
      error,
      `plugin ${options.name}: cannot prepare its launch`,
      deniedFlag(error, base, options.integrityDir),
    );
  }
}

let saidNoTrim = false;

/** Whether this host can trim its idle deno plugins; if not, says why once (the plugin runs untrimmed). */
function trimmable(plugin: string, logger: Logger): boolean {
  const why = trimUnavailable();
  if (why === undefined) return true;
  if (!saidNoTrim) {
    saidNoTrim = true;
    logger.log({
      level: "warn",
      message: `deno plugins are not trimmed when idle (Deno's DENO_USR2_MEMORY_TRIM): ${why}; they run as ` +
        "before, keeping the memory they grew (set memoryTrim: false to say so explicitly)",
      fields: { plugin },
    });
  }
  return false;
}

/** The flag to add for unix sockets, which Deno cannot grant by directory yet. */
export const UNIX_NET_FLAG = "--allow-net (socket names change with each launch and Deno has no directory " +
  "grants for unix sockets yet: denoland/deno#36762)";

/**
 * The `--allow-*` flag a Deno permission error asks for. Paths under one of
 * `dirs` (a launch's private directory base or `integrityDir`, whose entries
 * change per launch) are granted as that directory; unix sockets need
 * {@linkcode UNIX_NET_FLAG}.
 */
export function deniedFlag(cause: unknown, ...dirs: (string | undefined)[]): string {
  const match = /requires (\w+) access to "([^"]*)"/i.exec(String(cause));
  if (!match) return "the permission named above";
  const kind = match[1].toLowerCase();
  const value = match[2];
  if (kind === "net" && value.startsWith("unix:")) return UNIX_NET_FLAG;
  if (kind === "write" && Deno.permissions.querySync({ name: "run", command: value }).state === "granted") {
    // Deno refuses to write a file that --allow-run names (so an allowed program cannot be replaced).
    return `--allow-run (unscoped) instead of --allow-run=${value}: Deno never lets a host write a file it may run`;
  }
  const dir = dirs.find((dir) => dir && value.startsWith(`${dir}/`));
  if ((kind === "read" || kind === "write") && dir) return `--allow-${kind}=${dir}`;
  return `--allow-${kind}=${value}`;
}

/** Maps a Deno permission error to a `permission` TetherError naming the flag to add. */
export function permissionOr(cause: unknown, what: string, flag: string): TetherError {
  if (cause instanceof Deno.errors.NotCapable) {
    return new TetherError("permission", `${what}: ${String(cause)}; run the host with ${flag}`, { cause });
  }
  if (cause instanceof Deno.errors.PermissionDenied) {
    // The operating system refused, not Deno: no flag helps.
    return new TetherError(
      "permission",
      `${what}: ${String(cause)} (refused by the operating system: check file modes, owners and uid/gid)`,
      { cause },
    );
  }
  if (cause instanceof TetherError) return cause;
  return new TetherError("config", `${what}: ${String(cause)}`, { cause });
}
