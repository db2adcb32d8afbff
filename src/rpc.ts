/**
 * The bridge between protobuf-es service descriptors and gRPC: typed clients
 * for any `DescService` (on the lean channel or a grpc-js client), and
 * grpc-js service definitions for implementations of one (the grpc-js server,
 * kept for comparison with the lean server of `src/h2server.ts`). Loads no
 * grpc-js itself (types only): whoever runs grpc-js's server or client has
 * loaded it. The service model itself is in `src/service.ts`. Knows nothing
 * of plugins or processes.
 *
 * @module
 */

import type { DescMessage, DescService, MessageInitShape } from "@bufbuild/protobuf";
import type * as grpc from "@grpc/grpc-js";
import { GrpcStatus, TetherError } from "./errors.ts";
import {
  type CallChannel,
  createClient,
  EMPTY_STATUS_MESSAGE,
  type ErrorMapper,
  type MessageCodec,
} from "./calls.ts";
import {
  type Awaitable,
  type BidiStreamingMethod,
  type CallOptions,
  type ClientStreamingMethod,
  deserializer,
  type HandlerContext,
  MAX_MESSAGE_BYTES,
  methodPath,
  registration,
  serializer,
  type ServerStreamingMethod,
  type ServiceClient,
  type ServiceImplementation,
  type ServiceRegistration,
  statusOf,
  type UnaryMethod,
} from "./service.ts";

// The service model lives in service.ts (no grpc-js under it, for the plugin's server), calls in calls.ts;
// re-exported here for the host side and for existing importers.
export { type CallChannel, EMPTY_STATUS_MESSAGE, type ErrorMapper };
export {
  type Awaitable,
  type BidiStreamingMethod,
  type CallOptions,
  type ClientStreamingMethod,
  type HandlerContext,
  MAX_MESSAGE_BYTES,
  methodPath,
  registration,
  type ServerStreamingMethod,
  type ServiceClient,
  type ServiceImplementation,
  type ServiceRegistration,
  type UnaryMethod,
};
/**
 * Makes a typed client for `service` on an open channel: one from
 * `openChannel` (the lean channel by default), or a grpc-js `Client`.
 *
 * @example
 * ```ts ignore
 * import * as grpc from "@grpc/grpc-js";
 * import { createServiceClient } from "./rpc.ts";
 * import { KV } from "./gen/tether/kv/v1/kv_pb.ts";
 * const channel = new grpc.Client("unix:/tmp/plugin1", grpc.credentials.createInsecure());
 * const kv = createServiceClient(channel, KV);
 * await kv.put({ key: "a", value: new TextEncoder().encode("1") });
 * ```
 */
export function createServiceClient<S extends DescService>(
  channel: CallChannel,
  service: S,
  mapError: ErrorMapper = (error) => error,
): ServiceClient<S> {
  return createClient(channel, service, PROTOBUF_ES, mapError);
}

const PROTOBUF_ES: MessageCodec = { serializer, deserializer } as MessageCodec;

function toServiceError(error: unknown): Partial<grpc.StatusObject> {
  return statusOf(error);
}

function handlerContext(
  call: { metadata: grpc.Metadata; on(event: "cancelled", listener: () => void): unknown },
  path: string,
): { context: HandlerContext; finish(): void } {
  const controller = new AbortController();
  // grpc-js also emits "cancelled" when a finished call's stream closes: only a call still running is cancelled.
  let finished = false;
  const onCancel = () => {
    if (!finished) controller.abort(new TetherError("rpc", `${path} was cancelled by the caller`));
  };
  call.on("cancelled", onCancel);
  const metadata: Record<string, string> = {};
  for (const [key, value] of Object.entries(call.metadata.getMap())) {
    if (typeof value === "string") metadata[key] = value;
  }
  return { context: { signal: controller.signal, metadata, method: path }, finish: () => finished = true };
}

