/**
 * SFTPGo's weak decoding (viper's default mapstructure config: WeaklyTypedInput plus a hook that splits strings
 * on "," into slices). `undefined` and `null` decode to the Go zero value, as mapstructure leaves it untouched.
 *
 * @module
 */

import { parseGoBool } from "../../gobool.ts";

/**
 * Whether `v` is a plain mapping (not a list, bytes, date, map or set).
 *
 * @example
 * ```ts
 * import { isPlainObject } from "./decode.ts";
 * console.log(isPlainObject({ a: 1 }), isPlainObject([1])); // true false
 * ```
 */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) &&
    !(v instanceof Date) && !(v instanceof Map) && !(v instanceof Set);
}

/**
 * mapstructure's weak string: numbers and booleans become text (`true` → `"1"`), nothing becomes `""`.
 *
 * @example
 * ```ts
 * import { goString } from "./decode.ts";
 * console.log(goString(8080), goString(true), goString(null)); // "8080" "1" ""
 * ```
 */
export function goString(v: unknown): unknown {
  if (v === undefined || v === null) return "";
  if (typeof v === "boolean") return v ? "1" : "0";
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) return new TextDecoder().decode(v);
  return v;
}

// strconv.ParseInt(s, 0, 64): optional sign, then 0x / 0o / 0b / leading-0 octal / decimal, with "_" allowed
// only between digits (or after a base prefix).
const GO_INT =
  /^([+-]?)(?:0[xX]((?:_?[0-9a-fA-F])+)|0[bB]((?:_?[01])+)|0[oO]((?:_?[0-7])+)|0((?:_?[0-7])+)|([1-9](?:_?[0-9])*|0))$/;

/**
 * Go's `strconv.ParseInt(s, 0, 64)` for safe integers: sign, `0x`/`0o`/`0b`/leading-0 octal, `_` between digits.
 *
 * @example
 * ```ts
 * import { parseGoInt } from "./decode.ts";
 * console.log(parseGoInt("0x1F"), parseGoInt("017"), parseGoInt("1_000"), parseGoInt("1.5")); // 31 15 1000 undefined
 * ```
 */
export function parseGoInt(s: string): number | undefined {
  const m = GO_INT.exec(s);
  if (m === null) return undefined;
  const [, sign, hex, bin, oct, oct0, dec] = m;
  const [digits, radix] = hex !== undefined
    ? [hex, 16]
    : bin !== undefined
    ? [bin, 2]
    : oct !== undefined
    ? [oct, 8]
    : oct0 !== undefined
    ? [oct0, 8]
    : [dec, 10];
  const n = parseInt(digits.replaceAll("_", ""), radix) * (sign === "-" ? -1 : 1);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * mapstructure's weak integer: strings parsed as Go does, booleans as 0/1, nothing as 0; anything else is
 * returned unchanged for the schema to reject.
 *
 * @example
 * ```ts
 * import { goInt } from "./decode.ts";
 * console.log(goInt("5"), goInt(true), goInt(undefined), goInt("abc")); // 5 1 0 "abc"
 * ```
 */
export function goInt(v: unknown): unknown {
  if (v === undefined || v === null) return 0;
  if (typeof v === "boolean") return v ? 1 : 0;
  if (typeof v === "bigint" && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) {
    return Number(v);
  }
  if (typeof v === "string") return v === "" ? 0 : parseGoInt(v) ?? v;
  // Fractional numbers stay as they are and fail: mapstructure would truncate 1.5 to 1 silently, which only
  // ever hides a mistake (deliberately stricter than SFTPGo).
  return v;
}

/**
 * mapstructure's weak boolean: Go's `strconv.ParseBool` spellings, `""` as false, and non-zero numbers.
 *
 * @example
 * ```ts
 * import { goBool } from "./decode.ts";
 * console.log(goBool("t"), goBool(0), goBool("yes")); // true false "yes"
 * ```
 */
export function goBool(v: unknown): unknown {
  if (v === undefined || v === null) return false;
  if (typeof v === "number") return v !== 0;
  // mapstructure itself reads "" as false; everything else is strconv.ParseBool's.
  if (typeof v === "string") return v === "" ? false : parseGoBool(v) ?? v;
  return v;
}

/**
 * mapstructure's weak slice: a string is split on `,`, a single value becomes a one-item list, nothing `[]`.
 *
 * @example
 * ```ts
 * import { goSlice } from "./decode.ts";
 * console.log(goSlice("a,b"), goSlice(5), goSlice(null)); // ["a", "b"] [5] []
 * ```
 */
export function goSlice(v: unknown): unknown {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v;
  if (typeof v === "string") return v === "" ? [] : v.split(",");
  if (isPlainObject(v)) return Object.keys(v).length === 0 ? [] : [v];
  return [v];
}
