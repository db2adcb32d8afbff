/**
 * Tether's one error type. Every failure the library reports is a
 * {@linkcode TetherError} whose {@linkcode TetherError.code} says what kind of
 * thing went wrong, so callers branch on a field instead of parsing messages.
 *
 * @module
 */

/**
 * What kind of failure a {@linkcode TetherError} reports.
 *
 * - `handshake`: the plugin's handshake line was missing or wrong.
 * - `start_timeout`: the plugin did not print its handshake line in time.
 * - `exited`: the plugin process is gone (before the handshake or mid-call).
 * - `tls`: certificates could not be made, parsed or verified.
 * - `rpc`: a call failed with a gRPC status ({@linkcode TetherError.status}).
 * - `broker`: a brokered connection could not be set up.
 * - `checksum`: the plugin's bytes do not match the configured SHA-256.
 * - `config`: the caller passed options that cannot work.
 * - `permission`: the Deno process lacks a permission it needs.
 * - `closed`: the client was killed or not started.
 * - `resource_limit`: the plugin died of one of its resource limits (the message names it).
 */
export type TetherErrorCode =
  | "handshake"
  | "start_timeout"
  | "exited"
  | "tls"
  | "rpc"
  | "broker"
  | "checksum"
  | "config"
  | "permission"
  | "closed"
  | "resource_limit";

/**
 * gRPC status codes, numbered as on the wire.
 *
 * @example
 * ```ts
 * import { GrpcStatus } from "./errors.ts";
 * console.log(GrpcStatus.NOT_FOUND); // 5
 * ```
 */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** A gRPC status code number (0 to 16). */
export type GrpcStatusCode = typeof GrpcStatus[keyof typeof GrpcStatus];

/**
 * The name of a gRPC status code, e.g. `NOT_FOUND` for 5.
 *
 * @example
 * ```ts
 * import { grpcStatusName } from "./errors.ts";
 * console.log(grpcStatusName(14)); // "UNAVAILABLE"
 * ```
 */
export function grpcStatusName(code: number): string {
  for (const [name, value] of Object.entries(GrpcStatus)) {
    if (value === code) return name;
  }
  return `STATUS_${code}`;
}

/** Extra facts a {@linkcode TetherError} may carry. */
export interface TetherErrorOptions {
  /** The error that caused this one. */
  cause?: unknown;
  /** The gRPC status, for `rpc` errors (and `exited` errors that ended a call). */
  status?: GrpcStatusCode;
  /** The plugin this error concerns, when known. */
  plugin?: string;
}

/**
 * The error Tether throws and rejects with.
 *
 * @example
 * ```ts
 * import { GrpcStatus, TetherError } from "./errors.ts";
 *
 * try {
 *   throw new TetherError("rpc", "key not found", { status: GrpcStatus.NOT_FOUND });
 * } catch (error) {
 *   if (error instanceof TetherError && error.code === "rpc") {
 *     console.log(error.statusName); // "NOT_FOUND"
 *   }
 * }
 * ```
 */
export class TetherError extends Error {
  /** What kind of failure this is. */
  readonly code: TetherErrorCode;
  /** The gRPC status of a failed call, if the failure came from one. */
  readonly status?: GrpcStatusCode;
  /** The plugin this error concerns, when known. */
  readonly plugin?: string;

  /** Makes an error of the given kind with a message that says what to do. */
  constructor(code: TetherErrorCode, message: string, options: TetherErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "TetherError";
    this.code = code;
    if (options.status !== undefined) this.status = options.status;
    if (options.plugin !== undefined) this.plugin = options.plugin;
  }

  /** The name of {@linkcode TetherError.status}, e.g. `DEADLINE_EXCEEDED`. */
  get statusName(): string | undefined {
    return this.status === undefined ? undefined : grpcStatusName(this.status);
  }
}
