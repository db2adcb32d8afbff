/**
 * A lean gRPC server on `node:http2`: what a plugin serves (its own services,
 * go-plugin's controller, broker, stdio, health and reflection) without
 * grpc-js in the process. The bytes on the wire are those of grpc-js's and
 * grpc-go's servers: `application/grpc` requests, the 5-byte message prefix,
 * `grpc-timeout` deadlines, `grpc-status`/`grpc-message` trailers, a
 * trailers-only answer for a call that fails before its first message.
 *
 * Calls follow {@linkcode HandlerContext}: the handler's signal aborts when the
 * caller cancels (RST_STREAM), its deadline passes, or the connection is lost.
 * Streams keep HTTP/2 flow control end to end: a handler that reads its
 * requests slowly pauses the caller, and a caller that reads answers slowly
 * pauses the handler (its next answer is asked for only once the last one
 * was taken).
 *
 * @module
 */

import * as http2 from "node:http2";
import type { Server } from "node:net";
import type { TLSSocket } from "node:tls";
import { Buffer } from "node:buffer";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { GrpcStatus, type GrpcStatusCode, TetherError } from "./errors.ts";
import { encodeStatusMessage, frame, isGrpcContentType, MessageDecoder, parseTimeout } from "./grpc_wire.ts";
import { type Deadline, DeadlineQueue } from "./deadline_queue.ts";
import type { ReceiveAccounting } from "./receive_limits.ts";
import {
  deserializer,
  type HandlerContext,
  MAX_MESSAGE_BYTES,
  methodPath,
  type ServiceRegistration,
  statusOf,
} from "./service.ts";

/** TLS for the server: its certificate, and the CA (the host's certificate) client certificates must chain to. */
export interface H2ServerTls {
  /** The server's certificate chain, PEM. */
  readonly certPem: string;
  /** Its private key, PEM. */
  readonly keyPem: string;
  /** The CA(s) a client certificate must chain to, PEM: with AutoMTLS, the host's own certificate. */
  readonly peerCaPem: string;
  /** With AutoMTLS, the exact client certificate (DER) accepted. */
  readonly pinnedPeerDer?: Uint8Array;
}

/** Options of {@linkcode H2Server}. */
export interface H2ServerOptions {
  /** mTLS (a client certificate is required and verified); plaintext (h2c) without it. */
  readonly tls?: H2ServerTls;
  /** Largest request message accepted (default go-plugin's, 2^31 - 1 bytes); a larger one is RESOURCE_EXHAUSTED. */
  readonly maxReceiveMessageBytes?: number;
  /** Largest answer sent (default 2^31 - 1 bytes); a larger one ends the call with RESOURCE_EXHAUSTED. */
  readonly maxSendMessageBytes?: number;
  /**
   * Counts the requests held (received, not yet handed to a handler) against a budget: the host's brokered
   * servers pass the process's receive budget (`src/receive_limits.ts`). A request the budget refuses ends its
   * call with the status `take` gave. None by default: a plugin's servers count nothing, as a Go host expects.
   */
  readonly receiveAccounting?: ReceiveAccounting;
}

type Kind = "unary" | "server_streaming" | "client_streaming" | "bidi_streaming";
type Handler = (request: unknown, context: HandlerContext) => unknown;

interface Route {
  readonly path: string;
  readonly kind: Kind;
  readonly handler: Handler | undefined;
  readonly decode: (bytes: Uint8Array) => unknown;
  /** The answer as it goes out: gRPC's 5-byte prefix, then the message. */
  readonly encode: (value: MessageInitShape<DescMessage>) => Buffer;
}

interface Limits {
  readonly receive: number;
  readonly send: number;
  readonly accounting: ReceiveAccounting | undefined;
}

// HTTP/2 flow-control credit granted to callers, as the lean channel grants servers: a large request
// arrives without a WINDOW_UPDATE round trip per 64 KiB. Credit, not memory: messages are read as they come.
const STREAM_WINDOW = 8 << 20;
const SESSION_WINDOW = 32 << 20;
const RESPONSE_HEADERS = { ":status": 200, "content-type": "application/grpc" } as const;
/** The framed empty message: every answer of a message type with no fields (never written to). */
const EMPTY_FRAME = Buffer.alloc(5);
/** Every call's deadline, on one timer. */
const deadlines = new DeadlineQueue();

