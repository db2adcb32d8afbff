/**
 * Notifier delivery for {@linkcode PluginManager}: one ordered lane per
 * notifier plugin, a shared {@linkcode Semaphore} bounding how many sends are
 * in flight across all plugins, and SFTPGo's retry rules.
 *
 * How an event moves through a lane:
 * 1. It is **admitted** or **dropped** when it arrives. While the lane is
 *    healthy (plugin running, nothing waiting for a retry) every event is
 *    admitted. While it is degraded (the plugin is down, or the event at the
 *    head failed and waits for a retry) an event enters the retry queue only
 *    under SFTPGo's rules: `retry_max_time > 0`, the event is not older than
 *    `retry_max_time`, and fewer than `retry_queue_max_size` events are
 *    queued (0 = unlimited). Otherwise it is dropped, counted and logged.
 * 2. The lane sends its events **one at a time, in arrival order**, so a
 *    plugin sees them in the order the host produced them, across crashes.
 * 3. A failed send (the plugin refused it, died, or did not answer in time)
 *    is retried, after a short backoff and after the plugin is back, as long
 *    as the event is not older than `retry_max_time`; then it is dropped.
 *    Delivery is at least once: an event the plugin took but could not
 *    acknowledge before it died is sent again.
 *
 * @module
 */

import { TetherError } from "../errors.ts";
import { neverReached } from "./supervisor.ts";
import type { Logger } from "../logs.ts";
import type { PluginClient } from "../client.ts";
import type { NotifierOptions } from "./config.ts";
import type { FsEventInput, LogEventInput, ProviderEventInput } from "./notifier.ts";
import type { AcquireOptions, PluginState } from "./supervisor.ts";

/** What a lane needs from the plugin's supervisor (a {@linkcode PluginSupervisor} fits). */
export interface LaneSupervisor {
  /** Where the plugin is in its life. */
  readonly state: PluginState;
  /** The running client, waiting through restarts. */
  acquire(options?: AcquireOptions): Promise<PluginClient>;
  /** The running client right now, if any (no waiting). */
  readonly client?: PluginClient;
}

/**
 * A counting semaphore with FIFO wake-up.
 *
 * @example
 * ```ts
 * import { Semaphore } from "./retry_queue.ts";
 * const slots = new Semaphore(2);
 * await slots.acquire();
 * console.log(slots.available); // 1
 * slots.release();
 * ```
 */
export class Semaphore {
  #available: number;
  readonly #waiters: (() => void)[] = [];

