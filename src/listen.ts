/**
 * Where and how a gRPC server listens: unix socket paths and TCP ports chosen
 * as go-plugin chooses them, the socket's group, the TLS material of each side,
 * and which server runs there (the lean `node:http2` server of
 * `src/h2server.ts`, or one handed in: grpc-js's, for comparison). No gRPC
 * library is loaded here: a plugin that only serves never loads grpc-js. The
 * client side (channels, credentials) is in `src/channel.ts`.
 *
 * @module
 */

import { TetherError } from "./errors.ts";
import { H2Server } from "./h2server.ts";
import type { ReceiveAccounting } from "./receive_limits.ts";
import type { ServiceRegistration } from "./service.ts";

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

/** A running gRPC server and where it listens. */
export interface RunningServer {
  /** Where clients reach it. */
  readonly endpoint: Endpoint;
  /** Stops at once: open calls fail, the socket file is removed. */
  stop(): void;
}

/** A server that can be bound to a socket path or a loopback TCP port (0: any), then stopped. */
export interface Bindable {
  /** Listens; resolves with the TCP port (0 for a socket path). */
  bind(where: { path: string } | { port: number }): Promise<number>;
  /** Stops listening and drops every connection. */
  stop(): void;
}

/** What a server accepts from its callers. */
export interface ServerLimits {
  /** Largest request message accepted (default go-plugin's, 2^31-1 bytes); the host's brokered servers pass its own. */
  readonly maxReceiveMessageBytes?: number;
  /**
   * Counts the requests held against a budget (the host's brokered servers: the process's receive budget).
   * The lean server honours it; grpc-js's server (`setServerImplementation("grpc-js")`, for comparisons) does not.
   */
  readonly receiveAccounting?: ReceiveAccounting;
}

/** Makes the server {@linkcode startServer} binds. */
export type ServerFactory = (
  services: readonly ServiceRegistration[],
  tls: TlsMaterial | undefined,
  limits?: ServerLimits,
) => Bindable;

let serverFactory: ServerFactory | undefined;

/**
 * Replaces the server under every later {@linkcode startServer} (`undefined`:
 * back to the lean {@linkcode H2Server}). `setServerImplementation("grpc-js")`
 * in `src/transport.ts` puts grpc-js's server here, for comparison; it is
 * handed in rather than imported so that a plugin's module graph (and its
 * bundle) holds no gRPC library it does not use.
 *
 * @example
 * ```ts
 * import { setServerFactory } from "./listen.ts";
 * setServerFactory(undefined); // the lean server
 * ```
 */
export function setServerFactory(factory: ServerFactory | undefined): void {
  serverFactory = factory;
}

function leanServer(
  services: readonly ServiceRegistration[],
  tls: TlsMaterial | undefined,
  limits?: ServerLimits,
): Bindable {
  const h2 = new H2Server(services, {
    tls,
    maxReceiveMessageBytes: limits?.maxReceiveMessageBytes,
    receiveAccounting: limits?.receiveAccounting,
  });
  const server = h2.server;
  return {
    bind: (where) =>
      new Promise((resolve, reject) => {
        const failed = (error: Error) => reject(error);
        server.once("error", failed);
        const listening = () => {
          server.off("error", failed);
          const address = server.address();
          resolve(typeof address === "object" && address ? address.port : 0);
        };
        if ("path" in where) server.listen(where.path, listening);
        else server.listen(where.port, "127.0.0.1", listening);
      }),
    stop: () => h2.close(),
  };
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
 * Starts a gRPC server with the given services on a new unix socket or
 * TCP port, chosen as go-plugin chooses: mTLS (a verified client
 * certificate required) with `tls`, plaintext (h2c) without. `limits` bounds
 * what callers may send it.
 *
 * @example
 * ```ts ignore
 * import { startServer } from "./listen.ts";
 * const running = await startServer([], { network: "unix" }, undefined);
 * console.log(running.endpoint.address); // e.g. /tmp/plugin1234567
 * running.stop();
 * ```
 */
export async function startServer(
  services: readonly ServiceRegistration[],
  listen: ListenOptions,
  tls: TlsMaterial | undefined,
  limits?: ServerLimits,
): Promise<RunningServer> {
  const server = (serverFactory ?? leanServer)(services, tls, limits);
  let endpoint: Endpoint;
  try {
    endpoint = await bindAsGoPluginDoes(server, listen);
  } catch (error) {
    server.stop();
    throw error;
  }
  let stopped = false;
  return {
    endpoint,
    stop() {
      if (stopped) return;
      stopped = true;
      server.stop();
      if (endpoint.network === "unix") removeSocket(endpoint.address);
    },
  };
}

async function bindAsGoPluginDoes(server: Bindable, listen: ListenOptions): Promise<Endpoint> {
  if (listen.network === "unix") {
    const path = listen.socketPath ?? randomSocketPath(listen.socketDir || "/tmp");
    if (new TextEncoder().encode(path).length > MAX_SOCKET_PATH) {
      throw new TetherError(
        "config",
        `unix socket path ${path} is longer than the system allows (${MAX_SOCKET_PATH} bytes): ` +
          "set a shorter PLUGIN_UNIX_SOCKET_DIR / unixSocketDir",
      );
    }
    await server.bind({ path });
    if (listen.socketGroup) {
      await Deno.chown(path, null, await groupId(listen.socketGroup));
      await Deno.chmod(path, 0o660);
    }
    return { network: "unix", address: path };
  }
  const min = listen.minPort ?? 0;
  const max = listen.maxPort ?? 0;
  let lastError: unknown;
  for (let candidate = min; candidate <= max; candidate++) {
    try {
      const port = await server.bind({ port: candidate });
      return { network: "tcp", address: `127.0.0.1:${port}` };
    } catch (error) {
      lastError = error;
    }
  }
  throw new TetherError("config", `no free TCP port on 127.0.0.1 in ${min}..${max}`, { cause: lastError });
}

/**
 * Removes a unix socket file if it is still there (the server may already have).
 *
 * @example
 * ```ts
 * import { removeSocket } from "./listen.ts";
 * removeSocket("/tmp/no-such-plugin.sock"); // nothing there: nothing done
 * ```
 */
export function removeSocket(path: string): void {
  try {
    if (Deno.lstatSync(path).isSocket) Deno.removeSync(path);
  } catch {
    // Already gone, or not ours to see: nothing to clean.
  }
}
