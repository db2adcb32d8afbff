/**
 * {@linkcode PluginManager} runs the plugins of an SFTPGo `plugins:` section
 * the way SFTPGo does, and supervises them better:
 *
 * - **Launch** like SFTPGo: each plugin's handshake (its type's magic cookie),
 *   `auto_mtls` (default off, as SFTPGo), the environment built from
 *   `env_prefix`/`env_vars` on an empty one, `sha256sum` checked over the
 *   bytes that run; plus Tether's `tether:` options (Deno runtime and
 *   permissions, timeouts, restart policy, health checks).
 * - **Routing** as SFTPGo: auth goes to the first plugin whose scope has the
 *   method's bit; notifier events fan out to every plugin that subscribed;
 *   the last ipfilter decides (an error denies, an exited plugin allows); KMS
 *   plugins by scheme or encrypted status; at most one eventsearcher.
 * - **Supervision**: an exit is noticed at once and the plugin is restarted
 *   with exponential backoff; a hung plugin is found by health checks and
 *   restarted; calls made meanwhile wait up to their deadline.
 * - **Notifier delivery**: per plugin, an ordered lane (the default) or, with
 *   `tether: { notifier_order: unordered }`, a send per event as SFTPGo's;
 *   both with SFTPGo's `retry_max_time` / `retry_queue_max_size` rules;
 *   drops are counted and logged, never silent.
 * - **Graceful stop**: refuse new work, flush notifier queues within a
 *   deadline, kill the plugins, report what was delivered, left and dropped.
 *
 * @example
 * ```ts ignore
 * import { PluginManager } from "@tether/tether/sftpgo";
 *
 * const manager = await PluginManager.fromYaml("/etc/sftpgo/sftpgo.yaml");
 * await manager.start();
 * const { user } = await manager.auth.checkUserAndPass({ username: "alice", password: "pw", ip: "198.51.100.7", protocol: "SSH" });
 * manager.notifier.sendFsEvent({ action: "upload", username: "alice", virtualPath: "/in/a.csv" });
 * const verdict = await manager.ipFilter.checkIP("203.0.113.9", "SSH");
 * const report = await manager.stop();
 * console.log(report.plugins);
 * ```
 *
 * @module
 */

import { PluginClient, type PluginClientOptions, type PluginExit } from "../client.ts";
import type { PermissionEvent } from "../audit.ts";
import { TetherError } from "../errors.ts";
import { runtimeFor } from "../launch.ts";
import { consoleLogger, type Logger } from "../logs.ts";
import { track } from "../lifeline.ts";
import type { DescService } from "@bufbuild/protobuf";
import type { CallOptions, ServiceClient } from "../rpc.ts";
import type {
  AuthCheckBase,
  AuthResult,
  KeyboardAuthReply,
  KeyboardAuthStep,
  KeyboardInteractiveOptions,
  KeyboardInteractiveOutcome,
} from "./auth.ts";
import { AuthClient } from "./auth_client.ts";
import { loadPluginsConfig, type PluginConfig, type PluginType } from "./config.ts";
import { pluginEnvironment } from "./env.ts";
import { EventSearcherClient } from "./eventsearcher_client.ts";
import { sftpgoHandshakes } from "./handshakes.ts";
import { IpFilterClient } from "./ipfilter_client.ts";
import { KmsClient } from "./kms_client.ts";
import { MetadataClient } from "./metadata_client.ts";
import type { FsEventInput, LogEventInput, ProviderEventInput } from "./notifier.ts";
import { NotifierClient } from "./notifier_client.ts";
import {
  type DeliveryLane,
  type LaneEvent,
  NotifierLane,
  type NotifierLaneOptions,
  Semaphore,
} from "./retry_queue.ts";
import { UnorderedLane } from "./unordered_lane.ts";
import {
  activeIpFilter,
  AUTH_METHODS,
  type AuthMethod,
  authPluginFor,
  checkPluginCombination,
  pluginName,
  pluginWhere,
  wantsFsEvent,
  wantsLogEvent,
  wantsProviderEvent,
} from "./routing.ts";
import { type PluginState, PluginSupervisor } from "./supervisor.ts";
import { type PluginDispenser, toUnixNanos } from "./types.ts";

export type { PluginState } from "./supervisor.ts";
export type { AuthMethod } from "./routing.ts";

/**
 * Options of {@linkcode PluginManager}. Everything is optional.
 *
 * @example
 * ```ts
 * import type { PluginManagerOptions } from "./manager.ts";
 * const options: PluginManagerOptions = { hostEnv: { PATH: "/usr/bin" }, notifierConcurrency: 100, stopTimeoutMs: 5_000 };
 * ```
 */
