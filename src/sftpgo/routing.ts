/**
 * SFTPGo's rules for combining several plugins (drakkan/sftpgo
 * internal/plugin), as pure functions {@linkcode PluginManager} routes with:
 * which auth plugin handles a login method, which notifier wants an event,
 * which ipfilter decides, and which combinations SFTPGo refuses to start
 * with.
 *
 * @module
 */

import { TetherError } from "../errors.ts";
import type { NotifierOptions, PluginConfig } from "./config.ts";

/**
 * A login method and its bit in `auth_options.scope`.
 *
 * @example
 * ```ts
 * import { AUTH_METHODS } from "./routing.ts";
 * console.log(AUTH_METHODS.tlsCertificate.bit); // 8
 * ```
 */
export const AUTH_METHODS = {
  password: { bit: 1, label: "password logins" },
  publicKey: { bit: 2, label: "public key logins" },
  keyboardInteractive: { bit: 4, label: "keyboard-interactive logins" },
  tlsCertificate: { bit: 8, label: "TLS certificate logins" },
} as const;

/**
 * A login method an auth plugin can handle.
 *
 * @example
 * ```ts
 * import type { AuthMethod } from "./routing.ts";
 * const method: AuthMethod = "publicKey";
 * ```
 */
export type AuthMethod = keyof typeof AUTH_METHODS;

/**
 * The position (in `configs`) of the auth plugin SFTPGo asks for `method`:
 * the first whose scope has the method's bit; there is no fallthrough to a
 * later plugin. `-1` when none has it.
 *
 * @example
 * ```ts
 * import { authPluginFor } from "./routing.ts";
 * const configs = [{ type: "auth", authOptions: { scope: 1 } }, { type: "auth", authOptions: { scope: 15 } }] as const;
 * console.log(authPluginFor(configs, "password"), authPluginFor(configs, "publicKey")); // 0 1
 * ```
 */
export function authPluginFor(
  configs: readonly Pick<PluginConfig, "type" | "authOptions">[],
  method: AuthMethod,
): number {
  const bit = AUTH_METHODS[method].bit;
  return configs.findIndex((c) => c.type === "auth" && ((c.authOptions?.scope ?? 0) & bit) !== 0);
}

/**
 * The position of the ipfilter plugin SFTPGo asks: the last one defined.
 * `-1` when there is none.
 *
 * @example
 * ```ts
 * import { activeIpFilter } from "./routing.ts";
 * console.log(activeIpFilter([{ type: "ipfilter" }, { type: "auth" }, { type: "ipfilter" }])); // 2
 * ```
 */
export function activeIpFilter(configs: readonly Pick<PluginConfig, "type">[]): number {
  return configs.findLastIndex((c) => c.type === "ipfilter");
}

/**
 * Whether a notifier subscribes to a filesystem action (`fs_events`).
 *
 * @example
 * ```ts
 * import { wantsFsEvent } from "./routing.ts";
 * console.log(wantsFsEvent({ fsEvents: ["upload"] }, "upload")); // true
 * ```
 */
export function wantsFsEvent(options: Pick<NotifierOptions, "fsEvents">, action: string): boolean {
  return options.fsEvents.includes(action);
}

/**
 * Whether a notifier subscribes to a provider event: both the action
 * (`provider_events`) and the object type (`provider_objects`) must be listed.
 *
 * @example
 * ```ts
 * import { wantsProviderEvent } from "./routing.ts";
 * const options = { providerEvents: ["add"], providerObjects: ["user"] };
 * console.log(wantsProviderEvent(options, "add", "user"), wantsProviderEvent(options, "add", "folder")); // true false
 * ```
 */
export function wantsProviderEvent(
  options: Pick<NotifierOptions, "providerEvents" | "providerObjects">,
  action: string,
  objectType: string,
): boolean {
  return options.providerEvents.includes(action) && options.providerObjects.includes(objectType);
}

/**
 * Whether a notifier subscribes to a log event code (`log_events`).
 *
 * @example
 * ```ts
 * import { wantsLogEvent } from "./routing.ts";
 * console.log(wantsLogEvent({ logEvents: [1, 2] }, 5)); // false
 * ```
 */
export function wantsLogEvent(options: Pick<NotifierOptions, "logEvents">, event: number): boolean {
  return options.logEvents.includes(event);
}

/**
 * The name a plugin has in logs, errors and {@linkcode PluginManager.status}:
 * `<type>#<position in the plugins list>`.
 *
 * @example
 * ```ts
 * import { pluginName } from "./routing.ts";
 * console.log(pluginName({ type: "notifier", source: { file: "x.yaml", line: 3, column: 5, index: 2 } })); // "notifier#2"
 * ```
 */
