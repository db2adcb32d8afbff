/**
 * The owner marker of a private directory and the sweep of dead hosts'
 * directories (src/stale.ts), without timing: the order in which the real
 * launch path makes the marker and the directory is read from a system call
 * trace, and every state a host killed at any point can leave is made
 * directly and swept.
 *
 * @module
 */

import assert from "node:assert/strict";
import { sweepStaleDirs } from "../../src/stale.ts";
import { repoRoot } from "../helpers.ts";

const STRACE = "/usr/bin/strace";
const straceMissing = (() => {
  try {
    return !Deno.statSync(STRACE).isFile;
  } catch {
    return true;
  }
})();

Deno.test({
  name: "owner marker: the launch fills its marker before it makes the private directory (system call order)",
  ignore: straceMissing || Deno.build.os !== "linux",
  fn: async () => {
    const base = await Deno.makeTempDir({ prefix: "tms" });
    try {
      const log = `${base}/trace.log`;
      const out = await new Deno.Command(STRACE, {
        args: [
          "-f",
          "-qq",
          "-s",
          "256",
          "-e",
          "trace=mkdir,mkdirat,openat,write,pwrite64",
          "-e",
          "signal=none",
          "-o",
          log,
          Deno.execPath(),
          "run",
          "-A",
          "--no-prompt",
          `${repoRoot}/tests/fixtures/hosts/make_private_dir.ts`,
          base,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const lines = Deno.readTextFileSync(log).split("\n");
      const made = lines.findIndex((line) =>
        new RegExp(`mkdir(at)?\\(.*"${base}/tether-\\w+", 0700\\) = 0`).test(line)
      );
      assert.ok(made >= 0, `no private directory made:\n${lines.filter((l) => l.includes(base)).join("\n")}`);
      const dir = /"([^"]+)"/.exec(lines[made])![1];
      // The marker: opened by its exact name, and the host's pid written to it, both before the mkdir.
      const opened = lines.findIndex((line) => line.includes(`"${dir}.owner"`) && / = \d+$/.test(line));
      const filled = lines.findIndex((line) => /write(64)?\(\d+, "\{\\"pid\\":/.test(line));
      assert.ok(opened >= 0 && opened < made, `marker opened at line ${opened}, directory made at ${made}`);
      assert.ok(
        filled > opened && filled < made,
        `marker filled at line ${filled}, directory made at ${made}`,
      );
      // And the launch's cleanup left nothing.
      assert.deepEqual(
        [...Deno.readDirSync(base)].map((e) => e.name).filter((n) => n.startsWith("tether-")),
        [],
      );
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  },
});

Deno.test({
  name: "owner marker: the sweep removes what a killed host can leave, and never a directory not owned by it",
  // Directories of another uid need root to make (chown).
  ignore: Deno.build.os !== "linux" || Deno.uid() !== 0,
  fn: async () => {
    const base = await Deno.makeTempDir({ prefix: "tsw" });
    try {
      const boot = Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
      const pidns = Deno.readLinkSync("/proc/self/ns/pid");
      const dead = (extra: Record<string, unknown> = {}) =>
        JSON.stringify({ pid: 4_000_000, start: "1", boot, pidns, ...extra });
      const other = 65534;
      // Killed between filling the marker and making the directory: the marker alone.
      Deno.writeTextFileSync(`${base}/tether-nodir.owner`, dead());
      // Killed later: a marked directory (the control).
      Deno.mkdirSync(`${base}/tether-dead`);
      Deno.writeTextFileSync(`${base}/tether-dead.owner`, dead());
      // Killed between creating and filling the marker: an empty marker, nothing else. Whose it is cannot be
      // told (a live host is in that instant too), so it is kept.
      Deno.writeTextFileSync(`${base}/tether-empty.owner`, "");
      // A dead host's marker with no directory, and another uid made one under that name afterwards: not ours.
      Deno.mkdirSync(`${base}/tether-planted`);
      Deno.writeTextFileSync(`${base}/tether-planted/theirs.txt`, "theirs");
      Deno.chownSync(`${base}/tether-planted`, other, other);
      Deno.writeTextFileSync(`${base}/tether-planted.owner`, dead());
      // A directory the host gave its plugin's uid (recorded in the marker): removed.
      Deno.mkdirSync(`${base}/tether-pluginuid`);
      Deno.chownSync(`${base}/tether-pluginuid`, other, other);
      Deno.writeTextFileSync(`${base}/tether-pluginuid.owner`, dead({ dirUid: other }));

      const removed = await sweepStaleDirs(base);
      assert.deepEqual(removed.sort(), [`${base}/tether-dead`, `${base}/tether-pluginuid`]);
      assert.deepEqual([...Deno.readDirSync(base)].map((e) => e.name).sort(), [
        "tether-empty.owner",
        "tether-planted",
      ]);
      assert.equal(Deno.readTextFileSync(`${base}/tether-planted/theirs.txt`), "theirs");
    } finally {
      await Deno.remove(base, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "owner marker: a live host whose command name holds ') Z ' is not taken for a zombie (its directory stays)",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const base = await Deno.makeTempDir({ prefix: "tsz" });
    const bin = await Deno.makeTempDir({ prefix: "tszb" });
    // The kernel names a process after the file it executed: a live "host" whose /proc/<pid>/stat reads
    // "<pid> (h) Z x) S ...", running or sleeping, with ") Z " inside the name.
    const name = `${bin}/h) Z x`;
    await Deno.symlink("/bin/sleep", name);
    const host = new Deno.Command(name, { args: ["30"] }).spawn();
    try {
      const stat = await Deno.readTextFile(`/proc/${host.pid}/stat`);
      assert.match(stat, /\(h\) Z x\) [RSD] /);
      const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
      const boot = Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
      const pidns = Deno.readLinkSync("/proc/self/ns/pid");
      Deno.mkdirSync(`${base}/tether-live`);
      Deno.writeTextFileSync(
        `${base}/tether-live.owner`,
        JSON.stringify({ pid: host.pid, start, boot, pidns }),
      );
      // The control: a real zombie (a child its parent never reaps) is taken for a dead host.
      const reaper = new Deno.Command("/bin/sh", {
        args: ["-c", "sleep 0 & echo $!; exec sleep 30"],
        stdout: "piped",
      }).spawn();
      const reader = reaper.stdout.getReader();
      const zombie = Number(new TextDecoder().decode((await reader.read()).value).trim());
      reader.releaseLock();
      await reaper.stdout.cancel();
      let zstat = "";
      for (let i = 0; i < 100 && !/\) Z /.test(zstat); i++) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        zstat = await Deno.readTextFile(`/proc/${zombie}/stat`);
      }
      try {
        assert.match(zstat, /\(sleep\) Z /);
        const zstart = zstat.slice(zstat.lastIndexOf(")") + 2).split(" ")[19];
        Deno.mkdirSync(`${base}/tether-zombie`);
        Deno.writeTextFileSync(
          `${base}/tether-zombie.owner`,
          JSON.stringify({ pid: zombie, start: zstart, boot, pidns }),
        );
        assert.deepEqual(await sweepStaleDirs(base), [`${base}/tether-zombie`]);
      } finally {
        reaper.kill();
        await reaper.status;
      }
      assert.ok(Deno.statSync(`${base}/tether-live`).isDirectory, "a live host's directory was removed");
    } finally {
      host.kill();
      await host.status;
      await Deno.remove(base, { recursive: true });
      await Deno.remove(bin, { recursive: true });
    }
  },
});
