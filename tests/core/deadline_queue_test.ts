/**
 * src/deadline_queue.ts: deadlines on one timer expire in order, a removed one never expires, and a
 * deadline already passed expires on the next turn.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeadlineQueue } from "../../src/deadline_queue.ts";

function eventually(check: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (check()) resolve();
      else if (Date.now() > until) reject(new Error("timed out"));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

Deno.test("deadline queue: deadlines expire earliest first, whatever the order they were added in; removed ones never", async () => {
  const queue = new DeadlineQueue();
  const expired: string[] = [];
  const now = Date.now();
  queue.add(now + 60, () => expired.push("c"));
  const removed = queue.add(now + 20, () => expired.push("removed"));
  queue.add(now + 10, () => expired.push("a"));
  queue.add(now + 40, () => expired.push("b"));
  const late = queue.add(now + 60_000, () => expired.push("late"));
  queue.remove(removed);
  queue.remove(removed);
  assert.equal(queue.size, 4);
  await eventually(() => expired.length === 3);
  assert.deepEqual(expired, ["a", "b", "c"]);
  queue.remove(late);
  assert.equal(queue.size, 0);
});

Deno.test("deadline queue: a passed deadline expires on the next turn; an expiry that throws does not stop the others", async () => {
  const queue = new DeadlineQueue();
  const expired: string[] = [];
  queue.add(Date.now() - 5, () => {
    expired.push("thrower");
    throw new Error("boom");
  });
  queue.add(Date.now(), () => expired.push("next"));
  assert.deepEqual(expired, []);
  await eventually(() => expired.length === 2);
  assert.deepEqual(expired, ["thrower", "next"]);
});

Deno.test("deadline queue: many deadlines added and removed at random keep the heap in order", async () => {
  const queue = new DeadlineQueue();
  const base = Date.now() + 30;
  const expired: number[] = [];
  const kept = new Set<number>();
  const entries = Array.from({ length: 200 }, (_, i) => {
    const at = base + ((i * 37) % 50);
    return { i, at, deadline: queue.add(at, () => expired.push(at)) };
  });
  for (const { i, deadline, at } of entries) {
    if (i % 3 === 0) queue.remove(deadline);
    else kept.add(at * 1000 + i);
  }
  await eventually(() => expired.length === kept.size);
  assert.deepEqual(expired, [...expired].sort((a, b) => a - b));
  assert.equal(queue.size, 0);
});

Deno.test("deadline queue: removing most of many deadlines compacts the heap; the rest still expire in order", async () => {
  const queue = new DeadlineQueue();
  const base = Date.now() + 30;
  const expired: number[] = [];
  const deadlines = Array.from({ length: 2000 }, (_, i) => {
    const at = base + ((i * 7919) % 60);
    return queue.add(at, () => expired.push(at));
  });
  deadlines.forEach((deadline, i) => {
    if (i % 10 !== 0) queue.remove(deadline);
  });
  assert.equal(queue.size, 200);
  await eventually(() => expired.length === 200);
  assert.deepEqual(expired, [...expired].sort((a, b) => a - b));
  assert.equal(queue.size, 0);
});

Deno.test("deadline queue: a waiting deadline does not keep the process alive (its call's connection does)", async () => {
  const module = new URL("../../src/deadline_queue.ts", import.meta.url).href;
  const script = `import { DeadlineQueue } from ${JSON.stringify(module)};
new DeadlineQueue().add(Date.now() + 3_600_000, () => console.log("expired"));
console.log("added");`;
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(code, 0);
  assert.equal(new TextDecoder().decode(stdout).trim(), "added");
});
