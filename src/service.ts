/**
 * The service model both sides share, with no gRPC library under it:
 * typed implementations of protobuf-es services ({@linkcode registration}),
 * what a handler learns about its call, method paths, message (de)serialisers
 * and how a handler's error becomes a gRPC status. The plugin's server
 * (`src/h2server.ts`) needs only this; the grpc-js bridge (`src/rpc.ts`)
 * builds clients on it.
 *
 * @module
 */

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { Buffer } from "node:buffer";
import { GrpcStatus, TetherError } from "./errors.ts";

/** Per-call options of a {@linkcode ServiceClient} method. */
export interface CallOptions {
  /** Cancels the call (the plugin sees CANCELLED); the promise rejects with `rpc`/CANCELLED. */
  readonly signal?: AbortSignal;
  /** Deadline for the call, in milliseconds from now; sent to the plugin as `grpc-timeout`. */
  readonly timeoutMs?: number;
  /** Extra request metadata (gRPC headers). */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** The shape of a unary method descriptor. */
export type UnaryMethod<I extends DescMessage, O extends DescMessage> = {
  methodKind: "unary";
  input: I;
  output: O;
};
/** The shape of a server-streaming method descriptor. */
export type ServerStreamingMethod<I extends DescMessage, O extends DescMessage> = {
  methodKind: "server_streaming";
  input: I;
  output: O;
};
/** The shape of a client-streaming method descriptor. */
export type ClientStreamingMethod<I extends DescMessage, O extends DescMessage> = {
  methodKind: "client_streaming";
  input: I;
  output: O;
};
/** The shape of a bidirectional-streaming method descriptor. */
export type BidiStreamingMethod<I extends DescMessage, O extends DescMessage> = {
  methodKind: "bidi_streaming";
  input: I;
  output: O;
};

/**
 * A typed client for a protobuf service: one method per RPC, named by its
 * protobuf-es local name (`Get` becomes `get`). Unary calls return a promise;
 * server streams are async iterables; client and bidi streams take one.
 */
export type ServiceClient<S extends DescService> = {
  [K in keyof S["method"]]: S["method"][K] extends UnaryMethod<infer I, infer O>
    ? (request: MessageInitShape<I>, options?: CallOptions) => Promise<MessageShape<O>>
    : S["method"][K] extends ServerStreamingMethod<infer I, infer O>
      ? (request: MessageInitShape<I>, options?: CallOptions) => AsyncIterable<MessageShape<O>>
    : S["method"][K] extends ClientStreamingMethod<infer I, infer O>
      ? (requests: AsyncIterable<MessageInitShape<I>>, options?: CallOptions) => Promise<MessageShape<O>>
    : S["method"][K] extends BidiStreamingMethod<infer I, infer O> ? (
        requests: AsyncIterable<MessageInitShape<I>>,
        options?: CallOptions,
      ) => AsyncIterable<MessageShape<O>>
    : never;
};

/** What a service implementation learns about the call it handles. */
export interface HandlerContext {
  /** Aborted when the caller cancels or its deadline passes. */
  readonly signal: AbortSignal;
  /** The request metadata (gRPC headers), lower-case keys. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The full method path, e.g. `/tether.kv.v1.KV/Get`. */
  readonly method: string;
}

/** A value, or a promise of it. */
export type Awaitable<T> = T | Promise<T>;

/**
 * An implementation of a protobuf service: one function per RPC, named by
 * its protobuf-es local name. Throw {@linkcode TetherError} with `code: "rpc"`
 * and a `status` to send that status; any other error is sent as UNKNOWN with
 * its message, as grpc-go does for plain errors.
 */
export type ServiceImplementation<S extends DescService> = {
  [K in keyof S["method"]]: S["method"][K] extends UnaryMethod<infer I, infer O>
    ? (request: MessageShape<I>, context: HandlerContext) => Awaitable<MessageInitShape<O>>
    : S["method"][K] extends ServerStreamingMethod<infer I, infer O>
      ? (request: MessageShape<I>, context: HandlerContext) => AsyncIterable<MessageInitShape<O>>
    : S["method"][K] extends ClientStreamingMethod<infer I, infer O>
      ? (requests: AsyncIterable<MessageShape<I>>, context: HandlerContext) => Awaitable<MessageInitShape<O>>
    : S["method"][K] extends BidiStreamingMethod<infer I, infer O> ? (
        requests: AsyncIterable<MessageShape<I>>,
        context: HandlerContext,
      ) => AsyncIterable<MessageInitShape<O>>
    : never;
};

/** A service and its implementation, as given to a server. */
export interface ServiceRegistration<S extends DescService = DescService> {
  /** The protobuf-es service descriptor. */
  readonly service: S;
  /** The functions that answer its RPCs. */
  readonly implementation: ServiceImplementation<S>;
}

/**
 * Pairs a service with its implementation, checking the implementation's
 * type against the service.
 *
 * @example
 * ```ts
 * import { registration } from "./service.ts";
 * import { Adder } from "./gen/tether/kv/v1/kv_pb.ts";
 * const adder = registration(Adder, { add: (req) => ({ sum: req.a + req.b }) });
 * console.log(adder.service.typeName); // "tether.kv.v1.Adder"
 * ```
 */
export function registration<S extends DescService>(
  service: S,
  implementation: ServiceImplementation<S>,
): ServiceRegistration<S> {
  return { service, implementation };
}

// Defined with the wire rules; part of the service model's API.
export { MAX_MESSAGE_BYTES, methodPath } from "./grpc_wire.ts";

/**
 * A message's encoder: protobuf-es bytes as a Buffer view (no copy).
 *
 * @example
 * ```ts
 * import { serializer } from "./service.ts";
 * import { AddRequestSchema } from "./gen/tether/kv/v1/kv_pb.ts";
 * console.log(serializer(AddRequestSchema)({ a: 1n, b: 2n }).length); // 4
 * ```
 */
export function serializer<D extends DescMessage>(schema: D): (value: MessageInitShape<D>) => Buffer {
  return (value) => {
    const bytes = toBinary(schema, create(schema, value));
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/**
 * A message's decoder, from the bytes of one gRPC message.
 *
 * @example
 * ```ts
 * import { deserializer, serializer } from "./service.ts";
 * import { AddRequestSchema } from "./gen/tether/kv/v1/kv_pb.ts";
 * const bytes = serializer(AddRequestSchema)({ a: 1n, b: 2n });
 * console.log(deserializer(AddRequestSchema)(bytes).b); // 2n
 * ```
 */
export function deserializer<D extends DescMessage>(schema: D): (bytes: Uint8Array) => MessageShape<D> {
  // Plain Uint8Array (a view of a Buffer's bytes): bytes fields then come out as Uint8Array, not as Buffers.
  return (bytes) =>
    fromBinary(
      schema,
      bytes.constructor === Uint8Array
        ? bytes
        : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    );
}

/**
 * The gRPC status a handler's failure is sent with: a {@linkcode TetherError}
 * with a `status` keeps it; an object carrying a numeric `code` (0-16) and a
 * string `details` (a grpc-js style status) keeps both; anything else is
 * UNKNOWN with its message, as grpc-go sends a plain error.
 *
 * @example
 * ```ts
 * import { statusOf } from "./service.ts";
 * console.log(statusOf(new Error("disk full"))); // { code: 2, details: "disk full" }
 * ```
 */
export function statusOf(error: unknown): { code: number; details: string } {
  if (error instanceof TetherError && error.status !== undefined) {
    return { code: error.status, details: error.message };
  }
  const e = error as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof e?.code === "number" && e.code >= 0 && e.code <= 16 && typeof e.details === "string") {
    return { code: e.code, details: e.details };
  }
  return {
    code: GrpcStatus.UNKNOWN,
    details: typeof e?.message === "string" ? e.message : String(error),
  };
}
