/**
 * The public vocabulary of the SFTPGo plugins config: plugin types, option shapes, warnings and
 * {@linkcode ConfigError}.
 *
 * @module
 */

import type { DenoPermissions } from "../../permissions.ts";

/**
 * A plugin type. `metadata` is legacy: SFTPGo 2.6 removed it, but Tether still hosts it so old configs and old
 * plugins keep working (loading one produces a warning).
 *
 * @example
 * ```ts
 * import type { PluginType } from "../config.ts";
 * const type: PluginType = "notifier";
 * ```
 */
export type PluginType = "auth" | "notifier" | "kms" | "ipfilter" | "eventsearcher" | "metadata";

/**
 * Every accepted plugin type, live ones first.
 *
 * @example
 * ```ts
 * import { PLUGIN_TYPES } from "../config.ts";
 * console.log(PLUGIN_TYPES.includes("kms")); // true
 * ```
 */
export const PLUGIN_TYPES: readonly PluginType[] = [
  "auth",
  "notifier",
  "kms",
  "ipfilter",
  "eventsearcher",
  "metadata",
];

/**
 * Filesystem event names a notifier can subscribe to (SFTPGo's `dataprovider.SupportedFsEvents`; pre-* events
 * are sent to notifier plugins too).
 *
 * @example
 * ```ts
 * import { FS_EVENTS } from "../config.ts";
 * console.log(FS_EVENTS.includes("upload")); // true
 * ```
 */
export const FS_EVENTS: readonly string[] = [
  "upload",
  "pre-upload",
  "first-upload",
  "download",
  "pre-download",
  "first-download",
  "delete",
  "pre-delete",
  "rename",
  "mkdir",
  "rmdir",
  "copy",
  "ssh_cmd",
];

/**
 * Provider (data store) actions a notifier can subscribe to (SFTPGo's `SupportedProviderEvents`).
 *
 * @example
 * ```ts
 * import { PROVIDER_EVENTS } from "../config.ts";
 * console.log(PROVIDER_EVENTS); // ["add", "update", "delete"]
 * ```
 */
export const PROVIDER_EVENTS: readonly string[] = ["add", "update", "delete"];

/**
 * Provider object types SFTPGo emits provider events for (every `actionObject*` constant it passes to its
 * action dispatcher, not only the subset its event-rule UI lists).
 *
 * @example
 * ```ts
 * import { PROVIDER_OBJECTS } from "../config.ts";
 * console.log(PROVIDER_OBJECTS.includes("user")); // true
 * ```
 */
export const PROVIDER_OBJECTS: readonly string[] = [
  "user",
  "folder",
  "group",
  "admin",
  "api_key",
  "share",
  "event_action",
  "event_rule",
  "role",
  "ip_list_entry",
  "configs",
];

/**
 * Log event codes for `log_events` (sdk `notifier.LogEventType`).
 *
 * @example
 * ```ts
 * import { LogEvent } from "../config.ts";
 * console.log(LogEvent.loginOk); // 5
 * ```
 */
export const LogEvent = {
  /** A login attempt failed. */
  loginFailed: 1,
  /** A login named a user that does not exist. */
  loginNoUser: 2,
  /** A client connected and left without trying to log in. */
  noLoginTried: 3,
  /** The protocol negotiation (e.g. SSH key exchange) failed. */
  notNegotiated: 4,
  /** A login succeeded. */
  loginOk: 5,
} as const;

/**
 * A KMS URL scheme a KMS plugin can register.
 *
 * @example
 * ```ts
 * import type { KmsScheme } from "../config.ts";
 * const scheme: KmsScheme = "hashivault";
 * ```
 */
export type KmsScheme = "awskms" | "gcpkms" | "hashivault" | "azurekeyvault" | "ocikeyvault";

/**
 * The KMS schemes SFTPGo accepts for plugins (internal/plugin/kms.go `validKMSSchemes`).
 *
 * @example
 * ```ts
 * import { KMS_SCHEMES } from "../config.ts";
 * console.log(KMS_SCHEMES.length); // 5
 * ```
 */
export const KMS_SCHEMES: readonly KmsScheme[] = [
  "awskms",
  "gcpkms",
  "hashivault",
  "azurekeyvault",
  "ocikeyvault",
];

/**
 * A secret status a KMS plugin can register.
 *
 * @example
 * ```ts
 * import type { KmsEncryptedStatus } from "../config.ts";
 * const status: KmsEncryptedStatus = "VaultTransit";
 * ```
 */
export type KmsEncryptedStatus = "AWS" | "GCP" | "VaultTransit" | "AzureKeyVault" | "OracleKeyVault";

