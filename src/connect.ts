/**
 * Connecting to a plugin, apart from launching it: the TLS material for its
 * handshake, the gRPC channel (with a diagnosis when it cannot connect), and
 * go-plugin's internal streams (broker, stdio). Used both for a plugin a
 * runner launched and for one the host reattaches to.
 *
 * @module
 */

import type { PluginChannel } from "./channel.ts";
import { ConnectivityState } from "./h2channel.ts";
import { connect as tlsConnect } from "node:tls";
import { connect as netConnect } from "node:net";
import { TetherError } from "./errors.ts";
import type { HandshakeLine } from "./handshake.ts";
import { deniedFlag, permissionOr } from "./launch.ts";
import type { CertificateBundle } from "./mtls.ts";
import { certificateDerToPem, sameBytes } from "./mtls.ts";
import type { Endpoint, TlsMaterial } from "./listen.ts";

/** Certificates for manual TLS, when the plugin's TLS is configured out of band (go-plugin's TLSProvider). */
export interface ManualTlsOptions {
  /** The host's client certificate, PEM. */
  readonly certPem: string;
  /** The host's private key, PEM. */
  readonly keyPem: string;
  /** The CA(s) the plugin's server certificate must chain to, PEM. */
  readonly caPem: string;
  /** The name the plugin's certificate must carry (default `localhost`). */
  readonly serverName?: string;
}

/**
 * The host's TLS material for a plugin: AutoMTLS (the plugin's certificate
 * from its handshake line, pinned), manual TLS, or none (plaintext).
 *
 * @example
 * ```ts
 * import { tlsForPlugin } from "./connect.ts";
 * console.log(tlsForPlugin("kv", undefined, undefined, { serverCertDer: undefined })); // undefined
 * ```
 *
 * @throws {TetherError} `tls` when AutoMTLS is on and the plugin sent no (valid) certificate.
 */
export function tlsForPlugin(
  plugin: string,
  certificate: CertificateBundle | undefined,
  manual: ManualTlsOptions | undefined,
  line: Pick<HandshakeLine, "serverCertDer">,
): TlsMaterial | undefined {
  if (certificate) {
    if (!line.serverCertDer) {
      throw new TetherError(
        "tls",
        `plugin ${plugin} sent no certificate although AutoMTLS is on: it does not support AutoMTLS ` +
          "(go-plugin >= 1.0 does); set autoMTLS: false to talk plaintext, or configure manual TLS",
        { plugin },
      );
    }
    let peerCaPem: string;
    try {
      peerCaPem = certificateDerToPem(line.serverCertDer);
    } catch (error) {
      throw new TetherError("tls", `plugin ${plugin}: ${(error as Error).message}`, { plugin, cause: error });
    }
    return {
      certPem: certificate.certPem,
      keyPem: certificate.keyPem,
      peerCaPem,
      pinnedPeerDer: line.serverCertDer,
      serverName: "localhost",
    };
  }
  if (manual) {
    return {
      certPem: manual.certPem,
      keyPem: manual.keyPem,
      peerCaPem: manual.caPem,
      serverName: manual.serverName ?? "localhost",
    };
  }
  return undefined;
}

/** What {@linkcode waitConnected} needs to know about the plugin. */
export interface ConnectContext {
  /** The plugin's name. */
  readonly plugin: string;
  /** Where it listens. */
  readonly endpoint: Endpoint;
  /** TLS material, or none for plaintext. */
  readonly tls: TlsMaterial | undefined;
  /** Give up at this time (ms since the epoch). */
  readonly deadline: number;
  /** Resolves when the plugin is known to be gone (its process ended). */
  readonly gone: Promise<unknown>;
  /** Whether it is gone. */
  isGone(): boolean;
  /** The last lines of its stderr, for errors. */
  stderrHint(): string;
  /** Explains a connection Deno refused (a missing grant), else `undefined`. */
  connectError?(cause: unknown, what: string): TetherError | undefined;
}

