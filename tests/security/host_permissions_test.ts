/**
 * The host's own permissions: a Tether host (tests/fixtures/hostile/min_host.ts)
 * that starts the native Go kvplugin and the TypeScript KV example works with
 * the narrowest `deno run` flags we found, and without any one of them fails
 * with an error that names the flag to add.
 *
 * The narrowest flags (see docs/security.md):
 *
 *   --allow-read=<socket base>,<the TypeScript plugin's tree> --allow-write=<socket base>
 *                                            (the tree: the graph check resolves where its modules lead)
 *   --allow-net                              (unix sockets cannot be granted by directory: denoland/deno#36762)
 *   --allow-run=<native plugin paths>,<Deno.execPath()>,/usr/bin/setpriv,/usr/bin/prlimit,/usr/bin/bwrap
 *                                            (setpriv: plugins die with the host; prlimit applies a TS
 *                                            plugin's memory limit, bwrap its namespaces)
 *
 * No env flag: Tether's modules load no grpc-js (it reads GRPC_* at import), so the host needs no env access
 * (only a host that chooses grpc-js for A/B, `setChannelImplementation("grpc-js")`, needs --ignore-env=GRPC_*).
 *
 * and for a native plugin with `sha256`: `--allow-read=<plugin file>` and unscoped `--allow-run` (the
 * verified copy is what runs, and Deno refuses to write any file that `--allow-run` names, so even
 * `integrityDir`'s fixed path cannot be granted).
 *
 * @module
 */

import assert from "node:assert/strict";
import { sha256Hex } from "../../src/integrity.ts";
import { SETPRIV } from "../../src/lifeline.ts";
import { goFixture, ignoreWithoutGo, repoRoot } from "../helpers.ts";
import { shortTempDir, tetherDirs } from "./support.ts";

const minHost = `${repoRoot}/tests/fixtures/hostile/min_host.ts`;
const tsPlugin = `${repoRoot}/examples/kv/plugin.ts`;
const denoConfig = `${repoRoot}/deno.json`;
const deno = Deno.execPath();
// A TypeScript plugin runs under prlimit (its memory limit) and bubblewrap (its namespaces).
const prlimit = "/usr/bin/prlimit";
const bwrap = "/usr/bin/bwrap";

interface HostResult {
  ok: boolean;
  code: number;
  /** The host's JSON error line, if it printed one. */
  error?: { error: string; code?: string; message: string };
  stdout: string;
  stderr: string;
}

interface HostConfig {
  go?: string;
  goSha256?: string;
  integrityDir?: string;
  ts?: string;
  tsSha256?: string;
  denoConfig?: string;
  base: string;
}

/** Runs the minimal host with exactly these permission flags. */
async function runHost(flags: string[], config: HostConfig): Promise<HostResult> {
  const out = await new Deno.Command(deno, {
    args: [
      "run",
      "--no-prompt",
      "--config",
      denoConfig,
      "--cached-only",
      ...flags,
      minHost,
      JSON.stringify(config),
    ],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  const last = stdout.trim().split("\n").pop() ?? "";
  let error: HostResult["error"];
  if (last.startsWith("{")) error = JSON.parse(last);
  return { ok: out.success && last === "ok", code: out.code, error, stdout, stderr };
}

function describe(result: HostResult): string {
  return `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr.slice(-2000)}`;
}

/** The host failed with a TetherError `permission` whose message contains `flag`. */
function assertNamesFlag(result: HostResult, flag: string, label: string): void {
  assert.ok(!result.ok, `${label}: the host worked without it`);
  assert.equal(result.error?.error, "TetherError", `${label}: not a TetherError\n${describe(result)}`);
  assert.equal(result.error?.code, "permission", `${label}: ${describe(result)}`);
  assert.ok(
    result.error!.message.includes(`run the host with ${flag}`),
    `${label}: the message does not name ${flag}:\n${result.error!.message}`,
  );
  console.log(`  without ${label}: permission error naming ${flag.split(" ")[0]}`);
}

/** Runs `cases` with at most `limit` hosts at a time (each host starts plugins: keep the machine responsive). */
async function pooled<T>(cases: (() => Promise<T>)[], limit = 3): Promise<T[]> {
  const results: T[] = new Array(cases.length);
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < cases.length) {
      const index = next++;
      results[index] = await cases[index]();
    }
  }));
  return results;
}