/**
 * The secret statuses SFTPGo accepts for KMS plugins (`validKMSEncryptedStatuses`).
 *
 * @example
 * ```ts
 * import { KMS_ENCRYPTED_STATUSES } from "../config.ts";
 * console.log(KMS_ENCRYPTED_STATUSES.includes("AWS")); // true
 * ```
 */
export const KMS_ENCRYPTED_STATUSES: readonly KmsEncryptedStatus[] = [
  "AWS",
  "GCP",
  "VaultTransit",
  "AzureKeyVault",
  "OracleKeyVault",
];

/**
 * Bits of `auth_options.scope`; combine them with `|` (3 = password and public key).
 *
 * @example
 * ```ts
 * import { AuthScope } from "../config.ts";
 * console.log(AuthScope.password | AuthScope.publicKey); // 3
 * ```
 */
export const AuthScope = {
  /** Password logins. */
  password: 1,
  /** Public-key logins. */
  publicKey: 2,
  /** Keyboard-interactive logins. */
  keyboardInteractive: 4,
  /** TLS client-certificate logins. */
  tlsCertificate: 8,
} as const;

/**
 * `notifier_options`: which events a notifier receives and how failed sends are retried.
 *
 * @example
 * ```ts
 * import type { NotifierOptions } from "../config.ts";
 * const options: NotifierOptions = {
 *   fsEvents: ["upload"], providerEvents: [], providerObjects: [], logEvents: [5],
 *   retryMaxTime: 60, retryQueueMaxSize: 0,
 * };
 * ```
 */
export interface NotifierOptions {
  /** `fs_events`: filesystem actions to send (see {@linkcode FS_EVENTS}). */
  fsEvents: string[];
  /** `provider_events`: provider actions to send; only effective together with `providerObjects`. */
  providerEvents: string[];
  /** `provider_objects`: object types whose provider actions are sent. */
  providerObjects: string[];
  /** `log_events`: log event codes to send (see {@linkcode LogEvent}). */
  logEvents: number[];
  /** `retry_max_time`: seconds a failed event may wait for a resend; 0 disables retries. */
  retryMaxTime: number;
  /** `retry_queue_max_size`: most events queued for resend across all kinds; 0 means unlimited. */
  retryQueueMaxSize: number;
}

/**
 * `kms_options`: the scheme and secret status a KMS plugin registers.
 *
 * @example
 * ```ts
 * import type { KmsOptions } from "../config.ts";
 * const options: KmsOptions = { scheme: "hashivault", encryptedStatus: "VaultTransit" };
 * ```
 */
export interface KmsOptions {
  /** `scheme`: the KMS URL scheme, unique across KMS plugins. */
  scheme: KmsScheme;
  /** `encrypted_status`: the secret status, unique across KMS plugins. */
  encryptedStatus: KmsEncryptedStatus;
}

/**
 * `auth_options`: which login methods an auth plugin handles.
 *
 * @example
 * ```ts
 * import { AuthScope, type AuthOptions } from "../config.ts";
 * const options: AuthOptions = { scope: AuthScope.password | AuthScope.keyboardInteractive };
 * ```
 */
export interface AuthOptions {
  /** `scope`: a bitmask of {@linkcode AuthScope} values, 1 to 15. */
  scope: number;
}

/**
 * Restart policy for a plugin that exits.
 *
 * @example
 * ```ts
 * import type { RestartOptions } from "../config.ts";
 * const restart: RestartOptions = { initialBackoffMs: 250, maxBackoffMs: 30_000, maxRestarts: 0 };
 * ```
 */
export interface RestartOptions {
  /** `initial_backoff_ms`: wait before the first restart; doubles on each consecutive failure. */
  initialBackoffMs: number;
  /** `max_backoff_ms`: the longest wait between restarts. */
  maxBackoffMs: number;
  /** `max_restarts`: give up after this many consecutive restarts; 0 means never give up. */
  maxRestarts: number;
}

/**
 * Tether's additions, read from an optional `tether:` mapping inside each plugin entry (SFTPGo ignores unknown
 * keys, so the same file still works in SFTPGo). All defaults are filled in.
 *
 * @example
 * ```ts
 * import { parsePluginsConfig } from "../config.ts";
 * const [plugin] = parsePluginsConfig(`
 * - type: ipfilter
 *   cmd: ./filter.ts
 *   tether: { permissions: { read: [/var/lib/geoip.mmdb] } }
 * `);
 * console.log(plugin.tether.runtime, plugin.tether.startTimeoutMs); // "deno" 60000
 * ```
 */
