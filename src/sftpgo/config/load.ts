/**
 * The loader's entry points: text (YAML, JSON, TOML) or an already-parsed value in, validated
 * `PluginConfig`s out, with SFTPGo's environment overrides applied when asked.
 *
 * @module
 */

import { LineCounter, parseDocument } from "yaml";
import { DocLocator, NullLocator } from "./locate.ts";
import { aggregate, makeWarning, sortWarnings } from "./text.ts";
import { parseTomlDocument } from "./toml.ts";
import { ConfigError, type PluginConfigList } from "./types.ts";
import { validate } from "./validate.ts";

/**
 * Options for {@linkcode parsePluginsConfig} and {@linkcode loadPluginsConfig}.
 *
 * @example
 * ```ts
 * import type { ConfigLoadOptions } from "../config.ts";
 * const options: ConfigLoadOptions = { format: "toml", env: { SFTPGO_PLUGINS__0__CMD: "/opt/auth" } };
 * ```
 */
export interface ConfigLoadOptions {
  /** The text's format; default from the file name (`.toml` is TOML, anything else YAML, which covers JSON). */
  format?: "yaml" | "json" | "toml";
  /**
   * The environment to read SFTPGo's `SFTPGO_PLUGINS__<n>__<KEY>` overrides from, as SFTPGo does after
   * reading its file; none are applied when absent. Errors in them name the variable.
   */
  env?: Record<string, string>;
}

function formatOf(file: string): "yaml" | "toml" {
  return /\.toml$/i.test(file) ? "toml" : "yaml";
}

const CONVERT = "put the plugins section in sftpgo.yaml, sftpgo.json or sftpgo.toml";
// Formats viper reads but Tether does not, and why.
const UNSUPPORTED_FORMATS: Record<string, string> = {
  hcl: "SFTPGo's viper reads HCL 1, for which no maintained parser exists on npm, so Tether does not read " +
    `HCL; ${CONVERT}`,
  tfvars: `HCL is not read by Tether; ${CONVERT}`,
  ini: `an INI file cannot hold the plugins list (a list of mappings); ${CONVERT}, or use ` +
    "SFTPGO_PLUGINS__<n>__<KEY> environment variables",
  env:
    "a .env file cannot hold the plugins list; set SFTPGO_PLUGINS__<n>__<KEY> environment variables instead",
  dotenv:
    "a .env file cannot hold the plugins list; set SFTPGO_PLUGINS__<n>__<KEY> environment variables instead",
  properties: `a properties file cannot hold the plugins list (a list of mappings); ${CONVERT}`,
  props: `a properties file cannot hold the plugins list (a list of mappings); ${CONVERT}`,
  prop: `a properties file cannot hold the plugins list (a list of mappings); ${CONVERT}`,
};

/**
 * Parses and validates a YAML, JSON or TOML document holding SFTPGo plugin configuration.
 *
 * @param text A full SFTPGo config, a `plugins:` document, or a bare list of plugins.
 * @param file The name used in messages (default `<inline>`); a `.toml` name selects TOML.
 * @param options The format (default: from `file`'s extension) and the environment for overrides.
 * @returns The plugins in file order; `warnings` holds non-fatal findings.
 * @throws {ConfigError} The first problem in file order; its `errors` has all of them.
 *
 * @example
 * ```ts
 * import { parsePluginsConfig } from "../config.ts";
 * const [kms] = parsePluginsConfig(`{"plugins": [{"type": "kms", "cmd": "/bin/kms",
 *   "kms_options": {"scheme": "hashivault", "encrypted_status": "VaultTransit"}}]}`, "sftpgo.json");
 * console.log(kms.kmsOptions?.scheme, kms.source.line); // hashivault 1
 * ```
 */
export function parsePluginsConfig(
  text: string,
  file: string = "<inline>",
  options: ConfigLoadOptions = {},
): PluginConfigList {
  const format = options.format ?? formatOf(file);
  if (format === "toml") {
    const { value, locator } = parseTomlDocument(text, file);
    return validate(value, locator, options.env);
  }
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
  const list = validate(value, locator, options.env);
  for (const w of doc.warnings) {
    const pos = lineCounter.linePos(w.pos[0]);
    list.warnings.push(makeWarning(file, pos.line, pos.col, "", `YAML: ${w.message}`));
  }
  sortWarnings(list.warnings);
  return list;
}

/**
 * Reads a config file and parses it with {@linkcode parsePluginsConfig}: YAML (`.yaml`, `.yml`, or any other
 * name), JSON (`.json`) and TOML (`.toml`). SFTPGo's other viper formats (HCL, INI, .env, properties) are
 * refused with a {@linkcode ConfigError} saying why and what to use instead.
 *
 * @param path The file to read; it is also the name used in messages.
 * @param options `env` to apply SFTPGo's `SFTPGO_PLUGINS__<n>__<KEY>` overrides (e.g. `Deno.env.toObject()`).
 * @returns The plugins in file order, with `warnings`.
 * @throws {ConfigError} For an unsupported format or an invalid configuration.
 * @throws {Deno.errors.NotFound} And other read errors, as `Deno.readTextFile` throws them.
 *
 * @example
 * ```ts ignore
 * import { loadPluginsConfig } from "../config.ts";
 * const plugins = await loadPluginsConfig("/etc/sftpgo/sftpgo.toml", { env: Deno.env.toObject() });
 * for (const warning of plugins.warnings) console.warn(warning.text);
 * ```
 */
export async function loadPluginsConfig(
  path: string,
  options: Pick<ConfigLoadOptions, "env"> = {},
): Promise<PluginConfigList> {
  const ext = /\.([^./\\]+)$/.exec(path)?.[1]?.toLowerCase();
  const why = ext === undefined ? undefined : UNSUPPORTED_FORMATS[ext];
  if (why !== undefined) {
    throw new ConfigError({
      file: path,
      line: 0,
      column: 0,
      path: "",
      expected: "a YAML, JSON or TOML file",
      found: `a .${ext} file`,
      hint: why,
    });
  }
  return parsePluginsConfig(await Deno.readTextFile(path), path, options);
}

/**
 * Validates an already-parsed value (a plugins list, or an object with a `plugins` key) the same way
 * {@linkcode parsePluginsConfig} does. Positions are unknown, so lines and columns are 0 and messages start with
 * `<file>: <path>: ...`.
 *
 * @param value The parsed configuration.
 * @param file The name used in messages (default `<inline>`).
 * @param options `env` to apply SFTPGo's environment overrides.
 * @returns The plugins, with `warnings`.
 * @throws {ConfigError} The first problem; its `errors` has all of them.
 *
 * @example
 * ```ts
 * import { validatePluginsConfig } from "../config.ts";
 * const [plugin] = validatePluginsConfig({ plugins: [{ type: "eventsearcher", cmd: "/bin/search" }] });
 * console.log(plugin.source.line, plugin.args); // 0 []
 * ```
 */
export function validatePluginsConfig(
  value: unknown,
  file: string = "<inline>",
  options: Pick<ConfigLoadOptions, "env"> = {},
): PluginConfigList {
  return validate(value, new NullLocator(file), options.env);
}
