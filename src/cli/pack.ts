/**
 * `tether pack PLUGIN.ts -o FILE`: one executable file per TypeScript plugin for any go-plugin host, with
 * its permissions and Tether's sandbox inside (see src/pack/pack.ts), its SHA-256, and a ready SFTPGo
 * `plugins:` entry.
 *
 * @module
 */

import type { Isolation } from "../isolation.ts";
import { probeDenort } from "../pack/denort.ts";
import { PackError, packPlugin, type PackStage } from "../pack/pack.ts";
import { sftpgoHandshakes } from "../sftpgo/handshakes.ts";
import { int, parse, str } from "./args.ts";
import { CliError, ExitCode, type Output, UsageError } from "./output.ts";
import { nearestDenoConfig, permissionsFrom } from "./plugin.ts";

/** `tether pack --help`. */
export const PACK_HELP = `Usage: tether pack [options] PLUGIN.ts -o FILE

Makes FILE, one executable that runs the TypeScript plugin PLUGIN.ts under any
go-plugin host (SFTPGo, Terraform-style hosts, Tether): its code bundled with
"deno bundle", the permissions below and Tether's sandbox (deny-by-default Deno
flags, module graph check, bubblewrap namespaces where they work, memory
limits), all inside FILE. Its SHA-256 covers all of it: use it as SFTPGo's
sha256sum. Prints the SHA-256 and a ready SFTPGo plugins: entry.

Options:
  -o, --output FILE        the packed file to write (required)
  --sftpgo TYPE            an SFTPGo plugin (auth, notifier, kms, ipfilter, eventsearcher, metadata)
  --cookie-key KEY         or: the magic cookie variable of another go-plugin host's handshake
  --allow KIND=VALUE       a Deno permission (repeatable; everything else is denied), e.g.
                           --allow read=/etc/sftpgo/users.json --allow net=api.example.com:443
  --deny KIND=VALUE        an explicit denial (repeatable; wins over --allow)
  --allow-broad-permissions  accept run, ffi grants (they escape the sandbox)
  --isolation MODE         auto (default: namespaces where bubblewrap works), namespaces, deno-only
  --heap-mib N             V8 heap limit (default 512; 0 = off)
  --data-mib N             RLIMIT_DATA limit (default 2048; 0 = off)
  --config FILE            deno.json to bundle with (default: the nearest one above PLUGIN.ts)
  --deno PATH              absolute path of deno on the target machine (default: this deno);
                           hosts start plugins without PATH, so the path is recorded in FILE
  --name NAME              the plugin's name in logs (default: FILE's name)
  --json                   print the result as JSON
  -h, --help               show this help

Exit codes: 0 packed, 1 a file cannot be read or written or deno bundle failed,
2 usage (including a malformed --allow entry), 3 refused: the plugin's module graph
reaches code outside its tree and read grants.`;

const STAGE_EXIT: Record<PackStage, number> = {
  input: ExitCode.failure,
  grants: ExitCode.usage,
  graph: ExitCode.invalid,
  bundle: ExitCode.failure,
  output: ExitCode.failure,
};

