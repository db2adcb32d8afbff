/**
 * Deny-by-default Deno permissions for TypeScript plugins: the grants a
 * plugin's config lists, plus exactly what the go-plugin protocol needs
 * (its socket paths and handshake variables), turned into the `deno run`
 * flags that decide every check (Deno enforces them; nothing the plugin can
 * reach answers a check), and into {@linkcode PermissionPolicy.decide}, which
 * only labels the plugin's audit lines for operators.
 *
 * @module
 */

import { TetherError } from "./errors.ts";
import { normalizePath, resolvePath, type Unresolvable } from "./resolve.ts";

/**
 * What a TypeScript plugin may do, in Deno's terms. Everything not listed is
 * denied. Paths must be absolute.
 *
 * @example
 * ```ts
 * import type { DenoPermissions } from "./permissions.ts";
 * const grants: DenoPermissions = { read: ["/etc/myplugin/users.json"], write: ["/var/log/myplugin"] };
 * ```
 */
export interface DenoPermissions {
  /** Files or directories it may read. */
  readonly read?: readonly string[];
  /** Files or directories it may write. */
  readonly write?: readonly string[];
  /** Hosts (`host`, `host:port`) or unix sockets (`unix:/abs/path`) it may reach. */
  readonly net?: readonly string[];
  /** Environment variables it may read (`NAME` or `PREFIX_*`). */
  readonly env?: readonly string[];
  /** System information it may read (`hostname`, `osRelease`, ...), or `true` for all. */
  readonly sys?: readonly string[] | boolean;
  /** Programs it may run, or `true` for any. Escapes the sandbox: needs `allowBroadPermissions`. */
  readonly run?: readonly string[] | boolean;
  /** Native libraries it may load, or `true` for any. Escapes the sandbox: needs `allowBroadPermissions`. */
  readonly ffi?: readonly string[] | boolean;
  /** Hosts it may import remote code from (`host[:port]`). */
  readonly import?: readonly string[];
  /** Everything (`-A`). Disables the sandbox: needs `allowBroadPermissions`. */
  readonly all?: boolean;
}

/** The permission kinds Deno checks. */
export type PermissionName = "read" | "write" | "net" | "env" | "sys" | "run" | "ffi" | "import";

/** What the go-plugin protocol itself needs from a plugin's sandbox. */
export interface ProtocolNeeds {
  /** Environment variables of the handshake (cookie, `PLUGIN_*`, `TETHER_PLUGIN_SOCKET`). */
  readonly env: readonly string[];
  /** Unix socket paths the plugin listens on or dials (its own, and broker sockets both ways). */
  readonly sockets: readonly string[];
}

/** How {@linkcode PermissionPolicy.label} sees one permission check. */
export interface PermissionLabel {
  /** Whether the policy allows it (false for a path the host cannot resolve: fail closed). */
  readonly allowed: boolean;
  /** Set when where the path leads could not be resolved: which prefix and why. */
  readonly unresolved?: string;
}

/** Options of {@linkcode PermissionPolicy}. */
export interface PermissionPolicyOptions {
  /** The plugin's configured grants. */
  readonly grants?: DenoPermissions;
  /** Explicit denials; they win over grants. */
  readonly deny?: DenoPermissions;
  /** Opt-in for `run`, `ffi` and `all` grants, which escape the sandbox. */
  readonly allowBroadPermissions?: boolean;
  /** What the protocol needs; added by Tether, never configured by hand. */
  readonly protocol: ProtocolNeeds;
  /** Where errors say the grants came from, e.g. `plugin notifier permissions`. */
  readonly source?: string;
}

// grpc-js reads these at import time; granting the prefix keeps it from failing.
const GRPC_ENV = "GRPC_*";

function underPath(value: string, grant: string): boolean {
  const target = normalizePath(value);
  const root = normalizePath(grant);
  return root === "/" || target === root || target.startsWith(`${root}/`);
}

/**
 * A path grant holds when the path is under a grant as written AND where it
 * really leads is under a grant (as written or resolved) too: Deno checks only
 * the written path, so a symlink placed in a granted directory would otherwise
 * lead out of it. Fail closed: a path the host cannot resolve is not allowed
 * (it is returned, so the label can say why), never judged by its name.
 */