export interface PluginManagerOptions {
  /**
   * Receives the manager's records (starts, exits, restarts, drops) and each
   * plugin's log. Default: warnings and errors on stderr.
   */
  readonly logger?: Logger;
  /**
   * The host environment `env_prefix` and `env_vars` select from. Default:
   * `Deno.env.toObject()` when the host may read the environment, else none.
   */
  readonly hostEnv?: Record<string, string>;
  /** Receives each permission a Deno plugin was denied. */
  readonly onPermissionEvent?: (event: PermissionEvent) => void;
  /** Most notifier sends in flight across all plugins (default 250, SFTPGo's). */
  readonly notifierConcurrency?: number;
  /**
   * Directory a relative `cmd` with a slash (`./plugins/auth`) is resolved
   * against. Default: the working directory, as SFTPGo.
   */
  readonly baseDir?: string;
  /** deno.json (import map, lockfile) for unbundled Deno plugins; not used for plugins with `sha256sum`. */
  readonly denoConfig?: string;
  /** Consecutive failed health checks after which a plugin counts as hung and is restarted (default 3). */
  readonly healthCheckFailures?: number;
  /** Deadline of one health check (default: the plugin's interval, at most 5000 ms). */
  readonly healthCheckTimeoutMs?: number;
  /** How long a restarted plugin must stay up before its failure streak resets (default 10000 ms). */
  readonly stableAfterMs?: number;
  /** First wait before resending a failed notifier event; doubles up to 2000 ms (default 100 ms). */
  readonly notifierRetryDelayMs?: number;
  /** How long {@linkcode PluginManager.stop} waits for notifier queues to drain (default 10000 ms). */
  readonly stopTimeoutMs?: number;
  /**
   * On SIGTERM, SIGINT or SIGHUP: {@linkcode PluginManager.stop} (flush, kill,
   * report logged), then the signal ends the host as it would have. Default
   * `true`; `false` for a host that handles these signals itself (it then
   * calls `stop()`): also passed to every plugin's client.
   */
  readonly handleSignals?: boolean;
  /** Extra {@linkcode PluginClientOptions} per plugin (working directory, stdout sink, ...); they win. */
  readonly clientOptions?: (config: PluginConfig, name: string) => Partial<PluginClientOptions>;
}

/**
 * One plugin as {@linkcode PluginManager.status} sees it.
 *
 * @example
 * ```ts ignore
 * for (const p of manager.status()) console.log(p.name, p.state, p.restarts, p.queued, p.dropped);
 * ```
 */
export interface PluginStatus {
  /** `<type>#<position in the plugins list>`, e.g. `notifier#2`. */
  readonly name: string;
  /** The plugin type. */
  readonly type: PluginType;
  /** The command as configured. */
  readonly cmd: string;
  /** Where it is in its life. */
  readonly state: PluginState;
  /** Whether SFTPGo's routing sends it anything (false for a shadowed ipfilter or an auth plugin earlier ones cover). */
  readonly active: boolean;
  /** The process id while running. */
  readonly pid?: number;
  /** Successful restarts after an exit or a hang. */
  readonly restarts: number;
  /** Consecutive failures since it was last stable (0 when healthy). */
  readonly failureStreak: number;
  /** How the last process ended, if one did. */
  readonly lastExit?: PluginExit;
  /** The last start failure or health problem. */
  readonly lastError?: string;
  /** Notifier events waiting (0 for other types). */
  readonly queued: number;
  /** Notifier events delivered (0 for other types). */
  readonly delivered: number;
  /** Notifier events dropped (0 for other types). */
  readonly dropped: number;
  /** Notifier sends that failed and were retried or dropped, each attempt counted (0 for other types). */
  readonly failedSends: number;
}

/**
 * What {@linkcode PluginManager.stop} leaves behind, per plugin.
 *
 * @example
 * ```ts ignore
 * const report = await manager.stop();
 * if (report.left > 0) console.warn(`${report.left} events were not delivered`);
 * ```
 */
export interface StopReport {
  /** Whether every notifier queue was empty before the plugins were killed. */
  readonly flushed: boolean;
  /** How long stopping took. */
  readonly durationMs: number;
  /** Events delivered over the manager's life, all notifiers. */
  readonly delivered: number;
  /** Events still queued when the plugins were killed (not delivered), all notifiers. */
  readonly left: number;
  /** Events dropped over the manager's life, all notifiers. */
  readonly dropped: number;
  /** Per plugin. */
  readonly plugins: readonly {
    readonly name: string;
    readonly type: PluginType;
    readonly restarts: number;
    readonly delivered: number;
    readonly left: number;
    readonly dropped: number;
  }[];
}

/**
 * The answer of {@linkcode IpFilterRouter.checkIP}.
 *
 * @example
 * ```ts
 * import type { IpFilterDecision } from "./manager.ts";
 * const decision: IpFilterDecision = { allowed: false, reason: "ip banned", plugin: "ipfilter#4" };
 * ```
 */
export interface IpFilterDecision {
  /** Whether the address may connect. */
  readonly allowed: boolean;
  /** The plugin's refusal, or why it was not asked. */
  readonly reason?: string;
  /** The plugin that decided (absent when no ipfilter is configured). */
  readonly plugin?: string;
}

