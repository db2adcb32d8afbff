/**
 * SFTPGo's `SFTPGO_PLUGINS__<n>__<KEY>` environment overrides, applied as SFTPGo 2.7 applies them
 * (internal/config/config.go `getPluginsFromEnv`, read, not copied):
 * - only indexes 0 to 9 are looked at, in order;
 * - an index below the current list length overrides fields of that entry; any other index appends a new entry
 *   at the end of the list (so `SFTPGO_PLUGINS__3__*` with an empty list becomes `plugins[0]`);
 * - `TYPE`, `CMD`, `SHA256SUM`, `ENV_PREFIX`, `KMS_OPTIONS__SCHEME` and `KMS_OPTIONS__ENCRYPTED_STATUS` are taken
 *   as written; `ARGS`, `ENV_VARS` and the notifier event lists are split on `,`, trimmed, empty items dropped;
 *   `AUTO_MTLS` is a Go boolean, `AUTH_OPTIONS__SCOPE`, `NOTIFIER_OPTIONS__RETRY_MAX_TIME` and
 *   `NOTIFIER_OPTIONS__RETRY_QUEUE_MAX_SIZE` base-10 integers, all trimmed; `NOTIFIER_OPTIONS__LOG_EVENTS` is a
 *   list of integers.
 *
 * Where SFTPGo silently ignores a value it cannot parse (a boolean or integer that is not one, a log event that
 * is not a number), Tether refuses it with an error naming the variable: the running config would otherwise
 * differ from what the operator wrote. Names SFTPGo never reads (an index above 9, an unknown key) are warnings.
 * Tether's own `tether:` options are not read from the environment (SFTPGo has no such variables).
 *
 * @module
 */

import { parseGoBool } from "../../gobool.ts";
import { isPlainObject } from "./decode.ts";
import type { Locator, Position } from "./locate.ts";
import type { PathSeg } from "./text.ts";

/** The prefix of every plugin override. */
export const ENV_PREFIX = "SFTPGO_PLUGINS__";
/** SFTPGo looks at indexes 0 to 9 only. */
export const ENV_MAX_INDEX = 9;

type Kind = "string" | "list" | "bool" | "int" | "intList";

/** Variable key (after `SFTPGO_PLUGINS__<n>__`) → field path inside a plugin entry and how it is parsed. */
const KEYS: Record<string, { path: string[]; kind: Kind }> = {
  TYPE: { path: ["type"], kind: "string" },
  CMD: { path: ["cmd"], kind: "string" },
  ARGS: { path: ["args"], kind: "list" },
  SHA256SUM: { path: ["sha256sum"], kind: "string" },
  AUTO_MTLS: { path: ["auto_mtls"], kind: "bool" },
  ENV_PREFIX: { path: ["env_prefix"], kind: "string" },
  ENV_VARS: { path: ["env_vars"], kind: "list" },
  NOTIFIER_OPTIONS__FS_EVENTS: { path: ["notifier_options", "fs_events"], kind: "list" },
  NOTIFIER_OPTIONS__PROVIDER_EVENTS: { path: ["notifier_options", "provider_events"], kind: "list" },
  NOTIFIER_OPTIONS__PROVIDER_OBJECTS: { path: ["notifier_options", "provider_objects"], kind: "list" },
  NOTIFIER_OPTIONS__LOG_EVENTS: { path: ["notifier_options", "log_events"], kind: "intList" },
  NOTIFIER_OPTIONS__RETRY_MAX_TIME: { path: ["notifier_options", "retry_max_time"], kind: "int" },
  NOTIFIER_OPTIONS__RETRY_QUEUE_MAX_SIZE: { path: ["notifier_options", "retry_queue_max_size"], kind: "int" },
  KMS_OPTIONS__SCHEME: { path: ["kms_options", "scheme"], kind: "string" },
  KMS_OPTIONS__ENCRYPTED_STATUS: { path: ["kms_options", "encrypted_status"], kind: "string" },
  AUTH_OPTIONS__SCOPE: { path: ["auth_options", "scope"], kind: "int" },
};

/** A variable that could not be applied. */
export interface EnvProblem {
  /** The variable's name. */
  variable: string;
  /** The field it sets, relative to the plugins list (empty for names SFTPGo never reads). */
  path: PathSeg[];
  /** What the value must be. */
  expected: string;
  /** The value as written. */
  found: string;
}

/** What {@linkcode applyPluginEnv} did. */
export interface EnvOverrides {
  /** The plugins list with the overrides applied (a new array; entries that were changed are copies). */
  plugins: unknown[];
  /** Field path (JSON of the path relative to the plugins list) → the variable that set it. */
  sources: Map<string, string>;
  /** Values SFTPGo would silently ignore; Tether refuses them. */
  errors: EnvProblem[];
  /** Names SFTPGo never reads, and surprising placements. */
  warnings: { variable: string; message: string }[];
}

// strconv.ParseInt(s, 10, 32).
const INT32 = /^[+-]?[0-9]+$/;
const isInt32 = (s: string) => INT32.test(s) && Math.abs(Number(s)) <= 2 ** 31 - (s.startsWith("-") ? 0 : 1);
const splitList = (s: string) => s.split(",").map((v) => v.trim()).filter((v) => v !== "");

