/**
 * Fail-closed regressions found in review: a path the host may not resolve is
 * refused rather than judged by its name (module graph and grant checks);
 * `true` for a list-only permission kind is refused by the one rule
 * (`validatePermissionEntries`) in every layer that takes grants.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  AUDIT_MAX_BACKLOG_BYTES,
  AuditReader,
  type AuditTamper,
  type PermissionEvent,
} from "../../src/audit.ts";
import { checkGrantLinks, checkModuleGraph } from "../../src/graph.ts";
import { prepareLaunch } from "../../src/launch.ts";
import { SETPRIV } from "../../src/lifeline.ts";
import { PluginClient, TetherError } from "../../mod.ts";
import { packPlugin } from "../../src/pack/pack.ts";
import { PermissionPolicy, validatePermissionEntries } from "../../src/permissions.ts";
import { parsePluginsConfig } from "../../src/sftpgo/config.ts";
import { kvHandshake } from "../../examples/kv/handshake.ts";
import { repoRoot } from "../helpers.ts";
import { namespacesAvailable } from "./hostile_suite/world.ts";
import { eventually, Recorder, shortTempDir, tetherDirs } from "./support.ts";

const deno = Deno.execPath();
const narrowHost = `${repoRoot}/tests/fixtures/sandbox/narrow_host.ts`;
const bwrapMissing = await namespacesAvailable();

interface HostOutcome {
  ok: boolean;
  code?: string;
  message?: string;
  messages: string[];
}

/** Runs the narrow host with `--allow-read` on exactly `readable` (plus the usual run/net/write flags). */
async function narrowRun(
  readable: string[],
  base: string,
  config: Record<string, unknown>,
): Promise<HostOutcome> {
  const out = await new Deno.Command(deno, {
    args: [
      "run",
      "--no-prompt",
      "--config",
      `${repoRoot}/deno.json`,
      "--cached-only",
      `--allow-read=${readable.join(",")}`,
      `--allow-write=${base}`,
      "--allow-net",
      `--allow-run=${deno},${SETPRIV},/usr/bin/prlimit,/usr/bin/bwrap`,
      "--ignore-env=GRPC_*",
      narrowHost,
      JSON.stringify({ ...config, base }),
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const last = stdout.split("\n").pop() ?? "";
  assert.ok(
    last.startsWith("{"),
    `the host printed no result:\n${stdout}\n${new TextDecoder().decode(out.stderr)}`,
  );
  return JSON.parse(last);
}

for (const isolation of ["namespaces", "deno-only"] as const) {
  Deno.test({
    name: `fail closed (${isolation}): a grant or module path the host cannot resolve refuses the launch`,
    ignore: isolation === "namespaces" && bwrapMissing !== undefined,
    fn: async () => {
      const dir = await shortTempDir("tfc");
      try {
        const base = `${dir}/s`;
        const tree = `${dir}/tree`;
        const outside = `${dir}/outside`;
        const granted = `${dir}/granted`;
        for (const d of [base, tree, outside, granted]) await Deno.mkdir(d);
        await Deno.writeTextFile(`${outside}/secret.txt`, "secret");
        // A grant that is itself a symlink, and a grant holding one: both lead to `outside`, which the host
        // may not read, so it cannot see where they lead.
        await Deno.symlink(outside, `${dir}/glink`);
        await Deno.symlink(outside, `${granted}/link`);
        const cases = [
          { grant: `${dir}/glink`, module: `${dir}/glink/secret.txt` },
          { grant: granted, module: `${granted}/link/secret.txt` },
        ];
        for (const { grant, module } of cases) {
          const entry = `${tree}/plugin_${cases.findIndex((c) => c.grant === grant)}.ts`;
          await Deno.writeTextFile(
            entry,
            `import secret from ${JSON.stringify(module)} with { type: "text" };\nconsole.log(secret);\n`,
          );
          const result = await narrowRun([base, tree], base, { entry, read: [grant], isolation });
          assert.equal(result.ok, false, `launched: ${JSON.stringify(result)}`);
          assert.equal(result.code, "permission", JSON.stringify(result));
          assert.ok(
            result.message!.includes(
              `the host needs --allow-read on ${grant} to check the plugin's module graph`,
            ),
            result.message!,
          );
          assert.ok(result.message!.includes(`run the host with --allow-read=${grant}`), result.message!);
          // Refused before anything was spawned.
          assert.ok(!result.messages.includes("starting plugin"), JSON.stringify(result.messages));
          assert.deepEqual(tetherDirs(base), []);
        }
        // The control: with read access to the grant the host sees where it leads and refuses the module as
        // outside the tree and grants (a config error, not a permission one).
        const control = await narrowRun([base, tree, `${dir}/glink`, granted, outside], base, {
          entry: `${tree}/plugin_1.ts`,
          read: [granted],
          isolation,
        });
        assert.equal(control.ok, false);
        assert.equal(control.code, "config", JSON.stringify(control));
        assert.match(control.message!, /really .*outside\/secret\.txt.* is outside the plugin's own tree/);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

const LIST_KINDS = ["read", "write", "net", "env", "import"] as const;

Deno.test("true grants: refused for read/write/net/env/import by the one rule, naming the field and the fix", () => {
  for (const kind of LIST_KINDS) {
    for (const set of ["permissions", "permissions (deny)"]) {
      assert.throws(
        () => validatePermissionEntries({ [kind]: true } as never, `plugin kv ${set}`),
        (error: unknown) => {
          assert.ok(error instanceof TetherError);
          assert.equal(error.code, "config");
          assert.ok(error.message.startsWith(`plugin kv ${set}.${kind}: true is not supported for ${kind}`));
          assert.match(error.message, /list the entries instead, e\.g\. \w+: \[/);
          return true;
        },
      );
    }
    // A string where a list belongs would be split by nothing and granted as a whole: refused too.
    assert.throws(
      () => validatePermissionEntries({ [kind]: "/srv" } as never, "plugin kv permissions"),
      new RegExp(`plugin kv permissions\\.${kind}: expected a list of strings`),
    );
    // false means none.
    validatePermissionEntries({ [kind]: false } as never, "plugin kv permissions");
  }
  // sys, run and ffi take true, and a deny set's true reaches Deno as the unscoped --deny flag.
  validatePermissionEntries({ sys: true, run: false }, "plugin kv permissions");
  const policy = new PermissionPolicy({
    grants: { sys: ["hostname"] },
    deny: { sys: true },
    protocol: { env: [], sockets: [] },
  });
  assert.ok(policy.flags().includes("--deny-sys"), policy.flags().join(" "));
  assert.equal(policy.decide("sys", "hostname"), false);
});

Deno.test("true grants: PluginClient, the SFTPGo config and tether pack all refuse net: true", async () => {
  const dir = await shortTempDir("tft");
  try {
    const client = new PluginClient({
      cmd: `${repoRoot}/examples/kv/plugin.ts`,
      name: "kv-true",
      handshake: kvHandshake,
      unixSocketDir: dir,
      permissions: { net: true } as never,
    });
    await assert.rejects(client.start(), (error: unknown) => {
      assert.ok(error instanceof TetherError);
      assert.equal(error.code, "config");
      assert.match(error.message, /plugin kv-true permissions\.net: true is not supported for net/);
      return true;
    });
    await client.kill();
    assert.deepEqual(tetherDirs(dir), []);

    assert.throws(
      () => parsePluginsConfig("- {type: ipfilter, cmd: /opt/p.ts, tether: {permissions: {net: true}}}"),
      /permissions\.net/,
    );
    assert.throws(
      () => parsePluginsConfig("- {type: ipfilter, cmd: /opt/p.ts, tether: {permissions: {read: true}}}"),
      /permissions\.read/,
    );

    await assert.rejects(
      packPlugin({
        entry: `${repoRoot}/examples/kv/plugin.ts`,
        output: `${dir}/kv.packed`,
        cookieKey: "KV_PLUGIN",
        permissions: { read: true } as never,
      }),
      /plugin kv\.packed permissions\.read: true is not supported for read/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The deno process at or below `pid` (prlimit execs it; bwrap runs it as a child). */
function denoBelow(pid: number): number {
  const queue = [pid];
  while (queue.length > 0) {
    const next = queue.shift()!;
    if (Deno.readTextFileSync(`/proc/${next}/comm`).trim() === "deno") return next;
    for (const task of Deno.readDirSync(`/proc/${next}/task`)) {
      const children = Deno.readTextFileSync(`/proc/${next}/task/${task.name}/children`).trim();
      if (children) queue.push(...children.split(" ").map(Number));
    }
  }
  throw new Error(`no deno process below ${pid}`);
}

Deno.test("V8 flags: a deno plugin's process gets one --v8-flags with the small young generation and the heap cap", async () => {
  for (
    const [heapMiB, expected] of [
      [undefined, "--v8-flags=--max-semi-space-size=1,--max-old-space-size=512"],
      [0, "--v8-flags=--max-semi-space-size=1"],
    ] as const
  ) {
    const client = new PluginClient({
      cmd: `${repoRoot}/examples/kv/plugin.ts`,
      denoConfig: `${repoRoot}/deno.json`,
      name: "kv-v8",
      handshake: kvHandshake,
      limits: heapMiB === undefined ? undefined : { heapMiB },
      logger: { log: () => {} },
    });
    try {
      await client.start();
      const argv = Deno.readTextFileSync(`/proc/${denoBelow(client.pid!)}/cmdline`).split("\0");
      assert.deepEqual(argv.filter((arg) => arg.startsWith("--v8-flags")), [expected], argv.join(" "));
      await client.ping();
    } finally {
      await client.kill();
    }
  }
});

const FLOOD_PLUGIN = `
const n = Number(Deno.args[0]);
for (let i = 0; i < n; i++) { try { Deno.statSync("/nonexistent-flood"); } catch { /* denied */ } }
try { Deno.statSync("/nonexistent-floox"); } catch { /* denied: the last check, same length */ }
`;

/** Runs `n` denied checks (then one more, the marker) in a real Deno process writing its audit to `path`. */
async function flood(dir: string, path: string, n: number): Promise<void> {
  const script = `${dir}/flood.ts`;
  await Deno.writeTextFile(script, FLOOD_PLUGIN);
  const out = await new Deno.Command(deno, {
    args: ["run", "--no-prompt", "--no-config", script, String(n)],
    env: { DENO_AUDIT_PERMISSIONS: path, NO_COLOR: "1" },
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
}

Deno.test("audit flood: the host keeps reading a flood of checks with bounded disk use; every lost line is counted", async () => {
  const dir = await shortTempDir("tfa");
  try {
    const path = `${dir}/audit.jsonl`;
    await Deno.writeFile(path, new Uint8Array());
    const policy = new PermissionPolicy({ protocol: { env: [], sockets: [] } });
    const targets = new Map<string, number>();
    const tampers: AuditTamper[] = [];
    const reader = new AuditReader({
      path,
      policy,
      plugin: "flood",
      pollMs: 1,
      rotateBytes: 64 * 1024,
      onEvent: (event) => targets.set(event.target!, (targets.get(event.target!) ?? 0) + 1),
      onTamper: (tamper) => tampers.push(tamper),
    });
    const n = 100_000;
    reader.start();
    await flood(dir, path, n);
    await reader.stop();
    // Every audit line of this flood has the same length (same permission, same-length value, datetime to the
    // second), so the count is exact: what the host read plus what it counted as lost is every check made.
    const lineBytes = JSON.stringify({
      v: 1,
      datetime: "2026-11-27T16:20:45Z",
      permission: "read",
      value: "/nonexistent-flood",
    }).length + 1;
    const seen = (targets.get("/nonexistent-flood") ?? 0) + (targets.get("/nonexistent-floox") ?? 0);
    assert.equal(reader.lostBytes % lineBytes, 0, `lost ${reader.lostBytes} bytes`);
    assert.equal(seen + reader.lostBytes / lineBytes, n + 1);
    // A lost line is never silent: each loss is reported (as tampering) with its size.
    const reported = tampers.map((t) => /^(\d+) bytes of audit lost/.exec(t.reason)).filter((m) => m !== null)
      .reduce((sum, m) => sum + Number(m![1]), 0);
    assert.equal(reported, reader.lostBytes);
    assert.equal(tampers.length, reader.malformed);
    assert.ok(
      targets.has("/nonexistent-floox") || reader.lostBytes > 0,
      "the last check neither seen nor counted",
    );
    // It read on past any cap and freed what it read: the file is sparse, most of it holes.
    assert.ok(reader.rotations > 0, "never rotated");
    const info = await Deno.stat(path);
    const written = (n + 1) * lineBytes;
    // Sparse (Deno writes at its own offset) or empty (the last read ended in a rotation).
    assert.ok(info.size === written || info.size === 0, `size ${info.size}`);
    const allocated = info.blocks! * 512;
    assert.ok(allocated < written / 2, `${allocated} bytes allocated of ${written} written`);
    const lost = reader.lostBytes / lineBytes;
    console.log(
      `  ${n + 1} checks: ${seen} read, ${lost} lost and reported, ${reader.rotations} rotations, ` +
        `${allocated} of ${written} bytes still allocated`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("audit flood: more unread audit than the backlog limit stops reading and calls onFlood once", async () => {
  const dir = await shortTempDir("tfb");
  try {
    const path = `${dir}/audit.jsonl`;
    // The plugin wrote ~1.8 MB before the host looked: more than the (test-sized) backlog limit.
    await flood(dir, path, 20_000);
    const floods: number[] = [];
    const tampers: AuditTamper[] = [];
    let events = 0;
    const reader = new AuditReader({
      path,
      policy: new PermissionPolicy({ protocol: { env: [], sockets: [] } }),
      plugin: "flood",
      maxBacklogBytes: 256 * 1024,
      onEvent: () => events++,
      onTamper: (tamper) => tampers.push(tamper),
      onFlood: (unread) => floods.push(unread),
    });
    reader.start();
    assert.ok(await eventually(() => floods.length > 0), "onFlood not called");
    await reader.stop();
    assert.deepEqual(floods, [(await Deno.stat(path)).size]);
    assert.equal(reader.flooded, true);
    assert.equal(events, 0);
    assert.equal(tampers.length, 1);
    assert.match(tampers[0].reason, /faster than the host can read them; reading stopped/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("audit flood: a launch whose audit backlog passes the limit kills the plugin and names resource_limit", async () => {
  const dir = await shortTempDir("tfl");
  const logger = new Recorder();
  const launch = await prepareLaunch({
    name: "flooder",
    cmd: `${repoRoot}/tests/fixtures/sandbox/forge.ts`,
    args: [],
    privateDirBase: dir,
    cookieKey: kvHandshake.magicCookieKey,
    logger,
    isolation: "deno-only",
  });
  try {
    // What the file looks like once the plugin wrote more than the limit the host has not read (sparse: Deno
    // writes at its own offset, so the size is how far it got).
    await Deno.truncate(launch.env.DENO_AUDIT_PERMISSIONS, AUDIT_MAX_BACKLOG_BYTES + 1);
    let kills = 0;
    launch.watch(() => kills++);
    assert.ok(await eventually(() => kills > 0), "the plugin was not killed");
    assert.ok(
      logger.records.some((r) =>
        r.message === "plugin floods its permission audit faster than the host can read it; killing it" &&
        r.fields.held === AUDIT_MAX_BACKLOG_BYTES + 1
      ),
    );
    const reason = launch.exitReason([]);
    assert.equal(reason?.code, "resource_limit");
    assert.match(
      reason!.message,
      /plugin flooder was stopped: it made permission checks faster than the host/,
    );
  } finally {
    await launch.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A grant holding a dangling symlink, a symlink loop and a link leading out (resolvable), plus a plain file. */
async function unresolvableGrant(dir: string): Promise<{ granted: string; loops: string }> {
  const granted = `${dir}/granted`;
  const loops = `${dir}/loops`;
  for (const d of [granted, loops, `${dir}/outside`]) await Deno.mkdir(d);
  await Deno.writeTextFile(`${granted}/ok.txt`, "ok");
  await Deno.writeTextFile(`${dir}/outside/secret.txt`, "secret");
  await Deno.symlink(`${dir}/nowhere`, `${granted}/dangling`);
  await Deno.symlink(`${dir}/outside`, `${granted}/out`);
  await Deno.symlink(`${loops}/loop2`, `${loops}/loop1`);
  await Deno.symlink(`${loops}/loop1`, `${loops}/loop2`);
  return { granted, loops };
}

Deno.test("fail closed: a grant check on a path the host cannot resolve is not allowed; the audit labels it unresolved", async () => {
  const dir = await shortTempDir("tfr");
  try {
    const { granted, loops } = await unresolvableGrant(dir);
    const policy = new PermissionPolicy({
      grants: { read: [granted, loops], write: [granted] },
      protocol: { env: [], sockets: [] },
    });
    // Controls: a file in the grant, one not there yet (its parents resolve), a link leading out (resolvable).
    assert.deepEqual(policy.label("read", `${granted}/ok.txt`), { allowed: true });
    assert.deepEqual(policy.label("write", `${granted}/new/file.txt`), { allowed: true });
    assert.deepEqual(policy.label("read", `${granted}/out/secret.txt`), { allowed: false });
    // Lexically under the grant, but where they lead cannot be known: not allowed, and why.
    const cases: [string, string, string, RegExp][] = [
      ["read", `${granted}/dangling`, `${granted}/dangling`, /a dangling symlink \(to .*\/nowhere\)/],
      ["write", `${granted}/dangling/new.txt`, `${granted}/dangling`, /a dangling symlink/],
      ["read", `${loops}/loop1/x`, `${loops}/loop1/x`, /a symlink loop/],
    ];
    for (const [permission, path, prefix, reason] of cases) {
      const label = policy.label(permission, path);
      assert.equal(label.allowed, false, `${permission} ${path}`);
      assert.ok(label.unresolved?.startsWith(`${prefix}: `), `${path}: ${label.unresolved}`);
      assert.match(label.unresolved!, reason);
      assert.equal(policy.decide(permission, path), false);
    }

    // The audit reader reports the same labels as events.
    const audit = `${dir}/audit.jsonl`;
    const paths = [`${granted}/ok.txt`, ...cases.map(([, path]) => path)];
    await Deno.writeTextFile(
      audit,
      paths.map((value) =>
        JSON.stringify({ v: 1, datetime: "2026-11-27T16:20:45Z", permission: "read", value }) + "\n"
      ).join(""),
    );
    const events: PermissionEvent[] = [];
    const reader = new AuditReader({
      path: audit,
      policy,
      plugin: "resolve",
      reportAllowed: true,
      onEvent: (event) => events.push(event),
      onTamper: (tamper) => assert.fail(`tamper: ${tamper.reason}`),
    });
    await reader.stop();
    assert.deepEqual(events.map((event) => event.target), paths);
    assert.equal(events[0].allowed, true);
    assert.equal(events[0].unresolved, undefined);
    for (const event of events.slice(1)) {
      assert.equal(event.allowed, false, event.target!);
      assert.match(event.unresolved ?? "", /dangling symlink|symlink loop/, event.target!);
    }

    // A host whose own --allow-read does not cover the grant cannot look at all: not allowed either.
    const script = `${dir}/label.ts`;
    await Deno.writeTextFile(
      script,
      `import { PermissionPolicy } from ${JSON.stringify(`${repoRoot}/src/permissions.ts`)};\n` +
        `const policy = new PermissionPolicy({ grants: { read: [${
          JSON.stringify(granted)
        }] }, protocol: { env: [], sockets: [] } });\n` +
        `console.log(JSON.stringify(policy.label("read", ${JSON.stringify(`${granted}/ok.txt`)})));\n`,
    );
    const out = await new Deno.Command(deno, {
      args: ["run", "--no-prompt", "--no-config", `--allow-read=${repoRoot}/src,${script}`, script],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const narrow = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(narrow.allowed, false, JSON.stringify(narrow));
    assert.match(narrow.unresolved, /the host may not read it \(NotCapable/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fail closed: the module graph and grant walks refuse a dangling grant and a symlink loop by name", async () => {
  const dir = await shortTempDir("tfg");
  try {
    const { granted, loops } = await unresolvableGrant(dir);
    const tree = `${dir}/tree`;
    await Deno.mkdir(tree);
    await Deno.writeTextFile(`${tree}/main.ts`, "console.log(1);\n");
    // A read grant that is a dangling symlink: where it leads is not known, so the launch is refused.
    await assert.rejects(
      checkModuleGraph({
        plugin: "g",
        entry: `${tree}/main.ts`,
        moduleFlags: ["--no-config", "--no-lock"],
        allowed: [tree, `${granted}/dangling`],
      }),
      (error: unknown) => {
        assert.ok(error instanceof TetherError, String(error));
        assert.equal(error.code, "config");
        assert.match(
          error.message,
          /cannot resolve .*\/granted\/dangling to check the plugin's module graph: a dangling symlink/,
        );
        return true;
      },
    );
    // A symlink loop in a grant: refused with a TetherError naming the link (not a raw file system error).
    await assert.rejects(
      checkGrantLinks({ plugin: "g", read: [loops], write: [] }),
      (error: unknown) => {
        assert.ok(error instanceof TetherError, String(error));
        assert.equal(error.code, "config");
        assert.match(
          error.message,
          /loops\/loop[12] in its read grant .* leading where the host cannot follow \(a symlink loop/,
        );
        return true;
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
