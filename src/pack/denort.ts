/**
 * Whether `deno compile` can make a working executable here. It needs
 * `denort` (Deno's runtime without the CLI): from `DENORT_BIN`, or downloaded
 * from dl.deno.land into `DENO_DIR/dl`. Pointing `DENORT_BIN` at the full
 * `deno` makes `deno compile` succeed but builds a binary that only starts the
 * REPL, so the check compiles a probe and runs it.
 *
 * @module
 */

/** What {@linkcode probeDenort} found. */
export type DenortProbe = { readonly ok: true; readonly denort: string } | {
  readonly ok: false;
  readonly reason: string;
};

const PROBE_TEXT = "tether-denort-ok";

async function denoDir(): Promise<string | undefined> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json"],
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => undefined);
  return out?.success ? JSON.parse(new TextDecoder().decode(out.stdout)).denoDir : undefined;
}

/**
 * Finds denort and checks that `deno compile` with it builds a binary that
 * runs its program. Never downloads anything.
 *
 * @param env Where `DENORT_BIN` is read (default: this process's environment).
 *
 * @example
 * ```ts ignore
 * import { probeDenort } from "./denort.ts";
 * const found = await probeDenort();
 * console.log(found.ok ? found.denort : found.reason);
 * ```
 */
export async function probeDenort(env: Record<string, string | undefined> = Deno.env.toObject()): Promise<
  DenortProbe
> {
  let denort = env.DENORT_BIN;
  if (!denort) {
    const dir = await denoDir();
    const release = `${dir}/dl/release/v${Deno.version.deno}`;
    try {
      for (const entry of Deno.readDirSync(release)) {
        if (entry.name.startsWith("denort-")) denort = `${release}/${entry.name}`;
      }
    } catch {
      // Nothing downloaded.
    }
    if (!denort) {
      return {
        ok: false,
        reason:
          `deno compile needs denort ${Deno.version.deno}: DENORT_BIN is not set and ${release} holds no ` +
          "denort download (deno compile would fetch it from dl.deno.land)",
      };
    }
  }
  const dir = await Deno.makeTempDir({ prefix: "tether-denort-" });
  try {
    await Deno.writeTextFile(`${dir}/probe.js`, `console.log(${JSON.stringify(PROBE_TEXT)});\n`);
    const compile = await new Deno.Command(Deno.execPath(), {
      args: ["compile", "--quiet", "--no-config", "-o", `${dir}/probe`, `${dir}/probe.js`],
      env: {
        ...(env.DENORT_BIN ? { DENORT_BIN: env.DENORT_BIN } : {}),
        DENO_NO_UPDATE_CHECK: "1",
        NO_COLOR: "1",
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!compile.success) {
      return {
        ok: false,
        reason: `deno compile with denort ${denort} failed: ${
          new TextDecoder().decode(compile.stderr).trim()
        }`,
      };
    }
    const run = await new Deno.Command(`${dir}/probe`, {
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
    if (text.includes(PROBE_TEXT)) return { ok: true, denort };
    return {
      ok: false,
      reason: /REPL|exit using ctrl/.test(text)
        ? `DENORT_BIN=${denort} is the full deno CLI, not denort: the binary deno compile builds with it only ` +
          "starts the REPL"
        : `the binary deno compile built with ${denort} did not run its program: ${
          text.trim().slice(0, 200)
        }`,
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
