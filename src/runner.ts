/**
 * Launching a plugin, apart from talking to it: a {@linkcode PluginRunner}
 * turns the protocol variables a host hands it into a running process whose
 * stdout carries the handshake line. {@linkcode ProcessRunner} is Tether's
 * own (command, environment, sandbox, integrity, private directory, dying
 * with the host); a host can plug in its own (a container, a remote
 * machine), as go-plugin's `RunnerFunc` allows. Connecting lives in
 * `connect.ts`.
 *
 * @module
 */

import { TetherError } from "./errors.ts";
import { PluginEnv } from "./handshake.ts";
import { dieWithHost, SETPRIV } from "./lifeline.ts";
import type { PermissionEvent } from "./audit.ts";
import {
  deniedFlag,
  permissionOr,
  type PluginRuntime,
  type PreparedLaunch,
  prepareLaunch,
  refusedDenoEnv,
  runtimeFor,
} from "./launch.ts";
import type { Isolation, ResourceLimits } from "./isolation.ts";
import { type MemoryTrimOption, startMemoryTrimmer } from "./memory_trim.ts";
import type { DenoPermissions } from "./permissions.ts";
import type { Logger } from "./logs.ts";
import { removeSocket } from "./listen.ts";

/**
 * Which environment a plugin starts with: `clean` (default, as SFTPGo): only
 * the configured variables and the protocol's; `inherit` (go-plugin's default,
 * which Terraform relies on): the host's environment first, then the
 * configured variables, then the protocol's, each later one winning.
 */
export type HostEnvMode = "clean" | "inherit";

/** What a host asks a runner for. */
export interface RunRequest {
  /** The plugin's name, for logs and errors. */
  readonly name: string;
  /**
   * The protocol's variables (cookie, `PLUGIN_*`): they must reach the plugin
   * and win over any other variable of the same name.
   */
  readonly protocolEnv: Readonly<Record<string, string>>;
  /** The magic cookie's variable (never passed on from an inherited host environment). */
  readonly cookieKey: string;
  /** Where to log. */
  readonly logger: Logger;
  /**
   * Called as soon as the runner has made files (before any process runs),
   * with a synchronous "kill and remove everything" for a host that ends
   * (`Deno.exit()`, an uncaught error) while the launch is under way.
   */
  readonly onLaunching?: (killNow: () => void) => void;
  /** Whether SIGTERM, SIGINT and SIGHUP remove the launch's files before the host ends (default true). */
  readonly handleSignals?: boolean;
}

/** How a launched process ended, as a runner reports it. */
export interface RunnerExit {
  /** Exit code (128 + signal number when killed by a signal). */
  readonly code: number;
  /** The signal that ended it, if one did. */
  readonly signal: Deno.Signal | null;
}

/** One launched plugin process, as the host's connection code sees it. */
export interface RunningPlugin {
  /** Process id, when there is a local one. */
  readonly pid: number | undefined;
  /** The plugin's stdout: its first line is the handshake. */
  readonly stdout: ReadableStream<Uint8Array>;
  /** The plugin's stderr (its log). */
  readonly stderr: ReadableStream<Uint8Array>;
  /** Resolves when the process has ended. */
  readonly status: Promise<RunnerExit>;
  /**
   * Where the plugin may listen: the handshake address and broker addresses
   * are refused unless they are this socket or directly inside this directory
   * (TCP is added by the host's `allowTcp`).
   */
  readonly pin: { readonly socketPath?: string; readonly socketDir?: string };
  /** A private directory for the host's own broker sockets. */
  readonly brokerDir: string;
  /** The socket path of the host's broker listener with this id, if the runner fixes them. */
  readonly hostBrokerSocket?: (id: number) => string;
  /** Sends a signal to the process (already gone: no error). */
  kill(signal: Deno.Signal): void;
  /** SIGKILL and remove files, synchronously: `Deno.exit()` leaves no time for more. */
  killNow(): void;
  /** Why the process could not even be executed (e.g. by its wrapper), when known. */
  execFailure?(exit: RunnerExit, stderrTail: readonly string[]): TetherError | undefined;
  /** Why the process died, when a limit the runner set explains it. */
  exitReason?(stderrTail: readonly string[]): TetherError | undefined;
  /** Explains an error from connecting (a missing grant for its sockets), or `undefined`. */
  connectError?(cause: unknown, what: string): TetherError | undefined;
  /** Receives permission requests the plugin reports in its log (a sandbox's `onPermissionEvent`). */
  readonly onPermissionEvent?: (event: PermissionEvent) => void;
  /** Removes the runner's files; called once the process has ended. */
  cleanup(): Promise<void>;
}

