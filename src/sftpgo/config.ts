/**
 * Loads the `plugins:` section of an SFTPGo configuration, the same file an SFTPGo user already has, with
 * SFTPGo's field names, defaults and rules, plus Tether's optional per-plugin `tether:` mapping.
 *
 * Accepted documents (YAML 1.2, so JSON too, with line and column positions either way):
 * - a full SFTPGo config (`sftpgo.yaml` / `sftpgo.json`): its `plugins` key is used, everything else is ignored;
 * - a small file whose top level is `plugins: [...]`;
 * - a bare top-level list of plugins.
 *
 * SFTPGo reads its config through viper and mapstructure, which compare keys case-insensitively and decode
 * "weakly": `8080` in `args` becomes `"8080"`, `"true"` becomes `true`, `"5"` becomes `5`, a comma-separated
 * string becomes a list, and an empty or `null` value means the default. Tether decodes the SFTPGo keys the same
 * way so every file SFTPGo starts with also loads here; Tether's own `tether:` keys are new, so they are strictly
 * typed.
 *
 * Errors are {@linkcode ConfigError}s that name the file, line, column, field path, what was expected and what
 * was found. Problems SFTPGo would silently accept but that are almost certainly mistakes (unknown keys, options
 * for another plugin type, ipfilter plugins that are shadowed, ...) are returned as warnings instead of failing.
 *
 * Where Tether is stricter than SFTPGo, on purpose (each of these either fails later inside SFTPGo or silently
 * does nothing there):
 * - `sha256sum` must be 64 hex digits (SFTPGo decodes any even-length hex, then no checksum ever matches);
 * - `auth_options.scope` must be 1 to 15 (SFTPGo lets negative values through);
 * - `fs_events`, `provider_events`, `provider_objects` and `log_events` must be values SFTPGo emits;
 * - `retry_max_time` and `retry_queue_max_size` must not be negative, and integers must not have a fraction;
 * - `env_vars` names must not be empty or contain `=`;
 * - keys that differ only in case are rejected (viper would keep one at random), as are JSON duplicate keys
 *   (Go's JSON reader keeps the last one).
 * Environment overrides (`SFTPGO_PLUGINS__<n>__*`) and SFTPGo's TOML/HCL/INI config formats are not read.
 *
 * @example
 * ```ts
 * import { parsePluginsConfig } from "./config.ts";
 *
 * const plugins = parsePluginsConfig(`
 * plugins:
 *   - type: notifier
 *     cmd: /usr/local/bin/sftpgo-plugin-pubsub
 *     args: [serve, --driver, nats]
 *     notifier_options:
 *       fs_events: [upload, download]
 * `, "sftpgo.yaml");
 * console.log(plugins[0].notifierOptions?.fsEvents); // ["upload", "download"]
 * for (const warning of plugins.warnings) console.warn(warning.text);
 * ```
 *
 * @module
 */

import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Document, Node as YamlNode, Pair } from "yaml";
import { z } from "zod";

// ---------------------------------------------------------------------------------------------------------------
// Public vocabulary

/**
 * A plugin type. `metadata` is legacy: SFTPGo 2.6 removed it, but Tether still hosts it so old configs and old
 * plugins keep working (loading one produces a warning).
 *
 * @example
 * ```ts
 * import type { PluginType } from "./config.ts";
 * const type: PluginType = "notifier";
 * ```
 */
export type PluginType = "auth" | "notifier" | "kms" | "ipfilter" | "eventsearcher" | "metadata";

/**
 * Every accepted plugin type, live ones first.
 *
 * @example
 * ```ts
 * import { PLUGIN_TYPES } from "./config.ts";
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
 * import { FS_EVENTS } from "./config.ts";
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
 * import { PROVIDER_EVENTS } from "./config.ts";
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
 * import { PROVIDER_OBJECTS } from "./config.ts";
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
 * import { LogEvent } from "./config.ts";
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
 * import type { KmsScheme } from "./config.ts";
 * const scheme: KmsScheme = "hashivault";
 * ```
 */
export type KmsScheme = "awskms" | "gcpkms" | "hashivault" | "azurekeyvault" | "ocikeyvault";

/**
 * The KMS schemes SFTPGo accepts for plugins (internal/plugin/kms.go `validKMSSchemes`).
 *
 * @example
 * ```ts
 * import { KMS_SCHEMES } from "./config.ts";
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
 * import type { KmsEncryptedStatus } from "./config.ts";
 * const status: KmsEncryptedStatus = "VaultTransit";
 * ```
 */
export type KmsEncryptedStatus = "AWS" | "GCP" | "VaultTransit" | "AzureKeyVault" | "OracleKeyVault";

/**
 * The secret statuses SFTPGo accepts for KMS plugins (`validKMSEncryptedStatuses`).
 *
 * @example
 * ```ts
 * import { KMS_ENCRYPTED_STATUSES } from "./config.ts";
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
 * import { AuthScope } from "./config.ts";
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
 * import type { NotifierOptions } from "./config.ts";
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
 * import type { KmsOptions } from "./config.ts";
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
 * import { AuthScope, type AuthOptions } from "./config.ts";
 * const options: AuthOptions = { scope: AuthScope.password | AuthScope.keyboardInteractive };
 * ```
 */
export interface AuthOptions {
  /** `scope`: a bitmask of {@linkcode AuthScope} values, 1 to 15. */
  scope: number;
}

/**
 * Deno permissions granted to a `runtime: deno` plugin. Everything is denied unless listed; `true` grants the
 * whole category (only allowed where the type says `boolean`).
 *
 * @example
 * ```ts
 * import type { DenoPermissions } from "./config.ts";
 * const permissions: DenoPermissions = {
 *   read: ["/etc/myplugin"], write: [], net: ["nats.internal:4222"], env: ["MYPLUGIN_TOKEN"],
 *   sys: [], run: [], ffi: [], import: [], all: false,
 * };
 * ```
 */
export interface DenoPermissions {
  /** `--allow-read` paths. */
  read: string[];
  /** `--allow-write` paths. */
  write: string[];
  /** `--allow-net` hosts (`host` or `host:port`). */
  net: string[];
  /** `--allow-env` variable names. */
  env: string[];
  /** `--allow-sys` API names, or `true` for all. */
  sys: string[] | boolean;
  /** `--allow-run` programs, or `true` for all; needs `allowBroadPermissions`. */
  run: string[] | boolean;
  /** `--allow-ffi` library paths, or `true` for all; needs `allowBroadPermissions`. */
  ffi: string[] | boolean;
  /** `--allow-import` hosts. */
  import: string[];
  /** `--allow-all`; needs `allowBroadPermissions`. */
  all: boolean;
}