interface Managed {
  readonly config: PluginConfig;
  readonly name: string;
  readonly supervisor: PluginSupervisor;
  readonly dispenser: PluginDispenser;
  lane?: DeliveryLane;
}

function closedError(what: string): TetherError {
  return new TetherError(
    "closed",
    `${what}: the plugin manager is stopped (or stopping); no new work is taken`,
  );
}

function resolveCmd(cmd: string, baseDir: string | undefined): string {
  if (!baseDir || cmd.startsWith("/") || !cmd.includes("/")) return cmd;
  return `${baseDir.replace(/\/+$/, "")}/${cmd.replace(/^\.\//, "")}`;
}

function defaultHostEnv(): Record<string, string> {
  try {
    if (Deno.permissions.querySync({ name: "env" }).state !== "granted") return {};
    return Deno.env.toObject();
  } catch {
    return {};
  }
}

/**
 * Runs and supervises the plugins of an SFTPGo `plugins:` configuration.
 *
 * @example From an SFTPGo config file
 * ```ts ignore
 * import { PluginManager } from "@tether/tether/sftpgo";
 *
 * await using manager = await PluginManager.fromYaml("/etc/sftpgo/sftpgo.yaml");
 * await manager.start();
 * const verdict = await manager.ipFilter.checkIP("10.1.2.3", "SSH");
 * console.log(verdict.allowed ? "allowed" : `denied: ${verdict.reason}`);
 * ```
 *
 * @example From a hand-written list
 * ```ts ignore
 * import { PluginManager, validatePluginsConfig } from "@tether/tether/sftpgo";
 *
 * const manager = new PluginManager(validatePluginsConfig([
 *   { type: "notifier", cmd: "/usr/local/bin/sftpgo-plugin-pubsub", args: ["serve"],
 *     notifier_options: { fs_events: ["upload"], retry_max_time: 60 } },
 * ]));
 * await manager.start();
 * manager.notifier.sendFsEvent({ action: "upload", username: "alice", virtualPath: "/a.txt" });
 * await manager.notifier.flush();
 * await manager.stop();
 * ```
 */
export class PluginManager implements AsyncDisposable {
  readonly #configs: readonly PluginConfig[];
  readonly #options: PluginManagerOptions;
  readonly #logger: Logger;
  readonly #hostEnv: Record<string, string>;
  readonly #plugins: Managed[];
  readonly #semaphore: Semaphore;
  #phase: "new" | "starting" | "running" | "closed" = "new";
  #stopping: Promise<StopReport> | undefined;
  #untrack: (() => void) | undefined;
  readonly #auth: AuthRouter;
  readonly #notifier: NotifierRouter;
  readonly #ipFilter: IpFilterRouter;
  readonly #eventSearcher: EventSearcherClient;
  readonly #metadata: MetadataClient;

  /**
   * Loads an SFTPGo config (a full `sftpgo.yaml`/`.json`, a `plugins:`
   * document or a bare list) and makes a manager for it; its warnings are
   * logged. Nothing runs until {@linkcode PluginManager.start}.
   *
   * @throws {ConfigError} When the file is not a valid configuration (code `config`, with line and column).
   */
  static async fromYaml(path: string, options: PluginManagerOptions = {}): Promise<PluginManager> {
    const configs = await loadPluginsConfig(path);
    const manager = new PluginManager(configs, options);
    for (const warning of configs.warnings ?? []) {
      manager.#logger.log({ level: "warn", message: `config: ${warning.text}`, fields: {} });
    }
    return manager;
  }

