/**
 * `tether pack`: sealed plugin executables. The packed files run under real go-plugin hosts (the Go fixtures
 * sftpgohost, kvhost and killhost, which start plugins as SFTPGo 2.7.5 does) and under PluginManager from a
 * `plugins:` config with `sha256sum`; their SHA-256 covers code and permissions; they apply their permissions
 * themselves; two of them survive SFTPGo's killProcess side by side. Also: CLI failures, denort detection,
 * and the `deno bundle` route for hosts.
 */

import assert from "node:assert/strict";
import { PluginManager } from "../../src/sftpgo/manager.ts";
import { parsePluginsConfig } from "../../src/sftpgo/config.ts";
import { sha256Hex } from "../../src/integrity.ts";
import { probeDenort } from "../../src/pack/denort.ts";
import { passedEnv } from "../../src/pack/launcher.ts";
import { probeNamespaces } from "../../src/isolation.ts";
import { sftpgoHandshakes } from "../../src/sftpgo/handshakes.ts";
import { goFixture, ignoreWithoutGo, isAlive, repoRoot } from "../helpers.ts";
import { collectingLogger, rejectsWithCode, testOptions } from "../sftpgo/manager_support.ts";
import { tether } from "./support.ts";

const CANARY = `${repoRoot}/tests/fixtures/pack/canary_auth.ts`;

interface Packed {
  output: string;
  sha256: string;
  bytes: number;
  form: string;
  sftpgo: { type: string; cmd: string; sha256sum: string; auto_mtls: boolean } | null;
  manifest: { permissions: Record<string, string[]>; pluginSha256: string };
}

async function pack(args: string[]): Promise<Packed> {
  const result = await tether(["pack", "--json", ...args]);
  assert.equal(result.code, 0, `tether pack ${args.join(" ")}:\n${result.stdout}\n${result.stderr}`);
  return JSON.parse(result.stdout) as Packed;
}

/** A temporary directory for one test, removed afterwards; fails the test if a launch left anything in it. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tether-pack-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** What a launch may leave in its base directory: nothing but the files the test put there. */
function leftovers(dir: string, expected: readonly string[]): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((name) => !expected.includes(name));
}

function flipOneByteOfCode(bytes: Uint8Array): Uint8Array {
  const copy = bytes.slice();
  // A byte well inside the heredoc (the bundled code), not the shell header.
  const at = copy.length - 1000;
  copy[at] = copy[at] === 0x20 ? 0x09 : 0x20;
  return copy;
}

