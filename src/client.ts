/**
 * The host side: {@linkcode PluginClient} launches a go-plugin (gRPC) plugin,
 * reads its handshake, connects with AutoMTLS, opens go-plugin's internal
 * streams (broker, stdio) and hands out typed service clients.
 *
 * @module
 */

import type { DescService } from "@bufbuild/protobuf";
import { Broker } from "./broker.ts";
import { GrpcStatus, TetherError } from "./errors.ts";
import { Health, HealthCheckResponse_ServingStatus } from "./gen/grpc/health/v1/health_pb.ts";
import { GRPCBroker } from "./gen/plugin/grpc_broker_pb.ts";
import { GRPCController } from "./gen/plugin/grpc_controller_pb.ts";
import { GRPCStdio } from "./gen/plugin/grpc_stdio_pb.ts";
import {
  type AddressPin,
  assertCookie,
  assertPinnedAddress,
  type HandshakeConfig,
  type HandshakeLine,
  offeredVersions,
  parseHandshakeLine,
  PluginEnv,
} from "./handshake.ts";
import { forEachLine } from "./lines.ts";
import { validateTimerMs } from "./timers.ts";
import { validateMaxReceiveMessageBytes } from "./receive_limits.ts";
import { track } from "./lifeline.ts";
import { PERMISSION_REQUEST_FIELD, type PermissionEvent } from "./audit.ts";
import type { PluginRuntime } from "./launch.ts";
import type { Isolation, ResourceLimits } from "./isolation.ts";
import type { MemoryTrimOption } from "./memory_trim.ts";
import type { DenoPermissions } from "./permissions.ts";
import { consoleLogger, type Logger, type LogRecord, StderrLogParser } from "./logs.ts";
import { takeCertificate } from "./mtls.ts";
import { warmTlsRuntime } from "./tls_warmup.ts";
import { type CallOptions, createServiceClient, type ServiceClient } from "./rpc.ts";
import { drainStdio, type OutputSink } from "./stdio.ts";
import { type Endpoint, removeSocket } from "./listen.ts";
import { openChannel, type PluginChannel } from "./channel.ts";
import { ConnectivityState } from "./h2channel.ts";
import { type ManualTlsOptions, tlsForPlugin, waitConnected } from "./connect.ts";
import type { ReattachConfig } from "./reattach.ts";
import { connect as netConnect, type Socket } from "node:net";
import { type Bridge, bridge } from "./mux.ts";
import { YamuxSession } from "./yamux.ts";
import {
  type HostEnvMode,
  type PluginRunner,
  ProcessRunner,
  type RunnerExit,
  type RunningPlugin,
} from "./runner.ts";

export type { ManualTlsOptions } from "./connect.ts";

/**
 * How to launch (or find) and talk to one plugin. Exactly one of `cmd` (with
 * the flat launch options below, which build a {@linkcode ProcessRunner}),
 * `runner` (launching grouped by concern, or your own) or `reattach`.
 */
