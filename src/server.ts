/**
 * The plugin side: {@linkcode serve} makes a Deno program a go-plugin (gRPC)
 * plugin that a Tether host or any Go go-plugin host can launch.
 *
 * @module
 */

import { Broker, pluginBrokerSocket } from "./broker.ts";
import { TetherError } from "./errors.ts";
import { Health, HealthCheckResponse_ServingStatus } from "./gen/grpc/health/v1/health_pb.ts";
import { GRPCBroker } from "./gen/plugin/grpc_broker_pb.ts";
import { GRPCController } from "./gen/plugin/grpc_controller_pb.ts";
import {
  assertCookie,
  chooseVersion,
  formatHandshakeLine,
  type HandshakeConfig,
  offeredVersions,
  PluginEnv,
  protocolEnv,
} from "./handshake.ts";
import { formatHclogJson, type Logger } from "./logs.ts";
import { GrpcStatus } from "./errors.ts";
import { parseGoBool } from "./gobool.ts";
import { registration, type ServiceRegistration } from "./service.ts";
import { withReflection } from "./reflection.ts";
import { type ReattachConfig, reattachInstructions } from "./reattach.ts";
import { listenMux, type MuxListener, spliceToSocket } from "./mux.ts";
import { StdioCapture } from "./stdio.ts";
import { PERMISSION_REQUEST_FIELD } from "./audit.ts";
import { type Endpoint, removeSocket, type RunningServer, startServer, type TlsMaterial } from "./listen.ts";
import { warmTlsRuntime } from "./tls_warmup.ts";

/** What a plugin's services can use while they run. */
export interface PluginContext {
  /** The plugin side of go-plugin's broker: serve or dial extra connections by id. */
  readonly broker: Broker;
  /** The plugin's log (hclog JSON on stderr by default, which the host parses). */
  readonly logger: Logger;
  /** The protocol version agreed with the host. */
  readonly protocolVersion: number;
}

/** The services of one protocol version, or a function that makes them once the broker exists. */
export type ServiceList =
  | readonly ServiceRegistration[]
  | ((plugin: PluginContext) => readonly ServiceRegistration[]);

/** Manual TLS for the plugin's server (go-plugin's TLSProvider): no certificate goes in the handshake line. */
export interface ServeTlsOptions {
  /** The plugin's server certificate, PEM. */
  readonly certPem: string;
  /** Its private key, PEM. */
  readonly keyPem: string;
  /** The CA(s) the host's client certificate must chain to, PEM. */
  readonly caPem: string;
}

/** How to serve a plugin. */
export interface ServeOptions {
  /** Cookie and version(s); must match the host's. */
  readonly handshake: HandshakeConfig;
  /** The services for `handshake.protocolVersion`. */
  readonly services?: ServiceList;
  /** Services per protocol version, when the plugin speaks several (go-plugin's VersionedPlugins). */
  readonly versionedServices?: Readonly<Record<number, ServiceList>>;
  /** Where the plugin logs. Default: hclog JSON lines on the real stderr, all levels, as Go plugins do. */
  readonly logger?: Logger;
  /** Manual TLS; without it, AutoMTLS is used when the host sends `PLUGIN_CLIENT_CERT`, else plaintext. */
  readonly tls?: ServeTlsOptions;
  /** Exit the process once the host asks for Shutdown or goes away. Default `true`. */
  readonly exitOnShutdown?: boolean;
  /**
   * Debug (reattach) mode, as go-plugin's ServeConfig.Test and Terraform's
   * `Debug: true`: started by hand (a debugger, a supervisor), not by a host.
   * No cookie check, no handshake line: the reattach configuration is printed
   * on stdout instead, in go-plugin's JSON and as `TF_REATTACH_PROVIDERS`.
   * Serves until SIGINT/SIGTERM or a host's Shutdown, across host restarts.
   * Plaintext unless `tls` is given (no host hands over a certificate).
   */
  readonly debug?: boolean | DebugServeOptions;
}

/** Options of {@linkcode ServeOptions.debug}. */
export interface DebugServeOptions {
  /** The key of the `TF_REATTACH_PROVIDERS` entry (default `plugin`), e.g. `registry.terraform.io/acme/kv`. */
  readonly provider?: string;
}

