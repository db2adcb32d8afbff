/**
 * The environment SFTPGo gives a plugin process, computed from `env_prefix` and `env_vars` exactly as SFTPGo's
 * `Config.getCommand` does (drakkan/sftpgo internal/plugin/plugin.go). SFTPGo starts plugins with an empty
 * environment (go-plugin `SkipHostEnv`), so PATH, HOME and the rest are absent unless selected here; the
 * go-plugin variables (magic cookie, port range, protocol versions, client certificate) are added by the
 * launcher, not by this module.
 *
 * @example
 * ```ts
 * import { pluginEnvironment } from "./env.ts";
 *
 * const env = pluginEnvironment(
 *   { cmd: "/usr/local/bin/sftpgo-plugin-pubsub", envPrefix: "", envVars: ["TZ"] },
 *   { SFTPGO_PLUGIN_PUBSUB_URL: "nats://q", HOME: "/root", TZ: "UTC" },
 * );
 * console.log(env); // { SFTPGO_PLUGIN_PUBSUB_URL: "nats://q", TZ: "UTC" }
 * ```
 *
 * @module
 */

import type { PluginConfig } from "./config.ts";

/**
 * Options for {@linkcode pluginEnvironment} and {@linkcode pluginEnvPrefix}.
 *
 * @example
 * ```ts
 * import { pluginEnvPrefix, type PluginEnvironmentOptions } from "./env.ts";
 * const options: PluginEnvironmentOptions = { os: "windows" };
 * console.log(pluginEnvPrefix({ cmd: "C:\\sftpgo\\plugins\\my-auth.exe", envPrefix: "" }, options)); // "MY_AUTH_"
 * ```
 */
export interface PluginEnvironmentOptions {
  /**
   * Whose path and environment rules to follow (default `Deno.build.os`). On Windows, Go's `filepath.Base`
   * also splits on `\` and drops a volume name, and `os.Getenv` ignores case.
   */
  os?: typeof Deno.build.os;
}

/**
 * The prefix SFTPGo matches host variables against, or `""` when no variables are selected by prefix:
 * - `env_prefix: none` → `""`;
 * - `env_prefix: ""` → `cmd`'s base name without its extension, upper-cased, plus `_`, with every `-` then
 *   replaced by `_` (`/opt/sftpgo-plugin-auth.exe` → `SFTPGO_PLUGIN_AUTH_`);
 * - anything else (including `*`, which means "everything") → itself, as written.
 *
 * @example
 * ```ts
 * import { pluginEnvPrefix } from "./env.ts";
 * console.log(pluginEnvPrefix({ cmd: "/usr/bin/sftpgo-plugin-eventsearch", envPrefix: "" }));
 * // "SFTPGO_PLUGIN_EVENTSEARCH_"
 * console.log(pluginEnvPrefix({ cmd: "/usr/bin/x", envPrefix: "none" })); // ""
 * ```
 */
export function pluginEnvPrefix(
  config: Pick<PluginConfig, "cmd" | "envPrefix">,
  options: PluginEnvironmentOptions = {},
): string {
  if (config.envPrefix === "none") return "";
  if (config.envPrefix !== "") return config.envPrefix;
  const windows = (options.os ?? Deno.build.os) === "windows";
  const base = goBase(config.cmd, windows);
  const name = base.slice(0, base.length - goExt(base, windows).length);
  // SFTPGo upper-cases first and replaces "-" afterwards, over the whole prefix including the added "_".
  return (goToUpper(name) + "_").replaceAll("-", "_");
}

