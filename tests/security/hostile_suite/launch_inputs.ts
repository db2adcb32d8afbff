/**
 * Launch attempts through the host's own inputs (options, grants, configs), and the isolation check.
 *
 * @module
 */

import { PluginClient, TetherError } from "../../../mod.ts";
import { KV } from "../../../src/gen/tether/kv/v1/kv_pb.ts";
import { ConfigError, parsePluginsConfig } from "../../../src/sftpgo/config.ts";
import { kvHandshake, text } from "../support.ts";
import { descendants, inOwnNamespaces, withIsolation, type World } from "./world.ts";
import { fileUrl, type LaunchAttempt, leaks, note, outside, type Probe, probe, reader } from "./probe.ts";

// ------------------------------------------------------------------ host inputs
/** The config loader's documented errors: TetherError, or the SFTPGo loader's ConfigError naming file:line:col. */
function clearConfigError(error: unknown): string[] {
  if (error instanceof TetherError) return [];
  if (error instanceof ConfigError && /\.yaml:\d+:\d+/.test(error.message)) return [];
  return [`not a clear config error: ${String(error).slice(0, 120)}`];
}

function input(
  id: string,
  description: string,
  build: (w: World) => Probe | Promise<Probe>,
  reason?: string,
): LaunchAttempt {
  return {
    id,
    cls: "host-inputs",
    description,
    expect: reason ? "harmless" : "denied",
    reason,
    run: async (world) => {
      const result = await probe(world, id, await build(world));
      return { evidence: leaks(world, result), note: note(result) };
    },
  };
}

const readerTree = (w: World) => ({ "reader.ts": reader(w) });

