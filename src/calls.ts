/**
 * Typed calls, every failure a {@linkcode TetherError}. On the lean channel
 * (`src/h2channel.ts`, the default) all four kinds of call run straight on
 * {@linkcode H2Call}: this module does not load grpc-js. A grpc-js `Client`
 * on grpc-js's own channel (the `setChannelImplementation("grpc-js")`
 * comparison, or one a caller made) is driven through its call objects; its
 * caller has loaded grpc-js already. The message codec is handed in, so that
 * this module (loaded lazily by a plugin that dials a brokered connection)
 * imports no protobuf runtime of its own.
 *
 * @module
 */

import type { DescMessage, DescService, MessageInitShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";
import { type GrpcStatusCode, grpcStatusName, TetherError } from "./errors.ts";
import { validateTimerMs } from "./timers.ts";
import {
  type CallListener,
  type CallStatus,
  ConnectivityState,
  type H2Call,
  H2Channel,
} from "./h2channel.ts";
import { methodPath } from "./grpc_wire.ts";
import type { CallOptions, ServiceClient } from "./service.ts";
import type { PluginChannel } from "./channel.ts";

/** How messages become bytes and back: `serializer`/`deserializer` of `src/service.ts`. */
export interface MessageCodec {
  /** The encoder of a message type. */
  serializer(schema: DescMessage): (value: MessageInitShape<DescMessage>) => Buffer;
  /** The decoder of a message type. */
  deserializer(schema: DescMessage): (bytes: Buffer) => unknown;
}

/**
 * What calls run on: an {@linkcode H2Channel} (what `openChannel` returns by
 * default) or a grpc-js `Client`.
 */
export type CallChannel = PluginChannel;

/**
 * Wraps a gRPC failure as a {@linkcode TetherError} with code `rpc`.
 * `describe` may turn it into a more telling error (e.g. `exited`).
 */
export type ErrorMapper = (error: TetherError) => TetherError | Promise<TetherError>;

/**
 * Said in place of an empty gRPC status message. A go-plugin (grpc-go) plugin
 * sends its error text as `grpc-message` without escaping spaces, and Deno's
 * HTTP/2 layer drops a header value that begins or ends with a space before
 * grpc-js sees it, so an empty message may be one that was lost on the way.
 */
export const EMPTY_STATUS_MESSAGE = "(no error message arrived: the plugin sent an empty one, or one that " +
  "begins or ends with a space, which the HTTP/2 layer under Deno drops; see docs/protocol.md, " +
  '"Error messages")';

const CANCELLED = 1, INTERNAL = 13, UNIMPLEMENTED = 12;

function rpcError(path: string, error: unknown): TetherError {
  if (error instanceof TetherError) return error;
  const e = error as Partial<grpc.ServiceError>;
  const status = (typeof e.code === "number" ? e.code : 2) as GrpcStatusCode;
  let details = e.details ?? e.message ?? String(error);
  if (details === "" && status !== 0) details = EMPTY_STATUS_MESSAGE;
  return new TetherError("rpc", `${path} failed: ${grpcStatusName(status)}: ${details}`, {
    status,
    cause: error,
  });
}

/** grpc-js throws synchronously once a channel is closed; report that like a failed call. */
function closedChannel(path: string, error: unknown): TetherError {
  // Tether's own refusal (e.g. an invalid timeoutMs) keeps its code.
  if (error instanceof TetherError) return error;
  return new TetherError(
    "rpc",
    `${path} failed: UNAVAILABLE: ${error instanceof Error ? error.message : error}`,
    {
      status: 14,
      cause: error,
    },
  );
}

// deno-lint-ignore require-yield
async function* failedStream(error: Promise<TetherError>): AsyncGenerator<never> {
  // A stream that fails on its first next(), as a call on a live channel would.
  throw await error;
}

/**
 * The caller's metadata as HTTP/2 headers, checked as grpc-js's `Metadata`
 * checks it (same messages): lower-case legal names, printable values, and
 * no string for a `-bin` name.
 */
function metadataHeaders(options: CallOptions | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(options?.metadata ?? {})) {
    const key = name.toLowerCase();
    if (!/^[0-9a-z_.-]+$/.test(key)) throw new Error(`Metadata key "${key}" contains illegal characters`);
    if (key.endsWith("-bin")) throw new Error("keys that end with '-bin' must have Buffer values");
    if (typeof value !== "string") throw new Error("keys that don't end with '-bin' must have String values");
    if (!/^[ -~]*$/.test(value)) {
      throw new Error(`Metadata string value "${value}" contains illegal characters`);
    }
    headers[key] = value;
  }
  return headers;
}

