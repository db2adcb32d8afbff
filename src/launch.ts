/**
 * Turns a plugin's launch options into the exact command Tether runs: a
 * private 0700 directory per launch (sockets, the verified copy, the
 * permission broker socket; removed afterwards), the SHA-256 check over the
 * bytes that run, and for TypeScript plugins a `deno run` with deny-by-default
 * permissions answered by Tether's permission broker.
 *
 * @module
 */

import { PermissionBrokerServer, type PermissionEvent } from "./audit.ts";
import { pluginBrokerSocket } from "./broker.ts";
import { TetherError } from "./errors.ts";
import { PluginEnv } from "./handshake.ts";
import { verifyIntoPrivateCopy } from "./integrity.ts";
import type { Logger } from "./logs.ts";
import { type DenoPermissions, PermissionPolicy } from "./permissions.ts";

/** How a plugin runs: `native` executes the file; `deno` runs a TypeScript/JavaScript entry with `deno run`. */
export type PluginRuntime = "native" | "deno";

/** How many broker connections each side may open under the sandbox (their socket paths are granted up front). */
export const BROKER_SOCKET_SLOTS = 8;

const DENO_EXTENSIONS = /\.(ts|tsx|mts|cts|js|mjs|cjs|jsx)$/i;

/**
 * The runtime for a plugin file: `deno` for TypeScript/JavaScript entries, else `native`.
 *
 * @example
 * ```ts
 * import { runtimeFor } from "./launch.ts";
 * console.log(runtimeFor("plugins/auth.ts")); // "deno"
 * console.log(runtimeFor("/usr/local/bin/sftpgo-plugin-auth")); // "native"
 * ```
 */
export function runtimeFor(path: string, explicit?: PluginRuntime | "auto"): PluginRuntime {
  if (explicit && explicit !== "auto") return explicit;
  return DENO_EXTENSIONS.test(path) ? "deno" : "native";
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
  readonly uid?: number;
  readonly gid?: number;
  readonly cookieKey: string;
  readonly logger: Logger;
  readonly onPermissionEvent?: (event: PermissionEvent) => void;
}

/** A launch ready to spawn. */
export interface PreparedLaunch {
  readonly runtime: PluginRuntime;
  /** The executable to spawn (the verified copy, or Deno). */
  readonly cmd: string;
  /** Its arguments (for Deno: flags, the entry, then the plugin's args). */
  readonly args: string[];
  /** Variables to add to the plugin's environment. */
  readonly env: Record<string, string>;
  /** The launch's private directory. */
  readonly privateDir: string;
  /** The exact socket path a Tether plugin listens on. */
  readonly socketPath: string;
  /** The socket path for the host's broker listener with this id. */
  hostBrokerSocket(id: number): string;
  /** Removes the private directory and stops the permission broker. */
  cleanup(): Promise<void>;
}

function protocolEnv(cookieKey: string): string[] {
  return [
    cookieKey,
    PluginEnv.minPort,
    PluginEnv.maxPort,
    PluginEnv.protocolVersions,
    PluginEnv.clientCert,
    PluginEnv.multiplexGrpc,
    PluginEnv.unixSocketDir,
    PluginEnv.unixSocketGroup,
    PluginEnv.tetherSocketPath,
  ];
}

/** Socket path of a host-side broker listener in a launch's private directory. */
export function hostBrokerSocket(privateDir: string, id: number): string {
  return `${privateDir}/h-broker-${id}.sock`;
}

async function assertSingleModule(entry: string, name: string): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--no-config", "--no-npm", "--no-remote", entry],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new TetherError(
      "config",
      `plugin ${name}: cannot analyse ${entry}: ${new TextDecoder().decode(out.stderr).trim()}`,
      { plugin: name },
    );
  }
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules?: { specifier: string }[] };
  const code = (info.modules ?? []).map((m) => m.specifier).filter((s) => !s.startsWith("node:"));
  if (code.length !== 1) {
    throw new TetherError(
      "config",
      `plugin ${name}: with sha256, a deno plugin must be ONE bundled file so the digest covers all code that ` +
        `runs, but it imports ${code.length - 1} other module(s) (e.g. ${code[1]}). ` +
        "Bundle it first: deno bundle --config deno.json plugin.ts -o plugin.bundle.js",
      { plugin: name },
    );
  }
}