/** A running plugin server. */
export interface PluginServer {
  /** Where it listens. */
  readonly endpoint: Endpoint;
  /** The protocol version agreed with the host. */
  readonly protocolVersion: number;
  /** Resolves when the server has stopped. */
  readonly done: Promise<void>;
  /** Stops serving, removes the socket and restores stdout/stderr. */
  stop(): Promise<void>;
  /** In debug mode: how a host reattaches (also printed on stdout). */
  readonly reattachConfig?: ReattachConfig;
}

const NOT_A_PLUGIN = "This binary is a plugin. These are not meant to be executed directly.\n" +
  "Please execute the program that consumes these plugins, which will\n" +
  "load any plugins automatically\n";

const MISCONFIGURED = "Misconfigured ServeConfig given to serve this plugin: no magic cookie\n" +
  "key or value was set. Please notify the plugin author and report\n" +
  "this as a bug.\n";

const encoder = new TextEncoder();

/** Where a multiplexed plugin's extra sockets go: beside its announced one. */
function muxDir(listen: { socketPath?: string; socketDir?: string }): string {
  return listen.socketPath
    ? listen.socketPath.slice(0, listen.socketPath.lastIndexOf("/"))
    : listen.socketDir ?? "/tmp";
}

function randomDigits(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** The signals that end a plugin served in debug mode. */
const DEBUG_STOP_SIGNALS: readonly Deno.Signal[] = ["SIGINT", "SIGTERM"];

/** Reads an environment variable that is not part of the protocol; "not granted" counts as unset. */
function optionalEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/**
 * The variables a go-plugin host may set that serve() must be able to read:
 * one it may not read could hold the host's certificate (so TLS would quietly
 * be off), the cookie, the versions or where to listen. `TETHER_PLUGIN_SOCKET`
 * is not among them: without it the plugin listens in `PLUGIN_UNIX_SOCKET_DIR`,
 * and a Tether host that assigned a socket refuses any other.
 *
 * @example
 * ```ts
 * import { protocolEnvNames } from "./server.ts";
 * console.log(protocolEnvNames("KV_PLUGIN", false).join(",")); // KV_PLUGIN,PLUGIN_PROTOCOL_VERSIONS,...
 * ```
 */
export function protocolEnvNames(cookieKey: string, manualTls: boolean): string[] {
  return protocolEnv(cookieKey).filter((name) =>
    name !== PluginEnv.tetherSocketPath && !(manualTls && name === PluginEnv.clientCert)
  );
}

/**
 * Reads the protocol variables. Those Deno does not let this process read
 * (`NotCapable`) are listed in `denied` instead of being taken as unset.
 */
function readProtocolEnv(names: readonly string[]): { values: Map<string, string>; denied: string[] } {
  const values = new Map<string, string>();
  const denied: string[] = [];
  for (const name of names) {
    try {
      const value = Deno.env.get(name);
      if (value !== undefined) values.set(name, value);
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
        denied.push(name);
      } else throw error;
    }
  }
  return { values, denied };
}

/**
 * Why serve() refuses to start when it may not read protocol variables.
 *
 * @example
 * ```ts
 * import { deniedEnvMessage } from "./server.ts";
 * console.log(deniedEnvMessage(["PLUGIN_CLIENT_CERT"])); // "... Run it with --allow-env=PLUGIN_CLIENT_CERT ..."
 * ```
 */
export function deniedEnvMessage(denied: readonly string[]): string {
  const tls = denied.includes(PluginEnv.clientCert)
    ? ` Without ${PluginEnv.clientCert} it cannot tell whether the host asked for mTLS, and serving ` +
      "plaintext then would turn TLS off without anyone noticing."
    : "";
  return `this plugin may not read the environment variable${denied.length > 1 ? "s" : ""} ` +
    `${denied.join(", ")}, which the go-plugin protocol needs: refusing to start.${tls} ` +
    `Run it with --allow-env=${denied.join(",")} (or a wider grant such as --allow-env=<cookie>,PLUGIN_*). ` +
    "A Tether host grants these itself.";
}

function fail(capture: StdioCapture, message: string): never {
  capture.realStderr(encoder.encode(message));
  Deno.exit(1);
}

