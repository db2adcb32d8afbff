/**
 * The client side of gRPC connections between host and plugin: grpc-js
 * channels (the lean one of `src/h2channel.ts` by default) and credentials
 * for AutoMTLS (each side pins the other's certificate), manual TLS or
 * plaintext, with go-plugin's message size limits. Loaded by a plugin only
 * when it dials a brokered connection.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { PeerCertificate } from "node:tls";
import { sameBytes } from "./mtls.ts";
import { H2Channel } from "./h2channel.ts";
import { MAX_MESSAGE_BYTES } from "./grpc_wire.ts";
import type { Endpoint, TlsMaterial } from "./listen.ts";

/**
 * The grpc-js target for an endpoint.
 *
 * @example
 * ```ts
 * import { grpcTarget } from "./channel.ts";
 * console.log(grpcTarget({ network: "unix", address: "/tmp/plugin1" })); // "unix:/tmp/plugin1"
 * ```
 */
export function grpcTarget(endpoint: Endpoint): string {
  return endpoint.network === "unix" ? `unix:${endpoint.address}` : endpoint.address;
}

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
 * import { setChannelImplementation } from "./channel.ts";
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

/**
 * A grpc-js client (channel) to `endpoint` with this side's TLS settings and
 * the channel chosen by {@linkcode setChannelImplementation}: the one way the
 * host's plugin connection and every brokered connection are opened.
 *
 * @example
 * ```ts ignore
 * import { openChannel } from "./channel.ts";
 * const channel = openChannel({ network: "unix", address: "/tmp/plugin1" }, undefined);
 * channel.close();
 * ```
 */
export function openChannel(endpoint: Endpoint, tls: TlsMaterial | undefined): grpc.Client {
  return new grpc.Client(grpcTarget(endpoint), channelCredentials(tls), channelOptions(tls));
}
