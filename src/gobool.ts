/**
 * Go's `strconv.ParseBool`, the one place Tether reads a boolean the way Go programs (go-plugin, SFTPGo) do.
 *
 * @module
 */

// The spellings strconv.ParseBool accepts; anything else (including "yes", "on", " true") is a syntax error.
const GO_BOOLS: ReadonlyMap<string, boolean> = new Map([
  ["1", true],
  ["t", true],
  ["T", true],
  ["true", true],
  ["TRUE", true],
  ["True", true],
  ["0", false],
  ["f", false],
  ["F", false],
  ["false", false],
  ["FALSE", false],
  ["False", false],
]);

/**
 * Go's `strconv.ParseBool`: `1 t T true TRUE True` are true, `0 f F false FALSE False` are false, and every
 * other text (surrounding spaces and the empty string included) is not a boolean.
 *
 * @param text The text, exactly as written (trim it first where the Go caller does).
 * @returns `true`, `false`, or `undefined` where Go would return `strconv.ErrSyntax`.
 *
 * @example
 * ```ts
 * import { parseGoBool } from "./gobool.ts";
 * console.log(parseGoBool("T"), parseGoBool("False"), parseGoBool("yes")); // true false undefined
 * ```
 */
export function parseGoBool(text: string): boolean | undefined {
  return GO_BOOLS.get(text);
}