export const inputAttempts: LaunchAttempt[] = [
  input("input01", "cmd '--allow-all' (runtime deno) with the real entry as its first arg", (w) => ({
    files: readerTree(w),
    cmd: "--allow-all",
    args: [`${w.dir}/trees/input01/reader.ts`],
  })),
  input("input02", "cmd '--import-map=<outside map>' smuggling an import map", async (w) => {
    const dir = await outside(w);
    await Deno.writeTextFile(
      `${dir}/map2.json`,
      JSON.stringify({ imports: { "innocent": fileUrl(w.ctx.outsideModule) } }),
    );
    return {
      files: { "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n` },
      cmd: `--import-map=${dir}/map2.json`,
      args: [`${w.dir}/trees/input02/main.ts`],
    };
  }),
  input("input03", "read grant with a comma (granted,<secrets dir>)", (w) => ({
    files: readerTree(w),
    entry: "reader.ts",
    permissions: { read: [`${w.ctx.granted},${w.ctx.root}`] },
  })),
  input("input04", "net grant starting with '-' (--allow-all)", (w) => ({
    files: readerTree(w),
    entry: "reader.ts",
    permissions: { net: ["--allow-all"] },
  })),
  input("input05", "env grant with a comma naming the secret variable", (w) => ({
    files: readerTree(w),
    entry: "reader.ts",
    permissions: { env: [`HOSTILE_OK,${w.ctx.envSecretName}`] },
  })),
  input("input06", "plugin args '-A --allow-read' after the entry", (w) => ({
    files: readerTree(w),
    entry: "reader.ts",
    args: ["-A", "--allow-read", "--allow-env"],
  })),
  input(
    "input07",
    "'..' in a read grant (<granted>/../granted names the grant itself, not its parent)",
    (w) => ({
      files: readerTree(w),
      entry: "reader.ts",
      permissions: { read: [`${w.ctx.granted}/../granted`] },
    }),
  ),
  {
    id: "input08",
    cls: "host-inputs",
    description: "env option LD_PRELOAD=<outside .so> (native code before Deno's sandbox starts)",
    expect: "denied",
    run: async (world) => {
      const dir = await outside(world);
      const marker = `${dir}/ldpreload-marker`;
      await Deno.writeTextFile(
        `${dir}/evil.c`,
        `#include <stdio.h>\n__attribute__((constructor)) static void init(void) { FILE *f = fopen("${marker}", "w"); if (f) { fputs("x", f); fclose(f); } }\n`,
      );
      const cc = await new Deno.Command("cc", {
        args: ["-shared", "-fPIC", "-o", `${dir}/evil.so`, `${dir}/evil.c`],
        stderr: "piped",
      })
        .output();
      if (!cc.success) throw new Error(`cc failed: ${new TextDecoder().decode(cc.stderr)}`);
      const result = await probe(world, "input08", {
        files: readerTree(world),
        entry: "reader.ts",
        env: { LD_PRELOAD: `${dir}/evil.so` },
      });
      const evidence = leaks(world, result);
      try {
        Deno.lstatSync(marker);
        evidence.push("the preloaded library ran in the plugin's process");
      } catch {
        // Good.
      }
      return { evidence, note: note(result) };
    },
  },
  {
    id: "input09",
    cls: "host-inputs",
    description: "env option DENO_PERMISSION_BROKER_PATH=<an attacker's broker that allows everything>",
    expect: "denied",
    run: async (world) => {
      const dir = await outside(world);
      const listener = Deno.listen({ transport: "unix", path: `${dir}/evil-broker.sock` });
      const serving = (async () => {
        for await (const conn of listener) {
          (async () => {
            let pending = "";
            try {
              for await (const chunk of conn.readable.pipeThrough(new TextDecoderStream())) {
                pending += chunk;
                let i: number;
                while ((i = pending.indexOf("\n")) >= 0) {
                  const request = JSON.parse(pending.slice(0, i));
                  pending = pending.slice(i + 1);
                  await conn.write(
                    new TextEncoder().encode(JSON.stringify({ id: request.id, result: "allow" }) + "\n"),
                  );
                }
              }
            } catch {
              // Gone.
            }
          })();
        }
      })().catch(() => {});
      try {
        const result = await probe(world, "input09", {
          files: readerTree(world),
          entry: "reader.ts",
          env: { DENO_PERMISSION_BROKER_PATH: `${dir}/evil-broker.sock` },
        });
        return { evidence: leaks(world, result), note: note(result) };
      } finally {
        listener.close();
        await serving;
      }
    },
  },
  {
    id: "input10",
    cls: "host-inputs",
    description: "startTimeoutMs 2**40 (a timer that overflows)",
    expect: "denied",
    run: async (world) => {
      let client: PluginClient;
      try {
        client = new PluginClient(withIsolation(world, {
          cmd: world.bundle,
          sha256: world.bundleSha256,
          runtime: "deno",
          handshake: kvHandshake,
          unixSocketDir: world.sockets,
          args: ["{}"],
          name: "input10",
          startTimeoutMs: 2 ** 40,
        }));
      } catch (refused) {
        // Refusing a timer it cannot honour is a fine answer too.
        const clear = refused instanceof TetherError && refused.code === "config";
        return {
          evidence: clear ? [] : [`unclear refusal: ${String(refused)}`],
          note: `refused: ${String(refused).slice(0, 140)}`,
        };
      }
      const evidence: string[] = [];
      let outcome = "started";
      try {
        await client.start();
        await client.ping();
      } catch (error) {
        outcome = String(error).slice(0, 160);
        if (error instanceof TetherError && error.code === "start_timeout") {
          evidence.push(`a huge start timeout fired at once: ${outcome}`);
        }
      } finally {
        await client.kill();
      }
      return { evidence, note: outcome };
    },
  },
  input("input11", "startTimeoutMs -5", (w) => ({
    files: readerTree(w),
    entry: "reader.ts",
    startTimeoutMs: -5,
  })),
  {
    id: "input12",
    cls: "host-inputs",
    description: "plugin name with ../ and an integrityDir (where does the verified copy go?)",
    expect: "denied",
    run: async (world) => {
      const integrityDir = `${world.dir}/integrity`;
      const client = new PluginClient(withIsolation(world, {
        cmd: world.bundle,
        sha256: world.bundleSha256,
        runtime: "deno",
        handshake: kvHandshake,
        unixSocketDir: world.sockets,
        integrityDir,
        args: ["{}"],
        name: "../../escaped-input12",
      }));
      try {
        await client.start().catch(() => {});
      } finally {
        await client.kill();
      }
      const evidence: string[] = [];
      for (const dir of [world.dir, `${world.dir}/..`]) {
        for (const entry of Deno.readDirSync(dir)) {
          if (entry.name.includes("escaped-input12")) {
            evidence.push(`the copy landed outside integrityDir: ${dir}/${entry.name}`);
          }
        }
      }
      return { evidence, note: "copy stayed in integrityDir" };
    },
  },
  {
    id: "input13",
    cls: "host-inputs",
    description: "YAML alias bomb in a plugins config",
    expect: "denied",
    run: () => {
      const lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"];
      for (let i = 1; i < 12; i++) lines.push(`a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(", ")}]`);
      lines.push("plugins: *a11");
      const start = Date.now();
      try {
        parsePluginsConfig(lines.join("\n"), "bomb.yaml");
        return Promise.resolve({ evidence: ["an alias bomb was accepted"], note: "" });
      } catch (error) {
        const evidence = clearConfigError(error);
        if (Date.now() - start > 20_000) evidence.push("the host spent over 20 s on it");
        return Promise.resolve({ evidence, note: String(error).split("\n")[0].slice(0, 160) });
      }
    },
  },
  {
    id: "input14",
    cls: "host-inputs",
    description: "100000-deep nesting in a plugins config",
    expect: "denied",
    run: () => {
      try {
        parsePluginsConfig(`plugins: ${"[".repeat(100_000)}${"]".repeat(100_000)}`, "deep.yaml");
        return Promise.resolve({ evidence: ["deep nesting was accepted"], note: "" });
      } catch (error) {
        return Promise.resolve({
          evidence: clearConfigError(error),
          note: String(error).split("\n")[0].slice(0, 160),
        });
      }
    },
  },
  {
    id: "input15",
    cls: "host-inputs",
    description:
      "env option overriding the handshake's own variable TETHER_PLUGIN_SOCKET (-> the host's socket)",
    expect: "denied",
    run: async (world) => {
      const result = await probe(world, "input15", {
        files: {
          "main.ts": `console.error("SOCK=" + Deno.env.get("TETHER_PLUGIN_SOCKET"));\nDeno.exit(3);\n`,
        },
        env: { TETHER_PLUGIN_SOCKET: world.ctx.unixDecoy },
      });
      const evidence = leaks(world, result);
      if (result.output.includes(`SOCK=${world.ctx.unixDecoy}`)) {
        evidence.push("the env option replaced Tether's socket path");
      }
      return { evidence, note: note(result) };
    },
  },
  {
    id: "input16",
    cls: "host-inputs",
    description:
      "hostEnv 'inherit' (go-plugin's mode) carries runtime-steering variables from the host's own " +
      "environment (NODE_EXTRA_CA_CERTS, DENO_*, LD_*) into the deno plugin, past the env rule",
    expect: "denied",
    run: async (world) => {
      const dir = await outside(world);
      // Written after reading the change: checkDenoEnv only sees the configured env; inherit adds the host's.
      const planted: Record<string, string> = {
        NODE_EXTRA_CA_CERTS: `${dir}/input16-ca.pem`,
        DENO_NO_UPDATE_CHECK: "input16",
        LD_HOSTILE_INPUT16: "input16",
      };
      const found: string[] = [];
      for (const [name, value] of Object.entries(planted)) Deno.env.set(name, value);
      let result;
      try {
        // The hostile plugin itself (it serves), verified by its digest as iso01 runs it.
        result = await probe(world, "input16", {
          cmd: world.bundle,
          args: [JSON.stringify(world.ctx)],
          extra: { hostEnv: "inherit", sha256: world.bundleSha256 },
          whileUp: (client) => {
            // The host's view: the environment of every process of the plugin.
            for (const pid of [client.pid!, ...descendants(client.pid!)]) {
              let environ = "";
              try {
                environ = Deno.readTextFileSync(`/proc/${pid}/environ`);
              } catch {
                continue;
              }
              for (const entry of environ.split("\0")) {
                const name = entry.slice(0, entry.indexOf("="));
                if (planted[name] !== undefined && entry === `${name}=${planted[name]}`) {
                  found.push(`${pid}:${name}`);
                }
              }
            }
            return Promise.resolve();
          },
        });
      } finally {
        for (const name of Object.keys(planted)) Deno.env.delete(name);
      }
      const evidence = leaks(world, result);
      if (found.length > 0) {
        evidence.push(`the plugin's processes got the host's ${[...new Set(found)].join(", ")}`);
      }
      if (!result.started) evidence.push(`the launch failed instead of dropping them: ${note(result)}`);
      return { evidence, note: note(result) };
    },
  },
];

/** The isolation of the launch is real (namespaces mode only). */
export const isolationAttempts: LaunchAttempt[] = [{
  id: "iso01",
  cls: "host-inputs",
  description:
    "isolation: 'namespaces' is honoured: a plugin with no TCP grant runs in its own mount, pid and " +
    "network namespaces (seen from the host's /proc)",
  expect: "denied",
  modes: ["namespaces"],
  run: async (world) => {
    const client = new PluginClient(withIsolation(world, {
      cmd: world.bundle,
      sha256: world.bundleSha256,
      runtime: "deno",
      handshake: kvHandshake,
      unixSocketDir: world.sockets,
      permissions: { read: [world.ctx.granted] },
      args: [JSON.stringify(world.ctx)],
      name: "iso01",
    }));
    const evidence: string[] = [];
    try {
      await client.start();
      const ns = inOwnNamespaces(client.pid!);
      const missing = Object.entries(ns).filter(([, own]) => !own).map(([kind]) => kind);
      if (missing.length > 0) evidence.push(`runs in the host's ${missing.join(", ")} namespace(s)`);
      // And it still works through its socket.
      const answer = text((await client.dispense(KV).get({ key: "control:read" })).value);
      if (answer !== "public\n") evidence.push(`the granted file read ${JSON.stringify(answer)}`);
    } finally {
      await client.kill();
    }
    return { evidence, note: "own mount, pid and network namespaces" };
  },
}];
