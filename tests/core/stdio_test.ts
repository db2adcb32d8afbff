/**
 * Plugin output reaching the host: stdout/stderr written after the handshake
 * travel over GRPCStdio into the host's sinks; the plugin's log (hclog JSON
 * on its real stderr) reaches the host's logger at the right level with its
 * fields.
 */

import assert from "node:assert/strict";
import type { LogLevel, PluginClient, PluginClientOptions } from "../../mod.ts";
import { StdioData_Channel } from "../../src/gen/plugin/grpc_stdio_pb.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { StdioCapture, writeAllSync } from "../../src/stdio.ts";
import { eventually, ignoreWithoutGo } from "../helpers.ts";
import { inSandbox, Recorder, type Sandbox } from "./support.ts";

const LEVELS: LogLevel[] = ["trace", "debug", "info", "warn", "error"];

/** Collects sink chunks as text. */
class Collected {
  value = "";
  readonly #decoder = new TextDecoder();
  readonly sink = (chunk: Uint8Array): void => {
    this.value += this.#decoder.decode(chunk, { stream: true });
  };
}

async function stdioAndLogs(box: Sandbox, options: PluginClientOptions, goPlugin: boolean): Promise<void> {
  const stdout = new Collected();
  const stderr = new Collected();
  const logger = new Recorder();
  const client: PluginClient = box.client({ ...options, stdout: stdout.sink, stderr: stderr.sink, logger });
  await client.start();
  const kv = client.dispense(KV);

  await kv.emit({ stdout: "first line to stdout\n", stderr: "first line to stderr\n" });
  await kv.emit({ stdout: "second, no newline", stderr: "" });
  // More than one 1 KiB StdioData chunk.
  const long = "0123456789abcdef".repeat(300) + "\n";
  await kv.emit({ stdout: long });
  const wantStdout = "first line to stdout\nsecond, no newline" + long;
  assert.ok(
    await eventually(() => stdout.value === wantStdout, 10_000),
    `stdout sink got ${JSON.stringify(stdout.value.slice(0, 200))}`,
  );
  assert.ok(
    await eventually(() => stderr.value === "first line to stderr\n", 10_000),
    `stderr: ${stderr.value}`,
  );

  for (const level of LEVELS) await kv.emit({ logLevel: level, logMessage: `message at ${level}` });
  assert.ok(
    await eventually(() => LEVELS.every((level) => logger.find(`message at ${level}`).length === 1), 10_000),
    `log records missing: ${JSON.stringify(logger.records.map((r) => r.message))}`,
  );
  for (const level of LEVELS) {
    const [record] = logger.find(`message at ${level}`);
    assert.equal(record.level, level, `level of "message at ${level}"`);
    assert.equal(record.message, `message at ${level}`);
    assert.equal(record.fields.source, "emit");
    assert.equal(record.fields.plugin, client.name);
    assert.ok(record.timestamp instanceof Date && !isNaN(record.timestamp.getTime()), "no timestamp parsed");
    assert.ok(Math.abs(record.timestamp.getTime() - Date.now()) < 5 * 60_000, "timestamp far off");
    if (goPlugin) assert.equal(record.fields["@module"], "kvplugin");
  }

  // Forwarded output is not mistaken for log lines, and log lines do not go to the sinks.
  assert.deepEqual(logger.find("first line to stderr"), []);
  assert.deepEqual(logger.find("first line to stdout"), []);
  assert.ok(!stderr.value.includes("message at"), "log records leaked into the stderr sink");
  assert.ok(!stdout.value.includes("message at"));
}

Deno.test("stdio: TS plugin: stdout/stderr reach the sinks; log records reach the logger at their level", async () => {
  await inSandbox(async (box) => await stdioAndLogs(box, box.tsKv(), false));
});

Deno.test({
  name: "stdio: Go plugin: stdout/stderr reach the sinks; log records reach the logger at their level",
  ignore: ignoreWithoutGo(),
  fn: () => inSandbox(async (box) => await stdioAndLogs(box, await box.goKv(), true)),
});

