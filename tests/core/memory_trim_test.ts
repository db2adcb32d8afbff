/**
 * The idle memory trim of `deno` plugins (src/memory_trim.ts): a plugin
 * Tether launches with the trim on (the default) has `DENO_USR2_MEMORY_TRIM=1`
 * and, once idle after its calls, is sent SIGUSR2 (its anonymous RSS, read by
 * this test from /proc, ends lower than the same plugin's with the trim off,
 * in the same run) and still answers; with the trim off, or for a native
 * plugin, nothing is signalled (a Deno process without the variable dies of
 * SIGUSR2, so one that still answers was never signalled). Linux only.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type LogRecord, PluginClient, TetherError } from "../../mod.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { probeNamespaces } from "../../src/isolation.ts";
import {
  catchesSigusr2,
  DEFAULT_TRIM_IDLE_MS,
  findTrimTarget,
  resolveMemoryTrim,
  safeToSignal,
} from "../../src/memory_trim.ts";
import { kvHandshake } from "../../examples/kv/handshake.ts";
import { denoPlugin, eventually, goFixture, ignoreWithoutGo, repoRoot } from "../helpers.ts";

const linux = Deno.build.os === "linux";
const namespaces = linux ? await probeNamespaces() : { ok: false as const, reason: "not Linux" };
if (linux && !namespaces.ok) {
  if (Deno.env.get("CI") === "true") {
    throw new Error(`tests/core/memory_trim_test.ts needs bubblewrap: ${JSON.stringify(namespaces)}`);
  }
  console.warn(
    `NOTICE: bubblewrap cannot make namespaces here (${
      JSON.stringify(namespaces)
    }): the namespaces case of ` +
      "tests/core/memory_trim_test.ts is IGNORED (not passed)",
  );
}
const MODES = namespaces.ok ? ["namespaces", "deno-only"] as const : ["deno-only"] as const;
const BWRAP = namespaces.ok ? [namespaces.bwrap] : [];
const TRIM_LOG = "plugin idle: memory trimmed";
/** How much lower a trimmed plugin's anonymous RSS must be than the untrimmed one's, KiB. */
const TRIM_MARGIN_KIB = 6 * 1024;

class Logs {
  readonly records: LogRecord[] = [];
  log(record: LogRecord): void {
    this.records.push(record);
  }
  trims(): LogRecord[] {
    return this.records.filter((record) => record.message === TRIM_LOG);
  }
}

function statusKiB(pid: number, field: string): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)![1]);
}

function environ(pid: number): string[] {
  return Deno.readTextFileSync(`/proc/${pid}/environ`).split("\0");
}

