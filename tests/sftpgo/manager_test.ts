/**
 * PluginManager with the Go reference plugins (github.com/sftpgo/sdk, as SFTPGo
 * runs them) from YAML: every RPC of every type through the manager's
 * routing, start-up failures, SFTPGo's combination rules, notifier filters
 * and retry-queue semantics, graceful stop.
 *
 * @module
 */

import assert from "node:assert/strict";
import { TetherError } from "../../mod.ts";
import type { PluginClient } from "../../mod.ts";
import { KeyboardCheck } from "../../src/sftpgo/auth.ts";
import { loadPluginsConfig, validatePluginsConfig } from "../../src/sftpgo/config.ts";
import { PluginManager } from "../../src/sftpgo/manager.ts";
import { type LaneEvent, NotifierLane, Semaphore } from "../../src/sftpgo/retry_queue.ts";
import { checkPluginCombination } from "../../src/sftpgo/routing.ts";
import type { AcquireOptions, PluginState } from "../../src/sftpgo/supervisor.ts";
import { goFixture, ignoreWithoutGo, isAlive, repoRoot } from "../helpers.ts";
import {
  assertAllGone,
  collectingLogger,
  goConfigs,
  loadGoConfigs,
  readJsonLines,
  rejectsWithCode,
  sleep,
  testOptions,
  waitFor,
} from "./manager_support.ts";

const ignore = ignoreWithoutGo();
const ALICE = { username: "alice", status: 1, home_dir: "/srv/alice", permissions: { "/": ["*"] } };

interface RecordedEvent {
  n: number;
  rpc: string;
  failed: boolean;
  event: Record<string, unknown>;
}

