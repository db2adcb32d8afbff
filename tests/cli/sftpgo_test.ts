/**
 * `tether sftpgo check` and `tether sftpgo run` as a user runs them, against the Go reference SFTPGo plugin
 * (tests/interop/go/cmd/sftpgo-plugins, built on sftpgo/sdk) and a TypeScript SFTPGo plugin
 * (tests/fixtures/sftpgo/ipfilter.ts).
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { eventually, ignoreWithoutGo, isAlive, processesMatching, repoRoot } from "../helpers.ts";
import { goSftpgoPlugins, tether } from "./support.ts";

const ignore = ignoreWithoutGo();

/** A private directory with two copies of the Go SFTPGo plugin (`a` and `b`), removed afterwards. */
async function withDir(fn: (dir: string, sha: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tether-cli-sftpgo-" });
  const bytes = await Deno.readFile(await goSftpgoPlugins());
  for (const name of ["a", "b"]) await Deno.writeFile(`${dir}/${name}`, bytes, { mode: 0o755 });
  const sha = createHash("sha256").update(bytes).digest("hex");
  try {
    await fn(dir, sha);
  } finally {
    const gone = await eventually(() => processesMatching(dir).filter(isAlive).length === 0, 5000);
    for (const pid of processesMatching(dir)) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch {
        // Gone meanwhile.
      }
    }
    await Deno.remove(dir, { recursive: true });
    assert.ok(gone, "plugin processes left behind");
  }
}

const lines = (...ls: string[]) => ls.join("\n") + "\n";

Deno.test({
  name: "sftpgo check: a good config (YAML and TOML) passes with checksums verified, exit 0",
  ignore,
  fn: () =>
    withDir(async (dir, sha) => {
      await Deno.writeTextFile(
        `${dir}/sftpgo.yaml`,
        lines(
          "plugins:",
          "  - type: ipfilter",
          `    cmd: ${dir}/a`,
          "    args: [ipfilter]",
          `    sha256sum: ${sha}`,
          "  - type: kms",
          `    cmd: ${dir}/b`,
          "    args: [kms]",
          "    kms_options: {scheme: hashivault, encrypted_status: VaultTransit}",
        ),
      );
      const result = await tether(["sftpgo", "check", `${dir}/sftpgo.yaml`]);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.equal(result.stdout, `${dir}/sftpgo.yaml: 2 plugin(s), 0 error(s), 0 warning(s) ok\n`);
      const json = JSON.parse((await tether(["sftpgo", "check", "--json", `${dir}/sftpgo.yaml`])).stdout);
      assert.equal(json.ok, true);
      assert.deepEqual(json.plugins[0].sha256, { expected: sha, actual: sha, ok: true });
      await Deno.writeTextFile(
        `${dir}/sftpgo.toml`,
        lines(
          "[[plugins]]",
          'type = "ipfilter"',
          `cmd = "${dir}/a"`,
          'args = ["ipfilter"]',
          `sha256sum = "${sha}"`,
        ),
      );
      const toml = await tether(["sftpgo", "check", `${dir}/sftpgo.toml`]);
      assert.equal(toml.code, 0, toml.stdout);
    }),
});

Deno.test({
  name: "sftpgo check: wrong checksum, missing and non-executable cmd are errors with file:line, exit 3",
  ignore,
  fn: () =>
    withDir(async (dir) => {
      await Deno.chmod(`${dir}/b`, 0o644);
      const file = `${dir}/sftpgo.yaml`;
      await Deno.writeTextFile(
        file,
        lines(
          "plugins:",
          "  - type: ipfilter",
          `    cmd: ${dir}/a`,
          "    args: [ipfilter]",
          `    sha256sum: ${"ab".repeat(32)}`,
          "  - type: eventsearcher",
          `    cmd: ${dir}/b`,
          "  - type: auth",
          `    cmd: ${dir}/missing`,
          "    auth_options: {scope: 1}",
        ),
      );
      const result = await tether(["sftpgo", "check", file]);
      assert.equal(result.code, 3);
      const out = result.stdout;
      assert.match(
        out,
        new RegExp(
          `error: ${file}:2:5: plugins\\[0\\]\\.sha256sum: does not match ${dir}/a: the file's SHA-256 is [0-9a-f]{64}, the config says (ab){32}`,
        ),
      );
      assert.ok(
        out.includes(
          `error: ${file}:6:5: plugins[1].cmd: ${dir}/b is not executable (mode 644); chmod +x it`,
        ),
        out,
      );
      assert.ok(out.includes(`error: ${file}:8:5: plugins[2].cmd: ${dir}/missing does not exist`), out);
      assert.ok(out.endsWith(`${file}: 3 plugin(s), 3 error(s), 0 warning(s)\n`), out);
    }),
});