/**
 * Waits until the channel is connected, or fails fast with the TLS or socket error.
 *
 * @example
 * ```ts ignore
 * await waitConnected(channel, { plugin: "kv", endpoint, tls, deadline, gone, isGone, stderrHint });
 * ```
 *
 * @throws {TetherError} `tls`, `handshake`, `exited` or `start_timeout`.
 */
export async function waitConnected(channel: PluginChannel, context: ConnectContext): Promise<void> {
  const raw = channel.getChannel();
  const { plugin, endpoint, tls } = context;
  while (true) {
    const state = raw.getConnectivityState(true);
    if (state === ConnectivityState.READY) return;
    if (state === ConnectivityState.TRANSIENT_FAILURE || state === ConnectivityState.SHUTDOWN) {
      const reason = await diagnose(context);
      throw new TetherError(
        tls ? "tls" : "handshake",
        `could not connect to plugin ${plugin} at ${endpoint.address}: ${reason}`,
        { plugin },
      );
    }
    const changed = await Promise.race([
      new Promise<boolean>((resolve) =>
        raw.watchConnectivityState(state, context.deadline, (error) => resolve(!error))
      ),
      context.gone.then(() => false),
    ]);
    if (!changed) {
      if (context.isGone()) {
        throw new TetherError(
          "exited",
          `plugin ${plugin} exited before we could connect${context.stderrHint()}`,
          { plugin },
        );
      }
      throw new TetherError(
        "start_timeout",
        `timeout while connecting to plugin ${plugin} at ${endpoint.address}`,
        { plugin },
      );
    }
  }
}

type ProbeSocket = { destroy(): void; on(event: "error", listener: (error: Error) => void): unknown };

/** Opens one raw connection to say why gRPC could not connect (grpc-js only says "unavailable"). */
function diagnose(context: ConnectContext): Promise<string> {
  const { endpoint, tls } = context;
  const colon = endpoint.address.lastIndexOf(":");
  const where = endpoint.network === "unix"
    ? { path: endpoint.address }
    : { host: endpoint.address.slice(0, colon), port: Number(endpoint.address.slice(colon + 1)) };
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (reason: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket?.destroy();
      resolve(reason);
    };
    const timer = setTimeout(() => finish("no answer within 2 s"), 2000);
    let socket: ProbeSocket | undefined;
    try {
      socket = probe(where, tls, finish);
    } catch (cause) {
      // Deno refuses the connection itself (e.g. no --allow-net for the socket): say which flag.
      done = true;
      clearTimeout(timer);
      const what = `could not connect to plugin ${context.plugin} at ${endpoint.address}`;
      reject(context.connectError?.(cause, what) ?? permissionOr(cause, what, deniedFlag(cause)));
      return;
    }
    socket.on("error", (error: Error) => finish(`${tls ? "TLS" : "connection"} failed: ${error.message}`));
  });
}

/** Opens the probe connection; throws synchronously when Deno itself refuses it (a missing permission). */
function probe(
  where: { path: string } | { host: string; port: number },
  tls: TlsMaterial | undefined,
  finish: (reason: string) => void,
): ProbeSocket {
  if (tls) {
    const secure = tlsConnect({
      ...where,
      cert: tls.certPem,
      key: tls.keyPem,
      ca: tls.peerCaPem,
      servername: tls.serverName ?? "localhost",
      ALPNProtocols: ["h2"],
      // Diagnosis only (nothing is sent): look at the certificate even when it would be refused, so the
      // message can say it is not the pinned one rather than just "self-signed certificate".
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    }, () => {
      const peer = secure.getPeerCertificate();
      finish(
        tls.pinnedPeerDer && peer?.raw && !sameBytes(new Uint8Array(peer.raw), tls.pinnedPeerDer)
          ? "the plugin's TLS certificate is not the one from its handshake line: refusing to talk to it"
          : !secure.authorized
          ? `TLS verification failed: ${secure.authorizationError}`
          : "TLS works on a probe connection, but gRPC could not connect",
      );
    });
    return secure;
  }
  return netConnect(
    where,
    () => finish("a plain connection works, but gRPC could not connect (does the plugin expect TLS?)"),
  );
}