  /** A semaphore with `size` slots (at least 1). */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) {
      throw new TetherError("config", `the semaphore size must be a positive integer, got ${size}`);
    }
    this.#available = size;
  }

  /** Free slots right now. */
  get available(): number {
    return this.#available;
  }

  /** Takes a slot if one is free now; never waits (and never passes a waiter: a slot is only free when none waits). */
  tryAcquire(): boolean {
    if (this.#available === 0) return false;
    this.#available--;
    return true;
  }

  /** Takes a slot, waiting for one if none is free. */
  acquire(): Promise<void> {
    if (this.#available > 0) {
      this.#available--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Gives a slot back (to the longest waiter, if any). */
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#available++;
  }
}

/**
 * One event waiting in a lane. `timestampNs` is fixed when the event is
 * offered (default: now), so a retried event keeps its original time.
 *
 * @example
 * ```ts
 * import type { LaneEvent } from "./retry_queue.ts";
 * const event: LaneEvent = { kind: "log", event: { event: 5, username: "alice" }, timestampNs: 1767225600000000000n };
 * ```
 */
export type LaneEvent =
  | { readonly kind: "fs"; readonly event: FsEventInput; readonly timestampNs: bigint }
  | { readonly kind: "provider"; readonly event: ProviderEventInput; readonly timestampNs: bigint }
  | { readonly kind: "log"; readonly event: LogEventInput; readonly timestampNs: bigint };

/** Sends one event to a started plugin; rejects when it was not delivered. */
export type LaneSender = (client: PluginClient, item: LaneEvent, timeoutMs: number) => Promise<void>;

/** What a {@linkcode NotifierLane} needs. */
export interface NotifierLaneOptions {
  /** The plugin's name, for logs and errors. */
  readonly name: string;
  /** The plugin's process. */
  readonly supervisor: LaneSupervisor;
  /** `notifier_options` (only the retry fields are used here). */
  readonly options: Pick<NotifierOptions, "retryMaxTime" | "retryQueueMaxSize">;
  /** Bounds the sends in flight across all lanes. */
  readonly semaphore: Semaphore;
  /** Delivers one event. */
  readonly send: LaneSender;
  /** Deadline of each send (`tether.call_timeout_ms`). */
  readonly callTimeoutMs: number;
  /** Where drops and retries are logged. */
  readonly logger: Logger;
  /** First wait before retrying a failed send; doubles up to {@linkcode NotifierLaneOptions.maxRetryDelayMs} (default 100). */
  readonly retryDelayMs?: number;
  /** Longest wait between retries (default 2000). */
  readonly maxRetryDelayMs?: number;
}

/**
 * Delivery counters of one lane.
 *
 * @example
 * ```ts
 * import type { LaneCounters } from "./retry_queue.ts";
 * const counters: LaneCounters = { delivered: 10, queued: 0, dropped: 1, failedSends: 3 };
 * ```
 */
export interface LaneCounters {
  /** Events the plugin acknowledged. */
  readonly delivered: number;
  /** Events waiting to be sent (including one being sent). */
  readonly queued: number;
  /** Events given up on: refused at admission, expired after a failed send, or lost when the plugin failed for good. */
  readonly dropped: number;
  /** Sends that failed (each retry counts). */
  readonly failedSends: number;
}

/**
 * What {@linkcode PluginManager} needs of a notifier plugin's delivery lane,
 * ordered ({@linkcode NotifierLane}) or unordered (`UnorderedLane`).
 *
 * @example
 * ```ts ignore
 * const lane: DeliveryLane = new NotifierLane(options);
 * lane.offer(item);
 * await lane.idle(5_000);
 * console.log(lane.counters.delivered, await lane.stop());
 * ```
 */
export interface DeliveryLane {
  /** The counters right now. */
  readonly counters: LaneCounters;
  /** Offers an event; returns whether it was admitted (a refused one is counted as dropped and logged). */
  offer(item: LaneEvent): boolean;
  /** Resolves `true` once nothing is queued or in flight, `false` if `timeoutMs` passes first. */
  idle(timeoutMs?: number): Promise<boolean>;
  /** Stops after the sends in flight; resolves how many events were left undelivered. */
  stop(): Promise<number>;
}

const DROP_LOG_INTERVAL_MS = 1000;

/**
 * Whether `item` is older than `retryMaxTime` seconds (SFTPGo's `canQueueEvent` age test).
 *
 * @example
 * ```ts
 * import { expired } from "./retry_queue.ts";
 * const old = { kind: "log" as const, event: { event: 5 }, timestampNs: 0n };
 * console.log(expired(old, 60)); // true
 * ```
 */
export function expired(item: LaneEvent, retryMaxTime: number): boolean {
  const ageMs = Date.now() - Number(item.timestampNs / 1_000_000n);
  return ageMs > retryMaxTime * 1000;
}

/**
 * SFTPGo's retry rule (its `canQueueEvent`), the one home of it for both
 * lanes: an event that cannot be sent now may wait in a retry queue holding
 * `queued` events only if `retry_max_time > 0`, the event is not older than
 * `retry_max_time`, and the queue is under `retry_queue_max_size` (0 =
 * unlimited). Returns why it may not (prefixed with `why`, the reason it
 * could not be sent), or `undefined` when it may.
 *
 * @example
 * ```ts
 * import { retryRefusal } from "./retry_queue.ts";
 * const item = { kind: "log" as const, event: { event: 5 }, timestampNs: BigInt(Date.now()) * 1_000_000n };
 * console.log(retryRefusal({ retryMaxTime: 0, retryQueueMaxSize: 0 }, item, 0, "down"));
 * // "down and retry_max_time is 0"
 * ```
 */
export function retryRefusal(
  options: Pick<NotifierOptions, "retryMaxTime" | "retryQueueMaxSize">,
  item: LaneEvent,
  queued: number,
  why: string,
): string | undefined {
  const { retryMaxTime, retryQueueMaxSize } = options;
  if (retryMaxTime <= 0) return `${why} and retry_max_time is 0`;
  if (expired(item, retryMaxTime)) {
    return `${why} and the event is older than retry_max_time (${retryMaxTime} s)`;
  }
  if (retryQueueMaxSize > 0 && queued >= retryQueueMaxSize) {
    return `${why} and the retry queue is full (retry_queue_max_size ${retryQueueMaxSize})`;
  }
  return undefined;
}

/**
 * Counts dropped events and logs them: each drop at debug level, and a
 * warning with the running total at most once a second (so a flood of drops
 * does not flood the log, and none goes unreported).
 *
 * @example
 * ```ts
 * import { DropLog } from "./retry_queue.ts";
 * const drops = new DropLog("notifier#0", { log: (r) => console.log(r.message) });
 * drops.drop(2, "the manager is stopping");
 * console.log(drops.total); // 2
 * ```
 */
export class DropLog {
  readonly #name: string;
  readonly #logger: Logger;
  #total = 0;
  #sinceLog = 0;
  #lastLog = 0;
  #lastReason = "";

  /** Drops of plugin `name`, logged to `logger`. */
  constructor(name: string, logger: Logger) {
    this.#name = name;
    this.#logger = logger;
  }

  /** Events dropped so far. */
  get total(): number {
    return this.#total;
  }

  /** Counts and logs `count` events dropped for `reason`. */
  drop(count: number, reason: string): void {
    this.#total += count;
    this.#sinceLog += count;
    this.#lastReason = reason;
    this.#logger.log({
      level: "debug",
      message: "notifier event dropped",
      fields: { plugin: this.#name, count, reason },
    });
    if (Date.now() - this.#lastLog >= DROP_LOG_INTERVAL_MS) this.flush();
  }

  /** Logs the warning for drops not yet reported in one. */
  flush(): void {
    if (this.#sinceLog === 0) return;
    this.#logger.log({
      level: "warn",
      message: `dropped ${this.#sinceLog} notifier event(s): ${this.#lastReason}`,
      fields: { plugin: this.#name, dropped_total: this.#total },
    });
    this.#sinceLog = 0;
    this.#lastLog = Date.now();
  }
}

/**
 * Callers waiting for a lane to have nothing left to do ({@linkcode DeliveryLane.idle}), and the lane's one
 * cancellable back-off sleep: the waiting both lanes share.
 *
 * @example
 * ```ts
 * import { LaneWaits } from "./retry_queue.ts";
 * const waits = new LaneWaits();
 * const idle = waits.idle(() => false, 1000);
 * waits.wakeIdle();
 * console.log(await idle); // true
 * ```
 */
export class LaneWaits {
  readonly #idleWaiters = new Set<() => void>();
  #sleep: { timer: ReturnType<typeof setTimeout>; resolve: () => void } | undefined;

  /** Resolves `true` once {@linkcode wakeIdle} is called (at once if `isIdle()`), `false` after `timeoutMs`. */
  idle(isIdle: () => boolean, timeoutMs: number = Infinity): Promise<boolean> {
    if (isIdle()) return Promise.resolve(true);
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        clearTimeout(timer);
        this.#idleWaiters.delete(done);
        resolve(true);
      };
      this.#idleWaiters.add(done);
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          this.#idleWaiters.delete(done);
          resolve(false);
        }, Math.max(0, timeoutMs));
      }
    });
  }

  /** Whether anyone waits for idleness (so the lane need not check). */
  get idleWaited(): boolean {
    return this.#idleWaiters.size > 0;
  }

  /** Wakes every idle waiter with `true`. */
  wakeIdle(): void {
    for (const done of [...this.#idleWaiters]) done();
  }

  /** Sleeps `ms`, unless {@linkcode endSleep} ends it sooner. */
  sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#sleep = undefined;
        resolve();
      }, ms);
      this.#sleep = { timer, resolve };
    });
  }

  /** Ends the current sleep now (the lane is stopping). */
  endSleep(): void {
    if (!this.#sleep) return;
    clearTimeout(this.#sleep.timer);
    this.#sleep.resolve();
    this.#sleep = undefined;
  }
}

/**
 * The ordered delivery lane of one notifier plugin.
 *
 * @example
 * ```ts ignore
 * import { NotifierLane, Semaphore } from "./retry_queue.ts";
 * const lane = new NotifierLane({ name: "notifier#0", supervisor, options: { retryMaxTime: 60, retryQueueMaxSize: 0 },
 *   semaphore: new Semaphore(250), send, callTimeoutMs: 20_000, logger });
 * lane.offer({ kind: "log", event: { event: 5, username: "alice" }, timestampNs: BigInt(Date.now()) * 1_000_000n });
 * await lane.idle(5_000);
 * ```
 */
export class NotifierLane implements DeliveryLane {
  readonly #o: NotifierLaneOptions;
  readonly #items: LaneEvent[] = [];
  #head = 0;
  #delivered = 0;
  readonly #drops: DropLog;
  #failedSends = 0;
  /** The head failed and waits for a retry. */
  #retrying = false;
  #sending = false;
  #stopped = false;
  readonly #abort = new AbortController();
  #wake: PromiseWithResolvers<void> | undefined;
  readonly #waits = new LaneWaits();
  readonly #loop: Promise<void>;

  /** Starts the lane's delivery loop; it waits for events and for the plugin. */
  constructor(options: NotifierLaneOptions) {
    this.#o = options;
    this.#drops = new DropLog(options.name, options.logger);
    this.#loop = this.#run();
  }

  /** The counters right now. */
  get counters(): LaneCounters {
    return {
      delivered: this.#delivered,
      queued: this.#size,
      dropped: this.#drops.total,
      failedSends: this.#failedSends,
    };
  }

  get #size(): number {
    return this.#items.length - this.#head;
  }

  /** Whether new events are subject to the retry rules (the plugin is down, or the head waits for a retry). */
  get degraded(): boolean {
    return this.#retrying || this.#o.supervisor.state !== "running";
  }

  /**
   * Offers an event. Returns whether it was admitted; a refused event is
   * counted as dropped and logged.
   */
  offer(item: LaneEvent): boolean {
    if (this.#stopped) {
      this.#drop(1, "the manager is stopping");
      return false;
    }
    const state = this.#o.supervisor.state;
    if (state === "failed") {
      this.#drop(1, `${this.#o.name} has failed for good (restart limit reached)`);
      return false;
    }
    if (this.degraded) {
      const why = this.#refusal(item, this.#size);
      if (why) {
        this.#drop(1, why);
        return false;
      }
    }
    this.#items.push(item);
    this.#wakeUp();
    return true;
  }

  /** Why SFTPGo's retry rules refuse this event into a queue of `queued` events, or `undefined` if they accept it. */
  #refusal(item: LaneEvent, queued: number): string | undefined {
    const why = this.#retrying ? "an earlier event is waiting for a retry" : `${this.#o.name} is not running`;
    return retryRefusal(this.#o.options, item, queued, why);
  }

  #expired(item: LaneEvent): boolean {
    return expired(item, this.#o.options.retryMaxTime);
  }

  /**
   * Resolves `true` once every queued event was delivered or dropped, or
   * `false` when `timeoutMs` passes first.
   */
  idle(timeoutMs: number = Infinity): Promise<boolean> {
    return this.#waits.idle(() => this.#size === 0 && !this.#sending, timeoutMs);
  }

  /**
   * Stops the loop after the send in flight, if any. Events still queued
   * stay counted in `queued` (they were not delivered); returns how many.
   */
  async stop(): Promise<number> {
    this.#stopped = true;
    this.#abort.abort();
    this.#wakeUp();
    this.#waits.endSleep();
    await this.#loop;
    this.#drops.flush();
    this.#waits.wakeIdle();
    return this.#size;
  }

  /** Drops every queued event (the plugin failed for good); returns how many. */
  dropAll(reason: string): number {
    const count = this.#size;
    if (count === 0) return 0;
    this.#items.length = 0;
    this.#head = 0;
    this.#retrying = false;
    this.#drop(count, reason);
    this.#notifyIdle();
    return count;
  }

  #wakeUp(): void {
    this.#wake?.resolve();
    this.#wake = undefined;
  }

  #notifyIdle(): void {
    if (this.#size !== 0 || this.#sending) return;
    this.#waits.wakeIdle();
  }

  #shift(): void {
    this.#head++;
    // Compact now and then, so the array does not grow forever.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items.splice(0, this.#head);
      this.#head = 0;
    }
  }

  #drop(count: number, reason: string): void {
    this.#drops.drop(count, reason);
  }

  async #run(): Promise<void> {
    const base = this.#o.retryDelayMs ?? 100;
    const cap = this.#o.maxRetryDelayMs ?? 2000;
    let delay = base;
    while (!this.#stopped) {
      if (this.#size === 0) {
        this.#notifyIdle();
        this.#wake = Promise.withResolvers();
        await this.#wake.promise;
        continue;
      }
      const item = this.#items[this.#head];
      let client: PluginClient;
      try {
        client = await this.#o.supervisor.acquire({ signal: this.#abort.signal });
      } catch (error) {
        if (this.#stopped || !(error instanceof TetherError) || error.code === "closed") return;
        // The plugin failed for good: nothing will ever deliver these.
        this.dropAll(`${this.#o.name} has failed for good: ${error.message}`);
        continue;
      }
      if (this.#stopped) return;
      await this.#o.semaphore.acquire();
      this.#sending = true;
      let failure: unknown;
      const startedAt = Date.now();
      try {
        await this.#o.send(client, item, this.#o.callTimeoutMs);
      } catch (error) {
        failure = error;
      } finally {
        this.#o.semaphore.release();
        this.#sending = false;
      }
      if (this.#items[this.#head] !== item) continue; // dropAll() ran meanwhile
      if (failure === undefined) {
        this.#shift();
        this.#delivered++;
        this.#retrying = false;
        delay = base;
        continue;
      }
      this.#failedSends++;
      const reason = failure instanceof Error ? failure.message : String(failure);
      if (neverReached(client, startedAt, failure)) {
        // Sent to a process already known dead: the event never reached a plugin. It waits for the restart, as an
        // event offered during the restart does (acquire() does not hand out the dead client again).
        this.#o.logger.log({
          level: "debug",
          message: "notifier event sent to a plugin that had already exited; resent after the restart",
          fields: { plugin: this.#o.name, error: reason },
        });
        continue;
      }
      if (this.#o.options.retryMaxTime > 0 && !this.#expired(item)) {
        if (!this.#retrying) {
          this.#o.logger.log({
            level: "warn",
            message: "notifier event not delivered; it is kept and retried in order",
            fields: { plugin: this.#o.name, error: reason, queued: this.#size },
          });
        }
        this.#retrying = true;
        if (this.#stopped) return;
        await this.#waits.sleep(delay);
        delay = Math.min(delay * 2, cap);
        continue;
      }
      this.#shift();
      this.#retrying = false;
      this.#drop(
        1,
        this.#o.options.retryMaxTime > 0
          ? `the send failed and the event is older than retry_max_time (${this.#o.options.retryMaxTime} s): ${reason}`
          : `the send failed and retry_max_time is 0: ${reason}`,
      );
    }
  }
}