const noop = () => {};

/** Hooks an AbortSignal to a call's cancel(); returns the unhook function. */
function linkSignal(signal: AbortSignal | undefined, call: { cancel(): void }): () => void {
  if (!signal) return noop;
  if (signal.aborted) {
    call.cancel();
    return noop;
  }
  const onAbort = () => call.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** A failure as grpc-js reports one (`Error` with code, details and metadata), for {@linkcode rpcError}. */
function statusError(code: number, details: string, metadata?: unknown): grpc.ServiceError {
  return Object.assign(new Error(`${code} ${grpcStatusName(code as GrpcStatusCode)}: ${details}`), {
    code,
    details,
    metadata,
  }) as grpc.ServiceError;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---------------------------------------------------------------------------------------------------------
// The lean calls, on H2Call.

/** The request metadata of a call without any: one object, never written to. */
const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/**
 * Starts a lean call, or says why it cannot start (an invalid option, bad
 * metadata, a closed channel: the errors grpc-js throws synchronously).
 */
function leanCall(
  h2: H2Channel,
  path: string,
  options: CallOptions | undefined,
): { call: H2Call; headers: Record<string, string> } | TetherError {
  let deadline = Infinity;
  let headers = NO_HEADERS;
  try {
    const timeoutMs = validateTimerMs(options?.timeoutMs, "timeoutMs");
    if (timeoutMs !== undefined) deadline = Date.now() + timeoutMs;
    if (options?.metadata) headers = metadataHeaders(options);
    if (h2.getConnectivityState(false) === ConnectivityState.SHUTDOWN) {
      throw new Error("Channel has been shut down");
    }
  } catch (error) {
    return closedChannel(path, error);
  }
  return { call: h2.createCall(path, deadline), headers };
}

function cancelOnClient(call: H2Call): { cancel(): void } {
  return { cancel: () => call.cancelWithStatus(CANCELLED, "Cancelled on client") };
}

/** Rejects with `error` as the caller's mapper turns it. */
function failWith(mapError: ErrorMapper, reject: (error: unknown) => void, error: TetherError): void {
  Promise.resolve(mapError(error)).then(reject, reject);
}

/** What {@linkcode H2Call.sendMessageWithContext} is given when nobody waits for the write. */
const NO_CONTEXT = {};

/**
 * The listener of a call answered by one message (unary, client streaming): resolves with it at an OK status;
 * a second message ends the call (as grpc-js), never a wait for the deadline; no message is UNIMPLEMENTED.
 * One object per call, in the place of a closure per callback.
 */
class OneAnswer implements CallListener {
  readonly #call: H2Call;
  readonly #path: string;
  readonly #deserialize: (bytes: Buffer) => unknown;
  readonly #resolve: (value: unknown) => void;
  readonly #reject: (error: unknown) => void;
  readonly #mapError: ErrorMapper;
  #response: Buffer | undefined;
  /** Unhooks the caller's AbortSignal once the call has ended. */
  unlink: () => void = noop;

  constructor(
    call: H2Call,
    path: string,
    deserialize: (bytes: Buffer) => unknown,
    resolve: (value: unknown) => void,
    reject: (error: unknown) => void,
    mapError: ErrorMapper,
  ) {
    this.#call = call;
    this.#path = path;
    this.#deserialize = deserialize;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#mapError = mapError;
  }

  onReceiveMetadata(): void {}

  onReceiveMessage(message: Buffer): void {
    if (this.#response !== undefined) {
      this.#call.cancelWithStatus(UNIMPLEMENTED, "Too many responses received");
      return;
    }
    this.#response = message;
    this.#call.startRead();
  }

  onReceiveStatus({ code, details, metadata }: CallStatus): void {
    this.unlink();
    const path = this.#path;
    if (code !== 0) return this.#fail(rpcError(path, statusError(code, details, metadata)));
    if (this.#response === undefined) {
      return this.#fail(rpcError(path, statusError(UNIMPLEMENTED, "No message received")));
    }
    let value: unknown;
    try {
      value = this.#deserialize(this.#response);
    } catch (error) {
      return this.#fail(
        rpcError(path, statusError(INTERNAL, `Response message parsing error: ${errorText(error)}`)),
      );
    }
    this.#resolve(value);
  }

  #fail(error: TetherError): void {
    failWith(this.#mapError, this.#reject, error);
  }
}

/**
 * A unary call straight on the lean channel: no grpc-js call objects, no
 * Metadata. Same statuses and errors as the grpc-js client path.
 */
function leanUnary(
  h2: H2Channel,
  path: string,
  serialize: (value: MessageInitShape<DescMessage>) => Buffer,
  deserialize: (bytes: Buffer) => unknown,
  mapError: ErrorMapper,
): (request: MessageInitShape<DescMessage>, options?: CallOptions) => Promise<unknown> {
  return (request, options) =>
    new Promise((resolve, reject) => {
      const started = leanCall(h2, path, options);
      if (started instanceof TetherError) return failWith(mapError, reject, started);
      const { call, headers } = started;
      let bytes: Buffer;
      try {
        bytes = serialize(request);
      } catch (error) {
        failWith(
          mapError,
          reject,
          rpcError(path, statusError(INTERNAL, `Request message serialization failure: ${errorText(error)}`)),
        );
        return;
      }
      const answer = new OneAnswer(call, path, deserialize, resolve, reject, mapError);
      call.startPlain(headers, answer, false);
      call.sendMessageWithContext(NO_CONTEXT, bytes);
      call.halfClose();
      call.startRead();
      if (options?.signal) answer.unlink = linkSignal(options.signal, cancelOnClient(call));
    });
}

/**
 * The answers of a lean call, one read at a time: a message is asked for
 * (HTTP/2 window credit given back) only when the consumer wants the next,
 * so a consumer that stops reading pauses the plugin once the stream's
 * window is full; nothing piles up here.
 */
class Answers {
  readonly #call: H2Call;
  #message: Buffer | undefined;
  #status: CallStatus | undefined;
  #wake: (() => void) | undefined;

  constructor(call: H2Call) {
    this.#call = call;
  }

  readonly listener = {
    onReceiveMetadata: () => {},
    onReceiveMessage: (message: Buffer) => {
      this.#message = message;
      this.#wake?.();
    },
    onReceiveStatus: (status: CallStatus) => {
      this.#status = status;
      this.#wake?.();
    },
  };

  /** The next message, or the final status once every message has been read. */
  async next(): Promise<Buffer | CallStatus> {
    if (!this.#status) {
      this.#call.startRead();
      while (this.#message === undefined && !this.#status) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        this.#wake = undefined;
      }
    }
    const message = this.#message;
    this.#message = undefined;
    return message ?? this.#status!;
  }
}

async function* leanRead(
  path: string,
  call: H2Call,
  answers: Answers,
  deserialize: (bytes: Buffer) => unknown,
  mapError: ErrorMapper,
  unlink: () => void,
): AsyncGenerator<unknown> {
  let finished = false;
  try {
    while (true) {
      const next = await answers.next();
      if (!(next instanceof Uint8Array)) {
        finished = true;
        if (next.code === 0) return;
        throw await mapError(rpcError(path, statusError(next.code, next.details, next.metadata)));
      }
      let message: unknown;
      try {
        message = deserialize(next);
      } catch (error) {
        // As grpc-js: the call is cancelled and fails with INTERNAL.
        const details = `Response message parsing error: ${errorText(error)}`;
        call.cancelWithStatus(INTERNAL, details);
        finished = true;
        throw await mapError(rpcError(path, statusError(INTERNAL, details)));
      }
      yield message;
    }
  } finally {
    unlink();
    // The consumer stopped early: tell the server.
    if (!finished) call.cancelWithStatus(CANCELLED, "Cancelled on client");
  }
}

/**
 * Sends `requests` on a lean call, awaiting the stream's drain between
 * messages (a plugin that does not read makes this wait), then half-closes.
 * Stops once the call has ended. A message that does not serialise cancels
 * the call with INTERNAL, as grpc-js does.
 */
async function leanFeed(
  call: H2Call,
  requests: AsyncIterable<MessageInitShape<DescMessage>>,
  serialize: (value: MessageInitShape<DescMessage>) => Buffer,
): Promise<void> {
  for await (const request of requests) {
    if (call.finished) return;
    let bytes: Buffer;
    try {
      bytes = serialize(request);
    } catch (error) {
      call.cancelWithStatus(INTERNAL, `Request message serialization failure: ${errorText(error)}`);
      return;
    }
    await call.sendMessage(bytes);
  }
  call.halfClose();
}

function leanServerStream(
  h2: H2Channel,
  path: string,
  serialize: (value: MessageInitShape<DescMessage>) => Buffer,
  deserialize: (bytes: Buffer) => unknown,
  mapError: ErrorMapper,
): (request: MessageInitShape<DescMessage>, options?: CallOptions) => AsyncIterable<unknown> {
  return (request, options) => {
    const started = leanCall(h2, path, options);
    if (started instanceof TetherError) return failedStream(Promise.resolve(mapError(started)));
    const { call, headers } = started;
    let bytes: Buffer;
    try {
      bytes = serialize(request);
    } catch (error) {
      const details = `Request message serialization failure: ${errorText(error)}`;
      return failedStream(Promise.resolve(mapError(rpcError(path, statusError(INTERNAL, details)))));
    }
    const answers = new Answers(call);
    call.startPlain(headers, answers.listener, false);
    call.sendMessageWithContext(NO_CONTEXT, bytes);
    call.halfClose();
    return leanRead(
      path,
      call,
      answers,
      deserialize,
      mapError,
      linkSignal(options?.signal, cancelOnClient(call)),
    );
  };
}

function leanBidiStream(
  h2: H2Channel,
  path: string,
  serialize: (value: MessageInitShape<DescMessage>) => Buffer,
  deserialize: (bytes: Buffer) => unknown,
  mapError: ErrorMapper,
): (requests: AsyncIterable<MessageInitShape<DescMessage>>, options?: CallOptions) => AsyncIterable<unknown> {
  return (requests, options) => {
    const started = leanCall(h2, path, options);
    if (started instanceof TetherError) return failedStream(Promise.resolve(mapError(started)));
    const { call, headers } = started;
    const answers = new Answers(call);
    call.startPlain(headers, answers.listener, false);
    // A failing request iterable cancels the call; the reader sees CANCELLED (as with grpc-js's call objects).
    leanFeed(call, requests, serialize).catch(() => call.cancelWithStatus(CANCELLED, "Cancelled on client"));
    return leanRead(
      path,
      call,
      answers,
      deserialize,
      mapError,
      linkSignal(options?.signal, cancelOnClient(call)),
    );
  };
}

function leanClientStream(
  h2: H2Channel,
  path: string,
  serialize: (value: MessageInitShape<DescMessage>) => Buffer,
  deserialize: (bytes: Buffer) => unknown,
  mapError: ErrorMapper,
): (requests: AsyncIterable<MessageInitShape<DescMessage>>, options?: CallOptions) => Promise<unknown> {
  return (requests, options) =>
    new Promise((resolve, reject) => {
      const started = leanCall(h2, path, options);
      if (started instanceof TetherError) return failWith(mapError, reject, started);
      const { call, headers } = started;
      const answer = new OneAnswer(call, path, deserialize, resolve, reject, mapError);
      call.startPlain(headers, answer, false);
      call.startRead();
      answer.unlink = linkSignal(options?.signal, cancelOnClient(call));
      // As with grpc-js's call objects: a failing request iterable cancels the call and the promise rejects
      // with the iterable's own error.
      leanFeed(call, requests, serialize).catch((error) => {
        call.cancelWithStatus(CANCELLED, "Cancelled on client");
        reject(error);
      });
    });
}

// ---------------------------------------------------------------------------------------------------------
// Calls through grpc-js's call objects, for a grpc-js Client on grpc-js's own channel.

/**
 * grpc-js call options. Request metadata goes in through an interceptor that
 * sets it on the Metadata grpc-js makes: this module holds no grpc-js class.
 */
function grpcJsOptions(options: CallOptions | undefined): grpc.CallOptions {
  const timeoutMs = validateTimerMs(options?.timeoutMs, "timeoutMs");
  const result: grpc.CallOptions = timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
  const headers = metadataHeaders(options);
  if (Object.keys(headers).length === 0) return result;
  const interceptor: grpc.Interceptor = (callOptions, nextCall) => {
    const call = nextCall(callOptions);
    const wrapped: typeof call = {
      start(metadata, listener) {
        for (const [key, value] of Object.entries(headers)) metadata.set(key, value);
        call.start(metadata, listener);
      },
      cancelWithStatus: (status, details) => call.cancelWithStatus(status, details),
      getPeer: () => call.getPeer(),
      sendMessageWithContext: (context, message) => call.sendMessageWithContext(context, message),
      sendMessage: (message) => call.sendMessage(message),
      startRead: () => call.startRead(),
      halfClose: () => call.halfClose(),
      getAuthContext: () => call.getAuthContext(),
    };
    // grpc-js only calls the interface's methods; its class is not at hand here.
    return wrapped as grpc.InterceptingCall;
  };
  return { ...result, interceptors: [interceptor] };
}

async function* pump<T>(
  path: string,
  stream: AsyncIterable<T> & { cancel(): void },
  mapError: ErrorMapper,
  unlink: () => void,
): AsyncGenerator<T> {
  let finished = false;
  try {
    for await (const message of stream) yield message;
    finished = true;
  } catch (error) {
    finished = true;
    throw await mapError(rpcError(path, error));
  } finally {
    unlink();
    // The consumer stopped early: tell the server.
    if (!finished) stream.cancel();
  }
}

async function feed<T>(
  requests: AsyncIterable<T>,
  call: { write(message: T): boolean; end(): void; once(event: "drain", listener: () => void): unknown },
): Promise<void> {
  for await (const request of requests) {
    if (!call.write(request)) await new Promise<void>((resolve) => call.once("drain", resolve));
  }
  call.end();
}

/**
 * Runs a call that answers once (unary or client-streaming): maps its failure,
 * including grpc-js refusing to start it on a closed channel, and links the
 * caller's AbortSignal. `started` runs once the call exists (to feed a stream).
 */
function singleAnswer<C extends { cancel(): void }>(
  path: string,
  mapError: ErrorMapper,
  options: CallOptions | undefined,
  start: (done: (error: grpc.ServiceError | null, response?: unknown) => void) => C,
  started?: (call: C, fail: (error: unknown) => void) => void,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let unlink = () => {};
    let call: C;
    try {
      call = start((error, response) => {
        unlink();
        if (error) Promise.resolve(mapError(rpcError(path, error))).then(reject, reject);
        else resolve(response);
      });
    } catch (error) {
      Promise.resolve(mapError(closedChannel(path, error))).then(reject, reject);
      return;
    }
    unlink = linkSignal(options?.signal, call);
    started?.(call, reject);
  });
}

