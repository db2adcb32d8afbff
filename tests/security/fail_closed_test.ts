/**
 * Fail-closed regressions found in review: a path the host may not resolve is
 * refused rather than judged by its name (module graph and grant checks);
 * `true` for a list-only permission kind is refused by the one rule
 * (`validatePermissionEntries`) in every layer that takes grants.
 *
 * @module
 */

import assert from "node:assert/strict";
import { SETPRIV } from "../../src/lifeline.ts";
import { PluginClient, TetherError } from "../../mod.ts";
import { packPlugin } from "../../src/pack/pack.ts";
import { PermissionPolicy, validatePermissionEntries } from "../../src/permissions.ts";
import { parsePluginsConfig } from "../../src/sftpgo/config.ts";
import { kvHandshake } from "../../examples/kv/handshake.ts";
import { repoRoot } from "../helpers.ts";
import { namespacesAvailable } from "./hostile_suite/world.ts";
import { shortTempDir, tetherDirs } from "./support.ts";

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
