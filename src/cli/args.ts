/**
 * Command-line parsing for the CLI: `node:util` `parseArgs` (strict: an unknown flag is a usage error), with the
 * plugin command line taken verbatim after `--`.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "./output.ts";

/** Option definitions, as `node:util` `parseArgs` takes them. */
export type Options = NonNullable<ParseArgsConfig["options"]>;

/** The flags every command has. */
export const COMMON: Options = {
  help: { type: "boolean", short: "h" },
  json: { type: "boolean" },
};

/**
 * Parses `args` (the part before `--`) against `options`; `rest` is everything after the first `--`.
 *
 * @throws {UsageError} For an unknown flag or a missing value.
 *
 * @example
 * ```ts
 * import { parse } from "./args.ts";
 * const { values, positionals, rest } = parse(["--json", "a", "--", "cmd", "-x"], { json: { type: "boolean" } });
 * console.log(values.json, positionals, rest); // true ["a"] ["cmd", "-x"]
 * ```
 */
export function parse(
  args: readonly string[],
  options: Options,
): {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
  rest: string[];
} {
  const dash = args.indexOf("--");
  const head = dash < 0 ? [...args] : args.slice(0, dash);
  const rest = dash < 0 ? [] : args.slice(dash + 1);
  try {
    const { values, positionals } = parseArgs({
      args: head,
      options: { ...COMMON, ...options },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Record<string, string | boolean | undefined>, positionals, rest };
  } catch (error) {
    throw new UsageError(
      error instanceof Error ? error.message.replace(/\. To specify a positional.*$/s, "") : String(error),
    );
  }
}

/** A flag's string value, or `undefined`. */
export function str(values: Record<string, unknown>, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

/** A repeatable flag's values. */
export function list(values: Record<string, unknown>, name: string): string[] {
  const v = values[name];
  return Array.isArray(v)
    ? v.filter((x): x is string => typeof x === "string")
    : typeof v === "string"
    ? [v]
    : [];
}

/**
 * A non-negative integer flag (milliseconds and the like).
 *
 * @throws {UsageError} When it is not one.
 */
export function int(
  values: Record<string, unknown>,
  name: string,
  fallback: number,
  max = 2 ** 31 - 1,
): number {
  const v = str(values, name);
  if (v === undefined) return fallback;
  if (!/^[0-9]+$/.test(v) || Number(v) > max) {
    throw new UsageError(`--${name} must be an integer from 0 to ${max}, not ${JSON.stringify(v)}`);
  }
  return Number(v);
}