/** The Deno process of a launch (found independently of the trimmer's own walk: by name and the tree). */
function denoProcess(root: number): number {
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (Deno.readTextFileSync(`/proc/${pid}/comm`).trim() === "deno") return pid;
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      const children = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`).trim();
      if (children) queue.push(...children.split(" ").map(Number));
    }
  }
  throw new Error(`no deno process below ${root}`);
}

const kvPlugin = `${repoRoot}/examples/kv/plugin.ts`;
const value = new Uint8Array(4096).fill(120);

async function busy(client: PluginClient, calls: number): Promise<void> {
  const kv = client.dispense(KV);
  for (let i = 0; i < calls; i++) {
    if (i % 2 === 0) await kv.put({ key: `k${i % 200}`, value });
    else await kv.get({ key: `k${(i - 1) % 200}` });
  }
}

async function answers(client: PluginClient): Promise<boolean> {
  await client.dispense(KV).put({ key: "after", value: new Uint8Array([1]) });
  return (await client.dispense(KV).get({ key: "after" })).found;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("memoryTrim: default on with idleMs 2000 for deno plugins; false, { idleMs }; native never; bad values named", () => {
  assert.deepEqual(resolveMemoryTrim(undefined, "deno", "kv"), { idleMs: DEFAULT_TRIM_IDLE_MS });
  assert.equal(DEFAULT_TRIM_IDLE_MS, 2000);
  assert.deepEqual(resolveMemoryTrim(true, "deno", "kv"), { idleMs: 2000 });
  assert.deepEqual(resolveMemoryTrim({ idleMs: 750 }, "deno", "kv"), { idleMs: 750 });
  assert.deepEqual(resolveMemoryTrim({}, "deno", "kv"), { idleMs: 2000 });
  assert.equal(resolveMemoryTrim(false, "deno", "kv"), undefined);
  assert.equal(resolveMemoryTrim(undefined, "native", "kv"), undefined);
  assert.equal(resolveMemoryTrim({ idleMs: 750 }, "native", "kv"), undefined);
  const cases: [unknown, RegExp][] = [
    [
      { idleMs: 99 },
      /plugin kv: memoryTrim\.idleMs must be a whole number of milliseconds from 100 to 86400000, found 99/,
    ],
    [{ idleMs: 1.5 }, /memoryTrim\.idleMs .* found 1\.5/],
    [{ idleMs: "2000" }, /memoryTrim\.idleMs .* found "2000"/],
    [{ idle: 2000 }, /plugin kv: memoryTrim has unknown field idle \(the only field is idleMs\)/],
    ["yes", /plugin kv: memoryTrim must be true, false or \{ idleMs \}, found "yes"/],
    [null, /memoryTrim must be true, false or \{ idleMs \}, found null/],
    [[1], /memoryTrim must be true, false or \{ idleMs \}/],
  ];
  for (const [option, message] of cases) {
    // Checked for native plugins too: a typo is caught where it has no effect.
    for (const runtime of ["deno", "native"] as const) {
      assert.throws(
        () => resolveMemoryTrim(option as never, runtime, "kv"),
        (error: unknown) =>
          error instanceof TetherError && error.code === "config" && message.test(error.message),
      );
    }
  }
});

Deno.test({
  name: "memoryTrim: a bad value refuses the launch before anything is created",
  ignore: !linux,
  async fn() {
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "trim-" });
    try {
      const client = new PluginClient({
        cmd: kvPlugin,
        denoConfig: `${repoRoot}/deno.json`,
        handshake: kvHandshake,
        unixSocketDir: dir,
        memoryTrim: { idleMs: 0 },
        logger: new Logs(),
      });
      await assert.rejects(
        client.start(),
        (error: unknown) =>
          error instanceof TetherError && error.code === "config" && /memoryTrim\.idleMs/.test(error.message),
      );
      assert.deepEqual([...Deno.readDirSync(dir)], []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

for (const isolation of MODES) {
  Deno.test({
    name:
      `${isolation}: an idle deno plugin is trimmed (anonymous RSS below the untrimmed one's) and still answers; off: no variable, never signalled`,
    ignore: !linux,
    async fn() {
      const start = (memoryTrim: false | { idleMs: number }, logger: Logs) =>
        new PluginClient({
          cmd: kvPlugin,
          denoConfig: `${repoRoot}/deno.json`,
          handshake: kvHandshake,
          isolation,
          memoryTrim,
          logger,
        });
      const onLogs = new Logs();
      const offLogs = new Logs();
      const on = start({ idleMs: 500 }, onLogs);
      const off = start(false, offLogs);
      try {
        await Promise.all([on.start(), off.start()]);
        // The same work, one plugin after the other (two cores are shared with other work).
        // The untrimmed plugin first: it then idles longer than the trimmed one before the readings, so any
        // memory V8 or glibc give back on their own while idle favours it, not the trim.
        await busy(off, 1500);
        await busy(on, 1500);
        // It may have been trimmed once already, idle after its start while the other plugin worked.
        const trimsBefore = onLogs.trims().length;
        const onDeno = denoProcess(on.pid!);
        const offDeno = denoProcess(off.pid!);
        if (isolation === "namespaces") {
          assert.notEqual(onDeno, on.pid, "under bwrap deno is not the spawned process");
        } else assert.equal(onDeno, on.pid, "setpriv and prlimit exec into deno");

        // The host decided the variable: only the trimmed launch has it, and only it catches SIGUSR2.
        assert.ok(environ(onDeno).includes("DENO_USR2_MEMORY_TRIM=1"));
        assert.ok(!environ(offDeno).some((entry) => entry.startsWith("DENO_USR2_MEMORY_TRIM=")));
        assert.equal(catchesSigusr2(onDeno), true);
        assert.equal(catchesSigusr2(offDeno), false);

        assert.ok(
          await eventually(() => onLogs.trims().length > trimsBefore, 20_000),
          `the idle plugin was not trimmed; host log: ${
            JSON.stringify(onLogs.records.filter((r) => r.level !== "debug"))
          }`,
        );
        const trim = onLogs.trims()[trimsBefore];
        assert.equal(trim.fields?.pid, onDeno, "SIGUSR2 went to the Deno process itself");
        // The untrimmed plugin idles at least as long (its calls ended before the trimmed one's wait began).
        await sleep(1000);
        const onAnon = statusKiB(onDeno, "RssAnon");
        const offAnon = statusKiB(offDeno, "RssAnon");
        // Measured: 14 to 16 MiB lower trimmed; untrimmed pairs differ by up to 2 MiB either way.
        assert.ok(
          onAnon + TRIM_MARGIN_KIB < offAnon,
          `trimmed plugin's anonymous RSS ${onAnon} KiB should be at least ${TRIM_MARGIN_KIB} KiB below the ` +
            `untrimmed one's ${offAnon} KiB`,
        );
        assert.equal(await answers(on), true, "the trimmed plugin still answers");
        // Never signalled: without the variable SIGUSR2 would have ended it.
        assert.equal(await answers(off), true, "the untrimmed plugin was never signalled");
        assert.equal(off.hasExited, false);
        assert.deepEqual(offLogs.trims(), []);
      } finally {
        await Promise.all([on.kill(), off.kill()]);
      }
    },
  });
}