  /**
   * Makes a manager for validated plugin configs (from `loadPluginsConfig`,
   * `parsePluginsConfig` or `validatePluginsConfig`).
   *
   * @throws {TetherError} `config` when the combination cannot start (duplicate KMS scheme, two eventsearchers, ...).
   */
  constructor(configs: readonly PluginConfig[], options: PluginManagerOptions = {}) {
    checkPluginCombination(configs);
    this.#configs = configs;
    this.#options = options;
    this.#logger = options.logger ?? consoleLogger({ level: "warn", name: "tether.sftpgo" });
    this.#hostEnv = options.hostEnv ?? defaultHostEnv();
    this.#semaphore = new Semaphore(options.notifierConcurrency ?? 250);
    this.#plugins = configs.map((config) => {
      const name = pluginName(config);
      const supervisor = new PluginSupervisor({
        name,
        createClient: () => new PluginClient(this.#clientOptions(config, name)),
        restart: config.tether.restart,
        healthCheckIntervalMs: config.tether.healthCheckIntervalMs,
        healthCheckTimeoutMs: options.healthCheckTimeoutMs,
        healthCheckFailures: options.healthCheckFailures,
        stableAfterMs: options.stableAfterMs,
        logger: this.#logger,
      });
      // A down ipfilter allows at once (SFTPGo's rule), so a check sent to a dead process does not wait either.
      const resend = config.type !== "ipfilter";
      return {
        config,
        name,
        supervisor,
        dispenser: this.#gate(supervisor, config.tether.callTimeoutMs, resend),
      };
    });
    const gate = (what: string) => this.#assertOpen(what);
    this.#auth = new AuthRouter(this.#plugins, gate);
    this.#notifier = new NotifierRouter(this.#plugins, gate);
    this.#ipFilter = new IpFilterRouter(this.#plugins, gate);
    const searcher = this.#plugins.find((p) => p.config.type === "eventsearcher");
    this.#eventSearcher = new EventSearcherClient(
      searcher?.dispenser ?? missing("eventsearcher"),
      callDefaults(searcher),
    );
    const metadata = this.#plugins.find((p) => p.config.type === "metadata");
    this.#metadata = new MetadataClient(metadata?.dispenser ?? missing("metadata"), callDefaults(metadata));
  }

  /** The plugin configs, in file order. */
  get configs(): readonly PluginConfig[] {
    return this.#configs;
  }

  /**
   * Starts every plugin (in parallel). If any fails, the others are stopped
   * and the error names each plugin that failed and why.
   *
   * @throws {TetherError} With the first failure's code (`exited`, `start_timeout`, `checksum`, `config`, ...).
   */
  async start(): Promise<void> {
    if (this.#phase !== "new") {
      throw this.#phase === "closed"
        ? closedError("start()")
        : new TetherError("config", "the plugin manager was already started");
    }
    this.#phase = "starting";
    const results = await Promise.allSettled(this.#plugins.map((p) => p.supervisor.start()));
    const failures = results.flatMap((r, i) =>
      r.status === "rejected" ? [{ plugin: this.#plugins[i], error: r.reason }] : []
    );
    if (failures.length > 0) {
      this.#phase = "closed";
      await Promise.allSettled(this.#plugins.map((p) => p.supervisor.stop()));
      const lines = failures.map(({ plugin, error }) =>
        `plugin ${plugin.name} (${plugin.config.cmd}, ${pluginWhere(plugin.config)}) failed to start: ${
          error instanceof Error ? error.message : String(error)
        }`
      );
      const first = failures[0];
      const code = first.error instanceof TetherError ? first.error.code : "exited";
      throw new TetherError(
        code,
        lines.join("\n") +
          (failures.length < this.#plugins.length
            ? "\nThe other plugins were stopped; nothing is running."
            : ""),
        { plugin: first.plugin.name, cause: first.error },
      );
    }
    for (const p of this.#plugins) {
      if (p.config.type !== "notifier") continue;
      const lane: NotifierLaneOptions = {
        name: p.name,
        supervisor: p.supervisor,
        options: p.config.notifierOptions!,
        semaphore: this.#semaphore,
        callTimeoutMs: p.config.tether.callTimeoutMs,
        logger: this.#logger,
        retryDelayMs: this.#options.notifierRetryDelayMs,
        send: sendEvent,
      };
      p.lane = p.config.tether.notifierOrder === "unordered"
        ? new UnorderedLane(lane)
        : new NotifierLane(lane);
    }
    this.#phase = "running";
    this.#untrack = track({
      kill: () => this.#stopOnSignal(),
      killNow: () => {}, // Deno.exit(): each client SIGKILLs its own process
      onSignals: this.#options.handleSignals ?? true,
      first: true,
    });
    this.#logger.log({
      level: "info",
      message: `started ${this.#plugins.length} SFTPGo plugin(s)`,
      fields: { plugins: this.#plugins.map((p) => `${p.name} pid ${p.supervisor.pid}`).join(", ") },
    });
  }

  /** Auth, routed by `auth_options.scope` (first plugin with the method's bit). */
  get auth(): AuthRouter {
    return this.#auth;
  }

  /** Notifier fan-out: returns at once, delivers per plugin in order (or unordered, per `notifier_order`), with retries. */
  get notifier(): NotifierRouter {
    return this.#notifier;
  }

  /** The ipfilter that decides: the last one defined. */
  get ipFilter(): IpFilterRouter {
    return this.#ipFilter;
  }

  /** The eventsearcher plugin; its calls reject with `config` when none is configured. */
  get eventSearcher(): EventSearcherClient {
    return this.#eventSearcher;
  }

  /** The legacy metadata plugin; its calls reject with `config` when none is configured. */
  get metadata(): MetadataClient {
    return this.#metadata;
  }

  /** The KMS plugins: name, scheme and encrypted status of each. */
  get kmsPlugins(): readonly { name: string; scheme: string; encryptedStatus: string }[] {
    return this.#plugins.filter((p) => p.config.type === "kms").map((p) => ({
      name: p.name,
      scheme: p.config.kmsOptions!.scheme,
      encryptedStatus: p.config.kmsOptions!.encryptedStatus,
    }));
  }

  /**
   * The KMS plugin registered for a URL scheme (`kms_options.scheme`, e.g. `hashivault`).
   *
   * @throws {TetherError} `config` when no KMS plugin has that scheme.
   */
  kms(scheme: string): KmsClient {
    return this.#kms((p) => p.config.kmsOptions?.scheme === scheme, `scheme ${JSON.stringify(scheme)}`);
  }

  /**
   * The KMS plugin registered for a secret status (`kms_options.encrypted_status`, e.g. `VaultTransit`).
   *
   * @throws {TetherError} `config` when no KMS plugin has that status.
   */
  kmsByStatus(status: string): KmsClient {
    return this.#kms(
      (p) => p.config.kmsOptions?.encryptedStatus === status,
      `encrypted_status ${JSON.stringify(status)}`,
    );
  }

  #kms(match: (p: Managed) => boolean, what: string): KmsClient {
    const plugin = this.#plugins.find((p) => p.config.type === "kms" && match(p));
    if (!plugin) {
      const known = this.kmsPlugins.map((k) => `${k.name}: ${k.scheme}/${k.encryptedStatus}`).join(", ");
      throw new TetherError(
        "config",
        `no kms plugin has ${what} (configured: ${known || "none"}); add one with that kms_options`,
      );
    }
    return new KmsClient(plugin.dispenser, callDefaults(plugin));
  }

  /** Each plugin's state, restarts, pid and (for notifiers) delivery counters. */
  status(): PluginStatus[] {
    const authActive = new Set(
      (Object.keys(AUTH_METHODS) as AuthMethod[]).map((m) => authPluginFor(this.#configs, m)),
    );
    const ipActive = activeIpFilter(this.#configs);
    return this.#plugins.map((p, i) => {
      const s = p.supervisor;
      const counters = p.lane?.counters;
      const active = p.config.type === "auth"
        ? authActive.has(i)
        : p.config.type === "ipfilter"
        ? ipActive === i
        : true;
      return {
        name: p.name,
        type: p.config.type,
        cmd: p.config.cmd,
        state: s.state,
        active,
        ...(s.pid !== undefined ? { pid: s.pid } : {}),
        restarts: s.restarts,
        failureStreak: s.failureStreak,
        ...(s.lastExit ? { lastExit: s.lastExit } : {}),
        ...(s.lastError ? { lastError: s.lastError } : {}),
        queued: counters?.queued ?? 0,
        delivered: counters?.delivered ?? 0,
        dropped: counters?.dropped ?? 0,
        failedSends: counters?.failedSends ?? 0,
      };
    });
  }

  /**
   * Stops gracefully: new calls and events are refused (`closed`), notifier
   * queues get up to `timeoutMs` (default `stopTimeoutMs`, 10 s) to drain
   * (plugins are still restarted meanwhile), then every plugin is killed.
   * Idempotent.
   */
  stop(options: { timeoutMs?: number } = {}): Promise<StopReport> {
    this.#stopping ??= this.#stop(options.timeoutMs ?? this.#options.stopTimeoutMs ?? 10_000);
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<StopReport> {
    const began = performance.now();
    this.#phase = "closed";
    const lanes = this.#plugins.flatMap((p) => p.lane ? [p.lane] : []);
    const flushed = (await Promise.all(lanes.map((lane) => lane.idle(timeoutMs)))).every(Boolean);
    const left = new Map<Managed, number>();
    await Promise.all(this.#plugins.map(async (p) => {
      if (p.lane) left.set(p, await p.lane.stop());
    }));
    await Promise.allSettled(this.#plugins.map((p) => p.supervisor.stop()));
    const plugins = this.#plugins.map((p) => {
      const c = p.lane?.counters;
      return {
        name: p.name,
        type: p.config.type,
        restarts: p.supervisor.restarts,
        delivered: c?.delivered ?? 0,
        left: left.get(p) ?? 0,
        dropped: c?.dropped ?? 0,
      };
    });
    for (const p of plugins) {
      if (p.left > 0) {
        this.#logger.log({
          level: "warn",
          message:
            `${p.left} notifier event(s) were still queued when the plugin was stopped; they were not delivered`,
          fields: { plugin: p.name, delivered: p.delivered, dropped: p.dropped },
        });
      }
    }
    const sum = (key: "delivered" | "left" | "dropped") => plugins.reduce((n, p) => n + p[key], 0);
    this.#untrack?.();
    return {
      flushed,
      durationMs: Math.round(performance.now() - began),
      delivered: sum("delivered"),
      left: sum("left"),
      dropped: sum("dropped"),
      plugins,
    };
  }

  /** A signal ends the host: stop as stop() does, and log the report, the last word on every event. */
  async #stopOnSignal(): Promise<void> {
    const report = await this.stop();
    this.#logger.log({
      level: report.left > 0 || report.dropped > 0 ? "warn" : "info",
      message: "plugin manager stopped by a signal",
      fields: {
        delivered: report.delivered,
        left: report.left,
        dropped: report.dropped,
        flushed: report.flushed,
      },
    });
  }

  /** Same as {@linkcode PluginManager.stop}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  #assertOpen(what: string): void {
    if (this.#phase === "closed") throw closedError(what);
    if (this.#phase !== "running") {
      throw new TetherError(
        "closed",
        `${what}: the plugin manager is not started; await manager.start() first`,
      );
    }
  }

  /** A dispenser that refuses calls once the manager stops, then waits for the plugin through restarts. */
  #gate(supervisor: PluginSupervisor, callTimeoutMs: number, resendAfterDeath: boolean): PluginDispenser {
    const inner = supervisor.dispenser(callTimeoutMs, resendAfterDeath);
    return {
      dispense: <S extends DescService>(service: S): ServiceClient<S> => {
        const client = (inner.dispense as (service: DescService) => unknown)(service) as Record<
          string,
          (...args: unknown[]) => unknown
        >;
        return new Proxy(client, {
          get: (target, key) => {
            const value = target[key as string];
            if (typeof value !== "function") return value;
            return (...args: unknown[]) => {
              this.#assertOpen(`${supervisor.name} ${String(key)}`);
              return value(...args);
            };
          },
        }) as unknown as ServiceClient<S>;
      },
    };
  }

  #clientOptions(config: PluginConfig, name: string): PluginClientOptions {
    const t = config.tether;
    const options = this.#options;
    const deno = runtimeFor(config.cmd, t.runtime) === "deno";
    return {
      cmd: resolveCmd(config.cmd, options.baseDir),
      args: config.args,
      handshake: sftpgoHandshakes[config.type],
      autoMTLS: config.autoMtls,
      env: pluginEnvironment(config, this.#hostEnv),
      ...(config.sha256sum ? { sha256: config.sha256sum } : {}),
      runtime: t.runtime,
      permissions: t.permissions,
      allowBroadPermissions: t.allowBroadPermissions,
      ...(t.uid !== undefined ? { uid: t.uid } : {}),
      ...(t.gid !== undefined ? { gid: t.gid } : {}),
      ...(t.maxReceiveMessageBytes !== undefined ? { maxReceiveMessageBytes: t.maxReceiveMessageBytes } : {}),
      ...(t.memoryTrimIdleMs !== undefined
        ? { memoryTrim: t.memoryTrimIdleMs === 0 ? false : { idleMs: t.memoryTrimIdleMs } }
        : {}),
      startTimeoutMs: t.startTimeoutMs,
      ...(deno && !config.sha256sum && options.denoConfig ? { denoConfig: options.denoConfig } : {}),
      logger: this.#logger,
      name,
      ...(options.onPermissionEvent ? { onPermissionEvent: options.onPermissionEvent } : {}),
      handleSignals: options.handleSignals ?? true,
      ...options.clientOptions?.(config, name),
    };
  }
}

