/**
 * Integrity: a wrong SHA-256 is refused before anything runs; a file swapped
 * while it is being verified never runs unverified bytes (1,000 races); and
 * `sha256` works end to end for a native Go plugin and a bundled TypeScript
 * plugin, while an unbundled TypeScript plugin is refused.
 *
 * @module
 */

import assert from "node:assert/strict";
import { PluginClient } from "../../mod.ts";
import { sha256Hex, verifyIntoPrivateCopy } from "../../src/integrity.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { TetherError } from "../../src/errors.ts";
import { goFixture, ignoreWithoutGo, isAlive, repoRoot } from "../helpers.ts";
import { bytes, kvHandshake, rejectsWith, shortTempDir, tetherDirs, text } from "./support.ts";

async function fileSha256(path: string): Promise<string> {
  return await sha256Hex(await Deno.readFile(path));
}

Deno.test("integrity: a wrong digest is refused: checksum error naming the file and both digests, nothing spawned", async () => {
  const dir = await shortTempDir("tsi");
  try {
    const script = `${dir}/plugin.sh`;
    // If this ever ran, it would leave a mark.
    await Deno.writeTextFile(script, `#!/bin/sh\ntouch ${dir}/ran\nsleep 30\n`, { mode: 0o755 });
    const actual = await fileSha256(script);
    const wrong = "0".repeat(63) + "1";
    const client = new PluginClient({
      cmd: script,
      handshake: kvHandshake,
      sha256: wrong,
      unixSocketDir: dir,
    });
    const error = await rejectsWith(client.start(), "checksum");
    for (const fragment of [script, wrong, actual]) {
      assert.ok(error.message.includes(fragment), `message lacks ${fragment}: ${error.message}`);
    }
    assert.equal(error.plugin, "plugin.sh");
    assert.equal(client.pid, undefined, "a process was spawned");
    await assert.rejects(Deno.lstat(`${dir}/ran`), Deno.errors.NotFound);
    assert.deepEqual(tetherDirs(dir), [], "the private directory was left behind");

    // A malformed digest is a config error, before anything is read.
    const malformed = new PluginClient({
      cmd: script,
      handshake: kvHandshake,
      sha256: "abc",
      unixSocketDir: dir,
    });
    const config = await rejectsWith(malformed.start(), "config");
    assert.match(config.message, /sha256 must be 64 hex digits/);
    assert.deepEqual(tetherDirs(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("integrity: a deno plugin with a wrong digest is refused the same way", async () => {
  const dir = await shortTempDir("tsi");
  try {
    const bundle = `${dir}/plugin.js`;
    await Deno.writeTextFile(bundle, "console.log('never');\n");
    const client = new PluginClient({
      cmd: bundle,
      handshake: kvHandshake,
      sha256: "f".repeat(64),
      unixSocketDir: dir,
    });
    const error = await rejectsWith(client.start(), "checksum");
    assert.ok(error.message.includes(bundle) && error.message.includes(await fileSha256(bundle)));
    assert.equal(client.pid, undefined);
    assert.deepEqual(tetherDirs(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("integrity: a writer racing the verification (1,000 times) never gets its bytes run", async () => {
  const dir = await shortTempDir("tsr");
  const privateDir = `${dir}/private`;
  await Deno.mkdir(privateDir, { mode: 0o700 });
  const versionA = bytes("#!/bin/sh\necho A\n");
  const versionB = bytes("#!/bin/sh\necho B\n");
  const digestA = await sha256Hex(versionA);
  const source = `${dir}/plugin.sh`;
  const counts = { ranA: 0, refused: 0, ranB: 0, swappedBeforeExec: 0 };
  const refusedWith = new Map<string, number>();
  const started = performance.now();
  try {
    for (let i = 0; i < 1000; i++) {
      await Deno.writeFile(source, versionA, { mode: 0o755 });
      // The attacker starts in the same tick as the verification: overwriting in place
      // (a reader can see A, B, or a torn/empty file) or swapping in a new file by rename.
      const writer = i % 2 === 0
        ? Deno.writeFile(source, versionB, { mode: 0o755 })
        : Deno.writeFile(`${source}.new`, versionB, { mode: 0o755 }).then(() =>
          Deno.rename(`${source}.new`, source)
        );
      let copy: Awaited<ReturnType<typeof verifyIntoPrivateCopy>> | undefined;
      try {
        copy = await verifyIntoPrivateCopy(source, digestA, `${privateDir}/plugin-${i}`, 0o500, "racer");
      } catch (error) {
        assert.ok(error instanceof TetherError && error.code === "checksum", `unexpected error: ${error}`);
        const found = /found ([0-9a-f]{64})/.exec(error.message)?.[1] ?? "?";
        refusedWith.set(found, (refusedWith.get(found) ?? 0) + 1);
        counts.refused++;
      }
      await writer;
      if (!copy) continue;
      // By now the original holds B: whatever runs must still be A.
      if (text(await Deno.readFile(source)) === text(versionB)) counts.swappedBeforeExec++;
      assert.equal(copy.sha256, digestA);
      assert.equal((await Deno.stat(copy.path)).mode! & 0o777, 0o500);
      const out = await new Deno.Command(copy.path, { stdout: "piped", stderr: "null" }).output();
      const printed = text(out.stdout);
      if (printed === "A\n") counts.ranA++;
      else if (printed === "B\n") counts.ranB++;
      else assert.fail(`the copy printed ${JSON.stringify(printed)}`);
      await Deno.remove(copy.path);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const digestB = await sha256Hex(versionB);
  const digestEmpty = await sha256Hex(new Uint8Array());
  const reasons = [...refusedWith].map(([digest, n]) =>
    `${
      digest === digestB ? "read B" : digest === digestEmpty ? "read an empty file" : "read a torn file"
    }: ${n}`
  );
  console.log(
    `1000 races in ${seconds} s: ran A ${counts.ranA} (original already B at exec: ${counts.swappedBeforeExec}), ` +
      `refused ${counts.refused} (${reasons.join(", ")}), ran B ${counts.ranB}`,
  );
  assert.equal(counts.ranB, 0, "unverified bytes ran");
  assert.equal(counts.ranA + counts.refused, 1000);
  // The race is real: both outcomes happen (otherwise this test proves nothing).
  assert.ok(counts.ranA > 0 && counts.refused > 0, `no race happened: ${JSON.stringify(counts)}`);
  assert.ok(counts.swappedBeforeExec > 0);
});

Deno.test({
  name: "integrity: sha256 end to end with the native Go kvplugin",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await shortTempDir("tsg");
    try {
      const kvplugin = await goFixture("kvplugin");
      const client = new PluginClient({
        cmd: kvplugin,
        handshake: kvHandshake,
        sha256: await fileSha256(kvplugin),
        unixSocketDir: dir,
      });
      try {
        await client.start();
        // What runs is the verified private copy, not the original path.
        const exe = await Deno.readLink(`/proc/${client.pid}/exe`);
        assert.notEqual(exe, kvplugin);
        assert.match(exe, /\/tether-[^/]+\/verified\/kvplugin$/);
        const kv = client.dispense(KV);
        await kv.put({ key: "k", value: bytes("go") });
        assert.equal(text((await kv.get({ key: "k" })).value), "go");
      } finally {
        await client.kill();
      }
      assert.ok(!isAlive(client.pid!));
      assert.deepEqual(tetherDirs(dir), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("integrity: sha256 end to end with a bundled TS plugin; an unbundled one is refused", async () => {
  const dir = await shortTempDir("tsb");
  try {
    const bundle = `${dir}/kv.bundle.js`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--config",
        `${repoRoot}/deno.json`,
        `${repoRoot}/examples/kv/plugin.ts`,
        "-o",
        bundle,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, `deno bundle failed: ${text(out.stderr)}`);

    const client = new PluginClient({
      cmd: bundle,
      handshake: kvHandshake,
      sha256: await fileSha256(bundle),
      unixSocketDir: dir,
    });
    try {
      await client.start();
      const kv = client.dispense(KV);
      await kv.put({ key: "k", value: bytes("bundled") });
      assert.equal(text((await kv.get({ key: "k" })).value), "bundled");
      // Deno runs the verified copy, never the bundle's path.
      const cmdline = (await Deno.readTextFile(`/proc/${client.pid}/cmdline`)).split("\0");
      assert.ok(!cmdline.includes(bundle), cmdline.join(" "));
      assert.ok(
        cmdline.some((arg) => /\/tether-[^/]+\/verified\/kv\.bundle\.js$/.test(arg)),
        cmdline.join(" "),
      );
    } finally {
      await client.kill();
    }

    const entry = `${repoRoot}/examples/kv/plugin.ts`;
    const unbundled = new PluginClient({
      cmd: entry,
      handshake: kvHandshake,
      sha256: await fileSha256(entry),
      unixSocketDir: dir,
    });
    const error = await rejectsWith(unbundled.start(), "config");
    assert.match(error.message, /must be ONE bundled file/);
    assert.match(error.message, /deno bundle/);
    assert.equal(unbundled.pid, undefined);
    assert.deepEqual(tetherDirs(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