Deno.test({
  name: "host permissions: narrowest flags work; each missing flag is named in the error",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await shortTempDir("thp");
    try {
      const base = `${dir}/s`;
      await Deno.mkdir(base);
      const kvplugin = await goFixture("kvplugin");
      const config: HostConfig = { go: kvplugin, ts: tsPlugin, denoConfig, base };
      const narrow = {
        // The TypeScript plugin's tree (the directory of its denoConfig): the module graph check resolves
        // where each module and grant really leads, and refuses what the host may not resolve.
        read: `--allow-read=${base},${repoRoot}`,
        write: `--allow-write=${base}`,
        net: "--allow-net",
        run: `--allow-run=${kvplugin},${deno},${SETPRIV},${prlimit},${bwrap}`,
      };
      const all = Object.values(narrow);

      const works = await runHost(all, config);
      assert.ok(works.ok, `the narrowest flags do not work: ${describe(works)}`);
      console.log(`  works with: ${all.join(" ")}`);

      const [
        noWrite,
        noRead,
        noNet,
        noRunGo,
        noRunDeno,
        noRunSetpriv,
        tsNoNet,
        tsNoRead,
        tsNoReadTree,
        tsNoWrite,
        tsNoPrlimit,
      ] = await pooled([
        () => runHost(all.filter((flag) => flag !== narrow.write), config),
        () => runHost(all.filter((flag) => flag !== narrow.read), config),
        () => runHost(all.filter((flag) => flag !== narrow.net), config),
        () =>
          runHost(
            [
              ...all.filter((flag) => flag !== narrow.run),
              `--allow-run=${deno},${SETPRIV},${prlimit},${bwrap}`,
            ],
            config,
          ),
        () =>
          runHost([
            ...all.filter((flag) => flag !== narrow.run),
            `--allow-run=${kvplugin},${SETPRIV},${prlimit},${bwrap}`,
          ], config),
        () =>
          runHost(
            [
              ...all.filter((flag) => flag !== narrow.run),
              `--allow-run=${kvplugin},${deno},${prlimit},${bwrap}`,
            ],
            config,
          ),
        // The TypeScript plugin alone.
        () => runHost(all.filter((flag) => flag !== narrow.net), { ...config, go: undefined }),
        () =>
          runHost(all.map((flag) => flag === narrow.read ? `--allow-read=${repoRoot}` : flag), {
            ...config,
            go: undefined,
          }),
        () =>
          runHost(all.map((flag) => flag === narrow.read ? `--allow-read=${base}` : flag), {
            ...config,
            go: undefined,
          }),
        () => runHost(all.filter((flag) => flag !== narrow.write), { ...config, go: undefined }),
        () =>
          runHost([
            ...all.filter((flag) => flag !== narrow.run),
            `--allow-run=${kvplugin},${deno},${SETPRIV},${bwrap}`,
          ], {
            ...config,
            go: undefined,
          }),
      ]);
      assertNamesFlag(noWrite, `--allow-write=${base}`, "--allow-write (go)");
      assertNamesFlag(noRead, `--allow-read=${base}`, "--allow-read (go)");
      assertNamesFlag(noNet, "--allow-net (", "--allow-net (go)");
      assert.match(noNet.error!.message, /denoland\/deno#36762/);
      assertNamesFlag(noRunGo, `--allow-run=${kvplugin}`, "the Go plugin in --allow-run");
      assertNamesFlag(noRunDeno, `--allow-run=${deno}`, "Deno in --allow-run");
      assertNamesFlag(
        noRunSetpriv,
        `--allow-run=${SETPRIV}`,
        "setpriv (plugins die with the host) in --allow-run",
      );
      assertNamesFlag(tsNoNet, "--allow-net (", "--allow-net (ts)");
      assertNamesFlag(tsNoRead, `--allow-read=${base}`, "--allow-read (ts)");
      assertNamesFlag(tsNoReadTree, `--allow-read=${repoRoot}`, "the plugin's tree in --allow-read (ts)");
      assert.match(
        tsNoReadTree.error!.message,
        new RegExp(`the host needs --allow-read on ${repoRoot} to check the plugin's module graph`),
      );
      assertNamesFlag(tsNoWrite, `--allow-write=${base}`, "--allow-write (ts)");
      assertNamesFlag(tsNoPrlimit, `--allow-run=${prlimit}`, "prlimit in --allow-run (ts)");

      // No env flag at all among the narrowest: the host reads no environment variable while it loads.
      assert.ok(
        !all.some((flag) => flag.includes("-env")),
        `an env flag among the narrowest: ${all.join(" ")}`,
      );

      // Nothing left behind by any of the failed launches.
      assert.deepEqual(tetherDirs(base), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "host permissions with sha256 (native): read the plugin file, and --allow-run cannot be scoped",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await shortTempDir("thi");
    try {
      const base = `${dir}/s`;
      await Deno.mkdir(base);
      const kvplugin = await goFixture("kvplugin");
      const goSha256 = await sha256Hex(await Deno.readFile(kvplugin));
      const config: HostConfig = { go: kvplugin, goSha256, base };
      const narrow = {
        read: `--allow-read=${base},${kvplugin}`,
        write: `--allow-write=${base}`,
        net: "--allow-net",
        // What runs is the verified copy in the launch's private directory (a new path each time), and
        // Deno refuses to write any file that --allow-run names: only unscoped --allow-run works.
        run: "--allow-run",
      };
      const all = Object.values(narrow);
      const works = await runHost(all, config);
      assert.ok(works.ok, `the narrowest flags do not work: ${describe(works)}`);
      console.log(`  works with: ${all.join(" ")}`);

      const integrityDir = `${dir}/verified`;
      const copy = `${integrityDir}/go-kv-kvplugin`;
      const [noReadPlugin, scopedRun, fixedCopy] = await pooled([
        () => runHost(all.map((flag) => flag === narrow.read ? `--allow-read=${base}` : flag), config),
        () => runHost(all.map((flag) => flag === narrow.run ? `--allow-run=${kvplugin}` : flag), config),
        // integrityDir gives the copy a fixed path, but granting it to --allow-run forbids writing it.
        () =>
          runHost([
            `--allow-read=${base},${kvplugin},${integrityDir}`,
            `--allow-write=${base},${integrityDir}`,
            narrow.net,
            `--allow-run=${copy}`,
          ], { ...config, integrityDir }),
      ]);
      assertNamesFlag(noReadPlugin, `--allow-read=${kvplugin}`, "the plugin file in --allow-read");
      assertNamesFlag(scopedRun, "--allow-run (unscoped)", "unscoped --allow-run (scoped to the original)");
      assertNamesFlag(
        fixedCopy,
        "--allow-run (unscoped)",
        "unscoped --allow-run (scoped to integrityDir's copy)",
      );
      assert.deepEqual(tetherDirs(base), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("host permissions with sha256 (bundled TS plugin): only --allow-read=<the bundle> more", async () => {
  const dir = await shortTempDir("thb");
  try {
    const base = `${dir}/s`;
    await Deno.mkdir(base);
    const bundle = `${dir}/kv.bundle.js`;
    const bundled = await new Deno.Command(deno, {
      args: ["bundle", "--config", denoConfig, tsPlugin, "-o", bundle],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(bundled.success, new TextDecoder().decode(bundled.stderr));
    const config: HostConfig = { ts: bundle, tsSha256: await sha256Hex(await Deno.readFile(bundle)), base };
    const narrow = {
      read: `--allow-read=${base},${bundle}`,
      write: `--allow-write=${base}`,
      net: "--allow-net",
      run: `--allow-run=${deno},${SETPRIV},${prlimit},${bwrap}`,
    };
    const all = Object.values(narrow);
    const works = await runHost(all, config);
    assert.ok(works.ok, `the narrowest flags do not work: ${describe(works)}`);
    console.log(`  works with: ${all.join(" ")}`);
    const noReadBundle = await runHost(
      all.map((flag) => flag === narrow.read ? `--allow-read=${base}` : flag),
      config,
    );
    assertNamesFlag(noReadBundle, `--allow-read=${bundle}`, "the bundle in --allow-read");
    assert.deepEqual(tetherDirs(base), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
