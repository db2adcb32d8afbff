/**
 * How much of a plugin's answers the host holds in memory: one home for the
 * per-message receive limit (`maxReceiveMessageBytes`, checked against the
 * length a message announces, before any of it is held) and the process-wide
 * receive budget (every byte received into a decoder and not yet handed to
 * its caller, over all plugins, calls and streams at once). go-plugin accepts
 * messages of up to 2^31-1 bytes; a hostile plugin could then make the host
 * hold gigabytes (docs/security.md, "The size of one answer").
 *
 * @module
 */

import { GrpcStatus, TetherError } from "./errors.ts";
import type { DecoderAccounting, WireStatus } from "./grpc_wire.ts";

/** The largest message gRPC's 4-byte length (and go-plugin's MaxInt32 limit) allows: 2^31-1 bytes. */
export const MAX_RECEIVE_MESSAGE_BYTES = 2 ** 31 - 1;

/**
 * Default largest message the host accepts from a plugin: 128 MiB, 18 times
 * the 7 MiB Terraform-style schema of our benchmark. Set
 * `maxReceiveMessageBytes: 2 ** 31 - 1` for go-plugin's own limit.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_RECEIVE_MESSAGE_BYTES } from "./receive_limits.ts";
 * console.log(DEFAULT_MAX_RECEIVE_MESSAGE_BYTES / 2 ** 20); // 128
 * ```
 */
export const DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 128 * 2 ** 20;

/**
 * Default receive budget of a process: 512 MiB held at once across every
 * answer being received (four answers at the default per-message limit).
 *
 * @example
 * ```ts
 * import { DEFAULT_RECEIVE_BUDGET_BYTES } from "./receive_limits.ts";
 * console.log(DEFAULT_RECEIVE_BUDGET_BYTES / 2 ** 20); // 512
 * ```
 */
export const DEFAULT_RECEIVE_BUDGET_BYTES = 512 * 2 ** 20;

function found(value: unknown): string {
  return typeof value === "number"
    ? String(value)
    : value === undefined
    ? "undefined"
    : JSON.stringify(value);
}

/**
 * Returns `value` if it is a per-message receive limit (an integer from 1 to
 * 2^31-1 bytes); `undefined` passes through (the default applies).
 *
 * @example
 * ```ts
 * import { validateMaxReceiveMessageBytes } from "./receive_limits.ts";
 * validateMaxReceiveMessageBytes(1 << 20, "maxReceiveMessageBytes"); // 1048576
 * // validateMaxReceiveMessageBytes(0, "maxReceiveMessageBytes") throws: maxReceiveMessageBytes must be ...
 * ```
 *
 * @param field the option's name (or path) as the caller wrote it, for the error
 * @throws {TetherError} `config`, naming the field, the allowed range and the value found.
 */
export function validateMaxReceiveMessageBytes<T extends number | undefined>(value: T, field: string): T {
  if (value === undefined) return value;
  if (
    typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_RECEIVE_MESSAGE_BYTES
  ) {
    throw new TetherError(
      "config",
      `${field} must be an integer number of bytes from 1 to ${MAX_RECEIVE_MESSAGE_BYTES} (2^31-1, ` +
        `go-plugin's own limit), got ${found(value)}`,
    );
  }
  return value;
}

/**
 * The status that ends a call whose message announces more than the limit:
 * grpc-go's and grpc-js's words, then (when `peer` names whose answer it is)
 * which option to raise for whom.
 *
 * @example
 * ```ts
 * import { tooLargeStatus } from "./receive_limits.ts";
 * console.log(tooLargeStatus(300, 100, 'plugin "kv"')[1]);
 * // Received message larger than max (300 vs. 100); raise maxReceiveMessageBytes for plugin "kv"
 * ```
 */
export function tooLargeStatus(length: number, max: number, peer: string | undefined): WireStatus {
  return [
    GrpcStatus.RESOURCE_EXHAUSTED,
    `Received message larger than max (${length} vs. ${max})` +
    (peer ? `; raise maxReceiveMessageBytes for ${peer}` : ""),
  ];
}

let budgetBytes = DEFAULT_RECEIVE_BUDGET_BYTES;
let heldBytes = 0;