/**
 * An answer's encoder, framed: one copy from protobuf-es's bytes into the framed Buffer. A message type with
 * no fields (`Empty`, most acknowledgements) is always the same 5 bytes unless it carries unknown fields.
 */
function framedSerializer(schema: DescMessage): (value: MessageInitShape<DescMessage>) => Buffer {
  const general = (value: MessageInitShape<DescMessage>) => frame(toBinary(schema, create(schema, value)));
  if (schema.fields.length > 0) return general;
  return (value) =>
    (value as { $unknown?: unknown[] } | undefined)?.$unknown?.length ? general(value) : EMPTY_FRAME;
}

/**
 * The options of `http2.createSecureServer` for mTLS: what grpc-js's
 * `ServerCredentials.createSsl(ca, [{ key, cert }], true)` gives Node, a
 * client certificate requested and required to chain to `peerCaPem`.
 *
 * @example
 * ```ts ignore
 * import { secureServerOptions } from "./h2server.ts";
 * const options = secureServerOptions({ certPem, keyPem, peerCaPem: hostCertPem });
 * console.log(options.requestCert, options.rejectUnauthorized); // true true
 * ```
 */
export function secureServerOptions(tls: H2ServerTls): http2.SecureServerOptions {
  return {
    key: tls.keyPem,
    cert: tls.certPem,
    ca: tls.peerCaPem,
    requestCert: true,
    rejectUnauthorized: true,
  };
}

/**
 * A gRPC server for `services` on one `node:http2` server; listen with
 * {@linkcode H2Server.server}.
 *
 * @example
 * ```ts ignore
 * import { H2Server } from "./h2server.ts";
 * import { registration } from "./service.ts";
 * import { Adder } from "./gen/tether/kv/v1/kv_pb.ts";
 * const h2 = new H2Server([registration(Adder, { add: ({ a, b }) => ({ sum: a + b }) })]);
 * h2.server.listen("/tmp/adder.sock");
 * // ... later
 * h2.close();
 * ```
 */
export class H2Server {
  readonly #routes = new Map<string, Route>();
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #limits: Limits;
  readonly #server: http2.Http2Server | http2.Http2SecureServer;
  #closed = false;

