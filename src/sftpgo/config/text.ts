/**
 * Message helpers shared by the config loader: field paths, warnings, value descriptions and typo hints.
 *
 * @module
 */

import { isPlainObject } from "./decode.ts";
import { type ConfigError, type ConfigWarning, formatLocation } from "./types.ts";

/** One step of a field path: a key or a list index. */
export type PathSeg = string | number;

/**
 * A field path relative to the plugins list, as messages show it.
 *
 * @example
 * ```ts
 * import { formatPath } from "./text.ts";
 * console.log(formatPath([1, "tether", "runtime"])); // "plugins[1].tether.runtime"
 * ```
 */
export function formatPath(path: readonly PathSeg[]): string {
  let out = "plugins";
  for (const seg of path) out += typeof seg === "number" ? `[${seg}]` : `.${seg}`;
  return out;
}

/**
 * Sorts warnings in file order (stable, so unpositioned ones keep their order).
 *
 * @example
 * ```ts
 * import { makeWarning, sortWarnings } from "./text.ts";
 * console.log(sortWarnings([makeWarning("f", 3, 1, "", "b"), makeWarning("f", 1, 1, "", "a")])[0].message); // "a"
 * ```
 */
export function sortWarnings(warnings: ConfigWarning[]): ConfigWarning[] {
  return warnings.sort((a, b) => a.line - b.line || a.column - b.column);
}

/**
 * A {@linkcode ConfigWarning} with its `text` filled in.
 *
 * @example
 * ```ts
 * import { makeWarning } from "./text.ts";
 * console.log(makeWarning("a.yaml", 2, 3, "plugins[0].x", "unknown key").text); // "a.yaml:2:3: plugins[0].x: unknown key"
 * ```
 */
export function makeWarning(
  file: string,
  line: number,
  column: number,
  path: string,
  message: string,
): ConfigWarning {
  return {
    file,
    line,
    column,
    path,
    message,
    text: `${formatLocation(file, line, column)}: ${path ? `${path}: ` : ""}${message}`,
  };
}

/**
 * The first error in file order, carrying all of them (`errors`) and the warnings; its message has one line per
 * error.
 *
 * @example
 * ```ts
 * import { aggregate } from "./text.ts";
 * import { ConfigError } from "./types.ts";
 * const e = (line: number) => new ConfigError({ file: "f", line, column: 1, path: "", expected: "x", found: "y" });
 * console.log(aggregate([e(5), e(2)]).line); // 2
 * ```
 */
export function aggregate(errors: ConfigError[], warnings: ConfigWarning[] = []): ConfigError {
  // Stable sort: errors without positions keep the schema's (document) order.
  const sorted = [...errors].sort((a, b) => a.line - b.line || a.column - b.column);
  const first = sorted[0];
  first.errors = sorted;
  first.warnings = warnings;
  if (sorted.length > 1) first.message = sorted.map((e) => e.message).join("\n");
  return first;
}

/** A short, unambiguous description of a value for "found ...". */
export function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null (an empty value)";
  if (typeof v === "string") return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  let json: string;
  try {
    json = JSON.stringify(v) ?? String(v);
  } catch {
    json = String(v);
  }
  if (json.length > 60) json = `${json.slice(0, 57)}...`;
  if (Array.isArray(v)) return `a list ${json}`;
  if (isPlainObject(v)) return `a mapping ${json}`;
  return json;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = above;
    }
  }
  return row[b.length];
}

/** The candidate closest to `input` (case-insensitive, at most 2 edits), if it is close enough to be a typo. */
export function nearest(input: unknown, candidates: readonly unknown[]): string | undefined {
  if (typeof input !== "string" || input === "") return undefined;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    if (typeof c !== "string") continue;
    const d = editDistance(input.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  const limit = Math.min(2, Math.max(1, Math.floor(input.length / 3)));
  return bestDistance <= limit ? best : undefined;
}

/** `did you mean "x"?` for a near miss, else undefined. */
export function suggest(input: unknown, candidates: readonly unknown[]): string | undefined {
  const best = nearest(input, candidates);
  return best === undefined ? undefined : `did you mean ${JSON.stringify(best)}?`;
}
