/**
 * Generates `src/gen/x509/asn1.js` (with its types, `asn1.d.ts`): the names
 * `src/mtls.ts` uses from `@peculiar/asn1-schema`, `@peculiar/asn1-x509` and
 * `@peculiar/asn1-ecc`, bundled by `deno bundle` into one ES module. Those
 * packages are CommonJS; from source a plugin spends its start in Deno's
 * CommonJS loader, while one pre-built module loads like any other. Same
 * packages, same versions (deno.lock's), never hand-edited.
 *
 * `deno task gen` writes the files; `--check` (part of `deno task check`)
 * regenerates them in memory and fails if the committed bytes differ, so the
 * bundle cannot drift from the locked dependencies.
 *
 * buf's `clean: true` empties `src/gen` first, so `deno task gen` runs this
 * after buf.
 *
 * @example
 * ```sh
 * deno run --allow-read --allow-write --allow-run --allow-env .ci/gen_x509.ts          # write
 * deno run --allow-read --allow-write --allow-run --allow-env .ci/gen_x509.ts --check  # compare
 * ```
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** The names `src/mtls.ts` imports, by package: the bundle's only exports. */
export const exportsByPackage: Readonly<Record<string, readonly string[]>> = {
  "@peculiar/asn1-schema": ["AsnConvert", "OctetString"],
  "@peculiar/asn1-ecc": ["ECDSASigValue", "id_ecdsaWithSHA512"],
  "@peculiar/asn1-x509": [
    "AlgorithmIdentifier",
    "AttributeTypeAndValue",
    "AttributeValue",
    "BasicConstraints",
    "Certificate",
    "ExtendedKeyUsage",
    "Extension",
    "Extensions",
    "GeneralName",
    "id_ce_basicConstraints",
    "id_ce_extKeyUsage",
    "id_ce_keyUsage",
    "id_ce_subjectAltName",
    "id_kp_clientAuth",
    "id_kp_serverAuth",
    "KeyUsage",
    "KeyUsageFlags",
    "Name",
    "RelativeDistinguishedName",
    "SubjectAlternativeName",
    "SubjectPublicKeyInfo",
    "TBSCertificate",
    "Validity",
    "Version",
  ],
};

/** Where the generated files live, relative to the repository root. */
export const outputs = { js: "src/gen/x509/asn1.js", dts: "src/gen/x509/asn1.d.ts" } as const;

const root = fileURLToPath(new URL("../", import.meta.url));

/** A package the bundle holds, as `deno bundle` names its modules (`node_modules/.deno/<name>@<version>/…`). */
export interface BundledPackage {
  /** npm name, e.g. `asn1js`. */
  readonly name: string;
  /** Exact version, as in deno.lock. */
  readonly version: string;
}

/** The packages a bundle's module comments name, sorted. */
export function bundledPackages(bundle: string): BundledPackage[] {
  const seen = new Map<string, BundledPackage>();
  for (
    const match of bundle.matchAll(
      /^\/\/ node_modules\/\.deno\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)\//gm,
    )
  ) {
    const dir = match[0].slice("// node_modules/.deno/".length).split("/")[0];
    const name = match[1];
    const version = dir.slice(name.replace("/", "+").length + 1);
    seen.set(`${name}@${version}`, { name, version });
  }
  return [...seen.values()].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/** The `name@version` keys of deno.lock's npm section. */
export async function lockedNpm(): Promise<Set<string>> {
  const lock = JSON.parse(await Deno.readTextFile(`${root}deno.lock`)) as { npm?: Record<string, unknown> };
  return new Set(Object.keys(lock.npm ?? {}));
}

function reexports(): string {
  return Object.entries(exportsByPackage)
    .map(([pkg, names]) => `export {\n${names.map((n) => `  ${n},\n`).join("")}} from "${pkg}";\n`)
    .join("");
}

