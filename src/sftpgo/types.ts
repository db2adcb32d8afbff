/**
 * Vocabulary shared by the typed SFTPGo wrappers: user JSON, timestamps,
 * default call options, what a host wrapper needs from a plugin client, and
 * the options of the `serveX` helpers.
 *
 * Conventions, the same in every wrapper:
 * - Points in time are a `Date` or a `bigint` of **Unix nanoseconds** (the
 *   sdk's unit for event timestamps and search bounds). Where the wrappers hand
 *   a time to you, they give both: `timestamp: Date` (millisecond precision)
 *   and `timestampNs: bigint` (exact).
 * - Durations carry their unit in their name (`elapsedMs`).
 * - JSON on the wire (SFTPGo users, provider objects, search results) is
 *   handed out parsed, with the raw bytes next to it.
 *
 * @module
 */

import { GrpcStatus, TetherError } from "../errors.ts";
import type { Logger } from "../logs.ts";
import type { ServeTlsOptions } from "../server.ts";

/**
 * An SFTPGo user as its JSON API spells it (`username`, `home_dir`,
 * `permissions`, ...). Only a few keys are typed; every other key of
 * SFTPGo's user object may be present and is passed through untouched.
 *
 * @example
 * ```ts
 * import type { SftpgoUser } from "./types.ts";
 * const alice: SftpgoUser = {
 *   username: "alice",
 *   status: 1,
 *   home_dir: "/srv/alice",
 *   permissions: { "/": ["*"] },
 * };
 * ```
 */
export interface SftpgoUser {
  /** Login name. */
  username?: string;
  /** 1 enabled, 0 disabled. */
  status?: number;
  /** Home directory on the SFTPGo host. */
  home_dir?: string;
  /** Virtual path to permission list, e.g. `{ "/": ["*"] }`. */
  permissions?: Record<string, string[]>;
  /** Any other field of SFTPGo's user object. */
  [key: string]: unknown;
}

/**
 * What a host wrapper needs from a plugin client: its `dispense` method. A
 * started {@linkcode PluginClient} is one.
 *
 * (The parameter type is `never` so that `PluginClient.dispense`, which is
 * generic over protobuf service descriptors, fits without this module's
 * public API naming those descriptors.)
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { AuthClient, sftpgoHandshakes } from "@tether/tether/sftpgo";
 * const plugin = new PluginClient({ cmd: "./auth-plugin", handshake: sftpgoHandshakes.auth });
 * await plugin.start();
 * const auth = new AuthClient(plugin); // PluginClient is a PluginDispenser
 * ```
 */
export interface PluginDispenser {
  /** Hands out a typed client for one of the plugin's services. */
  dispense(service: never): unknown;
}

/**
 * Defaults for every call a host wrapper makes.
 *
 * @example
 * ```ts
 * import type { SftpgoClientDefaults } from "./types.ts";
 * const defaults: SftpgoClientDefaults = { timeoutMs: 5_000 };
 * ```
 */
export interface SftpgoClientDefaults {
  /** Deadline per call, in milliseconds (default 20000, the sdk's `rpcTimeout`). */
  readonly timeoutMs?: number;
}

/**
 * Options of the `serveAuth`, `serveNotifier`, ... helpers: everything
 * `serve()` takes except the handshake and the services, which the helper
 * fills in for its plugin type.
 *
 * @example
 * ```ts
 * import type { SftpgoServeOptions } from "./types.ts";
 * const options: SftpgoServeOptions = { exitOnShutdown: true };
 * ```
 */
export interface SftpgoServeOptions {
  /** Where the plugin logs. Default: hclog JSON lines on stderr, which the host parses (as Go plugins do). */
  readonly logger?: Logger;
  /** Manual TLS; without it, AutoMTLS is used when the host asks for it, else plaintext. */
  readonly tls?: ServeTlsOptions;
  /** Exit the process once the host asks for Shutdown or goes away. Default `true`. */
  readonly exitOnShutdown?: boolean;
}

/**
 * What a plugin implementation can use while it runs.
 *
 * @example
 * ```ts
 * import type { SftpgoPluginContext } from "./types.ts";
 * const hello = ({ logger }: SftpgoPluginContext) => logger.log({ level: "info", message: "hello", fields: {} });
 * ```
 */
export interface SftpgoPluginContext {
  /** The plugin's log (hclog JSON on stderr by default, which the host parses). */
  readonly logger: Logger;
}

/**
 * An implementation, or a function that builds it once the plugin runs (to
 * reach the plugin's logger).
 *
 * @example
 * ```ts
 * import type { ImplementationFactory } from "./types.ts";
 * interface Greeter { greet(): string }
 * const make: ImplementationFactory<Greeter> = ({ logger }) => ({
 *   greet: () => {
 *     logger.log({ level: "info", message: "greeting", fields: {} });
 *     return "hi";
 *   },
 * });
 * ```
 */
export type ImplementationFactory<T> = T | ((plugin: SftpgoPluginContext) => T);