export interface PluginClientOptions {
  /** The executable to run (a path, or a name Deno resolves on PATH). */
  readonly cmd?: string;
  /**
   * Launches the plugin instead of the flat launch options (`cmd`, `args`,
   * `env`, sandbox, integrity...): a {@linkcode ProcessRunner} or your own
   * {@linkcode PluginRunner} (a container...), as go-plugin's RunnerFunc.
   */
  readonly runner?: PluginRunner;
  /**
   * Attach to a plugin something else started (a debugger, a supervisor, a
   * plugin served in debug mode) instead of launching one, as go-plugin's
   * ReattachConfig. No cookie is exchanged and AutoMTLS cannot work (the
   * host's certificate is passed at launch): set `autoMTLS: false` or `tls`.
   * The connection is health-checked; see {@linkcode ReattachConfig.test} for
   * what `kill()` does.
   */
  readonly reattach?: ReattachConfig;
  /** Its arguments. */
  readonly args?: readonly string[];
  /** Cookie and protocol version(s); must match the plugin's. */
  readonly handshake: HandshakeConfig;
  /**
   * Negotiate mutual TLS with fresh certificates for this launch
   * (go-plugin's AutoMTLS). Default `true`. Ignored when {@linkcode PluginClientOptions.tls} is set.
   * `false` without `tls` means plaintext h2c, for plugins that cannot do TLS.
   */
  readonly autoMTLS?: boolean;
  /** Manual TLS instead of AutoMTLS. */
  readonly tls?: ManualTlsOptions;
  /**
   * Environment for the plugin: these plus the handshake variables (cookie,
   * `PLUGIN_*`), which win on conflict. The host's own environment is passed
   * only with `hostEnv: "inherit"`.
   */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * `clean` (default): the host's environment is not passed. `inherit`: as
   * go-plugin without SkipHostEnv, the host's environment first, then `env`,
   * then the protocol's variables (see docs/protocol.md, "Environment").
   */
  readonly hostEnv?: HostEnvMode;
  /** Working directory of the plugin. */
  readonly cwd?: string;
  /** Run the plugin as this user id (needs privileges). */
  readonly uid?: number;
  /** Run the plugin as this group id (needs privileges). */
  readonly gid?: number;
  /** How long the plugin has to print its handshake line (default 60000 ms, as go-plugin). */
  readonly startTimeoutMs?: number;
  /** How long {@linkcode PluginClient.kill} waits after Shutdown before SIGKILL (default 2000 ms). */
  readonly killTimeoutMs?: number;
  /**
   * Where each launch's private directory is made (default: the system temp
   * dir). The plugin's sockets, the host's broker sockets and the verified
   * copy of the plugin live in it; it is removed when the plugin ends.
   */
  readonly unixSocketDir?: string;
  /** Group allowed on the plugin's socket: `PLUGIN_UNIX_SOCKET_GROUP`. */
  readonly unixSocketGroup?: string;
  /**
   * How the plugin runs: `native` executes `cmd`; `deno` runs `cmd` (a
   * TypeScript/JavaScript entry or bundle) with `deno run` in a deny-by-default
   * sandbox. Default: `deno` for .ts/.js/.mjs/... files, else `native`.
   */
  readonly runtime?: PluginRuntime | "auto";
  /** What a `deno` plugin may do besides speaking the protocol. Default: nothing. */
  readonly permissions?: DenoPermissions;
  /** Explicit denials for a `deno` plugin; they win over grants. */
  readonly denyPermissions?: DenoPermissions;
  /** Opt-in for `run`, `ffi` and `all` grants, which escape the sandbox (logged as a warning). */
  readonly allowBroadPermissions?: boolean;
  /** deno.json (import map, lockfile) for an unbundled `deno` plugin. Not used with `sha256`. */
  readonly denoConfig?: string;
  /**
   * Expected SHA-256 (hex) of `cmd`. The file is read once, hashed, and the
   * verified bytes are what runs (a private copy), so it cannot be swapped
   * between check and exec. A `deno` plugin must then be one bundled file.
   */
  readonly sha256?: string;
  /**
   * Fixed directory for verified copies (`<dir>/<name>-<file>`) instead of the
   * launch's private directory. Note: Deno (2.9) refuses to write a file that
   * `--allow-run` names, so a host running a native plugin with `sha256`
   * needs unscoped `--allow-run` either way (see docs/security.md).
   */
  readonly integrityDir?: string;
  /**
   * Receives each permission check a `deno` plugin's policy does not allow,
   * as the plugin's own audit reports it (also logged at warn). Untrusted:
   * the plugin's process writes that audit; Deno's flags made the decision.
   */
  readonly onPermissionEvent?: (event: PermissionEvent) => void;
  /**
   * Accept a plugin that listens on TCP (`127.0.0.1` within `minPort..maxPort`).
   * Default `false`: only the unix socket this launch assigned is dialled (see
   * docs/protocol.md, "Address pinning").
   */
  readonly allowTcp?: boolean;
  /**
   * OS layer of a `deno` plugin: `auto` (default: namespaces with bubblewrap
   * where available, said once in the log), `namespaces` (or a `config`
   * error), `deno-only`. See docs/security.md.
   */
  readonly isolation?: Isolation;
  /**
   * Memory limits of a `deno` plugin (MiB; 0 = off): V8 heap (default 512) and
   * RLIMIT_DATA (default 2048). Dying of one rejects with `resource_limit`.
   */
  readonly limits?: ResourceLimits;
  /**
   * Deno's memory trim of an idle `deno` plugin. Default on: the plugin is started with
   * `DENO_USR2_MEMORY_TRIM=1`, and once its CPU time has stood still for `idleMs` (default 2000) after it
   * moved, the host sends its Deno process SIGUSR2 (glibc's `malloc_trim(0)` and a V8 GC); again only after
   * new activity. `false` switches it off (no variable, no signal); `{ idleMs }` (100 to 86400000) sets the
   * quiet time. Linux only, and the host needs `--allow-all` (Deno 2.9.6 guards `/proc/<pid>/`) and so
   * unscoped `--allow-run`; without them it says so once at warn and plugins run untrimmed. Native plugins
   * are never signalled. See docs/security.md ("Launch defaults").
   */
  readonly memoryTrim?: MemoryTrimOption;
  /**
   * Ask for go-plugin's broker multiplexing (`PLUGIN_MULTIPLEX_GRPC`, go-plugin's GRPCBrokerMultiplex): the
   * main gRPC connection and every brokered one become yamux streams of one connection to the plugin,
   * brokered ones asked for with knocks. A plugin that does not answer `|true` in its handshake line is
   * refused. Not with `reattach` (as go-plugin). Default `false`.
   */
  readonly grpcBrokerMultiplex?: boolean;
  /** Kill a `deno` plugin whose permission audit holds a malformed line or whose socket path is misused. */
  readonly killOnAuditTamper?: boolean;
  /**
   * Largest message accepted from the plugin, on its connection and every
   * brokered connection the host dials: an integer from 1 to 2^31-1 bytes,
   * default 128 MiB (`DEFAULT_MAX_RECEIVE_MESSAGE_BYTES`). A message
   * announcing more ends its call at once with RESOURCE_EXHAUSTED (the
   * connection stays up); `2 ** 31 - 1` is go-plugin's own limit. All answers
   * being received at once also share the process's receive budget
   * (`setReceiveBudget`, see docs/security.md).
   */
  readonly maxReceiveMessageBytes?: number;
  /** TCP port range for plugins that use TCP (default 10000..25000, as go-plugin). */
  readonly minPort?: number;
  /** Upper end of the TCP port range. */
  readonly maxPort?: number;
  /**
   * Receives the plugin's log (its stderr, parsed as go-plugin does) and Tether's own messages. Default:
   * `consoleLogger()`, info and above on the host's stderr, as go-plugin's host shows plugin logs by default;
   * pass `silentLogger` to drop them.
   */
  readonly logger?: Logger;
  /** Name used in logs and errors (default: the basename of `cmd`). */
  readonly name?: string;
  /** Receives what the plugin writes to stdout after its handshake (via GRPCStdio). */
  readonly stdout?: OutputSink;
  /** Receives what the plugin writes to stderr outside its log (via GRPCStdio). */
  readonly stderr?: OutputSink;
  /**
   * Make the kernel SIGKILL the plugin if the host dies without cleaning up
   * (SIGKILL, a crash): it is started under `setpriv --pdeathsig KILL`
   * (util-linux; the host then needs `--allow-run=/usr/bin/setpriv` too).
   * Default `true`; a missing `setpriv` is an error, never a silent downgrade.
   * Linux only: other systems have no such mechanism (the option does nothing there).
   */
  readonly dieWithHost?: boolean;
  /**
   * On SIGTERM, SIGINT or SIGHUP, stop the plugin gracefully and remove its
   * files, then raise the signal again so the host ends as it would have.
   * Default `true`; set `false` when the host handles these signals itself
   * (then call {@linkcode PluginClient.kill} from its handler).
   */
  readonly handleSignals?: boolean;
}

