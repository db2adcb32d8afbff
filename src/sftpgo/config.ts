/**
 * Loads the `plugins:` section of an SFTPGo configuration, the same file an SFTPGo user already has, with
 * SFTPGo's field names, defaults and rules, plus Tether's optional per-plugin `tether:` mapping.
 *
 * Accepted documents (YAML 1.2, so JSON too, and TOML 1.0, with line and column positions in each):
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
 * - `cmd` must not start with `-` (it would read as a flag);
 * - every `*_ms` option is at most 2^31-1 ms and `retry_max_time` at most 2147483 s (a longer JavaScript timer
 *   fires at once);
 * - permission entries are checked by `validatePermissionEntries` (src/permissions.ts), the check every layer
 *   calls: no list separator, no leading `-`.
 *
 * `runtime: auto` is resolved by `runtimeFor` (src/launch.ts), the one rule every layer uses.
 *
 * SFTPGo's `SFTPGO_PLUGINS__<n>__<KEY>` environment overrides are applied when an `env` is passed
 * (see config/env_overrides.ts for SFTPGo's rules); errors in them name the variable. HCL, INI, .env and
 * properties files are refused with a message saying why.
 *
 * The implementation is split by concern under `config/`: `types.ts` (the public vocabulary), `decode.ts`
 * (viper's weak decoding), `schema.ts`, `locate.ts` and `toml.ts` (positions), `env_overrides.ts`,
 * `validate.ts` and `load.ts` (the entry points).
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

export {
  AuthScope,
  ConfigError,
  FS_EVENTS,
  KMS_ENCRYPTED_STATUSES,
  KMS_SCHEMES,
  LogEvent,
  PLUGIN_TYPES,
  PROVIDER_EVENTS,
  PROVIDER_OBJECTS,
} from "./config/types.ts";
export type {
  AuthOptions,
  ConfigErrorInit,
  ConfigWarning,
  KmsEncryptedStatus,
  KmsOptions,
  KmsScheme,
  NotifierOptions,
  PluginConfig,
  PluginConfigList,
  PluginSource,
  PluginType,
  RestartOptions,
  TetherOptions,
} from "./config/types.ts";
export {
  type ConfigLoadOptions,
  loadPluginsConfig,
  parsePluginsConfig,
  validatePluginsConfig,
} from "./config/load.ts";
export { MAX_RETRY_SECONDS, MAX_TIMER_MS } from "./config/schema.ts";