/**
 * Launches plugin processes. Implement it to run plugins somewhere else (a
 * container, a VM): give it to `PluginClient` as `runner`.
 *
 * @example
 * ```ts ignore
 * import { PluginClient, ProcessRunner } from "@tether/tether";
 * const client = new PluginClient({
 *   handshake: { protocolVersion: 1, magicCookieKey: "K", magicCookieValue: "v" },
 *   runner: new ProcessRunner({ command: { cmd: "./kvplugin", hostEnv: "inherit" } }),
 * });
 * ```
 */
export interface PluginRunner {
  /** Starts the process; on failure it leaves nothing behind. */
  run(request: RunRequest): Promise<RunningPlugin>;
}

/** What to execute. */
export interface CommandOptions {
  /** The executable to run (a path, or a name Deno resolves on PATH). */
  readonly cmd: string;
  /** Its arguments. */
  readonly args?: readonly string[];
  /** Variables for the plugin (see {@linkcode HostEnvMode} for what else it gets). */
  readonly env?: Readonly<Record<string, string>>;
  /** `clean` (default) or `inherit` the host's environment as go-plugin does. */
  readonly hostEnv?: HostEnvMode;
  /** Working directory. */
  readonly cwd?: string;
  /** Run as this user id (needs privileges). */
  readonly uid?: number;
  /** Run as this group id (needs privileges). */
  readonly gid?: number;
  /** `native`, `deno`, or `auto` (by extension). */
  readonly runtime?: PluginRuntime | "auto";
  /** SIGKILL by the kernel when the host dies (setpriv pdeathsig; default `true`, Linux). */
  readonly dieWithHost?: boolean;
}

/** The sandbox of a `deno` plugin. */
export interface SandboxOptions {
  /** What it may do besides speaking the protocol. Default: nothing. */
  readonly permissions?: DenoPermissions;
  /** Explicit denials; they win over grants. */
  readonly denyPermissions?: DenoPermissions;
  /** Opt-in for `run`, `ffi` and `all` grants. */
  readonly allowBroadPermissions?: boolean;
  /** deno.json of an unbundled plugin. */
  readonly denoConfig?: string;
  /** OS layer: `auto`, `namespaces`, `deno-only`. */
  readonly isolation?: Isolation;
  /** Memory limits (MiB). */
  readonly limits?: ResourceLimits;
  /** Deno's memory trim once idle: default on (`idleMs` 2000), `false` off, or `{ idleMs }`. */
  readonly memoryTrim?: MemoryTrimOption;
  /** Kill the plugin when its audit is malformed. */
  readonly killOnAuditTamper?: boolean;
  /** Receives each permission check the policy does not allow. */
  readonly onPermissionEvent?: (event: PermissionEvent) => void;
}

/** Integrity of the executable. */
export interface IntegrityOptions {
  /** Expected SHA-256 (hex) of `cmd`; the verified bytes are what runs. */
  readonly sha256?: string;
  /** Fixed directory for verified copies. */
  readonly integrityDir?: string;
}

/** The launch's private directory (its sockets, the verified copy). */
export interface PrivateDirOptions {
  /** Where it is made (default: the system temp dir). */
  readonly base?: string;
}

/** {@linkcode ProcessRunner}'s options, grouped by concern. */
export interface ProcessRunnerOptions {
  /** What to execute and with which environment. */
  readonly command: CommandOptions;
  /** Sandbox of a `deno` plugin. */
  readonly sandbox?: SandboxOptions;
  /** SHA-256 check of the executable. */
  readonly integrity?: IntegrityOptions;
  /** The private directory. */
  readonly privateDir?: PrivateDirOptions;
}

