/**
 * How the CLI talks: exit codes, colours (only on a terminal, never with `NO_COLOR`), a progress line for long
 * steps (only on a terminal), and `--json` output.
 *
 * @module
 */

/**
 * The CLI's exit codes.
 *
 * @example
 * ```ts
 * import { ExitCode } from "./output.ts";
 * console.log(ExitCode.usage); // 2
 * ```
 */
export const ExitCode = {
  /** The command did what was asked and found nothing wrong. */
  ok: 0,
  /** Something failed that is not covered below (a file that cannot be read, an unexpected error). */
  failure: 1,
  /** The command line is wrong (unknown command or flag, missing argument). */
  usage: 2,
  /** The SFTPGo config has errors (`tether sftpgo check`/`run`), or a checksum does not match (`--verify`). */
  invalid: 3,
  /** The plugin could not be started: handshake refused (bad cookie), crash at start, timeout, wrong checksum. */
  start: 4,
  /** The plugin started but the call failed (a gRPC status other than OK, an unknown method, bad JSON). */
  call: 5,
} as const;

/** A usage mistake: printed with a pointer to `--help`, exit code 2. */
export class UsageError extends Error {
  /** Makes one. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** An error that ends the command with a chosen exit code. */
export class CliError extends Error {
  /** Makes one. */
  constructor(message: string, readonly exitCode: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "CliError";
  }
}

/**
 * Whether to colour output: only on a terminal, and never when `NO_COLOR` is set to anything non-empty
 * (https://no-color.org).
 *
 * @example
 * ```ts
 * import { useColor } from "./output.ts";
 * console.log(useColor(true, { NO_COLOR: "1" })); // false
 * ```
 */
export function useColor(isTerminal: boolean, env: Record<string, string | undefined>): boolean {
  return isTerminal && !(env.NO_COLOR !== undefined && env.NO_COLOR !== "");
}

/** The terminal the CLI writes to. */
export class Output {
  readonly #encoder = new TextEncoder();
  readonly color: boolean;
  readonly #progress: boolean;
  #progressShown = false;

  /** Reads whether stdout/stderr are terminals and `NO_COLOR` (when env access is granted). */
  constructor(readonly json = false) {
    let noColor: string | undefined;
    try {
      noColor = Deno.env.get("NO_COLOR");
    } catch {
      noColor = undefined;
    }
    this.color = useColor(Deno.stdout.isTerminal(), { NO_COLOR: noColor });
    this.#progress = Deno.stderr.isTerminal();
  }

  /** Writes a line to stdout. */
  line(text = ""): void {
    this.clearProgress();
    Deno.stdout.writeSync(this.#encoder.encode(`${text}\n`));
  }

  /** Writes a JSON document to stdout. */
  emit(value: unknown): void {
    this.line(JSON.stringify(value, (_k, v) => typeof v === "bigint" ? v.toString() : v, 2));
  }

  /** Writes a line to stderr. */
  error(text: string): void {
    this.clearProgress();
    Deno.stderr.writeSync(this.#encoder.encode(`${text}\n`));
  }

  /** Shows `text` as the progress line on stderr (terminal only; replaced by the next line). */
  progress(text: string): void {
    if (!this.#progress) return;
    Deno.stderr.writeSync(this.#encoder.encode(`\r\x1b[2K… ${text}`));
    this.#progressShown = true;
  }

  /** Removes the progress line. */
  clearProgress(): void {
    if (!this.#progressShown) return;
    Deno.stderr.writeSync(this.#encoder.encode("\r\x1b[2K"));
    this.#progressShown = false;
  }

  /** `text` in bold. */
  bold(text: string): string {
    return this.#sgr(1, 22, text);
  }
  /** `text` in red. */
  red(text: string): string {
    return this.#sgr(31, 39, text);
  }
  /** `text` in yellow. */
  yellow(text: string): string {
    return this.#sgr(33, 39, text);
  }
  /** `text` in green. */
  green(text: string): string {
    return this.#sgr(32, 39, text);
  }
  /** `text` dimmed. */
  dim(text: string): string {
    return this.#sgr(2, 22, text);
  }
  // One SGR attribute on and its reset off, only when colouring.
  #sgr(on: number, off: number, text: string): string {
    return this.color ? `\x1b[${on}m${text}\x1b[${off}m` : text;
  }
}