/**
 * Restart policy for a plugin that exits.
 *
 * @example
 * ```ts
 * import type { RestartOptions } from "./config.ts";
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
 * import { parsePluginsConfig } from "./config.ts";
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
   * `runtime`: how to start the plugin. `auto` (the default in the file) is resolved while loading: a `cmd`
   * ending in .ts, .tsx, .js, .mjs, .mts or .cjs runs under Deno, anything else as a native executable. The
   * loaded value is therefore always `deno` or `native`; the type keeps `auto` for hand-built configs.
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
  /** `permissions`: Deno permissions for `runtime: deno` plugins; everything is denied by default. */
  permissions: DenoPermissions;
  /** `allow_broad_permissions`: must be `true` to grant `run`, `ffi` or `all` (default false). */
  allowBroadPermissions: boolean;
  /** `uid`: user id to run a native plugin as. */
  uid?: number;
  /** `gid`: group id to run a native plugin as. */
  gid?: number;
}

/**
 * Where a plugin entry is defined; `line` and `column` are 1-based, or 0 when the config did not come from text.
 *
 * @example
 * ```ts
 * import { parsePluginsConfig } from "./config.ts";
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
 * import { parsePluginsConfig } from "./config.ts";
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
 * import { parsePluginsConfig } from "./config.ts";
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
 * import { parsePluginsConfig, type PluginConfigList } from "./config.ts";
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
 * import { ConfigError, parsePluginsConfig } from "./config.ts";
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

// ---------------------------------------------------------------------------------------------------------------
// Entry points

/**
 * Parses and validates a YAML or JSON document holding SFTPGo plugin configuration.
 *
 * @param text A full SFTPGo config, a `plugins:` document, or a bare list of plugins.
 * @param file The name used in messages (default `<inline>`).
 * @returns The plugins in file order; `warnings` holds non-fatal findings.
 * @throws {ConfigError} The first problem in file order; its `errors` has all of them.
 *
 * @example
 * ```ts
 * import { parsePluginsConfig } from "./config.ts";
 * const [kms] = parsePluginsConfig(`{"plugins": [{"type": "kms", "cmd": "/bin/kms",
 *   "kms_options": {"scheme": "hashivault", "encrypted_status": "VaultTransit"}}]}`, "sftpgo.json");
 * console.log(kms.kmsOptions?.scheme, kms.source.line); // hashivault 1
 * ```
 */
export function parsePluginsConfig(text: string, file: string = "<inline>"): PluginConfigList {
  const lineCounter = new LineCounter();
  // `merge: true` because SFTPGo's YAML reader (yaml.v3) honours `<<` merge keys, which YAML 1.2 dropped.
  const doc = parseDocument(text, { lineCounter, merge: true, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw aggregate(doc.errors.map((e) => {
      const pos = lineCounter.linePos(e.pos[0]);
      return new ConfigError({
        file,
        line: pos.line,
        column: pos.col,
        path: "",
        expected: "valid YAML or JSON",
        found: e.message,
        detail: `invalid YAML: ${e.message}`,
      });
    }));
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 1000 });
  } catch (error) {
    // toJS throws only for alias bombs and similar; report it like a syntax error.
    throw new ConfigError({
      file,
      line: 1,
      column: 1,
      path: "",
      expected: "valid YAML or JSON",
      found: String(error),
      detail: `invalid YAML: ${error instanceof Error ? error.message : String(error)}`,
    });
  }
  const locator = new DocLocator(doc, lineCounter, file);
  const list = validate(value, locator);
  for (const w of doc.warnings) {
    const pos = lineCounter.linePos(w.pos[0]);
    list.warnings.push(makeWarning(file, pos.line, pos.col, "", `YAML: ${w.message}`));
  }
  sortWarnings(list.warnings);
  return list;
}

/**
 * Reads a config file and parses it with {@linkcode parsePluginsConfig}. YAML (`.yaml`, `.yml`) and JSON
 * (`.json`) are supported; SFTPGo's other formats (TOML, HCL, INI, .env, properties) are rejected.
 *
 * @param path The file to read; it is also the name used in messages.
 * @returns The plugins in file order, with `warnings`.
 * @throws {ConfigError} For an unsupported format or an invalid configuration.
 * @throws {Deno.errors.NotFound} And other read errors, as `Deno.readTextFile` throws them.
 *
 * @example
 * ```ts ignore
 * import { loadPluginsConfig } from "./config.ts";
 * const plugins = await loadPluginsConfig("/etc/sftpgo/sftpgo.yaml");
 * for (const warning of plugins.warnings) console.warn(warning.text);
 * ```
 */
export async function loadPluginsConfig(path: string): Promise<PluginConfigList> {
  const ext = /\.([^./\\]+)$/.exec(path)?.[1]?.toLowerCase();
  if (ext !== undefined && UNSUPPORTED_FORMATS.has(ext)) {
    throw new ConfigError({
      file: path,
      line: 0,
      column: 0,
      path: "",
      expected: "a YAML or JSON file",
      found: `a .${ext} file`,
      hint: "SFTPGo also reads TOML, HCL, INI and .env configs, but Tether only reads YAML and JSON; " +
        "convert the plugins section to YAML",
    });
  }
  return parsePluginsConfig(await Deno.readTextFile(path), path);
}

/**
 * Validates an already-parsed value (a plugins list, or an object with a `plugins` key) the same way
 * {@linkcode parsePluginsConfig} does. Positions are unknown, so lines and columns are 0 and messages start with
 * `<file>: <path>: ...`.
 *
 * @param value The parsed configuration.
 * @param file The name used in messages (default `<inline>`).
 * @returns The plugins, with `warnings`.
 * @throws {ConfigError} The first problem; its `errors` has all of them.
 *
 * @example
 * ```ts
 * import { validatePluginsConfig } from "./config.ts";
 * const [plugin] = validatePluginsConfig({ plugins: [{ type: "eventsearcher", cmd: "/bin/search" }] });
 * console.log(plugin.source.line, plugin.args); // 0 []
 * ```
 */
export function validatePluginsConfig(value: unknown, file: string = "<inline>"): PluginConfigList {
  return validate(value, new NullLocator(file));
}

/**
 * Resolves `runtime: auto` from the command's extension: .ts, .tsx, .js, .mjs, .mts and .cjs run under Deno,
 * anything else is native. Explicit runtimes are returned unchanged.
 *
 * @example
 * ```ts
 * import { resolveRuntime } from "./config.ts";
 * console.log(resolveRuntime("./plugins/audit.ts", "auto")); // "deno"
 * console.log(resolveRuntime("/usr/bin/sftpgo-plugin-auth", "auto")); // "native"
 * ```
 */
