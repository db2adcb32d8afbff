/**
 * Logging: the records Tether emits, the loggers that receive them, and the two
 * halves of go-plugin's stderr convention. A host turns each stderr line of a
 * plugin into a {@linkcode LogRecord} with {@linkcode StderrLogParser}, exactly
 * as go-plugin v1.8.0's `Client.logStderr` does; a plugin writes records with
 * {@linkcode formatHclogJson} so a Go host logs them at the right level.
 *
 * @example
 * ```ts
 * import { consoleLogger, StderrLogParser } from "./logs.ts";
 *
 * const logger = consoleLogger({ level: "debug", name: "plugin.kv" });
 * const parser = new StderrLogParser();
 * logger.log(parser.parse('{"@level":"warn","@message":"disk almost full","free_mb":12}'));
 * ```
 *
 * @module
 */

import { TetherError } from "./errors.ts";

/**
 * hclog levels, in order.
 *
 * @example
 * ```ts
 * import type { LogLevel } from "./logs.ts";
 * const level: LogLevel = "warn";
 * ```
 */
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error";

/**
 * One log entry, from a plugin or from Tether itself.
 *
 * @example
 * ```ts
 * import type { LogRecord } from "./logs.ts";
 * const record: LogRecord = { level: "info", message: "plugin started", fields: { pid: 4242 } };
 * ```
 */
export interface LogRecord {
  /** How severe the entry is. */
  level: LogLevel;
  /** The human-readable text. */
  message: string;
  /** When the plugin says it happened (hclog `@timestamp`), if it said. */
  timestamp?: Date;
  /**
   * Other key/value pairs: the hclog JSON keys other than `@level`,
   * `@message` and `@timestamp` (`@module` and `@caller` included).
   */
  fields: Record<string, unknown>;
}

/**
 * Where Tether sends log records. Implementations must not throw.
 *
 * @example
 * ```ts
 * import type { Logger, LogRecord } from "./logs.ts";
 * const seen: LogRecord[] = [];
 * const collecting: Logger = { log: (record) => void seen.push(record) };
 * collecting.log({ level: "debug", message: "hello", fields: {} });
 * ```
 */
export interface Logger {
  /** Receives one record. */
  log(record: LogRecord): void;
}

const LEVEL_RANK: Readonly<Record<LogLevel, number>> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === "string" && Object.hasOwn(LEVEL_RANK, value);
}

/**
 * Whether `level` is at least as severe as `min`. Unknown levels never pass.
 *
 * @example
 * ```ts
 * import { levelAtLeast } from "./logs.ts";
 * console.log(levelAtLeast("warn", "info")); // true
 * console.log(levelAtLeast("debug", "info")); // false
 * ```
 */
export function levelAtLeast(level: LogLevel, min: LogLevel): boolean {
  if (!isLogLevel(level) || !isLogLevel(min)) return false;
  return LEVEL_RANK[level] >= LEVEL_RANK[min];
}

/**
 * A logger that drops everything.
 *
 * @example
 * ```ts
 * import { silentLogger } from "./logs.ts";
 * silentLogger.log({ level: "error", message: "nobody hears this", fields: {} });
 * ```
 */
export const silentLogger: Logger = Object.freeze({ log(_record: LogRecord): void {} });

// hclog pads the bracket to a fixed width so messages line up.
const BRACKET: Readonly<Record<LogLevel, string>> = {
  trace: "[TRACE]",
  debug: "[DEBUG]",
  info: "[INFO] ",
  warn: "[WARN] ",
  error: "[ERROR]",
};

/**
 * A logger writing one human-readable line per record with `console.error`, in
 * the shape of hclog's text format:
 * `2026-11-21T19:20:38.123Z [INFO]  name: message: key=value key2=value2`.
 * Records below `level` (default `"info"`) are dropped.
 *
 * @example
 * ```ts
 * import { consoleLogger } from "./logs.ts";
 * const logger = consoleLogger({ level: "debug", name: "tether" });
 * logger.log({ level: "info", message: "plugin started", fields: { pid: 4242 } });
 * // 2026-11-21T19:20:38.123Z [INFO]  tether: plugin started: pid=4242
 * ```
 *
 * @throws {TetherError} `config` if `level` is not a {@linkcode LogLevel}.
 */
export function consoleLogger(options: { level?: LogLevel; name?: string } = {}): Logger {
  const min = options.level ?? "info";
  if (!isLogLevel(min)) throw new TetherError("config", `unknown log level ${JSON.stringify(min)}`);
  const name = options.name ?? "";
  return {
    log(record: LogRecord): void {
      try {
        if (!levelAtLeast(record.level, min)) return;
        console.error(formatText(record, name));
      } catch {
        // A logger that throws would turn a log call into a crash of the caller.
      }
    },
  };
}