/** Variables an inherited host environment never passes on: the protocol's, and those that move a sandbox decision. */
function reservedNames(cookieKey: string | undefined): Set<string> {
  return new Set([
    ...Object.values(PluginEnv),
    ...(cookieKey ? [cookieKey] : []),
    "DENO_PERMISSION_BROKER_PATH",
    "DENO_AUDIT_PERMISSIONS",
  ]);
}

/**
 * The plugin's environment, the one place its precedence is decided: in
 * `inherit` mode the host's variables first (minus the protocol's and those
 * that steer a sandbox, which a host's own environment must not pass on by
 * accident), then the configured ones, then the protocol's. In `clean` mode
 * the host's are left out.
 *
 * @example
 * ```ts
 * import { pluginEnv } from "./runner.ts";
 * const env = pluginEnv("clean", { A: "1", PLUGIN_MIN_PORT: "1" }, { PLUGIN_MIN_PORT: "10000" });
 * console.log(env); // { A: "1", PLUGIN_MIN_PORT: "10000" }
 * ```
 *
 * @throws {TetherError} `permission` when `inherit` is asked and the host may not read its environment.
 */
export function pluginEnv(
  mode: HostEnvMode,
  configured: Readonly<Record<string, string>> | undefined,
  protocol: Readonly<Record<string, string>>,
  cookieKey?: string,
  plugin = "plugin",
  runtime: PluginRuntime = "native",
): Record<string, string> {
  const env: Record<string, string> = {};
  if (mode === "inherit") {
    let host: Record<string, string>;
    try {
      host = Deno.env.toObject();
    } catch (cause) {
      throw permissionOr(
        cause,
        `plugin ${plugin}: hostEnv "inherit" needs to read the host's environment`,
        "--allow-env (unscoped: the whole environment is passed on)",
      );
    }
    const reserved = reservedNames(cookieKey);
    for (const [name, value] of Object.entries(host)) {
      // A deno plugin's sandbox rule (refusedDenoEnv) holds for what the host inherits as for what it configures.
      if (!reserved.has(name) && !(runtime === "deno" && refusedDenoEnv(name))) env[name] = value;
    }
  } else if (mode !== "clean") {
    throw new TetherError("config", `plugin ${plugin}: hostEnv must be "clean" or "inherit", got ${mode}`);
  }
  Object.assign(env, configured);
  // A host that does not send a certificate must not leave a configured one either: the plugin would use it.
  delete env[PluginEnv.clientCert];
  delete env[PluginEnv.multiplexGrpc];
  Object.assign(env, protocol);
  return env;
}

/**
 * Tether's runner: a local process, with the private directory, integrity
 * check, Deno sandbox and lifeline described in docs/security.md.
 *
 * @example
 * ```ts ignore
 * import { PluginClient, ProcessRunner } from "@tether/tether";
 * const runner = new ProcessRunner({
 *   command: { cmd: "./plugins/auth.ts" },
 *   sandbox: { permissions: { read: ["./data"] }, isolation: "namespaces" },
 *   integrity: { sha256: "…" },
 * });
 * ```
 */
export class ProcessRunner implements PluginRunner {
  readonly #options: ProcessRunnerOptions;

  /** Describes the launch; nothing runs until the client starts. */
  constructor(options: ProcessRunnerOptions) {
    if (typeof options.command?.cmd !== "string" || options.command.cmd === "") {
      throw new TetherError("config", "ProcessRunner: command.cmd must be a non-empty string");
    }
    this.#options = options;
  }

  /** The command it runs. */
  get cmd(): string {
    return this.#options.command.cmd;
  }