Deno.test({
  name: "manager: Go sdk plugins of every type from YAML, every RPC through SFTPGo's routing",
  ignore,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-manager-" });
    const out = `${dir}/events.jsonl`;
    const { logger, records } = collectingLogger();
    const configs = await loadGoConfigs();
    configs[2].args = [...configs[2].args, "-out", out];
    const manager = new PluginManager(configs, testOptions(logger));
    let pids: (number | undefined)[] = [];
    try {
      await manager.start();
      const status = manager.status();
      pids = status.map((s) => s.pid);
      assert.deepEqual(status.map((s) => [s.name, s.state, s.active]), [
        ["auth#0", "running", true],
        ["auth#1", "running", true],
        ["notifier#2", "running", true],
        ["kms#3", "running", true],
        ["ipfilter#4", "running", false],
        ["ipfilter#5", "running", true],
        ["eventsearcher#6", "running", true],
      ]);
      assert.equal(new Set(pids).size, 7, "seven distinct processes");
      const loggedBy = (message: string) =>
        records.filter((r) => r.message === message).map((r) => r.fields.plugin as string);

      // auth: the first plugin whose scope has the bit, no fallthrough.
      assert.equal(manager.auth.scope, 15);
      assert.equal(manager.auth.pluginFor("password"), "auth#0");
      assert.equal(manager.auth.pluginFor("publicKey"), "auth#0");
      assert.equal(manager.auth.pluginFor("keyboardInteractive"), "auth#1");
      assert.equal(manager.auth.pluginFor("tlsCertificate"), "auth#1");
      const base = { ip: "198.51.100.7", protocol: "SSH" };
      assert.deepEqual(
        (await manager.auth.checkUserAndPass({ ...base, username: "alice", password: "wonderland" })).user,
        ALICE,
      );
      const refused = await rejectsWithCode(
        manager.auth.checkUserAndPass({ ...base, username: "alice", password: "nope" }),
        "rpc",
      );
      assert.match(refused.message, /invalid credentials/);
      assert.equal(
        (await manager.auth.checkUserAndPass({ ...base, username: "existing", password: "x" })).user,
        undefined,
      );
      const echo = await manager.auth.checkUserAndPass({
        ...base,
        username: "echo",
        password: "pw",
        user: { username: "echo", status: 0 },
      });
      assert.deepEqual(echo.user, {
        rpc: "CheckUserAndPass",
        username: "echo",
        password: "pw",
        ip: "198.51.100.7",
        protocol: "SSH",
        user: JSON.stringify({ username: "echo", status: 0 }),
      });
      assert.deepEqual(
        (await manager.auth.checkUserAndPublicKey({
          ...base,
          username: "alice",
          pubKey: "ssh-ed25519 AAAA-test",
        })).user,
        ALICE,
      );
      await rejectsWithCode(
        manager.auth.checkUserAndPublicKey({ ...base, username: "alice", pubKey: "x" }),
        "rpc",
      );
      const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
      assert.deepEqual(
        (await manager.auth.checkUserAndTLSCert({
          ...base,
          protocol: "FTP",
          username: "alice",
          tlsCert: cert,
        })).user,
        ALICE,
      );
      assert.deepEqual(
        (await manager.auth.checkUserAndKeyboardInteractive({ ...base, username: "alice" })).user,
        ALICE,
      );
      await rejectsWithCode(
        manager.auth.checkUserAndKeyboardInteractive({ ...base, username: "bob" }),
        "rpc",
      );
      const checked: string[] = [];
      const outcome = await manager.auth.keyboardInteractive({
        username: "alice",
        ip: base.ip,
        requestId: "req-42",
        challenge: ({ questions }) => questions.map((q) => (q === "Password: " ? "wonderland" : "123456")),
        checkPassword: (password) => {
          checked.push(password);
          return password === "wonderland";
        },
      });
      assert.deepEqual(outcome, { authenticated: true, steps: 3 });
      assert.deepEqual(checked, ["wonderland"], "check_password 1: the host checked the password itself");
      const step = await manager.auth.sendKeyboardAuthRequest({ requestId: "r", username: "echo", step: 7 });
      assert.equal(step.checkPassword, KeyboardCheck.Totp);
      await waitFor("auth logs", () => loggedBy("SendKeyboardAuthRequest").length === 4);
      assert.deepEqual(new Set(loggedBy("CheckUserAndPass")), new Set(["auth#0"]));
      assert.deepEqual(new Set(loggedBy("CheckUserAndPublicKey")), new Set(["auth#0"]));
      assert.deepEqual(new Set(loggedBy("CheckUserAndTLSCert")), new Set(["auth#1"]));
      assert.deepEqual(new Set(loggedBy("CheckUserAndKeyboardInteractive")), new Set(["auth#1"]));
      assert.deepEqual(new Set(loggedBy("SendKeyboardAuthRequest")), new Set(["auth#1"]));

      // notifier: fan-out filtered by fs_events, provider_events + provider_objects, log_events.
      const ts = 1767225600123456789n;
      assert.equal(
        manager.notifier.sendFsEvent({
          timestamp: ts,
          action: "upload",
          username: "alice",
          fsPath: "/srv/alice/a.csv",
          virtualPath: "/a.csv",
          fileSize: 9876543210,
          protocol: "SFTP",
          status: 1,
          ip: base.ip,
          sessionId: "s1",
          elapsedMs: 12,
          metadata: { k: "v" },
        }),
        1,
      );
      assert.equal(manager.notifier.sendFsEvent({ action: "download", username: "alice" }), 0);
      assert.equal(
        manager.notifier.sendProviderEvent({
          action: "add",
          objectType: "user",
          objectName: "bob",
          username: "admin",
          objectData: { username: "bob" },
        }),
        1,
      );
      assert.equal(
        manager.notifier.sendProviderEvent({
          action: "add",
          objectType: "folder",
          objectName: "f",
          username: "admin",
        }),
        0,
      );
      assert.equal(
        manager.notifier.sendProviderEvent({
          action: "delete",
          objectType: "user",
          objectName: "bob",
          username: "a",
        }),
        0,
      );
      assert.equal(
        manager.notifier.sendLogEvent({ event: 5, username: "alice", protocol: "SSH", message: "ok" }),
        1,
      );
      assert.equal(manager.notifier.sendLogEvent({ event: 3, username: "alice" }), 0);
      assert.equal(await manager.notifier.flush({ timeoutMs: 10_000 }), true);
      const lines = await readJsonLines<RecordedEvent>(out);
      assert.deepEqual(lines.map((l) => [l.n, l.rpc, l.failed]), [[1, "fs", false], [2, "provider", false], [
        3,
        "log",
        false,
      ]]);
      assert.equal(lines[0].event.timestamp, String(ts));
      assert.equal(lines[0].event.file_size, "9876543210");
      assert.deepEqual(lines[0].event.metadata, { k: "v" });
      assert.equal(lines[1].event.object_data, JSON.stringify({ username: "bob" }));
      assert.equal(lines[2].event.event, 5);

      // kms: by scheme and by encrypted status.
      assert.deepEqual(manager.kmsPlugins, [{
        name: "kms#3",
        scheme: "hashivault",
        encryptedStatus: "VaultTransit",
      }]);
      const url = "tether://kms/keys/two";
      const sealed = await manager.kms("hashivault").encrypt({ payload: "plain", url });
      assert.deepEqual(sealed, { payload: "nialp|enc", key: `k1|ad=|url=${url}`, mode: 1 });
      assert.equal(await manager.kmsByStatus("VaultTransit").decrypt({ ...sealed, url }), "plain");
      const sealed2 = await manager.kms("hashivault").encrypt({
        payload: "s3cret",
        additionalData: "alice",
        url,
        masterKey: "mk",
      });
      assert.equal(sealed2.mode, 2);
      assert.equal(
        await manager.kms("hashivault").decrypt({
          ...sealed2,
          additionalData: "alice",
          url,
          masterKey: "mk",
        }),
        "s3cret",
      );
      const mismatch = await rejectsWithCode(
        manager.kms("hashivault").decrypt({ ...sealed2, additionalData: "mallory", url, masterKey: "mk" }),
        "rpc",
      );
      assert.match(mismatch.message, /key mismatch/);
      assert.throws(
        () => manager.kms("awskms"),
        (e: TetherError) => e.code === "config" && /hashivault/.test(e.message),
      );
      assert.throws(() => manager.kmsByStatus("AWS"), (e: TetherError) => e.code === "config");

      // ipfilter: the last one defined decides; an error means deny.
      assert.equal(manager.ipFilter.plugin, "ipfilter#5");
      assert.deepEqual(await manager.ipFilter.checkIP("198.51.100.7", "SSH"), {
        allowed: true,
        plugin: "ipfilter#5",
      });
      assert.deepEqual(await manager.ipFilter.checkIP("::ffff:10.9.8.7", "FTP"), {
        allowed: false,
        plugin: "ipfilter#5",
        reason: "ip banned",
      });
      await manager.ipFilter.reload();
      await manager.ipFilter.reload();
      assert.equal((await manager.ipFilter.checkIP("0.0.0.0", "SSH")).reason, "reloads=2");
      assert.equal((await manager.ipFilter.checkIP("0.0.0.1", "DAV")).reason, "echo ip=0.0.0.1 protocol=DAV");
      await waitFor(
        "ipfilter logs",
        () => loggedBy("CheckIP").length === 4 && loggedBy("Reload").length === 2,
      );
      assert.deepEqual(new Set([...loggedBy("CheckIP"), ...loggedBy("Reload")]), new Set(["ipfilter#5"]));

      // eventsearcher: at most one; every search relayed with its filter.
      const fs = await manager.eventSearcher.searchFsEvents({
        username: "alice",
        actions: ["upload", "rename"],
        startTimestamp: ts,
        limit: 10,
      });
      const fsData = fs.data as { kind: string; filter: Record<string, unknown> };
      assert.equal(fsData.kind, "fs");
      assert.equal(fsData.filter.username, "alice");
      assert.deepEqual(fsData.filter.actions, ["upload", "rename"]);
      assert.equal(fsData.filter.start_timestamp, String(ts));
      const provider = await manager.eventSearcher.searchProviderEvents({
        objectTypes: ["user"],
        omitObjectData: true,
      });
      assert.equal((provider.data as { kind: string }).kind, "provider");
      assert.equal(
        (provider.data as { filter: { omit_object_data: boolean } }).filter.omit_object_data,
        true,
      );
      const log = await manager.eventSearcher.searchLogEvents({ events: [1, 5] });
      assert.deepEqual((log.data as { filter: { events: number[] } }).filter.events, [1, 5]);
      const failed = await rejectsWithCode(manager.eventSearcher.searchFsEvents({ username: "fail" }), "rpc");
      assert.match(failed.message, /search failed/);

      // No metadata plugin in this config.
      await rejectsWithCode(manager.metadata.getModificationTime("s", "/a"), "config");
      assert.ok(manager.status().every((s) => s.state === "running" && s.restarts === 0));
      assert.deepEqual(
        manager.status().filter((s) => s.type === "notifier").map((s) => [s.delivered, s.queued, s.dropped]),
        [[3, 0, 0]],
      );
    } finally {
      const report = await manager.stop();
      assert.equal(report.flushed, true);
      assert.deepEqual([report.delivered, report.left, report.dropped], [3, 0, 0]);
      assert.deepEqual(report.plugins.map((p) => p.name), manager.status().map((s) => s.name));
      await assertAllGone(pids);
      await Deno.remove(dir, { recursive: true });
    }
    // Stopped: every accessor refuses new work with "closed".
    await rejectsWithCode(
      manager.auth.checkUserAndPass({ username: "a", password: "b", ip: "", protocol: "" }),
      "closed",
    );
    await rejectsWithCode(manager.ipFilter.checkIP("1.2.3.4", "SSH"), "closed");
    await rejectsWithCode(manager.kms("hashivault").encrypt({ payload: "x", url: "u" }), "closed");
    await rejectsWithCode(manager.eventSearcher.searchLogEvents(), "closed");
    assert.throws(() => manager.notifier.sendLogEvent({ event: 5 }), (e: TetherError) => e.code === "closed");
    assert.ok(manager.status().every((s) => s.state === "stopped" && s.pid === undefined));
    assert.deepEqual(await manager.stop(), await manager.stop(), "stop() is idempotent");
  },
});

