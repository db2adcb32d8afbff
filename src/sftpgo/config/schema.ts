/**
 * The zod schema of a plugin entry: SFTPGo keys decoded weakly like viper, Tether's `tether:` keys strictly, and
 * the checks across fields and plugins.
 *
 * @module
 */

import { z } from "zod";
import { refusedDenoEnv, runtimeFor } from "../../launch.ts";
import { MAX_TRIM_IDLE_MS, MIN_TRIM_IDLE_MS } from "../../memory_trim.ts";
import { validatePermissionEntries } from "../../permissions.ts";
import { MAX_RECEIVE_MESSAGE_BYTES } from "../../receive_limits.ts";
import { goBool, goInt, goSlice, goString, isPlainObject } from "./decode.ts";
import { suggest } from "./text.ts";
import {
  FS_EVENTS,
  KMS_ENCRYPTED_STATUSES,
  KMS_SCHEMES,
  PLUGIN_TYPES,
  PROVIDER_EVENTS,
  PROVIDER_OBJECTS,
} from "./types.ts";

/** The longest delay a JavaScript timer honours (2^31-1 ms, about 24.8 days); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** The longest `retry_max_time`, in seconds, whose retry deadline still fits a timer. */
export const MAX_RETRY_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

const LIVE_TYPES = PLUGIN_TYPES.filter((t) => t !== "metadata");
const ONE_OF = (values: readonly (string | number)[]) =>
  `one of ${values.map((v) => JSON.stringify(v)).join(", ")}`;

/** What each field must be, as error messages say it. */
export const X = {
  plugin: "a mapping with the plugin's type, cmd and options",
  type: `${ONE_OF(LIVE_TYPES)} (or the legacy "metadata")`,
  cmd: "a non-empty string (the plugin executable)",
  cmdFlag: 'a path that does not start with "-"',
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
  retryMaxTime: `an integer from 0 to ${MAX_RETRY_SECONDS} (seconds; 0 disables retries; ` +
    "a longer time overflows the retry timer, which would then fire at once)",
  retryQueueMaxSize: "a non-negative integer (0 for unlimited)",
  scheme: ONE_OF(KMS_SCHEMES),
  encryptedStatus: ONE_OF(KMS_ENCRYPTED_STATUSES),
  int: "an integer",
  scope:
    "an integer from 1 to 15 (bitmask: 1 password, 2 public key, 4 keyboard-interactive, 8 TLS certificate)",
  notifierEvents: "at least one event class: a non-empty fs_events or log_events, " +
    "or both provider_events and provider_objects non-empty",
  runtime: ONE_OF(["auto", "deno", "native"]),
  notifierOrder: ONE_OF(["ordered", "unordered"]),
  positiveMs: `an integer from 1 to ${MAX_TIMER_MS} (milliseconds; a longer time overflows the timer, ` +
    "which would then fire at once)",
  healthMs: `0 (no health checks) or an integer from 1 to ${MAX_TIMER_MS} (milliseconds; a longer time ` +
    "overflows the timer, which would then fire at once)",
  maxRestarts: "a non-negative integer (0 for unlimited)",
  trimMs:
    `0 (no idle memory trim) or an integer from ${MIN_TRIM_IDLE_MS} to ${MAX_TRIM_IDLE_MS} (milliseconds)`,
  receiveBytes: `an integer from 1 to ${MAX_RECEIVE_MESSAGE_BYTES} (bytes; 2^31-1 is go-plugin's own limit)`,
  grant: "a non-empty string",
  grantEntry: 'one entry: no list separator (",", newline, NUL) and no leading "-"',
  pathGrant: "an absolute path (starting with /)",
  netGrant: "host, host:port or unix:/absolute/socket/path",
  nameList: "a list of non-empty strings",
  pathList: "a list of absolute paths",
  netList: "a list of hosts (host, host:port or unix:/path)",
  id: "a non-negative integer",
} as const;

// SFTPGo keys use the weak decoders; `tether:` keys are strict (null still means "use the default").

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
  retry_max_time: z.preprocess(
    goInt,
    z.int(E(X.retryMaxTime)).min(0, E(X.retryMaxTime)).max(MAX_RETRY_SECONDS, E(X.retryMaxTime)),
  ),
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

// Grants become `--allow-<kind>=a,b` flags; list separators and a leading "-" are refused by
// validatePermissionEntries (src/permissions.ts, the one home of that rule) in checkTether, with a position.
// The permission broker only accepts absolute paths, so relative ones are caught here.
const grant = z.string(E(X.grant)).min(1, E(X.grant));
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
  initial_backoff_ms: z.int(E(X.positiveMs)).min(1, E(X.positiveMs)).max(MAX_TIMER_MS, E(X.positiveMs))
    .default(250),
  max_backoff_ms: z.int(E(X.positiveMs)).min(1, E(X.positiveMs)).max(MAX_TIMER_MS, E(X.positiveMs)).default(
    30_000,
  ),
  max_restarts: z.int(E(X.maxRestarts)).min(0, E(X.maxRestarts)).default(0),
};

