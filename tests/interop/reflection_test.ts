/**
 * gRPC server reflection as grpc-go clients see it: the Go fixture reflecthost (go-plugin host + grpc-go's
 * grpc_reflection_v1 / v1alpha client stubs + protodesc) launches the TypeScript KV plugin and lists its
 * services and methods over both reflection versions; the same listing from the Go KV plugin (whose reflection
 * go-plugin registers) is the reference.
 *
 * @module
 */

import assert from "node:assert/strict";
import { goFixture, ignoreWithoutGo } from "../helpers.ts";
import { inSandbox } from "./support.ts";

const ignore = ignoreWithoutGo();

interface Listing {
  services: string[];
  methods: Record<string, string[]>;
  error?: string;
}

async function reflecthost(
  plugin: { cmd: string; args: string[] },
  dir: string,
): Promise<Record<string, Listing>> {
  const out = await new Deno.Command(await goFixture("reflecthost"), {
    args: ["--", plugin.cmd, ...plugin.args],
    env: { TMPDIR: dir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  assert.equal(out.code, 0, `reflecthost failed: ${stdout}\n${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(stdout);
}

Deno.test({
  name: "grpc-go reflection client (v1 and v1alpha) lists a Tether plugin's services like a Go plugin's",
  ignore,
  fn: () =>
    inSandbox(async (sandbox) => {
      const ts = await reflecthost(sandbox.tsPlugin, sandbox.dir);
      const go = await reflecthost({ cmd: sandbox.goPlugin, args: [] }, sandbox.dir);
      for (const version of ["v1", "v1alpha"]) {
        const listing = ts[version];
        assert.equal(listing.error, undefined, `${version}: ${listing.error}`);
        // Same services as go-plugin + grpc-go serve for a Go plugin.
        assert.deepEqual(listing.services, go[version].services, version);
        assert.ok(listing.services.includes("tether.kv.v1.KV"));
        assert.ok(listing.services.includes("grpc.reflection.v1.ServerReflection"));
        assert.ok(listing.services.includes("grpc.reflection.v1alpha.ServerReflection"));
        // Descriptors resolve (protodesc.NewFiles) and carry every method.
        assert.deepEqual(listing.methods["tether.kv.v1.KV"], go[version].methods["tether.kv.v1.KV"]);
        assert.deepEqual(listing.methods["plugin.GRPCBroker"], ["StartStream"]);
      }
    }),
});