/**
 * Serves a plugin: checks the cookie, picks the protocol version, listens on
 * a unix socket (TCP on Windows), prints the handshake line, and serves the
 * given services next to go-plugin's health, controller, broker and stdio
 * services. After the handshake, `console` and stdout/stderr writes go to the
 * host through GRPCStdio. SIGINT is ignored (the host decides when the plugin
 * stops); the plugin exits on Shutdown, or when its host process is gone.
 *
 * Run directly (without a host), it prints go-plugin's "This binary is a
 * plugin" message and exits with status 1.
 *
 * @example
 * ```ts ignore
 * import { registration, serve } from "@tether/tether/plugin";
 * import { Adder } from "./gen/tether/kv/v1/kv_pb.ts";
 *
 * await serve({
 *   handshake: { protocolVersion: 1, magicCookieKey: "ADDER_PLUGIN", magicCookieValue: "hello" },
 *   services: [registration(Adder, { add: (req) => ({ sum: req.a + req.b }) })],
 * });
 * ```
 */
export async function serve(options: ServeOptions): Promise<PluginServer> {
  const capture = new StdioCapture();
  try {
    assertCookie(options.handshake);
  } catch {
    fail(capture, MISCONFIGURED);
  }
  const { magicCookieKey, magicCookieValue } = options.handshake;
  const logger: Logger = options.logger ?? {
    log: (record) =>
      capture.realStderr(encoder.encode(formatHclogJson({ timestamp: new Date(), ...record }))),
  };
  const { values: protocolValues, denied } = readProtocolEnv(protocolEnvNames(magicCookieKey, !!options.tls));
  if (denied.length > 0) {
    // Fail closed: an unreadable variable is not an unset one.
    logger.log({ level: "error", message: deniedEnvMessage(denied), fields: { denied } });
    Deno.exit(1);
  }
  const env = (name: string): string | undefined => protocolValues.get(name);
  const debug = options.debug ? (options.debug === true ? {} : options.debug) : undefined;
  // Debug mode is started by hand, never by a host: there is no cookie to check (go-plugin's Test mode).
  if (!debug && env(magicCookieKey) !== magicCookieValue) fail(capture, NOT_A_PLUGIN);

  const byVersion = new Map<number, ServiceList>();
  for (const [version, list] of Object.entries(options.versionedServices ?? {})) {
    byVersion.set(Number(version), list);
  }
  if (options.handshake.protocolVersion !== undefined && options.services) {
    byVersion.set(options.handshake.protocolVersion, options.services);
  }
  if (byVersion.size === 0) {
    const versions = offeredVersions(options.handshake);
    for (const version of versions) byVersion.set(version, options.services ?? []);
  }
  const protocolVersion = chooseVersion(
    env(PluginEnv.protocolVersions) ?? "",
    [...byVersion.keys()],
    (entry) =>
      capture.realStderr(encoder.encode(`server sent invalid plugin version ${JSON.stringify(entry)}`)),
  );

  let tls: TlsMaterial | undefined;
  let serverCertDer: Uint8Array | undefined;
  if (options.tls) {
    warmTlsRuntime();
    tls = { certPem: options.tls.certPem, keyPem: options.tls.keyPem, peerCaPem: options.tls.caPem };
  } else {
    const hostCertPem = env(PluginEnv.clientCert);
    if (hostCertPem) {
      // Off the main thread while the X.509 code loads, not in the host's first connection.
      warmTlsRuntime();
      // Loaded only for AutoMTLS: a plaintext plugin (SFTPGo's default) never loads the X.509 code.
      const { certificatePemToDer, generateCertificate } = await import("./mtls.ts");
      let hostCertDer: Uint8Array;
      try {
        hostCertDer = certificatePemToDer(hostCertPem);
      } catch (error) {
        logger.log({
          level: "error",
          // go-plugin goes on with an empty CA pool (every host refused); refusing to start says why.
          message: `cannot use the host's certificate (${PluginEnv.clientCert}): refusing to start`,
          fields: { error: String(error) },
        });
        Deno.exit(1);
      }
      const own = await generateCertificate();
      serverCertDer = own.certDer;
      tls = { certPem: own.certPem, keyPem: own.keyPem, peerCaPem: hostCertPem, pinnedPeerDer: hostCertDer };
    }
  }

  const windows = Deno.build.os === "windows";
  const socketPath = optionalEnv(PluginEnv.tetherSocketPath);
  const listen = {
    network: windows ? "tcp" as const : "unix" as const,
    socketPath,
    // A Tether host names the socket; only otherwise is TMPDIR consulted (and a sandbox may not grant it).
    socketDir: socketPath ? undefined : env(PluginEnv.unixSocketDir) || optionalEnv("TMPDIR") || "/tmp",
    socketGroup: env(PluginEnv.unixSocketGroup),
    minPort: Number(env(PluginEnv.minPort) ?? 0) || 0,
    maxPort: Number(env(PluginEnv.maxPort) ?? 0) || 0,
  };
  const broker = new Broker(
    tls,
    { ...listen, socketPath: undefined, socketDir: listen.socketDir ?? env(PluginEnv.unixSocketDir) },
    socketPath ? (id) => pluginBrokerSocket(socketPath, id) : undefined,
  );
  const context: PluginContext = { broker, logger, protocolVersion };
  const list = byVersion.get(protocolVersion) ?? [];
  const appServices = typeof list === "function" ? list(context) : list;

  const stopped = Promise.withResolvers<void>();
  let running: RunningServer | undefined;
  let muxListener: MuxListener | undefined;
  let stopping: Promise<void> | undefined;
  const exitOnShutdown = options.exitOnShutdown ?? true;
  const ignoreSigint = () => {};
  const debugStop = () => void stop();
  // Set once serving for a host (debug mode has no parent to watch).
  const watch: { parent?: ReturnType<typeof setInterval> } = {};

  const stop = (): Promise<void> => {
    stopping ??= (() => {
      clearInterval(watch.parent);
      for (const signal of debug ? DEBUG_STOP_SIGNALS : []) {
        try {
          Deno.removeSignalListener(signal, debugStop);
        } catch {
          // Not registered on this platform.
        }
      }
      try {
        Deno.removeSignalListener("SIGINT", ignoreSigint);
      } catch {
        // Not registered on this platform.
      }
      capture.uninstall();
      if (exitOnShutdown) {
        // Exit without shutting the gRPC servers down: their GOAWAY to an idle HTTP/2 session can crash a Deno
        // host (denoland/deno#36788). The process exit closes the connections; only the socket files need removing.
        for (const endpoint of [running?.endpoint, ...broker.endpoints]) {
          if (endpoint?.network === "unix") removeSocket(endpoint.address);
        }
        muxListener?.close();
        stopped.resolve();
        Deno.exit(0);
      }
      broker.close();
      muxListener?.close();
      running?.stop();
      stopped.resolve();
      return Promise.resolve();
    })();
    return stopping;
  };

  const internal: ServiceRegistration[] = [
    registration(Health, {
      check: (request) => {
        if (request.service !== "" && request.service !== "plugin") {
          throw new TetherError("rpc", `unknown service ${request.service}`, {
            status: GrpcStatus.NOT_FOUND,
          });
        }
        return { status: HealthCheckResponse_ServingStatus.SERVING };
      },
      watch: async function* (_request, call) {
        yield { status: HealthCheckResponse_ServingStatus.SERVING };
        await new Promise((resolve) => call.signal.addEventListener("abort", resolve, { once: true }));
      },
    }),
    registration(GRPCController, {
      shutdown: () => {
        // Answer first; go-plugin hosts do not wait for the answer, but a clean one is kinder.
        setTimeout(() => void stop(), 10);
        return {};
      },
    }),
    registration(GRPCBroker, {
      startStream: (requests) => {
        (async () => {
          try {
            for await (const info of requests) broker.receive(info);
          } catch {
            // The host closed the stream; the broker closes with the server.
          }
        })();
        return broker.outgoing;
      },
    }),
    capture.service(),
  ];

  // go-plugin appends "|true" whenever the variable is set, and multiplexes when it parses as true.
  const muxRequested = !debug && Boolean(env(PluginEnv.multiplexGrpc));
  const mux = muxRequested && listen.network === "unix" &&
    parseGoBool(env(PluginEnv.multiplexGrpc) ?? "") === true;
  try {
    // Multiplexed, gRPC listens on a socket of its own and the announced one carries the yamux session.
    running = await startServer(
      withReflection([...internal, ...appServices]),
      mux ? { ...listen, socketPath: undefined, socketDir: muxDir(listen) } : listen,
      tls,
    );
    if (mux) {
      const grpcSocket = running.endpoint.address;
      muxListener = await listenMux(
        listen.socketPath ?? `${muxDir(listen)}/plugin${randomDigits()}`,
        (stream) => {
          const id = broker.takeKnocked();
          if (id === undefined) spliceToSocket(stream, grpcSocket);
          else broker.serveStream(id, stream);
        },
      );
      const opened = muxListener;
      broker.useMux({ open: () => opened.open(), dir: muxDir(listen) });
    }
  } catch (error) {
    logger.log({ level: "error", message: "plugin could not listen", fields: { error: String(error) } });
    Deno.exit(1);
  }
  const announced = muxListener ? { network: "unix" as const, address: muxListener.path } : running.endpoint;

  if (debug) {
    const reattachConfig: ReattachConfig = {
      network: running.endpoint.network,
      address: running.endpoint.address,
      protocolVersion,
      pid: Deno.pid,
      test: true,
    };
    capture.realStdout(encoder.encode(reattachInstructions(reattachConfig, debug.provider ?? "plugin")));
    reportPermissionRequests(logger);
    // Ended by hand: stop (removing the sockets) on the signals a terminal sends; no parent to watch.
    for (const signal of DEBUG_STOP_SIGNALS) {
      try {
        Deno.addSignalListener(signal, debugStop);
      } catch {
        // Not available on this platform.
      }
    }
    return { endpoint: running.endpoint, protocolVersion, done: stopped.promise, stop, reattachConfig };
  }

  capture.realStdout(encoder.encode(formatHandshakeLine({
    appVersion: protocolVersion,
    network: announced.network,
    address: announced.address,
    protocol: "grpc",
    serverCertDer,
    // Multiplexing over TCP (Windows) is not implemented: "false" gets a Go host's ErrGRPCBrokerMuxNotSupported.
    multiplex: muxRequested ? listen.network === "unix" : undefined,
  })));
  capture.install();
  reportPermissionRequests(logger);

  try {
    Deno.addSignalListener("SIGINT", ignoreSigint);
  } catch {
    // SIGINT cannot be caught here; nothing to ignore.
  }
  // A host that died (even by SIGKILL) must not leave its plugins behind.
  const parent = Deno.ppid;
  watch.parent = setInterval(() => {
    // No log line here: with the host gone, stderr is a broken pipe.
    if (Deno.ppid !== parent) void stop();
  }, 1000);

  return {
    endpoint: announced,
    protocolVersion,
    done: stopped.promise,
    stop,
  };
}

