/**
 * The host side: {@linkcode PluginClient} launches a go-plugin (gRPC) plugin,
 * reads its handshake, connects with AutoMTLS, opens go-plugin's internal
 * streams (broker, stdio) and hands out typed service clients.
 *
 * @module
 */

import type { DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { connect as tlsConnect } from "node:tls";
import { connect as netConnect } from "node:net";
import { Broker } from "./broker.ts";
import { GrpcStatus, TetherError } from "./errors.ts";
import { Health, HealthCheckResponse_ServingStatus } from "./gen/grpc/health/v1/health_pb.ts";
import { GRPCBroker } from "./gen/plugin/grpc_broker_pb.ts";
import { GRPCController } from "./gen/plugin/grpc_controller_pb.ts";
import { GRPCStdio } from "./gen/plugin/grpc_stdio_pb.ts";
import {
  type AddressPin,
  assertCookie,
  assertPinnedAddress,
  type HandshakeConfig,
  type HandshakeLine,
  offeredVersions,
  parseHandshakeLine,
  PluginEnv,
} from "./handshake.ts";
import { forEachLine } from "./lines.ts";
import { validateTimerMs } from "./timers.ts";
import { PERMISSION_REQUEST_FIELD, type PermissionEvent } from "./audit.ts";
import {
  deniedFlag,
  permissionOr,
  type PluginRuntime,
  type PreparedLaunch,
  prepareLaunch,
} from "./launch.ts";
import type { DenoPermissions } from "./permissions.ts";
import { type Logger, type LogRecord, silentLogger, StderrLogParser } from "./logs.ts";
import { certificateDerToPem, sameBytes, takeCertificate } from "./mtls.ts";
import { type CallOptions, createServiceClient, type ServiceClient } from "./rpc.ts";
import { drainStdio, type OutputSink } from "./stdio.ts";
import {
  channelCredentials,
  channelOptions,
  type Endpoint,
  grpcTarget,
  removeSocket,
  type TlsMaterial,
} from "./transport.ts";

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

/** How to launch and talk to one plugin. */
export interface PluginClientOptions {
  /** The executable to run (a path, or a name Deno resolves on PATH). */
  readonly cmd: string;
  /** Its arguments. */
  readonly args?: readonly string[];
  /** Cookie and protocol version(s); must match the plugin's. */
  readonly handshake: HandshakeConfig;
  /**
   * Negotiate mutual TLS with fresh certificates for this launch
   * (go-plugin's AutoMTLS). Default `true`. Ignored when {@linkcode PluginClientOptions.tls} is set.
   * `false` without `tls` means plaintext h2c, for plugins that cannot do TLS.
   */
  readonly autoMTLS?: boolean;
  /** Manual TLS instead of AutoMTLS. */
  readonly tls?: ManualTlsOptions;
  /**
   * Environment for the plugin. The plugin gets ONLY these plus the
   * handshake variables (cookie, `PLUGIN_*`), which win on conflict: the
   * host's own environment is not passed.
   */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory of the plugin. */
  readonly cwd?: string;
  /** Run the plugin as this user id (needs privileges). */
  readonly uid?: number;
  /** Run the plugin as this group id (needs privileges). */
  readonly gid?: number;
  /** How long the plugin has to print its handshake line (default 60000 ms, as go-plugin). */
  readonly startTimeoutMs?: number;
  /** How long {@linkcode PluginClient.kill} waits after Shutdown before SIGKILL (default 2000 ms). */
  readonly killTimeoutMs?: number;
  /**
   * Where each launch's private directory is made (default: the system temp
   * dir). The plugin's sockets, the host's broker sockets and the verified
   * copy of the plugin live in it; it is removed when the plugin ends.
   */
  readonly unixSocketDir?: string;
  /** Group allowed on the plugin's socket: `PLUGIN_UNIX_SOCKET_GROUP`. */
  readonly unixSocketGroup?: string;
  /**
   * How the plugin runs: `native` executes `cmd`; `deno` runs `cmd` (a
   * TypeScript/JavaScript entry or bundle) with `deno run` in a deny-by-default
   * sandbox. Default: `deno` for .ts/.js/.mjs/... files, else `native`.
   */
  readonly runtime?: PluginRuntime | "auto";
  /** What a `deno` plugin may do besides speaking the protocol. Default: nothing. */
  readonly permissions?: DenoPermissions;
  /** Explicit denials for a `deno` plugin; they win over grants. */
  readonly denyPermissions?: DenoPermissions;
  /** Opt-in for `run`, `ffi` and `all` grants, which escape the sandbox (logged as a warning). */
  readonly allowBroadPermissions?: boolean;
  /** deno.json (import map, lockfile) for an unbundled `deno` plugin. Not used with `sha256`. */
  readonly denoConfig?: string;
  /**
   * Expected SHA-256 (hex) of `cmd`. The file is read once, hashed, and the
   * verified bytes are what runs (a private copy), so it cannot be swapped
   * between check and exec. A `deno` plugin must then be one bundled file.
   */
  readonly sha256?: string;
  /**
   * Fixed directory for verified copies (`<dir>/<name>-<file>`) instead of the
   * launch's private directory. Note: Deno (2.9) refuses to write a file that
   * `--allow-run` names, so a host running a native plugin with `sha256`
   * needs unscoped `--allow-run` either way (see docs/security.md).
   */
  readonly integrityDir?: string;
  /** Receives each permission a `deno` plugin was denied (also logged at warn). */
  readonly onPermissionEvent?: (event: PermissionEvent) => void;
  /**
   * Accept a plugin that listens on TCP (`127.0.0.1` within `minPort..maxPort`).
   * Default `false`: only the unix socket this launch assigned is dialled (see
   * docs/protocol.md, "Address pinning").
   */
  readonly allowTcp?: boolean;
  /** TCP port range for plugins that use TCP (default 10000..25000, as go-plugin). */
  readonly minPort?: number;
  /** Upper end of the TCP port range. */
  readonly maxPort?: number;
  /** Receives the plugin's log (its stderr, parsed as go-plugin does) and Tether's own messages. */
  readonly logger?: Logger;
  /** Name used in logs and errors (default: the basename of `cmd`). */
  readonly name?: string;
  /** Receives what the plugin writes to stdout after its handshake (via GRPCStdio). */
  readonly stdout?: OutputSink;
  /** Receives what the plugin writes to stderr outside its log (via GRPCStdio). */
  readonly stderr?: OutputSink;
}

/** How a plugin process ended. */
export interface PluginExit {
  /** Exit code (128 + signal number when killed by a signal). */
  readonly code: number;
  /** The signal that killed it, if one did. */
  readonly signal: Deno.Signal | null;
  /** Whether Tether killed it (as opposed to it exiting or crashing on its own). */
  readonly killed: boolean;
}

const STDERR_TAIL_LINES = 20;

function basename(path: string): string {
  return path.replace(/[\\/]+$/, "").split(/[\\/]/).pop() ?? path;
}

function delay(ms: number): { promise: Promise<void>; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * One plugin process and the gRPC connection to it.
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { KV } from "./gen/tether/kv/v1/kv_pb.ts";
 *
 * await using client = new PluginClient({
 *   cmd: "./kvplugin",
 *   handshake: { protocolVersion: 1, magicCookieKey: "TETHER_KV_PLUGIN", magicCookieValue: "kv-7d3f2a" },
 * });
 * await client.start();
 * const kv = client.dispense(KV);
 * await kv.put({ key: "greeting", value: new TextEncoder().encode("hello") });
 * console.log((await kv.get({ key: "greeting" })).found); // true
 * ```
 */
export class PluginClient implements AsyncDisposable {
  readonly #options: PluginClientOptions;
  readonly #logger: Logger;
  readonly #name: string;
  #starting: Promise<void> | undefined;
  #startFailed = false;
  #killing: Promise<void> | undefined;
  #child: Deno.ChildProcess | undefined;
  #launch: PreparedLaunch | undefined;
  #exit: PluginExit | undefined;
  #killedByUs = false;
  #exitedOnItsOwn = false;
  #channel: grpc.Client | undefined;
  readonly #serviceClients = new Map<DescService, unknown>();
  #broker: Broker | undefined;
  #endpoint: Endpoint | undefined;
  #line: HandshakeLine | undefined;
  #background: Promise<unknown>[] = [];
  readonly #stderrTail: string[] = [];
  readonly #exited: PromiseWithResolvers<PluginExit> = Promise.withResolvers();
  readonly #onUnload = () => {
    // The host is going away without kill(): do not leave the plugin behind.
    try {
      this.#child?.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  };

  /** Describes the plugin; nothing runs until {@linkcode PluginClient.start}. */
  constructor(options: PluginClientOptions) {
    assertCookie(options.handshake);
    offeredVersions(options.handshake);
    validateTimerMs(options.startTimeoutMs, "startTimeoutMs");
    validateTimerMs(options.killTimeoutMs, "killTimeoutMs");
    this.#options = options;
    this.#logger = options.logger ?? silentLogger;
    this.#name = options.name ?? basename(options.cmd);
  }

  /** The plugin's name in logs and errors. */
  get name(): string {
    return this.#name;
  }

  /** Resolves when the plugin process has ended (after {@linkcode PluginClient.start} spawned it). */
  get exited(): Promise<PluginExit> {
    return this.#exited.promise;
  }

  /** Whether the plugin process has ended. */
  get hasExited(): boolean {
    return this.#exit !== undefined;
  }

  /** The process id, once started. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** The protocol version the plugin chose, once started. */
  get protocolVersion(): number | undefined {
    return this.#line?.appVersion;
  }

  /** Where the plugin listens, once started. */
  get endpoint(): Endpoint | undefined {
    return this.#endpoint;
  }

  /** The host side of go-plugin's broker, for callbacks in both directions. */
  get broker(): Broker {
    if (!this.#broker) throw this.#notStarted();
    return this.#broker;
  }

  /**
   * Launches the plugin and connects to it. Safe to call more than once: later
   * calls return the first call's promise.
   *
   * @throws {TetherError} `handshake`, `start_timeout`, `exited`, `tls`, `config` or `permission`.
   */
  start(): Promise<void> {
    // A failed start keeps answering with its own error; a killed client says it was killed.
    if (this.#starting && this.#startFailed) return this.#starting;
    if (this.#killing) return Promise.reject(new TetherError("closed", `plugin ${this.#name} was killed`));
    this.#starting ??= this.#start().catch(async (error) => {
      this.#startFailed = true;
      await this.kill();
      throw error;
    });
    return this.#starting;
  }

  async #start(): Promise<void> {
    const options = this.#options;
    const versions = offeredVersions(options.handshake);
    const manualTls = options.tls;
    const autoMTLS = !manualTls && (options.autoMTLS ?? true);
    const certificate = autoMTLS ? await takeCertificate() : undefined;

    const env: Record<string, string> = { ...options.env };
    env[options.handshake.magicCookieKey] = options.handshake.magicCookieValue;
    env[PluginEnv.minPort] = String(options.minPort ?? 10000);
    env[PluginEnv.maxPort] = String(options.maxPort ?? 25000);
    env[PluginEnv.protocolVersions] = versions.join(",");
    if (certificate) env[PluginEnv.clientCert] = certificate.certPem;
    else delete env[PluginEnv.clientCert];
    if (options.unixSocketGroup) env[PluginEnv.unixSocketGroup] = options.unixSocketGroup;
    // Tether never asks for broker multiplexing.
    delete env[PluginEnv.multiplexGrpc];

    const launch = await prepareLaunch({
      name: this.#name,
      cmd: options.cmd,
      args: options.args ?? [],
      runtime: options.runtime,
      sha256: options.sha256,
      permissions: options.permissions,
      denyPermissions: options.denyPermissions,
      allowBroadPermissions: options.allowBroadPermissions,
      denoConfig: options.denoConfig,
      integrityDir: options.integrityDir,
      privateDirBase: options.unixSocketDir,
      uid: options.uid,
      gid: options.gid,
      cookieKey: options.handshake.magicCookieKey,
      logger: this.#logger,
      onPermissionEvent: options.onPermissionEvent,
    });
    this.#launch = launch;
    Object.assign(env, launch.env);

    const startTimeoutMs = options.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + startTimeoutMs;
    this.#log("debug", "starting plugin", {
      runtime: launch.runtime,
      path: launch.cmd,
      args: launch.args,
      env: Object.keys(env),
    });
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(launch.cmd, {
        args: launch.args,
        env,
        clearEnv: true,
        cwd: options.cwd,
        uid: options.uid,
        gid: options.gid,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (cause) {
      throw this.#spawnError(cause);
    }
    this.#child = child;
    globalThis.addEventListener("unload", this.#onUnload);
    this.#background.push(
      child.status.then(async (status) => {
        this.#exit = { code: status.code, signal: status.signal, killed: this.#killedByUs };
        // A signal Tether did not send means it died on its own, even if kill() had started meanwhile.
        this.#exitedOnItsOwn = this.#killing === undefined || (status.signal !== null && !this.#killedByUs);
        globalThis.removeEventListener("unload", this.#onUnload);
        this.#log(this.#killedByUs || status.success ? "debug" : "error", "plugin process exited", {
          pid: child.pid,
          code: status.code,
          signal: status.signal,
        });
        this.#cleanupAfterExit();
        await this.#launch?.cleanup();
        this.#exited.resolve(this.#exit);
      }),
    );

    const stderrParser = new StderrLogParser();
    this.#background.push(
      forEachLine(child.stderr, (line) => {
        this.#stderrTail.push(line);
        if (this.#stderrTail.length > STDERR_TAIL_LINES) this.#stderrTail.shift();
        const record = stderrParser.parse(line);
        this.#logger.log({ ...record, fields: { plugin: this.#name, ...record.fields } });
        const request = record.fields[PERMISSION_REQUEST_FIELD] as
          | { name?: string; target?: string }
          | undefined;
        if (request && typeof request === "object") {
          options.onPermissionEvent?.({
            plugin: this.#name,
            permission: String(request.name ?? "unknown"),
            target: request.target === undefined ? null : String(request.target),
            allowed: false,
            time: record.timestamp ?? new Date(),
            source: "plugin",
          });
        }
      }).catch(() => {}),
    );

    const firstLine = Promise.withResolvers<string | undefined>();
    let firstLineSeen = false;
    this.#background.push(
      forEachLine(child.stdout, (line) => {
        if (!firstLineSeen) {
          firstLineSeen = true;
          firstLine.resolve(line);
        } else {
          this.#log("debug", "plugin wrote to stdout after its handshake", { line });
        }
      }).catch(() => {}).finally(() => firstLine.resolve(undefined)),
    );

    const timeout = delay(Math.max(0, deadline - Date.now()));
    let line: string | undefined;
    try {
      const outcome = await Promise.race([
        firstLine.promise.then((value) => ({ kind: "line" as const, value })),
        this.#exited.promise.then(() => ({ kind: "exit" as const })),
        timeout.promise.then(() => ({ kind: "timeout" as const })),
      ]);
      if (outcome.kind === "timeout") {
        throw new TetherError(
          "start_timeout",
          `timeout while waiting for plugin ${this.#name} to start: no handshake line within ${startTimeoutMs} ms` +
            this.#stderrHint(),
          { plugin: this.#name },
        );
      }
      if (outcome.kind === "exit" || outcome.value === undefined) {
        // Give the stderr reader a moment to collect the plugin's last words.
        await Promise.race([this.#exited.promise, delay(200).promise]);
        await delay(20).promise;
        const exit = this.#exit;
        throw new TetherError(
          "exited",
          `plugin ${this.#name} exited before we could connect` +
            (exit ? ` (exit code ${exit.code}${exit.signal ? `, signal ${exit.signal}` : ""})` : "") +
            (outcome.kind === "line" ? ": it closed stdout without printing a handshake line" : "") +
            this.#stderrHint(),
          { plugin: this.#name },
        );
      }
      line = outcome.value;
    } finally {
      timeout.cancel();
    }

    try {
      this.#line = parseHandshakeLine(line, versions);
    } catch (error) {
      if (error instanceof TetherError) {
        throw new TetherError(error.code, `plugin ${this.#name}: ${error.message}${this.#stderrHint()}`, {
          plugin: this.#name,
          cause: error.cause,
        });
      }
      throw error;
    }
    const handshake = this.#line;
    this.#endpoint = { network: handshake.network, address: handshake.address };
    this.#log("debug", "plugin address", {
      network: handshake.network,
      address: handshake.address,
      version: handshake.appVersion,
    });

    let tls: TlsMaterial | undefined;
    if (certificate) {
      if (!handshake.serverCertDer) {
        throw new TetherError(
          "tls",
          `plugin ${this.#name} sent no certificate although AutoMTLS is on: it does not support AutoMTLS ` +
            "(go-plugin >= 1.0 does); set autoMTLS: false to talk plaintext, or configure manual TLS",
          { plugin: this.#name },
        );
      }
      tls = {
        certPem: certificate.certPem,
        keyPem: certificate.keyPem,
        peerCaPem: this.#pluginCertPem(handshake.serverCertDer),
        pinnedPeerDer: handshake.serverCertDer,
        serverName: "localhost",
      };
    } else if (manualTls) {
      tls = {
        certPem: manualTls.certPem,
        keyPem: manualTls.keyPem,
        peerCaPem: manualTls.caPem,
        serverName: manualTls.serverName ?? "localhost",
      };
    }

    // Before anything dials it: a plugin must not point the host at another service.
    const pin: AddressPin = {
      plugin: this.#name,
      ...(launch.runtime === "deno" ? { socketPath: launch.socketPath } : { socketDir: launch.privateDir }),
      ...(options.allowTcp
        ? { tcpPorts: [options.minPort ?? 10000, options.maxPort ?? 25000] as const }
        : {}),
    };
    assertPinnedAddress(handshake, pin);
    const channel = new grpc.Client(grpcTarget(this.#endpoint), channelCredentials(tls), channelOptions(tls));
    this.#channel = channel;
    await this.#connect(channel, deadline, tls);

    const broker = new Broker(
      tls,
      {
        network: handshake.network,
        socketDir: launch.privateDir,
        minPort: options.minPort ?? 10000,
        maxPort: options.maxPort ?? 25000,
      },
      launch.hostBrokerSocket,
      (endpoint, id) =>
        assertPinnedAddress(
          endpoint,
          { ...pin, socketPath: undefined, socketDir: launch.privateDir },
          `broker connection ${id}`,
        ),
    );
    this.#broker = broker;
    const brokerStream = createServiceClient(channel, GRPCBroker).startStream(broker.outgoing);
    this.#background.push((async () => {
      try {
        for await (const info of brokerStream) broker.receive(info);
      } catch (error) {
        if (!this.#killing && !this.#exit) {
          this.#log("debug", "broker stream ended", { error: String(error) });
        }
      }
    })());
    this.#background.push(
      drainStdio(
        createServiceClient(channel, GRPCStdio),
        { stdout: options.stdout, stderr: options.stderr },
        this.#logger,
        { plugin: this.#name },
        () => this.#killing !== undefined || this.#exit !== undefined,
      ),
    );
  }

  /** Waits until the channel is connected, or fails fast with the TLS or socket error. */
  async #connect(channel: grpc.Client, deadline: number, tls: TlsMaterial | undefined): Promise<void> {
    const raw = channel.getChannel();
    while (true) {
      const state = raw.getConnectivityState(true);
      if (state === grpc.connectivityState.READY) return;
      if (state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN) {
        const reason = await this.#diagnose(tls);
        throw new TetherError(
          tls ? "tls" : "handshake",
          `could not connect to plugin ${this.#name} at ${this.#endpoint?.address}: ${reason}`,
          { plugin: this.#name },
        );
      }
      const changed = await Promise.race([
        new Promise<boolean>((resolve) =>
          raw.watchConnectivityState(state, deadline, (error) => resolve(!error))
        ),
        this.#exited.promise.then(() => false),
      ]);
      if (!changed) {
        if (this.#exit) {
          throw new TetherError(
            "exited",
            `plugin ${this.#name} exited before we could connect${this.#stderrHint()}`,
            {
              plugin: this.#name,
            },
          );
        }
        throw new TetherError(
          "start_timeout",
          `timeout while connecting to plugin ${this.#name} at ${this.#endpoint?.address}`,
          { plugin: this.#name },
        );
      }
    }
  }

  /** Opens one raw connection to say why gRPC could not connect (grpc-js only says "unavailable"). */
  #diagnose(tls: TlsMaterial | undefined): Promise<string> {
    const endpoint = this.#endpoint!;
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
      let socket:
        | { destroy(): void; on(event: "error", listener: (error: Error) => void): unknown }
        | undefined;
      try {
        socket = this.#probe(where, tls, finish);
      } catch (cause) {
        // Deno refuses the connection itself (e.g. no --allow-net for the socket): say which flag.
        done = true;
        clearTimeout(timer);
        const flag = deniedFlag(cause, this.#launch?.privateDir.replace(/\/[^/]+$/, ""));
        reject(permissionOr(cause, `could not connect to plugin ${this.#name} at ${endpoint.address}`, flag));
        return;
      }
      socket.on("error", (error: Error) => finish(`${tls ? "TLS" : "connection"} failed: ${error.message}`));
    });
  }

  /** Opens the probe connection; throws synchronously when Deno itself refuses it (a missing permission). */
  #probe(
    where: { path: string } | { host: string; port: number },
    tls: TlsMaterial | undefined,
    finish: (reason: string) => void,
  ): { destroy(): void; on(event: "error", listener: (error: Error) => void): unknown } {
    let socket: { destroy(): void; on(event: "error", listener: (error: Error) => void): unknown };
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
      socket = secure;
    } else {
      socket = netConnect(
        where,
        () => finish("a plain connection works, but gRPC could not connect (does the plugin expect TLS?)"),
      );
    }
    return socket;
  }

  /**
   * A typed client for a service the plugin serves.
   *
   * A call that fails because the plugin died rejects with code `exited`;
   * other failures reject with code `rpc` and the gRPC status.
   */
  dispense<S extends DescService>(service: S): ServiceClient<S> {
    if (!this.#channel || this.#killing) throw this.#notStarted();
    // Wrappers dispense on every call: build each service's client once per connection.
    let client = this.#serviceClients.get(service) as ServiceClient<S> | undefined;
    if (!client) {
      client = createServiceClient(this.#channel, service, (error) => this.#explain(error));
      this.#serviceClients.set(service, client);
    }
    return client;
  }

  async #explain(error: TetherError): Promise<TetherError> {
    if (
      error.status !== GrpcStatus.UNAVAILABLE && error.status !== GrpcStatus.INTERNAL &&
      error.status !== GrpcStatus.CANCELLED && error.status !== GrpcStatus.UNKNOWN
    ) return error;
    const connected =
      this.#channel?.getChannel().getConnectivityState(false) === grpc.connectivityState.READY;
    // An ordinary plugin error (Go sends plain errors as UNKNOWN) on a live connection needs no second look.
    if (connected && !this.#exit && !this.#killing) return error;
    if (!this.#exit) {
      // A dropped connection is seen a moment before the process is reaped.
      const wait = delay(250);
      await Promise.race([this.#exited.promise, wait.promise]);
      wait.cancel();
    }
    if (this.#killing && !(this.#exit && this.#exitedOnItsOwn)) {
      return new TetherError("closed", `plugin ${this.#name} was killed: ${error.message}`, {
        plugin: this.#name,
        status: error.status,
        cause: error,
      });
    }
    if (!this.#exit) return error;
    const exit = this.#exit;
    return new TetherError(
      exit.killed ? "closed" : "exited",
      exit.killed
        ? `plugin ${this.#name} was killed during the call (${error.message})`
        : `plugin ${this.#name} exited during the call (exit code ${exit.code}${
          exit.signal ? `, signal ${exit.signal}` : ""
        }): ${error.message}${this.#stderrHint()}`,
      { plugin: this.#name, status: error.status, cause: error },
    );
  }

  /**
   * Asks the plugin's health service whether `plugin` is SERVING.
   *
   * @throws {TetherError} `rpc` when it is not, or the call fails.
   */
  async ping(options: CallOptions = {}): Promise<void> {
    const health = this.dispense(Health);
    const response = await health.check({ service: "plugin" }, { timeoutMs: 5_000, ...options });
    if (response.status !== HealthCheckResponse_ServingStatus.SERVING) {
      throw new TetherError(
        "rpc",
        `plugin ${this.#name} is not serving (health status ${
          HealthCheckResponse_ServingStatus[response.status]
        })`,
        { plugin: this.#name, status: GrpcStatus.UNAVAILABLE },
      );
    }
  }

  /**
   * Stops the plugin as go-plugin does: close the broker, ask for Shutdown,
   * wait up to 2 s, then SIGKILL. Idempotent; resolves once the process is
   * reaped and its socket is gone.
   */
  kill(): Promise<void> {
    this.#killing ??= this.#kill();
    return this.#killing;
  }

  async #kill(): Promise<void> {
    this.#broker?.close();
    const child = this.#child;
    if (child && !this.#exit && this.#channel && this.#line) {
      try {
        await createServiceClient(this.#channel, GRPCController).shutdown({}, {
          timeoutMs: this.#options.killTimeoutMs ?? 2_000,
        });
      } catch {
        // The plugin may stop before it answers; go-plugin ignores this too.
      }
    }
    this.#channel?.close();
    if (child && !this.#exit) {
      // Without a connection there was no Shutdown to wait for (go-plugin kills at once too).
      const grace = delay(this.#line && this.#channel ? this.#options.killTimeoutMs ?? 2_000 : 0);
      await Promise.race([this.#exited.promise, grace.promise]);
      grace.cancel();
      if (!this.#exit) {
        this.#log("warn", "plugin failed to exit gracefully", { pid: child.pid });
        this.#killedByUs = true;
        try {
          child.kill("SIGKILL");
        } catch {
          // It exited in between.
        }
      }
    }
    await Promise.allSettled(this.#background);
    this.#cleanupAfterExit();
    await this.#launch?.cleanup();
  }

  /** Same as {@linkcode PluginClient.kill}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.kill();
  }

  #cleanupAfterExit(): void {
    // A crashed plugin leaves its socket behind (go-plugin #119).
    if (this.#endpoint?.network === "unix") removeSocket(this.#endpoint.address);
    if (this.#exit && !this.#killing) {
      this.#broker?.close();
      this.#channel?.close();
    }
  }

  #spawnError(cause: unknown): TetherError {
    const cmd = this.#options.cmd;
    if (cause instanceof Deno.errors.NotFound) {
      return new TetherError("config", `plugin ${this.#name}: command not found: ${cmd}`, {
        cause,
        plugin: this.#name,
      });
    }
    if (cause instanceof Deno.errors.NotCapable || cause instanceof Deno.errors.PermissionDenied) {
      // What was spawned: the Deno executable for a TypeScript plugin, the verified copy with sha256.
      const spawned = this.#launch?.cmd ?? cmd;
      let hint = " (check the file's execute permission and uid/gid)";
      if (cause instanceof Deno.errors.NotCapable) {
        hint = this.#launch?.runtime === "deno"
          ? `; run the host with --allow-run=${spawned} (the Deno executable that runs this TypeScript plugin)`
          : this.#options.sha256
          ? "; it is the verified copy, which the host writes, and Deno cannot grant running a file the host " +
            "may write: run the host with --allow-run (unscoped)"
          : `; run the host with --allow-run=${spawned}`;
      }
      return new TetherError("permission", `plugin ${this.#name}: not allowed to run ${spawned}${hint}`, {
        cause,
        plugin: this.#name,
      });
    }
    return new TetherError("exited", `plugin ${this.#name}: could not start ${cmd}: ${String(cause)}`, {
      cause,
      plugin: this.#name,
    });
  }

  #pluginCertPem(der: Uint8Array): string {
    try {
      return certificateDerToPem(der);
    } catch (error) {
      throw new TetherError("tls", `plugin ${this.#name}: ${(error as Error).message}`, {
        plugin: this.#name,
        cause: error,
      });
    }
  }

  #stderrHint(): string {
    if (this.#stderrTail.length === 0) return "";
    return `\nLast lines of the plugin's stderr:\n  ${this.#stderrTail.slice(-10).join("\n  ")}`;
  }

  #notStarted(): TetherError {
    return new TetherError(
      "closed",
      this.#killing
        ? `plugin ${this.#name} was killed`
        : `plugin ${this.#name} is not started: await start() first`,
      { plugin: this.#name },
    );
  }

  #log(level: LogRecord["level"], message: string, fields: Record<string, unknown> = {}): void {
    this.#logger.log({ level, message, fields: { plugin: this.#name, ...fields } });
  }
}
