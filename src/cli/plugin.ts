/**
 * Launching one plugin for `tether inspect` and `tether call`, as a go-plugin host would: the magic cookie
 * from `--cookie-key/--cookie-value` (or an SFTPGo plugin type's with `--sftpgo TYPE`), the offered protocol
 * versions, AutoMTLS on unless `--no-automtls`, a clean environment, and `PluginClient` doing the rest (so
 * TypeScript plugins run under Deno with deny-by-default permissions, decided by `runtimeFor`).
 *
 * @module
 */

import { PluginClient, type PluginClientOptions } from "../client.ts";
import type { HandshakeConfig } from "../handshake.ts";
import { runtimeFor } from "../launch.ts";
import type { LogRecord } from "../logs.ts";
import type { DenoPermissions } from "../permissions.ts";
import { DEFAULT_MAX_RECEIVE_MESSAGE_BYTES } from "../receive_limits.ts";
import { sftpgoHandshakes } from "../sftpgo/handshakes.ts";
import { int, list, type Options, str } from "./args.ts";
import { CliError, ExitCode, type Output, UsageError } from "./output.ts";

/** The launch flags `inspect` and `call` share. */
export const LAUNCH_OPTIONS: Options = {
  "cookie-key": { type: "string" },
  "cookie-value": { type: "string" },
  sftpgo: { type: "string" },
  "protocol-version": { type: "string", multiple: true },
  "no-automtls": { type: "boolean" },
  runtime: { type: "string" },
  allow: { type: "string", multiple: true },
  config: { type: "string" },
  sha256: { type: "string" },
  env: { type: "string", multiple: true },
  "start-timeout": { type: "string" },
  "max-receive-message-bytes": { type: "string" },
};

/** Help text for {@linkcode LAUNCH_OPTIONS}. */
export const LAUNCH_HELP = `Launch options (the plugin command line follows "--"):
  --cookie-key KEY          magic cookie variable the plugin expects (go-plugin MagicCookieKey)
  --cookie-value VALUE      its value (MagicCookieValue)
  --sftpgo TYPE             use SFTPGo's cookie for TYPE (auth, notifier, kms, ipfilter, eventsearcher, metadata)
  --protocol-version N      offer application protocol version N (repeatable; default 1)
  --no-automtls             plain connection instead of AutoMTLS (go-plugin's default is plain; Tether's is mTLS)
  --runtime auto|deno|native  how to run the command (default auto: .ts/.js/... run under Deno)
  --allow KIND=VALUE        Deno permission for a TypeScript plugin, e.g. --allow read=/srv (repeatable;
                            everything else is denied)
  --config FILE             deno.json for a TypeScript plugin (default: the nearest one above the plugin file)
  --sha256 HEX              refuse to run unless the command's SHA-256 is HEX (as SFTPGo's sha256sum)
  --env NAME=VALUE          environment variable for the plugin (repeatable; the plugin gets no other)
  --start-timeout MS        how long to wait for the handshake (default 60000)
  --max-receive-message-bytes N  largest answer message accepted from the plugin (default 134217728, 128 MiB;
                            2147483647 is go-plugin's own limit)`;

/** A plugin's log records and forwarded output, as collected while it runs. */
export interface Collected {
  logs: LogRecord[];
  stdout: string;
  stderr: string;
}

function handshakeFrom(values: Record<string, unknown>): HandshakeConfig {
  const versions = list(values, "protocol-version").map((v) => {
    if (!/^[0-9]+$/.test(v)) {
      throw new UsageError(`--protocol-version must be a non-negative integer, not ${JSON.stringify(v)}`);
    }
    return Number(v);
  });
  const sftpgo = str(values, "sftpgo");
  let base: HandshakeConfig;
  if (sftpgo !== undefined) {
    const known = (sftpgoHandshakes as Record<string, HandshakeConfig>)[sftpgo];
    if (known === undefined) {
      throw new UsageError(
        `--sftpgo must be one of ${Object.keys(sftpgoHandshakes).join(", ")}, not ${JSON.stringify(sftpgo)}`,
      );
    }
    base = known;
  } else {
    const key = str(values, "cookie-key");
    const value = str(values, "cookie-value");
    if (key === undefined || value === undefined) {
      throw new UsageError(
        "give the plugin's magic cookie with --cookie-key and --cookie-value (or --sftpgo TYPE)",
      );
    }
    base = { magicCookieKey: key, magicCookieValue: value, protocolVersion: 1 };
  }
  return versions.length === 0 ? base : {
    magicCookieKey: base.magicCookieKey,
    magicCookieValue: base.magicCookieValue,
    protocolVersions: versions,
  };
}

/**
 * The Deno permissions of repeated `--allow KIND=VALUE` flags (or another flag's, e.g. `deny`).
 *
 * @throws {UsageError} For an entry that is not `KIND=VALUE` with a known kind.
 */
export function permissionsFrom(values: Record<string, unknown>, flag = "allow"): DenoPermissions {
  const grants: Record<string, string[] | boolean> = {};
  for (const entry of list(values, flag)) {
    const m = /^(read|write|net|env|sys|run|ffi|import)=(.+)$/.exec(entry);
    if (m === null) {
      throw new UsageError(
        `--${flag} takes KIND=VALUE with KIND read, write, net, env, sys, run, ffi or import; found ${
          JSON.stringify(entry)
        }`,
      );
    }
    const current = grants[m[1]];
    grants[m[1]] = [...(Array.isArray(current) ? current : []), m[2]];
  }
  return grants as DenoPermissions;
}

