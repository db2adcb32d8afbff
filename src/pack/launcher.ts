/**
 * The first stage of a packed plugin: the program the packed file hands to
 * `deno run -` on stdin. It is Tether's own launch code (launch.ts,
 * isolation.ts, permissions.ts, graph.ts, lifeline.ts, stale.ts) doing for a
 * go-plugin host that sandboxes nothing (SFTPGo, Terraform-style hosts) what
 * PluginClient does for a Tether host: a private 0700 directory, the plugin's
 * code written there and run only after its SHA-256 matched, its module graph
 * checked, `deno run` with exactly the packed grants plus the protocol's
 * needs, bubblewrap namespaces where they work, memory limits, the socket
 * watcher, a clean environment, and a plugin that dies with this launcher.
 *
 * The plugin's stdout and stderr are this process's, so the host reads the
 * handshake line and the plugin's logs directly.
 *
 * @module
 */

import { TetherError } from "../errors.ts";
import { PluginEnv } from "../handshake.ts";
import { makeMarkedDir, removeOwnerMarker } from "../stale.ts";
import { type PreparedLaunch, prepareLaunch, protocolEnv, refusedDenoEnv } from "../launch.ts";
import { dieWithHost } from "../lifeline.ts";
import { formatHclogJson, type Logger } from "../logs.ts";
import { PACK_FORMAT, PACK_GLOBAL, type PackPayload } from "./manifest.ts";

const encoder = new TextEncoder();

/** hclog JSON on stderr: what a go-plugin host parses and shows as the plugin's log. */
const logger: Logger = {
  log(record) {
    Deno.stderr.writeSync(
      encoder.encode(formatHclogJson({ ...record, timestamp: record.timestamp ?? new Date() })),
    );
  },
};

function fail(message: string): never {
  logger.log({ level: "error", message, fields: { "@module": "tether-pack" } });
  Deno.exit(1);
}

/**
 * The variables the plugin gets from this process's environment: the
 * protocol's, `GRPC_*`, and those its `env` grants name (`NAME` or `PREFIX_*`);
 * nothing else (in particular no `DENO_*` that would change how Deno decides).
 *
 * @example
 * ```ts
 * import { passedEnv } from "./launcher.ts";
 * console.log(passedEnv({ A: "1", PLUGIN_PROTOCOL_VERSIONS: "1", DENO_V8_FLAGS: "x" }, "C", ["A"]));
 * // { A: "1", PLUGIN_PROTOCOL_VERSIONS: "1" }
 * ```
 */
export function passedEnv(
  from: Record<string, string>,
  cookieKey: string,
  grants: readonly string[],
): Record<string, string> {
  const names = [...protocolEnv(cookieKey), "GRPC_*", ...grants];
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(from)) {
    // The same rule as a configured env: nothing that steers the loader or the runtime (DENO_*, LD_*, NODE_OPTIONS...).
    if (refusedDenoEnv(name)) continue;
    if (names.some((n) => n.endsWith("*") ? name.startsWith(n.slice(0, -1)) : n === name)) env[name] = value;
  }
  return env;
}

async function run(payload: PackPayload): Promise<number> {
  const { manifest } = payload;
  if (manifest.format !== PACK_FORMAT) {
    fail(
      `packed plugin format ${manifest.format} is not ${PACK_FORMAT}: re-pack it with this Tether version`,
    );
  }
  const hostEnv = Deno.env.toObject();
  // Under a Tether host the packed file runs as a native plugin that must listen where the host said.
  const assigned = hostEnv[PluginEnv.tetherSocketPath] || undefined;
  const base = assigned
    ? assigned.slice(0, assigned.lastIndexOf("/"))
    : hostEnv[PluginEnv.unixSocketDir] || hostEnv.TMPDIR || "/tmp";
  // The bundled code goes to a private staging file; prepareLaunch checks its SHA-256 and runs its own copy.
  // Named and marked like a private directory (the marker first), so a launcher killed while it prepares
  // leaves it to the sweep.
  let staging: string;
  try {
    staging = makeMarkedDir(base, { prefix: "tether-stage_" });
  } catch (error) {
    fail(`cannot create the staging directory and its owner marker in ${base}: ${String(error)}`);
  }
  const dropStaging = async () => {
    await Deno.remove(staging, { recursive: true }).catch(() => {});
    removeOwnerMarker(staging);
  };
  let launch: PreparedLaunch;
  try {
    await Deno.writeTextFile(`${staging}/plugin.js`, payload.plugin, { mode: 0o400, createNew: true });
    launch = await prepareLaunch({
      name: manifest.name,
      cmd: `${staging}/plugin.js`,
      args: Deno.args,
      runtime: "deno",
      sha256: manifest.pluginSha256,
      permissions: manifest.permissions,
      denyPermissions: manifest.denyPermissions,
      allowBroadPermissions: manifest.allowBroadPermissions,
      privateDirBase: base,
      socketPath: assigned,
      cookieKey: manifest.cookieKey,
      logger,
      isolation: manifest.isolation,
      limits: manifest.limits,
      killOnAuditTamper: false,
      // No idle trimmer here: it reads /proc/<pid>/, which Deno 2.9.6 allows only with --allow-all, and the
      // launcher runs without it; so the plugin gets no DENO_USR2_MEMORY_TRIM either.
      memoryTrim: false,
    });
  } catch (error) {
    await dropStaging();
    fail(error instanceof TetherError || error instanceof Error ? error.message : String(error));
  }
  await dropStaging();

  const grants = manifest.permissions.all ? ["*"] : [...(manifest.permissions.env ?? [])];
  const env = { ...passedEnv(hostEnv, manifest.cookieKey, grants), ...launch.env };
  const spawn = dieWithHost(launch.cmd, launch.args, manifest.name);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(spawn.cmd, {
      args: spawn.args,
      env,
      clearEnv: true,
      cwd: launch.cwd,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (error) {
    await launch.cleanup();
    fail(`plugin ${manifest.name}: cannot start it: ${error instanceof Error ? error.message : error}`);
  }
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // Gone already.
    }
  };
  launch.watch(() => kill("SIGKILL"));
  const forward = (signal: Deno.Signal) => () => kill(signal);
  const handlers = (["SIGTERM", "SIGINT", "SIGHUP"] as const).map((signal) => {
    const handler = forward(signal);
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  // From here the launcher forwards signals and removes the files once the plugin has exited.
  launch.handOff();
  // A host that dies without stopping its plugin (go-plugin hosts leave Go plugins running; SFTPGo's
  // killProcess cannot find a packed plugin by its path): the launcher is re-parented, and stops the plugin.
  const parent = Deno.ppid;
  const orphanCheck = setInterval(() => {
    if (Deno.ppid !== parent) {
      logger.log({
        level: "warn",
        message: "host is gone; stopping the plugin",
        fields: { plugin: manifest.name },
      });
      kill("SIGTERM");
      setTimeout(() => kill("SIGKILL"), 2_000);
    }
  }, 500);
  const status = await child.status;
  clearInterval(orphanCheck);
  for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
  await launch.cleanup();
  if (status.signal) return 128 + (Deno.build.os === "linux" ? signalNumber(status.signal) : 0);
  return status.code;
}

function signalNumber(signal: Deno.Signal): number {
  return ({ SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 0;
}

if (import.meta.main) {
  const payload = (globalThis as Record<string, unknown>)[PACK_GLOBAL] as PackPayload | undefined;
  if (!payload) fail("no packed plugin: this launcher only runs inside a file made by tether pack");
  Deno.exit(await run(payload));
}