/**
 * The variables SFTPGo passes to a plugin, from the host environment `hostEnv` (usually
 * `Deno.env.toObject()`), following SFTPGo's rules to the letter:
 * 1. The environment starts empty.
 * 2. With `env_prefix: "*"`, the whole host environment is passed and `env_vars` is not consulted.
 * 3. Otherwise every host variable whose `NAME=value` text starts with {@linkcode pluginEnvPrefix} is passed
 *    (none for `env_prefix: none`). The match is on the whole `NAME=value` string, as in SFTPGo, so a prefix
 *    that contains `=` can select on the value too.
 * 4. Then each `env_vars` name is passed with its host value, and with an empty value when the host does not
 *    have it: SFTPGo appends `NAME=` + `os.Getenv(NAME)` unconditionally, so an unset name still arrives, set
 *    to `""`.
 *
 * @example
 * ```ts
 * import { pluginEnvironment } from "./env.ts";
 * const host = { MYPLUGIN_TOKEN: "t", PATH: "/usr/bin", OTHER: "x" };
 * console.log(pluginEnvironment({ cmd: "/opt/myplugin", envPrefix: "", envVars: ["PATH", "LANG"] }, host));
 * // { MYPLUGIN_TOKEN: "t", PATH: "/usr/bin", LANG: "" }
 * console.log(pluginEnvironment({ cmd: "/opt/myplugin", envPrefix: "none", envVars: [] }, host)); // {}
 * ```
 */
export function pluginEnvironment(
  config: Pick<PluginConfig, "cmd" | "envPrefix" | "envVars">,
  hostEnv: Record<string, string>,
  options: PluginEnvironmentOptions = {},
): Record<string, string> {
  const windows = (options.os ?? Deno.build.os) === "windows";
  const env: Record<string, string> = {};
  const set = (name: string, value: string) => {
    // defineProperty so a variable called "__proto__" is stored as data.
    Object.defineProperty(env, name, { value, enumerable: true, writable: true, configurable: true });
  };
  const prefix = pluginEnvPrefix(config, options);
  if (prefix === "*") {
    for (const [name, value] of Object.entries(hostEnv)) set(name, value);
    return env;
  }
  if (prefix !== "") {
    for (const [name, value] of Object.entries(hostEnv)) {
      if (`${name}=${value}`.startsWith(prefix)) set(name, value);
    }
  }
  for (const name of config.envVars) set(name, getenv(hostEnv, name, windows) ?? "");
  return env;
}

/** Go's `os.Getenv`: exact name, or on Windows the first name equal ignoring case. */
function getenv(hostEnv: Record<string, string>, name: string, windows: boolean): string | undefined {
  if (Object.hasOwn(hostEnv, name)) return hostEnv[name];
  if (!windows) return undefined;
  const upper = name.toUpperCase();
  const match = Object.keys(hostEnv).find((k) => k.toUpperCase() === upper);
  return match === undefined ? undefined : hostEnv[match];
}

function isSeparator(c: string, windows: boolean): boolean {
  return c === "/" || (windows && c === "\\");
}

/** Length of a Windows volume name: `C:` or a UNC `\\host\share`, as Go's `filepath.VolumeName`. */
function volumeLength(path: string): number {
  if (/^[A-Za-z]:/.test(path)) return 2;
  const unc = /^[\\/]{2}[^\\/.][^\\/]*[\\/][^\\/]+/.exec(path);
  return unc === null ? 0 : unc[0].length;
}

/** Go's `filepath.Base`. */
function goBase(path: string, windows: boolean): string {
  if (path === "") return ".";
  let p = path;
  while (p.length > 0 && isSeparator(p[p.length - 1], windows)) p = p.slice(0, -1);
  if (windows) p = p.slice(volumeLength(p));
  let i = p.length - 1;
  while (i >= 0 && !isSeparator(p[i], windows)) i--;
  if (i >= 0) p = p.slice(i + 1);
  return p === "" ? (windows ? "\\" : "/") : p;
}

/** Go's `filepath.Ext`: from the last `.` of the last element, or `""`. */
function goExt(path: string, windows: boolean): string {
  for (let i = path.length - 1; i >= 0 && !isSeparator(path[i], windows); i--) {
    if (path[i] === ".") return path.slice(i);
  }
  return "";
}

/**
 * Go's `strings.ToUpper`, which maps each code point on its own (simple case mapping): JavaScript's
 * `toUpperCase` would turn `ß` into `SS`, Go leaves it alone.
 */
function goToUpper(s: string): string {
  let out = "";
  for (const ch of s) {
    const upper = ch.toUpperCase();
    out += [...upper].length === 1 ? upper : ch;
  }
  return out;
}