Deno.test({
  name: "manager: a start-up failure names the plugin and why, and stops the others",
  ignore,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-manager-" });
    const script = `${dir}/broken-plugin.sh`;
    await Deno.writeTextFile(
      script,
      "#!/bin/sh\nenv | grep -v -e '^PWD=' -e '^SHLVL=' -e '^_=' -e '^PLUGIN_' -e '^TETHER_PLUGIN' | sort >&2\necho 'cannot read /etc/broken-plugin.conf: no such file' >&2\nexit 3\n",
    );
    await Deno.chmod(script, 0o755);
    const configs = await goConfigs(`
plugins:
  - { type: ipfilter, cmd: tests/interop/go/bin/sftpgo-plugins, args: [ipfilter] }
  - type: auth
    cmd: ${script}
    auth_options: { scope: 1 }
    env_vars: [TZ, LANG]
`);
    const { logger } = collectingLogger();
    const manager = new PluginManager(
      configs,
      testOptions(logger, { hostEnv: { BROKEN_PLUGIN_TOKEN: "t0k", OTHER_SECRET: "x", TZ: "UTC" } }),
    );
    const started = Date.now();
    const error = await rejectsWithCode(manager.start(), "exited");
    assert.ok(Date.now() - started < 10_000);
    assert.equal(error.plugin, "auth#1");
    assert.match(
      error.message,
      /^plugin auth#1 \(.*broken-plugin\.sh, plugins\[1\] at test\.yaml:4\) failed to start/,
    );
    assert.match(error.message, /exit code 3/);
    assert.match(error.message, /cannot read \/etc\/broken-plugin\.conf/);
    assert.match(error.message, /The other plugins were stopped/);
    // SFTPGo's environment: env_prefix "" selects BROKEN_PLUGIN_*, env_vars adds TZ and LANG (empty), nothing else.
    assert.match(error.message, /BROKEN_PLUGIN_TOKEN=t0k/);
    assert.match(error.message, /TZ=UTC/);
    assert.match(error.message, /LANG=\n/);
    assert.doesNotMatch(error.message, /OTHER_SECRET/);
    assert.match(error.message, /SFTPGO_PLUGIN_AUTH=d1ed507d/);
    assert.ok(manager.status().every((s) => s.state === "stopped"));
    await rejectsWithCode(manager.ipFilter.checkIP("1.2.3.4", "SSH"), "closed");
    await rejectsWithCode(manager.start(), "closed");

    // A command that does not exist.
    const missing = new PluginManager(
      await goConfigs(`[{ type: eventsearcher, cmd: ${dir}/no-such-plugin }]`),
      testOptions(logger),
    );
    const notFound = await rejectsWithCode(missing.start(), "config");
    assert.match(notFound.message, /eventsearcher#0 .*failed to start: .*command not found/);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "manager: sha256sum is checked before the plugin runs",
  ignore,
  fn: async () => {
    const binary = await goFixture("sftpgo-plugins");
    const digest = Array.from(
      new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(binary))),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    const { logger } = collectingLogger();
    const good = new PluginManager(
      await goConfigs(`[{ type: ipfilter, cmd: ${binary}, args: [ipfilter], sha256sum: ${digest} }]`),
      testOptions(logger),
    );
    await good.start();
    try {
      assert.equal((await good.ipFilter.checkIP("10.0.0.1", "SSH")).allowed, false);
      // The verified private copy runs, not the configured path.
      const cmdline = await Deno.readTextFile(`/proc/${good.status()[0].pid}/cmdline`);
      assert.ok(!cmdline.startsWith(binary), cmdline);
    } finally {
      await good.stop();
    }
    const bad = new PluginManager(
      await goConfigs(
        `[{ type: ipfilter, cmd: ${binary}, args: [ipfilter], sha256sum: "${"0".repeat(64)}" }]`,
      ),
      testOptions(logger),
    );
    const error = await rejectsWithCode(bad.start(), "checksum");
    assert.match(error.message, /^plugin ipfilter#0 .* failed to start/);
  },
});

Deno.test("manager: SFTPGo's combination rules are enforced for hand-built configs too", () => {
  const source = (index: number) => ({ file: "x.yaml", line: index + 2, column: 3, index });
  const kms = (index: number, scheme: string, status: string) => ({
    type: "kms" as const,
    cmd: "/k",
    source: source(index),
    kmsOptions: { scheme: scheme as "awskms", encryptedStatus: status as "AWS" },
  });
  assert.throws(
    () => checkPluginCombination([kms(0, "awskms", "AWS"), kms(1, "awskms", "GCP"), kms(2, "gcpkms", "GCP")]),
    (e: TetherError) =>
      e.code === "config" &&
      /kms#1 \(plugins\[1\] at x\.yaml:3\): kms scheme "awskms" is already registered by kms#0/.test(
        e.message,
      ) &&
      /kms#2 .*encrypted_status "GCP" is already registered by kms#1/.test(e.message),
  );
  assert.throws(
    () =>
      checkPluginCombination([
        { type: "eventsearcher", cmd: "/a", source: source(0) },
        { type: "eventsearcher", cmd: "/b", source: source(1) },
      ]),
    /at most one eventsearcher plugin/,
  );
  assert.throws(
    () =>
      checkPluginCombination([{ type: "auth", cmd: "/a", source: source(0), authOptions: { scope: 16 } }]),
    /scope must be 1\.\.15/,
  );
  assert.throws(
    () =>
      checkPluginCombination([{
        type: "notifier",
        cmd: "/n",
        source: source(0),
        notifierOptions: {
          fsEvents: [],
          providerEvents: ["add"],
          providerObjects: [],
          logEvents: [],
          retryMaxTime: 0,
          retryQueueMaxSize: 0,
        },
      }]),
    /must subscribe to something/,
  );
  // The manager's constructor runs the same check.
  const configs = validatePluginsConfig([{ type: "eventsearcher", cmd: "/a" }]);
  assert.throws(
    () => new PluginManager([configs[0], { ...configs[0], source: { ...configs[0].source, index: 1 } }]),
    /at most one eventsearcher/,
  );
});

