/**
 * Where and how gRPC connections between host and plugin run: unix socket
 * paths and TCP ports chosen as go-plugin chooses them, grpc-js channel and
 * server credentials for AutoMTLS (each side pins the other's certificate),
 * manual TLS or plaintext, and go-plugin's message size limits.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { PeerCertificate } from "node:tls";
import { TetherError } from "./errors.ts";
import { sameBytes } from "./mtls.ts";
import { H2Channel } from "./h2channel.ts";
import { grpcServiceDefinition, MAX_MESSAGE_BYTES, type ServiceRegistration } from "./rpc.ts";

/** A listening address, as in a handshake line or a broker ConnInfo. */
export interface Endpoint {
  /** `unix` (a socket path) or `tcp` (`127.0.0.1:port`). */
  readonly network: "unix" | "tcp";
  /** The socket path or `host:port`. */
  readonly address: string;
}

/**
 * The TLS settings of one side of a connection: its own certificate and key,
 * and the certificate(s) it accepts from the other side.
 */
export interface TlsMaterial {
  /** This side's certificate chain, PEM. */
  readonly certPem: string;
  /** This side's private key, PEM. Never logged. */
  readonly keyPem: string;
  /** The CA certificate(s) the peer's certificate must chain to, PEM. */
  readonly peerCaPem: string;
  /**
   * With AutoMTLS: the exact peer certificate (DER). A peer presenting any
   * other certificate is refused, even one the CA would accept.
   */
  readonly pinnedPeerDer?: Uint8Array;
  /** The name the server certificate must carry; go-plugin uses `localhost`. */
  readonly serverName?: string;
}

/** The grpc-js target for an endpoint. */
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

/** How a plugin (or a broker) picks where to listen. */
export interface ListenOptions {
  /** `unix` (default except on Windows) or `tcp`. */
  readonly network: "unix" | "tcp";
  /** An exact socket path to use (Tether hosts pass one so a sandbox can grant it). */
  readonly socketPath?: string;
  /** Directory for a new socket: `PLUGIN_UNIX_SOCKET_DIR`, else `$TMPDIR`, else `/tmp`. */
  readonly socketDir?: string;
  /** Group (name or gid) that may use the socket; the socket becomes mode 0660. */
  readonly socketGroup?: string;
  /** TCP port range (`PLUGIN_MIN_PORT`..`PLUGIN_MAX_PORT`); 0..0 lets the OS choose. */
  readonly minPort?: number;
  /** Upper end of the TCP port range. */
  readonly maxPort?: number;
}

/** A running grpc-js server and where it listens. */
export interface RunningServer {
  /** Where clients reach it. */
  readonly endpoint: Endpoint;
  /** The grpc-js server. */
  readonly server: grpc.Server;
  /** Stops at once: open calls fail, the socket file is removed. */
  stop(): void;
}

function bind(server: grpc.Server, target: string, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(target, credentials, (error, port) => error ? reject(error) : resolve(port))
  );
}

function randomSocketPath(dir: string): string {
  const digits = crypto.getRandomValues(new Uint32Array(1))[0];
  return `${dir.replace(/\/+$/, "")}/plugin${digits}`;
}

async function groupId(group: string): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const lines = (await Deno.readTextFile("/etc/group")).split("\n");
  for (const line of lines) {
    const [name, , gid] = line.split(":");
    if (name === group) return Number(gid);
  }
  throw new TetherError(
    "config",
    `unix socket group ${JSON.stringify(group)} does not exist (not in /etc/group)`,
  );
}

/** Unix socket paths are limited to 108 bytes on Linux (104 on macOS). */
const MAX_SOCKET_PATH = Deno.build.os === "darwin" ? 103 : 107;

/**
 * Starts a grpc-js server with the given services on a new unix socket or
 * TCP port, chosen as go-plugin chooses.
 *
 * @example
 * ```ts ignore
 * import { startServer } from "./transport.ts";
 * const running = await startServer([], { network: "unix" }, undefined);
 * console.log(running.endpoint.address); // e.g. /tmp/plugin1234567
 * running.stop();
 * ```
 */
export async function startServer(
  services: readonly ServiceRegistration[],
  listen: ListenOptions,
  tls: TlsMaterial | undefined,
): Promise<RunningServer> {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    // Per-call bookkeeping nobody reads on a plugin connection.
    "grpc.enable_channelz": 0,
  });
  for (const registered of services) {
    const { definition, handlers } = grpcServiceDefinition(registered);
    server.addService(definition, handlers);
  }
  const credentials = serverCredentials(tls);
  let endpoint: Endpoint;
  if (listen.network === "unix") {
    const path = listen.socketPath ?? randomSocketPath(listen.socketDir || "/tmp");
    if (new TextEncoder().encode(path).length > MAX_SOCKET_PATH) {
      throw new TetherError(
        "config",
        `unix socket path ${path} is longer than the system allows (${MAX_SOCKET_PATH} bytes): ` +
          "set a shorter PLUGIN_UNIX_SOCKET_DIR / unixSocketDir",
      );
    }
    await bind(server, `unix:${path}`, credentials);
    if (listen.socketGroup) {
      await Deno.chown(path, null, await groupId(listen.socketGroup));
      await Deno.chmod(path, 0o660);
    }
    endpoint = { network: "unix", address: path };
  } else {
    const min = listen.minPort ?? 0;
    const max = listen.maxPort ?? 0;
    let port = -1;
    let lastError: unknown;
    for (let candidate = min; candidate <= max && port < 0; candidate++) {
      try {
        port = await bind(server, `127.0.0.1:${candidate}`, credentials);
      } catch (error) {
        lastError = error;
      }
    }
    if (port < 0) {
      throw new TetherError("config", `no free TCP port on 127.0.0.1 in ${min}..${max}`, {
        cause: lastError,
      });
    }
    endpoint = { network: "tcp", address: `127.0.0.1:${port}` };
  }
  let stopped = false;
  return {
    endpoint,
    server,
    stop() {
      if (stopped) return;
      stopped = true;
      server.forceShutdown();
      if (endpoint.network === "unix") removeSocket(endpoint.address);
    },
  };
}

/** Removes a unix socket file if it is still there (grpc-js may already have). */
export function removeSocket(path: string): void {
  try {
    if (Deno.lstatSync(path).isSocket) Deno.removeSync(path);
  } catch {
    // Already gone, or not ours to see: nothing to clean.
  }
}
