import assert from "node:assert/strict";
import { bundlePlugin } from "../src/bundle_cli.ts";
import { sha256Hex } from "../src/integrity.ts";
import { repoRoot } from "./helpers.ts";

Deno.test("bundle-plugin: one self-contained file whose printed digest is the file's SHA-256", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tether-bundle-test-" });
  try {
    const out = `${dir}/kv.bundle.js`;
    const digest = await bundlePlugin(`${repoRoot}/examples/kv/plugin.ts`, out, `${repoRoot}/deno.json`);
    assert.equal(digest, await sha256Hex(await Deno.readFile(out)));
    const info = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--no-config", "--no-npm", "--no-remote", out],
      stdout: "piped",
    }).output();
    const modules = (JSON.parse(new TextDecoder().decode(info.stdout)).modules as { specifier: string }[])
      .map((m) => m.specifier).filter((s) => !s.startsWith("node:"));
    assert.deepEqual(modules, [`file://${out}`], "no module besides the bundle itself");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
