/**
 * A lean gRPC channel on one `node:http2` session. The host's calls (unary and
 * all three kinds of stream, `src/calls.ts`) run on {@linkcode H2Call}
 * directly, without grpc-js, which this module does not load. It also has
 * grpc-js's `Channel` interface, so a `grpc.Client` can run on it (its
 * `channelFactoryOverride` option; `channelOptions` in `src/channel.ts`). What
 * is left out is the machinery a plugin connection never uses and every call
 * pays for: name resolution, load balancing, retries, channelz, call filters
 * and per-call timers beyond the deadline. The bytes on the wire are plain gRPC over HTTP/2, as grpc-js
 * and grpc-go send them (5-byte message prefix, `grpc-status` trailers).
 *
 * One connection, dialled when first needed; when it is lost the channel goes
 * back to IDLE and the next call dials again (as grpc-js does after GOAWAY).
 *
 * @module
 */

import type * as grpc from "@grpc/grpc-js";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";
import type { Buffer } from "node:buffer";
import type { PeerCertificate } from "node:tls";
import {
  type DecoderAccounting,
  decodeStatusMessage,
  formatTimeout,
  frame,
  MessageDecoder,
} from "./grpc_wire.ts";
import { DEFAULT_MAX_RECEIVE_MESSAGE_BYTES, giveReceiveBytes, takeReceiveBytes } from "./receive_limits.ts";

type Deadline = Date | number;
/**
 * A call's final status. `metadata` is a grpc-js `Metadata` when the call was
 * started by grpc-js ({@linkcode H2Call.start}), and `undefined` on the lean
 * path ({@linkcode H2Call.startPlain}), which never loads grpc-js.
 */
export interface CallStatus {
  /** The gRPC status code. */
  code: number;
  /** The status message. */
  details: string;
  /** Trailers, when the caller asked for them. */
  metadata: grpc.Metadata | undefined;
}
/** What a call reports to whoever started it. */
export interface CallListener {
  /** The response headers (only on calls started with metadata). */
  onReceiveMetadata(metadata: grpc.Metadata): void;
  /** One message, after a {@linkcode H2Call.startRead}. */
  onReceiveMessage(message: Buffer): void;
  /** The final status, after every message read before it. */
  onReceiveStatus(status: CallStatus): void;
}
type MetadataClass = typeof grpc.Metadata;

/**
 * grpc-js's connectivity states, by value: the host's default module graph
 * does not load grpc-js, so its enum is not at hand.
 */
export const ConnectivityState = {
  IDLE: 0,
  CONNECTING: 1,
  READY: 2,
  TRANSIENT_FAILURE: 3,
  SHUTDOWN: 4,
} as const;
/** One of {@linkcode ConnectivityState}'s values. */
export type ConnectivityStateValue = typeof ConnectivityState[keyof typeof ConnectivityState];

/** How to reach the server and what TLS to speak; plaintext (h2c) without `tls`. */
export interface H2ChannelConfig {
  /** grpc-js target: `unix:/path` or `host:port`. */
  readonly target: string;
  /** The `:authority` sent (go-plugin servers ignore it; grpc-js sends `localhost` here). */
  readonly authority: string;
  /**
   * Largest message accepted from the server (default 128 MiB,
   * `DEFAULT_MAX_RECEIVE_MESSAGE_BYTES`); a larger announced length ends the
   * call with RESOURCE_EXHAUSTED before any of it is held.
   */
  readonly maxMessageBytes?: number;
  /** Whose answers these are (e.g. `plugin "kv"`), named in RESOURCE_EXHAUSTED statuses with what to raise. */
  readonly peer?: string;
  /** TLS client settings, or none for plaintext. */
  readonly tls?: {
    readonly ca: string;
    readonly key: string;
    readonly cert: string;
    readonly servername: string;
    readonly checkServerIdentity: (hostname: string, cert: PeerCertificate) => Error | undefined;
  };
}

const { IDLE, CONNECTING, READY, TRANSIENT_FAILURE, SHUTDOWN } = ConnectivityState;
// gRPC status codes used here (grpc-js's `status` enum, by value).
const CANCELLED = 1,
  UNKNOWN = 2,
  DEADLINE_EXCEEDED = 4,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  UNAUTHENTICATED = 16;