function pathAllowed(value: string, grants: readonly string[]): boolean | Unresolvable {
  if (!grants.some((grant) => underPath(value, grant))) return false;
  const where = resolvePath(value);
  if (!("resolved" in where)) return where;
  const real = where.resolved;
  return grants.some((grant) => {
    if (underPath(real, grant)) return true;
    const root = resolvePath(grant);
    return "resolved" in root && underPath(real, root.resolved);
  });
}

function listOf(value: readonly string[] | boolean | undefined): readonly string[] {
  return Array.isArray(value) ? value : [];
}

const LIST_SEPARATORS = /[,\n\r\0]/;

/** The kinds where `true` means "all of it": Deno has no narrower grant for some of them, and they are explicit. */
const WHOLE_KINDS: ReadonlySet<string> = new Set(["sys", "run", "ffi"]);

/**
 * Why a non-list value of a list-only kind is refused. `read: true`, `write: true`, `net: true`, `env: true`
 * and `import: true` would be the whole file system, network or environment: in a grant that is no sandbox
 * (and the namespace layer would have to bind `/` or share the host's network); in a deny set it would deny
 * the protocol's own sockets and variables. Neither is what a plugin's grants are for, so the one rule is:
 * list what it needs, or say `all: true` (with allowBroadPermissions) and own that.
 */
function wholeKindHint(kind: string, value: unknown): string {
  const example = kind === "read" || kind === "write"
    ? `${kind}: ["/srv/data"]`
    : kind === "net"
    ? 'net: ["api.example.com:443"]'
    : kind === "env"
    ? 'env: ["API_TOKEN", "MYPLUGIN_*"]'
    : 'import: ["deno.land"]';
  if (value === true) {
    return `true is not supported for ${kind} (it would grant or deny every ${
      kind === "net" || kind === "import" ? "host" : kind === "env" ? "variable" : "path"
    }, which Tether's sandbox layers do not express); list the entries instead, e.g. ${example}` +
      (kind === "read" || kind === "write" || kind === "net"
        ? ", or grant everything with all: true and " +
          "allowBroadPermissions: true (no sandbox)"
        : "");
  }
  return `expected a list of strings, e.g. ${example}, found ${JSON.stringify(value) ?? String(value)}`;
}

/**
 * Checks every grant or deny entry on its own, before any of them is turned
 * into a flag: an entry must be a non-empty string with no list separator
 * (`,`, newline, NUL) and must not start with `-`, because Deno's flags join
 * entries with `,` and an entry that splits or reads as a flag would grant
 * something nobody wrote. `read`, `write`, `net`, `env` and `import` take
 * lists only: `true` there is refused with what to write instead (the whole
 * file system, network or environment is no sandbox, and the namespace layer
 * does not express it); `sys`, `run` and `ffi` also take `true`, and `false`
 * means none. This is the one check every layer (`PluginClient`,
 * the SFTPGo config loader, `tether pack`) calls.
 *
 * @param permissions The grants or denials to check.
 * @param source Where they came from, used as the field path in errors, e.g. `plugin auth permissions`.
 * @throws {TetherError} `config`, naming the field (`<source>.<kind>[<index>]`), the entry and what is wrong.
 *
 * @example
 * ```ts
 * import { validatePermissionEntries } from "./permissions.ts";
 * validatePermissionEntries({ read: ["/srv/data"] }, "plugin auth permissions"); // ok
 * try {
 *   validatePermissionEntries({ read: ["/srv/a,/etc"] }, "plugin auth permissions");
 * } catch (error) {
 *   console.log(String(error)); // ... plugin auth permissions.read[0]: "/srv/a,/etc" contains ","...
 * }
 * ```
 */
export function validatePermissionEntries(permissions: DenoPermissions, source: string): void {
  for (const kind of ["read", "write", "net", "env", "sys", "run", "ffi", "import"] as const) {
    const value: unknown = permissions[kind];
    if (value === undefined || value === false) continue;
    if (value === true && WHOLE_KINDS.has(kind)) continue;
    if (!Array.isArray(value)) {
      throw new TetherError("config", `${source}.${kind}: ${wholeKindHint(kind, value)}`);
    }
    value.forEach((entry, index) => {
      const field = `${source}.${kind}[${index}]`;
      if (typeof entry !== "string" || entry.length === 0) {
        throw new TetherError(
          "config",
          `${field}: expected a non-empty string, found ${JSON.stringify(entry)}`,
        );
      }
      const separator = LIST_SEPARATORS.exec(entry);
      if (separator) {
        throw new TetherError(
          "config",
          `${field}: ${JSON.stringify(entry)} contains ${
            JSON.stringify(separator[0])
          }, a list separator in ` +
            "Deno's flags; write one entry per list item",
        );
      }
      if (entry.startsWith("-")) {
        throw new TetherError(
          "config",
          `${field}: ${JSON.stringify(entry)} starts with "-" and would read as a command-line flag`,
        );
      }
    });
  }
}

