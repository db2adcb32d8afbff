/**
 * The sandbox of TypeScript plugins, layer by layer (docs/security.md):
 * Deno's flags decide (no permission broker a plugin could forge answers
 * on), the audit is the plugin's word and is labelled so, the module graph
 * check refuses literal imports outside the plugin's tree, namespaces hide
 * what is not bound, every launch has its own storage origin, socket grants
 * are watched, memory limits end a plugin with a typed error. Both OS layers
 * (`namespaces` and `deno-only`) are run where it matters.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type PermissionEvent, PluginClient } from "../../mod.ts";
import { AUDIT_MAX_LINE_BYTES, AuditReader, type AuditTamper, parseAuditLine } from "../../src/audit.ts";
import { checkGrantLinks, checkModuleGraph, moduleFlags } from "../../src/graph.ts";
import { bwrapArgs, probeNamespaces, resolveLimits } from "../../src/isolation.ts";
import { prepareLaunch, refusedDenoEnv, runtimeFor } from "../../src/launch.ts";
import { PermissionPolicy } from "../../src/permissions.ts";
import { ConfigError, parsePluginsConfig } from "../../src/sftpgo/config.ts";
import { KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { processesMatching, repoRoot } from "../helpers.ts";
import { eventually, kvHandshake, Recorder, rejectsWith, shortTempDir, tetherDirs, text } from "./support.ts";

const probePlugin = `${repoRoot}/tests/fixtures/sandbox/probe.ts`;
const denoConfig = `${repoRoot}/deno.json`;
const deno = Deno.execPath();
const namespaces = await probeNamespaces();
if (!namespaces.ok) {
  // CI installs bubblewrap (.ci/run): there a missing bwrap fails the run, it never skips the namespace half.
  if (Deno.env.get("CI") === "true") {
    throw new Error(`tests/security/sandbox_test.ts needs bubblewrap: ${JSON.stringify(namespaces)}`);
  }
  console.warn(
    `NOTICE: bubblewrap cannot make namespaces here (${
      JSON.stringify(namespaces)
    }): the namespace tests of ` +
      "tests/security/sandbox_test.ts are IGNORED (not passed); install bubblewrap (Linux) to run them",
  );
}
const MODES = namespaces.ok ? ["namespaces", "deno-only"] as const : ["deno-only"] as const;

async function probe(client: PluginClient, name: string, arg = ""): Promise<Record<string, unknown>> {
  const response = await client.dispense(KV).get({ key: `probe:${name}:${arg}` });
  assert.ok(response.found, `probe ${name}: no answer`);
  return JSON.parse(text(response.value));
}

function probeClient(
  dir: string,
  extra: Partial<ConstructorParameters<typeof PluginClient>[0]> = {},
): PluginClient {
  return new PluginClient({
    cmd: probePlugin,
    denoConfig,
    handshake: kvHandshake,
    unixSocketDir: dir,
    ...extra,
  });
}

for (const isolation of MODES) {
  Deno.test(`${isolation}: no permission broker exists; broker lines a plugin forges on every fd grant nothing`, async () => {
    const dir = await shortTempDir("tsf");
    const launch = await prepareLaunch({
      name: "forge",
      cmd: `${repoRoot}/tests/fixtures/sandbox/forge.ts`,
      args: [],
      privateDirBase: dir,
      cookieKey: kvHandshake.magicCookieKey,
      logger: new Recorder(),
      isolation,
      // The forger adopts every fd 3..63 as a node:net Socket, Deno's own runtime fds included; with Deno's SIGUSR2
      // trim handler registered (DENO_USR2_MEMORY_TRIM, memoryTrim's default) Deno 2.9.6 then sometimes aborts
      // ("unable to create worker threads") before the forger prints its outcome: it harms only itself.
      memoryTrim: false,
    });
    try {
      assert.equal(launch.isolation, isolation);
      assert.equal(launch.env.DENO_PERMISSION_BROKER_PATH, undefined);
      // Exactly how PluginClient spawns a plugin: this command line, this environment and nothing else.
      const out = await new Deno.Command(launch.cmd, {
        args: launch.args,
        env: launch.env,
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const line = text(out.stderr).split("\n").find((l) => l.startsWith("FORGE "));
      assert.ok(line, text(out.stderr));
      const outcome = JSON.parse(line.slice("FORGE ".length));
      assert.ok(outcome.wrote.length > 0, `no fd took the forged lines: ${line}`);
      assert.equal(outcome.ran, false, `the plugin ran /bin/sh: ${line}`);
      assert.match(outcome.error, /NotCapable: Requires run access to "\/bin\/sh"/);
    } finally {
      await launch.cleanup();
      assert.deepEqual(tetherDirs(dir), []);
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("the launch sets no DENO_PERMISSION_BROKER_PATH; Deno's own flags carry exactly the grants", async () => {
  const dir = await shortTempDir("tsb");
  const launch = await prepareLaunch({
    name: "probe",
    cmd: probePlugin,
    args: [],
    denoConfig,
    privateDirBase: dir,
    permissions: { read: ["/srv/data"], net: ["example.com:443"] },
    cookieKey: kvHandshake.magicCookieKey,
    logger: new Recorder(),
    isolation: "deno-only",
  });
  try {
    assert.equal(launch.env.DENO_PERMISSION_BROKER_PATH, undefined);
    assert.equal(launch.env.DENO_AUDIT_PERMISSIONS, `${launch.privateDir}/permission-audit.jsonl`);
    assert.ok(!JSON.stringify(launch.args).includes("permissions.sock"));
    const read = launch.args.find((arg) => arg.startsWith("--allow-read="))!;
    assert.ok(read.split("=")[1].split(",").includes("/srv/data"));
    assert.ok(
      read.split("=")[1].split(",").every((entry) => entry === "/srv/data" || entry.endsWith(".sock")),
    );
    const net = launch.args.find((arg) => arg.startsWith("--allow-net="))!.slice("--allow-net=".length).split(
      ",",
    );
    assert.ok(net.includes("example.com:443"));
    assert.ok(
      net.every((entry) => entry === "example.com:443" || /^unix:.*\.sock$/.test(entry)),
      net.join(","),
    );
    assert.ok(launch.args.includes("--no-prompt"));
    assert.ok(!launch.args.some((arg) => arg === "-A" || arg === "--allow-all" || arg === "--allow-run"));
  } finally {
    await launch.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno-only: a literal import outside the plugin's tree is refused before launch, naming the file", async () => {
  const dir = await shortTempDir("tsl");
  try {
    const error = await rejectsWith(
      probeClient(dir, {
        cmd: `${repoRoot}/tests/fixtures/sandbox/literal_import.ts`,
        isolation: "deno-only",
      })
        .start(),
      "config",
    );
    assert.match(error.message, /module \/etc\/hostname/);
    assert.match(error.message, /imported by file:\/\/.*literal_import\.ts/);
    assert.deepEqual(tetherDirs(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("graph check: symlinks are judged by where they lead; read grants widen the tree", async () => {
  const dir = await shortTempDir("tsg");
  try {
    const tree = `${dir}/plugin`;
    await Deno.mkdir(tree);
    await Deno.writeTextFile(`${dir}/outside.ts`, "export const secret = 42;\n");
    await Deno.writeTextFile(`${dir}/data.txt`, "data\n");
    await Deno.symlink(`${dir}/outside.ts`, `${tree}/lib.ts`);
    await Deno.writeTextFile(`${tree}/main.ts`, 'import { secret } from "./lib.ts";\nconsole.log(secret);\n');
    const error = await rejectsWith(
      checkModuleGraph({
        plugin: "g",
        entry: `${tree}/main.ts`,
        moduleFlags: ["--no-config"],
        allowed: [tree],
      }),
      "config",
    );
    assert.match(error.message, new RegExp(`module ${tree}/lib.ts \\(really ${dir}/outside.ts\\)`));
    // The same graph with the target's directory granted for reading is fine.
    const files = await checkModuleGraph({
      plugin: "g",
      entry: `${tree}/main.ts`,
      moduleFlags: ["--no-config"],
      allowed: [tree, dir],
    });
    assert.ok(files.includes(`${dir}/outside.ts`));
    // A literal text import of a granted file passes; of another one it does not.
    await Deno.writeTextFile(
      `${tree}/text.ts`,
      `import data from "${dir}/data.txt" with { type: "text" };\nconsole.log(data);\n`,
    );
    await checkModuleGraph({
      plugin: "g",
      entry: `${tree}/text.ts`,
      moduleFlags: ["--no-config"],
      allowed: [tree, `${dir}/data.txt`],
    });
    await rejectsWith(
      checkModuleGraph({
        plugin: "g",
        entry: `${tree}/text.ts`,
        moduleFlags: ["--no-config"],
        allowed: [tree],
      }),
      "config",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("namespaces: a literal import the graph check did not see finds nothing outside the binds", async () => {
  // The namespace layer on its own (as if a file had been swapped after the check): the secret is not there.
  const dir = await shortTempDir("tsn");
  try {
    const tree = `${dir}/plugin`;
    await Deno.mkdir(tree);
    const secret = `${dir}/secret.txt`;
    await Deno.writeTextFile(secret, "s3cr3t\n");
    await Deno.writeTextFile(
      `${tree}/main.ts`,
      `import s from "${secret}" with { type: "text" };\nconsole.log("LEAKED " + s);\n`,
    );
    await Deno.mkdir(`${dir}/private`);
    const run = ["run", "--no-prompt", "--no-config", `${tree}/main.ts`];
    const bare = await new Deno.Command(deno, { args: run, stdout: "piped", stderr: "piped" }).output();
    assert.match(text(bare.stdout), /LEAKED s3cr3t/, "control: Deno alone loads the literal import");
    const found = await probeNamespaces();
    assert.ok(found.ok);
    const boxed = await new Deno.Command(found.bwrap, {
      args: bwrapArgs({
        bwrap: found.bwrap,
        deno,
        privateDir: `${dir}/private`,
        readOnly: [tree],
        readWrite: [],
        shareNet: false,
        cwd: tree,
      }, [deno, ...run]),
      clearEnv: true,
      env: { NO_COLOR: "1", DENO_DIR: `${dir}/private/deno` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(!text(boxed.stdout).includes("s3cr3t"));
    assert.match(text(boxed.stderr), /Module not found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const isolation of MODES) {
  Deno.test(`${isolation}: each launch has its own storage origin (host's and earlier launches' data unreachable)`, async () => {
    const dir = await shortTempDir("tss");
    // The host stores something the way a `deno run --config deno.json` script without --location does.
    const hostStore = async (...args: string[]) =>
      await new Deno.Command(deno, {
        args: [
          "run",
          "--no-prompt",
          "--config",
          denoConfig,
          `${repoRoot}/tests/fixtures/sandbox/host_store.ts`,
          ...args,
        ],
        stdout: "piped",
      }).output();
    assert.equal(text((await hostStore("put", "host-secret")).stdout).trim(), "host-secret");
    try {
      const first = probeClient(dir, { isolation });
      try {
        await first.start();
        assert.deepEqual(await probe(first, "load"), { local: null, cache: null }, "sees the host's storage");
        assert.deepEqual(await probe(first, "store", "first-launch"), {
          local: "first-launch",
          cache: "first-launch",
        });
      } finally {
        await first.kill();
      }
      const second = probeClient(dir, { isolation });
      try {
        await second.start();
        assert.deepEqual(
          await probe(second, "load"),
          { local: null, cache: null },
          "sees the first launch's storage",
        );
      } finally {
        await second.kill();
      }
    } finally {
      await hostStore("clear");
      await Deno.remove(dir, { recursive: true });
    }
  });
}

for (const isolation of MODES) {
  Deno.test(`${isolation}: a granted socket path used as a directory is removed, reported, and the plugin killed`, async () => {
    const dir = await shortTempDir("tsk");
    const logger = new Recorder();
    const client = probeClient(dir, { isolation, logger });
    try {
      await client.start();
      const privateDir = tetherDirs(dir).find((path) => Deno.statSync(path).isDirectory)!;
      await client.dispense(KV).get({ key: "probe:sockdir:h-broker-3.sock" }).catch(() => undefined);
      const exit = await client.exited;
      assert.equal(exit.killed, false, "killed by the host's watcher, not by kill()");
      assert.ok(
        logger.records.some((r) =>
          r.message === "plugin misused a socket path it was granted; killing it" &&
          r.fields.path === `${privateDir}/h-broker-3.sock` && r.fields.found === "directory"
        ),
        JSON.stringify(logger.records.map((r) => [r.message, r.fields])),
      );
    } finally {
      await client.kill();
      assert.deepEqual(tetherDirs(dir), []);
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("memory: a plugin that fills its V8 heap ends with a resource_limit error naming limits.heapMiB", async () => {
  const dir = await shortTempDir("tsm");
  const client = probeClient(dir, { limits: { heapMiB: 64 } });
  try {
    await client.start();
    const error = await rejectsWith(probe(client, "heap"), "resource_limit");
    assert.match(error.message, /limits\.heapMiB = 64 MiB/);
  } finally {
    await client.kill();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("memory: off-heap allocations stop at limits.dataMiB (RLIMIT_DATA) with a resource_limit error", async () => {
  const dir = await shortTempDir("tsd");
  const client = probeClient(dir, { limits: { heapMiB: 128, dataMiB: 1024 } });
  try {
    await client.start();
    // The plugin answers, then dies of an allocation that RLIMIT_DATA refuses; the next call says why.
    await probe(client, "offheap");
    await client.exited;
    const error = await rejectsWith(client.dispense(KV).get({ key: "after" }), "resource_limit");
    assert.match(error.message, /limits\.dataMiB = 1024 MiB/);
  } finally {
    await client.kill();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("limits and isolation options are checked before anything is created", async () => {
  const dir = await shortTempDir("tso");
  try {
    for (
      const [limits, field] of [
        [{ heapMiB: -1 }, "limits.heapMiB"],
        [{ dataMiB: 1.5 }, "limits.dataMiB"],
        [{ heapMiB: 1024, dataMiB: 1024 }, "limits.dataMiB"],
      ] as const
    ) {
      const error = await rejectsWith(probeClient(dir, { limits }).start(), "config");
      assert.match(error.message, new RegExp(field.replace(".", "\\.")));
    }
    assert.deepEqual(resolveLimits({ heapMiB: 0, dataMiB: 0 }, "p"), { heapMiB: 0, dataMiB: 0 });
    // A broker path smuggled in through the plugin's env would put the decision back on a socket.
    const broker = await rejectsWith(
      probeClient(dir, { env: { DENO_PERMISSION_BROKER_PATH: "/tmp/x.sock" } }).start(),
      "config",
    );
    assert.match(broker.message, /env\.DENO_PERMISSION_BROKER_PATH is not allowed/);
    const error = await rejectsWith(
      probeClient(dir, { isolation: "containers" as unknown as "auto" }).start(),
      "config",
    );
    assert.match(error.message, /isolation must be "auto", "namespaces" or "deno-only", found "containers"/);
    assert.deepEqual(tetherDirs(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("isolation: namespaces where bwrap cannot run is a config error; auto says it runs without them", async () => {
  const host = (isolation: string) =>
    new Deno.Command(deno, {
      args: [
        "run",
        "--no-prompt",
        "--config",
        denoConfig,
        "--allow-read",
        "--allow-write",
        "--allow-net",
        "--allow-env",
        `--allow-run=${deno},/usr/bin/prlimit,/usr/bin/setpriv`,
        `${repoRoot}/tests/fixtures/sandbox/isolation_host.ts`,
        isolation,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output().then((out) => JSON.parse(text(out.stdout).trim().split("\n").pop()!));
  const [strict, auto] = await Promise.all([host("namespaces"), host("auto")]);
  assert.equal(strict.ok, false);
  assert.equal(strict.code, "config");
  assert.match(strict.message, /isolation "namespaces" is not available: .*--allow-run=\/usr\/bin\/bwrap/);
  assert.equal(auto.ok, true, JSON.stringify(auto));
  assert.ok(
    auto.messages.some((m: string) => m.includes("WITHOUT namespaces")),
    JSON.stringify(auto.messages),
  );
});

Deno.test("a cmd starting with '-' is the plugin's entry, never one of deno's flags", async () => {
  const dir = await shortTempDir("tsc");
  try {
    await Deno.writeTextFile(`${dir}/--inspect=127.0.0.1:9229.ts`, "console.log('hi');\n");
    const launch = await prepareLaunch({
      name: "dash",
      cmd: "--inspect=127.0.0.1:9229.ts",
      args: ["--allow-all"],
      cwd: dir,
      privateDirBase: dir,
      cookieKey: kvHandshake.magicCookieKey,
      logger: new Recorder(),
      isolation: "deno-only",
    });
    try {
      const entry = launch.args.indexOf(`${dir}/--inspect=127.0.0.1:9229.ts`);
      assert.ok(entry > 0, JSON.stringify(launch.args));
      // Before the entry: only Tether's flags; after it: the plugin's own arguments.
      assert.ok(
        !launch.args.slice(0, entry).some((arg) => arg.startsWith("--inspect") || arg === "--allow-all"),
      );
      assert.deepEqual(launch.args.slice(entry + 1), ["--allow-all"]);
    } finally {
      await launch.cleanup();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runtimeFor: the one list of extensions Deno runs", () => {
  for (const ext of ["ts", "tsx", "mts", "cts", "js", "mjs", "cjs", "jsx", "TS", "Mjs"]) {
    assert.equal(runtimeFor(`/opt/p.${ext}`), "deno", ext);
  }
  for (const cmd of ["/opt/p", "/opt/p.sh", "/opt/p.json", "/opt/ts"]) {
    assert.equal(runtimeFor(cmd), "native", cmd);
  }
  assert.equal(runtimeFor("/opt/p.ts", "native"), "native");
  assert.equal(runtimeFor("/opt/p", "deno"), "deno");
});

Deno.test("audit reader: well-formed lines become plugin-audit events; malformed ones are counted, never silent", async () => {
  const dir = await shortTempDir("tsa");
  try {
    const path = `${dir}/audit.jsonl`;
    const policy = new PermissionPolicy({
      grants: { read: ["/srv/data"] },
      protocol: { env: [], sockets: [] },
    });
    const line = (permission: string, value: string | null) =>
      JSON.stringify({ v: 1, datetime: "2026-11-27T16:20:45Z", permission, value }) + "\n";
    const events: PermissionEvent[] = [];
    const tampers: AuditTamper[] = [];
    const reader = new AuditReader({
      path,
      policy,
      plugin: "p",
      onEvent: (event) => events.push(event),
      onTamper: (tamper) => tampers.push(tamper),
      reportAllowed: true,
      pollMs: 10,
    });
    const file = await Deno.open(path, { write: true, create: true, append: true });
    reader.start();
    const write = (s: string) => file.write(new TextEncoder().encode(s));
    await write(line("read", "/srv/data/a.txt"));
    const denied = line("read", "/etc/shadow");
    // A line split across two writes (and reads) is still one line.
    await write(denied.slice(0, 20));
    await eventually(() => events.length === 1);
    await write(denied.slice(20));
    await write("not json\n");
    await write(`{"id":1,"result":"allow"}\n`);
    await write(line("run", "/bin/sh").replace(`"v":1`, `"v":1,"id":7`));
    await write("x".repeat(AUDIT_MAX_LINE_BYTES + 10) + "\n");
    await write(line("write", null));
    file.close();
    await reader.stop();
    assert.deepEqual(events.map((e) => [e.permission, e.target, e.allowed, e.source]), [
      ["read", "/srv/data/a.txt", true, "plugin-audit"],
      ["read", "/etc/shadow", false, "plugin-audit"],
      ["write", null, false, "plugin-audit"],
    ]);
    assert.deepEqual(tampers.map((t) => t.reason), [
      "not JSON",
      "unknown version undefined",
      "unexpected field id",
      `line longer than ${AUDIT_MAX_LINE_BYTES} bytes`,
    ]);
    assert.equal(reader.malformed, 4);
    assert.equal(reader.lines, 3);
    assert.equal(typeof parseAuditLine(line("net", "example.com:443").trim()), "object");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("killOnAuditTamper: a malformed audit line kills the plugin (kill callback called once watched)", async () => {
  const dir = await shortTempDir("tsq");
  const logger = new Recorder();
  const launch = await prepareLaunch({
    name: "tamper",
    cmd: `${repoRoot}/tests/fixtures/sandbox/forge.ts`,
    args: [],
    privateDirBase: dir,
    cookieKey: kvHandshake.magicCookieKey,
    logger,
    isolation: "deno-only",
    killOnAuditTamper: true,
  });
  try {
    let kills = 0;
    launch.watch(() => kills++);
    // What a process holding the audit file could write: a forged "allow", not an audit record.
    await Deno.writeTextFile(launch.env.DENO_AUDIT_PERMISSIONS, `{"id":1,"result":"allow"}\n`, {
      append: true,
    });
    assert.ok(await eventually(() => kills > 0), "the plugin was not killed");
    const record = logger.records.find((r) =>
      r.message === "plugin tampered with its permission audit; killing it"
    );
    assert.equal(record?.fields.reason, "unknown version undefined");
  } finally {
    await launch.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("namespaces: own PID namespace, no network namespace shared, fresh /tmp, none of the host's files", async () => {
  const dir = await shortTempDir("tsp");
  try {
    await Deno.mkdir(`${dir}/private`);
    await Deno.writeTextFile("/tmp/tether-sandbox-host-file", "host");
    const script = [
      "const pids = [...Deno.readDirSync('/proc')].filter((e) => /^\\d+$/.test(e.name)).length;",
      "const nics = Deno.networkInterfaces().map((n) => n.name);",
      "const tmp = [...Deno.readDirSync('/tmp')].map((e) => e.name);",
      "const exists = (p) => { try { Deno.statSync(p); return true; } catch { return false; } };",
      `console.log(JSON.stringify({ pids, nics, tmp, passwd: exists('/etc/passwd'), repo: exists('${repoRoot}') }));`,
    ].join("\n");
    await Deno.writeTextFile(`${dir}/private/facts.ts`, script);
    const found = await probeNamespaces();
    assert.ok(found.ok);
    const out = await new Deno.Command(found.bwrap, {
      args: bwrapArgs({
        bwrap: found.bwrap,
        deno,
        privateDir: `${dir}/private`,
        readOnly: [],
        readWrite: [],
        shareNet: false,
        cwd: `${dir}/private`,
      }, [deno, "run", "-A", "--no-config", `${dir}/private/facts.ts`]),
      clearEnv: true,
      env: { NO_COLOR: "1", DENO_DIR: `${dir}/private/deno` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, text(out.stderr));
    const facts = JSON.parse(text(out.stdout));
    assert.ok(facts.pids <= 3, `sees ${facts.pids} processes`);
    assert.deepEqual([...new Set(facts.nics)], ["lo"]);
    // /tmp is a fresh tmpfs: only the mount point of the private directory (made under /tmp here) is there.
    assert.deepEqual(facts.tmp, [dir.slice("/tmp/".length)]);
    assert.equal(facts.passwd, false, "/etc/passwd is visible");
    assert.equal(facts.repo, false, "the host's files (this repository) are visible");
  } finally {
    await Deno.remove("/tmp/tether-sandbox-host-file").catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "namespaces: a write grant for a file that does not exist yet lands on the host",
  ignore: !namespaces.ok,
}, async () => {
  const dir = await shortTempDir("tsw");
  const target = `${dir}/out/new.txt`;
  await Deno.mkdir(`${dir}/out`);
  const client = probeClient(dir, { isolation: "namespaces", permissions: { write: [target] } });
  try {
    await client.start();
    assert.deepEqual(await probe(client, "write", target), { wrote: true });
    assert.equal(await Deno.readTextFile(target), "written");
  } finally {
    await client.kill();
    await Deno.remove(dir, { recursive: true });
  }
});

for (const isolation of MODES) {
  Deno.test(`${isolation}: no plugin process outlives its launch, also when the spawned pid is SIGKILLed`, async () => {
    const dir = await shortTempDir("tsz");
    try {
      const client = probeClient(dir, { isolation });
      await client.start();
      assert.ok(processesMatching(probePlugin).length > 0);
      // As if the host's supervisor lost the process: bwrap (or Deno) dies, everything inside dies with it.
      Deno.kill(client.pid!, "SIGKILL");
      await client.exited;
      assert.ok(
        await eventually(() => processesMatching(probePlugin).length === 0),
        "a plugin process survived",
      );
      await client.kill();
      assert.deepEqual(tetherDirs(dir), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("env: loader and runtime-control variables are refused for a deno plugin, naming plugin and variable", async () => {
  const dir = await shortTempDir("tse");
  try {
    for (
      const name of [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "DYLD_INSERT_LIBRARIES",
        "GLIBC_TUNABLES",
        "DENO_V8_FLAGS",
        "DENO_DIR",
        "DENO_CERT",
        "DENO_TLS_CA_STORE",
        "DENO_NO_PACKAGE_JSON",
        "NODE_OPTIONS",
        "NODE_PATH",
        "NODE_EXTRA_CA_CERTS",
      ]
    ) {
      assert.ok(refusedDenoEnv(name), name);
      const error = await rejectsWith(
        probeClient(dir, { name: "envp", env: { [name]: "x" } }).start(),
        "config",
      );
      assert.match(error.message, new RegExp(`plugin envp: env\\.${name} is not allowed for a deno plugin`));
    }
    assert.equal(refusedDenoEnv("API_TOKEN"), undefined);
    // Nothing was created for the refused launches.
    assert.deepEqual(tetherDirs(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno-only: a symlink in a path grant leading outside the grants refuses the launch", async () => {
  const dir = await shortTempDir("tsl");
  const prepare = (permissions: Record<string, string[]>) =>
    prepareLaunch({
      name: "links",
      cmd: probePlugin,
      args: [],
      denoConfig,
      permissions,
      privateDirBase: `${dir}/s`,
      cookieKey: kvHandshake.magicCookieKey,
      logger: new Recorder(),
      isolation: "deno-only",
    });
  try {
    await Deno.mkdir(`${dir}/s`);
    await Deno.mkdir(`${dir}/granted/sub`, { recursive: true });
    await Deno.mkdir(`${dir}/out`);
    await Deno.writeTextFile(`${dir}/secret`, "S\n");
    await Deno.symlink(`${dir}/secret`, `${dir}/granted/sub/link`);
    const read = await rejectsWith(prepare({ read: [`${dir}/granted`] }), "config");
    assert.match(
      read.message,
      new RegExp(`${dir}/granted/sub/link in its read grant .* leading to ${dir}/secret`),
    );
    // A link in a write grant may not lead into a read-only grant either.
    await Deno.symlink(`${dir}/granted/sub`, `${dir}/out/up`);
    await Deno.remove(`${dir}/granted/sub/link`);
    const write = await rejectsWith(
      prepare({ read: [`${dir}/granted`], write: [`${dir}/out`] }),
      "config",
    );
    assert.match(write.message, new RegExp(`${dir}/out/up in its write grant`));
    // Granting where the link leads is fine.
    const launch = await prepare({ read: [`${dir}/granted`], write: [`${dir}/out`, `${dir}/granted`] });
    await launch.cleanup();
    // Too large to walk: refused, not waved through.
    const many = await rejectsWith(
      checkGrantLinks({ plugin: "links", read: [`${dir}/granted`], write: [], maxEntries: 1 }),
      "config",
    );
    assert.match(many.message, /more than 1 entries, too many to check .* isolation "namespaces"/);
    assert.deepEqual(tetherDirs(`${dir}/s`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("module flags: the run and the graph check get the same list; no plugin config, no lockfile, no node_modules writes", async () => {
  assert.deepEqual(moduleFlags({ plugin: "p", bundled: false }), ["--no-config", "--no-lock"]);
  assert.deepEqual(moduleFlags({ plugin: "p", bundled: true }), ["--no-config", "--no-npm", "--no-lock"]);
  assert.deepEqual(moduleFlags({ plugin: "p", bundled: false, denoConfig }), [
    "--config",
    Deno.realPathSync(denoConfig),
    "--no-lock",
    "--node-modules-dir=manual",
  ]);
  const missing = await rejectsWith(
    Promise.resolve().then(() =>
      moduleFlags({ plugin: "p", bundled: false, denoConfig: "/nonexistent.json" })
    ),
    "config",
  );
  assert.match(missing.message, /plugin p: denoConfig \/nonexistent\.json is not a readable file/);
  const dir = await shortTempDir("tsm");
  try {
    await Deno.mkdir(`${dir}/tree`);
    await Deno.writeTextFile(`${dir}/tree/main.ts`, "console.log(1);\n");
    const launch = await prepareLaunch({
      name: "flags",
      cmd: `${dir}/tree/main.ts`,
      args: [],
      privateDirBase: dir,
      cookieKey: kvHandshake.magicCookieKey,
      logger: new Recorder(),
      isolation: "deno-only",
    });
    try {
      const run = launch.args.slice(launch.args.indexOf("run") + 1);
      assert.deepEqual(run.slice(0, 3), ["--no-config", "--no-lock", "--cached-only"]);
      // Its own DENO_DIR, inside the private dir: storage goes with the launch.
      assert.equal(launch.env.DENO_DIR, `${launch.privateDir}/deno-dir`);
      // It starts in its own tree, not in the host's working directory.
      assert.equal(launch.cwd, `${dir}/tree`);
    } finally {
      await launch.cleanup();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const isolation of MODES) {
  Deno.test(`${isolation}: a plugin's Deno.cwd() is its own tree unless the host gives a cwd`, async () => {
    const dir = await shortTempDir("tsc");
    const client = probeClient(dir, { isolation });
    try {
      await client.start();
      assert.deepEqual(await probe(client, "cwd"), { cwd: repoRoot });
    } finally {
      await client.kill();
    }
    const given = probeClient(dir, { isolation, cwd: `${repoRoot}/examples` });
    try {
      await given.start();
      assert.deepEqual(await probe(given, "cwd"), { cwd: `${repoRoot}/examples` });
    } finally {
      await given.kill();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("SFTPGo config: a deno plugin's env_vars may not name a loader or runtime-control variable", () => {
  const yaml = (cmd: string) =>
    ["plugins:", "  - type: ipfilter", `    cmd: ${cmd}`, "    env_vars: [TZ, LD_PRELOAD]", ""].join("\n");
  let error: unknown;
  try {
    parsePluginsConfig(yaml("/opt/p/filter.ts"), "plugins.yaml");
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
  assert.match(
    error.message,
    /plugins\.yaml:4:\d+: plugins\[0\]\.env_vars\[1\]: expected a variable a deno plugin/,
  );
  assert.match(error.message, /LD_PRELOAD/);
  // A native plugin is not Deno's: the rule is for deno plugins.
  assert.deepEqual(parsePluginsConfig(yaml("/opt/p/filter"), "plugins.yaml")[0].envVars, [
    "TZ",
    "LD_PRELOAD",
  ]);
});

Deno.test("deno-only: with a denoConfig, a node_modules package linked to outside the tree refuses the launch", async () => {
  const dir = await shortTempDir("tsn");
  try {
    await Deno.mkdir(`${dir}/tree/node_modules`, { recursive: true });
    await Deno.mkdir(`${dir}/outside/evilpkg`, { recursive: true });
    await Deno.mkdir(`${dir}/s`);
    await Deno.writeTextFile(`${dir}/outside/evilpkg/index.js`, "export const secret = 1;\n");
    await Deno.writeTextFile(`${dir}/tree/deno.json`, "{}\n");
    await Deno.writeTextFile(`${dir}/tree/main.ts`, "console.log(1);\n");
    await Deno.symlink(`${dir}/outside/evilpkg`, `${dir}/tree/node_modules/evilpkg`);
    const error = await rejectsWith(
      prepareLaunch({
        name: "npm",
        cmd: `${dir}/tree/main.ts`,
        args: [],
        denoConfig: `${dir}/tree/deno.json`,
        privateDirBase: `${dir}/s`,
        cookieKey: kvHandshake.magicCookieKey,
        logger: new Recorder(),
        isolation: "deno-only",
      }),
      "config",
    );
    assert.match(
      error.message,
      new RegExp(
        `${dir}/tree/node_modules/evilpkg in its npm packages directory .* leading to ${dir}/outside/evilpkg`,
      ),
    );
    assert.deepEqual(tetherDirs(`${dir}/s`), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
