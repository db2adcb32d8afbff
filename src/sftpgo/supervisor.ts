/**
 * Keeps one plugin process alive for {@linkcode PluginManager}, better than
 * SFTPGo's 30 s ticker:
 * - an exit is noticed at once (the process's exit status, not a poll) and the
 *   plugin is started again after an exponential backoff with a cap
 *   (`tether.restart`), giving up after `max_restarts` consecutive failures;
 * - a hung plugin is found by gRPC health checks (`tether.health_check_interval_ms`):
 *   after a few consecutive failures it is SIGKILLed and restarted;
 * - callers ask for the running client with {@linkcode PluginSupervisor.acquire},
 *   which waits through a restart up to the caller's deadline and then fails
 *   with a typed error, never hangs.
 *
 * @module
 */

import type { DescService } from "@bufbuild/protobuf";
import type { PluginClient, PluginExit } from "../client.ts";
import { GrpcStatus, TetherError } from "../errors.ts";
import type { Logger, LogRecord } from "../logs.ts";
import type { CallOptions, ServiceClient } from "../rpc.ts";
import type { RestartOptions } from "./config.ts";
import type { PluginDispenser } from "./types.ts";

/**
 * Where a supervised plugin is in its life:
 * - `stopped`: not started yet, or stopped by the host;
 * - `starting`: the first start is under way;
 * - `running`: it answers calls;
 * - `restarting`: it exited (or hung) and is being started again;
 * - `failed`: it exited more than `max_restarts` times in a row; Tether gave up.
 *
 * @example
 * ```ts
 * import type { PluginState } from "./supervisor.ts";
 * const state: PluginState = "restarting";
 * ```
 */
export type PluginState = "stopped" | "starting" | "running" | "restarting" | "failed";

/** What a {@linkcode PluginSupervisor} needs. */
export interface PluginSupervisorOptions {
  /** The plugin's name in logs and errors, e.g. `notifier#2`. */
  readonly name: string;
  /** Makes a fresh, unstarted client for each launch. */
  readonly createClient: () => PluginClient;
  /** Backoff and give-up policy. */
  readonly restart: RestartOptions;
  /** Health check period; 0 disables health checks. */
  readonly healthCheckIntervalMs: number;
  /** Deadline of one health check (default: the interval, at most 5000 ms). */
  readonly healthCheckTimeoutMs?: number;
  /** Consecutive failed health checks that count as hung (default 3). */
  readonly healthCheckFailures?: number;
  /** How long a restarted plugin must stay up before its failure streak is forgotten (default 10000 ms). */
  readonly stableAfterMs?: number;
  /** Receives restarts, exits and health failures. */
  readonly logger: Logger;
}

/**
 * How {@linkcode PluginSupervisor.acquire} waits.
 *
 * @example
 * ```ts
 * import type { AcquireOptions } from "./supervisor.ts";
 * const options: AcquireOptions = { deadline: Date.now() + 20_000 };
 * ```
 */
export interface AcquireOptions {
  /** Give up at this time (ms since the epoch); default: wait as long as it takes. */
  readonly deadline?: number;
  /**
   * The call's whole deadline in ms, named in the error at the deadline. Without it the error names the time
   * left when the wait began, which a millisecond spent before it makes one less than what the caller set.
   */
  readonly timeoutMs?: number;
  /** Give up when this is aborted. */
  readonly signal?: AbortSignal;
}

interface Waiter {
  resolve(client: PluginClient): void;
  reject(error: TetherError): void;
}

/**
 * Whether a failed call never reached a live plugin: the client was gone
 * before the call was sent (its death was already seen), or it was being
 * torn down between acquire() and the call. Such a call waits for the
 * restart instead of counting as a failure (dispenser calls and notifier lanes).
 *
 * @example
 * ```ts ignore
 * import { neverReached } from "./supervisor.ts";
 * if (neverReached(client, startedAt, error)) console.log("resend after the restart");
 * ```
 */
