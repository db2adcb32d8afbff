/**
 * SFTPGo `eventsearcher` plugins: the queries both sides share, and the
 * plugin side ({@linkcode serveEventSearcher} turns an
 * {@linkcode EventSearcher} into a plugin). The host side,
 * `EventSearcherClient`, is in eventsearcher_client.ts, which plugins never
 * load.
 *
 * Every search returns JSON (SFTPGo passes it unchanged to its REST API and
 * web UI): an array of events in the official eventsearch plugin. Filter
 * bounds are a `Date` or a `bigint` of Unix nanoseconds; an empty or zero
 * field means "no constraint".
 *
 * @module
 */

import {
  type FsEventsFilter,
  type LogEventsFilter,
  type ProviderEventsFilter,
  Searcher,
} from "../gen/sftpgo/eventsearcher/search_pb.ts";
import type { HandlerContext, ServiceRegistration } from "../service.ts";
import { registration } from "../service.ts";
import type { PluginServer } from "../server.ts";
import { serveOne } from "./serve_one.ts";
import { fromUnixNanos, type ImplementationFactory, jsonBytes, type SftpgoServeOptions } from "./types.ts";

/**
 * Sort order of search results, by timestamp.
 *
 * @example
 * ```ts
 * import { SearchOrder } from "./eventsearcher.ts";
 * console.log(SearchOrder.Asc); // 1
 * ```
 */
export const SearchOrder = {
  /** Newest first (the default). */
  Desc: 0,
  /** Oldest first. */
  Asc: 1,
} as const;

/**
 * A {@linkcode SearchOrder} value.
 *
 * @example
 * ```ts
 * import { SearchOrder, type SearchOrderValue } from "./eventsearcher.ts";
 * const order: SearchOrderValue = SearchOrder.Desc;
 * ```
 */
export type SearchOrderValue = typeof SearchOrder[keyof typeof SearchOrder];

// ---------------------------------------------------------------------------------------------------------------
// What the host side speaks of (the host side itself is in eventsearcher_client.ts)

/**
 * Filters every search has. All optional; unset means no constraint.
 *
 * @example
 * ```ts
 * import { SearchOrder, type SearchQueryBase } from "./eventsearcher.ts";
 * const lastHour: SearchQueryBase = { startTimestamp: new Date(Date.now() - 3_600_000), order: SearchOrder.Asc, limit: 100 };
 * ```
 */
export interface SearchQueryBase {
  /** Events at or after this time: a `Date` or a `bigint` of Unix nanoseconds. */
  readonly startTimestamp?: Date | bigint;
  /** Events at or before this time. */
  readonly endTimestamp?: Date | bigint;
  /** Only this user's events. */
  readonly username?: string;
  /** Only events from this IP. */
  readonly ip?: string;
  /** Only events of these SFTPGo instances. */
  readonly instanceIds?: readonly string[];
  /** At most this many results. Default 100, as SFTPGo's event search API (which allows 1 to 1000). */
  readonly limit?: number;
  /** Continue after this event id (paging). */
  readonly fromId?: string;
  /** See {@linkcode SearchOrder}. */
  readonly order?: SearchOrderValue;
  /** Only events of users / admins with this role. */
  readonly role?: string;
}

/**
 * A search over filesystem events.
 *
 * @example
 * ```ts
 * import type { FsEventsQuery } from "./eventsearcher.ts";
 * const uploads: FsEventsQuery = { actions: ["upload"], username: "alice", limit: 50 };
 * ```
 */
export interface FsEventsQuery extends SearchQueryBase {
  /** Only these actions. */
  readonly actions?: readonly string[];
  /** Only this SSH command. */
  readonly sshCmd?: string;
  /** Only these protocols. */
  readonly protocols?: readonly string[];
  /** Only these statuses (see `FsEventStatus`). */
  readonly statuses?: readonly number[];
  /** Only this storage backend (see `FsProvider`). */
  readonly fsProvider?: number;
  /** Only this bucket. */
  readonly bucket?: string;
  /** Only this endpoint. */
  readonly endpoint?: string;
}

/**
 * A search over provider events.
 *
 * @example
 * ```ts
 * import type { ProviderEventsQuery } from "./eventsearcher.ts";
 * const userChanges: ProviderEventsQuery = { objectTypes: ["user"], omitObjectData: true };
 * ```
 */
export interface ProviderEventsQuery extends SearchQueryBase {
  /** Only these actions. */
  readonly actions?: readonly string[];
  /** Only these object types. */
  readonly objectTypes?: readonly string[];
  /** Only this object. */
  readonly objectName?: string;
  /** Leave the objects' data out of the results. */
  readonly omitObjectData?: boolean;
}