/**
 * Deno answers `Deno.permissions.request` itself (denied under --no-prompt)
 * without telling the permission broker, so serve() reports such calls in
 * the plugin's log for the host. This is cooperative: code that runs before
 * serve() or restores the originals can hide its requests.
 */
function reportPermissionRequests(logger: Logger): void {
  const permissions = Object.getPrototypeOf(Deno.permissions) as Record<string, unknown>;
  // Deno's request() calls this.requestSync(): report only the outermost call, once.
  let depth = 0;
  for (const method of ["request", "requestSync"] as const) {
    const original = permissions[method] as (descriptor: Deno.PermissionDescriptor) => unknown;
    if (typeof original !== "function") continue;
    permissions[method] = function (this: Deno.Permissions, descriptor: Deno.PermissionDescriptor) {
      if (depth > 0) return original.call(this, descriptor);
      let result: unknown;
      depth++;
      try {
        result = original.call(this, descriptor);
      } finally {
        depth--;
      }
      const report = (status: Deno.PermissionStatus) => {
        if (status.state !== "granted") {
          const d = descriptor as unknown as Record<string, unknown>;
          const target = d.path ?? d.host ?? d.variable ?? d.kind ?? d.command ?? d.url;
          logger.log({
            level: "warn",
            message: "plugin asked for a permission",
            fields: {
              [PERMISSION_REQUEST_FIELD]: {
                name: descriptor.name,
                ...(target === undefined ? {} : { target: String(target) }),
              },
            },
          });
        }
        return status;
      };
      return result instanceof Promise ? result.then(report) : report(result as Deno.PermissionStatus);
    };
  }
}