export interface TetherOptions {
  /**
   * `runtime`: how to start the plugin. `auto` (the default in the file) is resolved while loading by
   * `runtimeFor` (src/launch.ts), the one rule every layer uses: a `cmd` ending in .ts, .tsx, .mts, .cts, .js,
   * .mjs, .cjs or .jsx runs under Deno, anything else as a native executable. The loaded value is therefore
   * always `deno` or `native`; the type keeps `auto` for hand-built configs.
   */
  runtime: "deno" | "native" | "auto";
  /** `start_timeout_ms`: how long to wait for the handshake line (default 60000, go-plugin's). */
  startTimeoutMs: number;
  /** `call_timeout_ms`: deadline for each RPC (default 20000, the SFTPGo sdk's). */
  callTimeoutMs: number;
  /** `restart`: what to do when the plugin exits. */
  restart: RestartOptions;
  /** `health_check_interval_ms`: gRPC health check period (default 5000); 0 disables it. */
  healthCheckIntervalMs: number;
  /**
   * `permissions`: Deno permissions for `runtime: deno` plugins, every kind filled in (`[]` or `false` when not
   * granted); everything is denied by default. The type is the one `PluginClient` takes.
   */
  permissions: Required<DenoPermissions>;
  /** `allow_broad_permissions`: must be `true` to grant `run`, `ffi` or `all` (default false). */
  allowBroadPermissions: boolean;
  /**
   * `max_receive_message_bytes`: largest message accepted from the plugin, 1 to 2^31-1 bytes; absent means
   * PluginClient's default (128 MiB). A larger answer fails its call with RESOURCE_EXHAUSTED.
   */
  maxReceiveMessageBytes?: number;
  /** `uid`: user id to run a native plugin as. */
  uid?: number;
  /** `gid`: group id to run a native plugin as. */
  gid?: number;
  /**
   * `memory_trim_idle_ms` (deno plugins only): how long the plugin's CPU time must stand still after activity
   * before the host sends it SIGUSR2 for Deno's memory trim (`memoryTrim` of PluginClient); 0 switches the
   * trim off. Absent means PluginClient's default (on, 2000 ms).
   */
  memoryTrimIdleMs?: number;
  /**
   * `notifier_order` (notifier plugins only): `ordered` (the default) delivers one event at a time, in the order
   * the host produced them, across crashes; `unordered` sends each event as its own task, as SFTPGo does, under
   * the manager's `notifierConcurrency` bound, so events may arrive in any order. Absent means `ordered`.
   */
  notifierOrder?: "ordered" | "unordered";
}

/**
 * Where a plugin entry is defined; `line` and `column` are 1-based, or 0 when the config did not come from text.
 *
 * @example
 * ```ts
 * import { parsePluginsConfig } from "../config.ts";
 * const [plugin] = parsePluginsConfig("- {type: ipfilter, cmd: /bin/f}", "p.yaml");
 * console.log(plugin.source); // { file: "p.yaml", line: 1, column: 3, index: 0 }
 * ```
 */
export interface PluginSource {
  /** The file name used in messages. */
  file: string;
  /** 1-based line of the plugin's mapping, 0 if unknown. */
  line: number;
  /** 1-based column of the plugin's mapping, 0 if unknown. */
  column: number;
  /** Position in the `plugins` list. */
  index: number;
}

/**
 * One validated plugin entry, with SFTPGo's defaults and Tether's defaults filled in.
 *
 * @example
 * ```ts
 * import { parsePluginsConfig } from "../config.ts";
 * const [plugin] = parsePluginsConfig("plugins: [{type: auth, cmd: /bin/ldap, auth_options: {scope: 5}}]");
 * console.log(plugin.type, plugin.autoMtls, plugin.envPrefix, plugin.authOptions); // auth false "" { scope: 5 }
 * ```
 */
export interface PluginConfig {
  /** `type`. */
  type: PluginType;
  /** `cmd`: the executable (or script, for Deno plugins), as written. */
  cmd: string;
  /** `args` (default `[]`). */
  args: string[];
  /** `sha256sum`, lowercased; absent when not set or empty. */
  sha256sum?: string;
  /** `auto_mtls` (default false, as in SFTPGo). */
  autoMtls: boolean;
  /** `env_prefix` as written (default `""`); see `pluginEnvironment` in env.ts for what it means. */
  envPrefix: string;
  /** `env_vars` (default `[]`). */
  envVars: string[];
  /** `notifier_options`, present only for `notifier` plugins. */
  notifierOptions?: NotifierOptions;
  /** `kms_options`, present only for `kms` plugins. */
  kmsOptions?: KmsOptions;
  /** `auth_options`, present only for `auth` plugins. */
  authOptions?: AuthOptions;
  /** Tether's additions, defaults filled in and `runtime` resolved. */
  tether: TetherOptions;
  /** Where this plugin is defined. */
  source: PluginSource;
}

