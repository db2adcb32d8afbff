/**
 * Line splitting of a plugin's stdout and stderr (src/lines.ts): each byte is
 * scanned once and at most the cap of a line is held, so a plugin printing
 * 64 MiB without a newline costs the host one capped line and a counted
 * report (issue 7, finding 6), in unit tests and against a real process.
 */

import assert from "node:assert/strict";
import { forEachLine, MAX_LINE_BYTES, truncationNote } from "../../src/lines.ts";
import { inSandbox, Recorder, rejectsWith } from "./support.ts";

const encoder = new TextEncoder();

/** A stream of the given chunks. */
function chunks(...parts: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(parts.map((part) => typeof part === "string" ? encoder.encode(part) : part));
}

async function lines(stream: ReadableStream<Uint8Array>, maxLineBytes?: number): Promise<string[]> {
  const found: string[] = [];
  await forEachLine(stream, (line) => found.push(line), { maxLineBytes });
  return found;
}

Deno.test("forEachLine: lines across chunk boundaries, several per chunk, a final unterminated one", async () => {
  assert.deepEqual(await lines(chunks("a", "b\nc\n", "\nd")), ["ab", "c", "", "d"]);
  assert.deepEqual(await lines(chunks("x\n")), ["x"]);
  assert.deepEqual(await lines(chunks()), []);
  // A multi-byte character split between chunks decodes whole.
  const euro = encoder.encode("€\n");
  assert.deepEqual(await lines(chunks(euro.subarray(0, 1), euro.subarray(1))), ["€"]);
});

Deno.test("forEachLine: a chunk buffer the stream reuses does not corrupt held lines", async () => {
  // One buffer, overwritten for every chunk (as a reader with a fixed buffer does).
  const shared = new Uint8Array(2);
  const parts = ["ab", "c\n"];
  let next = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (next === parts.length) return controller.close();
      shared.set(encoder.encode(parts[next++]));
      controller.enqueue(shared);
    },
  }, { highWaterMark: 0 }); // Pulls only when read: the previous chunk has been handled.
  assert.deepEqual(await lines(stream), ["abc"]);
});

Deno.test("forEachLine: 64 MiB without a newline → one line of the cap, the rest dropped and counted", async () => {
  const total = 64 * 1024 * 1024;
  const piece = new Uint8Array(64 * 1024).fill(0x78); // 'x'
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent < total) {
        controller.enqueue(piece);
        sent += piece.length;
      } else {
        controller.enqueue(encoder.encode("\nnext\n"));
        controller.close();
      }
    },
  });
  const found = await lines(stream);
  assert.equal(found.length, 2);
  const note = truncationNote({ keptBytes: MAX_LINE_BYTES, droppedBytes: total - MAX_LINE_BYTES });
  assert.ok(found[0].endsWith(note), found[0].slice(-200));
  // Only the cap was kept: what is passed on is the cap plus the note, not 64 MiB.
  assert.equal(found[0].length, MAX_LINE_BYTES + note.length);
  assert.match(note, /line truncated: 67108864 bytes, the first 1048576 kept, 66060288 dropped/);
  assert.equal(found[1], "next");
});

Deno.test("forEachLine: with onTruncated the cut line comes without a note, the counts to the callback", async () => {
  const reports: { keptBytes: number; droppedBytes: number }[] = [];
  const found: string[] = [];
  await forEachLine(chunks("0123456789", "abc\nok\n", "tail-too-long"), (line) => found.push(line), {
    maxLineBytes: 4,
    onTruncated: (info) => reports.push(info),
  });
  assert.deepEqual(found, ["0123", "ok", "tail"]);
  assert.deepEqual(reports, [{ keptBytes: 4, droppedBytes: 9 }, { keptBytes: 4, droppedBytes: 9 }]);
});

Deno.test("forEachLine: maxLineBytes must be a positive integer", async () => {
  for (const maxLineBytes of [0, -1, 1.5, NaN]) {
    await assert.rejects(lines(chunks("a"), maxLineBytes), RangeError);
  }
});

Deno.test("host: a plugin flooding stderr with 64 MiB and no newline → one capped log record with the count", async () => {
  await inSandbox(async (box) => {
    const logger = new Recorder();
    const script = "/usr/bin/head -c 67108864 /dev/zero | /usr/bin/tr '\\0' x >&2; " +
      "printf '\\nlast words\\n' >&2; exit 3";
    const client = box.client({
      cmd: "/bin/sh",
      args: ["-c", script],
      handshake: { protocolVersion: 1, magicCookieKey: "K", magicCookieValue: "v" },
      unixSocketDir: box.dir,
      logger,
      name: "flood",
    });
    const error = await rejectsWith(client.start(), "exited");
    assert.match(error.message, /exit code 3/);
    const truncated = logger.records.filter((record) => record.message.includes("[tether: line truncated"));
    assert.equal(truncated.length, 1, "one record for the flood line");
    assert.match(
      truncated[0].message,
      /\[tether: line truncated: 67108864 bytes, the first 1048576 kept, 66060288 dropped\]$/,
    );
    assert.equal(truncated[0].message.length < 2 * 1024 * 1024, true);
    // The stream went on after the flood.
    assert.ok(logger.find("last words").length === 1, "the line after the flood was lost");
  });
});