export function resolveRuntime(cmd: string, runtime: TetherOptions["runtime"]): "deno" | "native" {
  if (runtime !== "auto") return runtime;
  const base = cmd.split(/[\\/]/).pop() ?? "";
  const dot = base.lastIndexOf(".");
  return dot > 0 && DENO_EXTENSIONS.has(base.slice(dot + 1).toLowerCase()) ? "deno" : "native";
}

// ---------------------------------------------------------------------------------------------------------------
// Constants and messages

const DENO_EXTENSIONS = new Set(["ts", "tsx", "js", "mjs", "mts", "cjs"]);
const UNSUPPORTED_FORMATS = new Set([
  "toml",
  "hcl",
  "tfvars",
  "ini",
  "env",
  "dotenv",
  "properties",
  "props",
  "prop",
]);

const LIVE_TYPES = PLUGIN_TYPES.filter((t) => t !== "metadata");
const ONE_OF = (values: readonly (string | number)[]) =>
  `one of ${values.map((v) => JSON.stringify(v)).join(", ")}`;

const X = {
  plugin: "a mapping with the plugin's type, cmd and options",
  type: `${ONE_OF(LIVE_TYPES)} (or the legacy "metadata")`,
  cmd: "a non-empty string (the plugin executable)",
  args: "a list of strings (the plugin's command-line arguments)",
  string: "a string",
  sha256sum: "64 hexadecimal characters (the executable's SHA-256)",
  bool: "a boolean (true or false)",
  envPrefix: 'a string ("" for the default prefix, "none", "*" or a prefix)',
  envVars: "a list of environment variable names",
  envVar: 'an environment variable name (non-empty, without "=" or NUL)',
  mapping: "a mapping",
  fsEvents: "a list of filesystem event names",
  fsEvent: ONE_OF(FS_EVENTS),
  providerEvents: "a list of provider event names",
  providerEvent: ONE_OF(PROVIDER_EVENTS),
  providerObjects: "a list of provider object types",
  providerObject: ONE_OF(PROVIDER_OBJECTS),
  logEvents: "a list of log event codes",
  logEvent:
    "an integer from 1 to 5 (1 login failed, 2 no such user, 3 no login tried, 4 not negotiated, 5 login ok)",
  retryMaxTime: "a non-negative integer (seconds)",
  retryQueueMaxSize: "a non-negative integer (0 for unlimited)",
  scheme: ONE_OF(KMS_SCHEMES),
  encryptedStatus: ONE_OF(KMS_ENCRYPTED_STATUSES),
  int: "an integer",
  scope:
    "an integer from 1 to 15 (bitmask: 1 password, 2 public key, 4 keyboard-interactive, 8 TLS certificate)",
  notifierEvents: "at least one event class: a non-empty fs_events or log_events, " +
    "or both provider_events and provider_objects non-empty",
  runtime: ONE_OF(["auto", "deno", "native"]),
  positiveMs: "a positive integer (milliseconds)",
  healthMs: "a non-negative integer (milliseconds; 0 disables health checks)",
  maxRestarts: "a non-negative integer (0 for unlimited)",
  grant: "a non-empty string without commas",
  pathGrant: "an absolute path (starting with /) without commas",
  netGrant: "host, host:port or unix:/absolute/socket/path, without commas",
  nameList: "a list of non-empty strings",
  pathList: "a list of absolute paths",
  netList: "a list of hosts (host, host:port or unix:/path)",
  id: "a non-negative integer",
} as const;

// ---------------------------------------------------------------------------------------------------------------
// SFTPGo's weak decoding (viper's default mapstructure config: WeaklyTypedInput plus a hook that splits strings
// on "," into slices). `undefined` and `null` decode to the Go zero value, as mapstructure leaves it untouched.

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) &&
    !(v instanceof Date) && !(v instanceof Map) && !(v instanceof Set);
}

function goString(v: unknown): unknown {
  if (v === undefined || v === null) return "";
  if (typeof v === "boolean") return v ? "1" : "0";
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  return v;
}

// strconv.ParseInt(s, 0, 64): optional sign, then 0x / 0o / 0b / leading-0 octal / decimal, with "_" allowed
// only between digits (or after a base prefix).
const GO_INT =
  /^([+-]?)(?:0[xX]((?:_?[0-9a-fA-F])+)|0[bB]((?:_?[01])+)|0[oO]((?:_?[0-7])+)|0((?:_?[0-7])+)|([1-9](?:_?[0-9])*|0))$/;

function parseGoInt(s: string): number | undefined {
  const m = GO_INT.exec(s);
  if (m === null) return undefined;
  const [, sign, hex, bin, oct, oct0, dec] = m;
  const [digits, radix] = hex !== undefined
    ? [hex, 16]
    : bin !== undefined
    ? [bin, 2]
    : oct !== undefined
    ? [oct, 8]
    : oct0 !== undefined
    ? [oct0, 8]
    : [dec, 10];
  const n = parseInt(digits.replaceAll("_", ""), radix) * (sign === "-" ? -1 : 1);
  return Number.isSafeInteger(n) ? n : undefined;
}

function goInt(v: unknown): unknown {
  if (v === undefined || v === null) return 0;
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "bigint" && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) {
    return Number(v);
  }
  if (typeof v === "string") return v === "" ? 0 : parseGoInt(v) ?? v;
  // Fractional numbers stay as they are and fail: mapstructure would truncate 1.5 to 1 silently, which only
  // ever hides a mistake (deliberately stricter than SFTPGo).
  return v;
}

const GO_TRUE = new Set(["1", "t", "T", "TRUE", "true", "True"]);
const GO_FALSE = new Set(["0", "f", "F", "FALSE", "false", "False", ""]);

function goBool(v: unknown): unknown {
  if (v === undefined || v === null) return false;
  if (typeof v === "number") return v !== 0;
  if (typeof v === "string") return GO_TRUE.has(v) ? true : GO_FALSE.has(v) ? false : v;
  return v;
}

function goSlice(v: unknown): unknown {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v;
  if (typeof v === "string") return v === "" ? [] : v.split(",");
  if (isPlainObject(v)) return Object.keys(v).length === 0 ? [] : [v];
  return [v];
}

// ---------------------------------------------------------------------------------------------------------------
// Schema. SFTPGo keys use the weak decoders above; `tether:` keys are strict (null still means "use the default").

const E = (expected: string) => ({ error: expected });