/**
 * A search over log events.
 *
 * @example
 * ```ts
 * import type { LogEventsQuery } from "./eventsearcher.ts";
 * const failures: LogEventsQuery = { events: [1, 2] };
 * ```
 */
export interface LogEventsQuery extends SearchQueryBase {
  /** Only these event types (see `LogEventType`). */
  readonly events?: readonly number[];
  /** Only these protocols. */
  readonly protocols?: readonly string[];
}

/**
 * A search's answer: the JSON the plugin sent, parsed, and its bytes.
 *
 * @example
 * ```ts
 * import type { SearchResult } from "./eventsearcher.ts";
 * const count = (result: SearchResult) => Array.isArray(result.data) ? result.data.length : 0;
 * ```
 */
export interface SearchResult {
  /** The parsed JSON; `undefined` when the plugin sent no bytes. */
  readonly data: unknown;
  /** The bytes as sent. */
  readonly bytes: Uint8Array;
}

/** SFTPGo's default `limit` for event searches (internal/httpd: 100 unless the request says otherwise). */

// ---------------------------------------------------------------------------------------------------------------
// Plugin side

/**
 * The filters every search has, as a plugin receives them: every field
 * present, empty / zero meaning "no constraint".
 *
 * @example
 * ```ts
 * import type { SearchFilterBase } from "./eventsearcher.ts";
 * const inRange = (f: SearchFilterBase, ns: bigint) =>
 *   (f.startTimestampNs === 0n || ns >= f.startTimestampNs) && (f.endTimestampNs === 0n || ns <= f.endTimestampNs);
 * ```
 */
export interface SearchFilterBase {
  /** Lower bound, or `undefined` for none. */
  readonly startTimestamp: Date | undefined;
  /** Lower bound in Unix nanoseconds, exact; `0n` for none. */
  readonly startTimestampNs: bigint;
  /** Upper bound, or `undefined` for none. */
  readonly endTimestamp: Date | undefined;
  /** Upper bound in Unix nanoseconds, exact; `0n` for none. */
  readonly endTimestampNs: bigint;
  /** Username, or empty. */
  readonly username: string;
  /** IP, or empty. */
  readonly ip: string;
  /** Instance ids, or none. */
  readonly instanceIds: readonly string[];
  /** Result limit, or 0. */
  readonly limit: number;
  /** Paging cursor, or empty. */
  readonly fromId: string;
  /** See {@linkcode SearchOrder}. */
  readonly order: number;
  /** Role, or empty. */
  readonly role: string;
}

/**
 * A filesystem event search as a plugin receives it.
 *
 * @example
 * ```ts
 * import type { FsEventsSearch } from "./eventsearcher.ts";
 * const wantsAction = (f: FsEventsSearch, action: string) => f.actions.length === 0 || f.actions.includes(action);
 * ```
 */
export interface FsEventsSearch extends SearchFilterBase {
  /** Actions, or none. */
  readonly actions: readonly string[];
  /** SSH command, or empty. */
  readonly sshCmd: string;
  /** Protocols, or none. */
  readonly protocols: readonly string[];
  /** Statuses, or none. */
  readonly statuses: readonly number[];
  /** Storage backend, or 0 (which is also "local": SFTPGo cannot tell them apart). */
  readonly fsProvider: number;
  /** Bucket, or empty. */
  readonly bucket: string;
  /** Endpoint, or empty. */
  readonly endpoint: string;
}

/**
 * A provider event search as a plugin receives it.
 *
 * @example
 * ```ts
 * import type { ProviderEventsSearch } from "./eventsearcher.ts";
 * const omit = (f: ProviderEventsSearch) => f.omitObjectData;
 * ```
 */
export interface ProviderEventsSearch extends SearchFilterBase {
  /** Actions, or none. */
  readonly actions: readonly string[];
  /** Object types, or none. */
  readonly objectTypes: readonly string[];
  /** Object name, or empty. */
  readonly objectName: string;
  /** Whether to leave object data out. */
  readonly omitObjectData: boolean;
}

/**
 * A log event search as a plugin receives it.
 *
 * @example
 * ```ts
 * import type { LogEventsSearch } from "./eventsearcher.ts";
 * const wantsEvent = (f: LogEventsSearch, e: number) => f.events.length === 0 || f.events.includes(e);
 * ```
 */