/** Each call's deadline is the plugin's `tether.call_timeout_ms` (default 20 s, the sdk's), covering a wait for a restart. */
function callDefaults(plugin: Managed | undefined): { timeoutMs?: number } {
  return plugin ? { timeoutMs: plugin.config.tether.callTimeoutMs } : {};
}

function missing(type: PluginType): PluginDispenser {
  return {
    dispense: () => {
      throw new TetherError("config", `no ${type} plugin is configured; add one to the plugins list`);
    },
  };
}

// One NotifierClient per process and deadline, not one per event: this is every event's path.
const notifierClients = new WeakMap<PluginClient, { timeoutMs: number; notifier: NotifierClient }>();

function sendEvent(client: PluginClient, item: LaneEvent, timeoutMs: number): Promise<void> {
  let cached = notifierClients.get(client);
  if (cached?.timeoutMs !== timeoutMs) {
    cached = { timeoutMs, notifier: new NotifierClient(client, { timeoutMs }) };
    notifierClients.set(client, cached);
  }
  const notifier = cached.notifier;
  switch (item.kind) {
    case "fs":
      return notifier.sendFsEvent(item.event);
    case "provider":
      return notifier.sendProviderEvent(item.event);
    case "log":
      return notifier.sendLogEvent(item.event);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Routers

/**
 * Auth calls routed as SFTPGo does: each login method goes to the first auth
 * plugin whose `auth_options.scope` has the method's bit, with no fallthrough.
 * A rejection means the login fails. Keyboard-interactive steps go to the
 * plugin that handles keyboard-interactive logins (SFTPGo picks the first
 * with the *password* bit, which splits one login across two plugins when
 * they differ).
 *
 * @example
 * ```ts ignore
 * const result = await manager.auth.checkUserAndPublicKey({ username: "alice", pubKey: "ssh-ed25519 AAAA...", ip: "198.51.100.7", protocol: "SSH" });
 * console.log(manager.auth.pluginFor("publicKey")); // e.g. "auth#1"
 * ```
 */
export class AuthRouter {
  readonly #routes: Record<AuthMethod, { name: string; client: AuthClient } | undefined>;
  readonly #scope: number;
  readonly #gate: (what: string) => void;

  /** Built by {@linkcode PluginManager}. */
  constructor(plugins: readonly Managed[], gate: (what: string) => void) {
    const configs = plugins.map((p) => p.config);
    const clients = new Map<number, AuthClient>();
    const route = (method: AuthMethod) => {
      const i = authPluginFor(configs, method);
      if (i < 0) return undefined;
      if (!clients.has(i)) clients.set(i, new AuthClient(plugins[i].dispenser, callDefaults(plugins[i])));
      return { name: plugins[i].name, client: clients.get(i)! };
    };
    this.#routes = {
      password: route("password"),
      publicKey: route("publicKey"),
      keyboardInteractive: route("keyboardInteractive"),
      tlsCertificate: route("tlsCertificate"),
    };
    this.#scope = configs.reduce((scope, c) => scope | (c.authOptions?.scope ?? 0), 0);
    this.#gate = gate;
  }

  /** All auth plugins' scopes ORed (SFTPGo's `authScopes`): which methods any plugin handles. */
  get scope(): number {
    return this.#scope;
  }

  /** The plugin that handles `method`, or `undefined`. */
  pluginFor(method: AuthMethod): string | undefined {
    return this.#routes[method]?.name;
  }

  /** Password login (scope bit 1). */
  async checkUserAndPass(
    request: AuthCheckBase & { readonly password: string },
    options?: CallOptions,
  ): Promise<AuthResult> {
    return await this.#route("password", "checkUserAndPass").checkUserAndPass(request, options);
  }

  /** Public key login (scope bit 2). */
  async checkUserAndPublicKey(
    request: AuthCheckBase & { readonly pubKey: string },
    options?: CallOptions,
  ): Promise<AuthResult> {
    return await this.#route("publicKey", "checkUserAndPublicKey").checkUserAndPublicKey(request, options);
  }

  /** Whether the plugin takes this user through keyboard-interactive steps (scope bit 4). */
  async checkUserAndKeyboardInteractive(request: AuthCheckBase, options?: CallOptions): Promise<AuthResult> {
    return await this.#route("keyboardInteractive", "checkUserAndKeyboardInteractive")
      .checkUserAndKeyboardInteractive(request, options);
  }

  /** TLS client certificate login (scope bit 8). */
  async checkUserAndTLSCert(
    request: AuthCheckBase & { readonly tlsCert: string },
    options?: CallOptions,
  ): Promise<AuthResult> {
    return await this.#route("tlsCertificate", "checkUserAndTLSCert").checkUserAndTLSCert(request, options);
  }

  /** One keyboard-interactive step (scope bit 4). */
  async sendKeyboardAuthRequest(step: KeyboardAuthStep, options?: CallOptions): Promise<KeyboardAuthReply> {
    return await this.#route("keyboardInteractive", "sendKeyboardAuthRequest").sendKeyboardAuthRequest(
      step,
      options,
    );
  }

  /** A whole keyboard-interactive login, as SFTPGo runs it (scope bit 4). */
  async keyboardInteractive(options: KeyboardInteractiveOptions): Promise<KeyboardInteractiveOutcome> {
    return await this.#route("keyboardInteractive", "keyboardInteractive").keyboardInteractive(options);
  }

  #route(method: AuthMethod, call: string): AuthClient {
    this.#gate(`auth.${call}`);
    const route = this.#routes[method];
    if (route) return route.client;
    const { bit, label } = AUTH_METHODS[method];
    throw new TetherError(
      "config",
      `no auth plugin handles ${label}: none has bit ${bit} in auth_options.scope (all scopes ORed: ${this.#scope}); ` +
        `SFTPGo would not offer this method through plugins either. Add ${bit} to an auth plugin's scope`,
    );
  }
}