function grpcJsMethod(
  channel: grpc.Client,
  kind: string,
  path: string,
  serialize: (value: MessageInitShape<DescMessage>) => Buffer,
  deserialize: (bytes: Buffer) => unknown,
  mapError: ErrorMapper,
): unknown {
  switch (kind) {
    case "unary":
      return (request: MessageInitShape<DescMessage>, options?: CallOptions) =>
        singleAnswer(
          path,
          mapError,
          options,
          (done) =>
            channel.makeUnaryRequest(path, serialize, deserialize, request, grpcJsOptions(options), done),
        );
    case "server_streaming":
      return (request: MessageInitShape<DescMessage>, options?: CallOptions) => {
        let call: grpc.ClientReadableStream<unknown>;
        try {
          call = channel.makeServerStreamRequest(
            path,
            serialize,
            deserialize,
            request,
            grpcJsOptions(options),
          );
        } catch (error) {
          return failedStream(Promise.resolve(mapError(closedChannel(path, error))));
        }
        return pump(path, call, mapError, linkSignal(options?.signal, call));
      };
    case "client_streaming":
      return (requests: AsyncIterable<MessageInitShape<DescMessage>>, options?: CallOptions) =>
        singleAnswer(
          path,
          mapError,
          options,
          (done) =>
            channel.makeClientStreamRequest(path, serialize, deserialize, grpcJsOptions(options), done),
          (call, fail) =>
            feed(requests, call).catch((error) => {
              call.cancel();
              fail(error);
            }),
        );
    default:
      return (requests: AsyncIterable<MessageInitShape<DescMessage>>, options?: CallOptions) => {
        let call: grpc.ClientDuplexStream<MessageInitShape<DescMessage>, unknown>;
        try {
          call = channel.makeBidiStreamRequest(path, serialize, deserialize, grpcJsOptions(options));
        } catch (error) {
          return failedStream(Promise.resolve(mapError(closedChannel(path, error))));
        }
        feed(requests, call).catch(() => call.cancel());
        return pump(path, call, mapError, linkSignal(options?.signal, call));
      };
  }
}

