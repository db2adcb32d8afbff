/**
 * go-plugin's GRPCBroker without multiplexing: either side can serve extra
 * gRPC services on a new listener under a numeric id (`acceptAndServe`) and
 * announce it over the broker stream; the other side waits for that
 * announcement and dials it (`dial`). Used for callbacks, e.g. a plugin
 * calling back into a service the host provides.
 *
 * @module
 */

import type { DescService } from "@bufbuild/protobuf";
import type { ChannelReceiveOptions, PluginChannel } from "./channel.ts";
import { TetherError } from "./errors.ts";
import { AsyncQueue } from "./queue.ts";
import { validateTimerMs } from "./timers.ts";
import { DEFAULT_MAX_RECEIVE_MESSAGE_BYTES, requestAccounting } from "./receive_limits.ts";
import { deserializer, serializer, type ServiceClient, type ServiceRegistration } from "./service.ts";
import type { MessageCodec } from "./calls.ts";
import {
  type Endpoint,
  type ListenOptions,
  type RunningServer,
  type ServerLimits,
  startServer,
  type TlsMaterial,
} from "./listen.ts";
import type { Duplex } from "node:stream";
import { type Bridge, bridge, type MuxLink, spliceToSocket } from "./mux.ts";

/**
 * Socket path of a plugin-side broker listener, next to the plugin's main
 * socket: a sandbox grants these paths up front.
 */
export function pluginBrokerSocket(mainSocket: string, id: number): string {
  return `${mainSocket.slice(0, mainSocket.lastIndexOf("/"))}/p-broker-${id}.sock`;
}

/** go-plugin's wait for a peer's connection info, and how long unclaimed info is kept. */
export const BROKER_TIMEOUT_MS = 5_000;

/** Announcements kept at most while nobody dials them; the oldest go first. */
const MAX_UNCLAIMED = 1024;

/** Knocks answered per broker at most: a peer that keeps knocking gets no more answers. */
const MAX_KNOCKS_ANSWERED = 64;

/** A connection dialed through the broker. */
export interface BrokerConnection {
  /** Where it is connected. */
  readonly endpoint: Endpoint;
  /** A typed client for a service the other side serves on this connection. */
  client<S extends DescService>(service: S): ServiceClient<S>;
  /** Closes the connection. */
  close(): void;
}

/** A `plugin.ConnInfo` message as the broker stream carries it. */
export interface ConnInfoInit {
  /** The broker id the connection is for. */
  serviceId: number;
  /** `unix` or `tcp`. */
  network: string;
  /** Socket path or `host:port`. */
  address: string;
  /** Multiplexing handshake; Tether refuses knocks. */
  knock?: { knock: boolean; ack: boolean; error: string };
}

/**
 * One side's broker. Tether creates it; plugins reach it as
 * `PluginContext.broker`, hosts as `PluginClient.broker`.
 *
 * @example
 * ```ts ignore
 * // In a plugin: serve an Adder for the host to dial, and return its id.
 * const id = broker.nextId();
 * await broker.acceptAndServe(id, [registration(Adder, { add: (r) => ({ sum: r.a + r.b }) })]);
 * // In the host: dial it.
 * const conn = await client.broker.dial(id);
 * const adder = conn.client(Adder);
 * ```
 */
export class Broker {
  #nextId = 0;
  readonly #outgoing = new AsyncQueue<ConnInfoInit>();
  readonly #known = new Map<number, { info: ConnInfoInit; timer: ReturnType<typeof setTimeout> }>();
  readonly #waiters = new Map<number, (info: ConnInfoInit) => void>();
  readonly #servers = new Set<RunningServer>();
  readonly #connections = new Set<PluginChannel>();
  #closed = false;
  readonly #tls: TlsMaterial | undefined;
  readonly #listen: ListenOptions;
  readonly #socketPathFor: ((id: number) => string) | undefined;
  readonly #checkPeer: ((endpoint: Endpoint, id: number) => void) | undefined;
  readonly #receive: ChannelReceiveOptions | undefined;
  readonly #serverLimits: ServerLimits | undefined;
  readonly #knocksAnswered = new Set<number>();
  #mux: MuxLink | undefined;
  /** Multiplexed: the private socket of each brokered server, by id. */
  readonly #muxServers = new Map<number, string>();
  /** Multiplexed: ids whose knock was acknowledged, each owed the next stream the peer opens. */
  readonly #knocked: number[] = [];
  readonly #knockWaiters = new Map<number, (info: ConnInfoInit) => void>();
  readonly #bridges = new Set<Bridge>();
  #dialLock: Promise<unknown> = Promise.resolve();

