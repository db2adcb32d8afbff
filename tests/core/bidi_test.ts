/**
 * Bidirectional streams on one call: many requests in flight, ping-pong, half-close. The call must end (OK)
 * with one answer per request, in order, once the caller stops sending, from a Tether host and from a grpc-go
 * client (the fixture bidihost), against a Tether plugin and, as the reference, a Go plugin. The bidi method is
 * gRPC reflection (grpc.reflection.v1/v1alpha ServerReflectionInfo), which both kinds of plugin serve. Handlers
 * of other shapes (answering after the request loop, breaking out of it; client streaming) run in-process.
 *
 * Each call has a deadline far above what it needs, so a stream that never ends fails the test with
 * DEADLINE_EXCEEDED rather than hanging it.
 */

import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { create, createFileRegistry, type DescService, fromBinary } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import type { PluginClient, PluginClientOptions } from "../../mod.ts";
import * as v1 from "../../src/gen/grpc/reflection/v1/reflection_pb.ts";
import * as v1alpha from "../../src/gen/grpc/reflection/v1alpha/reflection_pb.ts";
import { AsyncQueue } from "../../src/queue.ts";
import { reflect } from "../../src/reflection.ts";
import {
  type CallOptions,
  createServiceClient,
  type HandlerContext,
  registration,
  type ServiceRegistration,
} from "../../src/rpc.ts";
import { type ServerImplementation, setServerImplementation, startServer } from "../../src/transport.ts";
import { denoPlugin, goFixture, ignoreWithoutGo } from "../helpers.ts";
import { inSandbox, type Sandbox } from "./support.ts";

const ignore = ignoreWithoutGo();
const timeoutMs = 30_000;

async function started(box: Sandbox, options: PluginClientOptions): Promise<PluginClient> {
  const client = box.client(options);
  await client.start();
  return client;
}

/** The two kinds of request used here; both reflection versions take them. */
type Init = {
  host: string;
  messageRequest: { case: "listServices" | "fileContainingSymbol"; value: string };
};

/** Request `i`: a list, a symbol whose file imports another, or an unknown symbol. */
function request(i: number): Init {
  const host = String(i);
  switch (i % 3) {
    case 0:
      return { host, messageRequest: { case: "listServices", value: "" } };
    case 1:
      return { host, messageRequest: { case: "fileContainingSymbol", value: "plugin.GRPCStdio" } };
    default:
      return { host, messageRequest: { case: "fileContainingSymbol", value: "no.such.Symbol" } };
  }
}

/** Asserts that `answers` answer requests 0..n-1 in order, each with the right kind of answer. */
function assertAnswers(answers: readonly v1.ServerReflectionResponse[], n: number): void {
  assert.equal(answers.length, n, `${n} requests, ${answers.length} answers`);
  answers.forEach((answer, i) => {
    assert.equal(answer.validHost, String(i));
    assert.equal(answer.originalRequest?.host, String(i));
    const expected = ["listServicesResponse", "fileDescriptorResponse", "errorResponse"][i % 3];
    assert.equal(answer.messageResponse.case, expected, `answer ${i}`);
    if (answer.messageResponse.case === "fileDescriptorResponse") {
      // The file first; grpc-go leaves out imports it already sent on the stream, Tether sends them again.
      const first = fromBinary(
        FileDescriptorProtoSchema,
        answer.messageResponse.value.fileDescriptorProto[0],
      );
      assert.equal(first.package, "plugin");
      assert.deepEqual(first.service.map((s) => s.name), ["GRPCStdio"]);
    }
  });
}

/** `n` requests sent at once (the generator never waits for an answer), then half-close; reads to the end. */
async function pipelined(client: PluginClient, n: number): Promise<void> {
  const stub = client.dispense(v1.ServerReflection);
  async function* requests() {
    for (let i = 0; i < n; i++) yield request(i);
  }
  const answers = [];
  for await (const answer of stub.serverReflectionInfo(requests(), { timeoutMs })) answers.push(answer);
  assertAnswers(answers, n);
}