const LEAN = {
  unary: leanUnary,
  server_streaming: leanServerStream,
  client_streaming: leanClientStream,
  bidi_streaming: leanBidiStream,
} as const;

/**
 * Makes a typed client for `service` on an open channel, with the message
 * codec handed in (`createServiceClient` in `src/rpc.ts` hands in
 * protobuf-es's). On an {@linkcode H2Channel}, or a grpc-js `Client` whose
 * channel is one, every call runs on the lean path.
 *
 * @example
 * ```ts ignore
 * import { openChannel } from "./channel.ts";
 * import { createClient } from "./calls.ts";
 * import { deserializer, serializer } from "./service.ts";
 * import { KV } from "./gen/tether/kv/v1/kv_pb.ts";
 * const channel = openChannel({ network: "unix", address: "/tmp/plugin1" }, undefined);
 * const kv = createClient(channel, KV, { serializer, deserializer });
 * await kv.put({ key: "a", value: new TextEncoder().encode("1") });
 * ```
 */
export function createClient<S extends DescService>(
  channel: CallChannel,
  service: S,
  codec: MessageCodec,
  mapError: ErrorMapper = (error) => error,
): ServiceClient<S> {
  const client: Record<string, unknown> = {};
  const raw = channel.getChannel() as unknown;
  const lean = raw instanceof H2Channel ? raw : undefined;
  for (const method of service.methods) {
    const path = methodPath(method);
    const serialize = codec.serializer(method.input);
    const deserialize = codec.deserializer(method.output);
    client[method.localName] = lean
      ? LEAN[method.methodKind](lean, path, serialize, deserialize, mapError)
      : grpcJsMethod(channel as grpc.Client, method.methodKind, path, serialize, deserialize, mapError);
  }
  return client as ServiceClient<S>;
}
