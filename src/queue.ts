/**
 * A small unbounded-or-bounded async queue: producers push, one consumer
 * iterates. Used to feed gRPC streams (broker ConnInfo, plugin stdio).
 *
 * @module
 */

/**
 * An async-iterable queue with one consumer.
 *
 * @example
 * ```ts
 * import { AsyncQueue } from "./queue.ts";
 * const queue = new AsyncQueue<number>();
 * queue.push(1);
 * queue.close();
 * for await (const n of queue) console.log(n); // 1
 * ```
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #waiter: ((result: IteratorResult<T>) => void) | undefined;
  #closed = false;
  #dropped = 0;
  readonly #limit: number;

  /** @param limit most items held while nobody consumes; the oldest are dropped past it. */
  constructor(limit = Infinity) {
    this.#limit = limit;
  }

  /** How many items were dropped because the queue was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Whether {@linkcode AsyncQueue.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Adds an item; ignored after close. */
  push(item: T): void {
    if (this.#closed) return;
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = undefined;
      waiter({ value: item, done: false });
      return;
    }
    this.#items.push(item);
    if (this.#items.length > this.#limit) {
      this.#items.shift();
      this.#dropped++;
    }
  }

  /** Ends the iteration once the queued items are consumed. */
  close(): void {
    this.#closed = true;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.({ value: undefined, done: true });
  }

  /** Iterates items as they arrive, until closed. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    while (true) {
      if (this.#items.length > 0) {
        yield this.#items.shift() as T;
        continue;
      }
      if (this.#closed) return;
      const next = await new Promise<IteratorResult<T>>((resolve) => this.#waiter = resolve);
      if (next.done) return;
      yield next.value;
    }
  }
}