Deno.test({
  name: "manager: routing errors are typed: no plugin for a method, not started, no ipfilter",
  ignore,
  fn: async () => {
    const { logger } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(
        `[{ type: auth, cmd: tests/interop/go/bin/sftpgo-plugins, args: [auth], auth_options: { scope: 1 } }]`,
      ),
      testOptions(logger),
    );
    const request = { username: "alice", password: "wonderland", ip: "1.2.3.4", protocol: "SSH" };
    const early = await rejectsWithCode(manager.auth.checkUserAndPass(request), "closed");
    assert.match(early.message, /not started; await manager\.start\(\) first/);
    await manager.start();
    try {
      assert.equal((await manager.auth.checkUserAndPass(request)).user?.username, "alice");
      const none = await rejectsWithCode(
        manager.auth.checkUserAndTLSCert({ username: "alice", tlsCert: "x", ip: "1.2.3.4", protocol: "FTP" }),
        "config",
      );
      assert.match(none.message, /no auth plugin handles TLS certificate logins: none has bit 8/);
      await rejectsWithCode(
        manager.auth.keyboardInteractive({ username: "a", ip: "", challenge: () => [] }),
        "config",
      );
      assert.deepEqual(await manager.ipFilter.checkIP("10.0.0.1", "SSH"), {
        allowed: true,
        reason: "no ipfilter plugin is configured",
      });
      await manager.ipFilter.reload();
      assert.equal(manager.notifier.sendFsEvent({ action: "upload", username: "a" }), 0);
      await rejectsWithCode(manager.eventSearcher.searchFsEvents(), "config");
      assert.throws(() => manager.kms("awskms"), (e: TetherError) => e.code === "config");
    } finally {
      await manager.stop();
    }
  },
});

