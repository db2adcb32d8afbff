/**
 * Broker multiplexing plumbing (go-plugin's `PLUGIN_MULTIPLEX_GRPC`): grpc-js
 * cannot run over a yamux stream directly, so each gRPC connection goes
 * through a private local unix socket bridged to a stream of the plugin
 * connection's {@linkcode YamuxSession}.
 *
 * @module
 */

import { connect, createServer, type Server, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { removeSocket } from "./listen.ts";

/** What a broker needs from a multiplexed plugin connection. */
export interface MuxLink {
  /** Opens a new stream to the peer. */
  open(): Duplex;
  /** A private directory for the local bridge sockets. */
  readonly dir: string;
}

/** Pipes two duplexes into each other; either ending or failing ends both. */
export function splice(a: Duplex, b: Duplex): void {
  const end = () => {
    a.destroy();
    b.destroy();
  };
  a.on("error", end);
  b.on("error", end);
  a.on("close", end);
  b.on("close", end);
  a.pipe(b);
  b.pipe(a);
}

/** Connects a stream the peer opened to a local gRPC server's socket. */
export function spliceToSocket(stream: Duplex, path: string): void {
  const socket = connect({ path });
  splice(stream, socket);
}

/** A local listener whose every connection becomes a new stream to the peer. */
export interface Bridge {
  /** The socket grpc-js dials. */
  readonly path: string;
  /** Stops listening, ends its connections and removes the socket. */
  close(): void;
}

let bridgeCount = 0;

/**
 * Listens on a fresh socket in `dir`; each connection gets `open()` (which
 * may knock first) and is spliced to the stream it returns.
 *
 * @example
 * ```ts ignore
 * const bridge = await bridge(dir, "main", () => Promise.resolve(session.open()));
 * const channel = new grpc.Client(`unix:${bridge.path}`, credentials);
 * ```
 */
export async function bridge(dir: string, name: string, open: () => Promise<Duplex>): Promise<Bridge> {
  const path = `${dir}/m-${name}-${++bridgeCount}.sock`;
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.pause();
    open().then(
      (stream) => {
        splice(socket, stream);
        socket.resume();
      },
      () => socket.destroy(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  return {
    path,
    close: () => {
      server.close();
      for (const socket of sockets) socket.destroy();
      removeSocket(path);
    },
  };
}

/** The plugin side of a multiplexed connection: the socket the host dials, and the session once it has. */
export interface MuxListener {
  /** The socket announced in the handshake line. */
  readonly path: string;
  /** Opens a stream to the host (throws before the host has connected). */
  open(): Duplex;
  /** Ends the session and removes the socket. */
  close(): void;
}

/**
 * Listens on `path` for the host's one connection (as go-plugin's server
 * muxer) and runs a yamux server session on it; `onStream` gets each stream
 * the host opens.
 *
 * @example
 * ```ts ignore
 * const listener = await listenMux("/tmp/plugin1", (stream) => spliceToSocket(stream, grpcSocket));
 * ```
 */
export async function listenMux(path: string, onStream: (stream: Duplex) => void): Promise<MuxListener> {
  const { YamuxSession } = await import("./yamux.ts");
  let session: InstanceType<typeof YamuxSession> | undefined;
  const server: Server = createServer((socket) => {
    if (session) {
      socket.destroy();
      return;
    }
    session = new YamuxSession(socket, "server", onStream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  return {
    path,
    open: () => {
      if (!session) throw new Error("the host has not connected yet");
      return session.open();
    },
    close: () => {
      server.close();
      session?.close();
      removeSocket(path);
    },
  };
}