  /** Builds the routes (a method served twice is refused) and the HTTP/2 server; nothing listens yet. */
  constructor(services: readonly ServiceRegistration[], options: H2ServerOptions = {}) {
    for (const { service, implementation } of services) {
      const functions = implementation as Record<string, unknown>;
      for (const method of service.methods) {
        const path = methodPath(method);
        if (this.#routes.has(path)) {
          throw new TetherError("config", `method ${path} is registered twice: serve each service once`);
        }
        const fn = functions[method.localName];
        this.#routes.set(path, {
          path,
          kind: method.methodKind,
          handler: typeof fn === "function" ? (fn as Handler).bind(implementation) : undefined,
          decode: deserializer(method.input),
          encode: framedSerializer(method.output),
        });
      }
    }
    this.#limits = {
      receive: options.maxReceiveMessageBytes ?? MAX_MESSAGE_BYTES,
      send: options.maxSendMessageBytes ?? MAX_MESSAGE_BYTES,
      accounting: options.receiveAccounting,
    };
    const common: http2.ServerOptions = {
      settings: { initialWindowSize: STREAM_WINDOW },
      // As grpc-js's server: Node's HTTP/2 degrades badly at its session memory limit, so there is none.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
    };
    const tls = options.tls;
    if (tls) {
      const server = http2.createSecureServer({ ...common, ...secureServerOptions(tls) });
      const pinned = tls.pinnedPeerDer && Buffer.from(tls.pinnedPeerDer);
      server.on("secureConnection", (socket: TLSSocket) => {
        socket.on("error", () => {});
        // Fail closed even if the runtime's TLS did not enforce what it was asked to: only the verified
        // (and, with AutoMTLS, the pinned) client certificate gets a session.
        const raw = socket.authorized ? socket.getPeerCertificate()?.raw : undefined;
        if (!raw || (pinned && !pinned.equals(raw))) socket.destroy();
      });
      server.on("tlsClientError", () => {});
      this.#server = server;
    } else {
      this.#server = http2.createServer(common);
      this.#server.on("connection", (socket: { on(event: "error", listener: () => void): void }) => {
        socket.on("error", () => {});
      });
    }
    this.#server.setTimeout(0);
    this.#server.on("sessionError", () => {});
    this.#server.on("session", (session: http2.ServerHttp2Session) => this.#onSession(session));
    this.#server.on("stream", (stream, headers) => this.#onStream(stream, headers));
  }

  /** The `net.Server` to listen with (a unix socket path or a TCP port). */
  get server(): Server {
    return this.#server as unknown as Server;
  }

  /** Stops listening and drops every connection: calls in flight end, their handlers' signals abort. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    // As grpc-js's forceShutdown: sessions end at once (GOAWAY with CANCEL), not after their calls.
    for (const session of this.#sessions) session.destroy(undefined, http2.constants.NGHTTP2_CANCEL);
    this.#sessions.clear();
  }

  #onSession(session: http2.ServerHttp2Session): void {
    if (this.#closed) {
      session.destroy();
      return;
    }
    this.#sessions.add(session);
    deferDestroy(session);
    session.on("error", () => {});
    session.once("close", () => this.#sessions.delete(session));
    try {
      session.setLocalWindowSize(SESSION_WINDOW);
    } catch {
      // Not every runtime implements it; the default window works, only slower for large requests.
    }
  }

  #onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    // Errors end in "close", which is where a call learns it was cut off.
    stream.on("error", ignore);
    const contentType = headers["content-type"];
    if (
      headers[":method"] !== "POST" || (contentType !== "application/grpc" && !isGrpcContentType(contentType))
    ) {
      try {
        stream.respond({ ":status": headers[":method"] !== "POST" ? 405 : 415 }, { endStream: true });
      } catch {
        // Reset by the caller already.
      }
      return;
    }
    const path = String(headers[":path"]);
    const route = this.#routes.get(path);
    if (!route) {
      trailersOnly(stream, GrpcStatus.UNIMPLEMENTED, `The server does not implement the method ${path}`);
      return;
    }
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") {
      trailersOnly(
        stream,
        GrpcStatus.UNIMPLEMENTED,
        `Received message compressed with unsupported encoding "${encoding}"`,
      );
      return;
    }
    if (!route.handler) {
      trailersOnly(stream, GrpcStatus.UNIMPLEMENTED, `method ${path} not implemented`);
      return;
    }
    new ServerCall(stream, headers, route, this.#limits);
  }
}

/**
 * Makes `session.destroy()` take effect on the next turn of the event loop, never inside nghttp2.
 *
 * Deno 2.9.6's `node:http2` calls into JavaScript from inside `nghttp2_session_mem_recv`, and its own handlers
 * can destroy the session there: a GOAWAY from the client reaches `onGoawayData`, which calls
 * `session.close()`; with no stream left open the graceful close completes at once and `destroy()` frees the
 * nghttp2 session while `mem_recv` is still on the stack. nghttp2 then walks the freed session's streams
 * (`session_close_stream_on_goaway`): the host dies with SIGSEGV or the assertion `stream->closed_next == NULL`
 * (docs/security.md, callback02). So every destroy of a session waits one `setImmediate`, by which time
 * nghttp2 has returned. One closure per connection, nothing per call.
 */
function deferDestroy(session: http2.ServerHttp2Session): void {
  const destroyNow = session.destroy;
  session.destroy = (...args: Parameters<typeof session.destroy>) => {
    setImmediate(() => destroyNow.apply(session, args));
  };
}

/** A listener that ignores its event: one function for every stream, not a closure per call. */
function ignore(): void {}

function trailersOnly(stream: http2.ServerHttp2Stream, code: number, details: string): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  try {
    stream.respond({ ...RESPONSE_HEADERS, ...statusTrailers(code, details) }, { endStream: true });
  } catch {
    // Reset by the caller already.
  }
}