Deno.test({
  name: "manager: a refused event is retried in order until the plugin takes it (retry_max_time > 0)",
  ignore,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-manager-" });
    const out = `${dir}/events.jsonl`;
    const { logger, records } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(`
- type: notifier
  cmd: tests/interop/go/bin/sftpgo-plugins
  args: [notifier, -out, ${out}, -fail-first, "3"]
  notifier_options: { log_events: [5], retry_max_time: 30 }
`),
      testOptions(logger, { notifierRetryDelayMs: 20 }),
    );
    await manager.start();
    try {
      for (let i = 1; i <= 5; i++) manager.notifier.sendLogEvent({ event: 5, username: `u${i}` });
      assert.equal(await manager.notifier.flush({ timeoutMs: 10_000 }), true);
      const lines = await readJsonLines<RecordedEvent>(out);
      assert.deepEqual(
        lines.map((l) => `${l.event.username}${l.failed ? "!" : ""}`),
        ["u1!", "u1!", "u1!", "u1", "u2", "u3", "u4", "u5"],
      );
      const [status] = manager.status();
      assert.deepEqual([status.delivered, status.queued, status.dropped], [5, 0, 0]);
      assert.ok(records.some((r) => r.level === "warn" && /kept and retried in order/.test(r.message)));
    } finally {
      await manager.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "manager: retry_max_time 0 drops a refused event, counted and logged",
  ignore,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-manager-" });
    const out = `${dir}/events.jsonl`;
    const { logger, records } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(`
- type: notifier
  cmd: tests/interop/go/bin/sftpgo-plugins
  args: [notifier, -out, ${out}, -fail-first, "2"]
  notifier_options: { fs_events: [upload] }
`),
      testOptions(logger),
    );
    await manager.start();
    try {
      for (let i = 1; i <= 4; i++) manager.notifier.sendFsEvent({ action: "upload", username: `u${i}` });
      assert.equal(await manager.notifier.flush({ timeoutMs: 10_000 }), true);
      const lines = await readJsonLines<RecordedEvent>(out);
      assert.deepEqual(lines.map((l) => `${l.event.username}${l.failed ? "!" : ""}`), [
        "u1!",
        "u2!",
        "u3",
        "u4",
      ]);
      const [status] = manager.status();
      assert.deepEqual([status.delivered, status.queued, status.dropped], [2, 0, 2]);
      const report = await manager.stop();
      assert.deepEqual([report.delivered, report.left, report.dropped], [2, 0, 2]);
      assert.ok(
        records.some((r) =>
          r.level === "warn" && /dropped \d+ notifier event\(s\): .*retry_max_time is 0/.test(r.message)
        ),
      );
    } finally {
      await manager.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "manager: while a notifier is down, retry_queue_max_size and retry_max_time decide what waits; the rest is delivered in order",
  ignore,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-manager-" });
    const out = `${dir}/events.jsonl`;
    const { logger } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(`
- type: notifier
  cmd: tests/interop/go/bin/sftpgo-plugins
  args: [notifier, -out, ${out}]
  notifier_options: { fs_events: [upload], retry_max_time: 60, retry_queue_max_size: 5 }
  tether: { restart: { initial_backoff_ms: 1500 } }
`),
      testOptions(logger),
    );
    await manager.start();
    try {
      const pid = manager.status()[0].pid!;
      Deno.kill(pid, "SIGKILL");
      await waitFor("the exit to be noticed", () => manager.status()[0].state === "restarting", 2000);
      let taken = 0;
      // Older than retry_max_time: refused although the queue has room.
      taken += manager.notifier.sendFsEvent({
        action: "upload",
        username: "old",
        timestamp: new Date(Date.now() - 3600_000),
      });
      for (let i = 1; i <= 12; i++) {
        taken += manager.notifier.sendFsEvent({ action: "upload", username: `u${i}` });
      }
      assert.equal(taken, 5);
      let status = manager.status()[0];
      assert.deepEqual([status.state, status.queued, status.dropped], ["restarting", 5, 8]);
      assert.equal(await manager.notifier.flush({ timeoutMs: 10_000 }), true);
      status = manager.status()[0];
      assert.deepEqual([status.state, status.restarts, status.delivered, status.dropped], [
        "running",
        1,
        5,
        8,
      ]);
      assert.notEqual(status.pid, pid);
      assert.ok(!isAlive(pid));
      const lines = await readJsonLines<RecordedEvent>(out);
      assert.deepEqual(lines.map((l) => l.event.username), ["u1", "u2", "u3", "u4", "u5"]);
    } finally {
      await manager.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "manager: stop() flushes within its deadline and reports what was left",
  ignore,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "tether-manager-" });
    const out = `${dir}/events.jsonl`;
    const { logger, records } = collectingLogger();
    const manager = new PluginManager(
      await goConfigs(`
- type: notifier
  cmd: tests/interop/go/bin/sftpgo-plugins
  args: [notifier, -out, ${out}, -delay-ms, "50"]
  notifier_options: { log_events: [1], retry_max_time: 60 }
`),
      testOptions(logger),
    );
    await manager.start();
    const pid = manager.status()[0].pid;
    for (let i = 0; i < 40; i++) manager.notifier.sendLogEvent({ event: 1, username: `u${i}` });
    const report = await manager.stop({ timeoutMs: 300 });
    assert.equal(report.flushed, false);
    assert.ok(report.delivered >= 2 && report.delivered < 40, `delivered ${report.delivered}`);
    assert.equal(report.delivered + report.left, 40);
    assert.equal(report.dropped, 0);
    assert.ok(report.durationMs < 5000, `stop took ${report.durationMs} ms`);
    assert.ok(
      records.some((r) => r.level === "warn" && /still queued when the plugin was stopped/.test(r.message)),
    );
    await assertAllGone([pid]);
    // Lines written never exceed what the plugin was sent; the last one may have been cut off by the kill.
    assert.ok((await readJsonLines(out)).length <= report.delivered + 1);
    await Deno.remove(dir, { recursive: true });
  },
});