/** The sdk's per-call deadline (`rpcTimeout` in every sftpgo/sdk plugin package). */
export const SDK_TIMEOUT_MS = 20_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** A string from UTF-8 bytes (invalid sequences become U+FFFD, as Go's `string(b)` keeps them). */
export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/**
 * JSON as bytes: `Uint8Array` is taken as already-encoded JSON, a string as
 * JSON text, anything else is serialized; `undefined` and `null` become no
 * bytes at all (SFTPGo's "nothing").
 *
 * @example
 * ```ts
 * import { jsonBytes } from "./types.ts";
 * console.log(new TextDecoder().decode(jsonBytes({ username: "alice" }))); // {"username":"alice"}
 * console.log(jsonBytes(undefined).length); // 0
 * ```
 */
export function jsonBytes(value: unknown): Uint8Array {
  if (value === undefined || value === null) return new Uint8Array();
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return utf8(value);
  return utf8(JSON.stringify(value));
}

/**
 * Parses JSON bytes that should hold an object. Empty bytes give `undefined`.
 *
 * @throws {SyntaxError} when the bytes are not JSON, {@linkcode TypeError} when they are not an object.
 */
export function parseJsonObject<T extends object = Record<string, unknown>>(
  bytes: Uint8Array,
): T | undefined {
  if (bytes.length === 0) return undefined;
  const value: unknown = JSON.parse(fromUtf8(bytes));
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`expected a JSON object, got ${Array.isArray(value) ? "an array" : String(value)}`);
  }
  return value as T;
}

/**
 * Like {@linkcode parseJsonObject} but never throws: for data a plugin
 * receives, where a bad value should not fail the call (the bytes stay
 * available next to it).
 */
export function tryParseJsonObject<T extends object = Record<string, unknown>>(
  bytes: Uint8Array,
): T | undefined {
  try {
    return parseJsonObject<T>(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Unix nanoseconds of a `Date` or a `bigint` (taken as nanoseconds already).
 *
 * @example
 * ```ts
 * import { toUnixNanos } from "./types.ts";
 * console.log(toUnixNanos(new Date(1_000))); // 1000000000n
 * console.log(toUnixNanos(5n)); // 5n
 * ```
 */
export function toUnixNanos(time: Date | bigint): bigint {
  if (typeof time === "bigint") return time;
  const ms = time.getTime();
  if (!Number.isFinite(ms)) throw new TetherError("config", "invalid Date: it has no time value");
  return BigInt(ms) * 1_000_000n;
}

/**
 * A `Date` of Unix nanoseconds (rounded down to the millisecond, also before 1970).
 *
 * @example
 * ```ts
 * import { fromUnixNanos } from "./types.ts";
 * console.log(fromUnixNanos(1767225600123456789n).toISOString()); // 2026-01-01T00:00:00.123Z
 * ```
 */
export function fromUnixNanos(ns: bigint): Date {
  // BigInt division truncates toward zero; floor keeps pre-1970 times in the right millisecond.
  let ms = ns / 1_000_000n;
  if (ns < 0n && ms * 1_000_000n !== ns) ms -= 1n;
  return new Date(Number(ms));
}

/**
 * An int64 a wrapper receives, as a number: exact up to 2^53 (8 PiB as a
 * file size, 285 000 years as milliseconds), which every real value is.
 */
export function int64ToNumber(value: bigint): number {
  return Number(value);
}

/** An int64 to send, from a number (must be an integer) or a bigint. */
export function toInt64(value: number | bigint | undefined, field: string): bigint {
  if (value === undefined) return 0n;
  if (typeof value === "bigint") return value;
  if (!Number.isInteger(value)) throw new TetherError("config", `${field} must be an integer, got ${value}`);
  return BigInt(value);
}

/**
 * The text the plugin put in its error, without Tether's `<path> failed:
 * <STATUS>:` prefix: what a Go plugin returned as `errors.New(...)`.
 *
 * @example
 * ```ts
 * import { pluginErrorMessage } from "./types.ts";
 * import { GrpcStatus, TetherError } from "../errors.ts";
 * const error = new TetherError("rpc", "/proto.IPFilter/CheckIP failed: UNKNOWN: ip banned", {
 *   status: GrpcStatus.UNKNOWN,
 *   cause: { code: 2, details: "ip banned" },
 * });
 * console.log(pluginErrorMessage(error)); // "ip banned"
 * ```
 */
export function pluginErrorMessage(error: unknown): string {
  if (error instanceof TetherError) {
    const cause = error.cause as { details?: unknown } | undefined;
    if (typeof cause?.details === "string") return cause.details;
    return error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Whether a failed call says nothing about the plugin's answer: the plugin
 * is gone or unreachable (`exited`, `closed`, UNAVAILABLE), the caller
 * cancelled, or the deadline passed. Any other status is the plugin's own
 * answer (a Go plugin's plain error arrives as UNKNOWN).
 *
 * @example
 * ```ts
 * import { isTransportFailure } from "./types.ts";
 * import { GrpcStatus, TetherError } from "../errors.ts";
 * console.log(isTransportFailure(new TetherError("exited", "plugin exited"))); // true
 * console.log(isTransportFailure(new TetherError("rpc", "denied", { status: GrpcStatus.UNKNOWN }))); // false
 * ```
 */
export function isTransportFailure(error: unknown): boolean {
  if (!(error instanceof TetherError) || error.code !== "rpc") return true;
  return error.status === undefined || error.status === GrpcStatus.UNAVAILABLE ||
    error.status === GrpcStatus.CANCELLED || error.status === GrpcStatus.DEADLINE_EXCEEDED;
}

/** The error a wrapper throws when a plugin's answer cannot be what the sdk promises (e.g. user JSON that does not parse). */
export function badAnswer(what: string, cause: unknown, bytes?: Uint8Array): TetherError {
  const sample = bytes ? `: ${JSON.stringify(fromUtf8(bytes.subarray(0, 200)))}` : "";
  return new TetherError("rpc", `the plugin answered ${what}${sample} (${String(cause)})`, {
    status: GrpcStatus.INTERNAL,
    cause,
  });
}
