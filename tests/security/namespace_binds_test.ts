/**
 * The namespace layer on its own, attacked through what it binds: each
 * attempt computes the bwrap arguments the host would (`bwrapArgs`, which
 * resolves and checks every bind) and runs a hostile script inside them with
 * `deno run -A` (Deno's flags as wide as the namespace allows), so only the
 * binds hold it. An attempt is denied when the host refuses the bind (a
 * `TetherError` before any process starts) or the script finds nothing to
 * take; it escaped when the script prints `ESCAPED`. Then the launch-level
 * refusals, naming plugin, field and why, in both isolation modes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { PluginClient, TetherError } from "../../mod.ts";
import { bwrapArgs, probeNamespaces } from "../../src/isolation.ts";
import { makeMarkedDir } from "../../src/stale.ts";
import { repoRoot } from "../helpers.ts";
import { kvHandshake, rejectsWith, shortTempDir, tetherDirs, text } from "./support.ts";

const deno = Deno.execPath();
const found = await probeNamespaces();
const bwrap = found.ok ? found.bwrap : "";
if (!found.ok) {
  if (Deno.env.get("CI") === "true") {
    throw new Error(`namespace_binds_test.ts needs bubblewrap: ${found.reason}`);
  }
  console.warn(
    `NOTICE: no namespaces here (${found.reason}): the attempts of namespace_binds_test.ts are IGNORED`,
  );
}

interface Attempt {
  /** The host refused to bind: the error's message. */
  refused?: string;
  /** What the hostile script printed. */
  out: string;
}

/**
 * Runs `script` with `deno run -A` in the namespace the host would build for these grants; `between` runs
 * after the arguments are computed and before bwrap starts (the gap a swap would use).
 */
