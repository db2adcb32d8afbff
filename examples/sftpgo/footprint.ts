/**
 * What an SFTPGo plugin costs once it runs: starts it under Tether's host (AutoMTLS, as SFTPGo's
 * `auto_mtls`), makes one call, lets it idle, and prints one JSON line: the milliseconds from spawn to the
 * first answer, and the plugin process's RSS after the idle time (VmRSS from /proc/<pid>/status; Linux only).
 *
 *   deno run -A examples/sftpgo/footprint.ts ipfilter|notifier [--idle-ms 1000] -- <cmd> [args...]
 *
 * For a TypeScript plugin, `<cmd>` is the whole `deno run ...` command line. Used for the figures in
 * docs/sftpgo.md ("Start-up and memory of a TypeScript plugin").
 *
 * @module
 */

import { parseArgs } from "node:util";
import { PluginClient, silentLogger } from "../../mod.ts";
import { IpFilterClient, NotifierClient, sftpgoHandshakes } from "../../sftpgo.ts";

/** What footprint.ts prints. */
export interface Footprint {
  /** The plugin type. */
  type: "ipfilter" | "notifier";
  /** From spawning the plugin to the answer of its first call, ms. */
  first_answer_ms: number;
  /** The plugin process's resident memory after the idle time, KiB. */
  idle_rss_kib: number;
}

/**
 * Measures one plugin.
 *
 * @example
 * ```ts ignore
 * import { footprint } from "./footprint.ts";
 * console.log(await footprint("ipfilter", "deno", ["run", "-A", "examples/sftpgo/plugins/ipfilter.ts"], 1000));
 * ```
 */
export async function footprint(
  type: Footprint["type"],
  cmd: string,
  args: string[],
  idleMs: number,
): Promise<Footprint> {
  const started = performance.now();
  await using plugin = new PluginClient({
    cmd,
    args,
    handshake: sftpgoHandshakes[type],
    autoMTLS: true,
    logger: silentLogger,
  });
  await plugin.start();
  if (type === "ipfilter") await new IpFilterClient(plugin).checkIP("198.51.100.7", "SSH");
  else await new NotifierClient(plugin).sendLogEvent({ event: 1, username: "alice", message: "footprint" });
  const firstAnswerMs = performance.now() - started;
  await new Promise((resolve) => setTimeout(resolve, idleMs));
  const status = await Deno.readTextFile(`/proc/${plugin.pid}/status`);
  const rss = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  return { type, first_answer_ms: Math.round(firstAnswerMs * 10) / 10, idle_rss_kib: rss };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { "idle-ms": { type: "string", default: "1000" } },
    allowPositionals: true,
  });
  const [type, cmd, ...args] = positionals;
  if ((type !== "ipfilter" && type !== "notifier") || !cmd) {
    console.error("usage: footprint.ts ipfilter|notifier [--idle-ms 1000] -- <cmd> [args...]");
    Deno.exit(2);
  }
  console.log(JSON.stringify(await footprint(type, cmd, args, Number(values["idle-ms"]))));
}
