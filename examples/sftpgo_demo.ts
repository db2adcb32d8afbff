/**
 * The SFTPGo part of `deno task demo`: runs examples/plugins.yaml (a
 * TypeScript example plugin of every SFTPGo type) under
 * {@linkcode PluginManager} and prints what each call does, as SFTPGo would
 * use them: logins, notifications, IP checks, secrets, event search; then a
 * crash and restart, checksum pinning, and a graceful stop.
 *
 *   deno run -A examples/sftpgo_demo.ts
 *
 * @module
 */

import { consoleLogger, type Logger } from "../mod.ts";
import { validatePluginsConfig } from "../src/sftpgo/config.ts";
import { PluginManager } from "../src/sftpgo/manager.ts";
import { LogEventType, SearchOrder } from "../sftpgo.ts";

const root = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
/** Where examples/plugins.yaml keeps the plugins' data (its permissions name these paths). */
const DATA = "/tmp/tether-sftpgo-demo";
const PASSWORD = "wonderland";
const PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlbW8ta2V5LWZvci10ZXRoZXI alice@laptop";

/** Options of {@linkcode runSftpgoDemo}. */
export interface SftpgoDemoOptions {
  /** Receives each transcript line (default: `console.log`). */
  readonly print?: (line: string) => void;
  /** Skip the checksum-pinning part, which bundles a plugin with `deno bundle` (about a second). */
  readonly skipBundle?: boolean;
}

const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

/** A password hash in the example auth plugin's format (PBKDF2-SHA256; fewer iterations than its default, for speed). */
async function hashPassword(password: string, iterations = 100_000): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    key,
    256,
  );
  return `$pbkdf2-sha256$${iterations}$${b64(salt)}$${b64(new Uint8Array(bits))}`;
}

async function sha256Hex(path: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(path)));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}

/**
 * Runs the SFTPGo demo and prints a transcript.
 *
 * @example
 * ```ts ignore
 * import { runSftpgoDemo } from "./sftpgo_demo.ts";
 * await runSftpgoDemo();
 * ```
 */
