/**
 * SFTPGo plugins with Tether, both sides, wire-compatible with
 * `github.com/sftpgo/sdk` (v0.1.9; the legacy `metadata` type as of v0.1.6).
 *
 * - Handshakes: {@linkcode sftpgoHandshakes} (cookie and version of each
 *   type).
 * - Host side, with SFTPGo's semantics: {@linkcode AuthClient} (including the
 *   keyboard-interactive loop), {@linkcode NotifierClient},
 *   {@linkcode KmsClient}, {@linkcode IpFilterClient},
 *   {@linkcode EventSearcherClient}, {@linkcode MetadataClient}.
 * - Plugin side: implement {@linkcode Authenticator}, {@linkcode Notifier},
 *   {@linkcode KmsService}, {@linkcode IpFilter}, {@linkcode EventSearcher}
 *   or {@linkcode Metadater} and serve it with {@linkcode serveAuth},
 *   {@linkcode serveNotifier}, ... A thrown error reaches the host as a gRPC
 *   error, which SFTPGo reads as "login refused", "address denied", "event
 *   not delivered" and so on. A plugin imports these from
 *   `@tether/tether/sftpgo/plugin`, which has the same names without the host
 *   side (no grpc-js, yaml, zod or TOML parser to load).
 *
 * Conventions: points in time are a `Date` or a `bigint` of Unix nanoseconds
 * when you send them; received ones come as both (`timestamp: Date`,
 * `timestampNs: bigint`). Durations name their unit (`elapsedMs`). JSON
 * (users, provider objects, search results) comes parsed, with its bytes
 * next to it.
 *
 * @example Host side
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { AuthClient, sftpgoHandshakes } from "@tether/tether/sftpgo";
 *
 * await using plugin = new PluginClient({ cmd: "/usr/local/bin/sftpgo-plugin-auth", args: ["serve"], handshake: sftpgoHandshakes.auth });
 * await plugin.start();
 * const auth = new AuthClient(plugin);
 * const { user } = await auth.checkUserAndPass({ username: "alice", password: "wonderland", ip: "198.51.100.7", protocol: "SSH" });
 * ```
 *
 * @example Plugin side
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

// The plugin side: every name of the `./sftpgo/plugin` entry point (src/sftpgo/plugin.ts), which plugins
// import so as not to load the host side below.
export * from "./src/sftpgo/plugin.ts";
export { isTransportFailure, type PluginDispenser, type SftpgoClientDefaults } from "./src/sftpgo/types.ts";
export {
  type AuthResult,
  type KeyboardAuthReply,
  type KeyboardChallenge,
  type KeyboardInteractiveOptions,
  type KeyboardInteractiveOutcome,
} from "./src/sftpgo/auth.ts";
export { AuthClient } from "./src/sftpgo/auth_client.ts";
export { type FsEventInput, type LogEventInput, type ProviderEventInput } from "./src/sftpgo/notifier.ts";
export { NotifierClient } from "./src/sftpgo/notifier_client.ts";
export { KmsClient } from "./src/sftpgo/kms_client.ts";
export { IpFilterClient } from "./src/sftpgo/ipfilter_client.ts";
export {
  type FsEventsQuery,
  type LogEventsQuery,
  type ProviderEventsQuery,
  type SearchQueryBase,
  type SearchResult,
} from "./src/sftpgo/eventsearcher.ts";
export { EventSearcherClient } from "./src/sftpgo/eventsearcher_client.ts";
export { MetadataClient } from "./src/sftpgo/metadata_client.ts";

// Host-side core types that the signatures above use, so that this entry point documents itself.
export type { CallOptions } from "./src/rpc.ts";
export {
  type AuthMethod,
  AuthRouter,
  type IpFilterDecision,
  IpFilterRouter,
  NotifierRouter,
  PluginManager,
  type PluginManagerOptions,
  type PluginState,
  type PluginStatus,
  type StopReport,
} from "./src/sftpgo/manager.ts";
export { AUTH_METHODS } from "./src/sftpgo/routing.ts";
export {
  type AuthOptions,
  AuthScope,
  ConfigError,
  type ConfigErrorInit,
  type ConfigLoadOptions,
  type ConfigWarning,
  FS_EVENTS,
  KMS_ENCRYPTED_STATUSES,
  KMS_SCHEMES,
  type KmsEncryptedStatus,
  type KmsOptions,
  type KmsScheme,
  loadPluginsConfig,
  type NotifierOptions,
  parsePluginsConfig,
  type PluginConfig,
  type PluginConfigList,
  type PluginSource,
  type PluginType,
  PROVIDER_EVENTS,
  PROVIDER_OBJECTS,
  type RestartOptions,
  type TetherOptions,
  validatePluginsConfig,
} from "./src/sftpgo/config.ts";
export { pluginEnvironment, type PluginEnvironmentOptions, pluginEnvPrefix } from "./src/sftpgo/env.ts";