async function writeAll<T>(
  call: grpc.ServerWritableStream<unknown, T> | grpc.ServerDuplexStream<unknown, T>,
  responses: AsyncIterable<T>,
  finish: () => void,
): Promise<void> {
  try {
    for await (const response of responses) {
      if (call.cancelled) return;
      if (!call.write(response)) await new Promise<void>((resolve) => call.once("drain", resolve));
    }
    finish();
    call.end();
  } catch (error) {
    finish();
    call.emit("error", toServiceError(error));
  }
}

/**
 * A client or bidi stream's requests, as the handler iterates them. Not the call itself: a Readable's own
 * async iterator destroys the stream when the loop ends (the caller half-closed, or the handler broke out),
 * and destroying a bidi call's Duplex drops its queued answers and its status, so the caller waits until its
 * deadline (grpc/grpc-node#1839; Node and Deno alike). See docs/protocol.md, "Streams".
 */
function requestStream(call: grpc.ServerReadableStream<unknown, unknown>): AsyncIterable<unknown> {
  return call.iterator({ destroyOnReturn: false });
}

/**
 * Turns a service and its implementation into what grpc-js's
 * `Server.addService` takes.
 *
 * @example
 * ```ts
 * import * as grpc from "@grpc/grpc-js";
 * import { grpcServiceDefinition } from "./rpc.ts";
 * import { Adder } from "./gen/tether/kv/v1/kv_pb.ts";
 * const server = new grpc.Server();
 * const { definition, handlers } = grpcServiceDefinition({
 *   service: Adder,
 *   implementation: { add: (req) => ({ sum: req.a + req.b }) },
 * });
 * server.addService(definition, handlers);
 * ```
 */
export function grpcServiceDefinition<S extends DescService>(
  registered: ServiceRegistration<S>,
): { definition: grpc.ServiceDefinition; handlers: grpc.UntypedServiceImplementation } {
  const definition: Record<
    string,
    grpc.MethodDefinition<MessageInitShape<DescMessage>, MessageInitShape<DescMessage>>
  > = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  const implementation = registered.implementation as Record<string, unknown>;
  for (const method of registered.service.methods) {
    const path = methodPath(method);
    const fn = implementation[method.localName] as ((...args: unknown[]) => unknown) | undefined;
    definition[method.name] = {
      path,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
      originalName: method.localName,
    };
    if (typeof fn !== "function") {
      const unimplemented = { code: GrpcStatus.UNIMPLEMENTED, details: `method ${path} not implemented` };
      handlers[method.name] = method.methodKind === "unary" || method.methodKind === "client_streaming"
        ? (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(unimplemented)
        : (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit("error", unimplemented);
      continue;
    }
    // Unary and client-streaming calls answer once through a callback; the other two write a stream. The
    // request (one message, or the call itself as an async iterable) is what differs within each pair.
    const requestOf = (
      call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown>,
    ) =>
      method.methodKind === "unary" || method.methodKind === "server_streaming"
        ? (call as grpc.ServerUnaryCall<unknown, unknown>).request
        : requestStream(call as grpc.ServerReadableStream<unknown, unknown>);
    if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
      handlers[method.name] = (
        call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerReadableStream<unknown, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        const { context, finish } = handlerContext(call, path);
        Promise.resolve()
          .then(() => fn.call(implementation, requestOf(call), context))
          .then((response) => {
            finish();
            callback(null, response);
          }, (error) => {
            finish();
            callback(toServiceError(error));
          });
      };
    } else {
      handlers[method.name] = (
        call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>,
      ) => {
        const { context, finish } = handlerContext(call, path);
        const request = requestOf(call as grpc.ServerUnaryCall<unknown, unknown>);
        try {
          void writeAll(call, fn.call(implementation, request, context) as AsyncIterable<unknown>, finish);
        } catch (error) {
          finish();
          call.emit("error", toServiceError(error));
        }
      };
    }
  }
  return { definition: definition as grpc.ServiceDefinition, handlers };
}