/**
 * Notifier fan-out: every notifier plugin whose `notifier_options` subscribe
 * to the event gets it. The send methods return at once (as SFTPGo's); each
 * plugin receives its events in order, one at a time, or, with
 * `notifier_order: unordered`, each as its own send in any order; at most
 * `notifierConcurrency` sends are in flight over all plugins. Failed sends and
 * events arriving while a plugin restarts follow SFTPGo's retry rules.
 *
 * @example
 * ```ts ignore
 * const plugins = manager.notifier.sendFsEvent({ action: "upload", username: "alice", virtualPath: "/a.txt", fileSize: 42 });
 * console.log(`queued for ${plugins} plugin(s)`);
 * await manager.notifier.flush({ timeoutMs: 5_000 });
 * ```
 */
export class NotifierRouter {
  readonly #plugins: readonly Managed[];
  readonly #gate: (what: string) => void;

  /** Built by {@linkcode PluginManager}. */
  constructor(plugins: readonly Managed[], gate: (what: string) => void) {
    this.#plugins = plugins.filter((p) => p.config.type === "notifier");
    this.#gate = gate;
  }

  /**
   * Queues a filesystem event for every plugin whose `fs_events` has its
   * action; returns how many plugins took it (a plugin whose retry rules
   * refused it counts it as dropped instead).
   *
   * @throws {TetherError} `closed` once the manager stops.
   */
  sendFsEvent(event: FsEventInput): number {
    this.#gate("notifier.sendFsEvent");
    const timestampNs = toUnixNanos(event.timestamp ?? new Date());
    const item: LaneEvent = { kind: "fs", event: { ...event, timestamp: timestampNs }, timestampNs };
    return this.#offer(item, (p) => wantsFsEvent(p.config.notifierOptions!, event.action));
  }

