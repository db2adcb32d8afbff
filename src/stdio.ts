/**
 * go-plugin's GRPCStdio: what a plugin writes to stdout and stderr after its
 * handshake travels to the host over a gRPC stream, because the plugin's real
 * stdout carried the handshake and its real stderr carries its log.
 *
 * @module
 */

import process from "node:process";
import { format } from "node:util";
import { GRPCStdio, type StdioData, StdioData_Channel } from "./gen/plugin/grpc_stdio_pb.ts";
import { GrpcStatus, TetherError } from "./errors.ts";
import type { Logger } from "./logs.ts";
import { AsyncQueue } from "./queue.ts";
import { registration, type ServiceClient, type ServiceRegistration } from "./service.ts";

/** Where a plugin's forwarded output goes: a stream, or a function called per chunk. */
export type OutputSink = WritableStream<Uint8Array> | ((chunk: Uint8Array) => void);

/** Sinks for a plugin's forwarded stdout and stderr. */
export interface OutputSinks {
  /** What the plugin wrote to stdout after its handshake. Default: discarded, as go-plugin does. */
  readonly stdout?: OutputSink;
  /** What the plugin wrote to stderr outside its log. Default: discarded, as go-plugin does. */
  readonly stderr?: OutputSink;
}

function sinkWriter(
  sink: OutputSink | undefined,
): { write(chunk: Uint8Array): Promise<void>; close(): void } {
  if (!sink) return { write: () => Promise.resolve(), close: () => {} };
  if (typeof sink === "function") {
    return { write: (chunk) => Promise.resolve(sink(chunk)), close: () => {} };
  }
  const writer = sink.getWriter();
  return {
    write: (chunk) => writer.write(chunk),
    close: () => writer.releaseLock(),
  };
}

/**
 * Host side: opens StreamStdio and drains it into the sinks until the stream
 * ends. Resolves when it ends; never rejects (an old plugin without the
 * service gets a warning, as in go-plugin).
 */
export async function drainStdio(
  stdio: ServiceClient<typeof GRPCStdio>,
  sinks: OutputSinks,
  logger: Logger,
  fields: Record<string, unknown>,
  ending: () => boolean = () => false,
): Promise<void> {
  const stdout = sinkWriter(sinks.stdout);
  const stderr = sinkWriter(sinks.stderr);
  try {
    for await (const data of stdio.streamStdio({})) {
      const target = data.channel === StdioData_Channel.STDERR ? stderr : stdout;
      try {
        await target.write(data.data);
      } catch (error) {
        logger.log({
          level: "warn",
          message: "could not write plugin output to its sink",
          fields: { ...fields, error: String(error) },
        });
      }
    }
  } catch (error) {
    const status = error instanceof TetherError ? error.status : undefined;
    if (status === GrpcStatus.UNIMPLEMENTED) {
      logger.log({ level: "warn", message: "plugin does not support the stdio service (GRPCStdio)", fields });
    } else if (status !== GrpcStatus.UNAVAILABLE && status !== GrpcStatus.CANCELLED) {
      logger.log({
        // The stream breaks when the plugin stops: expected while it is being killed or has exited.
        level: ending() ? "debug" : "warn",
        message: "plugin stdio stream ended with an error",
        fields: { ...fields, error },
      });
    }
  } finally {
    stdout.close();
    stderr.close();
  }
}

const CHUNK_BYTES = 1024;
const encoder = new TextEncoder();

function ignoreErrors(write: () => void): void {
  try {
    write();
  } catch {
    // See the constructor.
  }
}

/** Writes all of `bytes` with a synchronous writer that may write less. */
export function writeAllSync(writer: { writeSync(p: Uint8Array): number }, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) {
    const written = writer.writeSync(bytes.subarray(offset));
    // A writer that takes nothing would spin here forever.
    if (!(written > 0)) {
      throw new Error(`write made no progress (${offset} of ${bytes.length} bytes written)`);
    }
    offset += written;
  }
}

/**
 * Plugin side: takes over `console`, `Deno.stdout`/`Deno.stderr` writes and
 * `process.stdout`/`process.stderr` writes, and queues what is written for
 * the host's StreamStdio call. The real stdout keeps only the handshake
 * line; the real stderr keeps only the plugin's log.
 */
export class StdioCapture {
  readonly #queue: AsyncQueue<StdioData | { channel: StdioData_Channel; data: Uint8Array }>;
  readonly #restore: (() => void)[] = [];
  #reportedDrops = 0;
  /** Writes straight to the real stderr, for the plugin's log. */
  readonly realStderr: (bytes: Uint8Array) => void;
  /** Writes straight to the real stdout, for the handshake line. */
  readonly realStdout: (bytes: Uint8Array) => void;

