import assert from "node:assert/strict";
import {
  consoleLogger,
  formatHclogJson,
  levelAtLeast,
  type LogLevel,
  type LogRecord,
  silentLogger,
  StderrLogParser,
} from "../src/logs.ts";
import { TetherError } from "../src/errors.ts";

const LEVELS: LogLevel[] = ["trace", "debug", "info", "warn", "error"];
const TS = "2026-11-21T19:20:38.123456Z";
const TS_DATE = new Date("2026-11-21T19:20:38.123Z");

function parse(line: string, parser = new StderrLogParser()): LogRecord {
  return parser.parse(line);
}

/** What go-plugin logs for a line it does not parse as hclog JSON. */
function plain(line: string, level: LogLevel = "debug"): LogRecord {
  return { level, message: line, fields: {} };
}

Deno.test("parse: hclog JSON at every level", () => {
  for (const level of LEVELS) {
    const line = JSON.stringify({ "@level": level, "@message": `hi ${level}`, "@timestamp": TS });
    assert.deepEqual(parse(line), { level, message: `hi ${level}`, timestamp: TS_DATE, fields: {} });
  }
});

Deno.test("parse: @level is matched like hclog's LevelFromString (trimmed, any case)", () => {
  for (
    const [given, want] of [["INFO", "info"], [" Warn\t", "warn"], ["\u0130NFO", "info"], ["ERROR", "error"]]
  ) {
    assert.equal(parse(JSON.stringify({ "@level": given, "@message": "m" })).level, want, given);
  }
});

Deno.test("parse: JSON with an unknown or missing @level is the raw line at debug, pairs dropped", () => {
  for (const level of ["fatal", "warning", "off", "all", ""]) {
    const line = JSON.stringify({ "@level": level, "@message": "m", "@timestamp": TS, k: 1 });
    assert.deepEqual(parse(line), plain(line), level);
  }
  const noLevel = '{"@message":"m","k":1}';
  assert.deepEqual(parse(noLevel), plain(noLevel));
});

Deno.test("parse: non-string @message, @level or @timestamp (a go-plugin host panics) is plain text", () => {
  for (
    const line of [
      '{"@level":"info","@message":5}',
      '{"@level":"info","@message":null}',
      '{"@level":"info","@message":{"text":"x"}}',
      '{"@level":["info"],"@message":"m"}',
      '{"@level":"info","@message":"m","@timestamp":1763752838}',
    ]
  ) {
    assert.deepEqual(parse(line), plain(line), line);
    const panicking = new StderrLogParser();
    panicking.parse("panic: boom");
    assert.deepEqual(parse(line, panicking), plain(line, "error"), `${line} in panic mode`);
  }
});

Deno.test("parse: a JS toISOString timestamp (3 digits) makes go-plugin treat the line as plain", () => {
  const line = JSON.stringify({ "@level": "error", "@message": "m", "@timestamp": new Date().toISOString() });
  assert.deepEqual(parse(line), plain(line));
  const panicking = new StderrLogParser();
  panicking.parse("fatal error: x");
  assert.deepEqual(parse(line, panicking), plain(line, "error"));
});

Deno.test("parse: @timestamp accepts exactly what Go's time.Parse accepts for hclog's layout", () => {
  const good: Array<[string, string]> = [
    ["2026-11-21T19:20:38.123456+05:30", "2026-11-21T13:50:38.123Z"],
    ["2026-11-21T19:20:38.123456-08:00", "2026-11-22T03:20:38.123Z"],
    ["2026-11-21T19:20:38.999999Z", "2026-11-21T19:20:38.999Z"],
    ["2026-11-21T19:20:38,123456Z", "2026-11-21T19:20:38.123Z"], // Go takes a comma as the decimal mark
    ["2026-11-21T9:20:38.123456Z", "2026-11-21T09:20:38.123Z"], // layout hour "15" is not zero-padded
    ["2026-11-21T19:20:38.+12345Z", "2026-11-21T19:20:38.012Z"], // Go's atoi takes a sign
    ["2026-11-21T19:20:38.123456+24:60", "2026-11-20T18:20:38.123Z"], // Go allows offsets to 24:60
    ["2024-02-29T00:00:00.000000Z", "2024-02-29T00:00:00.000Z"],
    ["0000-02-29T00:00:00.000000Z", "0000-02-29T00:00:00.000Z"],
    ["0099-01-01T00:00:00.000000Z", "0099-01-01T00:00:00.000Z"],
  ];
  for (const [stamp, want] of good) {
    const record = parse(JSON.stringify({ "@level": "info", "@message": "m", "@timestamp": stamp }));
    assert.equal(record.level, "info", stamp);
    assert.equal(record.timestamp?.toISOString(), want, stamp);
  }
  const bad = [
    "2026-11-21T19:20:38.123Z",
    "2026-11-21T19:20:38.123456789Z",
    "2026-11-21T19:20:38Z",
    "2026-11-21T19:20:38.123456",
    "2026-11-21T19:20:38.123456z",
    "2026-11-21T19:20:38.123456+0100",
    "2026-11-21T19:20:38.123456+25:00",
    "2026-11-21T19:20:38.-12345Z",
    "2026-11-21 19:20:38.123456Z",
    "2026-11-21T19:20:38.123456Z ",
    "2023-02-29T00:00:00.000000Z",
    "2026-04-31T00:00:00.000000Z",
    "2026-13-01T00:00:00.000000Z",
    "2026-11-21T24:00:00.000000Z",
    "2026-11-21T23:59:60.000000Z",
  ];
  for (const stamp of bad) {
    const line = JSON.stringify({ "@level": "info", "@message": "m", "@timestamp": stamp });
    assert.deepEqual(parse(line), plain(line), stamp);
  }
});