Deno.test({
  name:
    "sftpgo check: SFTPGo's killProcess collision (same executable by its path) is an error; other spellings and interpreters warn",
  ignore,
  fn: () =>
    withDir(async (dir) => {
      const file = `${dir}/sftpgo.yaml`;
      await Deno.writeTextFile(
        file,
        lines(
          "plugins:",
          "  - type: ipfilter",
          `    cmd: ${dir}/a`,
          "    args: [ipfilter]",
          "  - type: eventsearcher",
          `    cmd: ${dir}/a`,
          "    args: [eventsearcher]",
        ),
      );
      const result = await tether(["sftpgo", "check", file]);
      assert.equal(result.code, 3);
      assert.ok(
        result.stdout.includes(
          `error: ${file}:2:5: plugins[0].cmd: "${dir}/a" is also the executable of plugins[1] (line 5): before ` +
            "starting a plugin SFTPGo kills the running process whose executable is its cmd, so these plugins kill " +
            "each other",
        ),
        result.stdout,
      );
      assert.ok(result.stdout.includes(`error: ${file}:5:5: plugins[1].cmd:`), result.stdout);
      // The PluginManager fixture runs one Go binary for every type by a relative path: killProcess never
      // matches a relative cmd, so that is a warning, not a collision.
      const relative = await tether([
        "sftpgo",
        "check",
        "--base-dir",
        repoRoot,
        "tests/fixtures/manager/go-plugins.yaml",
      ]);
      assert.equal(relative.code, 0, relative.stdout);
      assert.match(
        relative.stdout,
        /warning: tests\/fixtures\/manager\/go-plugins\.yaml:\d+:\d+: plugins\[0\]\.cmd: runs the same executable \(\S+sftpgo-plugins\) as plugins\[1\]/,
      );
      const deno = Deno.realPathSync(Deno.execPath());
      await Deno.writeTextFile(
        file,
        lines("plugins:", "  - type: ipfilter", `    cmd: ${deno}`, "    args: [run, /opt/ipfilter.ts]"),
      );
      const interp = await tether(["sftpgo", "check", file]);
      assert.equal(interp.code, 0, interp.stdout);
      assert.match(
        interp.stdout,
        /warning: .*plugins\[0\]\.cmd: is the interpreter deno: before starting this plugin SFTPGo kills/,
      );
    }),
});

