/**
 * The `tether` command line: `checksum`, `inspect`, `call`, `sftpgo check` and `sftpgo run`.
 *
 * Install it with
 * `deno install -g -A -n tether --config ./deno.json ./cli.ts` from a checkout (see the README), or run it with
 * `deno task tether <command>`.
 *
 * @example
 * ```ts ignore
 * import { main } from "@tether/tether/cli";
 * Deno.exit(await main(["sftpgo", "check", "/etc/sftpgo/sftpgo.yaml"]));
 * ```
 *
 * @module
 */

import { main } from "./src/cli/main.ts";

export { main } from "./src/cli/main.ts";
export { ExitCode } from "./src/cli/output.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
