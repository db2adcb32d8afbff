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
  /** Position in the heap; -1 once out of it. */
  index: number;
}

/**
 * Deadlines on one timer. The timer does not keep the process alive: a
 * deadline belongs to a call, whose connection does.
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
  readonly #heap: Deadline[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When the armed timer fires. */
  #timerAt = Infinity;

  /** Deadlines waiting. */
  get size(): number {
    return this.#heap.length;
  }

  /** Calls `expire` at `at` (or on the next turn if `at` has passed) unless removed first. */
  add(at: number, expire: () => void): Deadline {
    const deadline: Deadline = { at, expire, index: this.#heap.length };
    this.#heap.push(deadline);
    this.#up(deadline.index);
    // Deadlines mostly arrive in order (a fixed timeout per call): the armed timer then already comes first.
    if (at < this.#timerAt) this.#arm(at);
    return deadline;
  }

  /** Takes a deadline out (its call ended); removing one twice is harmless. */
  remove(deadline: Deadline): void {
    const i = deadline.index;
    if (i < 0) return;
    deadline.index = -1;
    const last = this.#heap.pop()!;
    if (last !== deadline) {
      this.#heap[i] = last;
      last.index = i;
      this.#down(i);
      this.#up(last.index);
    }
    // The timer is left armed: when it fires early it arms itself for the new earliest deadline.
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
    const heap = this.#heap;
    while (heap.length > 0 && heap[0].at <= now) {
      const first = heap[0];
      this.remove(first);
      try {
        first.expire();
      } catch {
        // One call's failure to end must not keep the others' deadlines from passing.
      }
    }
    if (heap.length > 0) this.#arm(heap[0].at);
  }

  #up(i: number): void {
    const heap = this.#heap;
    const item = heap[i];
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent].at <= item.at) break;
      heap[i] = heap[parent];
      heap[i].index = i;
      i = parent;
    }
    heap[i] = item;
    item.index = i;
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
      heap[i].index = i;
      i = child;
    }
    heap[i] = item;
    item.index = i;
  }
}