async function licenseOf(pkg: BundledPackage): Promise<{ spdx: string; text: string }> {
  const dir = `${root}node_modules/.deno/${
    pkg.name.replace("/", "+")
  }@${pkg.version}/node_modules/${pkg.name}`;
  const manifest = JSON.parse(await Deno.readTextFile(`${dir}/package.json`)) as { license?: string };
  for (const file of ["LICENSE", "LICENSE.txt", "LICENSE.md", "license"]) {
    try {
      return { spdx: manifest.license ?? "(none stated)", text: await Deno.readTextFile(`${dir}/${file}`) };
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  throw new Error(`${dir}: no LICENSE file; the bundle must carry each package's notice`);
}

const comment = (text: string) =>
  text.trimEnd().split("\n").map((line) => line.trimEnd() === "" ? "//" : `// ${line.trimEnd()}`).join("\n");

/** Bundles the packages and returns the two files' contents, without writing them. */
export async function generate(): Promise<{ js: string; dts: string }> {
  const entry = await Deno.makeTempFile({ prefix: "tether-x509-entry-", suffix: ".ts" });
  let bundle: string;
  try {
    await Deno.writeTextFile(entry, reexports());
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--quiet",
        "--config",
        `${root}deno.json`,
        "--frozen-lockfile",
        "--platform",
        "deno",
        "--format",
        "esm",
        entry,
      ],
      cwd: root,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`deno bundle of the X.509 packages failed:\n${new TextDecoder().decode(out.stderr)}`);
    }
    bundle = new TextDecoder().decode(out.stdout);
  } finally {
    await Deno.remove(entry);
  }

  const packages = bundledPackages(bundle);
  const locked = await lockedNpm();
  const stray = packages.filter((p) => !locked.has(`${p.name}@${p.version}`));
  if (packages.length === 0 || stray.length > 0) {
    throw new Error(
      `bundle holds ${stray.map((p) => `${p.name}@${p.version}`).join(", ") || "no packages"}, ` +
        "expected only packages at deno.lock's versions: run `deno install` and retry",
    );
  }
  const licenses = await Promise.all(packages.map(licenseOf));
  const header = [
    `// @ts-self-types="./asn1.d.ts"`,
    "// Generated by `deno task gen` (.ci/gen_x509.ts). DO NOT EDIT; `deno task check` fails if this",
    "// file differs from a fresh generation.",
    "//",
    "// `deno bundle --platform deno --format esm` of the names src/mtls.ts imports from",
    `// ${Object.keys(exportsByPackage).join(", ")} (CommonJS packages),`,
    "// as one ES module so that a plugin loads it without Deno's CommonJS loader.",
    "//",
    "// Bundled packages (versions as locked in deno.lock) and their licenses:",
    ...packages.map((p, i) => `//   ${p.name}@${p.version}  ${licenses[i].spdx}`),
    "//",
    ...packages.flatMap((p, i) => [
      `// ---- ${p.name}@${p.version} (${licenses[i].spdx}) ----`,
      comment(licenses[i].text),
      "//",
    ]),
    "",
  ].join("\n");
  const dtsHeader = [
    "// Generated by `deno task gen` (.ci/gen_x509.ts). DO NOT EDIT.",
    "// Types of asn1.js: the same names, from the packages' own declarations.",
    "",
  ].join("\n");
  return { js: header + bundle, dts: dtsHeader + reexports() };
}

/** Files whose committed text differs from a fresh generation (empty when current). */
export async function stale(): Promise<string[]> {
  const fresh = await generate();
  const differing: string[] = [];
  for (const [key, path] of Object.entries(outputs)) {
    let current: string | undefined;
    try {
      current = await Deno.readTextFile(`${root}${path}`);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (current !== fresh[key as keyof typeof outputs]) differing.push(path);
  }
  return differing;
}

if (import.meta.main) {
  if (Deno.args.includes("--check")) {
    const differing = await stale();
    if (differing.length > 0) {
      console.error(`${differing.join(", ")}: not what .ci/gen_x509.ts generates; run \`deno task gen\``);
      Deno.exit(1);
    }
    console.log(`${outputs.js}: current`);
  } else {
    const fresh = await generate();
    await Deno.mkdir(`${root}src/gen/x509`, { recursive: true });
    await Deno.writeTextFile(`${root}${outputs.js}`, fresh.js);
    await Deno.writeTextFile(`${root}${outputs.dts}`, fresh.dts);
    console.log(`wrote ${outputs.js} (${fresh.js.length} bytes) and ${outputs.dts}`);
  }
}