// ----------------------------------------------------------------------------------------------------------------
// The delivery lane on its own, with a fake plugin.

class FakeSupervisor {
  state: PluginState = "running";
  readonly client = {} as PluginClient;
  acquire(_options?: AcquireOptions): Promise<PluginClient> {
    return Promise.resolve(this.client);
  }
}

Deno.test("lane: one send at a time per plugin, in order; the semaphore bounds sends across plugins", async () => {
  const semaphore = new Semaphore(2);
  let inFlight = 0;
  let maxInFlight = 0;
  const seen = new Map<string, string[]>();
  const lanes = ["a", "b", "c", "d"].map((name) => {
    const perLane = { now: 0, max: 0 };
    seen.set(name, []);
    const lane = new NotifierLane({
      name,
      supervisor: new FakeSupervisor(),
      options: { retryMaxTime: 0, retryQueueMaxSize: 0 },
      semaphore,
      callTimeoutMs: 1000,
      logger: collectingLogger().logger,
      send: async (_client, item) => {
        inFlight++;
        perLane.now++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        perLane.max = Math.max(perLane.max, perLane.now);
        await sleep(1);
        seen.get(name)!.push((item.event as { username: string }).username);
        inFlight--;
        perLane.now--;
        assert.equal(perLane.max, 1, "one send at a time per lane");
      },
    });
    return lane;
  });
  const event = (i: number): LaneEvent => ({
    kind: "log",
    event: { event: 5, username: `e${i}` },
    timestampNs: 0n,
  });
  for (let i = 0; i < 30; i++) for (const lane of lanes) assert.ok(lane.offer(event(i)));
  assert.ok((await Promise.all(lanes.map((lane) => lane.idle(5000)))).every(Boolean));
  assert.equal(maxInFlight, 2);
  for (const names of seen.values()) assert.deepEqual(names, Array.from({ length: 30 }, (_, i) => `e${i}`));
  for (const lane of lanes) {
    assert.deepEqual(lane.counters, { delivered: 30, queued: 0, dropped: 0, failedSends: 0 });
    assert.equal(await lane.stop(), 0);
  }
});

