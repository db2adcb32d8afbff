/**
 * Makes the certificates the floors use, before any timing: `host.crt`/`host.key`
 * (the floor host's AutoMTLS certificate, sent in `PLUGIN_CLIENT_CERT`) and
 * `plugin.crt`/`plugin.key` (the floor plugin's, printed in its handshake
 * line). The same kind of certificate Tether makes per launch (ECDSA P-521,
 * `src/mtls.ts`), made once: a floor is a lower bound, so taking the
 * certificate work out of it is fair (Tether's host makes them ahead of the
 * launch too; a Tether plugin makes its own at start).
 *
 *   deno run -A bench/floor/certs.ts DIR
 *
 * @module
 */

import { generateCertificate } from "../../src/mtls.ts";

/** Writes the two certificate pairs into `dir` (made if missing). */
export async function writeFloorCertificates(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  for (const side of ["host", "plugin"]) {
    const { certPem, keyPem } = await generateCertificate();
    await Deno.writeTextFile(`${dir}/${side}.crt`, certPem);
    await Deno.writeTextFile(`${dir}/${side}.key`, keyPem, { mode: 0o600 });
  }
}

if (import.meta.main) {
  const [dir] = Deno.args;
  if (!dir) {
    console.error("usage: deno run -A bench/floor/certs.ts DIR");
    Deno.exit(2);
  }
  await writeFloorCertificates(dir);
  console.log(`wrote ${dir}/{host,plugin}.{crt,key}`);
}