export interface LogEventsSearch extends SearchFilterBase {
  /** Event types, or none. */
  readonly events: readonly number[];
  /** Protocols, or none. */
  readonly protocols: readonly string[];
}

/**
 * What a search returns: bytes are sent as they are, a string as UTF-8
 * text, anything else as JSON (`JSON.stringify`, so no bigints).
 *
 * @example
 * ```ts
 * import type { SearchAnswer } from "./eventsearcher.ts";
 * const none: SearchAnswer = [];
 * ```
 */
export type SearchAnswer = unknown;

/**
 * An `eventsearcher` plugin. Throw to fail a search.
 *
 * @example
 * ```ts
 * import type { EventSearcher } from "./eventsearcher.ts";
 * const searcher: EventSearcher = {
 *   searchFsEvents: () => [],
 *   searchProviderEvents: () => [],
 *   searchLogEvents: () => [],
 * };
 * ```
 */
export interface EventSearcher {
  /** Searches filesystem events. */
  searchFsEvents(filter: FsEventsSearch, context: HandlerContext): SearchAnswer | Promise<SearchAnswer>;
  /** Searches provider events. */
  searchProviderEvents(
    filter: ProviderEventsSearch,
    context: HandlerContext,
  ): SearchAnswer | Promise<SearchAnswer>;
  /** Searches log events. */
  searchLogEvents(filter: LogEventsSearch, context: HandlerContext): SearchAnswer | Promise<SearchAnswer>;
}

function filterBase(raw: FsEventsFilter | ProviderEventsFilter | LogEventsFilter): SearchFilterBase {
  return {
    startTimestamp: raw.startTimestamp === 0n ? undefined : fromUnixNanos(raw.startTimestamp),
    startTimestampNs: raw.startTimestamp,
    endTimestamp: raw.endTimestamp === 0n ? undefined : fromUnixNanos(raw.endTimestamp),
    endTimestampNs: raw.endTimestamp,
    username: raw.username,
    ip: raw.ip,
    instanceIds: raw.instanceIds,
    limit: raw.limit,
    fromId: raw.fromId,
    order: raw.order,
    role: raw.role,
  };
}

function answerBytes(answer: SearchAnswer): Uint8Array {
  // jsonBytes treats undefined/null as "no bytes"; a search that found nothing should say [] itself.
  return jsonBytes(answer);
}

/**
 * The gRPC registration of an {@linkcode EventSearcher}, for
 * {@linkcode serve} when {@linkcode serveEventSearcher} is not flexible
 * enough.
 *
 * @example
 * ```ts
 * import { eventSearcherService } from "./eventsearcher.ts";
 * const reg = eventSearcherService({ searchFsEvents: () => [], searchProviderEvents: () => [], searchLogEvents: () => [] });
 * console.log(reg.service.typeName); // "proto.Searcher"
 * ```
 */
export function eventSearcherService(impl: EventSearcher): ServiceRegistration<typeof Searcher> {
  return registration(Searcher, {
    searchFsEvents: async (raw, context) => ({
      data: answerBytes(
        await impl.searchFsEvents({
          ...filterBase(raw),
          actions: raw.actions,
          sshCmd: raw.sshCmd,
          protocols: raw.protocols,
          statuses: raw.statuses,
          fsProvider: raw.fsProvider,
          bucket: raw.bucket,
          endpoint: raw.endpoint,
        }, context),
      ),
    }),
    searchProviderEvents: async (raw, context) => ({
      data: answerBytes(
        await impl.searchProviderEvents({
          ...filterBase(raw),
          actions: raw.actions,
          objectTypes: raw.objectTypes,
          objectName: raw.objectName,
          omitObjectData: raw.omitObjectData,
        }, context),
      ),
    }),
    searchLogEvents: async (raw, context) => ({
      data: answerBytes(
        await impl.searchLogEvents(
          { ...filterBase(raw), events: raw.events, protocols: raw.protocols },
          context,
        ),
      ),
    }),
  });
}

/**
 * Serves an `eventsearcher` plugin with SFTPGo's eventsearcher handshake.
 *
 * @example
 * ```ts ignore
 * import { serveEventSearcher } from "@tether/tether/sftpgo/plugin";
 *
 * await serveEventSearcher({
 *   searchFsEvents: (filter) => [],
 *   searchProviderEvents: () => [],
 *   searchLogEvents: () => [],
 * });
 * ```
 */
export function serveEventSearcher(
  impl: ImplementationFactory<EventSearcher>,
  options: SftpgoServeOptions = {},
): Promise<PluginServer> {
  return serveOne("eventsearcher", eventSearcherService, impl, options);
}