/** One request, its answer, the next request... on one stream; then half-close: the stream ends. */
async function pingPong(client: PluginClient, n: number): Promise<void> {
  const stub = client.dispense(v1.ServerReflection);
  const requests = new AsyncQueue<Init>();
  const responses = stub.serverReflectionInfo(requests, { timeoutMs })[Symbol.asyncIterator]();
  const answers = [];
  for (let i = 0; i < n; i++) {
    requests.push(request(i));
    const next = await responses.next();
    assert.equal(next.done, false, `the stream ended after ${i} answers`);
    answers.push(next.value as v1.ServerReflectionResponse);
  }
  requests.close();
  assert.deepEqual(await responses.next(), { done: true, value: undefined });
  assertAnswers(answers, n);
}

/** The v1alpha service takes the same path (and a stream with no request at all ends at once). */
async function v1alphaAndEmpty(client: PluginClient): Promise<void> {
  const stub = client.dispense(v1alpha.ServerReflection);
  async function* requests() {
    for (let i = 0; i < 30; i++) yield request(i);
  }
  const answers = [];
  for await (const answer of stub.serverReflectionInfo(requests(), { timeoutMs })) answers.push(answer);
  assert.equal(answers.length, 30);
  assert.deepEqual(answers.map((a) => a.validHost), Array.from({ length: 30 }, (_, i) => String(i)));
  const none = [];
  for await (const answer of stub.serverReflectionInfo((async function* () {})(), { timeoutMs })) {
    none.push(answer);
  }
  assert.deepEqual(none, []);
}

async function allFromTetherHost(client: PluginClient): Promise<void> {
  await pipelined(client, 300);
  await pingPong(client, 30);
  await v1alphaAndEmpty(client);
  // Several streams at once on one connection.
  await Promise.all([pipelined(client, 100), pipelined(client, 100), pingPong(client, 10)]);
  // reflect() sends all its lookups on one stream.
  const { services, registry } = await reflect(client, { timeoutMs });
  assert.ok(services.includes("tether.kv.v1.KV"), String(services));
  assert.ok(registry.getService("plugin.GRPCStdio") !== undefined);
  await client.ping();
}

Deno.test("bidi: Tether host → TS plugin: 300 requests in flight, ping-pong, half-close: every answer, then the end", async () => {
  await inSandbox(async (box) => await allFromTetherHost(await started(box, box.tsKv())));
});

Deno.test({
  name: "bidi: Tether host → Go plugin (reference): 300 requests in flight, ping-pong, half-close",
  ignore,
  fn: () => inSandbox(async (box) => await allFromTetherHost(await started(box, await box.goKv()))),
});

interface BidiRun {
  sent: number;
  answers: number;
  inOrder: boolean;
  kinds: Record<string, number>;
  end: string;
}