const sgString = (expected: string) => z.preprocess(goString, z.string(E(expected)));
const sgInt = (expected: string) => z.preprocess(goInt, z.int(E(expected)));
const sgNonNegInt = (expected: string) => z.preprocess(goInt, z.int(E(expected)).min(0, E(expected)));
const sgBool = (expected: string) => z.preprocess(goBool, z.boolean(E(expected)));
const sgList = <T extends z.ZodType>(item: T, expected: string) =>
  z.preprocess(goSlice, z.array(item, E(expected)));
const sgStruct = <S extends z.ZodRawShape>(shape: S, expected: string) =>
  z.preprocess((v) => v ?? {}, z.object(shape, E(expected)));
const sgEnum = (values: readonly string[], expected: string) =>
  z.preprocess(goString, z.enum(values as [string, ...string[]], E(expected)));

const notifierShape = {
  fs_events: sgList(sgEnum(FS_EVENTS, X.fsEvent), X.fsEvents),
  provider_events: sgList(sgEnum(PROVIDER_EVENTS, X.providerEvent), X.providerEvents),
  provider_objects: sgList(sgEnum(PROVIDER_OBJECTS, X.providerObject), X.providerObjects),
  log_events: sgList(
    z.preprocess(goInt, z.int(E(X.logEvent)).min(1, E(X.logEvent)).max(5, E(X.logEvent))),
    X.logEvents,
  ),
  retry_max_time: sgNonNegInt(X.retryMaxTime),
  retry_queue_max_size: sgNonNegInt(X.retryQueueMaxSize),
};

// scheme, encrypted_status and scope are only checked for their own plugin type: SFTPGo ignores them elsewhere,
// and configs dumped by SFTPGo carry zero values ("" and 0) in every plugin entry.
const kmsShape = {
  scheme: sgString(X.string),
  encrypted_status: sgString(X.string),
};

const authShape = {
  scope: sgInt(X.int),
};

/** Drops null values so `key:` with nothing after it means "default", as it does for the SFTPGo keys. */
const strictStruct = <S extends z.ZodRawShape>(shape: S) =>
  z.preprocess(
    (v) =>
      v === undefined || v === null
        ? {}
        : isPlainObject(v)
        ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null))
        : v,
    z.object(shape, E(X.mapping)),
  );

// Grants become `--allow-<kind>=a,b` flags, so a comma would split one grant into two; and the permission
// broker (src/permissions.ts) only accepts absolute paths, so relative ones are caught here, with a position.
const grant = z.string(E(X.grant)).min(1, E(X.grant)).regex(/^[^,]*$/, E(X.grant));
const pathGrant = grant.refine((v) => v.startsWith("/"), E(X.pathGrant));
const netGrant = grant.refine((v) => !v.startsWith("unix:") || v.startsWith("unix:/"), E(X.netGrant));
const grantList = (item: z.ZodType<string>, expected: string) => z.array(item, E(expected));
const grantOrBool = (item: z.ZodType<string>, expected: string) =>
  z.union([z.boolean(), grantList(item, expected)], E(`true, false or ${expected}`));

const permissionsShape = {
  read: grantList(pathGrant, X.pathList).default([]),
  write: grantList(pathGrant, X.pathList).default([]),
  net: grantList(netGrant, X.netList).default([]),
  env: grantList(grant, X.nameList).default([]),
  sys: grantOrBool(grant, X.nameList).default([]),
  run: grantOrBool(grant, X.nameList).default([]),
  ffi: grantOrBool(pathGrant, X.pathList).default([]),
  import: grantList(grant, X.nameList).default([]),
  all: z.boolean(E(X.bool)).default(false),
};

const restartShape = {
  initial_backoff_ms: z.int(E(X.positiveMs)).min(1, E(X.positiveMs)).default(250),
  max_backoff_ms: z.int(E(X.positiveMs)).min(1, E(X.positiveMs)).default(30_000),
  max_restarts: z.int(E(X.maxRestarts)).min(0, E(X.maxRestarts)).default(0),
};

const tetherShape = {
  runtime: z.enum(["auto", "deno", "native"], E(X.runtime)).default("auto"),
  start_timeout_ms: z.int(E(X.positiveMs)).min(1, E(X.positiveMs)).default(60_000),
  call_timeout_ms: z.int(E(X.positiveMs)).min(1, E(X.positiveMs)).default(20_000),
  restart: strictStruct(restartShape),
  health_check_interval_ms: z.int(E(X.healthMs)).min(0, E(X.healthMs)).default(5_000),
  permissions: strictStruct(permissionsShape),
  allow_broad_permissions: z.boolean(E(X.bool)).default(false),
  uid: z.int(E(X.id)).min(0, E(X.id)).optional(),
  gid: z.int(E(X.id)).min(0, E(X.id)).optional(),
};

const pluginShape = {
  type: sgEnum(PLUGIN_TYPES, X.type),
  notifier_options: sgStruct(notifierShape, X.mapping),
  kms_options: sgStruct(kmsShape, X.mapping),
  auth_options: sgStruct(authShape, X.mapping),
  cmd: z.preprocess(goString, z.string(E(X.cmd)).min(1, E(X.cmd))),
  args: sgList(sgString(X.string), X.args),
  sha256sum: z.preprocess(goString, z.string(E(X.sha256sum)).regex(/^(?:[0-9a-fA-F]{64})?$/, E(X.sha256sum))),
  auto_mtls: sgBool(X.bool),
  env_prefix: sgString(X.envPrefix),
  env_vars: sgList(
    z.preprocess(goString, z.string(E(X.envVar)).regex(/^[^=\0]+$/, E(X.envVar))),
    X.envVars,
  ),
  tether: strictStruct(tetherShape),
};

/** Known keys per mapping, for unknown-key warnings; derived from the schema so they cannot drift. */
interface KeyTree {
  keys: readonly string[];
  children: Record<string, KeyTree>;
}
const leafTree = (shape: object): KeyTree => ({ keys: Object.keys(shape), children: {} });
const PLUGIN_KEYS: KeyTree = {
  keys: Object.keys(pluginShape),
  children: {
    notifier_options: leafTree(notifierShape),
    kms_options: leafTree(kmsShape),
    auth_options: leafTree(authShape),
    tether: {
      keys: Object.keys(tetherShape),
      children: { restart: leafTree(restartShape), permissions: leafTree(permissionsShape) },
    },
  },
};

type DecodedPlugin = z.output<z.ZodObject<typeof pluginShape>>;