function formatText(record: LogRecord, name: string): string {
  const time = (validDate(record.timestamp) ?? new Date()).toISOString();
  let line = `${time} ${BRACKET[record.level]} `;
  const message = String(record.message);
  if (name !== "") line += message === "" ? name : `${name}: ${message}`;
  else line += message;
  const entries = Object.entries(record.fields ?? {});
  if (entries.length === 0) return line;
  line += ":";
  for (const [key, value] of entries) {
    const [text, raw] = textValue(value);
    if (text.includes("\n")) {
      // hclog keeps multi-line values readable by indenting each line under the key.
      line += `\n  ${key}=\n${text.split("\n").map((l) => `  | ${l}`).join("\n")}\n  `;
    } else if (!raw && needsQuoting(text)) {
      line += ` ${key}=${JSON.stringify(text)}`;
    } else {
      line += ` ${key}=${text}`;
    }
  }
  return line;
}

/** Renders a field value as hclog would; the flag says the text must not be quoted again. */
function textValue(value: unknown): [string, boolean] {
  if (typeof value === "string") return value === "" ? ['""', true] : [value, false];
  if (value instanceof Error) return [value.message, false];
  if (value instanceof Date) return [validDate(value)?.toISOString() ?? "Invalid Date", false];
  if (value === null || typeof value !== "object") return [String(value), false];
  return [jsonValue(value) ?? String(value), true];
}

// hclog quotes any value with a rune outside '-'..'~', which includes spaces.
function needsQuoting(text: string): boolean {
  return /[^\x2d-\x7e]/.test(text);
}

function validDate(date: Date | undefined): Date | undefined {
  return date instanceof Date && !Number.isNaN(date.getTime()) ? date : undefined;
}

/**
 * Turns a plugin's stderr lines into log records the way a go-plugin host
 * (v1.8.0 `Client.logStderr`) does. Stateful: once a plain line starts with
 * `panic: ` or `fatal error: `, every later plain line is `error`, because the
 * rest is a Go stack trace.
 *
 * A line is, in order:
 * - longer than the buffer (its UTF-8 bytes plus `\n` exceed `maxLineBytes`):
 *   `debug`, the text as is. go-plugin logs such a line as several `debug`
 *   entries, one per buffer-full; this returns one record with the whole line.
 * - hclog JSON (an object whose `@message`, `@level` and `@timestamp`, where
 *   present, are strings, with `@timestamp` in hclog's
 *   `2006-01-02T15:04:05.000000Z07:00` layout): its level and message, or, when
 *   `@level` is missing or not an hclog level, `debug` with the whole line as
 *   the message. `@level` is matched case-insensitively after trimming, as
 *   hclog's `LevelFromString` does.
 * - plain text: `[TRACE]`, `[DEBUG]`, `[INFO]`, `[WARN]` or `[ERROR]` at the
 *   very start sets the level (the tag stays in the message); otherwise
 *   `error` in panic mode and `debug` outside it.
 *
 * JSON that would make go-plugin's host panic (a non-string `@message`,
 * `@level` or `@timestamp`) is handled as plain text instead.
 *
 * @example
 * ```ts
 * import { StderrLogParser } from "./logs.ts";
 * const parser = new StderrLogParser();
 * parser.parse('{"@level":"info","@message":"ready","@timestamp":"2026-11-21T19:20:38.123456Z"}');
 * // { level: "info", message: "ready", timestamp: 2026-11-21T19:20:38.123Z, fields: {} }
 * parser.parse("[WARN] low disk"); // { level: "warn", message: "[WARN] low disk", fields: {} }
 * parser.parse("panic: boom"); // { level: "error", ... }
 * parser.parse("goroutine 1 [running]:"); // { level: "error", ... }
 * ```
 */
export class StderrLogParser {
  #maxLineBytes: number;
  #inPanic = false;

  /**
   * Makes a parser for one plugin's stderr; use a fresh one per process.
   *
   * @example
   * ```ts
   * import { StderrLogParser } from "./logs.ts";
   * const parser = new StderrLogParser({ maxLineBytes: 1024 * 1024 });
   * ```
   *
   * @param options.maxLineBytes go-plugin's `PluginLogBufferSize`: a line is
   * parsed only if it and its `\n` fit in this many bytes. Default 64 KiB;
   * values under 16 count as 16, like Go's `bufio.NewReaderSize`.
   * @throws {TetherError} `config` if `maxLineBytes` is not a positive integer.
   */
  constructor(options: { maxLineBytes?: number } = {}) {
    const max = options.maxLineBytes ?? 64 * 1024;
    if (!Number.isSafeInteger(max) || max <= 0) {
      throw new TetherError("config", `maxLineBytes must be a positive integer, got ${max}`);
    }
    this.#maxLineBytes = Math.max(16, max);
  }