Deno.test("parse: other keys become fields, @module and @caller included", () => {
  const line =
    '{"@caller":"main.go:12","@level":"warn","@message":"slow","@module":"kv","@timestamp":"2026-11-21T19:20:38.123456Z","ms":1200,"tags":["a"],"err":null}';
  assert.deepEqual(parse(line), {
    level: "warn",
    message: "slow",
    timestamp: TS_DATE,
    fields: { "@caller": "main.go:12", "@module": "kv", ms: 1200, tags: ["a"], err: null },
  });
  const record = parse('{"@level":"info","@message":"m","__proto__":{"polluted":true}}');
  assert.equal(Object.getPrototypeOf(record.fields), Object.prototype);
  assert.deepEqual(Object.keys(record.fields), ["__proto__"]);
});

Deno.test("parse: JSON without @message has an empty message; without @timestamp no timestamp", () => {
  assert.deepEqual(parse('{"@level":"error"}'), { level: "error", message: "", fields: {} });
});

Deno.test("parse: what Go's encoding/json rejects is plain text", () => {
  const deep = (n: number) => `{"@level":"info","@message":"m","d":${"[".repeat(n)}${"]".repeat(n)}}`;
  assert.equal(parse(deep(9999)).level, "info"); // 10000 levels with the outer object: Go's limit
  for (
    const line of [
      "[]",
      '"str"',
      "42",
      "{",
      '{"@level":"info","@message":"m"} trailing',
      '{"@level":"info","@message":"m","n":1e400}',
      deep(10000),
    ]
  ) {
    assert.deepEqual(parse(line), plain(line), line.slice(0, 60));
  }
});

Deno.test("parse: JSON null is an entry without a level: the raw line at debug, even in panic mode", () => {
  const parser = new StderrLogParser();
  parser.parse("panic: boom");
  assert.deepEqual(parser.parse("null"), plain("null"));
  assert.deepEqual(parser.parse("{}"), plain("{}"));
});

Deno.test("parse: plain prefixes set the level and stay in the message", () => {
  for (const level of LEVELS) {
    const line = `[${level.toUpperCase()}] something happened`;
    assert.deepEqual(parse(line), plain(line, level));
  }
  assert.deepEqual(parse("[INFO]no space"), plain("[INFO]no space", "info"));
  for (const line of [" [INFO] indented", "[info] lower", "[WARNING] long", "[INFO", "just text", ""]) {
    assert.deepEqual(parse(line), plain(line), line);
  }
});

Deno.test("parse: panic mode persists for plain lines, not for tagged or JSON ones", () => {
  for (const trigger of ["panic: runtime error: index out of range", "fatal error: concurrent map writes"]) {
    const parser = new StderrLogParser();
    assert.equal(parser.parse("starting").level, "debug");
    assert.equal(parser.inPanic, false);
    assert.deepEqual(parser.parse(trigger), plain(trigger, "error"));
    assert.equal(parser.inPanic, true);
    assert.deepEqual(parser.parse("goroutine 1 [running]:"), plain("goroutine 1 [running]:", "error"));
    assert.deepEqual(parser.parse(""), plain("", "error"));
    assert.equal(parser.parse("[INFO] tagged").level, "info");
    assert.equal(parser.parse('{"@level":"trace","@message":"json"}').level, "trace");
    assert.equal(parser.parse("\tmain.main()").level, "error");
  }
  for (const line of ["panic:no space", "Panic: capital", " panic: indented"]) {
    const parser = new StderrLogParser();
    assert.equal(parser.parse(line).level, "debug", line);
    assert.equal(parser.parse("after").level, "debug", line);
  }
  assert.equal(new StderrLogParser().parse("after").level, "debug", "parsers do not share state");
});