function statusTrailers(code: number, details: string): http2.OutgoingHttpHeaders {
  return details === ""
    ? { "grpc-status": String(code) }
    : { "grpc-status": String(code), "grpc-message": encodeStatusMessage(details) };
}

/** Request headers that are transport, not metadata (grpc-js leaves these out of a handler's metadata too). */
const NOT_METADATA = new Set([
  "grpc-timeout",
  "grpc-encoding",
  "grpc-accept-encoding",
  "accept-encoding",
  "te",
]);

/** The request metadata as handlers see it: lower-case keys, the first value of each, text keys only. */
function handlerMetadata(headers: http2.IncomingHttpHeaders): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers)) {
    if (key.startsWith(":") || key === "content-type" || key.endsWith("-bin") || NOT_METADATA.has(key)) {
      continue;
    }
    const first = Array.isArray(value) ? value[0] : value;
    if (typeof first === "string") metadata[key] = first;
  }
  return metadata;
}

/** One call: reads its requests, runs the handler, writes its answers and its status. */
class ServerCall implements HandlerContext {
  readonly #stream: http2.ServerHttp2Stream;
  readonly #headers: http2.IncomingHttpHeaders;
  readonly #route: Route;
  readonly #limits: Limits;
  /** Made when a message does not come in one chunk of its own: most requests do. */
  #decoder: MessageDecoder | undefined;
  /** Messages received and not yet taken by the handler. */
  readonly #queue: Uint8Array[] = [];
  /** With accounting: bytes given back of those the decoder took. */
  #given = 0;
  #controller: AbortController | undefined;
  #abortReason: TetherError | undefined;
  #metadata: Record<string, string> | undefined;
  #deadline: Deadline | undefined;
  #headersSent = false;
  /** The status is sent, or the stream is gone: nothing more goes out. */
  #done = false;
  /** The handler has returned (or thrown): its signal no longer needs to abort. */
  #handlerDone = false;
  /** The caller half-closed. */
  #ended = false;
  /** A streaming handler left its request loop: later requests are dropped. */
  #readerGone = false;
  /** A streaming handler waiting for its next request. */
  #waiter: { resolve(message: Uint8Array | undefined): void; reject(reason: TetherError): void } | undefined;

  constructor(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    route: Route,
    limits: Limits,
  ) {
    this.#stream = stream;
    this.#headers = headers;
    this.#route = route;
    this.#limits = limits;
    // "close" and "end" come once per stream: `on` spares `once`'s wrapper and its removal per call.
    stream.on("close", () => this.#closed());
    const timeout = headers["grpc-timeout"];
    if (timeout !== undefined) {
      const ms = parseTimeout(String(timeout));
      if (ms === undefined) {
        this.#finish(GrpcStatus.INTERNAL, `Invalid grpc-timeout value "${timeout}"`);
        stream.resume();
        return;
      }
      if (ms <= 0) {
        this.#expire();
        stream.resume();
        return;
      }
      this.#deadline = deadlines.add(Date.now() + ms, () => this.#expire());
    }
    stream.on("data", (chunk: Buffer) => this.#onData(chunk));
    stream.on("end", () => this.#onEnd());
    if (route.kind === "client_streaming" || route.kind === "bidi_streaming") this.#runStreaming();
  }

  /** @inheritdoc */
  get signal(): AbortSignal {
    // Made when a handler first asks: most unary handlers never do.
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#abortReason) this.#controller.abort(this.#abortReason);
    }
    return this.#controller.signal;
  }

  /** @inheritdoc */
  get metadata(): Readonly<Record<string, string>> {
    return this.#metadata ??= handlerMetadata(this.#headers);
  }

  /** @inheritdoc */
  get method(): string {
    return this.#route.path;
  }

  /** The caller's deadline passed. */
  #expire(): void {
    this.#deadline = undefined;
    this.#abort(
      new TetherError("rpc", `${this.#route.path}: the caller's deadline (grpc-timeout) passed`, {
        status: GrpcStatus.DEADLINE_EXCEEDED,
      }),
    );
    this.#finish(GrpcStatus.DEADLINE_EXCEEDED, "Deadline exceeded");
  }

  #dropDeadline(): void {
    if (this.#deadline) {
      deadlines.remove(this.#deadline);
      this.#deadline = undefined;
    }
  }