export function pluginName(config: Pick<PluginConfig, "type" | "source">): string {
  return `${config.type}#${config.source.index}`;
}

/** Where a plugin is defined, for messages: `plugins[2] at sftpgo.yaml:14`. */
export function pluginWhere(config: Pick<PluginConfig, "source">): string {
  const s = config.source;
  const at = s.line > 0 ? ` at ${s.file}:${s.line}` : s.file && s.file !== "<inline>" ? ` in ${s.file}` : "";
  return `plugins[${s.index}]${at}`;
}

/**
 * Checks a plugin list against the rules SFTPGo enforces at start-up (its
 * config loader does the same for YAML; this also covers hand-built lists):
 * the five live types plus legacy `metadata`; each type's options present;
 * auth scope 1..15; at least one notifier event class; KMS scheme and
 * encrypted status unique; at most one eventsearcher and one metadata plugin.
 *
 * @throws {TetherError} `config`, naming every offending plugin.
 *
 * @example
 * ```ts
 * import { checkPluginCombination } from "./routing.ts";
 * try {
 *   checkPluginCombination([
 *     { type: "eventsearcher", cmd: "/a", source: { file: "p.yaml", line: 2, column: 3, index: 0 } },
 *     { type: "eventsearcher", cmd: "/b", source: { file: "p.yaml", line: 4, column: 3, index: 1 } },
 *   ]);
 * } catch (error) {
 *   console.log((error as Error).message.includes("at most one eventsearcher")); // true
 * }
 * ```
 */
export function checkPluginCombination(
  configs: readonly Pick<
    PluginConfig,
    "type" | "cmd" | "source" | "authOptions" | "notifierOptions" | "kmsOptions"
  >[],
): void {
  const problems: string[] = [];
  const seenIndex = new Map<number, string>();
  const firstScheme = new Map<string, string>();
  const firstStatus = new Map<string, string>();
  let searcher: string | undefined;
  let metadata: string | undefined;
  for (const c of configs) {
    const name = `${pluginName(c)} (${pluginWhere(c)})`;
    if (seenIndex.has(c.source.index)) {
      problems.push(
        `${name}: source.index ${c.source.index} is used twice; each plugin needs its own position`,
      );
    }
    seenIndex.set(c.source.index, name);
    if (typeof c.cmd !== "string" || c.cmd === "") problems.push(`${name}: cmd is empty`);
    switch (c.type) {
      case "auth": {
        const scope = c.authOptions?.scope;
        if (scope === undefined || !Number.isInteger(scope) || scope < 1 || scope > 15) {
          problems.push(
            `${name}: auth_options.scope must be 1..15 (1 password, 2 public key, 4 keyboard-interactive, ` +
              `8 TLS certificate, ORed), got ${scope}`,
          );
        }
        break;
      }
      case "notifier": {
        const n = c.notifierOptions;
        if (!n) {
          problems.push(`${name}: notifier_options is missing`);
        } else if (
          n.fsEvents.length === 0 && n.logEvents.length === 0 &&
          (n.providerEvents.length === 0 || n.providerObjects.length === 0)
        ) {
          problems.push(
            `${name}: notifier_options must subscribe to something: fs_events, log_events, or provider_events ` +
              "together with provider_objects",
          );
        }
        break;
      }
      case "kms": {
        const k = c.kmsOptions;
        if (!k) {
          problems.push(`${name}: kms_options (scheme, encrypted_status) is missing`);
          break;
        }
        const s = firstScheme.get(k.scheme);
        if (s) problems.push(`${name}: kms scheme ${JSON.stringify(k.scheme)} is already registered by ${s}`);
        else firstScheme.set(k.scheme, name);
        const e = firstStatus.get(k.encryptedStatus);
        if (e) {
          problems.push(
            `${name}: kms encrypted_status ${
              JSON.stringify(k.encryptedStatus)
            } is already registered by ${e}`,
          );
        } else firstStatus.set(k.encryptedStatus, name);
        break;
      }
      case "eventsearcher":
        if (searcher) {
          problems.push(`${name}: at most one eventsearcher plugin is allowed; ${searcher} is one already`);
        } else searcher = name;
        break;
      case "metadata":
        if (metadata) {
          problems.push(`${name}: at most one metadata plugin is allowed; ${metadata} is one already`);
        } else metadata = name;
        break;
      case "ipfilter":
        break;
      default:
        problems.push(
          `${name}: unknown type ${
            JSON.stringify(c.type)
          } (expected auth, notifier, kms, ipfilter, eventsearcher ` +
            "or metadata)",
        );
    }
  }
  if (problems.length > 0) {
    throw new TetherError(
      "config",
      `the plugin configuration cannot start:\n  ${problems.join("\n  ")}`,
    );
  }
}