/** Runs the grpc-go fixture bidihost against a plugin command line. */
async function bidihost(box: Sandbox, argv: string[]): Promise<{ pipelined: BidiRun; pingpong: BidiRun }> {
  const out = await new Deno.Command(await goFixture("bidihost"), {
    args: ["-n", "300", "--", ...argv],
    env: { TMPDIR: box.dir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  assert.equal(out.code, 0, `bidihost failed: ${stdout}\n${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(stdout);
}

for (const plugin of ["TS", "Go"] as const) {
  Deno.test({
    name:
      `bidi: grpc-go client → ${plugin} plugin: 300 requests in flight and ping-pong, CloseSend, then EOF`,
    ignore,
    fn: () =>
      inSandbox(async (box) => {
        const argv = plugin === "TS"
          ? (({ cmd, args }) => [cmd, ...args, box.marker])(denoPlugin("examples/kv/plugin.ts"))
          : [await goFixture("kvplugin"), box.marker];
        const report = await bidihost(box, argv);
        for (const run of [report.pipelined, report.pingpong]) {
          assert.deepEqual(run, {
            sent: 300,
            answers: 300,
            inOrder: true,
            kinds: { list: 100, files: 100, error: 100 },
            end: "EOF",
          });
        }
      }),
  });
}

/**
 * A client-streaming service built from a descriptor in the test (the plugins' protos have no such method).
 */
function collectService(): DescService {
  const file = create(FileDescriptorProtoSchema, {
    name: "test/streams.proto",
    package: "test.streams",
    syntax: "proto3",
    messageType: [{
      name: "Note",
      field: [{
        name: "text",
        jsonName: "text",
        number: 1,
        type: FieldDescriptorProto_Type.STRING,
        label: FieldDescriptorProto_Label.OPTIONAL,
      }],
    }],
    service: [{
      name: "Streams",
      method: [{
        name: "Collect",
        inputType: ".test.streams.Note",
        outputType: ".test.streams.Note",
        clientStreaming: true,
      }],
    }],
  });
  return createFileRegistry(file, () => undefined).getService("test.streams.Streams")!;
}

/**
 * Handlers that answer only after their request loop ended, or that stop reading early: the call still ends
 * with every answer. Served in-process by grpcServiceDefinition, so the handlers can be any shape.
 */
for (const implementation of ["lean", "grpc-js"] as const) {
  Deno.test(`bidi: a handler answering after its request loop, or breaking out of it, still ends the call (${implementation} server)`, async () => {
    await loopEndsCase(implementation);
  });
}

async function loopEndsCase(implementation: ServerImplementation): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tb" });
  const answer = (request: v1.ServerReflectionRequest | undefined, host: string) => ({
    validHost: host,
    originalRequest: request,
    messageResponse: { case: "errorResponse" as const, value: { errorCode: 0, errorMessage: "" } },
  });
  const reflection = registration(v1.ServerReflection, {
    serverReflectionInfo: async function* (requests, context) {
      const seen: v1.ServerReflectionRequest[] = [];
      if (context.metadata.mode === "after") {
        for await (const request of requests) seen.push(request);
      } else {
        for await (const request of requests) {
          seen.push(request);
          if (seen.length === 2) break;
        }
      }
      for (const request of seen) yield answer(request, request.host);
      yield answer(undefined, "last");
    },
  });
  const streams = collectService();
  const collect = {
    service: streams,
    implementation: {
      collect: async (requests: AsyncIterable<{ text: string }>, context: HandlerContext) => {
        const texts = [];
        for await (const request of requests) {
          texts.push(request.text);
          if (context.metadata.mode === "break" && texts.length === 2) break;
        }
        return { text: texts.join(",") };
      },
    },
  } as unknown as ServiceRegistration;
  setServerImplementation(implementation);
  const server = await startServer([reflection, collect], { network: "unix", socketDir: dir }, undefined)
    .finally(() => setServerImplementation("lean"));
  const channel = new grpc.Client(`unix:${server.endpoint.address}`, grpc.credentials.createInsecure());
  try {
    const stub = createServiceClient(channel, v1.ServerReflection);
    const call = async (mode: string, n: number) => {
      async function* requests() {
        for (let i = 0; i < n; i++) yield request(i);
      }
      const hosts = [];
      for await (const a of stub.serverReflectionInfo(requests(), { timeoutMs, metadata: { mode } })) {
        hosts.push(a.validHost);
      }
      return hosts;
    };
    const numbers = (n: number) => Array.from({ length: n }, (_, i) => String(i));
    assert.deepEqual(await call("after", 200), [...numbers(200), "last"]);
    assert.deepEqual(await call("after", 0), ["last"]);
    assert.deepEqual(await call("break", 2), [...numbers(2), "last"]);
    assert.deepEqual(await call("break", 1), [...numbers(1), "last"]);
    assert.deepEqual(await call("break", 50), [...numbers(2), "last"]);

    // Client streaming takes the same path.
    const { collect: collectCall } = createServiceClient(channel, streams) as unknown as {
      collect(requests: AsyncIterable<{ text: string }>, options: CallOptions): Promise<{ text: string }>;
    };
    const notes = async function* (n: number) {
      for (let i = 0; i < n; i++) yield { text: String(i) };
    };
    assert.deepEqual(await collectCall(notes(100), { timeoutMs }), {
      $typeName: "test.streams.Note",
      text: numbers(100).join(","),
    });
    assert.deepEqual(await collectCall(notes(0), { timeoutMs }), {
      $typeName: "test.streams.Note",
      text: "",
    });
    assert.deepEqual(await collectCall(notes(2), { timeoutMs, metadata: { mode: "break" } }), {
      $typeName: "test.streams.Note",
      text: "0,1",
    });
  } finally {
    channel.close();
    server.stop();
    await Deno.remove(dir, { recursive: true });
  }
}
