/**
 * yamux framing (hashicorp/yamux's spec.md), the multiplexer go-plugin uses
 * for `PLUGIN_MULTIPLEX_GRPC`: many logical streams over one connection, each
 * a Node `Duplex` so it can be piped into a socket grpc-js dials or serves.
 * Written from the specification: 12-byte big-endian headers, odd stream ids
 * for the client and even for the server, per-stream 256 KiB windows, pings
 * answered, GoAway honoured.
 *
 * @module
 */

import { Duplex } from "node:stream";

const HEADER = 12;
/** The window each stream starts with (both directions). */
export const INITIAL_WINDOW = 256 * 1024;

const TYPE_DATA = 0;
const TYPE_WINDOW = 1;
const TYPE_PING = 2;
const TYPE_GO_AWAY = 3;

const SYN = 1;
const ACK = 2;
const FIN = 4;
const RST = 8;

/** The socket a session runs over: anything with Node's duplex events. */
export interface YamuxTransport {
  write(chunk: Uint8Array): boolean;
  on(event: "data", listener: (chunk: Uint8Array) => void): unknown;
  on(event: "close" | "end", listener: () => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
  destroy(): void;
}

function header(type: number, flags: number, id: number, length: number): Uint8Array {
  const bytes = new Uint8Array(HEADER);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, 0);
  view.setUint8(1, type);
  view.setUint16(2, flags);
  view.setUint32(4, id);
  view.setUint32(8, length);
  return bytes;
}

/**
 * One logical stream of a {@linkcode YamuxSession}.
 *
 * @example
 * ```ts ignore
 * const stream = session.open();
 * stream.write(new TextEncoder().encode("ping"));
 * stream.on("data", (chunk) => console.log(chunk));
 * ```
 */
export class YamuxStream extends Duplex {
  /** The stream id (odd: opened by the client side). */
  readonly id: number;
  readonly #session: YamuxSession;
  #sendWindow = INITIAL_WINDOW;
  /** Bytes received and delivered but not yet given back to the peer in a window update. */
  #unacked = 0;
  #synPending: number;
  #pending: { chunk: Uint8Array; callback: (error?: Error | null) => void } | undefined;
  #finSent = false;
  #finReceived = false;
  #reset = false;
  #paused = false;

  /** Made by the session. */
  constructor(session: YamuxSession, id: number, flags: number) {
    super({ allowHalfOpen: true });
    this.#session = session;
    this.id = id;
    this.#synPending = flags;
  }

  /** Flags owed on the next frame (SYN when opening, ACK when accepting). */
  #flags(): number {
    const flags = this.#synPending;
    this.#synPending = 0;
    return flags;
  }

  /** Sends the opening (SYN) or accepting (ACK) window update at once. */
  announce(): void {
    this.#session.send(header(TYPE_WINDOW, this.#flags(), this.id, 0));
  }

  override _write(chunk: Uint8Array, _encoding: string, callback: (error?: Error | null) => void): void {
    this.#pending = { chunk: new Uint8Array(chunk), callback };
    this.#flush();
  }

  #flush(): void {
    const pending = this.#pending;
    if (!pending) return;
    if (this.#reset) {
      this.#pending = undefined;
      pending.callback(new Error(`yamux stream ${this.id} was reset`));
      return;
    }
    while (pending.chunk.length > 0 && this.#sendWindow > 0) {
      const size = Math.min(pending.chunk.length, this.#sendWindow, 64 * 1024);
      const part = pending.chunk.subarray(0, size);
      pending.chunk = pending.chunk.subarray(size);
      this.#sendWindow -= size;
      this.#session.send(header(TYPE_DATA, this.#flags(), this.id, size), part);
    }
    if (pending.chunk.length === 0) {
      this.#pending = undefined;
      pending.callback();
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.#finSent && !this.#reset) {
      this.#finSent = true;
      this.#session.send(header(TYPE_WINDOW, this.#flags() | FIN, this.id, 0));
    }
    this.#maybeForget();
    callback();
  }

  override _read(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#giveBack();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.#reset && !(this.#finSent && this.#finReceived)) {
      this.#reset = true;
      this.#session.send(header(TYPE_WINDOW, this.#flags() | RST, this.id, 0));
    }
    this.#session.forget(this.id);
    callback(error);
  }

  /** Window back to the peer for what the reader took. */
  #giveBack(): void {
    if (this.#unacked === 0 || this.#reset || this.#finReceived) return;
    const delta = this.#unacked;
    this.#unacked = 0;
    this.#session.send(header(TYPE_WINDOW, this.#flags(), this.id, delta));
  }

  /** A frame for this stream arrived. */
  receive(type: number, flags: number, length: number, payload: Uint8Array | undefined): void {
    if (type === TYPE_WINDOW) {
      this.#sendWindow += length;
      this.#flush();
    } else if (payload && payload.length > 0) {
      this.#unacked += payload.length;
      if (this.push(payload)) {
        // Give back once half the window is used, so the peer never stalls.
        if (this.#unacked >= INITIAL_WINDOW / 2) this.#giveBack();
      } else {
        this.#paused = true;
      }
    }
    if (flags & RST) {
      this.#reset = true;
      this.#flush();
      this.destroy(new Error(`yamux stream ${this.id} was reset by the peer`));
      return;
    }
    if (flags & FIN && !this.#finReceived) {
      this.#finReceived = true;
      this.push(null);
      this.#maybeForget();
    }
  }

  #maybeForget(): void {
    if (this.#finSent && this.#finReceived) this.#session.forget(this.id);
  }

  /** The session ended: fail whatever is left. */
  abort(): void {
    if (this.destroyed) return;
    this.#reset = true;
    this.#flush();
    this.destroy(new Error(`yamux session closed (stream ${this.id})`));
  }
}