  /**
   * Whether a `panic: ` or `fatal error: ` line has been seen.
   *
   * @example
   * ```ts
   * import { StderrLogParser } from "./logs.ts";
   * const parser = new StderrLogParser();
   * parser.parse("fatal error: all goroutines are asleep - deadlock!");
   * console.log(parser.inPanic); // true
   * ```
   */
  get inPanic(): boolean {
    return this.#inPanic;
  }

  /**
   * Turns one stderr line into a record. `line` comes without its `\n`; a
   * trailing `\r` is dropped, as Go's `bufio.Reader.ReadLine` does.
   *
   * @example
   * ```ts
   * import { StderrLogParser } from "./logs.ts";
   * const record = new StderrLogParser().parse("[ERROR] cannot open db");
   * console.log(record.level); // "error"
   * ```
   */
  parse(line: string): LogRecord {
    // The \r still took a byte of go-plugin's buffer, so it counts towards the limit.
    const overlong = exceeds(line, this.#maxLineBytes - 1);
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (overlong) return { level: "debug", message: line, fields: {} };
    return parseHclogJson(line) ?? this.#parsePlain(line);
  }

  #parsePlain(line: string): LogRecord {
    for (const [tag, level] of TAGS) {
      if (line.startsWith(tag)) return { level, message: line, fields: {} };
    }
    if (line.startsWith("panic: ") || line.startsWith("fatal error: ")) this.#inPanic = true;
    return { level: this.#inPanic ? "error" : "debug", message: line, fields: {} };
  }
}

// Checked in this order, before panic mode, as in client.go.
const TAGS: ReadonlyArray<readonly [string, LogLevel]> = [
  ["[TRACE]", "trace"],
  ["[DEBUG]", "debug"],
  ["[INFO]", "info"],
  ["[WARN]", "warn"],
  ["[ERROR]", "error"],
];

/** Whether the UTF-8 encoding of `text` is longer than `max` bytes. */
function exceeds(text: string, max: number): boolean {
  // UTF-16 units bound the UTF-8 size to [length, 3 * length], so most lines need no counting.
  if (text.length > max) return true;
  if (text.length * 3 <= max) return false;
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) bytes += 1;
    else if (unit < 0x800) bytes += 2;
    else if (unit >= 0xd800 && unit < 0xdc00 && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes > max;
}

/**
 * go-plugin's `parseJSON` plus the level switch after it. `undefined` means
 * go-plugin would treat the line as plain text (or, for non-string reserved
 * keys, panic).
 */
function parseHclogJson(line: string): LogRecord | undefined {
  // Only an object or `null` can decode into Go's map; skip JSON.parse for the rest.
  const first = line.match(/^[ \t\n\r]*(.)/)?.[1];
  if (first !== "{" && first !== "n") return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  // `null` decodes into a nil map without error, so it is an entry with no level.
  if (value === null) return { level: "debug", message: line, fields: {} };
  if (typeof value !== "object" || Array.isArray(value) || !goDecodes(value)) return undefined;
  const raw = value as Record<string, unknown>;

  const message = takeString(raw, "@message");
  const level = takeString(raw, "@level");
  const stamp = takeString(raw, "@timestamp");
  if (message === null || level === null || stamp === null) return undefined;
  let timestamp: Date | undefined;
  if (stamp !== undefined) {
    timestamp = parseGoTimestamp(stamp);
    if (timestamp === undefined) return undefined;
  }

  const known = levelFromString(level ?? "");
  // hclog.NoLevel (and "off"): go-plugin logs the raw line at debug, dropping the pairs.
  if (known === undefined) return { level: "debug", message: line, fields: {} };
  const record: LogRecord = { level: known, message: message ?? "", fields: raw };
  if (timestamp !== undefined) record.timestamp = timestamp;
  return record;
}

/** Removes `key`; `undefined` if absent, `null` if present but not a string (Go's type assertion panics). */
function takeString(raw: Record<string, unknown>, key: string): string | undefined | null {
  if (!Object.hasOwn(raw, key)) return undefined;
  const value = raw[key];
  delete raw[key];
  return typeof value === "string" ? value : null;
}

const GO_MAX_JSON_DEPTH = 10_000;

/**
 * Whether Go's `encoding/json` also accepts what JSON.parse did: Go rejects
 * nesting deeper than 10000 and numbers that overflow float64 (JSON.parse
 * makes them Infinity).
 */
function goDecodes(root: object): boolean {
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (typeof value === "number") {
      if (!Number.isFinite(value)) return false;
    } else if (typeof value === "object" && value !== null) {
      if (depth > GO_MAX_JSON_DEPTH) return false;
      for (const child of Object.values(value)) stack.push([child, depth + 1]);
    }
  }
  return true;
}