Deno.test("lane: a failed plugin drops what is queued, and later events, counted", async () => {
  const supervisor = new FakeSupervisor();
  supervisor.state = "restarting";
  let fail: (error: TetherError) => void = () => {};
  supervisor.acquire = () => new Promise((_, reject) => fail = reject);
  const lane = new NotifierLane({
    name: "n",
    supervisor,
    options: { retryMaxTime: 60, retryQueueMaxSize: 0 },
    semaphore: new Semaphore(1),
    callTimeoutMs: 1000,
    logger: collectingLogger().logger,
    send: () => Promise.resolve(),
  });
  const event: LaneEvent = { kind: "log", event: { event: 1 }, timestampNs: BigInt(Date.now()) * 1_000_000n };
  assert.ok(lane.offer(event) && lane.offer(event) && lane.offer(event));
  await sleep(10);
  supervisor.state = "failed";
  fail(new TetherError("exited", "gave up"));
  assert.equal(await lane.idle(1000), true);
  assert.equal(lane.offer(event), false);
  assert.deepEqual(lane.counters, { delivered: 0, queued: 0, dropped: 4, failedSends: 0 });
  await lane.stop();
});

Deno.test("examples/plugins.yaml loads cleanly, and every sha256sum in it matches its file", async () => {
  const configs = await loadPluginsConfig(`${repoRoot}/examples/plugins.yaml`);
  assert.deepEqual(configs.warnings.map((w) => w.text), []);
  assert.deepEqual(configs.map((c) => c.type).sort(), [
    "auth",
    "eventsearcher",
    "ipfilter",
    "kms",
    "notifier",
  ]);
  for (const config of configs) {
    const path = config.cmd.startsWith("/") ? config.cmd : `${repoRoot}/${config.cmd}`;
    assert.ok((await Deno.stat(path)).isFile, `${config.cmd} exists`);
    if (config.sha256sum) {
      const digest = Array.from(
        new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(path))),
        (b) => b.toString(16).padStart(2, "0"),
      ).join("");
      assert.equal(config.sha256sum, digest, `sha256sum of ${config.cmd}`);
    }
  }
  new PluginManager(configs, { hostEnv: {} }); // a valid combination
});