/**
 * Sets this process's receive budget: the bytes of answers held at once
 * (received into a decoder, not yet handed to the caller) across all
 * plugins, calls and streams. A chunk that would take the total past it
 * fails its call with RESOURCE_EXHAUSTED (other calls go on) and frees that
 * call's bytes. Default {@linkcode DEFAULT_RECEIVE_BUDGET_BYTES}; applies to
 * bytes taken from then on.
 *
 * @example
 * ```ts
 * import { receiveBudget, setReceiveBudget } from "./receive_limits.ts";
 * setReceiveBudget(1024 * 2 ** 20); // 1 GiB
 * console.log(receiveBudget().budgetBytes); // 1073741824
 * setReceiveBudget(512 * 2 ** 20);
 * ```
 *
 * @throws {TetherError} `config` when `bytes` is not an integer from 1 to 2^53-1.
 */
export function setReceiveBudget(bytes: number): void {
  if (typeof bytes !== "number" || !Number.isSafeInteger(bytes) || bytes < 1) {
    throw new TetherError(
      "config",
      `setReceiveBudget: the receive budget must be an integer number of bytes from 1 to ` +
        `${Number.MAX_SAFE_INTEGER}, got ${found(bytes)}`,
    );
  }
  budgetBytes = bytes;
}

/** The receive budget and what is held against it now. */
export interface ReceiveBudgetUsage {
  /** The budget ({@linkcode setReceiveBudget}). */
  readonly budgetBytes: number;
  /** Bytes of answers held now, by all calls of this process. */
  readonly heldBytes: number;
}

/**
 * The receive budget and the bytes held against it now: 0 held once no
 * answer is being received.
 *
 * @example
 * ```ts
 * import { receiveBudget } from "./receive_limits.ts";
 * console.log(receiveBudget().heldBytes); // 0
 * ```
 */
export function receiveBudget(): ReceiveBudgetUsage {
  return { budgetBytes, heldBytes };
}

/**
 * Takes `bytes` from the budget for one call, or says why not (the status to
 * end that call with; nothing is taken then). `peer` names whose answer it is.
 *
 * @example
 * ```ts
 * import { giveReceiveBytes, takeReceiveBytes } from "./receive_limits.ts";
 * if (takeReceiveBytes(4096, 'plugin "kv"') === undefined) giveReceiveBytes(4096);
 * ```
 */
export function takeReceiveBytes(bytes: number, peer: string | undefined): WireStatus | undefined {
  if (heldBytes + bytes > budgetBytes) {
    return overBudget(bytes, peer ? ` receiving from ${peer}` : "", "; raise it with setReceiveBudget()");
  }
  heldBytes += bytes;
  return undefined;
}

function overBudget(bytes: number, from: string, advice: string): WireStatus {
  return [
    GrpcStatus.RESOURCE_EXHAUSTED,
    `Received messages held at once would exceed the receive budget (${heldBytes} held + ${bytes} vs. ` +
    `max ${budgetBytes}, all plugins and calls of this process)${from}${advice}`,
  ];
}

/**
 * How a server's calls hold requests against the receive budget: what a
 * decoder takes ({@linkcode DecoderAccounting}) and gives back.
 */
export interface ReceiveAccounting extends DecoderAccounting {
  /** Gives back bytes `take` took: as each message is handed to the handler, and the rest when the call ends. */
  give(bytes: number): void;
}

/**
 * The receive budget for the requests a plugin sends to the servers the host
 * serves for it over the broker (callbacks): they are held in the host as its
 * answers are, so they count against the same budget. A refusal goes to the
 * plugin, so it says whose request it was and that the host sets the budget;
 * `peer` is not named in the over-limit status (no `raise ...` advice to the
 * plugin).
 *
 * @example
 * ```ts
 * import { requestAccounting } from "./receive_limits.ts";
 * const accounting = requestAccounting('plugin "kv"');
 * if (accounting.take(4096) === undefined) accounting.give(4096);
 * ```
 */
export function requestAccounting(peer: string | undefined): ReceiveAccounting {
  const from = peer ? ` receiving a request from ${peer}` : " receiving a request";
  return {
    take(bytes: number): WireStatus | undefined {
      if (heldBytes + bytes > budgetBytes) {
        return overBudget(bytes, from, "; the host can raise it with setReceiveBudget()");
      }
      heldBytes += bytes;
      return undefined;
    },
    give: giveReceiveBytes,
  };
}

/**
 * Gives back bytes taken with {@linkcode takeReceiveBytes}.
 *
 * @example
 * ```ts
 * import { giveReceiveBytes, takeReceiveBytes } from "./receive_limits.ts";
 * takeReceiveBytes(10, undefined);
 * giveReceiveBytes(10);
 * ```
 */
export function giveReceiveBytes(bytes: number): void {
  heldBytes -= bytes;
}