Deno.test({
  name:
    "native plugins are never signalled and get no DENO_USR2_MEMORY_TRIM (deno run as a native command, Go)",
  ignore: !linux || ignoreWithoutGo(),
  async fn() {
    const logs = new Logs();
    // The deno executable run as a native command: the trimmer's executable check would match it, so only the
    // runtime keeps it out. It has no trim handler: one SIGUSR2 would end it.
    const asNative = denoPlugin("examples/kv/plugin.ts");
    const native = new PluginClient({
      ...asNative,
      runtime: "native",
      handshake: kvHandshake,
      memoryTrim: { idleMs: 100 },
      logger: logs,
    });
    const go = new PluginClient({
      cmd: await goFixture("kvplugin"),
      handshake: kvHandshake,
      memoryTrim: { idleMs: 100 },
      logger: logs,
    });
    try {
      await Promise.all([native.start(), go.start()]);
      await busy(native, 200);
      await busy(go, 200);
      await sleep(1500);
      for (const client of [native, go]) {
        assert.ok(!environ(client.pid!).some((entry) => entry.startsWith("DENO_USR2_MEMORY_TRIM=")));
      }
      assert.equal(catchesSigusr2(native.pid!), false);
      assert.equal(await answers(native), true, "still alive: never signalled");
      assert.equal(await answers(go), true);
      assert.deepEqual(logs.trims(), []);
    } finally {
      await Promise.all([native.kill(), go.kill()]);
    }
  },
});

Deno.test({
  name:
    "findTrimTarget: the Deno process a launch started, never one it started itself; safeToSignal needs the variable and the handler",
  ignore: !linux,
  async fn() {
    const deno = Deno.execPath();
    // A deno process (with the variable) that starts another deno process (without it).
    const outer = new Deno.Command(deno, {
      args: [
        "eval",
        "new Deno.Command(Deno.execPath(), { args: ['eval', 'setTimeout(() => {}, 30000)'], clearEnv: true })" +
        ".spawn(); setTimeout(() => {}, 30000);",
      ],
      env: { DENO_USR2_MEMORY_TRIM: "1" },
      stdout: "null",
      stderr: "null",
    }).spawn();
    const shell = new Deno.Command("/bin/sh", {
      args: ["-c", `"${deno}" eval 'setTimeout(() => {}, 30000)'; true`],
      env: { DENO_USR2_MEMORY_TRIM: "1" },
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      assert.ok(
        await eventually(() => {
          const kids = Deno.readTextFileSync(`/proc/${outer.pid}/task/${outer.pid}/children`).trim();
          return kids !== "" && catchesSigusr2(outer.pid);
        }, 10_000),
      );
      const target = findTrimTarget(outer.pid, deno, BWRAP);
      assert.equal(target?.pid, outer.pid, "the launched process, not the one it started");
      assert.equal(safeToSignal(target!, deno), true);
      const inner = Number(Deno.readTextFileSync(`/proc/${outer.pid}/task/${outer.pid}/children`).trim());
      // Not started with the variable (no handler): never safe.
      assert.equal(safeToSignal({ pid: inner, start: target!.start }, deno), false, "another start time");
      const innerStart = Deno.readTextFileSync(`/proc/${inner}/stat`).split(") ")[1].split(" ")[19];
      assert.equal(safeToSignal({ pid: inner, start: innerStart }, deno), false, "no variable, no handler");
      // Anything but Deno or a wrapper stops the walk: the deno process below a shell is not the launch's.
      assert.ok(
        await eventually(
          () => Deno.readTextFileSync(`/proc/${shell.pid}/task/${shell.pid}/children`).trim() !== "",
          10_000,
        ),
      );
      assert.equal(findTrimTarget(shell.pid, deno, BWRAP), undefined);
      // With the shell named as a wrapper the walk goes through it (how bubblewrap is walked).
      assert.equal(typeof findTrimTarget(shell.pid, deno, ["/bin/sh"])?.pid, "number");
    } finally {
      // Their children first (nothing waits for them once their parents are gone), then the parents.
      for (const child of [outer, shell]) {
        const kids = Deno.readTextFileSync(`/proc/${child.pid}/task/${child.pid}/children`).trim();
        for (const pid of kids ? kids.split(" ").map(Number) : []) Deno.kill(pid, "SIGKILL");
        child.kill("SIGKILL");
        await child.status;
      }
    }
  },
});
