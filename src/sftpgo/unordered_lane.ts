/**
 * Unordered notifier delivery for {@linkcode PluginManager}
 * (`tether: { notifier_order: unordered }`): each event is its own send, as
 * SFTPGo's goroutine per event, under the {@linkcode Semaphore} shared by all
 * lanes (`notifierConcurrency`, 250 by default, SFTPGo's bound), with
 * SFTPGo's retry rules.
 *
 * How an event moves through the lane:
 * 1. While the plugin runs, an event is **admitted** and sent as soon as a
 *    slot of the semaphore is free; events waiting for a slot are not
 *    bounded, as SFTPGo's goroutines waiting on its semaphore are not.
 * 2. While the plugin is down (restarting), an event enters the **retry
 *    queue** only under SFTPGo's rules ({@linkcode retryRefusal}); otherwise
 *    it is dropped, counted and logged.
 * 3. A send that failed after reaching the plugin (refused, crashed, timed
 *    out) goes to the retry queue under the same rules. A send made to a
 *    process already known dead never reached a plugin: it waits for the
 *    restart whatever its age, as in the ordered lane; so does an admitted
 *    event whose plugin died before its slot came.
 * 4. The retry queue is resent, all at once and unordered, when the plugin is
 *    running again (SFTPGo resends its queue when it restarts the plugin);
 *    after failures the plugin answered, the resend waits a backoff first.
 *
 * Nothing here keeps order: two events may arrive in either order, and an
 * event resent after a crash arrives after later ones. Delivery is at least
 * once: an event the plugin took but could not acknowledge before it died is
 * sent again.
 *
 * @module
 */

import { TetherError } from "../errors.ts";
import { neverReached } from "./supervisor.ts";
import type { PluginClient } from "../client.ts";
import {
  type DeliveryLane,
  DropLog,
  type LaneCounters,
  type LaneEvent,
  LaneWaits,
  type NotifierLaneOptions,
  retryRefusal,
} from "./retry_queue.ts";

/**
 * The unordered delivery lane of one notifier plugin. Takes the same options
 * as the ordered {@linkcode NotifierLane}.
 *
 * @example
 * ```ts ignore
 * import { Semaphore } from "./retry_queue.ts";
 * import { UnorderedLane } from "./unordered_lane.ts";
 * const lane = new UnorderedLane({ name: "notifier#0", supervisor, options: { retryMaxTime: 60, retryQueueMaxSize: 0 },
 *   semaphore: new Semaphore(250), send, callTimeoutMs: 20_000, logger });
 * lane.offer({ kind: "log", event: { event: 5, username: "alice" }, timestampNs: BigInt(Date.now()) * 1_000_000n });
 * await lane.idle(5_000);
 * ```
 */
export class UnorderedLane implements DeliveryLane {
  readonly #o: NotifierLaneOptions;
  readonly #drops: DropLog;
  /** Admitted events waiting for a slot; `#head` is the next one. */
  #backlog: LaneEvent[] = [];
  #head = 0;
  /** SFTPGo's retry queue: events waiting for the plugin to be back. */
  #retry: LaneEvent[] = [];
  #inFlight = 0;
  #delivered = 0;
  #failedSends = 0;
  #stopped = false;
  /** A semaphore.acquire() of this lane is pending (at most one, so lanes take turns in its FIFO). */
  #waitingForSlot = false;
  #draining: Promise<void> | undefined;
  /** A send the plugin answered failed: the next resend waits `#delay` first. */
  #backoff = false;
  #delay: number;
  /** Events whose send reached the plugin and failed; the backoff starts over once one of them is delivered. */
  readonly #refused = new WeakSet<LaneEvent>();
  readonly #abort = new AbortController();
  readonly #waits = new LaneWaits();
  #settled: PromiseWithResolvers<void> | undefined;

  /** Makes the lane; nothing is sent until an event is offered. */
  constructor(options: NotifierLaneOptions) {
    this.#o = options;
    this.#drops = new DropLog(options.name, options.logger);
    this.#delay = options.retryDelayMs ?? 100;
  }

  /** The counters right now (`queued` counts events waiting for a slot, in flight, and in the retry queue). */
  get counters(): LaneCounters {
    return {
      delivered: this.#delivered,
      queued: this.#waiting + this.#inFlight + this.#retry.length,
      dropped: this.#drops.total,
      failedSends: this.#failedSends,
    };
  }