/**
 * Prepares a launch: private directory, verified copy, permission flags and
 * broker. Call `cleanup()` once the process has exited.
 */
export async function prepareLaunch(options: LaunchOptions): Promise<PreparedLaunch> {
  const runtime = runtimeFor(options.cmd, options.runtime);
  if (runtime === "deno" && (options.uid !== undefined || options.gid !== undefined)) {
    // Deno's sandbox is the boundary for these; a uid change is for native plugins.
    options.logger.log({
      level: "warn",
      message: "uid/gid apply to the Deno process of a TypeScript plugin too",
      fields: { plugin: options.name },
    });
  }
  let privateDir: string;
  try {
    privateDir = await Deno.makeTempDir({ dir: options.privateDirBase, prefix: "tether-" });
  } catch (cause) {
    throw permissionOr(
      cause,
      `plugin ${options.name}: cannot create its private directory`,
      deniedFlag(cause),
    );
  }
  const base = privateDir.replace(/\/[^/]+$/, "");
  let broker: PermissionBrokerServer | undefined;
  const cleanup = async () => {
    await broker?.close();
    await Deno.remove(privateDir, { recursive: true }).catch(() => {});
  };
  try {
    if (options.uid !== undefined || options.gid !== undefined) {
      // The plugin creates its sockets here.
      await Deno.chown(privateDir, options.uid ?? null, options.gid ?? null);
    }
    const socketPath = `${privateDir}/plugin.sock`;
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
        env: { [PluginEnv.unixSocketDir]: privateDir, [PluginEnv.tetherSocketPath]: socketPath },
        privateDir,
        socketPath,
        hostBrokerSocket: (id) => hostBrokerSocket(privateDir, id),
        cleanup,
      };
    }

    if (options.sha256) await assertSingleModule(target, options.name);
    const sockets = [socketPath];
    for (let id = 1; id <= BROKER_SOCKET_SLOTS; id++) {
      sockets.push(pluginBrokerSocket(socketPath, id), hostBrokerSocket(privateDir, id));
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
    const brokerPath = `${privateDir}/permissions.sock`;
    const report = options.onPermissionEvent;
    broker = new PermissionBrokerServer(brokerPath, policy, options.name, (event) => {
      options.logger.log({
        level: "warn",
        message: "plugin permission denied",
        fields: { plugin: event.plugin, permission: event.permission, target: event.target },
      });
      report?.(event);
    });
    const moduleFlags = options.sha256
      ? ["--no-config", "--no-npm", "--no-lock"]
      : options.denoConfig
      ? ["--config", options.denoConfig, "--cached-only"]
      : ["--cached-only"];
    const args = ["run", ...moduleFlags, ...policy.flags(), target, ...options.args];
    return {
      runtime,
      cmd: Deno.execPath(),
      args,
      env: {
        [PluginEnv.unixSocketDir]: privateDir,
        [PluginEnv.tetherSocketPath]: socketPath,
        DENO_PERMISSION_BROKER_PATH: brokerPath,
        DENO_NO_UPDATE_CHECK: "1",
        NO_COLOR: "1",
      },
      privateDir,
      socketPath,
      hostBrokerSocket: (id) => hostBrokerSocket(privateDir, id),
      cleanup,
    };
  } catch (error) {
    await cleanup();
    // A permission the host lacks (reading the plugin, the broker socket, running `deno info`): name the flag.
    throw permissionOr(
      error,
      `plugin ${options.name}: cannot prepare its launch`,
      deniedFlag(error, base, options.integrityDir),
    );
  }
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