interface IssueParams {
  /** Overrides the description of the value found. */
  found?: string;
  /** Extra advice; `{ref}` is replaced with the referenced entry and its line. */
  hint?: string;
  /** Path (relative to the plugins list) of an earlier, conflicting definition. */
  ref?: (string | number)[];
}

function custom(ctx: z.RefinementCtx, path: (string | number)[], expected: string, params: IssueParams = {}) {
  ctx.addIssue({ code: "custom", message: expected, path, params: { ...params } });
}

const hasGrant = (g: string[] | boolean) => g === true || (Array.isArray(g) && g.length > 0);

function checkTypeOptions(p: DecodedPlugin, ctx: z.RefinementCtx): void {
  switch (p.type) {
    case "notifier": {
      const n = p.notifier_options;
      const provider = n.provider_events.length > 0 && n.provider_objects.length > 0;
      if (n.fs_events.length === 0 && n.log_events.length === 0 && !provider) {
        const found = n.provider_events.length > 0
          ? "provider_events without provider_objects"
          : n.provider_objects.length > 0
          ? "provider_objects without provider_events"
          : "no events";
        custom(ctx, ["notifier_options"], X.notifierEvents, {
          found,
          hint: "SFTPGo refuses to start a notifier that receives nothing",
        });
      }
      break;
    }
    case "kms": {
      const k = p.kms_options;
      if (!(KMS_SCHEMES as readonly string[]).includes(k.scheme)) {
        custom(ctx, ["kms_options", "scheme"], X.scheme, { hint: suggest(k.scheme, KMS_SCHEMES) });
      }
      if (!(KMS_ENCRYPTED_STATUSES as readonly string[]).includes(k.encrypted_status)) {
        custom(ctx, ["kms_options", "encrypted_status"], X.encryptedStatus, {
          hint: suggest(k.encrypted_status, KMS_ENCRYPTED_STATUSES),
        });
      }
      break;
    }
    case "auth":
      // SFTPGo only rejects 0 and > 15, so a negative scope slips through and claims every login method;
      // Tether rejects it.
      if (p.auth_options.scope < 1 || p.auth_options.scope > 15) {
        custom(ctx, ["auth_options", "scope"], X.scope);
      }
      break;
  }
}

function checkTether(p: DecodedPlugin, ctx: z.RefinementCtx): void {
  const t = p.tether;
  const runtime = resolveRuntime(p.cmd, t.runtime);
  const why = t.runtime === "auto" ? `cmd ${JSON.stringify(p.cmd)} resolves to runtime ${runtime}` : "";
  const perms = t.permissions;
  const granted = (Object.keys(permissionsShape) as (keyof typeof perms)[])
    .filter((k) => k === "all" ? perms.all : hasGrant(perms[k]));
  if (runtime !== "deno" && granted.length > 0) {
    custom(ctx, ["tether", "permissions"], "no permissions (they only apply to runtime deno)", {
      found: `grants for ${granted.join(", ")}`,
      hint: why !== ""
        ? `${why}; set "runtime: deno" in this plugin's tether mapping if it is a Deno script`
        : 'set "runtime: deno" or remove the permissions',
    });
  } else if (!t.allow_broad_permissions) {
    for (const k of ["run", "ffi", "all"] as const) {
      if (k === "all" ? perms.all : hasGrant(perms[k])) {
        custom(ctx, ["tether", "permissions", k], `no ${k} grant unless allow_broad_permissions is true`, {
          hint: `a ${k} grant lets the plugin escape Deno's sandbox; if that is intended, ` +
            `add "allow_broad_permissions: true" to this plugin's tether mapping`,
        });
      }
    }
  }
  for (const k of ["uid", "gid"] as const) {
    if (t[k] !== undefined && runtime !== "native") {
      custom(ctx, ["tether", k], `${k} only for a native plugin`, {
        hint: why !== "" ? why : `runtime is ${runtime}; uid and gid apply only to native executables`,
      });
    }
  }
  if (t.restart.max_backoff_ms < t.restart.initial_backoff_ms) {
    custom(
      ctx,
      ["tether", "restart", "max_backoff_ms"],
      `an integer no smaller than initial_backoff_ms (${t.restart.initial_backoff_ms})`,
    );
  }
}

function checkAcrossPlugins(plugins: DecodedPlugin[], ctx: z.RefinementCtx): void {
  const schemes = new Map<string, number>();
  const statuses = new Map<string, number>();
  let searcher: number | undefined;
  plugins.forEach((p, i) => {
    if (p.type === "kms") {
      for (
        const [seen, key, value] of [
          [schemes, "scheme", p.kms_options.scheme],
          [statuses, "encrypted_status", p.kms_options.encrypted_status],
        ] as const
      ) {
        const first = seen.get(value);
        if (first === undefined) {
          seen.set(value, i);
        } else {
          custom(
            ctx,
            [i, "kms_options", key],
            `${key === "scheme" ? "a" : "an"} ${key} not used by another kms plugin`,
            {
              hint: `already used by {ref}`,
              ref: [first, "kms_options", key],
            },
          );
        }
      }
    } else if (p.type === "eventsearcher") {
      if (searcher === undefined) {
        searcher = i;
      } else {
        custom(ctx, [i, "type"], "at most one eventsearcher plugin", {
          found: "a second one",
          hint: "the first is {ref}",
          ref: [searcher],
        });
      }
    }
  });
}

// zod skips refinements once an object has any issue; these run anyway as long as the fields they read decoded,
// so one pass reports everything (an error in `args` does not hide a bad `auth_options.scope`).
type Payload = { issues: readonly { path?: readonly PropertyKey[] }[]; value: unknown };
const TYPE_OPTIONS: Record<string, string> = {
  notifier: "notifier_options",
  kms: "kms_options",
  auth: "auth_options",
};
const decoded = (payload: Payload, depth: number, keys: readonly PropertyKey[]) =>
  !payload.issues.some((issue) => keys.includes(issue.path?.[depth] ?? ""));

const pluginSchema = z.object(pluginShape, E(X.plugin))
  .superRefine(checkTypeOptions, {
    when: (payload) => {
      const type = isPlainObject(payload.value) ? String(payload.value.type) : "";
      return isPlainObject(payload.value) && decoded(payload, 0, ["type", TYPE_OPTIONS[type] ?? "type"]);
    },
  })
  .superRefine(checkTether, {
    when: (payload) => isPlainObject(payload.value) && decoded(payload, 0, ["cmd", "tether"]),
  });
const pluginsSchema = z.preprocess(
  goSlice,
  z.array(pluginSchema, E("a list of plugins")).superRefine(checkAcrossPlugins, {
    when: (payload) =>
      Array.isArray(payload.value) && payload.value.every(isPlainObject) &&
      decoded(payload, 1, ["type", "kms_options"]) &&
      !payload.issues.some((issue) => (issue.path?.length ?? 0) <= 1),
  }),
);