Deno.test("stdio: WritableStream sinks receive the output", async () => {
  await inSandbox(async (box) => {
    const chunks: Record<"out" | "err", string> = { out: "", err: "" };
    const decoder = new TextDecoder();
    const stream = (key: "out" | "err") =>
      new WritableStream<Uint8Array>({ write: (chunk) => void (chunks[key] += decoder.decode(chunk)) });
    const client = box.client(box.tsKv({ stdout: stream("out"), stderr: stream("err") }));
    await client.start();
    await client.dispense(KV).emit({ stdout: "to a stream\n", stderr: "to another stream\n" });
    assert.ok(await eventually(() => chunks.out === "to a stream\n", 10_000), chunks.out);
    assert.ok(await eventually(() => chunks.err === "to another stream\n", 10_000), chunks.err);
  });
});

Deno.test("stdio: without sinks the output is dropped and the plugin keeps working", async () => {
  await inSandbox(async (box) => {
    const logger = new Recorder();
    const client = box.client(box.tsKv({ logger }));
    await client.start();
    const kv = client.dispense(KV);
    // Far more than any pipe buffer: an unread stream would block the plugin's writes.
    for (let i = 0; i < 20; i++) {
      await kv.emit({ stdout: "x".repeat(64 * 1024), stderr: "y".repeat(64 * 1024) });
    }
    await client.ping();
    assert.deepEqual(logger.records.filter((r) => r.level === "warn" || r.level === "error"), []);
  });
});

Deno.test("stdio: a throwing sink is reported as a warning and does not stop the stream", async () => {
  await inSandbox(async (box) => {
    const logger = new Recorder();
    const good = new Collected();
    let calls = 0;
    const client = box.client(box.tsKv({
      logger,
      stdout: () => {
        calls++;
        throw new Error("sink is full");
      },
      stderr: good.sink,
    }));
    await client.start();
    const kv = client.dispense(KV);
    await kv.emit({ stdout: "lost\n" });
    await kv.emit({ stderr: "kept\n" });
    assert.ok(await eventually(() => good.value === "kept\n", 10_000), good.value);
    assert.ok(calls >= 1);
    assert.equal(logger.find("could not write plugin output to its sink")[0]?.level, "warn");
  });
});

Deno.test("stdio: the plugin's own stderr lines that are not JSON are logged at debug (or by their [LEVEL] prefix)", async () => {
  await inSandbox(async (box) => {
    const logger = new Recorder();
    const client = box.client(
      box.shellFake("exit_early.sh", ["5", "[WARN] disk almost full", "plain words"], {
        logger,
      }),
    );
    await client.start().catch(() => {});
    assert.equal(logger.find("[WARN] disk almost full")[0]?.level, "warn");
    assert.equal(logger.find("plain words")[0]?.level, "debug");
  });
});

Deno.test("writeAllSync: a writer that takes a byte at a time still gets every byte; one that takes none is an error", () => {
  const bytes = new TextEncoder().encode("1|1|unix|/tmp/plugin1|grpc|\n");
  const received: number[] = [];
  writeAllSync({
    writeSync: (p) => {
      received.push(p[0]);
      return 1;
    },
  }, bytes);
  assert.deepEqual(new Uint8Array(received), bytes);
  assert.throws(
    () => writeAllSync({ writeSync: (p) => p.length > 3 ? 3 : 0 }, bytes),
    /write made no progress \(27 of 28 bytes written\)/,
  );
});

Deno.test("StdioCapture: output dropped while the host did not read is reported in the stream, with the count", async () => {
  const capture = new StdioCapture(2);
  const encoder = new TextEncoder();
  for (const word of ["one", "two", "three", "four", "five"]) {
    capture.push(StdioData_Channel.STDOUT, encoder.encode(word));
  }
  assert.equal(capture.dropped, 3);
  capture.uninstall(); // Ends the stream once the queue is read.
  const controller = new AbortController();
  const stream = capture.service().implementation.streamStdio(
    {} as never,
    { signal: controller.signal } as never,
  ) as AsyncIterable<{ channel: StdioData_Channel; data: Uint8Array }>;
  const seen: string[] = [];
  for await (const data of stream) {
    seen.push(`${StdioData_Channel[data.channel]}:${new TextDecoder().decode(data.data)}`);
  }
  assert.deepEqual(seen, [
    "STDERR:[tether: 3 chunks of plugin output (up to 1 KiB each) dropped: the host did not read them in time]\n",
    "STDOUT:four",
    "STDOUT:five",
  ]);
});