Deno.test("examples/sftpgo_demo.ts runs every plugin type end to end", async () => {
  const { runSftpgoDemo } = await import("../../examples/sftpgo_demo.ts");
  const lines: string[] = [];
  await runSftpgoDemo({ print: (line) => lines.push(line) });
  const transcript = lines.join("\n");
  for (
    const expected of [
      /started 5 plugins/,
      /auth alice, password +-> ok: user alice/,
      /auth alice, wrong password +-> refused: invalid credentials/,
      /auth alice, public key +-> ok/,
      /auth alice, keyboard-interactive +-> ok after 2 steps/,
      /ipfilter 203\.0\.113\.7 +-> allowed/,
      /ipfilter 10\.1\.2\.3 +-> denied/,
      /kms decrypt .* -> "s3cret-s3-key", round trip ok/,
      /kms decrypt with other data +-> refused/,
      /3 of 4 subscribed .* events\.jsonl has 7 lines/,
      /eventsearcher fs events of alice +-> 2 found: upload \/in\/report\.csv, rename/,
      /eventsearcher failed logins +-> 1 found/,
      /SIGKILL notifier#1 .* -> restarted as pid \d+ .* delete delivered \(1 found\), 0 dropped/,
      /verified copy started; 10\.9\.9\.9 denied/,
      /one line appended +-> refused before it ran \(checksum\)/,
      /stop +-> queues flushed; notifier delivered 8, left 0, dropped 0/,
    ]
  ) assert.match(transcript, expected);
  assert.doesNotMatch(transcript, /\[sandbox\]/, "no plugin needed more than the YAML grants");
});

Deno.test({
  name:
    "manager: tether.max_receive_message_bytes reaches the plugin's client: a larger answer fails its call " +
    "with RESOURCE_EXHAUSTED naming the plugin, and the plugin keeps running",
  ignore,
  fn: async () => {
    const configs = await goConfigs(`
plugins:
  - type: eventsearcher
    cmd: tests/interop/go/bin/sftpgo-plugins
    args: [eventsearcher]
    tether: { max_receive_message_bytes: 64 }
`);
    const { logger } = collectingLogger();
    const manager = new PluginManager(configs, testOptions(logger));
    await manager.start();
    try {
      const refused = await rejectsWithCode(
        manager.eventSearcher.searchFsEvents({ username: "alice", actions: ["upload", "rename"] }),
        "rpc",
      );
      assert.equal(refused.status, 8);
      assert.match(
        refused.message,
        /RESOURCE_EXHAUSTED: Received message larger than max \(\d+ vs\. 64\); raise maxReceiveMessageBytes for plugin eventsearcher#0/,
      );
      assert.deepEqual(manager.status().map((s) => [s.state, s.restarts]), [["running", 0]]);
    } finally {
      await manager.stop();
    }
  },
});

Deno.test({
  name:
    "manager: tether.memory_trim_idle_ms reaches a deno plugin's launch (0: no DENO_USR2_MEMORY_TRIM, never " +
    "signalled; 150: the variable, and a trim once idle); still answering",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const { parsePluginsConfig } = await import("../../src/sftpgo/config.ts");
    const { findTrimTarget } = await import("../../src/memory_trim.ts");
    const configs = parsePluginsConfig(
      `
plugins:
  - type: ipfilter
    cmd: tests/fixtures/sftpgo/ipfilter.ts
    tether: { memory_trim_idle_ms: 0, health_check_interval_ms: 0 }
  - type: ipfilter
    cmd: tests/fixtures/sftpgo/ipfilter.ts
    tether: { memory_trim_idle_ms: 150, health_check_interval_ms: 0 }
`,
      "test.yaml",
    );
    const { logger, records } = collectingLogger();
    const manager = new PluginManager(configs, testOptions(logger, { denoConfig: `${repoRoot}/deno.json` }));
    await manager.start();
    try {
      const [off, on] = manager.status().map((s) => {
        const target = findTrimTarget(s.pid!, Deno.execPath(), ["/usr/bin/bwrap"]);
        assert.ok(target, `the Deno process of ${s.name}`);
        return { name: s.name, pid: target.pid };
      });
      const environ = (pid: number) => Deno.readTextFileSync(`/proc/${pid}/environ`).split("\0");
      assert.ok(!environ(off.pid).some((entry) => entry.startsWith("DENO_USR2_MEMORY_TRIM=")));
      assert.ok(environ(on.pid).includes("DENO_USR2_MEMORY_TRIM=1"));
      const trims = (name: string) =>
        records.filter((r) => r.message === "plugin idle: memory trimmed" && r.fields?.plugin === name);
      await waitFor(
        "a trim of the plugin with memory_trim_idle_ms 150",
        () => trims(on.name).length > 0,
        20_000,
      );
      await sleep(600);
      assert.deepEqual(trims(off.name), []);
      // Both still answer (the router asks each in turn): without the variable a SIGUSR2 would have ended the first.
      assert.deepEqual(await manager.ipFilter.checkIP("198.51.100.7", "SSH"), {
        allowed: true,
        plugin: on.name,
      });
      assert.deepEqual(manager.status().map((s) => [s.state, s.restarts]), [["running", 0], ["running", 0]]);
    } finally {
      await manager.stop();
    }
  },
});
