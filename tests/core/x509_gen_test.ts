// The generated X.509 bundle (src/gen/x509/asn1.js): current, at deno.lock's versions, licensed, and what lets
// src/mtls.ts load without npm packages (and so without Deno's CommonJS loader).
import assert from "node:assert/strict";
import { bundledPackages, exportsByPackage, lockedNpm, outputs, stale } from "../../.ci/gen_x509.ts";

const repoRoot = new URL("../../", import.meta.url);
const bundle = await Deno.readTextFile(new URL(outputs.js, repoRoot));

Deno.test("x509 bundle: regenerating it gives the committed bytes (deno task gen is reproducible)", async () => {
  assert.deepEqual(
    await stale(),
    [],
    "run `deno task gen`: the committed bundle is not what the generator makes",
  );
});

Deno.test("x509 bundle: every package it holds is at the version deno.lock locks, and its header says so", async () => {
  const packages = bundledPackages(bundle);
  const locked = await lockedNpm();
  const names = packages.map((p) => p.name);
  for (const wanted of [...Object.keys(exportsByPackage), "asn1js"]) {
    assert.ok(names.includes(wanted), `${wanted} is not in the bundle (found ${names.join(", ")})`);
  }
  for (const { name, version } of packages) {
    assert.ok(
      locked.has(`${name}@${version}`),
      `${name}@${version} is bundled but deno.lock does not lock it`,
    );
    assert.match(
      bundle.slice(0, 2000),
      new RegExp(`^//   ${name.replace("/", "\\/")}@${version.replaceAll(".", "\\.")}  `, "m"),
    );
  }
});

Deno.test("x509 bundle: its header carries each bundled package's license notice", async () => {
  const header = bundle.slice(0, bundle.indexOf("\nvar "));
  for (const { name, version } of bundledPackages(bundle)) {
    const dir = new URL(
      `node_modules/.deno/${name.replace("/", "+")}@${version}/node_modules/${name}/`,
      repoRoot,
    );
    const file = ["LICENSE", "LICENSE.txt"].find((f) => {
      try {
        return Deno.statSync(new URL(f, dir)).isFile;
      } catch {
        return false;
      }
    });
    assert.ok(file, `${name}: no LICENSE file in node_modules`);
    const firstLine = (await Deno.readTextFile(new URL(file, dir))).trim().split("\n")[0].trim();
    assert.ok(header.includes(`// ---- ${name}@${version} (`), `${name}@${version}: no license section`);
    assert.ok(header.includes(`// ${firstLine}`), `${name}: license text missing ("${firstLine}")`);
  }
});

Deno.test("x509 bundle: src/mtls.ts loads no npm package at run time (static module graph)", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "src/mtls.ts"],
    cwd: repoRoot,
    stderr: "inherit",
  }).output();
  assert.ok(output.success, "deno info src/mtls.ts failed");
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    modules: { specifier: string; dependencies?: { code?: { specifier: string } }[] }[];
  };
  const code = info.modules.flatMap((m) => (m.dependencies ?? []).map((d) => d.code?.specifier ?? ""));
  assert.ok(code.some((s) => s.endsWith("/src/gen/x509/asn1.js")), "src/mtls.ts does not import the bundle");
  assert.deepEqual(code.filter((s) => s.startsWith("npm:")), [], "src/mtls.ts still loads npm packages");
});
