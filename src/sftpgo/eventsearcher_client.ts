/**
 * SFTPGo `eventsearcher` plugins, host side: {@linkcode EventSearcherClient}. The plugin side and the
 * vocabulary both share are in eventsearcher.ts.
 *
 * @module
 */

import { Searcher } from "../gen/sftpgo/eventsearcher/search_pb.ts";
import type { CallOptions } from "../rpc.ts";
import {
  type FsEventsQuery,
  type LogEventsQuery,
  type ProviderEventsQuery,
  SearchOrder,
  type SearchQueryBase,
  type SearchResult,
} from "./eventsearcher.ts";
import {
  badAnswer,
  fromUtf8,
  type PluginDispenser,
  type SftpgoClientDefaults,
  toUnixNanos,
} from "./types.ts";
import { PluginCalls } from "./client_calls.ts";

const SFTPGO_SEARCH_LIMIT = 100;

function commonFilter(query: SearchQueryBase) {
  return {
    startTimestamp: query.startTimestamp === undefined ? 0n : toUnixNanos(query.startTimestamp),
    endTimestamp: query.endTimestamp === undefined ? 0n : toUnixNanos(query.endTimestamp),
    username: query.username ?? "",
    ip: query.ip ?? "",
    instanceIds: [...(query.instanceIds ?? [])],
    limit: query.limit ?? SFTPGO_SEARCH_LIMIT,
    fromId: query.fromId ?? "",
    order: query.order ?? SearchOrder.Desc,
    role: query.role ?? "",
  };
}

function searchResult(bytes: Uint8Array): SearchResult {
  if (bytes.length === 0) return { data: undefined, bytes };
  try {
    return { data: JSON.parse(fromUtf8(bytes)), bytes };
  } catch (error) {
    throw badAnswer("with search results that are not JSON", error, bytes);
  }
}

/**
 * The host side of an `eventsearcher` plugin.
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { EventSearcherClient, SearchOrder, sftpgoHandshakes } from "@tether/tether/sftpgo";
 *
 * await using plugin = new PluginClient({ cmd: "./eventsearch-plugin", handshake: sftpgoHandshakes.eventsearcher });
 * await plugin.start();
 * const search = new EventSearcherClient(plugin);
 * const { data } = await search.searchFsEvents({ username: "alice", actions: ["upload"], order: SearchOrder.Asc, limit: 10 });
 * console.log(data);
 * ```
 */
export class EventSearcherClient {
  readonly #calls: PluginCalls<typeof Searcher>;

  /** Wraps a started plugin client; `defaults.timeoutMs` is the deadline of each call (default 20 s, as the sdk). */
  constructor(plugin: PluginDispenser, defaults: SftpgoClientDefaults = {}) {
    this.#calls = new PluginCalls(plugin, Searcher, defaults);
  }

  /**
   * Searches filesystem events (`SearchFsEvents`).
   *
   * @throws {TetherError} when the call fails, or `rpc`/INTERNAL when the answer is not JSON.
   */
  async searchFsEvents(query: FsEventsQuery = {}, options?: CallOptions): Promise<SearchResult> {
    const response = await this.#calls.stub.searchFsEvents({
      ...commonFilter(query),
      actions: [...(query.actions ?? [])],
      sshCmd: query.sshCmd ?? "",
      protocols: [...(query.protocols ?? [])],
      statuses: [...(query.statuses ?? [])],
      fsProvider: query.fsProvider ?? 0,
      bucket: query.bucket ?? "",
      endpoint: query.endpoint ?? "",
    }, this.#calls.options(options));
    return searchResult(response.data);
  }

  /** Searches provider events (`SearchProviderEvents`). */
  async searchProviderEvents(query: ProviderEventsQuery = {}, options?: CallOptions): Promise<SearchResult> {
    const response = await this.#calls.stub.searchProviderEvents({
      ...commonFilter(query),
      actions: [...(query.actions ?? [])],
      objectTypes: [...(query.objectTypes ?? [])],
      objectName: query.objectName ?? "",
      omitObjectData: query.omitObjectData ?? false,
    }, this.#calls.options(options));
    return searchResult(response.data);
  }

  /** Searches log events (`SearchLogEvents`). */
  async searchLogEvents(query: LogEventsQuery = {}, options?: CallOptions): Promise<SearchResult> {
    const response = await this.#calls.stub.searchLogEvents({
      ...commonFilter(query),
      events: [...(query.events ?? [])],
      protocols: [...(query.protocols ?? [])],
    }, this.#calls.options(options));
    return searchResult(response.data);
  }
}