/** hclog's `LevelFromString`: Go's `strings.TrimSpace`, then `strings.ToLower`. */
function levelFromString(text: string): LogLevel | undefined {
  const lower = text
    .replace(/^[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/, "")
    .replace(/[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/, "")
    // Go lowercases rune by rune; U+0130 (İ) is the one non-ASCII rune that lowers into a level name.
    .replace(/[A-Z\u0130]/g, (c) => c === "\u0130" ? "i" : c.toLowerCase());
  return isLogLevel(lower) ? lower : undefined;
}

// Go's time.Parse with "2006-01-02T15:04:05.000000Z07:00": the hour may have
// one digit ("15" is not zero-padded), "," works as the decimal mark, and the
// six fraction bytes go through atoi, which also takes "+ddddd" and "-00000".
const GO_TIMESTAMP =
  /^(\d{4})-(\d\d)-(\d\d)T(\d\d?):(\d\d):(\d\d)[.,](\d{6}|\+\d{5}|-00000)(?:Z|([+-])(\d\d):(\d\d))$/;

/** Parses hclog's JSON timestamp exactly where Go's time.Parse would; `undefined` otherwise. */
function parseGoTimestamp(text: string): Date | undefined {
  const m = GO_TIMESTAMP.exec(text);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second, micros] = m.slice(1, 8).map(Number);
  const zoneHours = m[9] === undefined ? 0 : Number(m[9]);
  const zoneMinutes = m[10] === undefined ? 0 : Number(m[10]);
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return undefined;
  // Go allows zone offsets up to 24:60 on purpose.
  if (zoneHours > 24 || zoneMinutes > 60) return undefined;
  if (day < 1 || day > daysIn(month, year)) return undefined;
  const date = new Date(0);
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999.
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, Math.floor(Math.abs(micros) / 1000));
  const offset = (m[8] === "-" ? -1 : 1) * (zoneHours * 60 + zoneMinutes) * 60_000;
  return new Date(date.getTime() - offset);
}

function daysIn(month: number, year: number): number {
  if (month !== 2) return [31, 0, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
}

const RESERVED = new Set(["@level", "@message", "@timestamp"]);

/**
 * Formats a record as one hclog JSON line, with its trailing `"\n"`, that a Go
 * go-plugin host parses at the record's level: `@timestamp` is UTC with exactly
 * six fractional digits, the form go-plugin requires. A missing or
 * unrepresentable timestamp (invalid, or outside years 0-9999) becomes now.
 *
 * Field values are written as JSON; Errors become their message, bigints
 * strings, and a value that cannot be serialised (e.g. circular)
 * `"[unserializable]"`. Fields named `@level`, `@message` or `@timestamp` are
 * dropped so they cannot override the record's own. Never throws.
 *
 * A go-plugin host parses only lines shorter than its 64 KiB buffer; longer
 * ones reach its log as raw `debug` text.
 *
 * @example
 * ```ts
 * import { formatHclogJson } from "./logs.ts";
 * const line = formatHclogJson({
 *   level: "info",
 *   message: "ready",
 *   timestamp: new Date("2026-11-21T19:20:38.123Z"),
 *   fields: { port: 1234 },
 * });
 * // '{"@level":"info","@message":"ready","@timestamp":"2026-11-21T19:20:38.123000Z","port":1234}\n'
 * ```
 */
export function formatHclogJson(record: LogRecord): string {
  try {
    const level = JSON.stringify(String(record.level));
    const message = JSON.stringify(String(record.message));
    let line = `{"@level":${level},"@message":${message},"@timestamp":"${hclogTimestamp(record.timestamp)}"`;
    for (const [key, value] of Object.entries(record.fields ?? {})) {
      if (RESERVED.has(key)) continue;
      const json = jsonValue(value);
      if (json !== undefined) line += `,${JSON.stringify(key)}:${json}`;
    }
    return `${line}}\n`;
  } catch {
    // Only a hostile record gets here (e.g. a throwing getter); still emit a line the host can parse.
    const timestamp = hclogTimestamp(undefined);
    return `{"@level":"error","@message":"[unserializable log record]","@timestamp":"${timestamp}"}\n`;
  }
}

function hclogTimestamp(timestamp: Date | undefined): string {
  let date = validDate(timestamp);
  const year = date?.getUTCFullYear();
  if (year === undefined || year < 0 || year > 9999) date = new Date();
  // toISOString has milliseconds; go-plugin's layout needs microseconds.
  return `${date!.toISOString().slice(0, 23)}000Z`;
}

/** JSON for a field value; `undefined` to omit it (as JSON.stringify omits undefined and functions). */
function jsonValue(value: unknown): string | undefined {
  try {
    return JSON.stringify(value, (_key, v) => {
      if (typeof v === "bigint") return v.toString();
      if (v instanceof Error) return v.message;
      return v;
    });
  } catch {
    return '"[unserializable]"';
  }
}
