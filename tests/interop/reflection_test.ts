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
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { PluginClient } from "../../src/client.ts";
import * as v1 from "../../src/gen/grpc/reflection/v1/reflection_pb.ts";
import { inSandbox, kvHandshake } from "./support.ts";

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

Deno.test({
  name:
    "Tether reflection answers file_by_filename and file_containing_symbol (with imports), NOT_FOUND otherwise",
  ignore,
  fn: () =>
    inSandbox(async (sandbox) => {
      const client = new PluginClient({
        cmd: sandbox.tsPlugin.cmd,
        args: sandbox.tsPlugin.args,
        handshake: kvHandshake,
        env: sandbox.pluginEnv,
        autoMTLS: true,
      });
      await client.start();
      try {
        const stub = client.dispense(v1.ServerReflection);
        // One request, then half-close: the stream ends (OK) after its one answer.
        const ask = async (messageRequest: v1.ServerReflectionRequest["messageRequest"]) => {
          const answers = [];
          const requests = (async function* () {
            yield { messageRequest };
          })();
          for await (const answer of stub.serverReflectionInfo(requests, { timeoutMs: 10_000 })) {
            answers.push(answer);
          }
          assert.equal(answers.length, 1);
          return answers[0];
        };
        const names = (r: v1.ServerReflectionResponse) =>
          r.messageResponse.case === "fileDescriptorResponse"
            ? r.messageResponse.value.fileDescriptorProto.map((b) =>
              fromBinary(FileDescriptorProtoSchema, b).name
            )
            : r.messageResponse.case;
        assert.deepEqual(names(await ask({ case: "fileByFilename", value: "tether/kv/v1/kv.proto" })), [
          "tether/kv/v1/kv.proto",
        ]);
        // The file first, then what it imports.
        const stdio = names(
          await ask({ case: "fileContainingSymbol", value: "plugin.GRPCStdio.StreamStdio" }),
        );
        assert.equal((stdio as string[])[0], "plugin/grpc_stdio.proto");
        assert.ok((stdio as string[]).includes("google/protobuf/empty.proto"), String(stdio));
        assert.deepEqual(
          names(await ask({ case: "fileContainingSymbol", value: "tether.kv.v1.GetRequest" })),
          [
            "tether/kv/v1/kv.proto",
          ],
        );
        const missing = await ask({ case: "fileContainingSymbol", value: "no.such.Symbol" });
        assert.equal(missing.messageResponse.case, "errorResponse");
        assert.equal(missing.messageResponse.value.errorCode, 5);
        assert.equal(missing.validHost, "");
        assert.equal(missing.originalRequest?.messageRequest.case, "fileContainingSymbol");
      } finally {
        await client.kill();
      }
    }),
});