/**
 * Applies the `SFTPGO_PLUGINS__<n>__<KEY>` variables of `env` to a plugins list whose keys are already
 * lower-cased, following SFTPGo's rules (see the module documentation).
 *
 * @param plugins The plugins list from the file (after key normalisation); not modified.
 * @param env The environment, e.g. `Deno.env.toObject()`.
 * @returns The new list, where each overridden field came from, and problems found.
 *
 * @example
 * ```ts
 * import { applyPluginEnv } from "./env_overrides.ts";
 * const { plugins } = applyPluginEnv([], { SFTPGO_PLUGINS__0__TYPE: "ipfilter", SFTPGO_PLUGINS__0__CMD: "/bin/f" });
 * console.log(plugins); // [{ type: "ipfilter", cmd: "/bin/f" }]
 * ```
 */
export function applyPluginEnv(plugins: readonly unknown[], env: Record<string, string>): EnvOverrides {
  const out: unknown[] = [...plugins];
  const result: EnvOverrides = { plugins: out, sources: new Map(), errors: [], warnings: [] };
  const byIndex = new Map<number, [string, string][]>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX)) continue;
    const m = /^([0-9]+)__(.+)$/.exec(name.slice(ENV_PREFIX.length));
    const index = m === null ? NaN : Number(m[1]);
    if (m === null || String(index) !== m[1] || index > ENV_MAX_INDEX) {
      result.warnings.push({
        variable: name,
        message: `SFTPGo only reads ${ENV_PREFIX}<n>__<KEY> with n from 0 to ${ENV_MAX_INDEX}; ignored`,
      });
      continue;
    }
    if (KEYS[m[2]] === undefined) {
      result.warnings.push({
        variable: name,
        message: `unknown key ${JSON.stringify(m[2])}; SFTPGo reads ${Object.keys(KEYS).join(", ")}; ignored`,
      });
      continue;
    }
    byIndex.set(index, [...(byIndex.get(index) ?? []), [m[2], value]]);
  }
  for (let idx = 0; idx <= ENV_MAX_INDEX; idx++) {
    const vars = byIndex.get(idx);
    if (vars === undefined) continue;
    const target = idx < out.length ? idx : out.length;
    const base = target < out.length && isPlainObject(out[target])
      ? out[target] as Record<string, unknown>
      : {};
    const entry = structuredClone(base);
    let set = false;
    for (const [key, value] of vars) {
      const variable = `${ENV_PREFIX}${idx}__${key}`;
      const { path, kind } = KEYS[key];
      const parsed = parse(kind, value);
      if (parsed === undefined) {
        result.errors.push({
          variable,
          path: [target, ...path],
          expected: EXPECTED[kind],
          found: JSON.stringify(value),
        });
        continue;
      }
      let node = entry;
      for (const seg of path.slice(0, -1)) {
        if (!isPlainObject(node[seg])) node[seg] = {};
        node = node[seg] as Record<string, unknown>;
      }
      node[path.at(-1)!] = parsed;
      result.sources.set(JSON.stringify([target, ...path]), variable);
      set = true;
    }
    if (!set) continue;
    if (target === out.length) {
      result.sources.set(JSON.stringify([target]), `${ENV_PREFIX}${idx}__*`);
      if (target !== idx) {
        result.warnings.push({
          variable: `${ENV_PREFIX}${idx}__*`,
          message:
            `adds plugins[${target}], not plugins[${idx}]: SFTPGo appends an index past the end of the list`,
        });
      }
    }
    out[target] = entry;
  }
  return result;
}

const EXPECTED: Record<Kind, string> = {
  string: "a string",
  list: "a comma-separated list",
  bool: "a boolean (1, t, true, 0, f, false, ...; SFTPGo would silently ignore anything else)",
  int: "a base-10 32-bit integer (SFTPGo would silently ignore anything else)",
  intList: "a comma-separated list of integers (SFTPGo would silently drop the others)",
};

function parse(kind: Kind, value: string): unknown {
  switch (kind) {
    case "string":
      return value;
    case "list":
      return splitList(value);
    case "bool":
      return parseGoBool(value.trim());
    case "int":
      return isInt32(value.trim()) ? Number(value.trim()) : undefined;
    case "intList": {
      const items = splitList(value);
      return items.length > 0 && items.every(isInt32) ? items.map(Number) : undefined;
    }
  }
}

/**
 * A {@linkcode Locator} that places fields set from the environment at their variable, and everything else
 * where the file has it.
 *
 * @example
 * ```ts
 * import { EnvLocator } from "./env_overrides.ts";
 * import { NullLocator } from "./locate.ts";
 * const locator = new EnvLocator(new NullLocator("sftpgo.yaml"), new Map([["[0,\"cmd\"]", "SFTPGO_PLUGINS__0__CMD"]]));
 * console.log(locator.value([0, "cmd"]).file); // "environment variable SFTPGO_PLUGINS__0__CMD"
 * ```
 */
export class EnvLocator implements Locator {
  /** Wraps `base`; `sources` maps JSON paths (relative to the plugins list) to variable names. */
  constructor(readonly base: Locator, readonly sources: Map<string, string>) {}
  /** The file's name. */
  get file(): string {
    return this.base.file;
  }
  /** As the base locator. */
  setRoot(root: PathSeg[]): void {
    this.base.setRoot(root);
  }
  /** The variable that set `path` or a field above it, else the file position. */
  value(path: PathSeg[]): Position {
    return this.#env(path) ?? this.base.value(path);
  }
  /** The variable that set the key, else the file position. */
  key(path: PathSeg[], key: string): Position {
    return this.#env([...path, key]) ?? this.base.key(path, key);
  }
  #env(path: PathSeg[]): Position | undefined {
    for (let i = path.length; i > 0; i--) {
      const variable = this.sources.get(JSON.stringify(path.slice(0, i)));
      if (variable !== undefined) return { line: 0, column: 0, file: `environment variable ${variable}` };
    }
    return undefined;
  }
}