// ---------------------------------------------------------------------------------------------------------------
// Validation pipeline

type PathSeg = string | number;

interface Position {
  line: number;
  column: number;
}

/** Maps paths (relative to the plugins list) to positions in the source. */
interface Locator {
  readonly file: string;
  /** Sets the path from the document root to the plugins list. */
  setRoot(root: PathSeg[]): void;
  /** Position of the value at `path`, or of the nearest enclosing node that exists. */
  value(path: PathSeg[]): Position;
  /** Position of the key `key` inside the mapping at `path`. */
  key(path: PathSeg[], key: string): Position;
}

class NullLocator implements Locator {
  constructor(readonly file: string) {}
  setRoot(): void {}
  value(): Position {
    return { line: 0, column: 0 };
  }
  key(): Position {
    return { line: 0, column: 0 };
  }
}

class DocLocator implements Locator {
  #root: PathSeg[] = [];
  constructor(
    readonly doc: Document,
    readonly lineCounter: LineCounter,
    readonly file: string,
  ) {}

  setRoot(root: PathSeg[]): void {
    this.#root = root;
  }

  value(path: PathSeg[]): Position {
    const { node, pair } = this.#walk([...this.#root, ...path]);
    // `key:` with nothing after it has an empty value node; point at the key instead.
    const empty = isScalar(node) && node.range !== undefined && node.range !== null &&
      node.range[0] === node.range[1];
    if (empty && pair !== undefined && isScalar(pair.key)) return this.#pos(pair.key);
    return this.#pos(node);
  }

  key(path: PathSeg[], key: string): Position {
    const { node } = this.#walk([...this.#root, ...path]);
    const pair = isMap(node) ? this.#findPair(node, key) : undefined;
    return this.#pos(pair !== undefined && isScalar(pair.key) ? pair.key : node);
  }

  #pos(node: unknown): Position {
    const range = (node as YamlNode | null)?.range;
    if (range === undefined || range === null) return { line: 1, column: 1 };
    const { line, col } = this.lineCounter.linePos(range[0]);
    return { line, column: col };
  }

  #resolve(node: unknown): unknown {
    let n = node;
    for (let i = 0; i < 100 && isAlias(n); i++) n = n.resolve(this.doc);
    return n;
  }

  /** Follows `path` as far as it exists, matching keys case-insensitively and through `<<` merges like SFTPGo. */
  #walk(path: PathSeg[]): { node: unknown; pair?: Pair } {
    let node: unknown = this.doc.contents;
    let pair: Pair | undefined;
    for (const seg of path) {
      const n = this.#resolve(node);
      if (typeof seg === "number") {
        if (isSeq(n) && n.items[seg] !== undefined) {
          node = n.items[seg];
          pair = undefined;
          continue;
        }
        // A single mapping (or scalar) where a list was expected is lifted into a one-item list, as
        // mapstructure does; item 0 is the value itself.
        if (!isSeq(n) && seg === 0) continue;
        break;
      }
      if (!isMap(n)) break;
      const found = this.#findPair(n, seg);
      if (found === undefined) break;
      pair = found;
      node = found.value ?? found.key;
    }
    return { node: this.#resolve(node), pair };
  }

  #findPair(map: unknown, key: string, depth = 0): Pair | undefined {
    if (!isMap(map) || depth > 20) return undefined;
    const lower = key.toLowerCase();
    const pairs = map.items as Pair[];
    const direct = pairs.find((p) => isScalar(p.key) && p.key.value === key) ??
      pairs.find((p) => isScalar(p.key) && String(p.key.value).toLowerCase() === lower);
    if (direct !== undefined) return direct;
    for (const p of pairs) {
      if (!isScalar(p.key) || (p.key.value !== "<<" && typeof p.key.value !== "symbol")) continue;
      const sources = isSeq(p.value) ? p.value.items : [p.value];
      for (const source of sources) {
        const hit = this.#findPair(this.#resolve(source), key, depth + 1);
        if (hit !== undefined) return hit;
      }
    }
    return undefined;
  }
}

function formatPath(path: readonly PathSeg[]): string {
  let out = "plugins";
  for (const seg of path) out += typeof seg === "number" ? `[${seg}]` : `.${seg}`;
  return out;
}

function formatLocation(file: string, line: number, column: number): string {
  return line > 0 ? `${file}:${line}:${column}` : file;
}

function formatError(init: ConfigErrorInit): string {
  const detail = init.detail ??
    `expected ${init.expected}, found ${init.found}${init.hint ? ` (${init.hint})` : ""}`;
  return `${formatLocation(init.file, init.line, init.column)}: ${
    init.path ? `${init.path}: ` : ""
  }${detail}`;
}

function sortWarnings(warnings: ConfigWarning[]): ConfigWarning[] {
  return warnings.sort((a, b) => a.line - b.line || a.column - b.column);
}

function makeWarning(
  file: string,
  line: number,
  column: number,
  path: string,
  message: string,
): ConfigWarning {
  return {
    file,
    line,
    column,
    path,
    message,
    text: `${formatLocation(file, line, column)}: ${path ? `${path}: ` : ""}${message}`,
  };
}

function aggregate(errors: ConfigError[], warnings: ConfigWarning[] = []): ConfigError {
  // Stable sort: errors without positions keep the schema's (document) order.
  const sorted = [...errors].sort((a, b) => a.line - b.line || a.column - b.column);
  const first = sorted[0];
  first.errors = sorted;
  first.warnings = warnings;
  if (sorted.length > 1) first.message = sorted.map((e) => e.message).join("\n");
  return first;
}

/** A short, unambiguous description of a value for "found ...". */
function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null (an empty value)";
  if (typeof v === "string") return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  let json: string;
  try {
    json = JSON.stringify(v) ?? String(v);
  } catch {
    json = String(v);
  }
  if (json.length > 60) json = `${json.slice(0, 57)}...`;
  if (Array.isArray(v)) return `a list ${json}`;
  if (isPlainObject(v)) return `a mapping ${json}`;
  return json;
}

/**
 * The raw value at `path`. `missing` says the walk stopped at an absent key (found "nothing"); otherwise a
 * failed walk means the value was reshaped by weak decoding (e.g. a comma-separated string split into a list).
 */