  /** Queues a provider event for every plugin whose `provider_events` and `provider_objects` both match. */
  sendProviderEvent(event: ProviderEventInput): number {
    this.#gate("notifier.sendProviderEvent");
    const timestampNs = toUnixNanos(event.timestamp ?? new Date());
    const item: LaneEvent = { kind: "provider", event: { ...event, timestamp: timestampNs }, timestampNs };
    return this.#offer(
      item,
      (p) => wantsProviderEvent(p.config.notifierOptions!, event.action, event.objectType),
    );
  }

  /** Queues a log event for every plugin whose `log_events` has its code. */
  sendLogEvent(event: LogEventInput): number {
    this.#gate("notifier.sendLogEvent");
    const timestampNs = toUnixNanos(event.timestamp ?? new Date());
    const item: LaneEvent = { kind: "log", event: { ...event, timestamp: timestampNs }, timestampNs };
    return this.#offer(item, (p) => wantsLogEvent(p.config.notifierOptions!, event.event));
  }

  /**
   * Waits until every queue is empty (events delivered or dropped). Resolves
   * `false` if `timeoutMs` (default: no limit) passes first.
   */
  async flush(options: { timeoutMs?: number } = {}): Promise<boolean> {
    const results = await Promise.all(this.#plugins.map((p) => p.lane?.idle(options.timeoutMs) ?? true));
    return results.every(Boolean);
  }

  /** Events waiting over all notifier plugins. */
  get queued(): number {
    return this.#plugins.reduce((n, p) => n + (p.lane?.counters.queued ?? 0), 0);
  }

  #offer(item: LaneEvent, wants: (p: Managed) => boolean): number {
    let taken = 0;
    for (const p of this.#plugins) {
      if (p.lane && wants(p) && p.lane.offer(item)) taken++;
    }
    return taken;
  }
}