/** How a plugin process ended. */
export interface PluginExit {
  /** Exit code (128 + signal number when killed by a signal). */
  readonly code: number;
  /** The signal that killed it, if one did. */
  readonly signal: Deno.Signal | null;
  /** Whether Tether killed it (as opposed to it exiting or crashing on its own). */
  readonly killed: boolean;
}

const STDERR_TAIL_LINES = 20;

function basename(path: string): string {
  return path.replace(/[\\/]+$/, "").split(/[\\/]/).pop() ?? path;
}

function delay(ms: number): { promise: Promise<void>; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * One plugin process and the gRPC connection to it.
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { KV } from "./gen/tether/kv/v1/kv_pb.ts";
 *
 * await using client = new PluginClient({
 *   cmd: "./kvplugin",
 *   handshake: { protocolVersion: 1, magicCookieKey: "TETHER_KV_PLUGIN", magicCookieValue: "kv-7d3f2a" },
 * });
 * await client.start();
 * const kv = client.dispense(KV);
 * await kv.put({ key: "greeting", value: new TextEncoder().encode("hello") });
 * console.log((await kv.get({ key: "greeting" })).found); // true
 * ```
 */
export class PluginClient implements AsyncDisposable {
  readonly #options: PluginClientOptions;
  readonly #logger: Logger;
  readonly #name: string;
  readonly #runner: PluginRunner | undefined;
  #starting: Promise<void> | undefined;
  #startFailed = false;
  #killing: Promise<void> | undefined;
  #process: RunningPlugin | undefined;
  #reattachDir: string | undefined;
  #reattachWatch: ReturnType<typeof setInterval> | undefined;
  #exit: PluginExit | undefined;
  #killedByUs = false;
  #exitedOnItsOwn = false;
  #channel: PluginChannel | undefined;
  readonly #serviceClients = new Map<DescService, unknown>();
  #broker: Broker | undefined;
  #endpoint: Endpoint | undefined;
  #line: HandshakeLine | undefined;
  #background: Promise<unknown>[] = [];
  readonly #stderrTail: string[] = [];
  readonly #exited: PromiseWithResolvers<PluginExit> = Promise.withResolvers();
  readonly #exitListeners: ((exit: PluginExit) => void)[] = [];
  #deathSeenAt: number | undefined;
  #untrack: (() => void) | undefined;
  /** Ends the broker and stdio streams where no process exit will (a reattached plugin keeps running). */
  readonly #streams = new AbortController();
  /** With grpcBrokerMultiplex: the yamux session on the plugin connection and the main gRPC bridge. */
  #session: YamuxSession | undefined;
  #mainBridge: Bridge | undefined;

  /** Describes the plugin; nothing runs until {@linkcode PluginClient.start}. */
  constructor(options: PluginClientOptions) {
    assertCookie(options.handshake);
    const versions = offeredVersions(options.handshake);
    validateTimerMs(options.startTimeoutMs, "startTimeoutMs");
    validateTimerMs(options.killTimeoutMs, "killTimeoutMs");
    validateMaxReceiveMessageBytes(options.maxReceiveMessageBytes, "PluginClient: maxReceiveMessageBytes");
    const sources = [
      options.cmd !== undefined && "cmd",
      options.runner !== undefined && "runner",
      options.reattach !== undefined && "reattach",
    ].filter(Boolean);
    if (sources.length !== 1) {
      throw new TetherError(
        "config",
        `PluginClient: give exactly one of cmd, runner or reattach (got ${sources.join(", ") || "none"})`,
      );
    }
    if (options.reattach && options.grpcBrokerMultiplex) {
      throw new TetherError(
        "config",
        "PluginClient: gRPC broker multiplexing is not supported with reattach",
      );
    }
    if (options.reattach) {
      if (!options.tls && options.autoMTLS !== false) {
        throw new TetherError(
          "config",
          "PluginClient: a reattached plugin cannot use AutoMTLS (the host's certificate is handed over at " +
            "launch): set autoMTLS: false to talk plaintext (as go-plugin does), or give tls",
        );
      }
      if (!versions.includes(options.reattach.protocolVersion)) {
        throw new TetherError(
          "config",
          `PluginClient: reattach.protocolVersion ${options.reattach.protocolVersion} is not one of the ` +
            `handshake's versions (${versions.join(", ")})`,
        );
      }
    }
    this.#options = options;
    this.#logger = options.logger ?? consoleLogger();
    this.#runner = options.runner ?? (options.cmd !== undefined ? runnerFromFlatOptions(options) : undefined);
    this.#name = options.name ??
      (options.cmd !== undefined
        ? basename(options.cmd)
        : options.runner instanceof ProcessRunner
        ? basename(options.runner.cmd)
        : options.reattach
        ? basename(options.reattach.address)
        : "plugin");
  }

  /** The plugin's name in logs and errors. */
  get name(): string {
    return this.#name;
  }

  /**
   * Resolves when the plugin process has ended (after {@linkcode PluginClient.start} spawned it). A
   * reattached plugin's end is seen only when its `pid` is known (Linux), and a `test` one left running
   * by `kill()` never resolves this.
   */
  get exited(): Promise<PluginExit> {
    return this.#exited.promise;
  }

  /** Whether the plugin process has ended. */
  get hasExited(): boolean {
    return this.#exit !== undefined;
  }

  /**
   * Whether the plugin can take calls: started and connected, not exited,
   * not being killed. THE test of "running" every layer uses: it turns false
   * the instant the exit is known, before the channel closes and the private
   * directory is removed.
   */
  get running(): boolean {
    return this.#channel !== undefined && this.#line !== undefined && this.#exit === undefined &&
      this.#killing === undefined && !this.#startFailed;
  }

  /**
   * Calls `listener` synchronously the instant the process is known to have
   * exited (before {@linkcode PluginClient.exited} resolves, which waits for
   * the cleanup). Called at once if it already has.
   */
  onExit(listener: (exit: PluginExit) => void): void {
    if (this.#exit) listener(this.#exit);
    else this.#exitListeners.push(listener);
  }

  /**
   * Whether a call that started at `time` (ms since the epoch) was sent to a
   * process already known to be gone: an earlier call had already failed
   * because it died, or its exit had been recorded. Such a call never reached
   * a live plugin, so it is not the cause of the death and can be sent again.
   */
  sentAfterDeath(time: number): boolean {
    return this.#deathSeenAt !== undefined && time >= this.#deathSeenAt;
  }

  /** The process id, once started (for a reattached plugin: its `pid`, if given). */
  get pid(): number | undefined {
    return this.#process?.pid ?? this.#options.reattach?.pid;
  }

  /** The protocol version the plugin chose, once started. */
  get protocolVersion(): number | undefined {
    return this.#line?.appVersion;
  }

  /** Where the plugin listens, once started. */
  get endpoint(): Endpoint | undefined {
    return this.#endpoint;
  }

  /** Whether this client attached to a plugin it did not launch. */
  get reattached(): boolean {
    return this.#options.reattach !== undefined;
  }

  /**
   * What a host needs to reattach to this plugin (go-plugin's
   * `Client.ReattachConfig`), once started; `undefined` before.
   */
  get reattachConfig(): ReattachConfig | undefined {
    if (this.#options.reattach) return this.#options.reattach;
    if (!this.#endpoint || !this.#line) return undefined;
    return {
      network: this.#endpoint.network,
      address: this.#endpoint.address,
      protocolVersion: this.#line.appVersion,
      ...(this.pid !== undefined ? { pid: this.pid } : {}),
    };
  }

  /** The host side of go-plugin's broker, for callbacks in both directions. */
  get broker(): Broker {
    if (!this.#broker) throw this.#notStarted();
    return this.#broker;
  }

  /**
   * Launches the plugin (or attaches to it) and connects to it. Safe to call
   * more than once: later calls return the first call's promise.
   *
   * @throws {TetherError} `handshake`, `start_timeout`, `exited`, `tls`, `config` or `permission`.
   */
  start(): Promise<void> {
    // A failed start keeps answering with its own error; a killed client says it was killed.
    if (this.#starting && this.#startFailed) return this.#starting;
    if (this.#killing) return Promise.reject(new TetherError("closed", `plugin ${this.#name} was killed`));
    this.#starting ??= (this.#options.reattach ? this.#attach(this.#options.reattach) : this.#start()).catch(
      async (error) => {
        this.#startFailed = true;
        await this.kill();
        throw error;
      },
    );
    return this.#starting;
  }

  /** The protocol's variables: what every plugin launch gets, whatever runs it. */
  #protocolEnv(versions: readonly number[], certificatePem: string | undefined): Record<string, string> {
    const options = this.#options;
    const env: Record<string, string> = {
      [options.handshake.magicCookieKey]: options.handshake.magicCookieValue,
      [PluginEnv.minPort]: String(options.minPort ?? 10000),
      [PluginEnv.maxPort]: String(options.maxPort ?? 25000),
      [PluginEnv.protocolVersions]: versions.join(","),
    };
    if (certificatePem) env[PluginEnv.clientCert] = certificatePem;
    if (options.unixSocketGroup) env[PluginEnv.unixSocketGroup] = options.unixSocketGroup;
    // Asked for only with grpcBrokerMultiplex (the runner removes a configured PLUGIN_MULTIPLEX_GRPC).
    if (options.grpcBrokerMultiplex) env[PluginEnv.multiplexGrpc] = "true";
    return env;
  }

  async #start(): Promise<void> {
    const options = this.#options;
    const versions = offeredVersions(options.handshake);
    const autoMTLS = !options.tls && (options.autoMTLS ?? true);
    // The runtime's TLS set-up runs off the main thread while the certificate is made and the plugin starts.
    if (autoMTLS || options.tls) warmTlsRuntime();
    const certificate = autoMTLS ? await takeCertificate() : undefined;

    // Whatever ends the host, the launch's files (once there are some) and its process go.
    let launching: (() => void) | undefined;
    this.#untrack = track({
      kill: () => this.kill(),
      killNow: () => this.#process ? this.#killNow() : launching?.(),
      onSignals: options.handleSignals ?? true,
    });
    const process = await this.#runner!.run({
      name: this.#name,
      protocolEnv: this.#protocolEnv(versions, certificate?.certPem),
      cookieKey: options.handshake.magicCookieKey,
      logger: this.#logger,
      onLaunching: (killNow) => launching = killNow,
      handleSignals: options.handleSignals,
    });
    this.#process = process;
    const startTimeoutMs = options.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + startTimeoutMs;
    this.#background.push(process.status.then((status) => this.#recordExit(status)));
    this.#readStderr(process.stderr, process.onPermissionEvent);

    const firstLine = Promise.withResolvers<string | undefined>();
    let firstLineSeen = false;
    this.#background.push(
      forEachLine(process.stdout, (line) => {
        if (!firstLineSeen) {
          firstLineSeen = true;
          firstLine.resolve(line);
        } else {
          this.#log("debug", "plugin wrote to stdout after its handshake", { line });
        }
      }).catch(() => {}).finally(() => firstLine.resolve(undefined)),
    );

    const timeout = delay(Math.max(0, deadline - Date.now()));
    let line: string | undefined;
    try {
      const outcome = await Promise.race([
        firstLine.promise.then((value) => ({ kind: "line" as const, value })),
        this.#exited.promise.then(() => ({ kind: "exit" as const })),
        timeout.promise.then(() => ({ kind: "timeout" as const })),
      ]);
      if (outcome.kind === "timeout") {
        throw new TetherError(
          "start_timeout",
          `timeout while waiting for plugin ${this.#name} to start: no handshake line within ${startTimeoutMs} ms` +
            this.#stderrHint(),
          { plugin: this.#name },
        );
      }
      if (outcome.kind === "exit" || outcome.value === undefined) {
        // Give the stderr reader a moment to collect the plugin's last words.
        await Promise.race([this.#exited.promise, delay(200).promise]);
        await delay(20).promise;
        const exit = this.#exit;
        const execFailure = exit && process.execFailure?.(exit, this.#stderrTail);
        if (execFailure) throw execFailure;
        throw this.#limitOr(
          "exited",
          `plugin ${this.#name} exited before we could connect` +
            (exit ? ` (exit code ${exit.code}${exit.signal ? `, signal ${exit.signal}` : ""})` : "") +
            (outcome.kind === "line" ? ": it closed stdout without printing a handshake line" : "") +
            this.#stderrHint(),
        );
      }
      line = outcome.value;
    } finally {
      timeout.cancel();
    }

    try {
      this.#line = parseHandshakeLine(line, versions);
    } catch (error) {
      if (error instanceof TetherError) {
        throw new TetherError(error.code, `plugin ${this.#name}: ${error.message}${this.#stderrHint()}`, {
          plugin: this.#name,
          cause: error.cause,
        });
      }
      throw error;
    }
    const handshake = this.#line;
    if (options.grpcBrokerMultiplex && handshake.multiplex !== true) {
      throw new TetherError(
        "handshake",
        `plugin ${this.#name}: client requested gRPC broker multiplexing but plugin does not support the ` +
          "feature" + (handshake.multiplex === undefined ? " (its handshake line has no 7th field)" : ""),
        { plugin: this.#name },
      );
    }
    this.#endpoint = { network: handshake.network, address: handshake.address };
    this.#log("debug", "plugin address", {
      network: handshake.network,
      address: handshake.address,
      version: handshake.appVersion,
    });
    const tls = tlsForPlugin(this.#name, certificate, options.tls, handshake);
    // Before anything dials it: a plugin must not point the host at another service.
    const pin: AddressPin = { plugin: this.#name, ...process.pin, ...this.#tcpPin() };
    assertPinnedAddress(handshake, pin);
    await this.#open(
      tls,
      deadline,
      { ...pin, socketPath: undefined, socketDir: process.brokerDir },
      process.brokerDir,
      process.hostBrokerSocket,
    );
  }

  /** Attaches to a running plugin (go-plugin's reattach): no launch, no handshake line. */
  async #attach(config: ReattachConfig): Promise<void> {
    const options = this.#options;
    if (config.network !== "unix" && config.network !== "tcp") {
      throw new TetherError("config", `plugin ${this.#name}: reattach.network must be unix or tcp`);
    }
    this.#line = {
      appVersion: config.protocolVersion,
      network: config.network,
      address: config.address,
      protocol: "grpc",
    };
    this.#endpoint = { network: config.network, address: config.address };
    // The host's own broker sockets go in a private directory of its own.
    this.#reattachDir = await Deno.makeTempDir({ dir: options.unixSocketDir, prefix: "tether-reattach-" });
    this.#untrack = track({
      kill: () => this.kill(),
      killNow: () => this.#killNow(),
      onSignals: options.handleSignals ?? true,
    });
    if (config.pid !== undefined) this.#watchPid(config.pid);
    const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
    const dir = config.network === "unix"
      ? config.address.slice(0, config.address.lastIndexOf("/")) || "/"
      : undefined;
    // The address came from whoever configured the host; the broker addresses come from the plugin and stay
    // pinned: next to its socket (where go-plugin and serve() put them), or TCP only with allowTcp.
    await this.#open(
      options.tls ? tlsForPlugin(this.#name, undefined, options.tls, {}) : undefined,
      deadline,
      { plugin: this.#name, socketDir: dir, ...this.#tcpPin() },
      this.#reattachDir,
      undefined,
    );
    await this.ping();
    this.#log("debug", "reattached to plugin", {
      address: config.address,
      pid: config.pid,
      test: config.test,
    });
  }

  #tcpPin(): Pick<AddressPin, "tcpPorts"> {
    const options = this.#options;
    return options.allowTcp
      ? { tcpPorts: [options.minPort ?? 10000, options.maxPort ?? 25000] as const }
      : {};
  }

  /** Polls whether a reattached plugin's process is still there (go-plugin polls each second too). */
  #watchPid(pid: number): void {
    if (Deno.build.os !== "linux") return;
    const alive = () => {
      try {
        Deno.statSync(`/proc/${pid}`);
        return true;
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return false;
        throw error;
      }
    };
    try {
      if (!alive()) {
        throw new TetherError("exited", `plugin ${this.#name}: no process with pid ${pid} to reattach to`, {
          plugin: this.#name,
        });
      }
    } catch (error) {
      if (error instanceof TetherError) throw error;
      this.#log("debug", "cannot watch the reattached plugin's process (needs --allow-read=/proc)", {
        pid,
        error: String(error),
      });
      return;
    }
    const timer = setInterval(() => {
      if (alive()) return;
      clearInterval(timer);
      void this.#recordExit({ code: 0, signal: null });
    }, 1000);
    this.#reattachWatch = timer;
  }

  /** Connects, then opens go-plugin's broker and stdio streams. */
  async #open(
    tls: ReturnType<typeof tlsForPlugin>,
    deadline: number,
    brokerPin: AddressPin,
    brokerDir: string,
    hostBrokerSocket: ((id: number) => string) | undefined,
  ): Promise<void> {
    const options = this.#options;
    let endpoint = this.#endpoint!;
    let session: YamuxSession | undefined;
    // The session routes streams to the broker, which is made once the channel is up.
    const routed: { broker?: Broker } = {};
    if (options.grpcBrokerMultiplex) {
      // One connection to the plugin; gRPC reaches it through a local socket bridged to yamux streams.
      const socket = await dialRaw(endpoint, this.#name);
      session = new YamuxSession(socket, "client", (stream) => {
        const id = routed.broker?.takeKnocked();
        if (id === undefined) stream.destroy();
        else routed.broker!.serveStream(id, stream);
      });
      this.#session = session;
      const opened = session;
      this.#mainBridge = await bridge(brokerDir, "main", () => Promise.resolve(opened.open()));
      endpoint = { network: "unix", address: this.#mainBridge.path };
    }
    const receive = { maxReceiveMessageBytes: options.maxReceiveMessageBytes, peer: `plugin ${this.#name}` };
    const channel = openChannel(endpoint, tls, receive);
    this.#channel = channel;
    await waitConnected(channel, {
      plugin: this.#name,
      endpoint,
      tls,
      deadline,
      gone: this.#exited.promise,
      isGone: () => this.#exit !== undefined,
      stderrHint: () => this.#stderrHint(),
      connectError: this.#process?.connectError,
    });
    const broker = new Broker(
      tls,
      {
        network: endpoint.network,
        socketDir: brokerDir,
        minPort: options.minPort ?? 10000,
        maxPort: options.maxPort ?? 25000,
      },
      hostBrokerSocket,
      (announced, id) => assertPinnedAddress(announced, brokerPin, `broker connection ${id}`),
      receive,
    );
    this.#broker = broker;
    routed.broker = broker;
    if (session) {
      const opened = session;
      broker.useMux({ open: () => opened.open(), dir: brokerDir });
    }
    const signal = this.#streams.signal;
    const brokerStream = createServiceClient(channel, GRPCBroker).startStream(broker.outgoing, { signal });
    this.#background.push((async () => {
      try {
        for await (const info of brokerStream) broker.receive(info);
      } catch (error) {
        if (!this.#killing && !this.#exit) {
          this.#log("debug", "broker stream ended", { error: String(error) });
        }
      }
    })());
    this.#background.push(
      drainStdio(
        withSignal(createServiceClient(channel, GRPCStdio), signal),
        { stdout: options.stdout, stderr: options.stderr },
        this.#logger,
        { plugin: this.#name },
        () => this.#killing !== undefined || this.#exit !== undefined,
      ),
    );
  }

  /** The exit, as one state change: from here no caller can obtain this process (see `running`). */
  async #recordExit(status: RunnerExit): Promise<void> {
    if (this.#exit) return;
    this.#exit = { code: status.code, signal: status.signal, killed: this.#killedByUs };
    this.#deathSeenAt ??= Date.now();
    // A signal Tether did not send means it died on its own, even if kill() had started meanwhile.
    this.#exitedOnItsOwn = this.#killing === undefined || (status.signal !== null && !this.#killedByUs);
    for (const listener of this.#exitListeners.splice(0)) {
      try {
        listener(this.#exit);
      } catch (error) {
        this.#log("error", "exit listener failed", { error: String(error) });
      }
    }
    this.#log(this.#killedByUs || status.code === 0 ? "debug" : "error", "plugin process exited", {
      pid: this.pid,
      code: status.code,
      signal: status.signal,
    });
    this.#cleanupAfterExit();
    await this.#removeFiles();
    this.#untrack?.();
    this.#exited.resolve(this.#exit);
  }

  #readStderr(
    stderr: ReadableStream<Uint8Array>,
    onPermissionEvent?: (event: PermissionEvent) => void,
  ): void {
    const stderrParser = new StderrLogParser();
    this.#background.push(
      forEachLine(stderr, (line) => {
        this.#stderrTail.push(line);
        if (this.#stderrTail.length > STDERR_TAIL_LINES) this.#stderrTail.shift();
        const record = stderrParser.parse(line);
        this.#logger.log({ ...record, fields: { plugin: this.#name, ...record.fields } });
        const request = record.fields[PERMISSION_REQUEST_FIELD] as
          | { name?: string; target?: string }
          | undefined;
        if (request && typeof request === "object") {
          onPermissionEvent?.({
            plugin: this.#name,
            permission: String(request.name ?? "unknown"),
            target: request.target === undefined ? null : String(request.target),
            allowed: false,
            time: record.timestamp ?? new Date(),
            source: "plugin",
          });
        }
      }).catch(() => {}),
    );
  }

  /**
   * A typed client for a service the plugin serves.
   *
   * A call that fails because the plugin died rejects with code `exited`;
   * other failures reject with code `rpc` and the gRPC status.
   */
  dispense<S extends DescService>(service: S): ServiceClient<S> {
    if (!this.#channel || this.#killing) throw this.#notStarted();
    // Wrappers dispense on every call: build each service's client once per connection.
    let client = this.#serviceClients.get(service) as ServiceClient<S> | undefined;
    if (!client) {
      client = createServiceClient(this.#channel, service, (error) => this.#explain(error));
      this.#serviceClients.set(service, client);
    }
    return client;
  }

  async #explain(error: TetherError): Promise<TetherError> {
    if (
      error.status !== GrpcStatus.UNAVAILABLE && error.status !== GrpcStatus.INTERNAL &&
      error.status !== GrpcStatus.CANCELLED && error.status !== GrpcStatus.UNKNOWN
    ) return error;
    const arrived = Date.now();
    const connected = this.#channel?.getChannel().getConnectivityState(false) === ConnectivityState.READY;
    // An ordinary plugin error (Go sends plain errors as UNKNOWN) on a live connection needs no second look.
    if (connected && !this.#exit && !this.#killing) return error;
    if (!this.#exit) {
      // A dropped connection is seen a moment before the process is reaped.
      const wait = delay(1000);
      await Promise.race([this.#exited.promise, wait.promise]);
      wait.cancel();
    }
    if (this.#killing && !(this.#exit && this.#exitedOnItsOwn)) {
      return new TetherError("closed", `plugin ${this.#name} was killed: ${error.message}`, {
        plugin: this.#name,
        status: error.status,
        cause: error,
      });
    }
    if (!this.#exit) return error;
    const exit = this.#exit;
    // The first failure that turned out to be a death marks when the host knew: later calls met a dead process.
    this.#deathSeenAt = Math.min(this.#deathSeenAt ?? arrived, arrived);
    // grpc-js reports a connection cut mid-call as UNAVAILABLE or INTERNAL (RST_STREAM) depending on timing; a
    // process that is gone is UNAVAILABLE whichever it saw (the transport's status stays on `cause`).
    if (!exit.killed) {
      const limit = this.#process?.exitReason?.(this.#stderrTail);
      if (limit) {
        return new TetherError(limit.code, `${limit.message}: ${error.message}`, {
          plugin: this.#name,
          cause: error,
        });
      }
    }
    return new TetherError(
      exit.killed ? "closed" : "exited",
      exit.killed
        ? `plugin ${this.#name} was killed during the call (${error.message})`
        : `plugin ${this.#name} exited during the call (exit code ${exit.code}${
          exit.signal ? `, signal ${exit.signal}` : ""
        }): ${error.message}${this.#stderrHint()}`,
      { plugin: this.#name, status: GrpcStatus.UNAVAILABLE, cause: error },
    );
  }

  /**
   * Asks the plugin's health service whether `plugin` is SERVING.
   *
   * @throws {TetherError} `rpc` when it is not, or the call fails.
   */
  async ping(options: CallOptions = {}): Promise<void> {
    const health = this.dispense(Health);
    const response = await health.check({ service: "plugin" }, { timeoutMs: 5_000, ...options });
    if (response.status !== HealthCheckResponse_ServingStatus.SERVING) {
      throw new TetherError(
        "rpc",
        `plugin ${this.#name} is not serving (health status ${
          HealthCheckResponse_ServingStatus[response.status]
        })`,
        { plugin: this.#name, status: GrpcStatus.UNAVAILABLE },
      );
    }
  }

  /**
   * Stops the plugin as go-plugin does: close the broker, ask for Shutdown,
   * wait up to 2 s, then SIGKILL. Idempotent; resolves once the process is
   * reaped and its socket is gone. A reattached plugin is stopped likewise
   * when its `pid` is known (without one, only Shutdown is asked); one
   * reattached with `test: true` is left running: only the connection closes.
   */
  kill(): Promise<void> {
    this.#killing ??= this.#kill();
    return this.#killing;
  }

  async #kill(): Promise<void> {
    this.#broker?.close();
    const reattach = this.#options.reattach;
    if (reattach?.test) {
      clearInterval(this.#reattachWatch);
      this.#channel?.close();
      this.#streams.abort();
      await Promise.allSettled(this.#background);
      await this.#removeFiles();
      this.#untrack?.();
      this.#log("debug", "disconnected from the reattached plugin, which keeps running (test mode)", {
        pid: reattach.pid,
      });
      return;
    }
    // A reattach that failed only disconnects: the process is not this host's to stop on a failed attach.
    const attachFailed = reattach !== undefined && this.#startFailed;
    const signal = attachFailed ? undefined : this.#signaller();
    if (!attachFailed && !this.#exit && this.#channel && this.#line && (signal || reattach)) {
      try {
        await createServiceClient(this.#channel, GRPCController).shutdown({}, {
          timeoutMs: this.#options.killTimeoutMs ?? 2_000,
        });
      } catch {
        // The plugin may stop before it answers; go-plugin ignores this too.
      }
    }
    this.#channel?.close();
    this.#closeMux();
    if (reattach) this.#streams.abort();
    if (signal && !this.#exit) {
      // Without a connection there was no Shutdown to wait for (go-plugin kills at once too).
      const grace = delay(this.#line && this.#channel ? this.#options.killTimeoutMs ?? 2_000 : 0);
      await Promise.race([this.#exited.promise, grace.promise]);
      grace.cancel();
      if (!this.#exit) {
        this.#log("warn", "plugin failed to exit gracefully", { pid: this.pid });
        this.#killedByUs = true;
        signal("SIGKILL");
      }
    }
    clearInterval(this.#reattachWatch);
    await Promise.allSettled(this.#background);
    this.#cleanupAfterExit();
    await this.#removeFiles();
    this.#untrack?.();
  }

  #closeMux(): void {
    this.#mainBridge?.close();
    this.#session?.close();
  }

  /** Sends a signal to the plugin's process, when this host may and can. */
  #signaller(): ((signal: Deno.Signal) => void) | undefined {
    if (this.#process) return (signal) => this.#process!.kill(signal);
    const pid = this.#options.reattach?.pid;
    if (pid === undefined || this.#options.reattach?.test) return undefined;
    return (signal) => {
      try {
        Deno.kill(pid, signal);
      } catch (error) {
        this.#log("debug", "could not signal the reattached plugin", { pid, error: String(error) });
      }
    };
  }

  /** The runner's files (a launch's private directory), or a reattached client's broker directory. */
  async #removeFiles(): Promise<void> {
    const dir = this.#reattachDir;
    if (dir) {
      this.#reattachDir = undefined;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    const process = this.#process;
    if (!process) return;
    await process.cleanup();
  }

  /** For `Deno.exit()` (the `unload` event): only synchronous work happens there. */
  #killNow(): void {
    if (this.#endpoint?.network === "unix" && this.#process) removeSocket(this.#endpoint.address);
    this.#process?.killNow();
    if (!this.#options.reattach?.test) this.#signaller()?.("SIGKILL");
    if (this.#reattachDir) {
      try {
        Deno.removeSync(this.#reattachDir, { recursive: true });
      } catch {
        // Already gone.
      }
    }
  }

  /** Same as {@linkcode PluginClient.kill}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.kill();
  }

  /** An `exited` error, unless the plugin's death points to one of its resource limits. */
  #limitOr(code: "exited", message: string): TetherError {
    const limit = this.#process?.exitReason?.(this.#stderrTail);
    if (limit) {
      return new TetherError(limit.code, `${limit.message}${this.#stderrHint()}`, { plugin: this.#name });
    }
    return new TetherError(code, message, { plugin: this.#name });
  }

  #cleanupAfterExit(): void {
    // A crashed plugin leaves its socket behind (go-plugin #119); a reattached one's socket is not ours.
    if (this.#endpoint?.network === "unix" && this.#process) removeSocket(this.#endpoint.address);
    if (this.#exit && !this.#killing) {
      this.#broker?.close();
      this.#channel?.close();
      this.#closeMux();
    }
  }

  #stderrHint(): string {
    if (this.#stderrTail.length === 0) return "";
    return `\nLast lines of the plugin's stderr:\n  ${this.#stderrTail.slice(-10).join("\n  ")}`;
  }

  #notStarted(): TetherError {
    return new TetherError(
      "closed",
      this.#killing
        ? `plugin ${this.#name} was killed`
        : `plugin ${this.#name} is not started: await start() first`,
      { plugin: this.#name },
    );
  }

  #log(level: LogRecord["level"], message: string, fields: Record<string, unknown> = {}): void {
    this.#logger.log({ level, message, fields: { plugin: this.#name, ...fields } });
  }
}

/** Opens the one raw connection a multiplexed plugin connection runs over. */
function dialRaw(endpoint: Endpoint, plugin: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const colon = endpoint.address.lastIndexOf(":");
    const socket = endpoint.network === "unix" ? netConnect({ path: endpoint.address }) : netConnect({
      host: endpoint.address.slice(0, colon),
      port: Number(endpoint.address.slice(colon + 1)),
    });
    socket.once("connect", () => resolve(socket));
    socket.once("error", (cause) =>
      reject(
        new TetherError(
          "handshake",
          `could not connect to plugin ${plugin} at ${endpoint.address}: ${cause.message}`,
          {
            plugin,
            cause,
          },
        ),
      ));
  });
}

/** The stdio client with its stream tied to `signal`. */
function withSignal(
  stdio: ServiceClient<typeof GRPCStdio>,
  signal: AbortSignal,
): ServiceClient<typeof GRPCStdio> {
  return { ...stdio, streamStdio: (request, options) => stdio.streamStdio(request, { signal, ...options }) };
}

/** The flat launch options, as the {@linkcode ProcessRunner} they describe. */
function runnerFromFlatOptions(options: PluginClientOptions): ProcessRunner {
  return new ProcessRunner({
    command: {
      cmd: options.cmd!,
      args: options.args,
      env: options.env,
      hostEnv: options.hostEnv,
      cwd: options.cwd,
      uid: options.uid,
      gid: options.gid,
      runtime: options.runtime,
      dieWithHost: options.dieWithHost,
    },
    sandbox: {
      permissions: options.permissions,
      denyPermissions: options.denyPermissions,
      allowBroadPermissions: options.allowBroadPermissions,
      denoConfig: options.denoConfig,
      isolation: options.isolation,
      limits: options.limits,
      memoryTrim: options.memoryTrim,
      killOnAuditTamper: options.killOnAuditTamper,
      onPermissionEvent: options.onPermissionEvent,
    },
    integrity: { sha256: options.sha256, integrityDir: options.integrityDir },
    privateDir: { base: options.unixSocketDir },
  });
}
