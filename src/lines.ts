/**
 * Splits a byte stream into text lines, with a cap on line length so a
 * plugin that never prints a newline cannot make the host buffer forever.
 *
 * @module
 */

/** Default cap on one line: 1 MiB of UTF-8. */
export const MAX_LINE_BYTES = 1024 * 1024;

/** What {@linkcode forEachLine} says about a line it had to cut. */
export interface TruncatedLine {
  /** Bytes of the line that were passed on (the cap). */
  readonly keptBytes: number;
  /** Bytes of the line that were read and thrown away. */
  readonly droppedBytes: number;
}

/**
 * The note {@linkcode forEachLine} appends to a cut line by default.
 *
 * @example
 * ```ts
 * import { truncationNote } from "./lines.ts";
 * console.log(truncationNote({ keptBytes: 4, droppedBytes: 6 }));
 * // " [tether: line truncated: 10 bytes, the first 4 kept, 6 dropped]"
 * ```
 */
export function truncationNote(info: TruncatedLine): string {
  return ` [tether: line truncated: ${info.keptBytes + info.droppedBytes} bytes, ` +
    `the first ${info.keptBytes} kept, ${info.droppedBytes} dropped]`;
}

/**
 * Calls `onLine` for each line of `stream` (without its `\n`), and once more
 * for a final unterminated line. Resolves when the stream ends.
 *
 * Each byte is looked at once, and at most `maxLineBytes` of a line are held:
 * past the cap the rest of the line is read and dropped (counted), and the
 * line is passed on cut, with {@linkcode truncationNote} appended, or, when
 * `onTruncated` is given, as is with the counts given to `onTruncated` right
 * before it. A cut may split a multi-byte character, which then decodes as
 * U+FFFD.
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
  options: { maxLineBytes?: number; onTruncated?: (info: TruncatedLine) => void } = {},
): Promise<void> {
  const max = options.maxLineBytes ?? MAX_LINE_BYTES;
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new RangeError(`maxLineBytes must be a positive integer, got ${max}`);
  }
  const decoder = new TextDecoder();
  // The current line so far: at most `max` bytes, in pieces.
  let pieces: Uint8Array[] = [];
  let held = 0;
  let dropped = 0;

  const keep = (bytes: Uint8Array) => {
    const room = max - held;
    if (bytes.length > room) {
      dropped += bytes.length - room;
      bytes = bytes.subarray(0, room);
    }
    if (bytes.length > 0) {
      // Copied: the stream may reuse its chunk's memory.
      pieces.push(bytes.slice());
      held += bytes.length;
    }
  };
  const emit = () => {
    const line = new Uint8Array(held);
    let offset = 0;
    for (const piece of pieces) {
      line.set(piece, offset);
      offset += piece.length;
    }
    let text = decoder.decode(line);
    if (dropped > 0) {
      const info = { keptBytes: held, droppedBytes: dropped };
      if (options.onTruncated) options.onTruncated(info);
      else text += truncationNote(info);
    }
    pieces = [];
    held = 0;
    dropped = 0;
    onLine(text);
  };

  for await (const chunk of stream) {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(10, start);
      if (newline < 0) {
        keep(chunk.subarray(start));
        break;
      }
      keep(chunk.subarray(start, newline));
      emit();
      start = newline + 1;
    }
  }
  if (held > 0 || dropped > 0) emit();
}
