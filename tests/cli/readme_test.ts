/**
 * The README's new-user recipes, run as written: Tether checked out as a workspace member of a project,
 * code generation with the README's buf.gen.yaml, a plugin and a host importing `@tether/tether`, `tether
 * pack` on that plugin; and a Go go-plugin host running a TypeScript plugin with the README's `deno run`
 * flags.
 */

import assert from "node:assert/strict";
import { goFixture, ignoreWithoutGo, repoRoot } from "../helpers.ts";

/** Copies what a checkout of Tether holds for users (no node_modules, no tests). */
async function copyTether(to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for (const file of ["mod.ts", "plugin.ts", "sftpgo.ts", "cli.ts", "deno.json", "deno.lock", "LICENSE"]) {
    await Deno.copyFile(`${repoRoot}/${file}`, `${to}/${file}`);
  }
  const copyDir = async (from: string, dest: string) => {
    await Deno.mkdir(dest, { recursive: true });
    for await (const entry of Deno.readDir(from)) {
      if (entry.isDirectory) await copyDir(`${from}/${entry.name}`, `${dest}/${entry.name}`);
      else if (entry.isFile) await Deno.copyFile(`${from}/${entry.name}`, `${dest}/${entry.name}`);
    }
  };
  await copyDir(`${repoRoot}/src`, `${to}/src`);
}

async function run(cmd: string, args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(
    out.code,
    0,
    `${cmd} ${args.join(" ")} in ${cwd}:\n${text}\n${new TextDecoder().decode(out.stderr)}`,
  );
  return text;
}

const PROTO = `syntax = "proto3";
package greet.v1;
message HelloRequest { string name = 1; }
message HelloReply { string message = 1; }
service Greeter { rpc Hello(HelloRequest) returns (HelloReply); }
`;

const BUF_YAML = "version: v2\nmodules:\n  - path: proto\n";

// The README's buf.gen.yaml, verbatim.
const BUF_GEN_YAML = `version: v2
clean: true
plugins:
  - local: ["deno", "run", "-A", "npm:@bufbuild/protoc-gen-es@2.17.0"]
    out: gen
    opt: [target=ts, import_extension=ts]
`;

const HANDSHAKE = `export const handshake = {
  protocolVersion: 1,
  magicCookieKey: "GREETER_PLUGIN",
  magicCookieValue: "greeter-5b1e",
};
`;

const PLUGIN = `import { registration, serve } from "@tether/tether/plugin";
import { Greeter } from "./gen/greet/v1/greet_pb.ts";
import { handshake } from "./handshake.ts";

await serve({
  handshake,
  services: [registration(Greeter, { hello: ({ name }) => ({ message: \`hello \${name}\` }) })],
});
`;

const HOST = `import { PluginClient } from "@tether/tether";
import { Greeter } from "./gen/greet/v1/greet_pb.ts";
import { handshake } from "./handshake.ts";

const [cmd] = Deno.args;
await using client = new PluginClient({ cmd, handshake, denoConfig: new URL("../deno.json", import.meta.url).pathname });
await client.start();
console.log((await client.dispense(Greeter).hello({ name: "tether" })).message);
`;

