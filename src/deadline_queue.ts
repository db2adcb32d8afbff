/**
 * Callers' deadlines (`grpc-timeout`) on one timer. Go hosts send a deadline
 * with nearly every call (SFTPGo a fixed timeout per event, go-plugin
 * clients their context's), and a timer per call cost the lean server more
 * than a tenth of its own time per answer under load. Here a call's deadline
 * is an entry in a min-heap; one timer waits for the earliest, and a call
 * that ends first takes its entry out.
 *
 * @module
 */

/** setTimeout's largest delay; later deadlines are waited for in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A deadline in a {@linkcode DeadlineQueue}: cancel it with {@linkcode DeadlineQueue.remove}. */
export interface Deadline {
  /** When it passes, `Date.now()` milliseconds. */
  readonly at: number;
  /** Called once when it passes (never after `remove`). */
  readonly expire: () => void;
  /** Removed, or expired: no longer waiting. */
  gone: boolean;
}

/** Removed deadlines left in the heap before it is rebuilt without them (and at least as many as are waiting). */
const MIN_COMPACT = 256;

/**
 * Deadlines on one timer. The timer does not keep the process alive: a
 * deadline belongs to a call, whose connection does.
 *
 * Removing is marking: calls mostly end long before their deadline, and in
 * the order they came, which is the heap's order, so taking each out would
 * sift the whole depth of the heap per call. Marked entries are dropped
 * when they reach the top, or all at once when they are more than half the
 * heap (so memory stays within twice the calls waiting).
 *
 * @example
 * ```ts
 * import { DeadlineQueue } from "./deadline_queue.ts";
 * const queue = new DeadlineQueue();
 * const deadline = queue.add(Date.now() + 60_000, () => console.log("too late"));
 * queue.remove(deadline); // the call ended in time
 * console.log(queue.size); // 0
 * ```
 */
export class DeadlineQueue {
  #heap: Deadline[] = [];
  /** Entries in the heap that are gone. */
  #removed = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the armed timer fires. */
  #timerAt = Infinity;

  /** Deadlines waiting. */
  get size(): number {
    return this.#heap.length - this.#removed;
  }

  /** Calls `expire` at `at` (or on the next turn if `at` has passed) unless removed first. */
  add(at: number, expire: () => void): Deadline {
    const deadline: Deadline = { at, expire, gone: false };
    this.#heap.push(deadline);
    this.#up(this.#heap.length - 1);
    // Deadlines mostly arrive in order (a fixed timeout per call): the armed timer then already comes first.
    if (at < this.#timerAt) this.#arm(at);
    return deadline;
  }

  /** Takes a deadline out (its call ended); removing one twice, or an expired one, is harmless. */
  remove(deadline: Deadline): void {
    if (deadline.gone) return;
    deadline.gone = true;
    this.#removed++;
    if (this.#removed >= MIN_COMPACT && this.#removed * 2 > this.#heap.length) this.#compact();
    // The timer is left armed: when it fires early it arms itself for the new earliest deadline.
  }

  #compact(): void {
    const heap = this.#heap.filter((deadline) => !deadline.gone);
    this.#heap = heap;
    this.#removed = 0;
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) this.#down(i);
  }

  /** Takes the first entry off the heap. */
  #pop(): Deadline {
    const heap = this.#heap;
    const first = heap[0];
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      this.#down(0);
    }
    return first;
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#fire(), Math.min(Math.max(at - Date.now(), 0), MAX_TIMER_MS));
    (this.#timer as { unref?: () => void }).unref?.();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = Date.now();
    // #heap is read afresh: an expiry may add deadlines, or compact the heap into a new array.
    while (this.#heap.length > 0 && (this.#heap[0].gone || this.#heap[0].at <= now)) {
      const first = this.#pop();
      if (first.gone) {
        this.#removed--;
        continue;
      }
      first.gone = true;
      try {
        first.expire();
      } catch {
        // One call's failure to end must not keep the others' deadlines from passing.
      }
    }
    if (this.#heap.length > 0 && this.#heap[0].at < this.#timerAt) this.#arm(this.#heap[0].at);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const item = heap[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent].at <= item.at) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = item;
  }

  #down(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const item = heap[i];
    while (true) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && heap[child + 1].at < heap[child].at) child++;
      if (heap[child].at >= item.at) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = item;
  }
}