const USER_AGENT = "grpc-node-js/1.14.7 tether-h2";
// HTTP/2 flow-control credit we grant the server: large answers (a 7 MiB schema) then arrive without a
// WINDOW_UPDATE round trip per 64 KiB. Credit, not memory: messages are read as they come.
const STREAM_WINDOW = 8 << 20;
const SESSION_WINDOW = 32 << 20;
/** How long a cancelled stream's reset waits for the server to acknowledge a zero window ({@linkcode H2Channel.resetQuietly}). */
const QUIESCE_LIMIT_MS = 2000;

/**
 * grpc-js `Channel` on one `node:http2` session.
 *
 * @example
 * ```ts ignore
 * import * as grpc from "@grpc/grpc-js";
 * import { H2Channel } from "./h2channel.ts";
 * const client = new grpc.Client("unix:/tmp/plugin1", grpc.credentials.createInsecure(), {
 *   channelFactoryOverride: (target) => new H2Channel({ target, authority: "localhost" }),
 * });
 * ```
 */
export class H2Channel {
  readonly #config: H2ChannelConfig;
  #state: ConnectivityStateValue = IDLE;
  #session: http2.ClientHttp2Session | undefined;
  /** The session being set up, destroyed if the channel closes meanwhile. */
  #dialing: http2.ClientHttp2Session | undefined;
  #waiting: ((session: http2.ClientHttp2Session | Error) => void)[] = [];
  #watchers = new Set<{ state: ConnectivityStateValue; done: (error?: Error) => void }>();
  #lastError: Error | undefined;
  #callNumber = 0;
  /** Sessions waiting for a SETTINGS ACK before resetting cancelled streams ({@linkcode resetQuietly}). */
  #quieting = new WeakMap<
    http2.ClientHttp2Session,
    { resets: (() => void)[]; timer: ReturnType<typeof setTimeout> }
  >();

  /** How every call's decoder takes from the process's receive budget: one object for the channel's calls. */
  readonly accounting: DecoderAccounting;
  /** Request headers of calls without metadata or deadline, by path: the same object each time (http2 copies it). */
  readonly #plainHeaders = new Map<string, Readonly<http2.OutgoingHttpHeaders>>();

  /** A channel that dials `config.target` when first used. */
  constructor(config: H2ChannelConfig) {
    this.#config = config;
    const peer = config.peer;
    this.accounting = { peer, take: (bytes) => takeReceiveBytes(bytes, peer) };
  }

  /**
   * The request headers of a call to `path`: the constant ones (made once per path), then `metadata`, then
   * `grpc-timeout` when there is a deadline.
   */
  requestHeaders(
    path: string,
    metadata: http2.OutgoingHttpHeaders,
    timeout: string | undefined,
  ): Readonly<http2.OutgoingHttpHeaders> {
    let plain = this.#plainHeaders.get(path);
    if (!plain) {
      plain = Object.freeze({
        ":method": "POST",
        ":scheme": this.scheme,
        ":path": path,
        ":authority": this.#config.authority,
        "content-type": "application/grpc",
        "te": "trailers",
        "user-agent": USER_AGENT,
        "grpc-accept-encoding": "identity",
      });
      // Paths are the methods of the services a host uses: few, and fixed by its code.
      this.#plainHeaders.set(path, plain);
    }
    let empty = true;
    for (const _ in metadata) {
      empty = false;
      break;
    }
    if (empty && timeout === undefined) return plain;
    // Metadata first, as before: a caller's key never replaces a transport header.
    const headers: http2.OutgoingHttpHeaders = { ...metadata, ...plain };
    if (timeout !== undefined) headers["grpc-timeout"] = timeout;
    return headers;
  }

