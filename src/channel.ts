/**
 * The client side of gRPC connections between host and plugin: channels (the
 * lean one of `src/h2channel.ts` by default, grpc-js's own when chosen) with
 * AutoMTLS (each side pins the other's certificate), manual TLS or plaintext,
 * and go-plugin's message size limits. Loads no grpc-js: the grpc-js channel
 * comes from `src/grpcjs_channel.ts`, imported (dynamically) when
 * {@linkcode setChannelImplementation} chooses it. Loaded by a plugin only
 * when it dials a brokered connection.
 *
 * @module
 */

import type * as grpc from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import { TetherError } from "./errors.ts";
import { sameBytes } from "./mtls.ts";
import { H2Channel, type H2ChannelConfig } from "./h2channel.ts";
import { MAX_MESSAGE_BYTES } from "./grpc_wire.ts";
import { DEFAULT_MAX_RECEIVE_MESSAGE_BYTES } from "./receive_limits.ts";
import type { Endpoint, TlsMaterial } from "./listen.ts";

/**
 * An open connection to a plugin, as the host uses it: an
 * {@linkcode H2Channel} (the default) or a grpc-js `Client`.
 */
export type PluginChannel = H2Channel | grpc.Client;

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

/** Which channel {@linkcode openChannel} opens (and `grpc.Client`s made with {@linkcode channelOptions} use). */
export type ChannelImplementation = "lean" | "grpc-js";
let implementation: ChannelImplementation = "lean";

/** What a channel accepts from its peer, and whose answers they are (`src/receive_limits.ts`). */
export interface ChannelReceiveOptions {
  /** Largest message accepted (default `DEFAULT_MAX_RECEIVE_MESSAGE_BYTES`, 128 MiB); validated by the caller. */
  readonly maxReceiveMessageBytes?: number;
  /** Whose answers these are (e.g. `plugin "kv"`), named in a RESOURCE_EXHAUSTED status. */
  readonly peer?: string;
}

type GrpcJsOpener = (
  endpoint: Endpoint,
  tls: TlsMaterial | undefined,
  receive: ChannelReceiveOptions | undefined,
) => PluginChannel;
let grpcJsOpener: GrpcJsOpener | undefined;

/**
 * Installs how a grpc-js channel is opened: called by
 * `src/grpcjs_channel.ts`, the module that loads grpc-js, when it is imported.
 *
 * @example
 * ```ts ignore
 * import { setGrpcJsOpener } from "./channel.ts";
 * setGrpcJsOpener((endpoint, tls, receive) =>
 *   new grpc.Client(grpcTarget(endpoint), channelCredentials(tls), channelOptions(tls, receive))
 * );
 * ```
 */
export function setGrpcJsOpener(opener: GrpcJsOpener): void {
  grpcJsOpener = opener;
}

/**
 * Chooses the channel under every later {@linkcode channelOptions}: `lean`
 * (default: {@linkcode H2Channel}, one `node:http2` session) or `grpc-js`
 * (grpc-js's own channel stack). For measuring one against the other; both
 * send the same bytes. Choosing `grpc-js` loads grpc-js (`src/grpcjs_channel.ts`)
 * if it is not loaded yet: await the promise before opening a channel.
 *
 * @example
 * ```ts
 * import { setChannelImplementation } from "./channel.ts";
 * await setChannelImplementation("grpc-js");
 * await setChannelImplementation("lean");
 * ```
 */
export function setChannelImplementation(choice: ChannelImplementation): Promise<void> {
  implementation = choice;
  if (choice === "lean" || grpcJsOpener) return Promise.resolve();
  return import("./grpcjs_channel.ts").then(() => {});
}

/**
 * Client options matching go-plugin's client (sends of up to MaxInt32), with
 * the lean channel plugged in; receives up to `receive.maxReceiveMessageBytes`
 * (default 128 MiB). grpc-js's own channel, when chosen, runs without retries
 * and channelz: a plugin connection uses neither, and both cost on every call.
 * It has the per-message limit but not the receive budget (only the lean
 * channel counts against that).
 */
export function channelOptions(
  tls: TlsMaterial | undefined,
  receive?: ChannelReceiveOptions,
): grpc.ClientOptions {
  const authority = tls?.serverName ?? "localhost";
  if (implementation === "lean") {
    return {
      channelFactoryOverride: (target: string) =>
        // grpc-js types its Channel as a class; H2Channel has the interface grpc.Client uses.
        new H2Channel(leanConfig(target, tls, receive)) as unknown as grpc.Channel,
    };
  }
  return {
    "grpc.max_receive_message_length": receive?.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    ...(tls ? { "grpc.ssl_target_name_override": authority } : {}),
    "grpc.default_authority": authority,
    "grpc.enable_retries": 0,
    "grpc.enable_channelz": 0,
  };
}

function leanConfig(
  target: string,
  tls: TlsMaterial | undefined,
  receive: ChannelReceiveOptions | undefined,
): H2ChannelConfig {
  const authority = tls?.serverName ?? "localhost";
  return {
    target,
    authority,
    maxMessageBytes: receive?.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
    peer: receive?.peer,
    tls: tls && {
      ca: tls.peerCaPem,
      key: tls.keyPem,
      cert: tls.certPem,
      servername: authority,
      checkServerIdentity: peerCheck(tls),
    },
  };
}

/**
 * The host's check of the plugin's certificate: the pinned one (AutoMTLS),
 * valid for the server name. One check for the lean and grpc-js channels.
 *
 * @example
 * ```ts ignore
 * import { peerCheck } from "./channel.ts";
 * const check = peerCheck(tls);
 * const refusal = check("localhost", certificate); // undefined when accepted
 * ```
 */
export function peerCheck(tls: TlsMaterial): (hostname: string, cert: PeerCertificate) => Error | undefined {
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

/**
 * A channel to `endpoint` with this side's TLS settings, the one chosen by
 * {@linkcode setChannelImplementation}: the one way the host's plugin
 * connection and every brokered connection are opened. `receive` limits what
 * it accepts (`PluginClientOptions.maxReceiveMessageBytes`).
 *
 * @example
 * ```ts ignore
 * import { openChannel } from "./channel.ts";
 * const channel = openChannel({ network: "unix", address: "/tmp/plugin1" }, undefined);
 * channel.close();
 * ```
 *
 * @throws {TetherError} `config` when grpc-js's channel was chosen and has not loaded yet.
 */
export function openChannel(
  endpoint: Endpoint,
  tls: TlsMaterial | undefined,
  receive?: ChannelReceiveOptions,
): PluginChannel {
  if (implementation === "lean") return new H2Channel(leanConfig(grpcTarget(endpoint), tls, receive));
  if (!grpcJsOpener) {
    throw new TetherError(
      "config",
      'grpc-js\'s channel is chosen but not loaded: await setChannelImplementation("grpc-js") before ' +
        "opening a channel",
    );
  }
  return grpcJsOpener(endpoint, tls, receive);
}
