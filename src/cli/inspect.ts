/**
 * `tether inspect [options] -- CMD ARGS…`: launches a plugin as a go-plugin host would and reports the
 * handshake (protocol version, network, address, mTLS), health, the services and methods it serves (from gRPC
 * reflection, which go-plugin registers for Go plugins and `serve()` for Tether plugins), how long the start
 * took, the plugin's logs, and then stops it cleanly (go-plugin's Shutdown, then SIGKILL after 2 s).
 *
 * @module
 */

import { parse } from "./args.ts";
import type { PluginClient } from "../client.ts";
import { formatLog, LAUNCH_HELP, LAUNCH_OPTIONS, withPlugin } from "./plugin.ts";
import { ExitCode, type Output } from "./output.ts";
import { reflect } from "../reflection.ts";

/** `tether inspect --help`. */
export const INSPECT_HELP = `Usage: tether inspect [options] -- CMD [ARGS...]

Launches the plugin CMD as a go-plugin host would, shows its handshake (protocol
version, network, address, mTLS), health, services and methods (from gRPC
reflection), start time and logs, then stops it cleanly. Works on Go plugins
(go-plugin registers reflection) and on Tether plugins (serve() does).

${LAUNCH_HELP}
  --json                    print one JSON document
  -h, --help                show this help

Example:
  tether inspect --cookie-key TETHER_KV_PLUGIN --cookie-value kv-7d3f2a -- ./kvplugin

Exit codes: 0 ok, 2 usage, 4 the plugin did not start (bad cookie, crash, timeout,
checksum), 5 it started but health or reflection failed.`;

/** What `inspect` learns from a running plugin. */
interface Examined {
  health: string;
  services: { name: string; methods: { name: string; kind: string; input: string; output: string }[] }[];
  reflectionVersion?: string;
  problem?: string;
}

/** Health and reflection of a running plugin; failures are recorded as the problem, not thrown. */
async function examine(client: PluginClient, out: Output): Promise<Examined> {
  let health: string;
  let services: Examined["services"] = [];
  let reflectionVersion: string | undefined;
  let problem: string | undefined;
  out.progress("health check");
  try {
    await client.ping();
    health = "SERVING";
  } catch (error) {
    health = `not serving: ${error instanceof Error ? error.message : String(error)}`;
    problem = health;
  }
  out.progress("reading services over gRPC reflection");
  try {
    const found = await reflect(client);
    reflectionVersion = found.version;
    services = found.services.map((name) => ({
      name,
      methods: found.registry.getService(name)?.methods.map((m) => ({
        name: m.name,
        kind: m.methodKind,
        input: m.input.typeName,
        output: m.output.typeName,
      })) ?? [],
    }));
  } catch (error) {
    problem ??= `reflection failed: ${error instanceof Error ? error.message : String(error)}`;
  }
  return { health, services, reflectionVersion, problem };
}

/** Runs `tether inspect`; returns the exit code. */
export async function inspectCommand(args: string[], out: Output): Promise<number> {
  const { values, rest } = parse(args, LAUNCH_OPTIONS);
  if (values.help) {
    out.line(INSPECT_HELP);
    return ExitCode.ok;
  }
  const { client, options, collected, startMs, health, services, reflectionVersion, problem } =
    await withPlugin(
      values,
      rest,
      out,
      async (session) => ({ ...session, ...await examine(session.client, out) }),
    );
  const exit = await client.exited;
  const report = {
    cmd: [options.cmd, ...(options.args ?? [])],
    runtime: options.runtime,
    pid: client.pid,
    handshake: {
      protocolVersion: client.protocolVersion,
      network: client.endpoint?.network,
      address: client.endpoint?.address,
      mtls: options.autoMTLS === true,
    },
    startMs,
    health,
    reflection: reflectionVersion ?? null,
    services,
    logs: collected.logs.map((r) => ({ level: r.level, message: r.message, fields: r.fields })),
    stdout: collected.stdout,
    stderr: collected.stderr,
    exit: { code: exit.code, signal: exit.signal, killed: exit.killed },
    ...(problem !== undefined ? { problem } : {}),
  };
  if (out.json) {
    out.emit(report);
  } else {
    const h = report.handshake;
    out.line(`${out.bold("plugin")}     ${report.cmd.join(" ")} (${report.runtime}, pid ${report.pid})`);
    out.line(
      `${out.bold("handshake")}  protocol version ${h.protocolVersion}, ${h.network} ${h.address}, ` +
        `${h.mtls ? "mTLS (AutoMTLS)" : "no TLS"}`,
    );
    out.line(`${out.bold("started")}    in ${startMs} ms`);
    out.line(`${out.bold("health")}     ${health === "SERVING" ? out.green(health) : out.red(health)}`);
    out.line(
      `${out.bold("services")}   ${
        reflectionVersion ? `(gRPC reflection ${reflectionVersion})` : out.red("unknown")
      }`,
    );
    for (const s of services) {
      out.line(`  ${s.name}`);
      for (const m of s.methods) {
        const stream = m.kind === "unary" ? "" : out.dim(` [${m.kind.replace("_", " ")}]`);
        out.line(`    ${m.name}(${m.input}) returns (${m.output})${stream}`);
      }
    }
    out.line(`${out.bold("logs")}       ${collected.logs.length === 0 ? "(none)" : ""}`);
    for (const r of collected.logs) out.line(`  ${formatLog(r)}`);
    if (collected.stdout) out.line(`${out.bold("stdout")}\n${collected.stdout.trimEnd()}`);
    if (collected.stderr) out.line(`${out.bold("stderr")}\n${collected.stderr.trimEnd()}`);
    out.line(
      `${out.bold("stopped")}    ${
        exit.killed
          ? "killed after the grace period"
          : `exit code ${exit.code}${exit.signal ? `, ${exit.signal}` : ""}`
      }`,
    );
    if (problem !== undefined) out.error(out.red(problem));
  }
  return problem === undefined ? ExitCode.ok : ExitCode.call;
}
