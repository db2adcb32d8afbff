/**
 * A hostile TypeScript plugin (tests/fixtures/hostile/plugin.ts) under
 * Tether's deny-by-default sandbox: every escape it tries is refused by Deno,
 * it keeps serving afterwards, and the host receives a structured
 * PermissionEvent (plugin, permission, target) for each attempt.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type PermissionEvent, PluginClient } from "../../mod.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { repoRoot } from "../helpers.ts";
import { bytes, eventually, kvHandshake, Recorder, shortTempDir, tetherDirs, text } from "./support.ts";

const hostilePlugin = `${repoRoot}/tests/fixtures/hostile/plugin.ts`;
const SECRET_NAME = "TETHER_TEST_SECRET";
const SECRET_VALUE = "s3cr3t-only-the-host-knows";

interface Outcome {
  denied: boolean;
  error: string;
  leaked?: string;
}

interface Attempt {
  /** What the issue calls it. */
  readonly label: string;
  /** The plugin's attempt name and its target. */
  readonly name: string;
  readonly target: string;
  /** Permission kinds an audit event for it may carry (the first check Deno makes decides). */
  readonly kinds: readonly string[];
  /** The event's target must satisfy this (null: "all of that kind"). */
  readonly targetMatches: (target: string | null) => boolean;
  /** `plugin-audit`: Deno's audit file (written by the plugin's process); `plugin`: serve() reported it. */
  readonly source: "plugin-audit" | "plugin";
  /** False where Deno 2.9.6 writes no audit line for the check (`Deno.Command`'s run check). */
  readonly audited?: boolean;
}

function is(value: string): (target: string | null) => boolean {
  return (target) => target === value;
}