Deno.test("parse: a line that does not fit go-plugin's buffer is debug, unparsed", () => {
  const json = (bytes: number) => {
    const empty = JSON.stringify({ "@level": "error", "@message": "" });
    return JSON.stringify({ "@level": "error", "@message": "x".repeat(bytes - empty.length) });
  };
  const parser = new StderrLogParser({ maxLineBytes: 64 });
  assert.equal(parser.parse(json(63)).level, "error"); // 63 bytes + "\n" fill the buffer
  assert.deepEqual(parser.parse(json(64)), plain(json(64)));
  assert.equal(parser.parse("é".repeat(31) + "z").message.length, 32); // 63 bytes
  assert.deepEqual(parser.parse(`[ERROR] ${"é".repeat(28)}`), plain(`[ERROR] ${"é".repeat(28)}`)); // 64 bytes
  assert.equal(parser.parse(`[ERROR] ${"💥".repeat(13)}x`).level, "error"); // 61 bytes
  assert.equal(parser.parse(json(62) + "\r").level, "error");
  assert.deepEqual(parser.parse(json(63) + "\r"), plain(json(63)), "the \\r took a byte of the buffer");

  const overlongPanic = `panic: ${"p".repeat(100)}`;
  assert.deepEqual(parser.parse(overlongPanic), plain(overlongPanic));
  assert.equal(parser.inPanic, false, "go-plugin never looks at an overlong line's text");

  const byDefault = new StderrLogParser();
  assert.equal(byDefault.parse(json(65535)).level, "error");
  assert.equal(byDefault.parse(json(65536)).level, "debug");
});

Deno.test("parse: a trailing \\r is dropped, as bufio.Reader.ReadLine does", () => {
  assert.deepEqual(parse("[WARN] crlf\r"), plain("[WARN] crlf", "warn"));
  assert.deepEqual(parse('{"@level":"info","@message":"crlf"}\r'), {
    level: "info",
    message: "crlf",
    fields: {},
  });
});

Deno.test("StderrLogParser: maxLineBytes is validated and at least 16, like bufio", () => {
  for (const maxLineBytes of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(
      () => new StderrLogParser({ maxLineBytes }),
      (e) => e instanceof TetherError && e.code === "config",
      String(maxLineBytes),
    );
  }
  const tiny = new StderrLogParser({ maxLineBytes: 1 });
  assert.equal(tiny.parse("[ERROR] 15 byte").level, "error");
  assert.equal(tiny.parse("[ERROR] 16 bytes").level, "debug");
});

Deno.test("formatHclogJson: round-trips through StderrLogParser at every level", () => {
  for (const level of LEVELS) {
    const record: LogRecord = {
      level,
      message: `multi\nline "quoted" \\ ünïcødé 💥 \u2028 ${level}`,
      timestamp: TS_DATE,
      fields: { "@module": "plugin.kv", count: 3, ok: true, nested: { a: [1, "two", null] }, none: null },
    };
    const line = formatHclogJson(record);
    assert.ok(line.endsWith("}\n"));
    assert.equal(line.indexOf("\n"), line.length - 1, "exactly one line");
    assert.deepEqual(parse(line.slice(0, -1)), record);
  }
});

