/**
 * The validation pipeline: key normalisation, unknown-key warnings, the schema, and the conversion to
 * {@linkcode PluginConfig}s with their warnings.
 *
 * @module
 */

import type { z } from "zod";
import { runtimeFor } from "../../launch.ts";
import { goSlice, isPlainObject } from "./decode.ts";
import { applyPluginEnv, EnvLocator } from "./env_overrides.ts";
import type { Locator, Position } from "./locate.ts";
import { type DecodedPlugin, type IssueParams, type KeyTree, PLUGIN_KEYS, pluginsSchema } from "./schema.ts";
import {
  aggregate,
  describe,
  formatPath,
  makeWarning,
  nearest,
  type PathSeg,
  sortWarnings,
  suggest,
} from "./text.ts";
import {
  ConfigError,
  type ConfigWarning,
  type KmsEncryptedStatus,
  type KmsScheme,
  type PluginConfig,
  type PluginConfigList,
  type PluginType,
  type TetherOptions,
} from "./types.ts";

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

interface Context {
  locator: Locator;
  errors: ConfigError[];
  warnings: ConfigWarning[];
  /** Unknown keys that look like misspellings, by the formatted path of the key they probably meant. */
  misspelt: Map<string, { key: string; line: number }>;
}

function warnAt(ctx: Context, pos: Position, path: PathSeg[], message: string) {
  ctx.warnings.push(
    makeWarning(pos.file ?? ctx.locator.file, pos.line, pos.column, formatPath(path), message),
  );
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
    ...(params.detail !== undefined ? { detail: params.detail } : {}),
  });
}

/** Applies the environment overrides; afterwards the locator places env-set fields at their variable. */
function withEnv(normalized: unknown, env: Record<string, string>, ctx: Context): unknown {
  const list = Array.isArray(normalized) ? normalized : goSlice(normalized);
  if (!Array.isArray(list)) return normalized;
  const result = applyPluginEnv(list, env);
  if (result.sources.size === 0 && result.errors.length === 0 && result.warnings.length === 0) {
    return normalized;
  }
  ctx.locator = new EnvLocator(ctx.locator, result.sources);
  for (const w of result.warnings) {
    ctx.warnings.push(makeWarning(`environment variable ${w.variable}`, 0, 0, "", w.message));
  }
  for (const e of result.errors) {
    ctx.errors.push(
      new ConfigError({
        file: `environment variable ${e.variable}`,
        line: 0,
        column: 0,
        path: formatPath(e.path),
        expected: e.expected,
        found: e.found,
      }),
    );
  }
  return result.sources.size > 0 ? result.plugins : normalized;
}

function isZeroNotifier(n: DecodedPlugin["notifier_options"]): boolean {
  return n.fs_events.length === 0 && n.provider_events.length === 0 && n.provider_objects.length === 0 &&
    n.log_events.length === 0 && n.retry_max_time === 0 && n.retry_queue_max_size === 0;
}

function toPluginConfig(p: DecodedPlugin, index: number, ctx: Context): PluginConfig {
  const t = p.tether;
  const permission = (g: string[] | boolean): string[] | boolean => g === false ? [] : g;
  const tether: TetherOptions = {
    runtime: runtimeFor(p.cmd, t.runtime),
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
    ...(t.max_receive_message_bytes !== undefined
      ? { maxReceiveMessageBytes: t.max_receive_message_bytes }
      : {}),
    ...(t.uid !== undefined ? { uid: t.uid } : {}),
    ...(t.gid !== undefined ? { gid: t.gid } : {}),
    ...(t.memory_trim_idle_ms !== undefined ? { memoryTrimIdleMs: t.memory_trim_idle_ms } : {}),
    ...(p.type === "notifier" ? { notifierOrder: t.notifier_order ?? "ordered" } : {}),
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
    source: { file: pos.file ?? ctx.locator.file, line: pos.line, column: pos.column, index },
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

/**
 * Validates a parsed document (a plugins list or a mapping with a `plugins` key) and, when `env` is given,
 * applies SFTPGo's `SFTPGO_PLUGINS__<n>__<KEY>` overrides first.
 */
export function validate(value: unknown, locator: Locator, env?: Record<string, string>): PluginConfigList {
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

  let normalized = normalizeKeys(plugins, [], ctx);
  if (env !== undefined) normalized = withEnv(normalized, env, ctx);
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