Deno.test("sftpgo check: config errors are reported with file:line:col, exit 3; unreadable file exit 1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/sftpgo.yaml`;
    await Deno.writeTextFile(
      file,
      lines("plugins:", "  - type: ipfilter", "    cmd: -rf", "    tether: {start_timeout_ms: 3000000000}"),
    );
    const result = await tether(["sftpgo", "check", file]);
    assert.equal(result.code, 3);
    assert.ok(
      result.stdout.includes(
        `error: ${file}:3:10: plugins[0].cmd: expected a path that does not start with "-"`,
      ),
      result.stdout,
    );
    assert.ok(
      result.stdout.includes(
        `error: ${file}:4:32: plugins[0].tether.start_timeout_ms: expected an integer from 1 to 2147483647`,
      ),
      result.stdout,
    );
    const json = JSON.parse((await tether(["sftpgo", "check", "--json", file])).stdout);
    assert.equal(json.ok, false);
    assert.deepEqual(json.errors.map((e: { line: number; path: string }) => `${e.line} ${e.path}`), [
      "3 plugins[0].cmd",
      "4 plugins[0].tether.start_timeout_ms",
    ]);
    const missing = await tether(["sftpgo", "check", `${dir}/nope.yaml`]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read .*nope\.yaml/);
    assert.equal((await tether(["sftpgo", "lint", file])).code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sftpgo check applies SFTPGO_PLUGINS__ overrides (errors name the variable) unless --no-env", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/sftpgo.yaml`;
    await Deno.writeTextFile(file, lines("plugins:", "  - type: ipfilter", `    cmd: ${Deno.execPath()}`));
    const env = { SFTPGO_PLUGINS__0__TYPE: "auth", SFTPGO_PLUGINS__0__AUTH_OPTIONS__SCOPE: "x" };
    const result = await tether(["sftpgo", "check", file], { env });
    assert.equal(result.code, 3);
    assert.ok(
      result.stdout.includes(
        "error: environment variable SFTPGO_PLUGINS__0__AUTH_OPTIONS__SCOPE: plugins[0].auth_options.scope: " +
          'expected a base-10 32-bit integer (SFTPGo would silently ignore anything else), found "x"',
      ),
      result.stdout,
    );
    const noEnv = await tether(["sftpgo", "check", "--no-env", file], { env });
    assert.equal(noEnv.code, 0, noEnv.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "sftpgo run: starts the plugins (Go and TypeScript), shows live status, SIGINT stops them gracefully (exit 0)",
  ignore,
  fn: () =>
    withDir(async (dir) => {
      const file = `${dir}/sftpgo.yaml`;
      await Deno.writeTextFile(
        file,
        lines(
          "plugins:",
          "  - type: kms",
          `    cmd: ${dir}/a`,
          "    args: [kms]",
          "    kms_options: {scheme: hashivault, encrypted_status: VaultTransit}",
          "  - type: ipfilter",
          `    cmd: ${repoRoot}/tests/fixtures/sftpgo/ipfilter.ts`,
          `    args: [${dir}]`,
        ),
      );
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          `${repoRoot}/cli.ts`,
          "sftpgo",
          "run",
          "--json",
          "--config",
          `${repoRoot}/deno.json`,
          file,
        ],
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      let running: { name: string; state: string; pid?: number }[] | undefined;
      while (running === undefined) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
        for (const line of text.split("\n").slice(0, -1)) {
          const status = JSON.parse(line).status as
            | { name: string; state: string; pid?: number }[]
            | undefined;
          if (status?.every((s) => s.state === "running")) running = status;
        }
      }
      assert.ok(running, `no all-running status line in: ${text}`);
      assert.deepEqual(running.map((s) => s.name), ["kms#0", "ipfilter#1"]);
      const pids = running.map((s) => s.pid!);
      assert.ok(pids.every((pid) => isAlive(pid)));
      child.kill("SIGINT");
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      const status = await child.status;
      const stderr = await new Response(child.stderr).text();
      assert.equal(status.code, 0, stderr);
      assert.ok(text.includes('"stopped"'), text);
      assert.match(stderr, /SIGINT: stopping the plugins/);
      assert.ok(await eventually(() => pids.every((pid) => !isAlive(pid)), 5000), "plugins still running");
    }),
});

Deno.test({
  name: "sftpgo run: a plugin that does not start exits 4 with the reason; config errors exit 3",
  ignore,
  fn: () =>
    withDir(async (dir) => {
      const file = `${dir}/sftpgo.yaml`;
      await Deno.writeTextFile(
        file,
        lines(
          "plugins:",
          "  - type: ipfilter",
          `    cmd: ${repoRoot}/tests/fixtures/plugins/exit_early.sh`,
          "    args: ['2', 'no config']",
        ),
      );
      const result = await tether(["sftpgo", "run", file]);
      assert.equal(result.code, 4, result.stderr);
      assert.match(result.stderr, /plugins did not start: .*no config/s);
      await Deno.writeTextFile(file, lines("plugins:", "  - type: ipfilter"));
      const invalid = await tether(["sftpgo", "run", file]);
      assert.equal(invalid.code, 3);
      assert.match(invalid.stderr, /sftpgo\.yaml:2:\d+: plugins\[0\]\.cmd: expected a non-empty string/);
    }),
});

Deno.test({
  name: "call --sftpgo TYPE: an SFTPGo plugin (sftpgo/sdk, Go) over its own reflection, as in the README",
  ignore,
  fn: () =>
    withDir(async (dir) => {
      const ok = await tether([
        "call",
        "--sftpgo",
        "ipfilter",
        "--",
        `${dir}/a`,
        "ipfilter",
        "proto.IPFilter/CheckIP",
        '{"ip": "198.51.100.7", "protocol": "SSH"}',
      ]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual(JSON.parse(ok.stdout), {});
      const banned = await tether([
        "call",
        "--sftpgo",
        "ipfilter",
        "--",
        `${dir}/a`,
        "ipfilter",
        "proto.IPFilter/CheckIP",
        '{"ip": "10.1.2.3", "protocol": "SSH"}',
      ]);
      assert.equal(banned.code, 5);
      assert.match(banned.stderr, /proto\.IPFilter\/CheckIP failed: UNKNOWN: .*ip banned/);
    }),
});