Deno.test("formatHclogJson: timestamp has exactly six fractional digits (go-plugin's layout)", () => {
  const line = formatHclogJson({ level: "info", message: "m", timestamp: TS_DATE, fields: {} });
  assert.equal(line, '{"@level":"info","@message":"m","@timestamp":"2026-11-21T19:20:38.123000Z"}\n');
  assert.match(line, /\.\d{6}(Z|[+-]\d\d:\d\d)"/);
  for (const timestamp of [undefined, new Date(NaN), new Date(8.64e15), new Date(-8.64e15), new Date(0)]) {
    const stamped = formatHclogJson({ level: "warn", message: "m", timestamp, fields: {} });
    assert.match(stamped, /"@timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"/);
    const back = parse(stamped.slice(0, -1));
    assert.equal(back.level, "warn");
    assert.ok(back.timestamp !== undefined);
  }
  const before = Date.now();
  const now = parse(formatHclogJson({ level: "info", message: "m", fields: {} }).slice(0, -1)).timestamp!;
  assert.ok(now.getTime() >= before - 1 && now.getTime() <= Date.now());
});

Deno.test("formatHclogJson: field values are made serialisable and reserved keys cannot override", () => {
  const circular: Record<string, unknown> = { name: "loop" };
  circular.self = circular;
  const line = formatHclogJson({
    level: "error",
    message: "m",
    timestamp: TS_DATE,
    fields: {
      err: new Error("disk full"),
      inner: { cause: new TypeError("bad") },
      big: 2n ** 70n,
      circular,
      hostile: {
        toJSON: () => {
          throw new Error("no");
        },
      },
      skipped: undefined,
      fn: () => 1,
      "@level": "trace",
      "@message": "spoof",
      "@timestamp": "spoof",
      "@module": "kept",
    },
  });
  assert.deepEqual(parse(line.slice(0, -1)), {
    level: "error",
    message: "m",
    timestamp: TS_DATE,
    fields: {
      err: "disk full",
      inner: { cause: "bad" },
      big: "1180591620717411303424",
      circular: "[unserializable]",
      hostile: "[unserializable]",
      "@module": "kept",
    },
  });
});

Deno.test("formatHclogJson: never throws, even for a hostile record", () => {
  const fields = {};
  Object.defineProperty(fields, "boom", {
    enumerable: true,
    get() {
      throw new Error("getter");
    },
  });
  const line = formatHclogJson({ level: "info", message: "m", fields });
  const record = parse(line.slice(0, -1));
  assert.equal(record.level, "error");
  assert.equal(record.message, "[unserializable log record]");
});

Deno.test("levelAtLeast orders trace < debug < info < warn < error", () => {
  for (const [i, level] of LEVELS.entries()) {
    for (const [j, min] of LEVELS.entries()) {
      assert.equal(levelAtLeast(level, min), i >= j, `${level} ${min}`);
    }
  }
  assert.equal(levelAtLeast("fatal" as LogLevel, "trace"), false);
});

Deno.test("silentLogger drops records", () => {
  silentLogger.log({ level: "error", message: "m", fields: {} });
  assert.ok(Object.isFrozen(silentLogger));
});

function captureConsole(fn: () => void): string[] {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void lines.push(args.join(" "));
  try {
    fn();
  } finally {
    console.error = original;
  }
  return lines;
}

Deno.test("consoleLogger writes hclog-like lines at or above its level", () => {
  const out = captureConsole(() => {
    const logger = consoleLogger({ name: "tether" });
    logger.log({ level: "debug", message: "hidden", fields: {} });
    logger.log({
      level: "info",
      message: "started",
      timestamp: TS_DATE,
      fields: { pid: 42, path: "/tmp/p" },
    });
    logger.log({
      level: "error",
      message: "failed",
      timestamp: TS_DATE,
      fields: { err: new Error("no way") },
    });
    logger.log({ level: "warn", message: "", timestamp: TS_DATE, fields: { empty: "", obj: { a: 1 } } });
  });
  assert.deepEqual(out, [
    "2026-11-21T19:20:38.123Z [INFO]  tether: started: pid=42 path=/tmp/p",
    '2026-11-21T19:20:38.123Z [ERROR] tether: failed: err="no way"',
    '2026-11-21T19:20:38.123Z [WARN]  tether: empty="" obj={"a":1}',
  ]);
});

Deno.test("consoleLogger: no name, multi-line values, trace level, and time defaults to now", () => {
  const out = captureConsole(() => {
    const logger = consoleLogger({ level: "trace" });
    logger.log({ level: "trace", message: "dump", timestamp: TS_DATE, fields: { stack: "a\nb" } });
    logger.log({ level: "debug", message: "now", fields: {} });
  });
  assert.equal(out[0], "2026-11-21T19:20:38.123Z [TRACE] dump:\n  stack=\n  | a\n  | b\n  ");
  assert.match(out[1], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[DEBUG\] now$/);
});

Deno.test("consoleLogger rejects an unknown level and never throws from log", () => {
  assert.throws(
    () => consoleLogger({ level: "verbose" as LogLevel }),
    (e) => e instanceof TetherError && e.code === "config",
  );
  const original = console.error;
  console.error = () => {
    throw new Error("closed stderr");
  };
  try {
    consoleLogger().log({ level: "error", message: "m", fields: {} });
  } finally {
    console.error = original;
  }
});
