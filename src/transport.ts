/**
 * Where and how gRPC connections between host and plugin run, in one import,
 * with grpc-js: where servers listen and the TLS material of each side
 * (`src/listen.ts`), the client channels (`src/channel.ts`), and grpc-js's
 * client credentials and server, kept for comparison with the lean channel
 * and server (`setChannelImplementation("grpc-js")`,
 * `setServerImplementation("grpc-js")`). Importing this module loads
 * grpc-js: neither the host (`mod.ts`) nor a plugin (`plugin.ts`) imports it
 * unless grpc-js is chosen.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { grpcServiceDefinition, MAX_MESSAGE_BYTES, type ServiceRegistration } from "./rpc.ts";
import { type Bindable, type ServerLimits, setServerFactory, type TlsMaterial } from "./listen.ts";

export {
  type Endpoint,
  type ListenOptions,
  removeSocket,
  type RunningServer,
  startServer,
  type TlsMaterial,
} from "./listen.ts";
export {
  type ChannelImplementation,
  channelOptions,
  grpcTarget,
  openChannel,
  type PluginChannel,
  setChannelImplementation,
} from "./channel.ts";

// grpc-js's client channel (its credentials, and `openChannel` once it is chosen) lives in grpcjs_channel.ts.
export { channelCredentials } from "./grpcjs_channel.ts";

/** Which server `startServer` runs. */
export type ServerImplementation = "lean" | "grpc-js";

/**
 * Chooses the server under every later `startServer`: `lean` (default: the
 * `node:http2` server of `src/h2server.ts`) or `grpc-js` (grpc-js's
 * `Server`). For measuring one against the other; both speak the same gRPC.
 * A plugin calls it before `serve()`; importing this module loads grpc-js.
 *
 * @example
 * ```ts
 * import { setServerImplementation } from "./transport.ts";
 * setServerImplementation("grpc-js");
 * setServerImplementation("lean");
 * ```
 */
export function setServerImplementation(choice: ServerImplementation): void {
  setServerFactory(choice === "grpc-js" ? grpcJsServer : undefined);
}

/** Credentials for a server: TLS requiring and verifying a client certificate, or plaintext. */
export function serverCredentials(tls: TlsMaterial | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    Buffer.from(tls.peerCaPem),
    [{ private_key: Buffer.from(tls.keyPem), cert_chain: Buffer.from(tls.certPem) }],
    true,
  );
}

/**
 * grpc-js's server for `services`, bound as {@linkcode startServer} binds
 * servers: the comparison for the lean server (`setServerImplementation("grpc-js")`).
 * Without channelz (per-call counters nobody reads on a plugin connection).
 *
 * @example
 * ```ts ignore
 * import { grpcJsServer } from "./transport.ts";
 * const server = grpcJsServer([], undefined);
 * await server.bind({ path: "/tmp/plugin-grpcjs.sock" });
 * server.stop();
 * ```
 */
export function grpcJsServer(
  services: readonly ServiceRegistration[],
  tls: TlsMaterial | undefined,
  limits?: ServerLimits,
): Bindable {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": limits?.maxReceiveMessageBytes ?? MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    "grpc.enable_channelz": 0,
  });
  for (const registered of services) {
    const { definition, handlers } = grpcServiceDefinition(registered);
    server.addService(definition, handlers);
  }
  const credentials = serverCredentials(tls);
  return {
    bind: (where) =>
      new Promise((resolve, reject) =>
        server.bindAsync(
          "path" in where ? `unix:${where.path}` : `127.0.0.1:${where.port}`,
          credentials,
          (error, port) => error ? reject(error) : resolve("path" in where ? 0 : port),
        )
      ),
    stop: () => server.forceShutdown(),
  };
}