Deno.test("hostile TS plugin: every escape is denied, audited, and the plugin keeps serving", async () => {
  const dir = await shortTempDir("tsh");
  const previousSecret = Deno.env.get(SECRET_NAME);
  Deno.env.set(SECRET_NAME, SECRET_VALUE);

  // The plugin's grants: one file to read, one directory to write.
  const allowedFile = `${dir}/allowed.txt`;
  const outDir = `${dir}/out`;
  await Deno.writeTextFile(allowedFile, "public data\n");
  await Deno.mkdir(outDir);
  // Outside the grants.
  const secretFile = `${dir}/secret.txt`;
  await Deno.writeTextFile(secretFile, `${SECRET_VALUE}\n`);
  const escapedFile = `${dir}/escaped.txt`;
  const socketsDir = `${dir}/sockets`;
  await Deno.mkdir(socketsDir);

  // Real listeners the plugin must never reach.
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const tcpPort = (tcp.addr as Deno.NetAddr).port;
  const otherSocket = `${dir}/other.sock`;
  const unix = Deno.listen({ transport: "unix", path: otherSocket });
  let connections = 0;
  const accepting = [tcp, unix].map(async (listener) => {
    try {
      for await (const conn of listener) {
        connections++;
        conn.close();
      }
    } catch {
      // Closed at the end.
    }
  });

  const events: PermissionEvent[] = [];
  const logger = new Recorder();
  const client = new PluginClient({
    cmd: hostilePlugin,
    runtime: "deno",
    denoConfig: `${repoRoot}/deno.json`,
    handshake: kvHandshake,
    unixSocketDir: socketsDir,
    permissions: { read: [allowedFile], write: [outDir] },
    env: { HOSTILE_MODE: "on" },
    onPermissionEvent: (event) => events.push(event),
    logger,
    name: "hostile",
  });

  const attempts: Attempt[] = [
    {
      label: "read a host file",
      name: "read",
      target: secretFile,
      kinds: ["read"],
      targetMatches: is(secretFile),
      source: "plugin-audit",
    },
    {
      label: "write outside the grants",
      name: "write",
      target: escapedFile,
      kinds: ["write"],
      targetMatches: is(escapedFile),
      source: "plugin-audit",
    },
    {
      label: "TCP to another local port",
      name: "tcp",
      target: `127.0.0.1:${tcpPort}`,
      kinds: ["net"],
      targetMatches: is(`127.0.0.1:${tcpPort}`),
      source: "plugin-audit",
    },
    {
      label: "connect to another unix socket",
      name: "unix",
      target: otherSocket,
      // Deno checks read (then write, then net unix:) on the socket path.
      kinds: ["read", "write", "net"],
      targetMatches: (target) => target === otherSocket || target === `unix:${otherSocket}`,
      source: "plugin-audit",
    },
    {
      label: "spawn a process",
      name: "run",
      target: "/bin/sh",
      kinds: ["run"],
      targetMatches: is("/bin/sh"),
      source: "plugin-audit",
      audited: false,
    },
    {
      label: "read an env var it was not given",
      name: "env",
      target: SECRET_NAME,
      kinds: ["env"],
      targetMatches: is(SECRET_NAME),
      source: "plugin-audit",
    },
    {
      label: "FFI",
      name: "ffi",
      target: "libc.so.6",
      kinds: ["ffi"],
      targetMatches: is("libc.so.6"),
      source: "plugin-audit",
    },
    {
      label: "sys info",
      name: "sys",
      target: "",
      kinds: ["sys"],
      targetMatches: is("hostname"),
      source: "plugin-audit",
    },
    {
      label: "remote import",
      // Deno checks `import` before --no-remote could fetch anything: no network traffic. The audit line names
      // the URL (or `host:443`, depending on where Deno checks).
      name: "import",
      target: "https://example.com/tether-hostile.ts",
      kinds: ["import"],
      targetMatches: (target) =>
        target === "example.com:443" || target === "https://example.com/tether-hostile.ts",
      source: "plugin-audit",
    },
    {
      label: "Deno.permissions.request",
      name: "request",
      target: secretFile,
      kinds: ["read"],
      targetMatches: is(secretFile),
      source: "plugin",
    },
    // Beyond the list: other routes to the same things.
    {
      label: "write with ../ out of the granted dir",
      name: "write",
      target: `${outDir}/../escaped.txt`,
      kinds: ["write"],
      targetMatches: is(escapedFile),
      source: "plugin-audit",
    },
    {
      label: "read via node:fs",
      name: "nodefs",
      target: secretFile,
      kinds: ["read"],
      targetMatches: is(secretFile),
      source: "plugin-audit",
    },
    {
      label: "env via node:process",
      name: "nodeenv",
      target: SECRET_NAME,
      kinds: ["env"],
      targetMatches: is(SECRET_NAME),
      source: "plugin-audit",
    },
    {
      label: "spawn via node:child_process",
      // node:child_process copies the environment first: the env check stops it before run.
      name: "nodechild",
      target: "/bin/sh",
      kinds: ["env", "run"],
      targetMatches: (target) => target === null || target === "/bin/sh",
      source: "plugin-audit",
    },
    {
      label: "read /proc/self/environ",
      name: "read",
      target: "/proc/self/environ",
      kinds: ["read"],
      targetMatches: is("/proc/self/environ"),
      source: "plugin-audit",
    },
    {
      label: "symlink from the granted dir to a host file",
      // Deno wants unscoped read+write for symlinks: asked as write (or read) of "all".
      name: "symlink",
      target: `${outDir}/link=>${secretFile}`,
      kinds: ["write", "read"],
      targetMatches: (target) => target === null,
      source: "plugin-audit",
    },
  ];

  try {
    await client.start();
    const kv = client.dispense(KV);
    const pid = client.pid!;
    // A socket path in the private directory that is not granted (there is no permission broker any more).
    const privateDir = client.endpoint!.address.replace(/\/[^/]+$/, "");
    const brokerSocket = `${privateDir}/permissions.sock`;
    attempts.push({
      label: "connect to an ungranted socket path in the private directory",
      name: "unix",
      target: brokerSocket,
      kinds: ["read", "write", "net"],
      targetMatches: (target) => target === brokerSocket || target === `unix:${brokerSocket}`,
      source: "plugin-audit",
    });

    // The plugin's process never had the host's secret in its environment.
    const environ = await Deno.readTextFile(`/proc/${pid}/environ`);
    assert.ok(!environ.includes(SECRET_NAME) && !environ.includes(SECRET_VALUE), "the host's env leaked");
    assert.ok(environ.split("\0").includes("HOSTILE_MODE=on"), "the plugin did not get the env it was given");

    // Positive control: the grants work and are not reported.
    const control = JSON.parse(text((await kv.get({ key: `attempt:read:${allowedFile}` })).value)) as Outcome;
    assert.deepEqual(control, { denied: false, error: "", leaked: "public data\n" });
    const written = JSON.parse(
      text((await kv.get({ key: `attempt:write:${outDir}/ok.txt` })).value),
    ) as Outcome;
    assert.equal(written.denied, false, written.error);
    assert.equal(await Deno.readTextFile(`${outDir}/ok.txt`), "written by a hostile plugin\n");

    let denied = 0;
    const lines: string[] = [];
    for (const [index, attempt] of attempts.entries()) {
      const before = events.length;
      const response = await kv.get({ key: `attempt:${attempt.name}:${attempt.target}` });
      assert.ok(response.found, `${attempt.label}: no answer`);
      const outcome = JSON.parse(text(response.value)) as Outcome;
      assert.ok(outcome.denied, `${attempt.label} was NOT denied: ${JSON.stringify(outcome)}`);
      assert.ok(!JSON.stringify(outcome).includes(SECRET_VALUE), `${attempt.label} leaked the secret`);
      denied++;

      const matching = (event: PermissionEvent) =>
        event.plugin === "hostile" && !event.allowed && event.source === attempt.source &&
        attempt.kinds.includes(event.permission) && attempt.targetMatches(event.target);
      if (attempt.audited === false) {
        lines.push(`  ${attempt.label}: denied (${outcome.error}); Deno writes no audit line for it`);
        await kv.put({ key: `k${index}`, value: bytes(`v${index}`) });
        assert.equal(text((await kv.get({ key: `k${index}` })).value), `v${index}`);
        continue;
      }
      assert.ok(
        await eventually(() => events.slice(before).some(matching), 5000),
        `${attempt.label}: no matching audit event; got ${JSON.stringify(events.slice(before))}`,
      );
      const event = events.slice(before).find(matching)!;
      assert.ok(event.time instanceof Date && !Number.isNaN(event.time.getTime()));
      lines.push(
        `  ${attempt.label}: denied (${outcome.error}); audit ${event.source} ${event.permission} ${event.target}`,
      );

      // Still serving after each attempt.
      await kv.put({ key: `k${index}`, value: bytes(`v${index}`) });
      const back = await kv.get({ key: `k${index}` });
      assert.equal(text(back.value), `v${index}`);
    }

    // Nothing got through on the host's side either.
    assert.equal(connections, 0, "a listener outside the grants received a connection");
    await assert.rejects(Deno.lstat(escapedFile), Deno.errors.NotFound);
    await assert.rejects(Deno.lstat(`${outDir}/link`), Deno.errors.NotFound);
    await client.ping();
    assert.ok(!client.hasExited);

    // No event for the granted file or dir.
    assert.ok(
      !events.some((event) => event.target === allowedFile || event.target?.startsWith(`${outDir}/ok`)),
      "a granted access was reported as denied",
    );
    // Denials are also logged (warn) with the same structured fields.
    const logged = logger.records.filter((record) => record.message === "plugin permission denied");
    assert.ok(
      logged.some((record) => record.fields.permission === "read" && record.fields.target === secretFile),
    );

    console.log(lines.join("\n"));
    console.log(`${attempts.length} attempts, ${denied} denied`);
    assert.equal(denied, attempts.length);
  } finally {
    await client.kill();
    tcp.close();
    unix.close();
    await Promise.all(accepting);
    if (previousSecret === undefined) Deno.env.delete(SECRET_NAME);
    else Deno.env.set(SECRET_NAME, previousSecret);
    assert.deepEqual(tetherDirs(socketsDir), [], "the launch's private directory was left behind");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("namespaces: a symlink that someone else put in a granted directory does not lead out of the grant", async () => {
  // Deno checks the path as written, so under Deno's flags alone such a link leads out (docs/security.md);
  // in the plugin's mount namespace its target does not exist. The plugin itself cannot make such a link
  // (symlinks need unscoped read and write), but one that is already there could.
  const dir = await shortTempDir("tsl");
  const granted = `${dir}/granted`;
  await Deno.mkdir(granted);
  await Deno.writeTextFile(`${dir}/outside.txt`, "outside\n");
  await Deno.symlink(`${dir}/outside.txt`, `${granted}/link`);
  const events: PermissionEvent[] = [];
  const client = new PluginClient({
    cmd: hostilePlugin,
    denoConfig: `${repoRoot}/deno.json`,
    handshake: kvHandshake,
    unixSocketDir: dir,
    permissions: { read: [granted] },
    isolation: "namespaces",
    onPermissionEvent: (event) => events.push(event),
  });
  try {
    await client.start();
    const kv = client.dispense(KV);
    const direct = JSON.parse(
      text((await kv.get({ key: `attempt:read:${dir}/outside.txt` })).value),
    ) as Outcome;
    assert.equal(direct.denied, true, "the file itself must stay out of reach");
    const viaLink = JSON.parse(
      text((await kv.get({ key: `attempt:read:${granted}/link` })).value),
    ) as Outcome;
    assert.equal(viaLink.denied, true, "the link must not lead out of the grant");
    assert.ok(
      await eventually(() =>
        events.some((event) =>
          event.permission === "read" && event.target === `${granted}/link` && !event.allowed
        )
      ),
      "the host saw the denial",
    );
  } finally {
    await client.kill();
    await Deno.remove(dir, { recursive: true });
  }
});
