/**
 * The `tether` command: dispatch, `--help`, and the mapping of errors to exit codes (see {@linkcode ExitCode}).
 *
 * @module
 */

import { callCommand } from "./call.ts";
import { checksumCommand } from "./checksum.ts";
import { inspectCommand } from "./inspect.ts";
import { CliError, ExitCode, Output, UsageError } from "./output.ts";
import { packCommand } from "./pack.ts";
import { sftpgoCommand } from "./sftpgo.ts";

/** `tether --help`. */
export const MAIN_HELP = `Usage: tether COMMAND [options]

Commands:
  checksum FILE...                 SHA-256 as SFTPGo's sha256sum option expects
  inspect [options] -- CMD ARGS    launch a plugin, show handshake, health, services, logs
  call [options] -- CMD ARGS METHOD JSON
                                   call one method with JSON in and out (like grpcurl)
  pack [options] PLUGIN.ts -o FILE one executable per TypeScript plugin, sealed (SHA-256 covers code
                                   and permissions), for SFTPGo and any go-plugin host
  sftpgo check CONFIG              validate an SFTPGo config's plugins without starting them
  sftpgo run CONFIG                run them under PluginManager with live status until Ctrl-C

Every command takes --help and --json. Colours only on a terminal and never with NO_COLOR.

Exit codes:
  0  ok
  1  failure (a file cannot be read, an unexpected error)
  2  usage error
  3  invalid: the SFTPGo config has errors, checksum --verify does not match, or pack refused the plugin
  4  the plugin did not start (bad cookie, crash at start, timeout, wrong checksum)
  5  the plugin started but the call, health check or reflection failed`;

const COMMANDS: Record<string, (args: string[], out: Output) => Promise<number>> = {
  checksum: checksumCommand,
  inspect: inspectCommand,
  call: callCommand,
  sftpgo: sftpgoCommand,
  pack: packCommand,
};

/**
 * Runs the CLI with `args` (without the program name) and returns the exit code; nothing is thrown.
 *
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 * Deno.exit(await main(["checksum", "/usr/local/bin/sftpgo-plugin-auth"]));
 * ```
 */
export async function main(args: readonly string[]): Promise<number> {
  const [command, ...rest] = args;
  const out = new Output(
    rest.includes("--json") && (rest.indexOf("--") < 0 || rest.indexOf("--json") < rest.indexOf("--")),
  );
  try {
    if (command === undefined || command === "--help" || command === "-h" || command === "help") {
      out.line(MAIN_HELP);
      return command === undefined ? ExitCode.usage : ExitCode.ok;
    }
    const run = COMMANDS[command];
    if (run === undefined) throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    return await run(rest, out);
  } catch (error) {
    out.clearProgress();
    if (error instanceof UsageError) {
      out.error(
        `tether: ${error.message}\nRun "tether ${
          command && COMMANDS[command] ? `${command} ` : ""
        }--help" for usage.`,
      );
      return ExitCode.usage;
    }
    const code = error instanceof CliError ? error.exitCode : ExitCode.failure;
    const message = error instanceof Error ? error.message : String(error);
    if (out.json) out.emit({ ok: false, exitCode: code, error: message });
    else out.error(`tether: ${out.red("error")}: ${message}`);
    return code;
  }
}