/** The nearest deno.json or deno.jsonc in `dir` or above it. */
export async function nearestDenoConfig(dir: string): Promise<string | undefined> {
  let current = dir;
  while (true) {
    for (const name of ["deno.json", "deno.jsonc"]) {
      try {
        if ((await Deno.stat(`${current}/${name}`)).isFile) return `${current}/${name}`;
      } catch {
        // Not here.
      }
    }
    const parent = current.replace(/\/[^/]*$/, "");
    if (parent === current || parent === "") return undefined;
    current = parent;
  }
}

/**
 * Builds `PluginClient` options from the launch flags and the command line after `--`.
 *
 * @throws {UsageError} For missing or malformed flags.
 */
export async function clientOptionsFrom(
  values: Record<string, unknown>,
  argv: string[],
  collected: Collected,
): Promise<PluginClientOptions> {
  if (argv.length === 0) throw new UsageError('give the plugin command line after "--"');
  const [cmd, ...args] = argv;
  const runtimeFlag = str(values, "runtime") ?? "auto";
  if (!["auto", "deno", "native"].includes(runtimeFlag)) {
    throw new UsageError(`--runtime must be auto, deno or native, not ${JSON.stringify(runtimeFlag)}`);
  }
  const runtime = runtimeFor(cmd, runtimeFlag as "auto" | "deno" | "native");
  const sha256 = str(values, "sha256");
  if (sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(sha256)) {
    throw new UsageError(`--sha256 needs 64 hex digits, found ${JSON.stringify(sha256)}`);
  }
  const env: Record<string, string> = {};
  for (const entry of list(values, "env")) {
    const eq = entry.indexOf("=");
    if (eq <= 0) throw new UsageError(`--env takes NAME=VALUE, found ${JSON.stringify(entry)}`);
    env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  let denoConfig = str(values, "config");
  if (runtime === "deno" && denoConfig === undefined && sha256 === undefined) {
    const abs = cmd.startsWith("/") ? cmd : `${Deno.cwd()}/${cmd}`;
    denoConfig = await nearestDenoConfig(abs.replace(/\/[^/]*$/, ""));
  }
  const decoder = new TextDecoder();
  return {
    cmd,
    args,
    handshake: handshakeFrom(values),
    autoMTLS: !values["no-automtls"],
    runtime,
    permissions: permissionsFrom(values),
    ...(denoConfig !== undefined ? { denoConfig } : {}),
    ...(sha256 !== undefined ? { sha256: sha256.toLowerCase() } : {}),
    env,
    startTimeoutMs: int(values, "start-timeout", 60_000, { min: 1 }),
    maxReceiveMessageBytes: int(values, "max-receive-message-bytes", DEFAULT_MAX_RECEIVE_MESSAGE_BYTES, {
      min: 1,
    }),
    logger: { log: (record) => collected.logs.push(record) },
    stdout: (chunk) => collected.stdout += decoder.decode(chunk, { stream: true }),
    stderr: (chunk) => collected.stderr += decoder.decode(chunk, { stream: true }),
  };
}

/**
 * Starts the plugin; a failure to start becomes a {@linkcode CliError} with exit code 4 and the launcher's
 * message (which says what happened and what to do).
 */
export async function startPlugin(
  options: PluginClientOptions,
): Promise<{ client: PluginClient; startMs: number }> {
  const client = new PluginClient(options);
  const t0 = performance.now();
  try {
    await client.start();
  } catch (error) {
    await client.kill().catch(() => {});
    throw new CliError(
      `plugin did not start: ${error instanceof Error ? error.message : String(error)}`,
      ExitCode.start,
      { cause: error },
    );
  }
  return { client, startMs: Math.round(performance.now() - t0) };
}

/** A running plugin, as {@linkcode withPlugin} hands it to its caller. */
export interface PluginSession {
  /** The started client. */
  client: PluginClient;
  /** The options it was launched with. */
  options: PluginClientOptions;
  /** Its logs and forwarded output so far (still growing until it stops). */
  collected: Collected;
  /** Milliseconds from launch to a completed handshake. */
  startMs: number;
}

/**
 * Launches the plugin of the launch flags and `argv` (as {@linkcode clientOptionsFrom} and
 * {@linkcode startPlugin}), runs `use` with it, and stops it whatever `use` does, with progress lines on the
 * way; with `showLogs`, prints its log records to stderr once it has stopped.
 *
 * @throws {UsageError} For malformed launch flags; {@linkcode CliError} (exit 4) when the plugin does not start;
 * whatever `use` throws, after the plugin has been stopped.
 *
 * @example
 * ```ts ignore
 * import { withPlugin } from "./plugin.ts";
 * import { Output } from "./output.ts";
 * const values = { "cookie-key": "TETHER_KV_PLUGIN", "cookie-value": "kv-7d3f2a" };
 * const pid = await withPlugin(values, ["./kvplugin"], new Output(), ({ client }) => Promise.resolve(client.pid));
 * console.log(pid);
 * ```
 */
export async function withPlugin<T>(
  values: Record<string, unknown>,
  argv: string[],
  out: Output,
  use: (session: PluginSession) => Promise<T>,
  { showLogs = false }: { showLogs?: boolean } = {},
): Promise<T> {
  const collected: Collected = { logs: [], stdout: "", stderr: "" };
  const options = await clientOptionsFrom(values, argv, collected);
  out.progress(`starting ${options.cmd}`);
  const { client, startMs } = await startPlugin(options);
  try {
    return await use({ client, options, collected, startMs });
  } finally {
    out.progress("stopping the plugin");
    await client.kill();
    out.clearProgress();
    if (showLogs) { for (const r of collected.logs) out.error(formatLog(r)); }
  }
}

/** One log record as a line: `LEVEL message key=value ...`. */
export function formatLog(record: LogRecord): string {
  const fields = Object.entries(record.fields)
    .filter(([k]) => k !== "@module" && k !== "@caller")
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  return [record.level.toUpperCase().padEnd(5), record.message, ...fields].join(" ");
}
