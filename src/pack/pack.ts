/**
 * `tether pack`: one executable file per TypeScript plugin, for any go-plugin
 * host. The file is a `#!/bin/sh` script that holds, in one heredoc, Tether's
 * launcher (launcher.ts, bundled) and the plugin bundled with `deno bundle`,
 * together with the permissions it was packed with. It execs the `deno`
 * recorded at pack time as `deno run -`, so the program Deno runs is the bytes
 * the shell read from this one file: nothing else is read from disk, and the
 * file's SHA-256 (SFTPGo's `sha256sum`, go-plugin's `SecureConfig`) covers the
 * code, its dependencies and its permissions.
 *
 * @module
 */

import { TetherError } from "../errors.ts";
import { sha256Hex } from "../integrity.ts";
import { type Isolation, resolveIsolation, resolveLimits, type ResourceLimits } from "../isolation.ts";
import { prepareLaunch } from "../launch.ts";
import { silentLogger } from "../logs.ts";
import { type DenoPermissions, PermissionPolicy } from "../permissions.ts";
import { PACK_FORMAT, PACK_GLOBAL, type PackManifest, type PackPayload } from "./manifest.ts";

/** Which step of packing failed; the CLI maps it to an exit code. */
export type PackStage = "input" | "grants" | "graph" | "bundle" | "output";

/** A packing failure, with the step it happened in. */
export class PackError extends Error {
  /** Makes one. */
  constructor(readonly stage: PackStage, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PackError";
  }
}

/** Options of {@linkcode packPlugin}. */
export interface PackOptions {
  /** The plugin's entry (`.ts`/`.js`). */
  readonly entry: string;
  /** Where to write the packed file. */
  readonly output: string;
  /** The plugin's name in logs (default: the output file's name). */
  readonly name?: string;
  /** The magic cookie variable of the plugin's handshake (e.g. `SFTPGO_PLUGIN_AUTH`). */
  readonly cookieKey: string;
  /** Deny-by-default grants. */
  readonly permissions?: DenoPermissions;
  /** Explicit denials. */
  readonly denyPermissions?: DenoPermissions;
  /** Opt-in for `run`, `ffi`, `all`. */
  readonly allowBroadPermissions?: boolean;
  /** OS layer on the target (default `auto`). */
  readonly isolation?: Isolation;
  /** Memory limits on the target. */
  readonly limits?: ResourceLimits;
  /** deno.json for bundling and the module graph check. */
  readonly denoConfig?: string;
  /** Absolute path of `deno` on the target machine (default: the Deno running this). */
  readonly deno?: string;
}

/** What {@linkcode packPlugin} made. */
export interface PackResult {
  /** The packed file. */
  readonly output: string;
  /** Its SHA-256 (lower-case hex): SFTPGo's `sha256sum`. */
  readonly sha256: string;
  /** Its size. */
  readonly bytes: number;
  /** The `deno` it execs. */
  readonly deno: string;
  /** What it carries. */
  readonly manifest: PackManifest;
}

const LAUNCHER = new URL("./launcher.ts", import.meta.url);
const TETHER_CONFIG = new URL("../../deno.json", import.meta.url);

/** Variables the shell drops before starting Deno: each would change how Deno decides or loads code. */
const DENO_BEHAVIOUR_ENV = [
  "DENO_PERMISSION_BROKER_PATH",
  "DENO_AUDIT_PERMISSIONS",
  "DENO_V8_FLAGS",
  "DENO_NO_PROMPT",
  "DENO_TRACE_PERMISSIONS",
  "NODE_OPTIONS",
  "NODE_PATH",
];

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

/** Single-quotes a word for sh. */
function shQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function describe(kind: string, value: readonly string[] | boolean | undefined): string[] {
  if (value === undefined || value === false) return [];
  if (value === true) return [`#   ${kind} (all)`];
  return value.map((v) => `#   ${kind}=${v}`);
}