  /** Closes the connection once its calls have finished; new calls fail with UNAVAILABLE. */
  close(): void {
    if (this.#state === SHUTDOWN) return;
    this.#setState(SHUTDOWN);
    const session = this.#session;
    this.#session = undefined;
    session?.close();
    this.#dialing?.destroy();
    this.#dialing = undefined;
    this.#flushWaiting(new Error("channel closed"));
  }

  /**
   * This channel: an H2Channel is its own client handle (`PluginChannel` in
   * `src/channel.ts`), in the place of a grpc-js `Client` around it.
   */
  getChannel(): this {
    return this;
  }

  /** The target this channel dials. */
  getTarget(): string {
    return this.#config.target;
  }

  /** The connectivity state; dials when IDLE and `tryToConnect`. */
  getConnectivityState(tryToConnect: boolean): ConnectivityStateValue {
    if (tryToConnect && this.#state === IDLE) this.#dial();
    return this.#state;
  }

  /** Calls back once the state differs from `currentState`, or with an error at `deadline`. */
  watchConnectivityState(
    currentState: ConnectivityStateValue,
    deadline: Date | number,
    callback: (error?: Error) => void,
  ): void {
    if (this.#state !== currentState) {
      queueMicrotask(() => callback());
      return;
    }
    const ms = Math.min(Number(deadline) - Date.now(), 2 ** 31 - 1);
    const watcher = {
      state: currentState,
      done: (error?: Error) => {
        clearTimeout(timer);
        this.#watchers.delete(watcher);
        callback(error);
      },
    };
    const timer = setTimeout(
      () => watcher.done(new Error("Deadline passed without connectivity state change")),
      Math.max(ms, 0),
    );
    this.#watchers.add(watcher);
  }

  /** No channelz for this channel: a fixed reference. */
  getChannelzRef(): ReturnType<grpc.Channel["getChannelzRef"]> {
    return { kind: "channel", id: 0, name: this.#config.target } as unknown as ReturnType<
      grpc.Channel["getChannelzRef"]
    >;
  }

  /** A call on this channel; it starts when grpc-js calls `start`. */
  createCall(method: string, deadline: Deadline): H2Call {
    return new H2Call(this, method, deadline, ++this.#callNumber);
  }

  /** Largest message accepted from the server (default 128 MiB, `DEFAULT_MAX_RECEIVE_MESSAGE_BYTES`). */
  get maxMessageBytes(): number {
    return this.#config.maxMessageBytes ?? DEFAULT_MAX_RECEIVE_MESSAGE_BYTES;
  }

  /** Whose answers these are, as named in RESOURCE_EXHAUSTED statuses. */
  get peer(): string | undefined {
    return this.#config.peer;
  }

  /** Headers common to every call. */
  get authority(): string {
    return this.#config.authority;
  }

  /** Scheme of the `:scheme` pseudo-header. */
  get scheme(): string {
    return this.#config.tls ? "https" : "http";
  }

  /** The connected session, dialling if needed; an Error when the connection cannot be made. */
  session(): http2.ClientHttp2Session | Promise<http2.ClientHttp2Session | Error> {
    if (this.#session && this.#state === READY) return this.#session;
    if (this.#state === SHUTDOWN) return Promise.resolve(new Error("channel closed"));
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      if (this.#state === IDLE || this.#state === TRANSIENT_FAILURE) this.#dial();
    });
  }

  #setState(state: ConnectivityStateValue): void {
    if (this.#state === state) return;
    this.#state = state;
    for (const watcher of [...this.#watchers]) if (watcher.state !== state) watcher.done();
  }

  #flushWaiting(result: http2.ClientHttp2Session | Error): void {
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const resolve of waiting) resolve(result);
  }

  #dial(): void {
    this.#setState(CONNECTING);
    const { target, tls: tlsConfig } = this.#config;
    const where = target.startsWith("unix:") ? { path: target.slice(5) } : hostPort(target);
    let socket: net.Socket;
    try {
      socket = tlsConfig
        ? tls.connect({
          ...where,
          ca: tlsConfig.ca,
          key: tlsConfig.key,
          cert: tlsConfig.cert,
          servername: tlsConfig.servername,
          ALPNProtocols: ["h2"],
          checkServerIdentity: tlsConfig.checkServerIdentity,
        })
        : net.connect(where);
    } catch (error) {
      this.#failed(error as Error);
      return;
    }
    const session = http2.connect(`${this.scheme}://${this.#config.authority}`, {
      createConnection: () => socket,
      settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
    });
    this.#dialing = session;
    let connected = false;
    // READY once the server's SETTINGS arrived: a peer that accepts the socket but does not speak HTTP/2
    // never gets there (and the start fails as with grpc-js).
    session.once("remoteSettings", () => {
      connected = true;
      if (this.#dialing === session) this.#dialing = undefined;
      if (this.#state === SHUTDOWN) {
        session.close();
        return;
      }
      try {
        session.setLocalWindowSize(SESSION_WINDOW);
      } catch {
        // Not every runtime implements it; the default window still works, only slower for large answers.
      }
      this.#session = session;
      this.#setState(READY);
      this.#flushWaiting(session);
    });
    let failed = false;
    const lost = (error?: Error) => {
      if (this.#dialing === session) this.#dialing = undefined;
      if (!connected) {
        // Socket and session report one failure several times; only the first counts, and a later dial's
        // waiters are not this one's.
        if (failed) return;
        failed = true;
        session.destroy();
        this.#failed(error ?? new Error("connection closed before HTTP/2 was set up"));
        return;
      }
      this.lost(session);
    };
    session.on("error", (error: Error) => lost(error));
    session.once("goaway", () => lost());
    session.once("close", () => lost());
    // The socket's own errors (TLS refusal, ECONNREFUSED) reach the session as "error" too, but a socket
    // that fails before http2 takes it over must not throw unhandled.
    socket.on("error", (error: Error) => lost(error));
  }

  /**
   * Resets `stream` with CANCEL once no DATA for it can still be on the way.
   *
   * Why not at once: the nghttp2 inside Deno's `node:http2` counts each DATA
   * frame that arrives for a stream it no longer knows as a "glitch", and ends
   * the whole connection with GOAWAY(ENHANCE_YOUR_CALM) after about a thousand
   * (nghttp2 1.67 and 1.68; 1.69 stopped counting them). A plugin streaming
   * small messages has far more than that in flight when the reset leaves, so
   * cancelling one stream took the broker's and stdio's streams down with it
   * (docs/protocol.md, "Cancelling a stream"). So first SETTINGS sets every
   * stream's window to 0: the server sends no DATA after applying it, and all it
   * sent before arrives ahead of its SETTINGS ACK, on a stream still open. On
   * the ACK the reset goes out with nothing behind it, and the window comes
   * back. Other streams wait one round trip; a server that never acknowledges
   * gets the reset after {@linkcode QUIESCE_LIMIT_MS} anyway.
   */
  resetQuietly(session: http2.ClientHttp2Session, stream: http2.ClientHttp2Stream): void {
    const reset = () => {
      if (!stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    };
    if (session.closed || session.destroyed) return reset();
    let quiet = this.#quieting.get(session);
    if (quiet) {
      // The zero window already asked for covers this stream too: the server applies it to every stream.
      quiet.resets.push(reset);
      return;
    }
    const resets = [reset];
    const done = () => {
      if (this.#quieting.get(session) !== quiet) return;
      clearTimeout(quiet!.timer);
      this.#quieting.delete(session);
      for (const resetOne of resets) resetOne();
      if (session.closed || session.destroyed) return;
      try {
        session.settings({ initialWindowSize: STREAM_WINDOW });
      } catch {
        // Too many SETTINGS unacknowledged: the peer is not reading, the connection is going anyway.
      }
    };
    quiet = { resets, timer: setTimeout(done, QUIESCE_LIMIT_MS) };
    this.#quieting.set(session, quiet);
    try {
      session.settings({ initialWindowSize: 0 }, done);
    } catch {
      done();
    }
  }

  /** `session` is gone: the channel goes IDLE (the next call dials again). */
  lost(session: http2.ClientHttp2Session): void {
    if (this.#session !== session) return;
    this.#session = undefined;
    if (this.#state === READY) this.#setState(IDLE);
  }

  #failed(error: Error): void {
    this.#lastError = error;
    if (this.#state === SHUTDOWN) return;
    this.#setState(TRANSIENT_FAILURE);
    this.#flushWaiting(error);
  }

  /** Why the last dial failed, if it did. */
  get lastError(): Error | undefined {
    return this.#lastError;
  }
}

function hostPort(target: string): { host: string; port: number } {
  const colon = target.lastIndexOf(":");
  return { host: target.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(target.slice(colon + 1)) };
}

function statusFromRst(code: number): [number, string] {
  switch (code) {
    case http2.constants.NGHTTP2_REFUSED_STREAM:
      return [UNAVAILABLE, "Stream refused by server"];
    case http2.constants.NGHTTP2_CANCEL:
      return [CANCELLED, "Call cancelled"];
    case http2.constants.NGHTTP2_ENHANCE_YOUR_CALM:
      return [RESOURCE_EXHAUSTED, "Bandwidth exhausted or memory limit exceeded"];
    case http2.constants.NGHTTP2_INADEQUATE_SECURITY:
      return [PERMISSION_DENIED, "Protocol not secure enough"];
    default:
      return [INTERNAL, `Received RST_STREAM with code ${code}`];
  }
}

function statusFromHttp(code: number): number {
  switch (code) {
    case 400:
      return INTERNAL;
    case 401:
      return UNAUTHENTICATED;
    case 403:
      return PERMISSION_DENIED;
    case 404:
      return UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return UNAVAILABLE;
    default:
      return UNKNOWN;
  }
}

/**
 * One gRPC call on an {@linkcode H2Channel}: grpc-js's `Call` interface.
 *
 * @example
 * ```ts ignore
 * import { H2Channel } from "./h2channel.ts";
 * const call = new H2Channel({ target: "unix:/tmp/plugin1", authority: "localhost" })
 *   .createCall("/plugin.GRPCController/Shutdown", Infinity);
 * call.startPlain({}, {
 *   onReceiveMetadata() {},
 *   onReceiveMessage(message) {},
 *   onReceiveStatus(status) {},
 * });
 * ```
 */
export class H2Call {
  readonly #channel: H2Channel;
  readonly #method: string;
  readonly #deadline: Deadline;
  readonly #number: number;
  #listener: CallListener | undefined;
  #stream: http2.ClientHttp2Stream | undefined;
  #session: http2.ClientHttp2Session | undefined;
  #cancelled = false;
  #pendingWrites: { data: Buffer; callback?: (error?: Error | null) => void }[] = [];
  #halfClosed = false;
  #reads = 0;
  #messages: Buffer[] = [];
  #status: CallStatus | undefined;
  #ended = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #decoder: MessageDecoder;
  /** Bytes of this call's answers given back to the receive budget (as messages were handed over). */
  #given = 0;
  #httpStatus = 0;
  #withMetadata = true;
  #trailerHeaders: http2.IncomingHttpHeaders | undefined;
  #Metadata: MetadataClass | undefined;
  /** Producers waiting for the stream to open or drain ({@linkcode H2Call.sendMessage}). */
  #drainWaiters: (() => void)[] = [];

  /** Made by {@linkcode H2Channel.createCall}. */
  constructor(channel: H2Channel, method: string, deadline: Deadline, number: number) {
    this.#channel = channel;
    this.#method = method;
    this.#deadline = deadline;
    this.#number = number;
    this.#decoder = new MessageDecoder(channel.maxMessageBytes, channel.accounting);
  }

  /** Sends the request headers (after dialling, if needed): grpc-js's entry, with its `Metadata`. */
  start(metadata: grpc.Metadata, listener: CallListener): void {
    // grpc-js is loaded whenever it calls this; its Metadata class comes with the argument, so this module
    // never imports grpc-js at run time.
    this.#Metadata = metadata.constructor as MetadataClass;
    this.startPlain(metadata.toHttp2Headers(), listener);
  }

  /**
   * {@linkcode start} with the request metadata as plain headers (lower-case
   * names, values as they go on the wire), for callers that never build a
   * grpc-js `Metadata`: the lean calls of `src/calls.ts`. Answers carry
   * metadata only after {@linkcode start} (`withMetadata` and grpc-js's class).
   */
  startPlain(metadata: http2.OutgoingHttpHeaders, listener: CallListener, withMetadata = true): void {
    this.#listener = listener;
    this.#withMetadata = withMetadata && this.#Metadata !== undefined;
    const deadline = Number(this.#deadline);
    let timeout: string | undefined;
    if (Number.isFinite(deadline)) {
      const ms = deadline - Date.now();
      if (ms <= 0) {
        queueMicrotask(() => this.#end(DEADLINE_EXCEEDED, "Deadline exceeded"));
        return;
      }
      timeout = formatTimeout(ms);
      this.#timer = setTimeout(
        () => this.cancelWithStatus(DEADLINE_EXCEEDED, "Deadline exceeded"),
        ms,
      );
    }
    const headers = this.#channel.requestHeaders(this.#method, metadata, timeout);
    const session = this.#channel.session();
    if (session instanceof Promise) {
      session.then((result) => {
        if (this.#ended) return;
        if (result instanceof Error) {
          this.#end(UNAVAILABLE, `No connection established. Last error: ${result.message}`);
        } else this.#open(result, headers);
      });
    } else this.#open(session, headers);
  }

  #open(session: http2.ClientHttp2Session, headers: Readonly<http2.OutgoingHttpHeaders>): void {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: false });
    } catch (error) {
      this.#end(UNAVAILABLE, `could not start the call: ${(error as Error).message}`);
      return;
    }
    this.#stream = stream;
    this.#session = session;
    stream.on("response", (responseHeaders) => {
      this.#httpStatus = Number(responseHeaders[":status"]);
      // Trailers-only answer: the status is in these headers.
      if (responseHeaders["grpc-status"] !== undefined) {
        this.#trailers(responseHeaders);
        return;
      }
      if (this.#withMetadata) {
        this.#listener?.onReceiveMetadata(this.#Metadata!.fromHttp2Headers(responseHeaders));
      }
    });
    // Trailers can arrive while DATA is still buffered in a paused stream: the status waits for "end".
    stream.on("trailers", (trailers) => this.#trailerHeaders = trailers);
    stream.on("end", () => {
      if (this.#trailerHeaders) this.#trailers(this.#trailerHeaders);
    });
    stream.on("data", (chunk: Buffer) => {
      // A cancelled call drains what is still on the way (resetQuietly) and drops it.
      if (this.#cancelled || this.#ended) return;
      const refused = this.#decoder.push(chunk, this.#messages);
      if (refused) {
        this.cancelWithStatus(...refused);
        return;
      }
      this.#deliver();
    });
    stream.on("drain", () => this.#wakeProducers());
    stream.on("error", () => {
      // Reported on "close" with the RST code or as a dropped connection.
    });
    stream.on("close", () => {
      if (this.#trailerHeaders) this.#trailers(this.#trailerHeaders);
      if (this.#status || this.#ended) return;
      const code = stream.rstCode ?? http2.constants.NGHTTP2_NO_ERROR;
      if (session.closed || session.destroyed) {
        // The connection went away under the call (the plugin died, or closed it).
        this.#channel.lost(session);
        this.#finish(UNAVAILABLE, "Connection dropped");
      } else if (code === http2.constants.NGHTTP2_CANCEL && Date.now() >= Number(this.#deadline)) {
        // A server whose deadline (our grpc-timeout) fired first resets the stream: the deadline is the cause,
        // as grpc-go's client reports it.
        this.#finish(DEADLINE_EXCEEDED, "Deadline exceeded");
      } else if (code !== http2.constants.NGHTTP2_NO_ERROR) {
        const [status, details] = statusFromRst(code);
        this.#finish(status, details);
      } else if (this.#httpStatus !== 0 && this.#httpStatus !== 200) {
        this.#finish(statusFromHttp(this.#httpStatus), `Received HTTP status code ${this.#httpStatus}`);
      } else {
        this.#finish(UNAVAILABLE, "Connection dropped");
      }
    });
    const writes = this.#pendingWrites;
    this.#pendingWrites = [];
    // A unary request: headers, one message and the end of the stream leave together.
    if (this.#halfClosed && writes.length === 1) {
      const { data, callback } = writes[0];
      if (callback) stream.end(data, () => callback());
      else stream.end(data);
      this.#wakeProducers();
      return;
    }
    for (const write of writes) stream.write(write.data, write.callback);
    if (this.#halfClosed) stream.end();
    if (!stream.writableNeedDrain) this.#wakeProducers();
  }

  #wakeProducers(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const wake of waiters) wake();
  }

  #trailers(trailers: http2.IncomingHttpHeaders): void {
    const raw = trailers["grpc-status"];
    const code = raw === undefined ? NaN : Number(raw);
    const details = typeof trailers["grpc-message"] === "string"
      ? decodeStatusMessage(trailers["grpc-message"])
      : "";
    const metadata = this.#Metadata &&
      (this.#withMetadata ? this.#Metadata.fromHttp2Headers(trailers) : new this.#Metadata());
    metadata?.remove("grpc-status");
    metadata?.remove("grpc-message");
    if (Number.isInteger(code) && code >= 0 && code <= 16) this.#finish(code, details, metadata);
    else this.#finish(UNKNOWN, `Received invalid status code from server: ${raw}`, metadata);
  }

  /** Records the final status; it reaches the listener after every message read before it. */
  #finish(code: number, details: string, metadata = this.#Metadata && new this.#Metadata()): void {
    if (this.#status) return;
    clearTimeout(this.#timer);
    this.#wakeProducers();
    this.#status = { code, details, metadata };
    this.#deliver();
  }

  #deliver(): void {
    while (this.#reads > 0 && this.#messages.length > 0) {
      this.#reads--;
      const message = this.#messages.shift()!;
      // Handed over: the caller holds it from here, not the receive budget.
      this.#given += message.length;
      giveReceiveBytes(message.length);
      this.#listener?.onReceiveMessage(message);
    }
    // Backpressure: a caller that reads slowly makes the server wait, nothing piles up here.
    if (this.#messages.length > 0 && this.#reads === 0) this.#stream?.pause();
    if (this.#status && this.#messages.length === 0 && !this.#ended) {
      this.#ended = true;
      // Whatever is still held (a message cut short, answers dropped by a cancel) goes back to the budget.
      const held = this.#decoder.takenBytes - this.#given;
      this.#given += held;
      giveReceiveBytes(held);
      this.#listener?.onReceiveStatus(this.#status);
    }
  }

  /** Ends the call now with this status (messages not yet read are dropped). */
  #end(code: number, details: string): void {
    this.#messages = [];
    if (this.#status) this.#deliver();
    else this.#finish(code, details);
  }

  /** Cancels the call: RST_STREAM(CANCEL) to the server, this status to the caller. */
  cancelWithStatus(status: number, details: string): void {
    if (this.#ended) return;
    const stream = this.#stream;
    this.#cancelled = true;
    if (stream && !stream.closed && this.#session) {
      // Read on (and drop) until the reset can leave with no DATA behind it.
      stream.resume();
      this.#channel.resetQuietly(this.#session, stream);
    }
    this.#end(status, details);
  }

  /** The target, as grpc-js reports a peer. */
  getPeer(): string {
    return this.#channel.getTarget();
  }

  /** Sends one (serialised) message. */
  sendMessageWithContext(context: { callback?: (error?: Error | null) => void }, message: Buffer): void {
    const data = frame(message);
    if (this.#stream) this.#stream.write(data, context.callback);
    else this.#pendingWrites.push({ data, callback: context.callback });
  }

  /**
   * Sends one (serialised) message; resolves when the caller may send the
   * next: at once while the stream takes data, else once it has opened or
   * drained (HTTP/2 flow control: a server that does not read makes the
   * producer wait), or once the call has ended (later messages go nowhere).
   */
  sendMessage(message: Buffer): Promise<void> {
    if (this.#status || this.#ended || this.#halfClosed) return Promise.resolve();
    this.sendMessageWithContext({}, message);
    if (this.#stream && !this.#stream.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Whether the call has its final status (the listener may not have it yet). */
  get finished(): boolean {
    return this.#status !== undefined;
  }

  /** Asks for the next message. */
  startRead(): void {
    this.#reads++;
    this.#stream?.resume();
    this.#deliver();
  }

  /** No more messages from this side. */
  halfClose(): void {
    if (this.#halfClosed) return;
    this.#halfClosed = true;
    if (this.#stream) this.#stream.end();
  }

  /** Calls are numbered per channel. */
  getCallNumber(): number {
    return this.#number;
  }

  /** Per-call credentials are not used on plugin connections. */
  setCredentials(): void {
    throw new Error("per-call credentials are not supported on a plugin connection");
  }

  /** No auth context is exposed. */
  getAuthContext(): null {
    return null;
  }
}