  get #waiting(): number {
    return this.#backlog.length - this.#head;
  }

  /** Offers an event. Returns whether it was admitted; a refused event is counted as dropped and logged. */
  offer(item: LaneEvent): boolean {
    if (this.#stopped) {
      this.#drops.drop(1, "the manager is stopping");
      return false;
    }
    const state = this.#o.supervisor.state;
    if (state === "running") {
      this.#backlog.push(item);
      this.#pump();
      return true;
    }
    if (state === "failed") {
      this.#drops.drop(1, `${this.#o.name} has failed for good (restart limit reached)`);
      return false;
    }
    const why = retryRefusal(this.#o.options, item, this.#retry.length, `${this.#o.name} is not running`);
    if (why) {
      this.#drops.drop(1, why);
      return false;
    }
    this.#retry.push(item);
    this.#drain();
    return true;
  }

  /** Resolves `true` once nothing waits, is in flight or is queued for a retry; `false` when `timeoutMs` passes first. */
  idle(timeoutMs: number = Infinity): Promise<boolean> {
    return this.#waits.idle(() => this.#isIdle(), timeoutMs);
  }

  /**
   * Stops: no new send starts, the sends in flight settle (each within its
   * deadline). Events not delivered stay counted in `queued`; returns how many.
   */
  async stop(): Promise<number> {
    this.#stopped = true;
    this.#abort.abort();
    this.#waits.endSleep();
    await this.#draining;
    if (this.#inFlight > 0) {
      this.#settled = Promise.withResolvers();
      await this.#settled.promise;
    }
    this.#drops.flush();
    this.#waits.wakeIdle();
    return this.#waiting + this.#retry.length;
  }

  #isIdle(): boolean {
    return this.#inFlight === 0 && this.#waiting === 0 && this.#retry.length === 0;
  }

  #notifyIdle(): void {
    if (!this.#waits.idleWaited || !this.#isIdle()) return;
    this.#waits.wakeIdle();
  }

  /** Starts waiting events while slots are free; when none is, queues once for the next. */
  #pump(): void {
    while (this.#waiting > 0 && !this.#stopped) {
      if (!this.#o.semaphore.tryAcquire()) {
        this.#waitForSlot();
        return;
      }
      this.#start(this.#take());
    }
  }

  #take(): LaneEvent {
    const item = this.#backlog[this.#head++];
    if (this.#head === this.#backlog.length) {
      this.#backlog = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#backlog.length) {
      this.#backlog = this.#backlog.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  #waitForSlot(): void {
    if (this.#waitingForSlot) return;
    this.#waitingForSlot = true;
    void this.#o.semaphore.acquire().then(() => {
      this.#waitingForSlot = false;
      if (this.#waiting > 0 && !this.#stopped) this.#start(this.#take());
      else this.#o.semaphore.release();
      this.#pump();
    });
  }

  /** Sends one event on a slot already taken. */
  #start(item: LaneEvent): void {
    const client = this.#o.supervisor.state === "running" ? this.#o.supervisor.client : undefined;
    if (!client) {
      // Admitted while the plugin ran, which died before the slot came: it never reached a plugin.
      this.#o.semaphore.release();
      this.#retry.push(item);
      this.#drain();
      return;
    }
    this.#inFlight++;
    const startedAt = Date.now();
    this.#o.send(client, item, this.#o.callTimeoutMs).then(
      () => this.#sent(item),
      (error) => this.#failed(client, item, startedAt, error),
    );
  }

  #sent(item: LaneEvent): void {
    this.#delivered++;
    // Only a refused event's success ends the backoff: other events succeeding meanwhile say nothing about it,
    // and would otherwise have an event the plugin keeps refusing resent at once, round trip after round trip.
    if (this.#refused.has(item)) this.#delay = this.#o.retryDelayMs ?? 100;
    this.#finish();
  }

  #failed(client: PluginClient, item: LaneEvent, startedAt: number, error: unknown): void {
    this.#failedSends++;
    const reason = error instanceof Error ? error.message : String(error);
    if (this.#o.supervisor.state === "failed") {
      this.#drops.drop(1, `${this.#o.name} has failed for good: ${reason}`);
    } else if (neverReached(client, startedAt, error)) {
      this.#o.logger.log({
        level: "debug",
        message: "notifier event sent to a plugin that had already exited; resent after the restart",
        fields: { plugin: this.#o.name, error: reason },
      });
      this.#retry.push(item);
    } else {
      const why = retryRefusal(this.#o.options, item, this.#retry.length, `the send failed (${reason})`);
      if (why) {
        this.#drops.drop(1, why);
      } else {
        this.#o.logger.log({
          level: "debug",
          message: "notifier event not delivered; queued for a retry",
          fields: { plugin: this.#o.name, error: reason, queued: this.#retry.length + 1 },
        });
        this.#retry.push(item);
        this.#refused.add(item);
        this.#backoff = true;
      }
    }
    this.#finish();
    if (this.#retry.length > 0) this.#drain();
  }

  #finish(): void {
    this.#inFlight--;
    this.#o.semaphore.release();
    if (this.#stopped) {
      if (this.#inFlight === 0) this.#settled?.resolve();
      return;
    }
    this.#pump();
    this.#notifyIdle();
  }

  /** Resends the retry queue once the plugin runs (after a backoff when the plugin itself failed sends). */
  #drain(): void {
    if (this.#draining || this.#stopped) return;
    this.#draining = this.#drainLoop().finally(() => {
      this.#draining = undefined;
      if (this.#retry.length > 0 && !this.#stopped) this.#drain();
      else this.#notifyIdle();
    });
  }

  async #drainLoop(): Promise<void> {
    const cap = this.#o.maxRetryDelayMs ?? 2000;
    while (this.#retry.length > 0 && !this.#stopped) {
      if (this.#backoff) {
        this.#backoff = false;
        await this.#waits.sleep(this.#delay);
        this.#delay = Math.min(this.#delay * 2, cap);
        if (this.#stopped) return;
      }
      try {
        await this.#o.supervisor.acquire({ signal: this.#abort.signal });
      } catch (error) {
        if (this.#stopped) return;
        // The plugin failed for good, or its supervisor is closed: nothing will ever deliver these. Returning
        // with them still queued would only start this loop again at once (and starve the event loop).
        const lost = this.#retry.length + this.#waiting;
        this.#retry = [];
        this.#backlog = [];
        this.#head = 0;
        const why = error instanceof TetherError && error.code !== "closed"
          ? `has failed for good: ${error.message}`
          : `can no longer be reached: ${error instanceof Error ? error.message : String(error)}`;
        this.#drops.drop(lost, `${this.#o.name} ${why}`);
        return;
      }
      if (this.#stopped) return;
      const batch = this.#retry;
      this.#retry = [];
      for (const item of batch) this.#backlog.push(item);
      this.#pump();
      // A failure of this batch schedules the next round through #failed.
      return;
    }
  }
}