  /** @param bufferChunks chunks held while the host is not reading (1 KiB each); oldest dropped past it. */
  constructor(bufferChunks = 1024) {
    this.#queue = new AsyncQueue(bufferChunks);
    const stdoutWriteSync = Deno.stdout.writeSync.bind(Deno.stdout);
    const stderrWriteSync = Deno.stderr.writeSync.bind(Deno.stderr);
    // A host that went away leaves broken pipes: losing a line then is better than dying of EPIPE.
    this.realStdout = (bytes) => ignoreErrors(() => writeAllSync({ writeSync: stdoutWriteSync }, bytes));
    this.realStderr = (bytes) => ignoreErrors(() => writeAllSync({ writeSync: stderrWriteSync }, bytes));
  }

  /** How many chunks were dropped because the host did not read them. */
  get dropped(): number {
    return this.#queue.dropped;
  }

  /** Queues bytes for the host on a channel, in chunks of at most 1 KiB. */
  push(channel: StdioData_Channel, bytes: Uint8Array): void {
    for (let offset = 0; offset < bytes.length; offset += CHUNK_BYTES) {
      this.#queue.push({ channel, data: bytes.slice(offset, offset + CHUNK_BYTES) });
    }
  }

  /** Starts capturing; call after the handshake line is written. */
  install(): void {
    const out = (bytes: Uint8Array) => this.push(StdioData_Channel.STDOUT, bytes);
    const err = (bytes: Uint8Array) => this.push(StdioData_Channel.STDERR, bytes);
    const text = (target: (bytes: Uint8Array) => void) => (...args: unknown[]) =>
      target(encoder.encode(`${format(...args)}\n`));
    this.#patch(console, "log", text(out));
    this.#patch(console, "info", text(out));
    this.#patch(console, "debug", text(out));
    this.#patch(console, "error", text(err));
    this.#patch(console, "warn", text(err));
    this.#patch(console, "trace", text(err));
    for (const [file, target] of [[Deno.stdout, out], [Deno.stderr, err]] as const) {
      this.#patch(file, "writeSync", (bytes: Uint8Array) => {
        target(bytes);
        return bytes.length;
      });
      this.#patch(file, "write", (bytes: Uint8Array) => {
        target(bytes);
        return Promise.resolve(bytes.length);
      });
    }
    for (const [stream, target] of [[process.stdout, out], [process.stderr, err]] as const) {
      this.#patch(stream, "write", (chunk: string | Uint8Array, ...rest: unknown[]) => {
        target(typeof chunk === "string" ? encoder.encode(chunk) : chunk);
        const callback = rest.find((arg) => typeof arg === "function") as (() => void) | undefined;
        callback?.();
        return true;
      });
    }
  }

  // deno-lint-ignore no-explicit-any
  #patch(target: any, key: string, replacement: unknown): void {
    const original = target[key];
    target[key] = replacement;
    this.#restore.push(() => target[key] = original);
  }

  /** Puts the original writers back and ends the stream. */
  uninstall(): void {
    for (const restore of this.#restore.splice(0).reverse()) restore();
    this.#queue.close();
  }

  /** The GRPCStdio service that streams the captured output to the host. */
  service(): ServiceRegistration<typeof GRPCStdio> {
    let active = false;
    return registration(GRPCStdio, {
      streamStdio: (_request, context) =>
        this.#stream(context.signal, () => active, (value) => active = value),
    });
  }

  async *#stream(
    signal: AbortSignal,
    isActive: () => boolean,
    setActive: (value: boolean) => void,
  ): AsyncGenerator<{ channel: StdioData_Channel; data: Uint8Array }> {
    // One reader at a time: go-plugin hosts open the stream once.
    if (isActive()) return;
    setActive(true);
    try {
      const iterator = this.#queue[Symbol.asyncIterator]();
      const aborted = new Promise<IteratorResult<never>>((resolve) =>
        signal.addEventListener("abort", () => resolve({ value: undefined, done: true }), { once: true })
      );
      while (!signal.aborted) {
        const next = await Promise.race([iterator.next(), aborted]);
        if (next.done) return;
        if (this.dropped > this.#reportedDrops) {
          // Output was dropped while the host was not reading: say so where the gap is.
          const lost = this.dropped - this.#reportedDrops;
          this.#reportedDrops = this.dropped;
          yield {
            channel: StdioData_Channel.STDERR,
            data: encoder.encode(
              `[tether: ${lost} chunks of plugin output (up to 1 KiB each) dropped: ` +
                "the host did not read them in time]\n",
            ),
          };
        }
        yield next.value;
      }
    } finally {
      setActive(false);
    }
  }
}