/**
 * The ipfilter that decides, as SFTPGo: the last one defined. An error from
 * it denies; a plugin that is not running (exited, restarting, failed) or
 * that exits during the call allows, and the reason says so.
 *
 * @example
 * ```ts ignore
 * const decision = await manager.ipFilter.checkIP("10.1.2.3", "SSH");
 * if (!decision.allowed) console.log(`refused by ${decision.plugin}: ${decision.reason}`);
 * ```
 */
export class IpFilterRouter {
  readonly #plugin: Managed | undefined;
  readonly #client: IpFilterClient | undefined;
  readonly #gate: (what: string) => void;

  /** Built by {@linkcode PluginManager}. */
  constructor(plugins: readonly Managed[], gate: (what: string) => void) {
    const i = activeIpFilter(plugins.map((p) => p.config));
    this.#plugin = i < 0 ? undefined : plugins[i];
    this.#client = this.#plugin
      ? new IpFilterClient(this.#plugin.dispenser, callDefaults(this.#plugin))
      : undefined;
    this.#gate = gate;
  }

  /** The deciding plugin's name, or `undefined` when no ipfilter is configured. */
  get plugin(): string | undefined {
    return this.#plugin?.name;
  }

  /**
   * Whether `ip` may connect over `protocol` (`SSH`, `FTP`, `DAV`, `HTTP`).
   * Without an ipfilter plugin every address is allowed.
   *
   * @throws {TetherError} `closed` once the manager stops.
   */
  async checkIP(ip: string, protocol: string, options?: CallOptions): Promise<IpFilterDecision> {
    this.#gate("ipFilter.checkIP");
    const plugin = this.#plugin;
    if (!plugin || !this.#client) return { allowed: true, reason: "no ipfilter plugin is configured" };
    const state = plugin.supervisor.state;
    if (state !== "running") {
      return {
        allowed: true,
        plugin: plugin.name,
        reason: `${plugin.name} is ${state}: allowed, as SFTPGo does`,
      };
    }
    try {
      const verdict = await this.#client.checkIP(ip, protocol, options);
      return verdict.allowed
        ? { allowed: true, plugin: plugin.name }
        : { allowed: false, plugin: plugin.name, reason: verdict.reason };
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      if (error instanceof TetherError && error.code === "exited") {
        return {
          allowed: true,
          plugin: plugin.name,
          reason: `${plugin.name} exited: allowed, as SFTPGo does (${reason})`,
        };
      }
      if (error instanceof TetherError && error.code === "closed") throw error;
      return { allowed: false, plugin: plugin.name, reason: `${plugin.name} did not answer: ${reason}` };
    }
  }

  /** Tells the deciding plugin to reload its lists (SFTPGo does on its own reload); no-op without one. */
  async reload(options?: CallOptions): Promise<void> {
    this.#gate("ipFilter.reload");
    await this.#client?.reload(options);
  }
}