export function neverReached(client: PluginClient, startedAt: number, error: unknown): boolean {
  if (!(error instanceof TetherError) || (error.code !== "exited" && error.code !== "closed")) return false;
  return client.sentAfterDeath(startedAt) || (error.code === "closed" && client.hasExited);
}

function describeExit(exit: PluginExit | undefined): string {
  if (!exit) return "it exited";
  return `exit code ${exit.code}${exit.signal ? `, signal ${exit.signal}` : ""}`;
}

/**
 * One plugin under supervision.
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "../client.ts";
 * import { consoleLogger } from "../logs.ts";
 * import { sftpgoHandshakes } from "./handshakes.ts";
 * import { PluginSupervisor } from "./supervisor.ts";
 *
 * const supervisor = new PluginSupervisor({
 *   name: "auth#0",
 *   createClient: () => new PluginClient({ cmd: "/usr/local/bin/sftpgo-plugin-auth", handshake: sftpgoHandshakes.auth }),
 *   restart: { initialBackoffMs: 250, maxBackoffMs: 30_000, maxRestarts: 0 },
 *   healthCheckIntervalMs: 5_000,
 *   logger: consoleLogger({ level: "info", name: "plugins.auth" }),
 * });
 * await supervisor.start();
 * const client = await supervisor.acquire({ deadline: Date.now() + 20_000 });
 * await supervisor.stop();
 * ```
 */
export class PluginSupervisor {
  readonly #o: PluginSupervisorOptions;
  #state: PluginState = "stopped";
  #started = false;
  #client: PluginClient | undefined;
  #launching: PluginClient | undefined;
  #launch: Promise<void> | undefined;
  #restarts = 0;
  #streak = 0;
  #lastExit: PluginExit | undefined;
  #lastError: string | undefined;
  #hung: PluginClient | undefined;
  #restartTimer: ReturnType<typeof setTimeout> | undefined;
  #healthTimer: ReturnType<typeof setTimeout> | undefined;
  #stableTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #waiters = new Set<Waiter>();
  readonly #cleanups = new Set<Promise<unknown>>();

  /** Describes the supervision; nothing runs until {@linkcode PluginSupervisor.start}. */
  constructor(options: PluginSupervisorOptions) {
    this.#o = options;
  }

  /** The plugin's name. */
  get name(): string {
    return this.#o.name;
  }

  /** Where the plugin is in its life. */
  get state(): PluginState {
    // A process known dead is never "running", even before its exit was handled.
    return this.#state === "running" && !this.#current() ? "restarting" : this.#state;
  }

  /** How many times the plugin was started again after an exit or a hang (successful starts only). */
  get restarts(): number {
    return this.#restarts;
  }

  /** Consecutive failed runs or restart attempts since the plugin was last stable. */
  get failureStreak(): number {
    return this.#streak;
  }

  /** The running process id. */
  get pid(): number | undefined {
    return this.#current()?.pid;
  }

  /** The running client, if any (no waiting). */
  get client(): PluginClient | undefined {
    return this.#current();
  }

  /** How the last process ended, if one did. */
  get lastExit(): PluginExit | undefined {
    return this.#lastExit;
  }

