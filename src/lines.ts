/**
 * Splits a byte stream into text lines, with a cap on line length so a
 * plugin that never prints a newline cannot make the host buffer forever.
 *
 * @module
 */

/**
 * Calls `onLine` for each line of `stream` (without its `\n`), and once more
 * for a final unterminated line. Lines longer than `maxLineChars` are cut
 * into pieces of that size. Resolves when the stream ends.
 *
 * @example
 * ```ts
 * import { forEachLine } from "./lines.ts";
 * const stream = ReadableStream.from([new TextEncoder().encode("a\nb")]);
 * await forEachLine(stream, (line) => console.log(line)); // "a", then "b"
 * ```
 */
export async function forEachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
  maxLineChars = 1024 * 1024,
): Promise<void> {
  let pending = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    pending += text;
    let newline: number;
    while ((newline = pending.indexOf("\n")) >= 0) {
      onLine(pending.slice(0, newline));
      pending = pending.slice(newline + 1);
    }
    while (pending.length > maxLineChars) {
      onLine(pending.slice(0, maxLineChars));
      pending = pending.slice(maxLineChars);
    }
  }
  if (pending !== "") onLine(pending);
}