function valueAt(
  root: unknown,
  path: readonly PathSeg[],
): { exists: boolean; missing: boolean; value: unknown } {
  let v = root;
  for (const seg of path) {
    if (typeof seg === "number") {
      if (Array.isArray(v)) {
        if (seg >= v.length) return { exists: false, missing: false, value: undefined };
        v = v[seg];
      } else if (seg !== 0 || v === undefined || v === null) {
        return { exists: false, missing: false, value: undefined };
      } // else: a single value lifted into a one-item list stays itself
    } else {
      if (v === undefined || v === null || (isPlainObject(v) && !Object.hasOwn(v, seg))) {
        return { exists: false, missing: true, value: undefined };
      }
      if (!isPlainObject(v)) return { exists: false, missing: false, value: undefined };
      v = v[seg];
    }
  }
  return { exists: true, missing: false, value: v };
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = above;
    }
  }
  return row[b.length];
}

/** The candidate closest to `input` (case-insensitive, at most 2 edits), if it is close enough to be a typo. */
function nearest(input: unknown, candidates: readonly unknown[]): string | undefined {
  if (typeof input !== "string" || input === "") return undefined;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    if (typeof c !== "string") continue;
    const d = editDistance(input.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  const limit = Math.min(2, Math.max(1, Math.floor(input.length / 3)));
  return bestDistance <= limit ? best : undefined;
}

/** `did you mean "x"?` for a near miss, else undefined. */
function suggest(input: unknown, candidates: readonly unknown[]): string | undefined {
  const best = nearest(input, candidates);
  return best === undefined ? undefined : `did you mean ${JSON.stringify(best)}?`;
}

interface Context {
  locator: Locator;
  errors: ConfigError[];
  warnings: ConfigWarning[];
  /** Unknown keys that look like misspellings, by the formatted path of the key they probably meant. */
  misspelt: Map<string, { key: string; line: number }>;
}

function warnAt(ctx: Context, pos: Position, path: PathSeg[], message: string) {
  ctx.warnings.push(makeWarning(ctx.locator.file, pos.line, pos.column, formatPath(path), message));
}

/**
 * Lowercases every key, as viper does before decoding; two keys that differ only in case are an error because
 * SFTPGo would keep one of them at random.
 */
function normalizeKeys(value: unknown, path: PathSeg[], ctx: Context): unknown {
  if (Array.isArray(value)) return value.map((v, i) => normalizeKeys(v, [...path, i], ctx));
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  const seen = new Map<string, string>();
  for (const [key, v] of Object.entries(value)) {
    const lower = key.toLowerCase();
    const previous = seen.get(lower);
    if (previous !== undefined) {
      const pos = ctx.locator.key(path, key);
      ctx.errors.push(
        new ConfigError({
          file: ctx.locator.file,
          ...pos,
          path: formatPath([...path, lower]),
          expected: "each key once (SFTPGo compares keys case-insensitively)",
          found: `both ${JSON.stringify(previous)} and ${JSON.stringify(key)}`,
        }),
      );
      continue;
    }
    seen.set(lower, key);
    // defineProperty, not assignment, so a "__proto__" key is data rather than a prototype change.
    Object.defineProperty(out, lower, {
      value: normalizeKeys(v, [...path, lower], ctx),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function unknownKeyWarnings(value: unknown, tree: KeyTree, path: PathSeg[], ctx: Context): void {
  if (!isPlainObject(value)) return;
  for (const [key, v] of Object.entries(value)) {
    if (tree.keys.includes(key)) {
      const child = tree.children[key];
      if (child !== undefined) unknownKeyWarnings(v, child, [...path, key], ctx);
      continue;
    }
    // A key that belongs one level down (e.g. `scope` next to `type`, or `runtime` outside `tether:`) is the
    // most common slip, so name where it goes.
    const home = Object.entries(tree.children).find(([, c]) => c.keys.includes(key))?.[0];
    const meant = home === undefined ? nearest(key, tree.keys) : undefined;
    const hint = home !== undefined
      ? `did you mean ${home}.${key}?`
      : meant !== undefined
      ? `did you mean ${JSON.stringify(meant)}?`
      : undefined;
    const pos = ctx.locator.key(path, key);
    if (meant !== undefined) ctx.misspelt.set(formatPath([...path, meant]), { key, line: pos.line });
    warnAt(
      ctx,
      pos,
      [...path, key],
      `unknown key${hint ? ` (${hint})` : ""}; SFTPGo ignores it and so does Tether`,
    );
  }
}

function issueToError(issue: z.core.$ZodIssue, raw: unknown, ctx: Context): ConfigError {
  const path = issue.path.filter((s): s is PathSeg => typeof s !== "symbol");
  const params: IssueParams = issue.code === "custom" ? (issue.params ?? {}) as IssueParams : {};
  const at = valueAt(raw, path);
  // Custom issues carry the whole object being refined as input, so only schema issues may fall back to it.
  const input = at.exists || at.missing || issue.code === "custom"
    ? at.value
    : (issue as { input?: unknown }).input;
  const found = params.found ?? describe(input);
  let hint = params.hint;
  if (hint === undefined && issue.code === "invalid_value") hint = suggest(input, issue.values);
  const misspelt = input === undefined ? ctx.misspelt.get(formatPath(path)) : undefined;
  if (hint === undefined && misspelt !== undefined) {
    hint = `${JSON.stringify(misspelt.key)}${misspelt.line > 0 ? ` at line ${misspelt.line}` : ""} ` +
      "looks like a misspelling of it";
  }
  if (hint !== undefined && params.ref !== undefined) {
    const ref = ctx.locator.value(params.ref);
    const name = formatPath(params.ref.filter((s) => typeof s === "number"));
    hint = hint.replace("{ref}", ref.line > 0 ? `${name} at line ${ref.line}` : name);
  }
  const pos = ctx.locator.value(path);
  return new ConfigError({
    file: ctx.locator.file,
    ...pos,
    path: formatPath(path),
    expected: issue.message,
    found,
    ...(hint !== undefined ? { hint } : {}),
  });
}

function isZeroNotifier(n: DecodedPlugin["notifier_options"]): boolean {
  return n.fs_events.length === 0 && n.provider_events.length === 0 && n.provider_objects.length === 0 &&
    n.log_events.length === 0 && n.retry_max_time === 0 && n.retry_queue_max_size === 0;
}

function toPluginConfig(p: DecodedPlugin, index: number, ctx: Context): PluginConfig {
  const t = p.tether;
  const permission = (g: string[] | boolean): string[] | boolean => g === false ? [] : g;
  const tether: TetherOptions = {
    runtime: resolveRuntime(p.cmd, t.runtime),
    startTimeoutMs: t.start_timeout_ms,
    callTimeoutMs: t.call_timeout_ms,
    restart: {
      initialBackoffMs: t.restart.initial_backoff_ms,
      maxBackoffMs: t.restart.max_backoff_ms,
      maxRestarts: t.restart.max_restarts,
    },
    healthCheckIntervalMs: t.health_check_interval_ms,
    permissions: {
      read: t.permissions.read,
      write: t.permissions.write,
      net: t.permissions.net,
      env: t.permissions.env,
      sys: permission(t.permissions.sys),
      run: permission(t.permissions.run),
      ffi: permission(t.permissions.ffi),
      import: t.permissions.import,
      all: t.permissions.all,
    },
    allowBroadPermissions: t.allow_broad_permissions,
    ...(t.uid !== undefined ? { uid: t.uid } : {}),
    ...(t.gid !== undefined ? { gid: t.gid } : {}),
  };
  const pos = ctx.locator.value([index]);
  const config: PluginConfig = {
    type: p.type as PluginType,
    cmd: p.cmd,
    args: p.args,
    ...(p.sha256sum !== "" ? { sha256sum: p.sha256sum.toLowerCase() } : {}),
    autoMtls: p.auto_mtls,
    envPrefix: p.env_prefix,
    envVars: p.env_vars,
    tether,
    source: { file: ctx.locator.file, line: pos.line, column: pos.column, index },
  };
  const n = p.notifier_options;
  if (p.type === "notifier") {
    config.notifierOptions = {
      fsEvents: n.fs_events,
      providerEvents: n.provider_events,
      providerObjects: n.provider_objects,
      logEvents: n.log_events,
      retryMaxTime: n.retry_max_time,
      retryQueueMaxSize: n.retry_queue_max_size,
    };
  } else if (!isZeroNotifier(n)) {
    warnAt(ctx, ctx.locator.value([index, "notifier_options"]), [index, "notifier_options"], ignored(p.type));
  }
  if (p.type === "kms") {
    config.kmsOptions = {
      scheme: p.kms_options.scheme as KmsScheme,
      encryptedStatus: p.kms_options.encrypted_status as KmsEncryptedStatus,
    };
  } else if (p.kms_options.scheme !== "" || p.kms_options.encrypted_status !== "") {
    warnAt(ctx, ctx.locator.value([index, "kms_options"]), [index, "kms_options"], ignored(p.type));
  }
  if (p.type === "auth") {
    config.authOptions = { scope: p.auth_options.scope };
  } else if (p.auth_options.scope !== 0) {
    warnAt(ctx, ctx.locator.value([index, "auth_options"]), [index, "auth_options"], ignored(p.type));
  }
  if (p.type === "metadata") {
    warnAt(
      ctx,
      ctx.locator.value([index, "type"]),
      [index, "type"],
      'legacy type "metadata": SFTPGo 2.6 and later refuse to start with it; Tether still hosts it',
    );
  }
  p.env_vars.forEach((name, i) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      warnAt(
        ctx,
        ctx.locator.value([index, "env_vars", i]),
        [index, "env_vars", i],
        `${JSON.stringify(name)} is not a portable environment variable name (letters, digits and "_", ` +
          "not starting with a digit)",
      );
    }
  });
  return config;
}

function ignored(type: string): string {
  return `ignored for type ${JSON.stringify(type)} (SFTPGo reads these options only for that plugin type)`;
}

/** Warnings about how several plugins combine, following SFTPGo's dispatch rules. */
function combinationWarnings(configs: PluginConfig[], ctx: Context): void {
  const ipfilters = configs.filter((c) => c.type === "ipfilter");
  const last = ipfilters.at(-1);
  for (const c of ipfilters.slice(0, -1)) {
    const i = c.source.index;
    warnAt(
      ctx,
      ctx.locator.value([i, "type"]),
      [i, "type"],
      `only the last ipfilter plugin is used (${formatPath([last!.source.index])}` +
        `${
          last!.source.line > 0 ? ` at line ${last!.source.line}` : ""
        }); this one is started but never asked`,
    );
  }
  // Each login method goes to the first auth plugin whose scope has its bit, with no fallthrough.
  let covered = 0;
  for (const c of configs) {
    if (c.authOptions === undefined) continue;
    const scope = c.authOptions.scope;
    if ((scope & ~covered) === 0) {
      const i = c.source.index;
      warnAt(
        ctx,
        ctx.locator.value([i, "auth_options", "scope"]),
        [i, "auth_options", "scope"],
        `every method in scope ${scope} is already handled by an earlier auth plugin, so this one is never called`,
      );
    }
    covered |= scope;
  }
}

function validate(value: unknown, locator: Locator): PluginConfigList {
  const ctx: Context = { locator, errors: [], warnings: [], misspelt: new Map() };
  let plugins: unknown;
  if (value === undefined || value === null || Array.isArray(value)) {
    plugins = value;
  } else if (isPlainObject(value)) {
    // viper matches the top-level key case-insensitively too.
    const key = Object.keys(value).find((k) => k.toLowerCase() === "plugins");
    if (key === undefined) {
      const keys = Object.keys(value).map((k) => k.toLowerCase());
      const looksLikePlugin = keys.includes("type") && keys.includes("cmd");
      const pos = locator.value([]);
      ctx.warnings.push(makeWarning(
        locator.file,
        pos.line,
        pos.column,
        "",
        'no "plugins" key, so no plugins are configured' +
          (looksLikePlugin ? ' (this looks like a single plugin: put it in a list under "plugins:")' : ""),
      ));
      plugins = [];
    } else {
      locator.setRoot([key]);
      plugins = value[key];
    }
  } else {
    const pos = locator.value([]);
    throw new ConfigError({
      file: locator.file,
      ...pos,
      path: "",
      expected: 'a list of plugins, or a mapping with a "plugins" key',
      found: describe(value),
    });
  }

  const normalized = normalizeKeys(plugins, [], ctx);
  const entries = Array.isArray(normalized)
    ? normalized
    : isPlainObject(normalized) && Object.keys(normalized).length > 0
    ? [normalized]
    : [];
  entries.forEach((entry, i) => unknownKeyWarnings(entry, PLUGIN_KEYS, [i], ctx));

  const result = pluginsSchema.safeParse(normalized, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) ctx.errors.push(issueToError(issue, normalized, ctx));
  }
  if (ctx.errors.length > 0 || !result.success) throw aggregate(ctx.errors, sortWarnings(ctx.warnings));

  const configs = result.data.map((p, i) => toPluginConfig(p, i, ctx));
  combinationWarnings(configs, ctx);
  return Object.assign(configs, { warnings: sortWarnings(ctx.warnings) });
}