/**
 * A plugin's effective permissions: the flags for `deno run` (the decision),
 * and {@linkcode PermissionPolicy.decide} to label audit lines (a report).
 *
 * @example
 * ```ts
 * import { PermissionPolicy } from "./permissions.ts";
 * const policy = new PermissionPolicy({
 *   grants: { read: ["/srv/data"] },
 *   protocol: { env: ["MY_COOKIE"], sockets: ["/tmp/tether-x/plugin.sock"] },
 * });
 * console.log(policy.decide("read", "/srv/data/a.txt")); // true
 * console.log(policy.decide("read", "/etc/passwd")); // false
 * ```
 */
export class PermissionPolicy {
  readonly #grants: DenoPermissions;
  readonly #deny: DenoPermissions;
  readonly #protocol: ProtocolNeeds;
  /** The broad grants in effect (`run`, `ffi`, `all`), for a warning. */
  readonly broad: readonly string[];

  /** Checks the grants and builds the policy. @throws {TetherError} `config` on a bad or unapproved grant. */
  constructor(options: PermissionPolicyOptions) {
    const grants = options.grants ?? {};
    const source = options.source ?? "permissions";
    validatePermissionEntries(grants, source);
    validatePermissionEntries(options.deny ?? {}, `${source} (deny)`);
    this.#grants = grants;
    this.#deny = options.deny ?? {};
    this.#protocol = options.protocol;
    const broad: string[] = [];
    if (grants.all) broad.push("all");
    if (grants.run === true || listOf(grants.run).length > 0) broad.push("run");
    if (grants.ffi === true || listOf(grants.ffi).length > 0) broad.push("ffi");
    if (broad.length > 0 && !options.allowBroadPermissions) {
      throw new TetherError(
        "config",
        `${source}: ${broad.join(", ")} ${
          broad.length > 1 ? "grants escape" : "grant escapes"
        } the sandbox; ` +
          "set allowBroadPermissions: true (allow_broad_permissions in YAML) if you really mean it",
      );
    }
    this.broad = broad;
    for (const kind of ["read", "write", "ffi"] as const) {
      for (const path of [...listOf(grants[kind]), ...listOf(this.#deny[kind])]) {
        if (!path.startsWith("/")) {
          throw new TetherError(
            "config",
            `${source}.${kind}: ${JSON.stringify(path)} must be an absolute path`,
          );
        }
      }
    }
    for (const entry of listOf(grants.net)) {
      if (entry.startsWith("unix:") && !entry.slice(5).startsWith("/")) {
        throw new TetherError(
          "config",
          `${source}.net: ${JSON.stringify(entry)} must name an absolute socket path`,
        );
      }
    }
  }

  /** Granted read paths (files or directories), not the protocol's sockets. */
  get readPaths(): string[] {
    return this.#grants.all ? ["/"] : [...listOf(this.#grants.read)];
  }

  /** Granted write paths (files or directories), not the protocol's sockets. */
  get writePaths(): string[] {
    return this.#grants.all ? ["/"] : [...listOf(this.#grants.write)];
  }

  /** Whether the plugin was granted a network host (anything beyond unix sockets). */
  get needsNetwork(): boolean {
    return this.#grants.all === true || listOf(this.#grants.net).some((entry) => !entry.startsWith("unix:"));
  }

  /** The environment variable names the plugin may read. */
  get envNames(): string[] {
    return [...this.#protocol.env, GRPC_ENV, ...listOf(this.#grants.env)];
  }

  /**
   * The `deno run` permission flags: `--no-prompt`, no remote code, and one
   * `--allow-*` per kind with exactly the granted values.
   */
  flags(): string[] {
    const g = this.#grants;
    const sockets = this.#protocol.sockets;
    const flags = ["--no-prompt", "--no-remote"];
    if (g.all) flags.push("--allow-all");
    const list = (name: string, values: readonly string[]) => {
      if (values.length > 0) flags.push(`--allow-${name}=${[...new Set(values)].join(",")}`);
    };
    const listOrAll = (name: string, value: readonly string[] | boolean | undefined) => {
      if (value === true) flags.push(`--allow-${name}`);
      else list(name, listOf(value));
    };
    // Deno 2.9.6 refuses --allow-all next to any --allow-<kind> ("conflicts with"): all: true is all.
    if (!g.all) {
      list("read", [...listOf(g.read), ...sockets]);
      list("write", [...listOf(g.write), ...sockets]);
      list("net", [...listOf(g.net), ...sockets.map((path) => `unix:${path}`)]);
      list("env", this.envNames);
      listOrAll("sys", g.sys);
      listOrAll("run", g.run);
      listOrAll("ffi", g.ffi);
      list("import", listOf(g.import));
    }
    const d = this.#deny;
    for (const kind of ["read", "write", "net", "env", "sys", "run", "ffi", "import"] as const) {
      // `true` (validated: only sys, run, ffi) denies the whole kind, as `decide` says.
      if (d[kind] === true) flags.push(`--deny-${kind}`);
      const values = listOf(d[kind]);
      if (values.length > 0) flags.push(`--deny-${kind}=${values.join(",")}`);
    }
    return flags;
  }

  /**
   * Whether the policy allows a permission check (used to label audit lines;
   * Deno's flags are what enforce). `value` is what Deno checked
   * (an absolute path, `host:port`, `unix:/path`, a variable name, ...), or
   * null for "everything of that kind", which is only allowed by `true` or `all`.
   * A path the host cannot resolve is not allowed (see {@linkcode PermissionPolicy.label}).
   */
  decide(permission: string, value: string | null): boolean {
    return this.label(permission, value).allowed;
  }

  /**
   * {@linkcode PermissionPolicy.decide} with its reason: a read or write
   * lexically under a grant whose destination the host cannot resolve (a
   * dangling symlink, a symlink loop, a directory the host may not read) is
   * labelled `unresolved` and not allowed, never judged by its name.
   *
   * @example
   * ```ts
   * import { PermissionPolicy } from "./permissions.ts";
   * const policy = new PermissionPolicy({ grants: { read: ["/srv/data"] }, protocol: { env: [], sockets: [] } });
   * const label = policy.label("read", "/srv/data/a.txt");
   * console.log(label.allowed, label.unresolved); // true undefined (or false and why, behind a dangling link)
   * ```
   */
  label(permission: string, value: string | null): PermissionLabel {
    if (this.#matches(this.#deny, permission, value, false) === true) return { allowed: false };
    if (this.#grants.all) return { allowed: true };
    const verdict = this.#matches(this.#grants, permission, value, true);
    if (typeof verdict === "boolean") return { allowed: verdict };
    return { allowed: false, unresolved: `${verdict.unresolvable}: ${verdict.reason}` };
  }

  #matches(
    set: DenoPermissions,
    permission: string,
    value: string | null,
    withProtocol: boolean,
  ): boolean | Unresolvable {
    const sockets = withProtocol ? this.#protocol.sockets : [];
    const whole = (grant: readonly string[] | boolean | undefined) => grant === true;
    switch (permission) {
      case "read":
      case "write": {
        if (value === null) return false;
        const grants = [...listOf(set[permission]), ...sockets];
        return withProtocol ? pathAllowed(value, grants) : grants.some((grant) => underPath(value, grant));
      }
      case "net": {
        if (value === null) return false;
        const grants = [...listOf(set.net), ...sockets.map((path) => `unix:${path}`)];
        if (value.startsWith("unix:")) {
          return grants.some((grant) =>
            grant.startsWith("unix:") && underPath(value.slice(5), grant.slice(5))
          );
        }
        const host = value.replace(/:\d+$/, "");
        return grants.some((grant) => grant === value || grant === host);
      }
      case "env": {
        if (value === null) return false;
        const grants = withProtocol ? [...this.envNames] : listOf(set.env);
        return grants.some((grant) =>
          grant.endsWith("*") ? value.startsWith(grant.slice(0, -1)) : grant === value
        );
      }
      case "sys":
      case "run":
      case "ffi": {
        const grant = set[permission];
        if (whole(grant)) return true;
        if (value === null) return false;
        return listOf(grant).some((entry) =>
          permission === "ffi" ? underPath(value, entry) : entry === value || entry.split("/").pop() === value
        );
      }
      case "import":
        return value !== null &&
          listOf(set.import).some((grant) => grant === value || `${grant}:443` === value);
      default:
        return false;
    }
  }
}