Deno.test("pack --help and usage errors: no FILE, no -o, no handshake, unknown --sftpgo type (exit 2)", async () => {
  const help = await tether(["pack", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: tether pack/);
  assert.match((await tether(["--help"])).stdout, /pack \[options\] PLUGIN\.ts -o FILE/);
  for (
    const [args, message] of [
      [["pack", "--sftpgo", "auth", "-o", "x"], /pack takes one PLUGIN file/],
      [["pack", "--sftpgo", "auth", CANARY], /give the packed file with -o FILE/],
      [["pack", CANARY, "-o", "x"], /--sftpgo TYPE, or --cookie-key KEY/],
      [["pack", "--sftpgo", "ftp", CANARY, "-o", "x"], /--sftpgo must be one of auth, /],
      [["pack", "--sftpgo", "auth", "--allow", "disk=/x", CANARY, "-o", "x"], /--allow takes KIND=VALUE/],
    ] as const
  ) {
    const result = await tether([...args]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.match(result.stderr, message);
    assert.match(result.stderr, /Run "tether pack --help" for usage\./);
  }
});

Deno.test("pack failures: a missing file exits 1, a grant with a comma or a bad limit exits 2 naming the field, a module graph refusal exits 3 naming the module; nothing is written", async () => {
  await withDir(async (dir) => {
    const out = `${dir}/packed`;
    const missing = await tether(["pack", "--sftpgo", "auth", `${dir}/nope.ts`, "-o", out]);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /cannot pack .*nope\.ts: cannot read the plugin .*nope\.ts: .*No such file/);

    const comma = await tether([
      "pack",
      "--sftpgo",
      "auth",
      "--allow",
      "read=/srv/a,/etc",
      CANARY,
      "-o",
      out,
    ]);
    assert.equal(comma.code, 2, comma.stderr);
    assert.match(comma.stderr, /permissions\.read\[0\]: "\/srv\/a,\/etc" contains ","/);

    const limit = await tether(["pack", "--sftpgo", "auth", "--data-mib", "100", CANARY, "-o", out]);
    assert.equal(limit.code, 2, limit.stderr);
    assert.match(limit.stderr, /limits\.dataMiB \(100\) must be at least 1024/);

    // A plugin whose graph holds a literal import outside its tree (Deno loads it without a read check).
    await Deno.mkdir(`${dir}/plugin`);
    await Deno.writeTextFile(`${dir}/plugin/deno.json`, "{}\n");
    await Deno.writeTextFile(`${dir}/outside.txt`, "secret\n");
    await Deno.writeTextFile(
      `${dir}/plugin/p.ts`,
      'import secret from "../outside.txt" with { type: "text" };\nconsole.log(secret);\n',
    );
    const graph = await tether(["pack", "--sftpgo", "auth", `${dir}/plugin/p.ts`, "-o", out]);
    assert.equal(graph.code, 3, graph.stderr);
    assert.match(graph.stderr, /module .*outside\.txt .*is outside the plugin's own tree/);
    assert.deepEqual(leftovers(dir, ["plugin", "outside.txt"]), [], "no packed file, no temporary file");
  });
});

Deno.test({
  name: "pack: the SHA-256 covers code and permissions (same input, same file; one permission or one byte " +
    "of code more, another sum); the printed sum and plugins: entry are the file's",
  fn: async () => {
    await withDir(async (dir) => {
      const base = await pack([
        "--sftpgo",
        "auth",
        "--name",
        "canary",
        "--allow",
        "read=/srv/a",
        CANARY,
        "-o",
        `${dir}/a`,
      ]);
      assert.equal(base.sha256, await sha256Hex(await Deno.readFile(`${dir}/a`)));
      assert.equal(base.form, "sh");
      assert.deepEqual(base.sftpgo, {
        type: "auth",
        cmd: `${dir}/a`,
        sha256sum: base.sha256,
        auto_mtls: true,
      });
      assert.equal((await Deno.stat(`${dir}/a`)).mode! & 0o777, 0o755);

      const again = await pack([
        "--sftpgo",
        "auth",
        "--name",
        "canary",
        "--allow",
        "read=/srv/a",
        CANARY,
        "-o",
        `${dir}/b`,
      ]);
      assert.equal(again.sha256, base.sha256, "packing is reproducible");

      const more = await pack([
        "--sftpgo",
        "auth",
        "--name",
        "canary",
        "--allow",
        "read=/srv/a",
        "--allow",
        "env=HOME",
        CANARY,
        "-o",
        `${dir}/c`,
      ]);
      assert.notEqual(more.sha256, base.sha256, "one permission more changes the sum");
      assert.deepEqual(more.manifest.permissions, { read: ["/srv/a"], env: ["HOME"] });

      // One byte more of code: the same plugin with a comment added, next to the original (same tree).
      const variant = `${repoRoot}/tests/fixtures/pack/.canary_variant_${crypto.randomUUID()}.ts`;
      try {
        await Deno.writeTextFile(
          variant,
          (await Deno.readTextFile(CANARY)).replace("await serveAuth", "await  serveAuth"),
        );
        const changed = await pack([
          "--sftpgo",
          "auth",
          "--name",
          "canary",
          "--allow",
          "read=/srv/a",
          variant,
          "-o",
          `${dir}/d`,
        ]);
        assert.notEqual(changed.manifest.pluginSha256, base.manifest.pluginSha256);
        assert.notEqual(changed.sha256, base.sha256, "one byte of code changes the sum");
      } finally {
        await Deno.remove(variant);
      }

      const head = (await Deno.readTextFile(`${dir}/a`)).slice(0, 4000);
      assert.ok(head.startsWith("#!/bin/sh\n"), head);
      assert.ok(head.includes("#   read=/srv/a\n"), `the grants are readable in the header:\n${head}`);
      assert.match(head, /exec "\$D" run [^\n]*\\\n[^\n]* - "\$@" <<'TETHER_PACK_[0-9a-f]{32}'\n/);
    });
  },
});

Deno.test({
  name: "pack: a packed plugin runs under SFTPGo's host (sftpgohost: sdk clients, sha256 checked, AutoMTLS " +
    "and plain) and leaves nothing behind; one changed byte with the same sha256 is refused",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const sftpgohost = await goFixture("sftpgohost");
    const namespaces = await probeNamespaces();
    await withDir(async (dir) => {
      const packed = await pack([
        "--sftpgo",
        "auth",
        `${repoRoot}/tests/fixtures/sftpgo/auth.ts`,
        "-o",
        `${dir}/auth-plugin`,
      ]);
      const base = `${dir}/tmp`;
      await Deno.mkdir(base);
      for (const automtls of [true, false]) {
        const run = await new Deno.Command(sftpgohost, {
          args: [
            "-type",
            "auth",
            `-automtls=${automtls}`,
            "-sha256",
            packed.sha256,
            "-env-vars",
            "TMPDIR",
            "--",
            packed.output,
          ],
          env: { TMPDIR: base },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const report = JSON.parse(new TextDecoder().decode(run.stdout));
        assert.equal(
          report.ok,
          true,
          `automtls=${automtls}: ${new TextDecoder().decode(run.stdout).slice(0, 2000)}`,
        );
        assert.equal(report.calls.length, 18);
        assert.equal(report.kill.graceful, true);
        // The launcher's hclog lines reach go-plugin's host log under the plugin's name, as a Go plugin's do.
        const hostLog = new TextDecoder().decode(run.stderr);
        assert.match(hostLog, /plugins\.auth\.auth-plugin: plugin verified: /);
        // The OS layer it applied itself, as a Tether host would.
        assert.match(
          hostLog,
          namespaces.ok ? /run in their own namespaces \(bubblewrap\)/ : /run WITHOUT namespaces/,
        );
      }
      assert.deepEqual(leftovers(base, []), [], "no private directory, staging file or owner marker left");

      await Deno.writeFile(`${dir}/tampered`, flipOneByteOfCode(await Deno.readFile(packed.output)), {
        mode: 0o755,
      });
      const tampered = await new Deno.Command(sftpgohost, {
        args: ["-type", "auth", "-sha256", packed.sha256, "--", `${dir}/tampered`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const report = JSON.parse(new TextDecoder().decode(tampered.stdout));
      assert.equal(report.ok, false);
      assert.match(report.start.error, /checksums did not match/);
    });
  },
});

Deno.test({
  name: "pack: a packed plugin under PluginManager from a plugins: config with its sha256sum answers; a " +
    "tampered file is refused (checksum)",
  fn: async () => {
    await withDir(async (dir) => {
      const packed = await pack(["--sftpgo", "auth", CANARY, "-o", `${dir}/auth-plugin`]);
      const yaml = (cmd: string) =>
        `- type: auth\n  cmd: ${cmd}\n  sha256sum: ${packed.sha256}\n  auto_mtls: true\n  auth_options: { scope: 1 }\n`;
      const { logger } = collectingLogger();
      const manager = new PluginManager(
        parsePluginsConfig(yaml(packed.output), "test.yaml"),
        testOptions(logger),
      );
      let pid: number | undefined;
      try {
        await manager.start();
        pid = manager.status()[0].pid;
        const answer = await manager.auth.checkUserAndPass({
          username: "alice",
          password: "wonderland",
          ip: "198.51.100.7",
          protocol: "SSH",
        });
        assert.equal(answer.user?.username, "alice");
      } finally {
        await manager.stop();
      }
      assert.ok(pid !== undefined && !isAlive(pid), "the packed plugin's process is gone");

      await Deno.writeFile(`${dir}/tampered`, flipOneByteOfCode(await Deno.readFile(packed.output)), {
        mode: 0o755,
      });
      const refused = new PluginManager(
        parsePluginsConfig(yaml(`${dir}/tampered`), "test.yaml"),
        testOptions(logger),
      );
      try {
        const error = await rejectsWithCode(refused.start(), "checksum");
        assert.match(error.message, new RegExp(`expected SHA-256 ${packed.sha256}`));
      } finally {
        await refused.stop();
      }
    });
  },
});

Deno.test({
  name: "pack: two packed plugins side by side under a host that kills by cmd path before each start, as " +
    "SFTPGo's killProcess (killhost): killProcess matches neither, both survive each other's restarts; " +
    "the packed grants hold under a Go host (a granted file is read, the canary is NotCapable)",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const killhost = await goFixture("killhost");
    await withDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/granted.txt`, "granted\n");
      await Deno.writeTextFile(`${dir}/canary.txt`, "CANARY-SECRET\n");
      const a = await pack([
        "--sftpgo",
        "auth",
        "--allow",
        `read=${dir}/granted.txt`,
        CANARY,
        "-o",
        `${dir}/auth-a`,
      ]);
      const b = await pack(["--sftpgo", "auth", CANARY, "-o", `${dir}/auth-b`]);
      const run = async (canary: string) => {
        const out = await new Deno.Command(killhost, {
          args: ["-canary", canary, "--", a.output, b.output],
          stdout: "piped",
          stderr: "piped",
        }).output();
        return JSON.parse(new TextDecoder().decode(out.stdout));
      };
      const report = await run(`${dir}/canary.txt`);
      assert.equal(report.ok, true, JSON.stringify(report.steps));
      assert.equal(
        report.steps.filter((s: { name: string }) => /answers/.test(s.name)).length,
        1 + 2 + 2 + 2,
      );
      assert.deepEqual(
        report.kills.map((k: { matched_pid: number }) => k.matched_pid),
        [0, 0, 0, 0],
        "the running packed plugins' executable is Deno, never a packed file",
      );
      assert.equal(report.pids[a.output].length, 2);
      assert.match(report.canary.error, /read refused: NotCapable/);
      assert.doesNotMatch(JSON.stringify(report), /CANARY-SECRET/);

      const granted = await run(`${dir}/granted.txt`);
      assert.match(granted.canary.error, /read ok: granted/);
    });
  },
});

Deno.test({
  name: "pack: a packed Tether KV plugin under go-plugin's own host (kvhost, AutoMTLS): every step but the " +
    "plugin dialling the host's broker socket, which Deno cannot grant (a documented limit)",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const kvhost = await goFixture("kvhost");
    await withDir(async (dir) => {
      const packed = await pack([
        "--cookie-key",
        "TETHER_KV_PLUGIN",
        `${repoRoot}/examples/kv/plugin.ts`,
        "-o",
        `${dir}/kv`,
      ]);
      assert.equal(packed.sftpgo, null);
      const out = await new Deno.Command(kvhost, {
        args: ["-automtls=true", "-scenario", "all", "--", packed.output],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const report = JSON.parse(new TextDecoder().decode(out.stdout));
      const steps = Object.fromEntries(
        report.steps.map((s: { name: string; ok: boolean; detail?: string }) => [s.name, s]),
      );
      for (
        const name of ["start", "put_get", "list", "broker_plugin_serves", "stdio", "logs", "ping", "kill"]
      ) {
        assert.equal(steps[name]?.ok, true, `${name}: ${steps[name]?.detail}`);
      }
      assert.equal(steps.broker_host_serves.ok, false);
      // Deno's permission refusal (the lean channel reports its message without the class name).
      assert.match(
        steps.broker_host_serves.detail,
        /NotCapable|Requires (read|write|net) access to "\/tmp\/plugin/,
      );
    });
  },
});

Deno.test("deno compile detection: DENORT_BIN pointing at deno is found out (its binary starts the REPL); without denort the reason names the download", async () => {
  const repl = await probeDenort({ DENORT_BIN: Deno.execPath() });
  assert.equal(repl.ok, false);
  assert.match(!repl.ok ? repl.reason : "", /is the full deno CLI, not denort: .* only starts the REPL/);
  const none = await probeDenort({});
  if (none.ok) assert.match(none.denort, /denort/);
  else assert.match(none.reason, /DENORT_BIN is not set .* dl\.deno\.land/);
});

Deno.test({
  name: "compiled hosts, deno bundle route: a host script bundled with deno bundle runs a Go plugin and a " +
    "TypeScript plugin",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const kvplugin = await goFixture("kvplugin");
    await withDir(async (dir) => {
      const bundle = await new Deno.Command(Deno.execPath(), {
        args: [
          "bundle",
          "--quiet",
          "--config",
          `${repoRoot}/deno.json`,
          `${repoRoot}/tests/fixtures/pack/bundled_host.ts`,
          "-o",
          `${dir}/host.js`,
        ],
        stderr: "piped",
      }).output();
      assert.equal(bundle.code, 0, new TextDecoder().decode(bundle.stderr));
      for (const args of [[kvplugin], [`${repoRoot}/examples/kv/plugin.ts`, `${repoRoot}/deno.json`]]) {
        const run = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--no-config", `${dir}/host.js`, ...args],
          cwd: dir,
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(run.code, 0, new TextDecoder().decode(run.stderr));
        assert.equal(JSON.parse(new TextDecoder().decode(run.stdout)).value, "from a bundled host");
      }
    });
  },
});

Deno.test({
  name: "pack: a packed plugin whose host is SIGKILLed stops by itself (its launcher sees it is orphaned, " +
    "stops the plugin and removes its files)",
  fn: async () => {
    await withDir(async (dir) => {
      const packed = await pack(["--sftpgo", "auth", CANARY, "-o", `${dir}/auth-plugin`]);
      const base = `${dir}/tmp`;
      await Deno.mkdir(base);
      // A stand-in host: a shell that starts the plugin with SFTPGo's cookie, says its pid, and waits.
      const host = new Deno.Command("/bin/sh", {
        args: ["-c", '"$0" & echo "launcher $!"; wait', packed.output],
        env: {
          [sftpgoHandshakes.auth.magicCookieKey]: sftpgoHandshakes.auth.magicCookieValue,
          PLUGIN_PROTOCOL_VERSIONS: "1",
          TMPDIR: base,
        },
        clearEnv: true,
        stdout: "piped",
        stderr: "null",
      }).spawn();
      const reader = host.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let seen = "";
      while (!/\|grpc/.test(seen)) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += value;
      }
      const launcher = Number(/launcher (\d+)/.exec(seen)?.[1]);
      assert.ok(launcher > 0 && isAlive(launcher), `launcher pid in ${JSON.stringify(seen)}`);
      assert.match(seen, /^1\|1\|unix\|.*\|grpc/m, "the plugin's handshake line reached the host");
      assert.ok(leftovers(base, []).length > 0, "the launch has its private directory");
      host.kill("SIGKILL");
      await host.status;
      reader.releaseLock();
      await host.stdout.cancel().catch(() => {});
      const until = Date.now() + 15_000;
      while ((isAlive(launcher) || leftovers(base, []).length > 0) && Date.now() < until) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal(isAlive(launcher), false, "the launcher exited");
      assert.deepEqual(leftovers(base, []), [], "the plugin's private directory and owner marker are gone");
    });
  },
});

Deno.test("pack launcher: the plugin gets only the protocol's variables, GRPC_* and its env grants from the host's environment, never DENO_*", () => {
  const host = {
    SFTPGO_PLUGIN_AUTH: "cookie",
    PLUGIN_PROTOCOL_VERSIONS: "1",
    PLUGIN_CLIENT_CERT: "pem",
    TETHER_PLUGIN_SOCKET: "/run/x/plugin.sock",
    GRPC_TRACE: "all",
    AUTH_PLUGIN_DSN: "postgres://",
    AUTH_PLUGIN_OTHER: "x",
    HOME: "/root",
    PATH: "/usr/bin",
    DENO_V8_FLAGS: "--allow-natives-syntax",
    DENO_PERMISSION_BROKER_PATH: "/tmp/broker",
    DENO_DIR: "/tmp/d",
  };
  assert.deepEqual(passedEnv(host, "SFTPGO_PLUGIN_AUTH", ["AUTH_PLUGIN_DSN", "HO*"]), {
    SFTPGO_PLUGIN_AUTH: "cookie",
    PLUGIN_PROTOCOL_VERSIONS: "1",
    PLUGIN_CLIENT_CERT: "pem",
    TETHER_PLUGIN_SOCKET: "/run/x/plugin.sock",
    GRPC_TRACE: "all",
    AUTH_PLUGIN_DSN: "postgres://",
    HOME: "/root",
  });
  assert.deepEqual(passedEnv({ DENO_DIR: "/x", DENO_V8_FLAGS: "y" }, "K", ["DENO_*"]), {});
});