const tetherShape = {
  runtime: z.enum(["auto", "deno", "native"], E(X.runtime)).default("auto"),
  start_timeout_ms: z.int(E(X.positiveMs)).min(1, E(X.positiveMs)).max(MAX_TIMER_MS, E(X.positiveMs)).default(
    60_000,
  ),
  call_timeout_ms: z.int(E(X.positiveMs)).min(1, E(X.positiveMs)).max(MAX_TIMER_MS, E(X.positiveMs)).default(
    20_000,
  ),
  restart: strictStruct(restartShape),
  health_check_interval_ms: z.int(E(X.healthMs)).min(0, E(X.healthMs)).max(MAX_TIMER_MS, E(X.healthMs))
    .default(5_000),
  permissions: strictStruct(permissionsShape),
  allow_broad_permissions: z.boolean(E(X.bool)).default(false),
  // Absent rather than defaulted: PluginClient holds the default (src/memory_trim.ts), and a native entry that
  // sets it can be told it has no effect.
  memory_trim_idle_ms: z.int(E(X.trimMs)).refine(
    (v) => v === 0 || (v >= MIN_TRIM_IDLE_MS && v <= MAX_TRIM_IDLE_MS),
    E(X.trimMs),
  )
    .optional(),
  // Absent rather than defaulted: PluginClient holds the default (src/receive_limits.ts).
  max_receive_message_bytes: z.int(E(X.receiveBytes)).min(1, E(X.receiveBytes))
    .max(MAX_RECEIVE_MESSAGE_BYTES, E(X.receiveBytes)).optional(),
  uid: z.int(E(X.id)).min(0, E(X.id)).optional(),
  gid: z.int(E(X.id)).min(0, E(X.id)).optional(),
  // Absent rather than defaulted, so a non-notifier entry that sets it can be told it has no effect.
  notifier_order: z.enum(["ordered", "unordered"], E(X.notifierOrder)).optional(),
};

const pluginShape = {
  type: sgEnum(PLUGIN_TYPES, X.type),
  notifier_options: sgStruct(notifierShape, X.mapping),
  kms_options: sgStruct(kmsShape, X.mapping),
  auth_options: sgStruct(authShape, X.mapping),
  // A leading "-" would be read as a flag by `deno run` (and by anything that execs through a shell), so such
  // a cmd is refused; launch.ts refuses it too.
  cmd: z.preprocess(
    goString,
    z.string(E(X.cmd)).min(1, E(X.cmd)).refine((v) => !v.startsWith("-"), {
      error: X.cmdFlag,
      params: { hint: 'it would read as a command-line flag; write "./-name" for a file really named so' },
    }),
  ),
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
export interface KeyTree {
  keys: readonly string[];
  children: Record<string, KeyTree>;
}
const leafTree = (shape: object): KeyTree => ({ keys: Object.keys(shape), children: {} });
export const PLUGIN_KEYS: KeyTree = {
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

/** A plugin entry as the schema decodes it (SFTPGo's snake_case keys, defaults filled in). */
export type DecodedPlugin = z.output<z.ZodObject<typeof pluginShape>>;

/** Extra details a custom schema issue carries to its {@linkcode ConfigError}. */
export interface IssueParams {
  /** Overrides the description of the value found. */
  found?: string;
  /** Extra advice; `{ref}` is replaced with the referenced entry and its line. */
  hint?: string;
  /** Path (relative to the plugins list) of an earlier, conflicting definition. */
  ref?: (string | number)[];
  /** Replaces the whole `expected ..., found ...` text. */
  detail?: string;
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
  const runtime = runtimeFor(p.cmd, t.runtime);
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
  if (runtime === "deno") {
    // The same rule prepareLaunch applies (launch.ts), reported here at the entry's position.
    p.env_vars.forEach((name, index) => {
      const refused = refusedDenoEnv(name);
      if (refused) {
        custom(ctx, ["env_vars", index], "a variable a deno plugin may receive", {
          found: JSON.stringify(name),
          hint: refused,
        });
      }
    });
  }
  for (const k of ["uid", "gid"] as const) {
    if (t[k] !== undefined && runtime !== "native") {
      custom(ctx, ["tether", k], `${k} only for a native plugin`, {
        hint: why !== "" ? why : `runtime is ${runtime}; uid and gid apply only to native executables`,
      });
    }
  }
  for (const kind of ["read", "write", "net", "env", "sys", "run", "ffi", "import"] as const) {
    const value = perms[kind];
    if (typeof value === "boolean") continue;
    value.forEach((entry, index) => {
      // One entry at a time, so every bad entry is reported at its own position.
      try {
        validatePermissionEntries({ [kind]: [entry] }, "");
      } catch (error) {
        const why = error instanceof Error ? error.message.replace(/^[^:]*: /, "") : String(error);
        custom(ctx, ["tether", "permissions", kind, index], X.grantEntry, { detail: why });
      }
    });
  }
  if (t.memory_trim_idle_ms !== undefined && runtime !== "deno") {
    custom(ctx, ["tether", "memory_trim_idle_ms"], "memory_trim_idle_ms only for a deno plugin", {
      hint: why !== "" ? why : `runtime is ${runtime}; native plugins are never trimmed (nor signalled)`,
    });
  }
  if (t.notifier_order !== undefined && p.type !== "notifier") {
    custom(ctx, ["tether", "notifier_order"], "notifier_order only for a notifier plugin", {
      hint: `this plugin's type is ${p.type}; remove notifier_order from its tether mapping`,
    });
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

/** The schema of the plugins list: every entry, then the checks across entries. */
export const pluginsSchema = z.preprocess(
  goSlice,
  z.array(pluginSchema, E("a list of plugins")).superRefine(checkAcrossPlugins, {
    when: (payload) =>
      Array.isArray(payload.value) && payload.value.every(isPlainObject) &&
      decoded(payload, 1, ["type", "kms_options"]) &&
      !payload.issues.some((issue) => (issue.path?.length ?? 0) <= 1),
  }),
);