async function attempt(
  dir: string,
  grants: { read?: string[]; write?: string[]; privateDir?: string },
  script: string,
  between?: () => Promise<void>,
): Promise<Attempt> {
  const privateDir = grants.privateDir ?? `${dir}/private`;
  await Deno.mkdir(privateDir, { recursive: true });
  await Deno.writeTextFile(`${privateDir}/attack.ts`, script);
  let args: string[];
  try {
    args = bwrapArgs({
      bwrap,
      deno,
      privateDir,
      readOnly: grants.read ?? [],
      readWrite: grants.write ?? [],
      shareNet: false,
      cwd: privateDir,
    }, [deno, "run", "-A", "--no-config", `${privateDir}/attack.ts`]);
  } catch (error) {
    assert.ok(error instanceof TetherError, `not a TetherError: ${String(error)}`);
    return { refused: error.message, out: "" };
  }
  await between?.();
  const run = await new Deno.Command(bwrap, {
    args,
    clearEnv: true,
    env: { NO_COLOR: "1", DENO_DIR: `${privateDir}/deno` },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { out: `${text(run.stdout)}${text(run.stderr)}` };
}

/** A hostile script: each step prints `ESCAPED <what>` when it gets what it must not. */
function hostile(...steps: string[]): string {
  return steps.map((step) => `try { ${step} } catch (e) { console.log("denied:", String(e)); }`).join("\n");
}

const read = (path: string) =>
  `console.log("ESCAPED read", JSON.stringify(Deno.readTextFileSync(${JSON.stringify(path)})));`;
const write = (path: string) =>
  `Deno.writeTextFileSync(${JSON.stringify(path)}, "PWNED"); console.log("ESCAPED write ${path}");`;

function denied(result: Attempt, refusal?: RegExp): void {
  assert.ok(!result.out.includes("ESCAPED"), `escaped:\n${result.out}`);
  // Contained, not refused: the script ran and its attempt failed (never a script that did not run).
  if (!refusal) assert.match(result.out, /denied:/, `the script did not run:\n${result.out}`);
  if (refusal) {
    assert.ok(result.refused !== undefined, `not refused (expected ${refusal}):\n${result.out}`);
    assert.match(result.refused!, refusal);
  }
}

const test = (name: string, fn: (dir: string) => Promise<void>) =>
  Deno.test({ name: `namespace binds: ${name}`, ignore: !found.ok }, async () => {
    const dir = await shortTempDir("tnb");
    try {
      await fn(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

test("a dangling write grant is refused, not bound as its parent (which holds a host file)", async (dir) => {
  await Deno.mkdir(`${dir}/w`);
  await Deno.writeTextFile(`${dir}/w/secret.txt`, "host secret");
  await Deno.symlink(`${dir}/w/target`, `${dir}/w/out`);
  const result = await attempt(
    dir,
    { write: [`${dir}/w/out`] },
    hostile(read(`${dir}/w/secret.txt`), write(`${dir}/w/secret.txt`)),
  );
  denied(result, /path .*\/w\/out cannot be resolved: a dangling symlink \(to .*\/w\/target\)/);
  assert.equal(await Deno.readTextFile(`${dir}/w/secret.txt`), "host secret");
});

test("a grant's symlink swapped after the check: bwrap binds what the check resolved", async (dir) => {
  for (const d of ["public", "secret"]) await Deno.mkdir(`${dir}/${d}`);
  await Deno.writeTextFile(`${dir}/public/public.txt`, "public");
  await Deno.writeTextFile(`${dir}/secret/secret.txt`, "host secret");
  await Deno.symlink(`${dir}/public`, `${dir}/g`);
  const result = await attempt(
    dir,
    { read: [`${dir}/g`] },
    hostile(
      `console.log("control", Deno.readTextFileSync(${JSON.stringify(`${dir}/g/public.txt`)}));`,
      read(`${dir}/g/secret.txt`),
    ),
    async () => {
      await Deno.remove(`${dir}/g`);
      await Deno.symlink(`${dir}/secret`, `${dir}/g`);
    },
  );
  denied(result);
  assert.match(result.out, /control public/, "the checked target is bound where the plugin names it");
});

test("grants into /proc, /sys and /dev are refused (host processes, magic links, shared memory)", async (dir) => {
  const token = crypto.randomUUID();
  // A host process whose command line holds a secret, and a host file in /dev/shm.
  const host = new Deno.Command("/bin/sh", { args: ["-c", "sleep 30", `CANARY-${token}`] }).spawn();
  const shm = `/dev/shm/tether-canary-${token}`;
  await Deno.writeTextFile(shm, `SHM-${token}`);
  try {
    await Deno.symlink(`/proc/${host.pid}`, `${dir}/h`);
    const cases: [string[], string, RegExp][] = [
      [
        [`${dir}/h`],
        read(`${dir}/h/cmdline`),
        new RegExp(`leads to /proc/${host.pid}, in /proc, a kernel file`),
      ],
      [["/proc"], read(`/proc/${host.pid}/cmdline`), /path \/proc is refused: it leads to \/proc, in \/proc/],
      [["/dev"], read(shm), /path \/dev is refused: it leads to \/dev, in \/dev/],
      // Refused by the rule, not escapes on the earlier code (bwrap bound its own /proc entry there; nothing
      // secret showed under /sys/kernel): the host resolves /proc/self to its OWN entry, never to be bound.
      [["/proc/self"], "", /path \/proc\/self is refused: it leads to \/proc\/\d+, in \/proc/],
      [["/sys/kernel"], "", /in \/sys, a kernel file system/],
    ];
    for (const [grants, script, refusal] of cases) {
      const result = await attempt(dir, { read: grants }, hostile(script));
      denied(result, refusal);
      assert.ok(!result.out.includes(token), result.out);
    }
    // Written under /dev but leading elsewhere: not an escape (the namespace's own /dev covers it), refused so
    // the grant does not silently vanish in one mode.
    await Deno.mkdir(`${dir}/elsewhere`);
    await Deno.symlink(`${dir}/elsewhere`, `/dev/shm/tether-link-${token}`);
    try {
      denied(
        await attempt(dir, { read: [`/dev/shm/tether-link-${token}`] }, hostile(read(shm))),
        /would be bound at \/dev\/shm\/tether-link-.*, in \/dev, which the namespace mounts afresh/,
      );
    } finally {
      await Deno.remove(`/dev/shm/tether-link-${token}`);
    }
    // A write grant into /dev too (it would be bound over the namespace's own /dev).
    denied(await attempt(dir, { write: ["/dev/shm"] }, hostile(read(shm))), /in \/dev, a kernel file system/);
  } finally {
    host.kill();
    await host.status;
    await Deno.remove(shm);
  }
});

test("grants leading to the host's private directories (another launch's, or their parent) are refused", async (dir) => {
  const base = `${dir}/base`;
  await Deno.mkdir(base);
  const neighbor = makeMarkedDir(base);
  const own = makeMarkedDir(base);
  const name = neighbor.slice(base.length + 1);
  await Deno.writeTextFile(`${neighbor}/permission-audit.jsonl`, "AUDIT-SECRET\n");
  const listener = Deno.listen({ transport: "unix", path: `${neighbor}/plugin.sock` });
  try {
    await Deno.symlink(neighbor, `${dir}/pd`);
    await Deno.symlink(base, `${dir}/sd`);
    const connect = (path: string) =>
      `const c = await Deno.connect({ transport: "unix", path: ${JSON.stringify(path)} }); c.close(); ` +
      `console.log("ESCAPED connect ${path}");`;
    const cases: [{ read?: string[]; write?: string[] }, string, RegExp][] = [
      [
        { read: [`${dir}/pd`] },
        hostile(read(`${dir}/pd/permission-audit.jsonl`), connect(`${dir}/pd/plugin.sock`)),
        new RegExp(`into ${neighbor}, another launch's private directory`),
      ],
      [
        { read: [`${dir}/sd`] },
        hostile(read(`${dir}/sd/${name}/permission-audit.jsonl`), connect(`${dir}/sd/${name}/plugin.sock`)),
        new RegExp(`which holds ${base}, where the host keeps every launch's private directory`),
      ],
      [
        // Not there yet: its directory (the base) would be bound read-write.
        { write: [`${base}/new.txt`] },
        hostile(write(`${base}/${name}/planted`), write(`${base}/${name}.owner`)),
        /does not exist yet, so its directory would be bound read-write, and that is refused: .*holds/,
      ],
    ];
    for (const [grants, script, refusal] of cases) {
      denied(await attempt(dir, { ...grants, privateDir: own }, script), refusal);
    }
    assert.equal(await Deno.readTextFile(`${neighbor}.owner`).then((t) => t.startsWith("{")), true);
    await assert.rejects(Deno.lstat(`${neighbor}/planted`));
  } finally {
    listener.close();
  }
});

test("a write grant that does not exist is bound as its directory only; deeper, it is refused", async (dir) => {
  await Deno.writeTextFile(`${dir}/secret.txt`, "host secret");
  const result = await attempt(
    dir,
    { write: [`${dir}/deep/a/new.txt`] },
    hostile(read(`${dir}/secret.txt`), write(`${dir}/secret.txt`)),
  );
  denied(result, /does not exist, nor does its directory .*\/deep\/a: .*create .*\/deep\/a first/);
  assert.equal(await Deno.readTextFile(`${dir}/secret.txt`), "host secret");
});

test("a read grant that does not exist is refused (neither it nor its directory is bound)", async (dir) => {
  await Deno.mkdir(`${dir}/r`);
  await Deno.writeTextFile(`${dir}/r/secret.txt`, "host secret");
  denied(
    await attempt(dir, { read: [`${dir}/r/missing.txt`] }, hostile(read(`${dir}/r/secret.txt`))),
    /missing\.txt does not exist\. Under namespaces a read grant is bound when the plugin starts/,
  );
});

test("a grant holding / cannot cover the namespace's own /proc (nor the private directories)", async (dir) => {
  const token = crypto.randomUUID();
  const host = new Deno.Command("/bin/sh", { args: ["-c", "sleep 30", `CANARY-${token}`] }).spawn();
  try {
    const result = await attempt(dir, { read: ["/"] }, hostile(read(`/proc/${host.pid}/cmdline`)));
    denied(result, /path \/ is refused: it leads to \/, which holds/);
  } finally {
    host.kill();
    await host.status;
  }
});

// Launch level: the same refusals, before anything starts, naming plugin, field and why, in both modes.
for (const isolation of ["namespaces", "deno-only"] as const) {
  Deno.test({
    name: `namespace binds (${isolation}): a launch refuses an unbindable grant by plugin, field and why`,
    ignore: isolation === "namespaces" && !found.ok,
  }, async () => {
    const dir = await shortTempDir("tnl");
    try {
      await Deno.mkdir(`${dir}/out`);
      await Deno.symlink(`${dir}/out/target`, `${dir}/out/link`);
      const launch = (permissions: Record<string, string[]>, broad?: { all: true }) =>
        new PluginClient({
          cmd: `${repoRoot}/tests/fixtures/sandbox/probe.ts`,
          denoConfig: `${repoRoot}/deno.json`,
          handshake: kvHandshake,
          unixSocketDir: dir,
          name: "binds",
          isolation,
          permissions: broad ?? permissions,
          allowBroadPermissions: broad !== undefined,
        });
      const cases: [Record<string, string[]>, RegExp][] = [
        [
          { write: [`${dir}/out/ok.txt`, `${dir}/out/link`] },
          /plugin binds: permissions\.write\[1\] .*\/out\/link cannot be resolved: a dangling symlink/,
        ],
        [
          { read: ["/proc/self"] },
          /plugin binds: permissions\.read\[0\] \/proc\/self is refused: .*in \/proc/,
        ],
        [{ write: [dir] }, /plugin binds: permissions\.write\[0\] .* is refused: .*every launch's private/],
      ];
      for (const [permissions, refusal] of cases) {
        const error = await rejectsWith(launch(permissions).start(), "config");
        assert.match(error.message, refusal);
        assert.deepEqual(tetherDirs(dir), [], "nothing is left behind");
      }
      // `all: true` (with allowBroadPermissions) is no sandbox and says so: its `/` is not held to the rule.
      const broad = launch({}, { all: true });
      try {
        await broad.start();
      } finally {
        await broad.kill();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