/**
 * Something SFTPGo accepts silently but that is probably a mistake, such as an unknown (misspelt) key.
 *
 * @example
 * ```ts
 * import { parsePluginsConfig } from "../config.ts";
 * const plugins = parsePluginsConfig("- {type: ipfilter, cmd: /bin/f, auto_mtl: true}", "p.yaml");
 * console.log(plugins.warnings[0].text);
 * // p.yaml:1:33: plugins[0].auto_mtl: unknown key (did you mean "auto_mtls"?); SFTPGo ignores it and so does Tether
 * ```
 */
export interface ConfigWarning {
  /** The file name used in messages. */
  file: string;
  /** 1-based line, 0 if unknown. */
  line: number;
  /** 1-based column, 0 if unknown. */
  column: number;
  /** The field path, e.g. `plugins[0].notifer_options`. */
  path: string;
  /** What is wrong, without the location. */
  message: string;
  /** `<file>:<line>:<col>: <path>: <message>`, ready to log. */
  text: string;
}

/**
 * The loaded plugins, in file order, with the warnings found while loading them (the array's `warnings`
 * property, like `RegExpMatchArray.groups`).
 *
 * @example
 * ```ts
 * import { parsePluginsConfig, type PluginConfigList } from "../config.ts";
 * const plugins: PluginConfigList = parsePluginsConfig("plugins: []");
 * console.log(plugins.length, plugins.warnings.length); // 0 0
 * ```
 */
export type PluginConfigList = PluginConfig[] & { warnings: ConfigWarning[] };

/** What a {@linkcode ConfigError} is made from. */
export interface ConfigErrorInit {
  /** The file name used in messages. */
  file: string;
  /** 1-based line, 0 if unknown. */
  line: number;
  /** 1-based column, 0 if unknown. */
  column: number;
  /** The field path, e.g. `plugins[1].notifier_options.retry_max_time`; empty for syntax errors. */
  path: string;
  /** What the field must be. */
  expected: string;
  /** What the file has, e.g. `"abc"`, `-1` or `nothing` for a missing key. */
  found: string;
  /** What to do about it, or where the conflicting definition is. */
  hint?: string;
  /** Replaces the `expected ..., found ...` part of the message (used for YAML syntax errors). */
  detail?: string;
}

/**
 * A configuration the host cannot run. Its first message line is
 * `<file>:<line>:<col>: <path>: expected <expected>, found <found>` (the position is left out when unknown).
 *
 * Loading reports every problem at once: the error thrown is the first one in file order, its `errors` lists
 * all of them (itself first), and its `message` has one line per error, so printing it shows everything to fix.
 *
 * @example
 * ```ts
 * import { ConfigError, parsePluginsConfig } from "../config.ts";
 * try {
 *   parsePluginsConfig("- {type: notifier, cmd: /bin/n, notifier_options: {fs_events: [upload], retry_max_time: abc}}", "a.yaml");
 * } catch (error) {
 *   if (error instanceof ConfigError) {
 *     console.log(error.line, error.path, error.found); // 1 plugins[0].notifier_options.retry_max_time "abc"
 *   }
 * }
 * ```
 */
export class ConfigError extends Error {
  /** Always `config`, matching `TetherError.code` so callers can branch on `code` for every Tether error. */
  readonly code = "config" as const;
  /** The file name used in messages. */
  readonly file: string;
  /** 1-based line, 0 if unknown. */
  readonly line: number;
  /** 1-based column, 0 if unknown. */
  readonly column: number;
  /** The field path, e.g. `plugins[1].notifier_options.retry_max_time`. */
  readonly path: string;
  /** What the field must be. */
  readonly expected: string;
  /** What the file has. */
  readonly found: string;
  /** What to do about it, when there is something specific to say. */
  readonly hint?: string;
  /** Every problem found, in file order; this error is the first. */
  errors: readonly ConfigError[];
  /** Warnings found before loading failed; an unknown key here often explains a "found nothing" error. */
  warnings: readonly ConfigWarning[];

  /** Makes one error; its message is built from the fields. */
  constructor(init: ConfigErrorInit) {
    super(formatError(init));
    this.name = "ConfigError";
    this.file = init.file;
    this.line = init.line;
    this.column = init.column;
    this.path = init.path;
    this.expected = init.expected;
    this.found = init.found;
    if (init.hint !== undefined) this.hint = init.hint;
    this.errors = [this];
    this.warnings = [];
  }
}

/** `file:line:col`, or just `file` when the line is unknown. */
export function formatLocation(file: string, line: number, column: number): string {
  return line > 0 ? `${file}:${line}:${column}` : file;
}

function formatError(init: ConfigErrorInit): string {
  const detail = init.detail ??
    `expected ${init.expected}, found ${init.found}${init.hint ? ` (${init.hint})` : ""}`;
  return `${formatLocation(init.file, init.line, init.column)}: ${
    init.path ? `${init.path}: ` : ""
  }${detail}`;
}