/**
 * The packed file's text: the shell part, then the program as a quoted heredoc.
 *
 * @example
 * ```ts
 * import { packedScript } from "./pack.ts";
 * const text = packedScript("console.log(1)", "/usr/bin/deno", {
 *   format: 1, name: "p", cookieKey: "K", permissions: {}, isolation: "auto", pluginSha256: "0".repeat(64),
 * }, "0".repeat(64));
 * console.log(text.startsWith("#!/bin/sh\n")); // true
 * ```
 */
export function packedScript(
  program: string,
  deno: string,
  manifest: PackManifest,
  programSha256: string,
): string {
  const delimiter = `TETHER_PACK_${programSha256.slice(0, 32)}`;
  if (program.split("\n").includes(delimiter)) {
    throw new PackError("bundle", `the bundled program contains the line ${delimiter}; cannot embed it`);
  }
  const p = manifest.permissions;
  const grants = [
    ...(p.all ? ["#   all"] : []),
    ...describe("read", p.read),
    ...describe("write", p.write),
    ...describe("net", p.net),
    ...describe("env", p.env),
    ...describe("sys", p.sys),
    ...describe("run", p.run),
    ...describe("ffi", p.ffi),
    ...describe("import", p.import),
  ];
  const d = manifest.denyPermissions ?? {};
  const denied = ["read", "write", "net", "env", "sys", "run", "ffi", "import"].flatMap((kind) =>
    describe(kind, d[kind as keyof DenoPermissions] as readonly string[] | undefined)
  );
  const name = manifest.name;
  return [
    "#!/bin/sh",
    `# Tether packed plugin ${JSON.stringify(name)} (format ${PACK_FORMAT}), made by tether pack.`,
    "# This file's SHA-256 covers the shell below, Tether's launcher, the plugin's bundled code and these",
    "# permissions. sh reads it once and gives the program to deno on stdin: nothing else is read from disk.",
    "# Deny-by-default grants (plus the go-plugin protocol's own variables and sockets):",
    ...(grants.length > 0 ? grants : ["#   (none)"]),
    ...(denied.length > 0 ? ["# Denied:", ...denied] : []),
    `# Isolation: ${manifest.isolation}. Cookie variable: ${manifest.cookieKey}.`,
    `# Plugin code SHA-256: ${manifest.pluginSha256}`,
    `D=${shQuote(deno)}`,
    'if [ ! -x "$D" ]; then',
    `  echo ${shQuote(`plugin ${name}: needs Deno at `)}"$D"${
      shQuote(" (recorded by tether pack): install Deno there, or pack again with --deno PATH")
    } >&2`,
    "  exit 127",
    "fi",
    `unset ${DENO_BEHAVIOUR_ENV.join(" ")}`,
    `exec "$D" run --quiet --ext=js --no-config --no-lock --no-npm --no-remote --no-prompt \\`,
    `  --allow-read --allow-write --allow-env --allow-run - "$@" <<'${delimiter}'`,
    program,
    delimiter,
    "",
  ].join("\n");
}