Deno.test({
  name: "README new user: Tether as a workspace member, buf generate with the README's buf.gen.yaml, a " +
    "plugin and a host importing @tether/tether; tether pack --config deno.json packs the plugin and the " +
    "host runs the packed file too",
  fn: async () => {
    const project = await Deno.makeTempDir({ prefix: "tether-newuser-" });
    try {
      await copyTether(`${project}/tether`);
      await Deno.writeTextFile(
        `${project}/deno.json`,
        JSON.stringify({ workspace: ["./tether", "./app"], nodeModulesDir: "auto" }, null, 2),
      );
      const app = `${project}/app`;
      await Deno.mkdir(`${app}/proto/greet/v1`, { recursive: true });
      await Deno.writeTextFile(
        `${app}/deno.json`,
        JSON.stringify({ imports: { "@bufbuild/protobuf": "npm:@bufbuild/protobuf@2.17.0" } }, null, 2),
      );
      await Deno.writeTextFile(`${app}/proto/greet/v1/greet.proto`, PROTO);
      await Deno.writeTextFile(`${app}/buf.yaml`, BUF_YAML);
      await Deno.writeTextFile(`${app}/buf.gen.yaml`, BUF_GEN_YAML);
      await Deno.writeTextFile(`${app}/handshake.ts`, HANDSHAKE);
      await Deno.writeTextFile(`${app}/plugin.ts`, PLUGIN);
      await Deno.writeTextFile(`${app}/host.ts`, HOST);

      await run(Deno.execPath(), ["run", "-A", "npm:@bufbuild/buf@1.74.0", "generate"], app);
      assert.ok((await Deno.stat(`${app}/gen/greet/v1/greet_pb.ts`)).isFile);

      assert.equal(
        (await run(Deno.execPath(), ["run", "-A", "host.ts", "./plugin.ts"], app)).trim(),
        "hello tether",
      );

      const packed = JSON.parse(
        await run(Deno.execPath(), [
          "run",
          "-A",
          "tether/cli.ts",
          "pack",
          "--json",
          "--cookie-key",
          "GREETER_PLUGIN",
          "--config",
          "deno.json",
          "app/plugin.ts",
          "-o",
          "greeter-plugin",
        ], project),
      );
      assert.equal(packed.output, `${project}/greeter-plugin`);
      assert.equal(
        (await run(Deno.execPath(), ["run", "-A", "host.ts", packed.output], app)).trim(),
        "hello tether",
      );
    } finally {
      await Deno.remove(project, { recursive: true });
    }
  },
});

/** The README's `deno run` flags for a Tether plugin under a Go go-plugin host (TMPDIR is the socket dir). */
export function readmeGoHostFlags(cookieKey: string, socketDir: string): string[] {
  return [
    "run",
    "--no-prompt",
    `--allow-env=${cookieKey},PLUGIN_PROTOCOL_VERSIONS,PLUGIN_CLIENT_CERT,PLUGIN_UNIX_SOCKET_DIR,` +
    "PLUGIN_UNIX_SOCKET_GROUP,PLUGIN_MIN_PORT,PLUGIN_MAX_PORT,PLUGIN_MULTIPLEX_GRPC,TETHER_PLUGIN_SOCKET,TMPDIR,GRPC_*",
    `--allow-read=${socketDir}`,
    `--allow-write=${socketDir}`,
    "--allow-net",
  ];
}

Deno.test({
  name:
    "README Go host: go-plugin's host (kvhost, AutoMTLS) runs the TypeScript KV plugin with exactly the " +
    "README's deno run flags: every step, broker both ways included",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const kvhost = await goFixture("kvhost");
    const dir = await Deno.makeTempDir({ prefix: "tether-gohost-flags-" });
    try {
      const out = await new Deno.Command(kvhost, {
        args: [
          "-automtls=true",
          "-scenario",
          "all",
          "--",
          Deno.execPath(),
          ...readmeGoHostFlags("TETHER_KV_PLUGIN", dir),
          "--config",
          `${repoRoot}/deno.json`,
          `${repoRoot}/examples/kv/plugin.ts`,
        ],
        env: { TMPDIR: dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const report = JSON.parse(new TextDecoder().decode(out.stdout));
      assert.equal(report.ok, true, JSON.stringify(report.steps));
      assert.equal(report.steps.length, 9);
      assert.deepEqual([...Deno.readDirSync(dir)], [], "the plugin removed its socket");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("README: the package holds only what users import (publish.include): entry points, src/ (with the generated X.509 bundle), README, LICENSE, deno.json", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: repoRoot,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  const files = [...text.matchAll(/file:\/\/(\S+) \(/g)].map((m) => m[1].slice(repoRoot.length + 1));
  assert.ok(files.length > 20, text);
  for (const file of files) {
    assert.match(
      file,
      /^(mod|plugin|sftpgo|cli)\.ts$|^src\/.*\.ts$|^src\/gen\/x509\/asn1\.js$|^README\.md$|^LICENSE$|^deno\.json$/,
      file,
    );
  }
  for (
    const needed of [
      "mod.ts",
      "plugin.ts",
      "sftpgo.ts",
      "cli.ts",
      "src/pack/launcher.ts",
      "src/gen/tether/kv/v1/kv_pb.ts",
      "src/gen/x509/asn1.js",
      "src/gen/x509/asn1.d.ts",
    ]
  ) {
    assert.ok(files.includes(needed), `${needed} is published`);
  }
});
