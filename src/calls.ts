/**
 * Typed calls on a grpc-js client: unary calls straight on the lean channel
 * (`src/h2channel.ts`), streams through grpc-js's call objects, every failure
 * a {@linkcode TetherError}. The message codec is handed in, so that this
 * module (loaded lazily by a plugin that dials a brokered connection) imports
 * no protobuf runtime of its own.
 *
 * @module
 */

import type { DescMessage, DescService, MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { Buffer } from "node:buffer";
import { type GrpcStatusCode, grpcStatusName, TetherError } from "./errors.ts";
import { validateTimerMs } from "./timers.ts";
import { H2Channel } from "./h2channel.ts";
import { methodPath } from "./grpc_wire.ts";
import type { CallOptions, ServiceClient } from "./service.ts";

/** How messages become bytes and back: `serializer`/`deserializer` of `src/service.ts`. */
export interface MessageCodec {
  /** The encoder of a message type. */
  serializer(schema: DescMessage): (value: MessageInitShape<DescMessage>) => Buffer;
  /** The decoder of a message type. */
  deserializer(schema: DescMessage): (bytes: Buffer) => unknown;
}

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

function callMetadata(options: CallOptions | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(options?.metadata ?? {})) metadata.set(key, value);
  return metadata;
}

function callOptions(options: CallOptions | undefined): grpc.CallOptions {
  const timeoutMs = validateTimerMs(options?.timeoutMs, "timeoutMs");
  return timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
}

/** Hooks an AbortSignal to a call's cancel(); returns the unhook function. */
function linkSignal(signal: AbortSignal | undefined, call: { cancel(): void }): () => void {
  if (!signal) return () => {};
  if (signal.aborted) {
    call.cancel();
    return () => {};
  }
  const onAbort = () => call.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
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

/** A failure as grpc-js reports one (`Error` with code, details and metadata), for {@linkcode rpcError}. */
function statusError(code: number, details: string, metadata = new grpc.Metadata()): grpc.ServiceError {
  return Object.assign(new Error(`${code} ${grpcStatusName(code as GrpcStatusCode)}: ${details}`), {
    code,
    details,
    metadata,
  });
}

/**
 * A unary call straight on the lean channel: no grpc-js call objects, no
 * Metadata unless the caller sends some. Same statuses and errors as the
 * grpc-js client path (which streams still take).
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
      const fail = (error: TetherError) => Promise.resolve(mapError(error)).then(reject, reject);
      let deadline = Infinity;
      let headers: Record<string, string | string[]> = {};
      let bytes: Buffer;
      try {
        const timeoutMs = validateTimerMs(options?.timeoutMs, "timeoutMs");
        if (timeoutMs !== undefined) deadline = Date.now() + timeoutMs;
        if (options?.metadata) headers = callMetadata(options).toHttp2Headers() as typeof headers;
        if (h2.getConnectivityState(false) === grpc.connectivityState.SHUTDOWN) {
          throw new Error("Channel has been shut down");
        }
      } catch (error) {
        fail(closedChannel(path, error));
        return;
      }
      try {
        bytes = serialize(request);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        fail(rpcError(path, statusError(13, `Request message serialization failure: ${message}`)));
        return;
      }
      let response: Buffer | undefined;
      let unlink = () => {};
      const call = h2.createCall(path, deadline);
      call.startPlain(headers, {
        onReceiveMetadata() {},
        onReceiveMessage(message) {
          response = message;
        },
        onReceiveStatus({ code, details, metadata }) {
          unlink();
          if (code !== 0) return fail(rpcError(path, statusError(code, details, metadata)));
          if (response === undefined) return fail(rpcError(path, statusError(12, "No message received")));
          try {
            resolve(deserialize(response));
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error);
            fail(rpcError(path, statusError(13, `Response message parsing error: ${message}`)));
          }
        },
      }, false);
      call.sendMessageWithContext({}, bytes);
      call.halfClose();
      call.startRead();
      unlink = linkSignal(options?.signal, { cancel: () => call.cancelWithStatus(1, "Cancelled on client") });
    });
}

/**
 * Makes a typed client for `service` on an open grpc-js client (channel),
 * with the message codec handed in (`createServiceClient` in `src/rpc.ts`
 * hands in protobuf-es's).
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
  channel: grpc.Client,
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
    switch (method.methodKind) {
      case "unary":
        if (lean) {
          client[method.localName] = leanUnary(lean, path, serialize, deserialize, mapError);
          break;
        }
        client[method.localName] = (request: MessageInitShape<DescMessage>, options?: CallOptions) =>
          singleAnswer(path, mapError, options, (done) =>
            channel.makeUnaryRequest(
              path,
              serialize,
              deserialize,
              request,
              callMetadata(options),
              callOptions(options),
              done,
            ));
        break;
      case "server_streaming":
        client[method.localName] = (request: MessageInitShape<DescMessage>, options?: CallOptions) => {
          let call: grpc.ClientReadableStream<unknown>;
          try {
            call = channel.makeServerStreamRequest(
              path,
              serialize,
              deserialize,
              request,
              callMetadata(options),
              callOptions(options),
            );
          } catch (error) {
            return failedStream(Promise.resolve(mapError(closedChannel(path, error))));
          }
          return pump(path, call, mapError, linkSignal(options?.signal, call));
        };
        break;
      case "client_streaming":
        client[method.localName] = (
          requests: AsyncIterable<MessageInitShape<DescMessage>>,
          options?: CallOptions,
        ) =>
          singleAnswer(
            path,
            mapError,
            options,
            (done) =>
              channel.makeClientStreamRequest(
                path,
                serialize,
                deserialize,
                callMetadata(options),
                callOptions(options),
                done,
              ),
            (call, fail) =>
              feed(requests, call).catch((error) => {
                call.cancel();
                fail(error);
              }),
          );
        break;
      case "bidi_streaming":
        client[method.localName] = (
          requests: AsyncIterable<MessageInitShape<DescMessage>>,
          options?: CallOptions,
        ) => {
          let call: grpc.ClientDuplexStream<MessageInitShape<DescMessage>, unknown>;
          try {
            call = channel.makeBidiStreamRequest(
              path,
              serialize,
              deserialize,
              callMetadata(options),
              callOptions(options),
            );
          } catch (error) {
            return failedStream(Promise.resolve(mapError(closedChannel(path, error))));
          }
          feed(requests, call).catch(() => call.cancel());
          return pump(path, call, mapError, linkSignal(options?.signal, call));
        };
        break;
    }
  }
  return client as ServiceClient<S>;
}