  /**
   * Makes a broker; Tether does this for each plugin connection.
   *
   * @param tls this side's TLS material (the same as its main connection's), or none for plaintext
   * @param listen where new listeners go (same rules as the plugin's main listener)
   * @param socketPathFor exact socket path per broker id, when a sandbox granted fixed paths
   * @param checkPeer throws for an address the peer announced that must not be dialled (the host pins
   *   a plugin's broker sockets to its launch directory)
   * @param receive what this side accepts, both on the connections it dials and as requests to the servers it
   *   serves (the host's `maxReceiveMessageBytes`, default 128 MiB, and its receive budget); without it (a
   *   plugin), go-plugin's 2^31-1 and no budget
   */
  constructor(
    tls: TlsMaterial | undefined,
    listen: ListenOptions,
    socketPathFor?: (id: number) => string,
    checkPeer?: (endpoint: Endpoint, id: number) => void,
    receive?: ChannelReceiveOptions,
  ) {
    this.#receive = receive;
    // The host's callbacks take the plugin's requests: they get the limit its answers get, not go-plugin's 2 GiB,
    // and count against the same receive budget.
    this.#serverLimits = receive && {
      maxReceiveMessageBytes: receive.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
      receiveAccounting: requestAccounting(receive.peer),
    };
    this.#tls = tls;
    this.#listen = listen;
    this.#socketPathFor = socketPathFor;
    this.#checkPeer = checkPeer;
  }

  /** The messages this side sends on the broker stream. */
  get outgoing(): AsyncIterable<ConnInfoInit> {
    return this.#outgoing;
  }

  /** A fresh id for {@linkcode Broker.acceptAndServe}; each side counts from 1. */
  nextId(): number {
    return ++this.#nextId;
  }

  /** Where this side's brokered servers listen. */
  get endpoints(): Endpoint[] {
    return [...this.#servers].map((server) => server.endpoint);
  }

  /**
   * Switches to go-plugin's multiplexed broker: brokered connections become
   * streams of the plugin connection, asked for with knocks instead of
   * announced addresses.
   */
  useMux(link: MuxLink): void {
    this.#mux = link;
  }

  /** Multiplexed: the id owed the stream the peer just opened, if a knock announced one. */
  takeKnocked(): number | undefined {
    return this.#knocked.shift();
  }

  /** Multiplexed: hands a stream the peer opened to the brokered server `id`. */
  serveStream(id: number, stream: Duplex): void {
    const path = this.#muxServers.get(id);
    if (!path) {
      stream.destroy();
      return;
    }
    spliceToSocket(stream, path);
  }

  #receiveKnock(info: ConnInfoInit): void {
    const id = info.serviceId;
    if (info.knock!.ack) {
      const waiter = this.#knockWaiters.get(id);
      this.#knockWaiters.delete(id);
      waiter?.(info);
      return;
    }
    let error = "";
    if (!this.#muxServers.has(id)) error = `no listener for id ${id}`;
    else if (this.#knocked.length >= MAX_KNOCKS_ANSWERED) error = `too many knocks waiting (id ${id})`;
    else this.#knocked.push(id);
    this.#outgoing.push({
      serviceId: id,
      network: "",
      address: "",
      knock: { knock: true, ack: true, error },
    });
  }

  /** Multiplexed dial: knock, wait for the acknowledgement, open a stream; one at a time, as go-plugin. */
  #knockThenOpen(id: number, timeoutMs: number): Promise<Duplex> {
    const run = async () => {
      this.#assertOpen();
      const ack = new Promise<ConnInfoInit>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.#knockWaiters.delete(id);
          reject(new TetherError("broker", `timeout waiting for multiplexing knock handshake on id ${id}`));
        }, timeoutMs);
        this.#knockWaiters.set(id, (info) => {
          clearTimeout(timer);
          resolve(info);
        });
      });
      this.#outgoing.push({
        serviceId: id,
        network: "",
        address: "",
        knock: { knock: true, ack: false, error: "" },
      });
      const answer = await ack;
      if (answer.knock?.error) {
        throw new TetherError("broker", `failed to knock for id ${id}: ${answer.knock.error}`);
      }
      return this.#mux!.open();
    };
    const result = this.#dialLock.then(run, run);
    this.#dialLock = result.catch(() => {});
    return result;
  }

  /** Takes in a message from the peer's broker stream. */
  receive(info: ConnInfoInit): void {
    if (info.knock?.knock && this.#mux) {
      this.#receiveKnock(info);
      return;
    }
    if (info.knock?.knock) {
      // Knocks only come with multiplexing, which Tether never asks for nor offers. A knock is
      // answered once per id with an ack carrying the refusal; acks are never answered, so two
      // brokers cannot keep knocking at each other.
      if (info.knock.ack || this.#knocksAnswered.has(info.serviceId)) return;
      if (this.#knocksAnswered.size >= MAX_KNOCKS_ANSWERED) return;
      this.#knocksAnswered.add(info.serviceId);
      this.#outgoing.push({
        serviceId: info.serviceId,
        network: "",
        address: "",
        knock: { knock: true, ack: true, error: "gRPC broker multiplexing is not supported by this side" },
      });
      return;
    }
    const waiter = this.#waiters.get(info.serviceId);
    if (waiter) {
      this.#waiters.delete(info.serviceId);
      waiter(info);
      return;
    }
    const old = this.#known.get(info.serviceId);
    if (old) {
      clearTimeout(old.timer);
      this.#known.delete(info.serviceId);
    }
    // Unclaimed announcements are kept only a while, and only so many: a peer flooding ids cannot grow this.
    if (this.#known.size >= MAX_UNCLAIMED) {
      const [oldestId, oldest] = this.#known.entries().next().value!;
      clearTimeout(oldest.timer);
      this.#known.delete(oldestId);
    }
    const timer = setTimeout(() => this.#known.delete(info.serviceId), BROKER_TIMEOUT_MS);
    this.#known.set(info.serviceId, { info, timer });
  }

  /**
   * Serves `services` on a new listener and tells the peer where, under `id`.
   * Resolves once the listener is up and the announcement is queued; the
   * server runs until the broker closes.
   */
  async acceptAndServe(id: number, services: readonly ServiceRegistration[]): Promise<Endpoint> {
    this.#assertOpen();
    let running: RunningServer;
    try {
      running = await startServer(
        services,
        { ...this.#listen, socketPath: this.#socketPathFor?.(id) },
        this.#tls,
        this.#serverLimits,
      );
    } catch (cause) {
      throw new TetherError("broker", `could not listen for brokered connection ${id}: ${String(cause)}`, {
        cause,
      });
    }
    this.#servers.add(running);
    if (this.#mux) {
      // Multiplexed: nothing is announced; the peer knocks for the id.
      this.#muxServers.set(id, running.endpoint.address);
      return running.endpoint;
    }
    this.#outgoing.push({
      serviceId: id,
      network: running.endpoint.network,
      address: running.endpoint.address,
    });
    return running.endpoint;
  }

  /**
   * Waits (up to 5 s, as go-plugin) for the peer to announce `id`, then
   * connects to it with this side's TLS settings.
   */
  async dial(id: number, timeoutMs = BROKER_TIMEOUT_MS): Promise<BrokerConnection> {
    this.#assertOpen();
    validateTimerMs(timeoutMs, "timeoutMs");
    if (this.#mux) return await this.#dialMux(id, timeoutMs);
    const info = await this.#waitFor(id, timeoutMs);
    if (info.network !== "unix" && info.network !== "tcp") {
      throw new TetherError(
        "broker",
        `brokered connection ${id} has unknown network ${JSON.stringify(info.network)}`,
      );
    }
    const endpoint: Endpoint = { network: info.network, address: info.address };
    this.#checkPeer?.(endpoint, id);
    return await this.#connect(endpoint);
  }

  async #dialMux(id: number, timeoutMs: number): Promise<BrokerConnection> {
    // grpc-js connects through a local socket; each connection it makes knocks and opens a stream.
    const local = await bridge(this.#mux!.dir, `d${id}`, () => this.#knockThenOpen(id, timeoutMs));
    this.#bridges.add(local);
    try {
      return await this.#connect({ network: "unix", address: local.path }, () => {
        this.#bridges.delete(local);
        local.close();
      });
    } catch (error) {
      this.#bridges.delete(local);
      local.close();
      throw error;
    }
  }

  /**
   * The one place a brokered connection's channel is made. The client side of gRPC is loaded here, when
   * first dialled: a plugin that only serves never loads grpc-js.
   */
  async #connect(endpoint: Endpoint, cleanup?: () => void): Promise<BrokerConnection> {
    // Neither module imports the protobuf runtime: in a bundle, lazily loaded code sharing it with the
    // eagerly loaded code is initialised out of order (deno bundle with protobuf-es's "sideEffects": false).
    const [{ openChannel }, { createClient }] = await Promise.all([
      import("./channel.ts"),
      import("./calls.ts"),
    ]);
    this.#assertOpen();
    const channel = openChannel(endpoint, this.#tls, this.#receive);
    this.#connections.add(channel);
    const codec = { serializer, deserializer } as MessageCodec;
    return {
      endpoint,
      client: (service) => createClient(channel, service, codec),
      close: () => {
        this.#connections.delete(channel);
        channel.close();
        cleanup?.();
      },
    };
  }

  #waitFor(id: number, timeoutMs: number): Promise<ConnInfoInit> {
    const known = this.#known.get(id);
    if (known) {
      clearTimeout(known.timer);
      this.#known.delete(id);
      return Promise.resolve(known.info);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(id);
        reject(
          new TetherError(
            "broker",
            `timeout waiting for connection info for broker id ${id} (${timeoutMs} ms): ` +
              "the other side must call acceptAndServe with that id",
          ),
        );
      }, timeoutMs);
      this.#waiters.set(id, (info) => {
        clearTimeout(timer);
        resolve(info);
      });
    });
  }

  #assertOpen(): void {
    if (this.#closed) throw new TetherError("closed", "the broker is closed (the plugin connection ended)");
  }

  /** Stops every brokered server and connection and ends the stream. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#outgoing.close();
    for (const { timer } of this.#known.values()) clearTimeout(timer);
    this.#known.clear();
    for (const server of this.#servers) server.stop();
    this.#servers.clear();
    for (const channel of this.#connections) channel.close();
    this.#connections.clear();
    for (const local of this.#bridges) local.close();
    this.#bridges.clear();
    this.#muxServers.clear();
  }
}