  /** Prepares the launch and spawns the process. */
  async run(request: RunRequest): Promise<RunningPlugin> {
    const { command, sandbox = {}, integrity = {}, privateDir = {} } = this.#options;
    const name = request.name;
    const cookieKey = request.cookieKey;
    const runtime = runtimeFor(command.cmd, command.runtime);
    const env = pluginEnv(
      command.hostEnv ?? "clean",
      command.env,
      request.protocolEnv,
      cookieKey,
      name,
      runtime,
    );
    if (request.protocolEnv[PluginEnv.multiplexGrpc] && runtime === "deno") {
      throw new TetherError(
        "config",
        `plugin ${name}: grpcBrokerMultiplex is not supported for a sandboxed deno plugin (its sandbox grants ` +
          "one socket; multiplexing needs more): run it as a native command or leave multiplexing off",
        { plugin: name },
      );
    }
    const launch = await prepareLaunch({
      name,
      cmd: command.cmd,
      args: command.args ?? [],
      runtime: command.runtime,
      sha256: integrity.sha256,
      permissions: sandbox.permissions,
      denyPermissions: sandbox.denyPermissions,
      allowBroadPermissions: sandbox.allowBroadPermissions,
      denoConfig: sandbox.denoConfig,
      integrityDir: integrity.integrityDir,
      privateDirBase: privateDir.base,
      uid: command.uid,
      gid: command.gid,
      cookieKey,
      logger: request.logger,
      onPermissionEvent: sandbox.onPermissionEvent,
      cwd: command.cwd,
      env: command.env,
      isolation: sandbox.isolation,
      limits: sandbox.limits,
      memoryTrim: sandbox.memoryTrim,
      killOnAuditTamper: sandbox.killOnAuditTamper,
      handleSignals: request.handleSignals,
    });
    const spawned: { child?: Deno.ChildProcess } = {};
    request.onLaunching?.(() => {
      try {
        spawned.child?.kill("SIGKILL");
      } catch {
        // Already gone.
      }
      launch.removeNow();
    });
    launch.handOff();
    try {
      return this.#spawn(request, launch, { ...env, ...launch.env }, spawned);
    } catch (error) {
      await launch.cleanup();
      throw error;
    }
  }