export async function runSftpgoDemo(options: SftpgoDemoOptions = {}): Promise<void> {
  const print = options.print ?? ((line: string) => console.log(line));
  const say = (what: string, result: string) => print(`  ${what.padEnd(48)} -> ${result}`);

  // The plugins' data: a users file for auth, an events file shared by notifier and eventsearcher.
  await Deno.remove(DATA, { recursive: true }).catch(() => {});
  await Deno.mkdir(DATA, { recursive: true });
  await Deno.writeTextFile(
    `${DATA}/users.json`,
    JSON.stringify({
      users: [{
        username: "alice",
        password: await hashPassword(PASSWORD),
        public_keys: [PUBLIC_KEY],
        user: { home_dir: "/srv/sftpgo/alice", permissions: { "/": ["*"] } },
      }],
    }),
  );
  // The eventsearcher's read grant must exist when it starts (under namespaces it is bound then).
  await Deno.writeTextFile(`${DATA}/events.jsonl`, "");

  // Manager-level news (exits, restarts, drops) go into the transcript; the rest of the log is dropped.
  const logger: Logger = {
    log: (record) => {
      if (["plugin exited unexpectedly", "plugin restarted"].includes(record.message)) {
        print(`    [${record.level}] ${record.fields.plugin}: ${record.message}`);
      }
    },
  };
  const kmsKey = b64(crypto.getRandomValues(new Uint8Array(32)));
  const started = performance.now();
  const manager = await PluginManager.fromYaml(`${root}/examples/plugins.yaml`, {
    baseDir: root,
    denoConfig: `${root}/deno.json`,
    // What env_prefix / env_vars select from; only TETHER_KMS_KEY reaches a plugin (the kms one).
    hostEnv: { TETHER_KMS_KEY: kmsKey, HOME: "/root", SECRET_NOBODY_GETS: "x" },
    logger,
    onPermissionEvent: (event) =>
      print(`    [sandbox] ${event.plugin} was denied ${event.permission} ${event.target ?? ""}`),
  });
  try {
    await manager.start();
    const running = manager.status().map((s) => `${s.name} (pid ${s.pid})`).join(", ");
    print(
      `  started ${manager.status().length} plugins in ${
        Math.round(performance.now() - started)
      } ms: ${running}`,
    );

    // auth: the routing follows auth_options.scope; each result also becomes a log event, as in SFTPGo.
    const where = { ip: "198.51.100.7", protocol: "SSH" };
    const login = async (
      what: string,
      attempt: () => Promise<{ user?: { username?: string; home_dir?: string } }>,
    ) => {
      try {
        const { user } = await attempt();
        say(what, `ok: user ${user?.username}, home ${user?.home_dir}`);
        manager.notifier.sendLogEvent({
          event: LogEventType.LoginOK,
          username: "alice",
          ...where,
          message: what,
        });
      } catch (error) {
        say(what, `refused: ${firstLine(error).replace(/^.*failed: UNKNOWN: /, "")}`);
        manager.notifier.sendLogEvent({
          event: LogEventType.LoginFailed,
          username: "alice",
          ...where,
          message: what,
        });
      }
    };
    await login(
      "auth alice, password",
      () => manager.auth.checkUserAndPass({ ...where, username: "alice", password: PASSWORD }),
    );
    await login(
      "auth alice, wrong password",
      () => manager.auth.checkUserAndPass({ ...where, username: "alice", password: "guess" }),
    );
    await login(
      "auth alice, public key",
      () => manager.auth.checkUserAndPublicKey({ ...where, username: "alice", pubKey: PUBLIC_KEY }),
    );
    const ki = await manager.auth.keyboardInteractive({
      username: "alice",
      ip: where.ip,
      challenge: ({ questions }) => questions.map(() => PASSWORD),
    });
    say(
      "auth alice, keyboard-interactive",
      ki.authenticated ? `ok after ${ki.steps} steps` : `refused: ${ki.reason}`,
    );
    manager.notifier.sendLogEvent({
      event: ki.authenticated ? LogEventType.LoginOK : LogEventType.LoginFailed,
      username: "alice",
      ...where,
      message: "auth alice, keyboard-interactive",
    });

    // ipfilter: an error from the plugin means "deny".
    for (const ip of ["203.0.113.7", "10.1.2.3", "::ffff:192.168.1.20"]) {
      const decision = await manager.ipFilter.checkIP(ip, "SSH");
      say(`ipfilter ${ip}`, decision.allowed ? "allowed" : `denied (${decision.reason})`);
    }

    // kms: SFTPGo stores payload, key and mode with the secret and hands them back to decrypt.
    const kms = manager.kms("hashivault");
    const url = "hashivault://sftpgo/secrets";
    const sealed = await kms.encrypt({ payload: "s3cret-s3-key", additionalData: "alice", url });
    say(
      `kms encrypt "s3cret-s3-key" (data: alice)`,
      `${sealed.payload.slice(0, 16)}... key ${sealed.key}, mode ${sealed.mode}`,
    );
    const plain = await manager.kmsByStatus("VaultTransit").decrypt({
      ...sealed,
      additionalData: "alice",
      url,
    });
    say(
      "kms decrypt (via encrypted_status VaultTransit)",
      JSON.stringify(plain) + (plain === "s3cret-s3-key" ? ", round trip ok" : ""),
    );
    await kms.decrypt({ ...sealed, additionalData: "mallory", url }).then(
      () => say("kms decrypt with other data", "UNEXPECTEDLY decrypted"),
      (error) =>
        say("kms decrypt with other data", `refused: ${firstLine(error).replace(/^.*UNKNOWN: /, "")}`),
    );

    // notifier: fan-out filtered by notifier_options; send returns at once, flush waits for delivery.
    const sent = [
      manager.notifier.sendFsEvent({
        action: "upload",
        username: "alice",
        virtualPath: "/in/report.csv",
        fileSize: 5120,
        ...where,
        protocol: "SFTP",
        status: 1,
      }),
      manager.notifier.sendFsEvent({
        action: "rename",
        username: "alice",
        virtualPath: "/in/report.csv",
        virtualTargetPath: "/archive/report.csv",
        protocol: "SFTP",
        status: 1,
      }),
      manager.notifier.sendFsEvent({
        action: "mkdir",
        username: "alice",
        virtualPath: "/tmp",
        protocol: "SFTP",
        status: 1,
      }),
      manager.notifier.sendProviderEvent({
        action: "update",
        objectType: "user",
        objectName: "alice",
        username: "admin",
        objectData: { username: "alice", status: 1 },
      }),
    ];
    await manager.notifier.flush({ timeoutMs: 10_000 });
    const lines = (await Deno.readTextFile(`${DATA}/events.jsonl`)).trim().split("\n").length;
    say(
      "notifier upload, rename, mkdir, user update",
      `${sent.filter((n) => n > 0).length} of ${sent.length} subscribed (mkdir is not in fs_events); ` +
        `events.jsonl has ${lines} lines (4 logins, upload, rename, user update)`,
    );

    // eventsearcher: finds what the notifier wrote.
    const fs = (await manager.eventSearcher.searchFsEvents({ username: "alice", order: SearchOrder.Asc }))
      .data as {
        action: string;
        virtual_path: string;
      }[];
    say(
      "eventsearcher fs events of alice",
      `${fs.length} found: ${fs.map((e) => `${e.action} ${e.virtual_path}`).join(", ")}`,
    );
    const logs = (await manager.eventSearcher.searchLogEvents({ events: [LogEventType.LoginFailed] }))
      .data as {
        message: string;
      }[];
    say("eventsearcher failed logins", `${logs.length} found: ${logs.map((e) => e.message).join(", ")}`);

    // Supervision: a crash is noticed at once; what is sent meanwhile is delivered after the restart, in order.
    const victim = manager.status().find((s) => s.type === "notifier")!;
    const killedAt = performance.now();
    Deno.kill(victim.pid!, "SIGKILL");
    while (manager.status().find((s) => s.name === victim.name)!.state === "running") {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    manager.notifier.sendFsEvent({
      action: "delete",
      username: "alice",
      virtualPath: "/archive/report.csv",
      status: 1,
    });
    await manager.notifier.flush({ timeoutMs: 10_000 });
    const after = manager.status().find((s) => s.name === victim.name)!;
    const found = (await manager.eventSearcher.searchFsEvents({ actions: ["delete"] })).data as unknown[];
    say(
      `SIGKILL ${victim.name} (pid ${victim.pid}), send a delete`,
      `restarted as pid ${after.pid} in ${Math.round(performance.now() - killedAt)} ms; delete delivered ` +
        `(${found.length} found), ${after.dropped} dropped`,
    );

    if (!options.skipBundle) await pinningDemo(say);

    const report = await manager.stop();
    say(
      "stop",
      `${report.flushed ? "queues flushed" : "NOT flushed"}; notifier delivered ${report.delivered}, left ` +
        `${report.left}, dropped ${report.dropped}; ${report.durationMs} ms`,
    );
  } finally {
    await manager.stop();
    // The demo's data files are only for this run.
    await Deno.remove(DATA, { recursive: true }).catch(() => {});
  }
}

/** Checksum pinning: a Deno plugin with sha256sum must be one bundled file; bundle one, pin it, then tamper. */
async function pinningDemo(say: (what: string, result: string) => void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tether-pin-" });
  try {
    const bundle = `${dir}/ipfilter.bundle.js`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--config",
        `${root}/deno.json`,
        `${root}/examples/sftpgo/plugins/ipfilter.ts`,
        "-o",
        bundle,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      say(
        "sha256sum pinning",
        `skipped: deno bundle failed (${new TextDecoder().decode(out.stderr).trim()})`,
      );
      return;
    }
    const digest = await sha256Hex(bundle);
    const pinned = (path: string) =>
      new PluginManager(
        validatePluginsConfig([{
          type: "ipfilter",
          cmd: path,
          args: ["--deny", "10.0.0.0/8"],
          sha256sum: digest,
        }]),
        { hostEnv: {}, logger: consoleLogger({ level: "error" }) },
      );
    const good = pinned(bundle);
    await good.start();
    const decision = await good.ipFilter.checkIP("10.9.9.9", "SSH");
    await good.stop();
    const size = (await Deno.stat(bundle)).size;
    say(
      `sha256sum ${digest.slice(0, 12)}... on a ${(size / 1e6).toFixed(1)} MB bundle`,
      `verified copy started; 10.9.9.9 ${decision.allowed ? "allowed" : "denied"}`,
    );
    await Deno.writeTextFile(bundle, "\n// one more line\n", { append: true });
    await pinned(bundle).start().then(
      () => say("the same bundle, one line appended", "UNEXPECTEDLY started"),
      (error) => {
        const why = /checksums did not match/.test(firstLine(error))
          ? "checksums did not match"
          : firstLine(error);
        say("the same bundle, one line appended", `refused before it ran (${error.code}): ${why}`);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  console.log("SFTPGo plugins from examples/plugins.yaml under PluginManager");
  await runSftpgoDemo();
}
