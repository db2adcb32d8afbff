/**
 * Behaviours of Deno itself (the version this runs under) that docs/security.md builds on: what the permission
 * audit leaves out, where per-origin storage lives, and what the write grants around a unix socket allow. Each
 * test runs a tiny probe script under bare `deno run` with chosen flags, so a Deno upgrade that changes one of
 * them fails here rather than leaving the docs wrong.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";

const PROBE = `
const [op, path] = Deno.args;
try {
  if (op === "run") new Deno.Command("/bin/sh", { args: ["-c", "true"] }).outputSync();
  else if (op === "read") Deno.readTextFileSync(path);
  else if (op === "write") Deno.writeTextFileSync(path, "x");
  else if (op === "mkdir") Deno.mkdirSync(path);
  else if (op === "remove") Deno.removeSync(path);
  else if (op === "listen") Deno.listen({ transport: "unix", path }).close();
  else if (op === "connect") (await Deno.connect({ transport: "unix", path })).close();
  else if (op === "store") {
    localStorage.setItem("k", "v");
    await (await caches.open("c")).put("https://a.invalid/x", new Response("v"));
  }
  console.log("ok");
} catch (error) {
  console.log(error.name);
}
`;

/** Runs the probe's `op` on `path` with `flags`; returns "ok" or the error's class name. */
async function probe(
  dir: string,
  flags: string[],
  op: string,
  path = "",
  env: Record<string, string> = {},
): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-config", "--no-prompt", ...flags, `${dir}/probe.ts`, op, path],
    cwd: dir,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.ok(out.success, `probe ${op} ${flags.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return text;
}

async function withProbe(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tether-deno-behaviour-" });
  try {
    await Deno.writeTextFile(`${dir}/probe.ts`, PROBE);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("Deno's permission audit writes no line for Deno.Command's run check (denied or granted); a read check gets one", async () => {
  await withProbe(async (dir) => {
    const audit = `${dir}/audit.jsonl`;
    const env = { DENO_AUDIT_PERMISSIONS: audit };
    const kinds = async () =>
      (await Deno.readTextFile(audit).catch(() => "")).split("\n").filter((l) => l !== "")
        .map((l) => (JSON.parse(l) as { permission: string }).permission);

    assert.equal(await probe(dir, [], "run", "", env), "NotCapable");
    assert.deepEqual(await kinds(), []);
    assert.equal(await probe(dir, ["--allow-run=/bin/sh"], "run", "", env), "ok");
    assert.deepEqual(await kinds(), []);
    // The audit file works: a denied read is written.
    assert.equal(await probe(dir, [], "read", `${dir}/probe.ts`, env), "NotCapable");
    assert.deepEqual(await kinds(), ["read"]);
  });
});

Deno.test("Deno keeps per-origin storage under <DENO_DIR>/location_data/<sha256(origin)>/ and location_data/web_cache/<sha256(origin)>/", async () => {
  await withProbe(async (dir) => {
    const denoDir = `${dir}/deno_dir`;
    const origin = "http://tether-behaviour.invalid";
    const result = await probe(dir, [`--location=${origin}/`], "store", "", { DENO_DIR: denoDir });
    assert.equal(result, "ok");
    const hash = createHash("sha256").update(origin).digest("hex");
    assert.ok(Deno.statSync(`${denoDir}/location_data/${hash}`).isDirectory, "localStorage's directory");
    assert.ok(
      Deno.statSync(`${denoDir}/location_data/web_cache/${hash}`).isDirectory,
      "CacheStorage's directory",
    );
  });
});

Deno.test("Deno's write grant for a socket path also covers everything below it and removes a placeholder there; --deny-write=<p>/ denies <p> itself, --deny-write=<p>/x only x", async () => {
  await withProbe(async (dir) => {
    const sock = `${dir}/plugin.sock`;
    assert.equal(await probe(dir, [`--allow-write=${sock}`], "mkdir", sock), "ok");
    assert.equal(await probe(dir, [`--allow-write=${sock}`], "write", `${sock}/x`), "ok");
    await Deno.remove(sock, { recursive: true });

    assert.equal(
      await probe(dir, [`--allow-write=${dir}`, `--deny-write=${sock}/`], "write", sock),
      "NotCapable",
    );
    assert.equal(
      await probe(dir, [`--allow-write=${dir}`, `--deny-write=${sock}/`], "mkdir", sock),
      "NotCapable",
    );

    await Deno.mkdir(sock);
    const denyX = [`--allow-write=${dir}`, `--deny-write=${sock}/x`];
    assert.equal(await probe(dir, denyX, "write", `${sock}/x`), "NotCapable");
    assert.equal(await probe(dir, denyX, "write", `${sock}/y`), "ok");
    await Deno.remove(sock, { recursive: true });

    // A placeholder the host puts at the path is no obstacle: the same write grant removes it.
    await Deno.writeTextFile(sock, "placeholder");
    assert.equal(await probe(dir, [`--allow-write=${sock}`], "remove", sock), "ok");
    assert.throws(() => Deno.statSync(sock), Deno.errors.NotFound);
  });
});

Deno.test("Deno.listen on a unix path needs its write grant; Deno.connect to one needs read and write", async () => {
  await withProbe(async (dir) => {
    const sock = `${dir}/l.sock`;
    const net = `--allow-net=unix:${sock}`;
    assert.equal(await probe(dir, [net, `--allow-read=${sock}`], "listen", sock), "NotCapable");
    assert.equal(
      await probe(dir, [net, `--allow-read=${sock}`, `--allow-write=${sock}`], "listen", sock),
      "ok",
    );
    await Deno.remove(sock).catch(() => {});

    const listener = Deno.listen({ transport: "unix", path: sock });
    const accepting = (async () => {
      for await (const conn of listener) conn.close();
    })();
    try {
      assert.equal(await probe(dir, [net, `--allow-read=${sock}`], "connect", sock), "NotCapable");
      assert.equal(await probe(dir, [net, `--allow-write=${sock}`], "connect", sock), "NotCapable");
      assert.equal(
        await probe(dir, [net, `--allow-read=${sock}`, `--allow-write=${sock}`], "connect", sock),
        "ok",
      );
    } finally {
      listener.close();
      await accepting.catch(() => {});
    }
  });
});