  #spawn(
    request: RunRequest,
    launch: PreparedLaunch,
    env: Record<string, string>,
    spawned: { child?: Deno.ChildProcess },
  ): RunningPlugin {
    const { command } = this.#options;
    const name = request.name;
    const base = launch.privateDir.replace(/\/[^/]+$/, "");
    request.logger.log({
      level: "debug",
      message: "starting plugin",
      fields: {
        plugin: name,
        runtime: launch.runtime,
        path: launch.cmd,
        args: launch.args,
        env: Object.keys(env),
        hostEnv: command.hostEnv ?? "clean",
      },
    });
    let spawn = { cmd: launch.cmd, args: launch.args };
    let wrapped = false;
    if (command.dieWithHost ?? true) {
      spawn = dieWithHost(launch.cmd, launch.args, name);
      wrapped = spawn.cmd !== launch.cmd;
      // Deno checks --allow-run against setpriv now: check the plugin itself as it would have.
      if (wrapped && Deno.permissions.querySync({ name: "run", command: launch.cmd }).state !== "granted") {
        throw this.#spawnError(
          name,
          launch,
          wrapped,
          new Deno.errors.NotCapable(
            `Requires run access to "${launch.cmd}", run again with the --allow-run flag`,
          ),
        );
      }
    }
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(spawn.cmd, {
        args: spawn.args,
        env,
        clearEnv: true,
        cwd: launch.cwd,
        uid: command.uid,
        gid: command.gid,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (cause) {
      throw this.#spawnError(name, launch, wrapped, cause);
    }
    spawned.child = child;
    // Only a deno launch started with DENO_USR2_MEMORY_TRIM=1 has a trimmer; it ends with the process.
    const trimmer = launch.memoryTrim && child.pid !== undefined
      ? startMemoryTrimmer({
        plugin: name,
        root: child.pid,
        deno: Deno.execPath(),
        wrappers: launch.memoryTrim.wrappers,
        idleMs: launch.memoryTrim.idleMs,
        logger: request.logger,
      })
      : undefined;
    const status = child.status.finally(() => trimmer?.stop());
    const kill = (signal: Deno.Signal) => {
      try {
        child.kill(signal);
      } catch {
        // Already gone.
      }
    };
    launch.watch(() => kill("SIGKILL"));
    const socketDir = launch.privateDir;
    return {
      pid: child.pid,
      stdout: child.stdout,
      stderr: child.stderr,
      status: status.then((status) => ({ code: status.code, signal: status.signal })),
      pin: launch.runtime === "deno" ? { socketPath: launch.socketPath } : { socketDir },
      brokerDir: socketDir,
      hostBrokerSocket: launch.hostBrokerSocket,
      kill,
      killNow: () => {
        trimmer?.stop();
        kill("SIGKILL");
        removeSocket(launch.socketPath);
        launch.removeNow();
      },
      onPermissionEvent: this.#options.sandbox?.onPermissionEvent,
      execFailure: (exit, tail) => this.#execFailure(name, launch, wrapped, exit, tail),
      exitReason: (tail) => launch.exitReason(tail),
      connectError: (cause, what) =>
        cause instanceof Deno.errors.NotCapable || cause instanceof Deno.errors.PermissionDenied
          ? permissionOr(cause, what, deniedFlag(cause, base))
          : undefined,
      cleanup: () => launch.cleanup(),
    };
  }

  #spawnError(name: string, launch: PreparedLaunch, wrapped: boolean, cause: unknown): TetherError {
    const cmd = this.#options.command.cmd;
    const setpriv = wrapped && /setpriv/.test(String(cause)) && !String(cause).includes(cmd);
    if (setpriv && (cause instanceof Deno.errors.NotCapable || cause instanceof Deno.errors.NotFound)) {
      const fix = cause instanceof Deno.errors.NotFound
        ? `setpriv (util-linux) is not installed at ${SETPRIV}: install util-linux`
        : `run the host with --allow-run=${SETPRIV} as well`;
      return new TetherError(
        cause instanceof Deno.errors.NotFound ? "config" : "permission",
        `plugin ${name}: cannot start it under setpriv --pdeathsig, which makes it die with the host: ` +
          `${String(cause)}; ${fix}, or set dieWithHost: false`,
        { cause, plugin: name },
      );
    }
    if (cause instanceof Deno.errors.NotFound) {
      return new TetherError("config", `plugin ${name}: command not found: ${cmd}`, { cause, plugin: name });
    }
    if (cause instanceof Deno.errors.NotCapable || cause instanceof Deno.errors.PermissionDenied) {
      // What was spawned: the Deno executable for a TypeScript plugin, the verified copy with sha256.
      const spawned = launch.cmd;
      let hint = " (check the file's execute permission and uid/gid)";
      if (cause instanceof Deno.errors.NotCapable) {
        hint = launch.runtime === "deno"
          ? `; run the host with --allow-run=${spawned} (it runs this TypeScript plugin)`
          : this.#options.integrity?.sha256
          ? "; it is the verified copy, which the host writes, and Deno cannot grant running a file the host " +
            "may write: run the host with --allow-run (unscoped)"
          : `; run the host with --allow-run=${spawned}`;
      }
      return new TetherError("permission", `plugin ${name}: not allowed to run ${spawned}${hint}`, {
        cause,
        plugin: name,
      });
    }
    return new TetherError("exited", `plugin ${name}: could not start ${cmd}: ${String(cause)}`, {
      cause,
      plugin: name,
    });
  }

  /** setpriv could not exec the plugin (it prints "failed to execute" and exits 127/126): the spawn error Deno gave before. */
  #execFailure(
    name: string,
    launch: PreparedLaunch,
    wrapped: boolean,
    exit: RunnerExit,
    tail: readonly string[],
  ): TetherError | undefined {
    if (!wrapped || (exit.code !== 127 && exit.code !== 126)) return undefined;
    const said = tail.find((line) => line.startsWith("setpriv: failed to execute"));
    if (!said) return undefined;
    const why = said.replace(/^setpriv: failed to execute /, "");
    return this.#spawnError(
      name,
      launch,
      wrapped,
      exit.code === 127 ? new Deno.errors.NotFound(why) : new Deno.errors.PermissionDenied(why),
    );
  }
}