  /** The last exit, start failure or hang, in words (kept after a successful restart, as history). */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /**
   * Starts the plugin the first time. A failure is thrown (and nothing is
   * restarted): a plugin that cannot start at all is a configuration problem.
   */
  async start(): Promise<void> {
    if (this.#started) throw new TetherError("config", `plugin ${this.#o.name} was already started`);
    this.#started = true;
    this.#setState("starting");
    try {
      await this.#startOnce();
    } catch (error) {
      this.#setState("stopped");
      throw error;
    }
  }

  /**
   * The running client; while the plugin restarts, waits until it is back.
   *
   * @throws {TetherError} `closed` when the supervisor is stopped (or was
   * never started); `exited` when the plugin failed for good, or is still
   * down at the deadline; `rpc`/CANCELLED when `signal` aborts.
   */
  acquire(options: AcquireOptions = {}): Promise<PluginClient> {
    const running = this.#current();
    if (running) return Promise.resolve(running);
    const early = this.#unavailable();
    if (early) return Promise.reject(early);
    if (options.signal?.aborted) return Promise.reject(this.#cancelled());
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => settle(() => reject(this.#cancelled()));
      const settle = (fn: () => void) => {
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        this.#waiters.delete(waiter);
        fn();
      };
      const waiter: Waiter = {
        resolve: (client) => settle(() => resolve(client)),
        reject: (error) => settle(() => reject(error)),
      };
      this.#waiters.add(waiter);
      options.signal?.addEventListener("abort", onAbort, { once: true });
      if (options.deadline !== undefined && Number.isFinite(options.deadline)) {
        const waitMs = Math.max(0, options.deadline - Date.now());
        const named = options.timeoutMs ?? waitMs;
        timer = setTimeout(() => settle(() => reject(this.#stillDown(named))), waitMs);
      }
    });
  }

  /**
   * Stops supervising and kills the plugin (go-plugin's way: Shutdown, then
   * SIGKILL after 2 s). Waiting callers get `closed`.
   */
  async stop(): Promise<void> {
    const wasStopped = this.#state === "stopped" && !this.#launching;
    this.#setState("stopped");
    this.#started = true;
    clearTimeout(this.#restartTimer);
    clearTimeout(this.#healthTimer);
    clearTimeout(this.#stableTimer);
    const kills: Promise<unknown>[] = [];
    if (this.#launching) kills.push(this.#launching.kill());
    if (this.#client) kills.push(this.#client.kill());
    await Promise.allSettled(kills);
    await this.#launch?.catch(() => {});
    await Promise.allSettled([...this.#cleanups]);
    if (!wasStopped) this.#log("debug", "plugin stopped");
  }

  /**
   * A {@linkcode PluginDispenser} whose unary methods wait for the plugin
   * through restarts: each call gets `timeoutMs` (default
   * `defaultTimeoutMs`) for both the wait and the call itself. Fits the
   * typed wrappers (`AuthClient`, `KmsClient`, ...).
   *
   * A call sent to a process already known dead is sent again after the
   * restart (`resendAfterDeath`, default true), as a call made during the
   * restart would wait; with `false` it fails with `exited` instead, for
   * callers that answer a down plugin at once (the ipfilter allows).
   */
  dispenser(defaultTimeoutMs: number, resendAfterDeath = true): PluginDispenser {
    const proxies = new Map<DescService, unknown>();
    const clients = new WeakMap<PluginClient, Map<DescService, Record<string, unknown>>>();
    const direct = (client: PluginClient, service: DescService): Record<string, unknown> => {
      let byService = clients.get(client);
      if (!byService) clients.set(client, byService = new Map());
      let typed = byService.get(service);
      if (!typed) byService.set(service, typed = client.dispense(service) as Record<string, unknown>);
      return typed;
    };
    return {
      dispense: <S extends DescService>(service: S): ServiceClient<S> => {
        const cached = proxies.get(service);
        if (cached) return cached as ServiceClient<S>;
        const proxy: Record<string, unknown> = {};
        for (const method of service.methods) {
          if (method.methodKind !== "unary") {
            proxy[method.localName] = () => {
              throw new TetherError(
                "config",
                `${method.name} is a streaming method; a supervised plugin only relays unary calls`,
                { plugin: this.#o.name },
              );
            };
            continue;
          }
          proxy[method.localName] = async (request: unknown, options: CallOptions = {}) => {
            const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
            const deadline = Date.now() + timeoutMs;
            while (true) {
              const client = await this.acquire({ deadline, timeoutMs, signal: options.signal });
              const startedAt = Date.now();
              try {
                const call = direct(client, service)[method.localName] as (
                  request: unknown,
                  options: CallOptions,
                ) => Promise<unknown>;
                return await call(request, { ...options, timeoutMs: Math.max(1, deadline - Date.now()) });
              } catch (error) {
                // Sent to a process already gone: it never reached a plugin, so wait for the restart as a call
                // made during the restart would (acquire() will not hand out the dead client again).
                if (resendAfterDeath && neverReached(client, startedAt, error) && Date.now() < deadline) {
                  continue;
                }
                throw error;
              }
            }
          };
        }
        proxies.set(service, proxy);
        return proxy as ServiceClient<S>;
      },
    };
  }

  // -------------------------------------------------------------------------------------------------------------

  async #startOnce(): Promise<void> {
    const client = this.#o.createClient();
    this.#launching = client;
    const launch = client.start();
    this.#launch = launch;
    try {
      await launch;
    } finally {
      this.#launching = undefined;
    }
    if (this.#state === "stopped") {
      await client.kill();
      throw new TetherError("closed", `plugin ${this.#o.name} was stopped while starting`, {
        plugin: this.#o.name,
      });
    }
    this.#client = client;
    // Synchronous: the supervisor stops handing the client out the instant its exit is known.
    client.onExit((exit) => this.#onExit(client, exit));
    if (!client.running) return; // it died already: #onExit scheduled the restart
    this.#setState("running");
    this.#scheduleHealthCheck(client);
    clearTimeout(this.#stableTimer);
    if (this.#streak > 0) {
      this.#stableTimer = setTimeout(() => {
        if (this.#current() === client) this.#streak = 0;
      }, this.#o.stableAfterMs ?? 10_000);
    }
  }

  #onExit(client: PluginClient, exit: PluginExit): void {
    if (client !== this.#client) return;
    this.#track(client.kill()); // releases the channel, broker and private directory
    clearTimeout(this.#healthTimer);
    clearTimeout(this.#stableTimer);
    if (this.#state === "stopped" || this.#state === "failed") return;
    this.#lastExit = exit;
    const hung = this.#hung === client;
    this.#hung = undefined;
    this.#log(hung ? "warn" : "error", hung ? "killed hung plugin" : "plugin exited unexpectedly", {
      pid: client.pid,
      code: exit.code,
      signal: exit.signal,
    });
    if (!hung) this.#lastError = `exited (${describeExit(exit)})`;
    this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    this.#streak++;
    const { initialBackoffMs, maxBackoffMs, maxRestarts } = this.#o.restart;
    if (maxRestarts > 0 && this.#streak > maxRestarts) {
      this.#setState("failed");
      this.#log("error", "plugin keeps failing; giving up (tether.restart.max_restarts reached)", {
        attempts: this.#streak,
        last_error: this.#lastError,
      });
      return;
    }
    this.#setState("restarting");
    const backoff = Math.min(initialBackoffMs * 2 ** Math.min(this.#streak - 1, 30), maxBackoffMs);
    this.#log("info", "restarting plugin", { in_ms: backoff, attempt: this.#streak });
    this.#restartTimer = setTimeout(async () => {
      if (this.#state !== "restarting") return;
      try {
        await this.#startOnce();
        this.#restarts++;
        this.#log("info", "plugin restarted", { pid: this.#client?.pid, restarts: this.#restarts });
      } catch (error) {
        if (this.#state !== "restarting") return;
        this.#lastError = error instanceof Error ? error.message : String(error);
        this.#log("error", "plugin restart failed", { error: this.#lastError });
        this.#scheduleRestart();
      }
    }, backoff);
  }

  #scheduleHealthCheck(client: PluginClient): void {
    const interval = this.#o.healthCheckIntervalMs;
    if (interval <= 0) return;
    const timeoutMs = this.#o.healthCheckTimeoutMs ?? Math.min(interval, 5_000);
    const threshold = this.#o.healthCheckFailures ?? 3;
    let failures = 0;
    const tick = async () => {
      if (this.#current() !== client) return;
      try {
        await client.ping({ timeoutMs });
        failures = 0;
      } catch (error) {
        if (this.#current() !== client) return;
        failures++;
        const reason = error instanceof Error ? error.message : String(error);
        this.#log("warn", "plugin health check failed", { failures, of: threshold, error: reason });
        if (failures >= threshold) {
          this.#lastError = `hung: ${failures} health checks in a row failed (${reason})`;
          this.#hung = client;
          this.#forceKill(client);
          return;
        }
      }
      if (this.#current() === client) this.#healthTimer = setTimeout(tick, interval);
    };
    this.#healthTimer = setTimeout(tick, interval);
  }

  /** SIGKILL at once: a hung plugin will not answer Shutdown. Its exit then restarts it. */
  #forceKill(client: PluginClient): void {
    const pid = client.pid;
    try {
      if (pid !== undefined && !client.hasExited) Deno.kill(pid, "SIGKILL");
    } catch {
      // Gone meanwhile, or no permission: fall back to go-plugin's kill.
      this.#track(client.kill());
    }
  }

  #track(promise: Promise<unknown>): void {
    const tracked = promise.catch(() => {}).finally(() => this.#cleanups.delete(tracked));
    this.#cleanups.add(tracked);
  }

  /**
   * THE running client: the state says running and the client itself says it
   * can take calls ({@linkcode PluginClient.running}). Every path that hands
   * out or checks the plugin goes through here.
   */
  #current(): PluginClient | undefined {
    const client = this.#client;
    return this.#state === "running" && client?.running ? client : undefined;
  }

  #setState(state: PluginState): void {
    this.#state = state;
    const running = this.#current();
    if (running) {
      for (const waiter of [...this.#waiters]) waiter.resolve(running);
      return;
    }
    const error = this.#unavailable();
    if (error) { for (const waiter of [...this.#waiters]) waiter.reject(error); }
  }

  /** The error for a state in which waiting cannot help, if this is one. */
  #unavailable(): TetherError | undefined {
    const plugin = this.#o.name;
    if (this.#state === "stopped") {
      return new TetherError(
        "closed",
        this.#started
          ? `plugin ${plugin} is stopped: the plugin manager was stopped`
          : `plugin ${plugin} is not started: await manager.start() first`,
        { plugin },
      );
    }
    if (this.#state === "failed") {
      return new TetherError(
        "exited",
        `plugin ${plugin} failed ${this.#streak} time(s) in a row and Tether gave up restarting it ` +
          `(last problem: ${
            this.#lastError ?? describeExit(this.#lastExit)
          }); fix the plugin and restart the ` +
          "manager, or raise tether.restart.max_restarts (0 = never give up)",
        { plugin, status: GrpcStatus.UNAVAILABLE },
      );
    }
    return undefined;
  }

  #stillDown(waitedMs: number): TetherError {
    const plugin = this.#o.name;
    return new TetherError(
      "exited",
      `plugin ${plugin} is ${this.#state} (${this.#lastError ?? "no details"}) and was not back within ` +
        `${waitedMs} ms, the call's deadline; retry later, or raise tether.call_timeout_ms`,
      { plugin, status: GrpcStatus.UNAVAILABLE },
    );
  }

  #cancelled(): TetherError {
    return new TetherError(
      "rpc",
      `call to plugin ${this.#o.name} cancelled while waiting for it to restart`,
      {
        plugin: this.#o.name,
        status: GrpcStatus.CANCELLED,
      },
    );
  }

  #log(level: LogRecord["level"], message: string, fields: Record<string, unknown> = {}): void {
    this.#o.logger.log({ level, message, fields: { plugin: this.#o.name, ...fields } });
  }
}
