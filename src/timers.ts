/**
 * One check for every timeout or interval Tether hands to a timer: it must
 * be a whole number of milliseconds that `setTimeout` can hold.
 *
 * @module
 */

import { TetherError } from "./errors.ts";

/** The largest delay `setTimeout` honours (2^31-1 ms, about 24.8 days); larger ones fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Returns `value` if it is an integer from 1 to {@linkcode MAX_TIMER_MS}
 * milliseconds; `undefined` passes through (the caller's default applies).
 *
 * @example
 * ```ts
 * import { validateTimerMs } from "./timers.ts";
 * validateTimerMs(5_000, "startTimeoutMs"); // 5000
 * validateTimerMs(undefined, "startTimeoutMs"); // undefined
 * // validateTimerMs(0, "startTimeoutMs") throws: startTimeoutMs must be ...
 * ```
 *
 * @param field the option's name (or path) as the caller wrote it, for the error
 * @throws {TetherError} `config`, naming the field, the allowed range and the value found.
 */
export function validateTimerMs<T extends number | undefined>(value: T, field: string): T {
  if (value === undefined) return value;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > MAX_TIMER_MS) {
    throw new TetherError(
      "config",
      `${field} must be a whole number of milliseconds from 1 to ${MAX_TIMER_MS} (about 24.8 days), ` +
        `got ${typeof value === "number" ? String(value) : JSON.stringify(value)}`,
    );
  }
  return value;
}