/**
 * A yamux session over one connection.
 *
 * @example
 * ```ts ignore
 * import { connect } from "node:net";
 * const session = new YamuxSession(connect({ path: "/tmp/mux.sock" }), "client", (stream) => stream.pipe(stream));
 * const stream = session.open();
 * ```
 */
export class YamuxSession {
  readonly #transport: YamuxTransport;
  readonly #streams = new Map<number, YamuxStream>();
  readonly #onStream: (stream: YamuxStream) => void;
  #nextId: number;
  #buffer = new Uint8Array(0);
  #closed = false;
  readonly #done = Promise.withResolvers<void>();

  /**
   * @param transport the connection
   * @param role `client` opens odd stream ids, `server` even ones
   * @param onStream receives each stream the peer opens
   */
  constructor(transport: YamuxTransport, role: "client" | "server", onStream: (stream: YamuxStream) => void) {
    this.#transport = transport;
    this.#nextId = role === "client" ? 1 : 2;
    this.#onStream = onStream;
    transport.on("data", (chunk) => this.#onData(chunk));
    transport.on("close", () => this.#end());
    transport.on("error", () => this.#end());
  }

  /** Resolves when the session has ended. */
  get done(): Promise<void> {
    return this.#done.promise;
  }

  /** Opens a stream (its SYN goes out at once). */
  open(): YamuxStream {
    if (this.#closed) throw new Error("yamux session is closed");
    const id = this.#nextId;
    this.#nextId += 2;
    const stream = new YamuxStream(this, id, SYN);
    this.#streams.set(id, stream);
    stream.announce();
    return stream;
  }

  /** Sends GoAway (normal termination) and closes the connection. */
  close(): void {
    if (this.#closed) return;
    this.send(header(TYPE_GO_AWAY, 0, 0, 0));
    this.#end();
  }

  /** Writes a frame (for the streams). */
  send(head: Uint8Array, payload?: Uint8Array): void {
    if (this.#closed) return;
    if (!payload) {
      this.#transport.write(head);
      return;
    }
    const frame = new Uint8Array(head.length + payload.length);
    frame.set(head);
    frame.set(payload, head.length);
    this.#transport.write(frame);
  }

  /** Drops a finished stream. */
  forget(id: number): void {
    this.#streams.delete(id);
  }

  #end(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const stream of this.#streams.values()) stream.abort();
    this.#streams.clear();
    this.#transport.destroy();
    this.#done.resolve();
  }

  #protocolError(): void {
    if (this.#closed) return;
    this.send(header(TYPE_GO_AWAY, 0, 0, 1));
    this.#end();
  }

  #onData(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    let offset = 0;
    while (joined.length - offset >= HEADER) {
      const view = new DataView(joined.buffer, joined.byteOffset + offset, HEADER);
      const version = view.getUint8(0);
      const type = view.getUint8(1);
      const flags = view.getUint16(2);
      const id = view.getUint32(4);
      const length = view.getUint32(8);
      if (version !== 0 || type > TYPE_GO_AWAY) return this.#protocolError();
      let payload: Uint8Array | undefined;
      if (type === TYPE_DATA) {
        if (joined.length - offset - HEADER < length) break;
        payload = joined.slice(offset + HEADER, offset + HEADER + length);
        offset += HEADER + length;
      } else {
        offset += HEADER;
      }
      this.#frame(type, flags, id, length, payload);
      if (this.#closed) return;
    }
    this.#buffer = joined.slice(offset);
  }

  #frame(type: number, flags: number, id: number, length: number, payload: Uint8Array | undefined): void {
    if (type === TYPE_PING) {
      if (flags & SYN) this.send(header(TYPE_PING, ACK, 0, length));
      return;
    }
    if (type === TYPE_GO_AWAY) {
      this.#end();
      return;
    }
    let stream = this.#streams.get(id);
    if (!stream) {
      if (!(flags & SYN)) return; // A late frame for a stream already gone.
      stream = new YamuxStream(this, id, ACK);
      this.#streams.set(id, stream);
      stream.announce();
      this.#onStream(stream);
    }
    stream.receive(type, flags, length, payload);
  }
}