/** Runs `tether pack`; returns the exit code. */
export async function packCommand(args: string[], out: Output): Promise<number> {
  const { values, positionals } = parse(args, {
    output: { type: "string", short: "o" },
    sftpgo: { type: "string" },
    "cookie-key": { type: "string" },
    allow: { type: "string", multiple: true },
    deny: { type: "string", multiple: true },
    "allow-broad-permissions": { type: "boolean" },
    isolation: { type: "string" },
    "heap-mib": { type: "string" },
    "data-mib": { type: "string" },
    config: { type: "string" },
    deno: { type: "string" },
    name: { type: "string" },
  });
  if (values.help) {
    out.line(PACK_HELP);
    return ExitCode.ok;
  }
  if (positionals.length !== 1) throw new UsageError("pack takes one PLUGIN file");
  const output = str(values, "output");
  if (output === undefined) throw new UsageError("give the packed file with -o FILE");
  const type = str(values, "sftpgo");
  let cookieKey = str(values, "cookie-key");
  if (type !== undefined) {
    const handshake = (sftpgoHandshakes as Record<string, { magicCookieKey: string }>)[type];
    if (handshake === undefined) {
      throw new UsageError(
        `--sftpgo must be one of ${Object.keys(sftpgoHandshakes).join(", ")}, not ${JSON.stringify(type)}`,
      );
    }
    if (cookieKey !== undefined && cookieKey !== handshake.magicCookieKey) {
      throw new UsageError(`--sftpgo ${type} uses the cookie ${handshake.magicCookieKey}, not ${cookieKey}`);
    }
    cookieKey = handshake.magicCookieKey;
  }
  if (cookieKey === undefined) {
    throw new UsageError("give the handshake: --sftpgo TYPE, or --cookie-key KEY for another go-plugin host");
  }
  const isolation = str(values, "isolation") ?? "auto";
  if (!["auto", "namespaces", "deno-only"].includes(isolation)) {
    throw new UsageError(
      `--isolation must be auto, namespaces or deno-only, not ${JSON.stringify(isolation)}`,
    );
  }
  const heap = values["heap-mib"] !== undefined ? int(values, "heap-mib", 0) : undefined;
  const data = values["data-mib"] !== undefined ? int(values, "data-mib", 0) : undefined;
  const entry = positionals[0];
  let config = str(values, "config");
  if (config === undefined) {
    const abs = entry.startsWith("/") ? entry : `${Deno.cwd()}/${entry}`;
    config = await nearestDenoConfig(abs.replace(/\/[^/]*$/, ""));
  }
  const deny = permissionsFrom(values, "deny");
  out.progress(`packing ${entry}`);
  let packed;
  try {
    packed = await packPlugin({
      entry,
      output,
      name: str(values, "name"),
      cookieKey,
      permissions: permissionsFrom(values, "allow"),
      ...(Object.keys(deny).length > 0 ? { denyPermissions: deny } : {}),
      allowBroadPermissions: values["allow-broad-permissions"] === true,
      isolation: isolation as Isolation,
      ...(heap !== undefined || data !== undefined
        ? {
          limits: {
            ...(heap !== undefined ? { heapMiB: heap } : {}),
            ...(data !== undefined ? { dataMiB: data } : {}),
          },
        }
        : {}),
      denoConfig: config,
      deno: str(values, "deno"),
    });
  } catch (error) {
    if (error instanceof PackError) {
      throw new CliError(`cannot pack ${entry}: ${error.message}`, STAGE_EXIT[error.stage], { cause: error });
    }
    throw error;
  }
  const compile = await probeDenort();
  out.clearProgress();
  const sftpgo = type === undefined
    ? null
    : { type, cmd: packed.output, sha256sum: packed.sha256, auto_mtls: true };
  if (out.json) {
    out.emit({
      ok: true,
      output: packed.output,
      sha256: packed.sha256,
      bytes: packed.bytes,
      form: "sh",
      deno: packed.deno,
      manifest: packed.manifest,
      sftpgo,
      compile: compile.ok
        ? { available: true, denort: compile.denort }
        : { available: false, reason: compile.reason },
    });
    return ExitCode.ok;
  }
  out.line(`${packed.sha256}  ${packed.output}`);
  out.line(
    `${out.green("packed")} ${packed.manifest.name}: ${
      (packed.bytes / 1048576).toFixed(1)
    } MiB, a sh script running ` +
      `${packed.deno}, isolation ${packed.manifest.isolation}`,
  );
  if (sftpgo) {
    out.line("");
    out.line("SFTPGo (sftpgo.yaml):");
    out.line("plugins:");
    out.line(`  - type: ${sftpgo.type}`);
    out.line(`    cmd: ${JSON.stringify(sftpgo.cmd)}`);
    out.line(`    sha256sum: ${sftpgo.sha256sum}`);
    out.line("    auto_mtls: true");
  } else {
    out.line(`go-plugin host: SecureConfig{Checksum: <the SHA-256 above>, Hash: sha256.New()}`);
  }
  out.line("");
  out.line(
    out.dim(
      compile.ok
        ? `deno compile: denort found at ${compile.denort}, but this version packs the sh form only`
        : `deno compile form not made: ${compile.reason}`,
    ),
  );
  return ExitCode.ok;
}