  #abort(reason: TetherError): void {
    if (this.#handlerDone || this.#abortReason) return;
    this.#abortReason = reason;
    this.#controller?.abort(reason);
  }

  /** The stream closed: after the status, nothing to do; before it, the caller is gone (RST_STREAM, lost connection). */
  #closed(): void {
    this.#dropDeadline();
    if (!this.#done) {
      this.#done = true;
      this.#abort(
        new TetherError("rpc", `${this.#route.path} was cancelled by the caller`, {
          status: GrpcStatus.CANCELLED,
        }),
      );
    }
    this.#queue.length = 0;
    this.#settle();
    this.#wake(undefined);
  }

  /** A message leaves the queue (to the handler, or dropped): the budget no longer counts it. */
  #handOver(message: Uint8Array | undefined): Uint8Array | undefined {
    const accounting = this.#limits.accounting;
    if (accounting && message) {
      this.#given += message.length;
      accounting.give(message.length);
    }
    return message;
  }

  /** Drops the messages the handler will not read, giving their bytes back. */
  #dropQueued(): void {
    if (this.#limits.accounting) { for (const message of this.#queue) this.#handOver(message); }
    this.#queue.length = 0;
  }

  /** The call is over: what its decoder still holds (queued messages dropped, one cut short) goes back. */
  #settle(): void {
    const accounting = this.#limits.accounting;
    if (!accounting || !this.#decoder) return;
    const held = this.#decoder.takenBytes - this.#given;
    this.#given += held;
    if (held > 0) accounting.give(held);
  }

  #onData(chunk: Buffer): void {
    if (this.#done) return;
    // Counted requests all go through the decoder, which takes from the budget as bytes arrive.
    const message = this.#decoder === undefined && this.#limits.accounting === undefined
      ? wholeMessage(chunk, this.#limits.receive)
      : undefined;
    if (message !== undefined) this.#queue.push(message);
    else {
      this.#decoder ??= new MessageDecoder(this.#limits.receive, this.#limits.accounting);
      const refused = this.#decoder.push(chunk, this.#queue as Buffer[]);
      if (refused) {
        this.#fail(...refused);
        return;
      }
    }
    if (this.#route.kind === "unary" || this.#route.kind === "server_streaming") {
      if (this.#queue.length > 1) {
        this.#fail(
          GrpcStatus.UNIMPLEMENTED,
          `Received a second request message for server streaming method ${this.#route.path}`,
        );
      }
      return;
    }
    if (this.#readerGone) {
      this.#dropQueued();
      return;
    }
    if (this.#waiter && this.#queue.length > 0) this.#wake(this.#handOver(this.#queue.shift()));
    // Backpressure: messages the handler has not asked for stay in HTTP/2's window, not here.
    if (this.#queue.length > 0) this.#stream.pause();
  }

  #onEnd(): void {
    // Deno's node:http2 ends the readable side when the caller resets the stream, too: that is no half-close.
    if (this.#stream.aborted) {
      this.#closed();
      return;
    }
    this.#ended = true;
    if (this.#done) return;
    if (this.#decoder && !this.#decoder.idle) {
      this.#fail(GrpcStatus.INTERNAL, "the request stream ended in the middle of a message");
      return;
    }
    if (this.#route.kind === "unary" || this.#route.kind === "server_streaming") {
      const request = this.#handOver(this.#queue.shift());
      if (request === undefined) {
        this.#fail(
          GrpcStatus.UNIMPLEMENTED,
          `Received no request message for server streaming method ${this.#route.path}`,
        );
      } else this.#runSingle(request);
      return;
    }
    if (this.#queue.length === 0) this.#wake(undefined);
  }

  #wake(message: Uint8Array | undefined): void {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (!waiter) return;
    const cutOff = message === undefined ? this.#cutOff() : undefined;
    if (cutOff) waiter.reject(cutOff);
    else waiter.resolve(message);
  }

  /**
   * Why the request stream ended before the caller half-closed (cancelled, deadline, a refused message), if it
   * did: the handler's loop then throws instead of ending as if every request had arrived, as grpc-go's `Recv`
   * and grpc-js's iterator do.
   */
  #cutOff(): TetherError | undefined {
    return this.#ended || this.#readerGone ? undefined : this.#abortReason;
  }

  /** The next request of a stream, or `undefined` once the caller half-closed; rejects if the call was cut off. */
  #read(): Promise<Uint8Array | undefined> {
    const message = this.#handOver(this.#queue.shift());
    if (message !== undefined) return Promise.resolve(message);
    const cutOff = this.#cutOff();
    if (cutOff) return Promise.reject(cutOff);
    if (this.#ended || this.#done || this.#readerGone) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
      this.#stream.resume();
    });
  }

  /** The requests of a client or bidi stream, as the handler iterates them; leaving the loop ends nothing. */
  #requests(): AsyncIterableIterator<unknown> {
    const iterator: AsyncIterableIterator<unknown> = {
      next: async () => {
        const message = await this.#read();
        if (message === undefined) return { done: true, value: undefined };
        return { done: false, value: this.#decode(message) };
      },
      return: (value?: unknown) => {
        // The handler stopped reading: what the caller still sends is dropped, without stalling its window.
        this.#readerGone = true;
        this.#dropQueued();
        this.#stream.resume();
        return Promise.resolve({ done: true, value });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  #decode(message: Uint8Array): unknown {
    try {
      return this.#route.decode(message);
    } catch (error) {
      const details = `Error deserializing request: ${
        error instanceof Error ? error.message : String(error)
      }`;
      this.#fail(GrpcStatus.INTERNAL, details);
      throw new TetherError("rpc", `${this.#route.path}: ${details}`, { status: GrpcStatus.INTERNAL });
    }
  }

  /** Unary and server-streaming: the one request arrived and the caller half-closed. */
  #runSingle(bytes: Uint8Array): void {
    let request: unknown;
    try {
      request = this.#decode(bytes);
    } catch {
      return;
    }
    let result: unknown;
    try {
      result = this.#route.handler!(request, this);
    } catch (error) {
      this.#handlerFailed(error);
      return;
    }
    if (this.#route.kind === "server_streaming") void this.#pump(result as AsyncIterable<unknown>);
    else if (isThenable(result)) {
      result.then((response) => this.#answer(response), (e) => this.#handlerFailed(e));
    } else this.#answer(result);
  }

  /** Client and bidi streams: the handler starts with the headers and reads requests as it goes. */
  #runStreaming(): void {
    let result: unknown;
    try {
      result = this.#route.handler!(this.#requests(), this);
    } catch (error) {
      this.#handlerFailed(error);
      return;
    }
    if (this.#route.kind === "bidi_streaming") void this.#pump(result as AsyncIterable<unknown>);
    else Promise.resolve(result).then((response) => this.#answer(response), (e) => this.#handlerFailed(e));
  }

  /** One answer, then OK. */
  #answer(response: unknown): void {
    this.#handlerDone = true;
    if (this.#done) return;
    // Headers, the answer and (once HTTP/2 asks) the trailers, with no write of its own for the answer.
    const framed = this.#encode(response);
    if (framed) this.#finish(GrpcStatus.OK, "", framed);
  }

  #handlerFailed(error: unknown): void {
    this.#handlerDone = true;
    const { code, details } = statusOf(error);
    this.#finish(code, details);
  }

  /** Writes the answers of a stream; the next is asked for once HTTP/2 took the last one. */
  async #pump(responses: AsyncIterable<unknown>): Promise<void> {
    let iterator: AsyncIterator<unknown>;
    try {
      iterator = responses[Symbol.asyncIterator]();
    } catch (error) {
      this.#handlerFailed(error);
      return;
    }
    try {
      while (true) {
        const next = await iterator.next();
        if (next.done) break;
        if (this.#done || !this.#send(next.value)) {
          // The call is over (cancelled, deadline, or an answer that could not be sent): let the handler clean up.
          this.#handlerDone = true;
          await iterator.return?.();
          return;
        }
        if (this.#stream.writableNeedDrain) await this.#drained();
      }
    } catch (error) {
      this.#handlerFailed(error);
      return;
    }
    this.#handlerDone = true;
    this.#finish(GrpcStatus.OK, "");
  }

  #drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#stream.off("drain", done);
        this.#stream.off("close", done);
        resolve();
      };
      this.#stream.on("drain", done);
      this.#stream.on("close", done);
    });
  }

  /** An answer, framed; undefined (and the call ended with a status) when it cannot be sent. */
  #encode(response: unknown): Buffer | undefined {
    let framed: Buffer;
    try {
      framed = this.#route.encode(response as MessageInitShape<DescMessage>);
    } catch (error) {
      this.#fail(
        GrpcStatus.INTERNAL,
        `Error serializing response: ${error instanceof Error ? error.message : String(error)}`,
      );
      return undefined;
    }
    const length = framed.length - 5;
    if (length > this.#limits.send) {
      this.#fail(
        GrpcStatus.RESOURCE_EXHAUSTED,
        `Sent message larger than max (${length} vs. ${this.#limits.send})`,
      );
      return undefined;
    }
    return framed;
  }

  /** Sends one answer of a stream; false (and the call ended with a status) when it cannot be. */
  #send(response: unknown): boolean {
    if (this.#done) return false;
    const framed = this.#encode(response);
    if (!framed) return false;
    try {
      if (!this.#headersSent) {
        this.#headersSent = true;
        this.#stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
      }
      this.#stream.write(framed);
    } catch {
      // The caller reset the stream and its "close" has not been emitted yet: the call is over.
      this.#closed();
      return false;
    }
    return true;
  }

  /** Ends the call with a status while its handler may still run: the handler's signal aborts. */
  #fail(code: number, details: string): void {
    this.#abort(
      new TetherError("rpc", `${this.#route.path} ended: ${details}`, { status: code as GrpcStatusCode }),
    );
    this.#finish(code, details);
  }

  /**
   * Sends the status: as trailers after answers (`last`, a unary call's one answer, goes out with the end of the
   * stream), or as a trailers-only answer.
   */
  #finish(code: number, details: string, last?: Buffer): void {
    if (this.#done) return;
    this.#done = true;
    this.#dropDeadline();
    const stream = this.#stream;
    // Whatever the caller still sends is read and dropped, so its flow-control window does not stall.
    this.#queue.length = 0;
    this.#settle();
    this.#wake(undefined);
    stream.resume();
    if (stream.destroyed || stream.closed) return;
    try {
      if (!this.#headersSent) {
        if (last === undefined) {
          stream.respond({ ...RESPONSE_HEADERS, ...statusTrailers(code, details) }, { endStream: true });
          return;
        }
        this.#headersSent = true;
        stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
      }
      if (code === GrpcStatus.OK) stream.on("wantTrailers", sendOkTrailers);
      else {
        stream.on("wantTrailers", () => {
          try {
            stream.sendTrailers(statusTrailers(code, details));
          } catch {
            // Reset meanwhile: nobody is left to tell.
          }
        });
      }
      if (last === undefined) stream.end();
      else stream.end(last);
    } catch {
      // The caller reset the stream before its "close" was emitted: nobody is left to tell.
    }
  }
}

const OK_TRAILERS = { "grpc-status": "0" } as const;

/** The "wantTrailers" listener of a call that ended OK (the stream is `this`): no closure per call. */
function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  try {
    this.sendTrailers(OK_TRAILERS);
  } catch {
    // Reset meanwhile: nobody is left to tell.
  }
}

/**
 * A chunk that is exactly one whole uncompressed message within the limit (a request as it usually comes), as
 * its own memory: never a view of the chunk, so a kept field does not keep the chunk. Anything else (parts,
 * several messages, a compressed or oversized one) is the decoder's to take or refuse.
 */
function wholeMessage(chunk: Buffer, max: number): Uint8Array | undefined {
  if (chunk.length < 5 || chunk[0] !== 0) return undefined;
  const length = chunk.readUInt32BE(1);
  if (length !== chunk.length - 5 || length > max) return undefined;
  // A plain view's slice: a third of the cost of ArrayBuffer.slice here, and no Buffer made.
  return new Uint8Array(chunk.buffer, chunk.byteOffset + 5, length).slice();
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | undefined)?.then === "function";
}
