/**
 * The plugin side of SFTPGo plugins, alone: what a TypeScript plugin of any
 * SFTPGo type needs, and nothing of the host side (no `PluginManager`, no
 * config loader, no clients, and so no grpc-js, yaml, zod or TOML parser in
 * the plugin's module graph: smaller and faster to start). Published as
 * `@tether/tether/sftpgo/plugin`; `@tether/tether/sftpgo` exports the same
 * names and the host side besides.
 *
 * Implement {@linkcode Authenticator}, {@linkcode Notifier},
 * {@linkcode KmsService}, {@linkcode IpFilter}, {@linkcode EventSearcher} or
 * {@linkcode Metadater} and serve it with {@linkcode serveAuth},
 * {@linkcode serveNotifier}, {@linkcode serveKms}, {@linkcode serveIpFilter},
 * {@linkcode serveEventSearcher} or {@linkcode serveMetadata}. A thrown
 * error reaches the host as a gRPC error, which SFTPGo reads as "login
 * refused", "address denied", "event not delivered" and so on.
 *
 * @example
 * ```ts ignore
 * import { serveIpFilter } from "@tether/tether/sftpgo/plugin";
 *
 * await serveIpFilter({
 *   checkIP: (ip) => ip.startsWith("10.") ? { allowed: false, reason: "ip banned" } : true,
 * });
 * ```
 *
 * @module
 */

export { sftpgoHandshakes, type SftpgoPluginType } from "./handshakes.ts";
export {
  fromUnixNanos,
  type ImplementationFactory,
  pluginErrorMessage,
  type SftpgoPluginContext,
  type SftpgoServeOptions,
  type SftpgoUser,
  toUnixNanos,
} from "./types.ts";
export {
  type AuthAnswer,
  type AuthCheckBase,
  type Authenticator,
  type AuthRequest,
  type KeyboardAuthAnswer,
  KeyboardAuthResult,
  type KeyboardAuthStep,
  KeyboardCheck,
  serveAuth,
} from "./auth.ts";
export {
  type FsEvent,
  FsEventStatus,
  FsProvider,
  type LogEvent,
  LogEventType,
  type Notifier,
  type ProviderEvent,
  serveNotifier,
} from "./notifier.ts";
export {
  type KmsDecryptRequest,
  type KmsEncryptRequest,
  type KmsEncryptResult,
  type KmsService,
  serveKms,
} from "./kms.ts";
export { type IpCheckResult, type IpFilter, type IpVerdict, serveIpFilter } from "./ipfilter.ts";
export {
  type EventSearcher,
  type FsEventsSearch,
  type LogEventsSearch,
  type ProviderEventsSearch,
  type SearchAnswer,
  type SearchFilterBase,
  SearchOrder,
  type SearchOrderValue,
  serveEventSearcher,
} from "./eventsearcher.ts";
export { type Metadater, serveMetadata } from "./metadata.ts";

// Core types that the signatures above use, so that this entry point documents itself.
export type { HandlerContext } from "../service.ts";
export type { HandshakeConfig } from "../handshake.ts";
export type { PluginServer, ServeTlsOptions } from "../server.ts";
export type { Endpoint } from "../listen.ts";
export type { Logger, LogLevel, LogRecord } from "../logs.ts";
