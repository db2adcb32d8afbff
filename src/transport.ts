/**
 * The client side of gRPC connections between host and plugin: grpc-js
 * channels (the lean one of `src/h2channel.ts` by default) and credentials
 * for AutoMTLS (each side pins the other's certificate), manual TLS or
 * plaintext, with go-plugin's message size limits; and grpc-js's server, kept
 * for comparison with the lean one. Where servers listen, and the TLS
 * material of each side, are in `src/listen.ts` (re-exported here), which a
 * plugin loads without grpc-js.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { PeerCertificate } from "node:tls";
import { sameBytes } from "./mtls.ts";
import { H2Channel } from "./h2channel.ts";
import { grpcServiceDefinition, MAX_MESSAGE_BYTES, type ServiceRegistration } from "./rpc.ts";
import { type Bindable, type Endpoint, grpcTarget, type TlsMaterial } from "./listen.ts";

export {
  type Endpoint,
  grpcTarget,
  type ListenOptions,
  removeSocket,
  type RunningServer,
  type ServerImplementation,
  setServerImplementation,
  startServer,
  type TlsMaterial,
} from "./listen.ts";

/** Which channel `grpc.Client`s made with {@linkcode channelOptions} use. */
export type ChannelImplementation = "lean" | "grpc-js";
let implementation: ChannelImplementation = "lean";

/**
 * Chooses the channel under every later {@linkcode channelOptions}: `lean`
 * (default: {@linkcode H2Channel}, one `node:http2` session) or `grpc-js`
 * (grpc-js's own channel stack). For measuring one against the other; both
 * send the same bytes.
 *
 * @example
 * ```ts
 * import { setChannelImplementation } from "./transport.ts";
 * setChannelImplementation("grpc-js");
 * setChannelImplementation("lean");
 * ```
 */
export function setChannelImplementation(choice: ChannelImplementation): void {
  implementation = choice;
}

/**
 * Client options matching go-plugin's client (no message size limits below
 * MaxInt32), with the lean channel plugged in. grpc-js's own channel, when
 * chosen, runs without retries and channelz: a plugin connection uses
 * neither, and both cost on every call.
 */
export function channelOptions(tls: TlsMaterial | undefined): grpc.ClientOptions {
  const authority = tls?.serverName ?? "localhost";
  if (implementation === "lean") {
    return {
      channelFactoryOverride: (target: string) =>
        // grpc-js types its Channel as a class; H2Channel has the interface grpc.Client uses.
        new H2Channel({
          target,
          authority,
          maxMessageBytes: MAX_MESSAGE_BYTES,
          tls: tls && {
            ca: tls.peerCaPem,
            key: tls.keyPem,
            cert: tls.certPem,
            servername: authority,
            checkServerIdentity: peerCheck(tls),
          },
        }) as unknown as grpc.Channel,
    };
  }
  return {
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    ...(tls ? { "grpc.ssl_target_name_override": authority } : {}),
    "grpc.default_authority": authority,
    "grpc.enable_retries": 0,
    "grpc.enable_channelz": 0,
  };
}

/** The host's check of the plugin's certificate: the pinned one (AutoMTLS), valid for the server name. */
function peerCheck(tls: TlsMaterial): (hostname: string, cert: PeerCertificate) => Error | undefined {
  const pinned = tls.pinnedPeerDer;
  return (hostname, cert) => {
    if (pinned && !sameBytes(new Uint8Array(cert.raw), pinned)) {
      return new Error(
        "the plugin's TLS certificate is not the one from its handshake line: refusing to talk to it",
      );
    }
    const names = (cert.subjectaltname ?? "").split(", ").map((entry) => entry.replace(/^DNS:/, ""));
    if (!names.includes(hostname)) {
      return new Error(
        `the plugin's TLS certificate is not valid for ${hostname} (it names ${names.join(", ")})`,
      );
    }
    return undefined;
  };
}

/** Credentials for a client channel: TLS with a client certificate, or plaintext (h2c). */
export function channelCredentials(tls: TlsMaterial | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    Buffer.from(tls.peerCaPem),
    Buffer.from(tls.keyPem),
    Buffer.from(tls.certPem),
    { checkServerIdentity: peerCheck(tls) },
  );
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
): Bindable {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
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

/**
 * A grpc-js client (channel) to `endpoint` with this side's TLS settings and
 * the channel chosen by {@linkcode setChannelImplementation}: the one way the
 * host's plugin connection and every brokered connection are opened.
 *
 * @example
 * ```ts ignore
 * import { openChannel } from "./transport.ts";
 * const channel = openChannel({ network: "unix", address: "/tmp/plugin1" }, undefined);
 * channel.close();
 * ```
 */
export function openChannel(endpoint: Endpoint, tls: TlsMaterial | undefined): grpc.Client {
  return new grpc.Client(grpcTarget(endpoint), channelCredentials(tls), channelOptions(tls));
}
