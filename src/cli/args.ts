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
  const all: Options = { ...COMMON, ...options };
  try {
    const { values, positionals } = parseArgs({
      args: joinDashValues(head, all),
      options: all,
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

/**
 * `--flag -1` as `--flag=-1` when `-1` is not one of the command's flags: `parseArgs` refuses any value starting
 * with "-" as ambiguous, which would hide the flag's own check (`--timeout -1` must say what `--timeout` takes).
 * A value that is a flag (`--timeout --json`) stays ambiguous.
 */
function joinDashValues(head: string[], options: Options): string[] {
  const flags = new Set(
    Object.entries(options).flatMap(([name, o]) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]),
  );
  const out: string[] = [];
  for (let i = 0; i < head.length; i++) {
    const [flag, next] = [head[i], head[i + 1]];
    const takesValue = flag.startsWith("--") && options[flag.slice(2)]?.type === "string";
    if (takesValue && next?.startsWith("-") && !flags.has(next.split("=")[0])) {
      out.push(`${flag}=${next}`);
      i++;
    } else {
      out.push(flag);
    }
  }
  return out;
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
 * An integer flag from `min` to `max` (milliseconds and the like): digits only, so `1.5`, `-1`, `1e3` and `abc`
 * are refused rather than rounded or read as something else.
 *
 * @throws {UsageError} Naming the flag, the range expected and the text found, when it is not one.
 *
 * @example
 * ```ts
 * import { int } from "./args.ts";
 * console.log(int({ timeout: "250" }, "timeout", 20_000, { min: 1 }), int({}, "timeout", 20_000)); // 250 20000
 * ```
 */
export function int(
  values: Record<string, unknown>,
  name: string,
  fallback: number,
  { min = 0, max = 2 ** 31 - 1 }: { min?: number; max?: number } = {},
): number {
  const v = str(values, name);
  if (v === undefined) return fallback;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, found ${JSON.stringify(v)}`);
  }
  return Number(v);
}