async function bundleTo(entry: string | URL, config: string | undefined, what: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "tether-pack-" });
  try {
    const out = `${dir}/bundle.js`;
    const result = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--quiet", ...(config ? ["--config", config] : []), String(entry), "-o", out],
      env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!result.success) {
      throw new PackError(
        "bundle",
        `deno bundle of ${what} failed (exit code ${result.code}): ${
          new TextDecoder().decode(result.stderr).trim()
        }`,
      );
    }
    return await Deno.readTextFile(out);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Packs a TypeScript plugin into one executable file and returns its SHA-256.
 *
 * The grants and the module graph are checked exactly as a Tether host checks
 * them before a launch (`prepareLaunch`), so what would not start under Tether
 * is not packed.
 *
 * @throws {PackError} naming the step: `input` (entry unreadable), `grants` (a bad grant, limit or isolation
 *   mode), `graph` (code
 *   outside the plugin's tree or grants), `bundle` (`deno bundle` failed), `output` (cannot write).
 *
 * @example
 * ```ts ignore
 * import { packPlugin } from "./pack.ts";
 * const packed = await packPlugin({
 *   entry: "plugins/auth.ts", output: "dist/auth-plugin", cookieKey: "SFTPGO_PLUGIN_AUTH",
 *   permissions: { read: ["/etc/sftpgo/users.json"] },
 * });
 * console.log(packed.sha256);
 * ```
 */
export async function packPlugin(options: PackOptions): Promise<PackResult> {
  const entry = absolute(options.entry);
  const output = absolute(options.output);
  const name = options.name ?? output.slice(output.lastIndexOf("/") + 1);
  try {
    const info = await Deno.stat(entry);
    if (!info.isFile) throw new Error("not a file");
  } catch (cause) {
    throw new PackError("input", `cannot read the plugin ${options.entry}: ${errorText(cause)}`, { cause });
  }
  const deno = options.deno ?? Deno.execPath();
  if (!deno.startsWith("/")) {
    throw new PackError(
      "grants",
      `--deno must be an absolute path (hosts such as SFTPGo start plugins without PATH), found ${
        JSON.stringify(deno)
      }`,
    );
  }
  const permissions = options.permissions ?? {};
  try {
    // The same checks a Tether host makes (entries, broad grants, absolute paths), before anything runs.
    new PermissionPolicy({
      grants: permissions,
      deny: options.denyPermissions,
      allowBroadPermissions: options.allowBroadPermissions,
      protocol: { env: [], sockets: [] },
      source: `plugin ${name} permissions`,
    });
    // The limits and isolation mode as a launch reads them (the mode's namespaces are probed on the target).
    resolveLimits(options.limits, name);
    await resolveIsolation(
      options.isolation === "namespaces" ? "auto" : options.isolation,
      name,
      silentLogger,
    );
  } catch (cause) {
    throw new PackError("grants", errorText(cause), { cause });
  }
  // The module graph check of a real launch, on the source: code outside its tree or read grants is refused.
  try {
    const launch = await prepareLaunch({
      name,
      cmd: entry,
      args: [],
      runtime: "deno",
      permissions,
      denyPermissions: options.denyPermissions,
      allowBroadPermissions: options.allowBroadPermissions,
      denoConfig: options.denoConfig,
      cookieKey: options.cookieKey,
      logger: silentLogger,
      isolation: "deno-only",
      limits: options.limits,
    });
    await launch.cleanup();
  } catch (cause) {
    throw new PackError("graph", errorText(cause), { cause });
  }

  const plugin = await bundleTo(entry, options.denoConfig, options.entry);
  const pluginSha256 = await sha256Hex(new TextEncoder().encode(plugin));
  if (LAUNCHER.protocol !== "file:") {
    throw new PackError(
      "bundle",
      `tether pack bundles its launcher from a checkout of Tether; this copy is at ${LAUNCHER.href}`,
    );
  }
  const launcher = await bundleTo(LAUNCHER, decodeURIComponent(TETHER_CONFIG.pathname), "Tether's launcher");
  const manifest: PackManifest = {
    format: PACK_FORMAT,
    name,
    cookieKey: options.cookieKey,
    permissions,
    ...(options.denyPermissions ? { denyPermissions: options.denyPermissions } : {}),
    ...(options.allowBroadPermissions ? { allowBroadPermissions: true } : {}),
    isolation: options.isolation ?? "auto",
    ...(options.limits ? { limits: options.limits } : {}),
    pluginSha256,
  };
  const payload: PackPayload = { manifest, plugin };
  const program = `globalThis.${PACK_GLOBAL} = ${JSON.stringify(payload)};\n${launcher}`;
  const text = packedScript(program, deno, manifest, await sha256Hex(new TextEncoder().encode(program)));
  const bytes = new TextEncoder().encode(text);
  const temporary = `${output}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeFile(temporary, bytes, { mode: 0o600, createNew: true });
    await Deno.chmod(temporary, 0o755);
    await Deno.rename(temporary, output);
  } catch (cause) {
    await Deno.remove(temporary).catch(() => {});
    throw new PackError("output", `cannot write ${options.output}: ${errorText(cause)}`, { cause });
  }
  return { output, sha256: await sha256Hex(bytes), bytes: bytes.length, deno, manifest };
}

function errorText(cause: unknown): string {
  return cause instanceof TetherError || cause instanceof Error ? cause.message : String(cause);
}
