/**
 * The lean gRPC server (src/h2server.ts) on its own: every call kind, deadlines, cancellation, unknown
 * methods, error statuses (trailers-only, percent-encoded), message size limits, flow control and mTLS,
 * against a plain grpc-go client (tests/interop/go/cmd/edgeprobe), the Tether host's client, and raw
 * HTTP/2 where the bytes on the wire are the point. The test service tether.test.Edge is built here from
 * the KV messages, so that client streaming (which no .proto of the project has) is covered too.
 */

import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { connect } from "node:net";
import { Buffer } from "node:buffer";
import { create, createFileRegistry, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  AddRequestSchema,
  AddResponseSchema,
  EntrySchema,
  file_tether_kv_v1_kv,
} from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { H2Server } from "../../src/h2server.ts";
import { removeSocket, startServer, type TlsMaterial } from "../../src/listen.ts";
import { openChannel } from "../../src/transport.ts";
import { createServiceClient } from "../../src/rpc.ts";
import {
  deserializer,
  type HandlerContext,
  serializer,
  type ServiceRegistration,
} from "../../src/service.ts";
import { GrpcStatus, TetherError } from "../../src/errors.ts";
import { certificatePemToDer, generateCertificate } from "../../src/mtls.ts";
import { eventually, goFixture, ignoreWithoutGo, repoRoot } from "../helpers.ts";

const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "tether/test/edge.proto",
    package: "tether.test",
    syntax: "proto3",
    dependency: ["tether/kv/v1/kv.proto"],
    service: [{
      name: "Edge",
      method: [
        { name: "Echo", inputType: ".tether.kv.v1.Entry", outputType: ".tether.kv.v1.Entry" },
        {
          name: "Count",
          inputType: ".tether.kv.v1.AddRequest",
          outputType: ".tether.kv.v1.AddResponse",
          serverStreaming: true,
        },
        {
          name: "Sum",
          inputType: ".tether.kv.v1.AddRequest",
          outputType: ".tether.kv.v1.AddResponse",
          clientStreaming: true,
        },
        {
          name: "Chat",
          inputType: ".tether.kv.v1.Entry",
          outputType: ".tether.kv.v1.Entry",
          clientStreaming: true,
          serverStreaming: true,
        },
        {
          name: "Hold",
          inputType: ".tether.kv.v1.Entry",
          outputType: ".tether.kv.v1.AddResponse",
          clientStreaming: true,
        },
        {
          name: "Flood",
          inputType: ".tether.kv.v1.AddRequest",
          outputType: ".tether.kv.v1.Entry",
          serverStreaming: true,
        },
      ],
    }],
  }),
  (name) => name === "tether/kv/v1/kv.proto" ? file_tether_kv_v1_kv : undefined,
);
const Edge = registry.getService("tether.test.Edge") as DescService;

type Entry = { key: string; value: Uint8Array };
type Add = { a: bigint; b: bigint };
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** What the handlers saw: why each waiting call's signal aborted, how many Flood answers were produced. */
interface Seen {
  aborts: Map<string, unknown>;
  produced: number;
  /** Hold reads its requests only once this resolves. */
  release?: Promise<void>;
  /** How Sum's request loop ended: `completed <requests>`, or `threw <gRPC status>`. */
  sumLoop?: string;
}

function edgeService(seen: Seen): ServiceRegistration {
  return {
    service: Edge,
    implementation: {
      echo: async ({ key, value }: Entry, context: HandlerContext) => {
        if (key === "fail") {
          throw new TetherError("rpc", text(value), { status: GrpcStatus.INVALID_ARGUMENT });
        }
        if (key === "meta") return { key, value: new TextEncoder().encode(JSON.stringify(context.metadata)) };
        if (key.startsWith("wait:")) {
          await new Promise((resolve) => context.signal.addEventListener("abort", resolve, { once: true }));
          seen.aborts.set(key, context.signal.reason);
          throw context.signal.reason;
        }
        return { key, value };
      },
      count: async function* ({ a, b }: Add) {
        for (let i = a; i <= b; i++) yield { sum: i };
      },
      sum: async (requests: AsyncIterable<Add>) => {
        let sum = 0n;
        let count = 0;
        try {
          for await (const { a, b } of requests) {
            sum += a + b;
            count++;
          }
        } catch (error) {
          seen.sumLoop = `threw ${(error as TetherError).status}`;
          throw error;
        }
        seen.sumLoop = `completed ${count}`;
        return { sum };
      },
      chat: async function* (requests: AsyncIterable<Entry>) {
        for await (const entry of requests) yield entry;
      },
      hold: async (requests: AsyncIterable<Entry>) => {
        await seen.release;
        let sum = 0n;
        for await (const _ of requests) sum++;
        return { sum };
      },
      flood: async function* ({ a, b }: Add) {
        for (let i = 0; i < Number(a); i++) {
          seen.produced++;
          yield { key: String(i), value: new Uint8Array(Number(b)) };
        }
      },
    } as unknown as ServiceRegistration["implementation"],
  };
}

/** An H2Server on a fresh socket, with a 1 KiB request limit; stopped and removed after `fn`. */
async function withServer(
  fn: (socket: string, seen: Seen) => Promise<void>,
  tls?: TlsMaterial,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tether-h2server-" });
  const socket = `${dir}/edge.sock`;
  const seen: Seen = { aborts: new Map(), produced: 0 };
  const server = new H2Server([edgeService(seen)], { tls, maxReceiveMessageBytes: 1024 });
  await new Promise<void>((resolve) => server.server.listen(socket, resolve));
  try {
    await fn(socket, seen);
  } finally {
    server.close();
    removeSocket(socket);
    await Deno.remove(dir, { recursive: true });
  }
}

interface ProbeResult {
  code: string;
  message: string;
  values?: string[];
}

async function probe(args: string[]): Promise<Record<string, ProbeResult>> {
  const output = await new Deno.Command(await goFixture("edgeprobe"), { args, stderr: "inherit" }).output();
  assert.equal(output.code, 0, "edgeprobe failed");
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

Deno.test({
  name: "h2server: a grpc-go client: all four call kinds, deadline, cancel, unknown method and service, " +
    "error status and message, request size limit",
  ignore: ignoreWithoutGo(),
  fn: () =>
    withServer(async (socket, seen) => {
      const report = await probe(["-addr", socket]);
      assert.deepEqual(report.ok, { code: "OK", message: "", values: ["hello", "world"] });
      assert.equal(report.deadline.code, "DeadlineExceeded");
      assert.equal(report.cancel.code, "Canceled");
      assert.equal(report.unknown.code, "Unimplemented");
      assert.match(report.unknown.message, /\/tether\.test\.Edge\/Nope/);
      assert.equal(report.unknownService.code, "Unimplemented");
      assert.deepEqual(report.error, { code: "InvalidArgument", message: " 100% sûr,\nline two " });
      assert.equal(report.large.code, "ResourceExhausted");
      assert.match(report.large.message, /2\d\d\d vs\. 1024/);
      assert.deepEqual(report.serverStream, { code: "OK", message: "", values: ["1", "2", "3", "4", "5"] });
      assert.deepEqual(report.clientStream, { code: "OK", message: "", values: ["66"] });
      assert.deepEqual(report.bidi.values, Array.from({ length: 20 }, (_, i) => String(i)));
      assert.equal(report.bidi.code, "OK");
      // The handlers' signals aborted: the client's own cancel is CANCELLED; at the deadline the server's
      // timer and the client's RST_STREAM race, either status is right.
      assert.ok(await eventually(() => seen.aborts.size === 2), "a waiting handler was never aborted");
      assert.equal((seen.aborts.get("wait:cancel") as TetherError).status, GrpcStatus.CANCELLED);
      assert.ok(
        [GrpcStatus.CANCELLED, GrpcStatus.DEADLINE_EXCEEDED].includes(
          (seen.aborts.get("wait:deadline") as TetherError).status as 1 | 4,
        ),
      );
    }),
});

Deno.test({
  name: "h2server: mTLS: a grpc-go client with the host's certificate is served; one without a client " +
    "certificate, or with another one, is refused",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const [plugin, host, stranger] = await Promise.all([
      generateCertificate(),
      generateCertificate(),
      generateCertificate(),
    ]);
    const dir = await Deno.makeTempDir({ prefix: "tether-h2server-pem-" });
    try {
      const files = {
        ca: `${dir}/plugin.pem`,
        hostCert: `${dir}/host.pem`,
        hostKey: `${dir}/host-key.pem`,
        strangerCert: `${dir}/stranger.pem`,
        strangerKey: `${dir}/stranger-key.pem`,
      };
      await Deno.writeTextFile(files.ca, plugin.certPem);
      await Deno.writeTextFile(files.hostCert, host.certPem);
      await Deno.writeTextFile(files.hostKey, host.keyPem);
      await Deno.writeTextFile(files.strangerCert, stranger.certPem);
      await Deno.writeTextFile(files.strangerKey, stranger.keyPem);
      const tls: TlsMaterial = {
        certPem: plugin.certPem,
        keyPem: plugin.keyPem,
        peerCaPem: host.certPem,
        pinnedPeerDer: certificatePemToDer(host.certPem),
      };
      await withServer(async (socket) => {
        const served = await probe([
          "-addr",
          socket,
          "-ca",
          files.ca,
          "-cert",
          files.hostCert,
          "-key",
          files.hostKey,
        ]);
        assert.deepEqual(served.ok, { code: "OK", message: "", values: ["hello", "world"] });
        const withoutCert = await probe(["-addr", socket, "-ca", files.ca, "-cases", "ok"]);
        assert.equal(withoutCert.ok.code, "Unavailable", JSON.stringify(withoutCert.ok));
        const otherCert = await probe([
          "-addr",
          socket,
          "-ca",
          files.ca,
          "-cert",
          files.strangerCert,
          "-key",
          files.strangerKey,
          "-cases",
          "ok",
        ]);
        assert.equal(otherCert.ok.code, "Unavailable", JSON.stringify(otherCert.ok));
      }, tls);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("h2server: the Tether host's client, every call kind", async () => {
  await withServer(async (socket) => {
    const channel = openChannel({ network: "unix", address: socket }, undefined);
    try {
      // deno-lint-ignore no-explicit-any
      const edge = createServiceClient(channel, Edge) as any;
      const echoed = await edge.echo({ key: "k", value: new Uint8Array([1, 2]) });
      assert.deepEqual([echoed.key, [...echoed.value]], ["k", [1, 2]]);
      const counted: bigint[] = [];
      for await (const { sum } of edge.count({ a: 3n, b: 6n })) counted.push(sum);
      assert.deepEqual(counted, [3n, 4n, 5n, 6n]);
      const adds = (async function* () {
        for (let i = 1n; i <= 4n; i++) yield { a: i, b: i };
      })();
      assert.equal((await edge.sum(adds)).sum, 20n);
      const chat = (async function* () {
        for (let i = 0; i < 50; i++) yield { key: `m${i}` };
      })();
      const keys: string[] = [];
      for await (const { key } of edge.chat(chat)) keys.push(key);
      assert.deepEqual(keys, Array.from({ length: 50 }, (_, i) => `m${i}`));
      const error = await edge.echo({ key: "fail", value: new TextEncoder().encode("no  ") }).catch((
        e: unknown,
      ) => e);
      assert.ok(error instanceof TetherError);
      assert.equal(error.status, GrpcStatus.INVALID_ARGUMENT);
      assert.match(error.message, /INVALID_ARGUMENT: no {2}$/);
    } finally {
      channel.close();
    }
  });
});

/** One raw HTTP/2 request; resolves with the response headers, DATA and trailers once the stream ends. */
function rawCall(
  session: http2.ClientHttp2Session,
  path: string,
  body: Buffer | undefined,
  headers: http2.OutgoingHttpHeaders = {},
): Promise<{ headers: http2.IncomingHttpHeaders; data: Buffer; trailers?: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      "te": "trailers",
      ...headers,
    });
    let response: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    stream.on("response", (h) => response = h);
    stream.on("trailers", (t) => trailers = t);
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("close", () => resolve({ headers: response, data: Buffer.concat(chunks), trailers }));
    stream.end(body);
  });
}

const encodeEntry = serializer(EntrySchema);
const decodeEntry = deserializer(EntrySchema);
const encodeAdd = serializer(AddRequestSchema);

function framed(message: Uint8Array, flag = 0, announced = message.length): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flag;
  out.writeUInt32BE(announced, 1);
  out.set(message, 5);
  return out;
}

function entry(key: string, value = ""): Buffer {
  return framed(encodeEntry({ key, value: new TextEncoder().encode(value) }));
}

async function withSession(socket: string, fn: (session: http2.ClientHttp2Session) => Promise<void>) {
  const session = http2.connect("http://localhost", { createConnection: () => connect(socket) });
  session.on("error", () => {});
  try {
    await fn(session);
  } finally {
    session.close();
  }
}

Deno.test("h2server: on the wire: trailers-only errors, percent-encoded grpc-message, refusals before any message", async () => {
  await withServer((socket) =>
    withSession(socket, async (session) => {
      const failed = await rawCall(session, "/tether.test.Edge/Echo", entry("fail", " 100% sûr\n"));
      // Trailers-only: the status is in the one HEADERS frame, nothing follows.
      assert.equal(failed.headers[":status"], 200);
      assert.equal(failed.headers["content-type"], "application/grpc");
      assert.equal(failed.headers["grpc-status"], String(GrpcStatus.INVALID_ARGUMENT));
      assert.equal(failed.headers["grpc-message"], "%20100%25 s%C3%BBr%0A");
      assert.equal(failed.data.length, 0);
      assert.equal(failed.trailers, undefined);

      const ok = await rawCall(session, "/tether.test.Edge/Echo", entry("a", "b"));
      assert.equal(ok.headers["grpc-status"], undefined);
      assert.equal(ok.trailers?.["grpc-status"], "0");
      assert.equal(decodeEntry(ok.data.subarray(5)).key, "a");

      const unknown = await rawCall(session, "/tether.test.Edge/Nope", entry("a"));
      assert.equal(unknown.headers["grpc-status"], String(GrpcStatus.UNIMPLEMENTED));

      const compressedFlag = await rawCall(session, "/tether.test.Edge/Echo", framed(new Uint8Array(3), 1));
      assert.equal(compressedFlag.headers["grpc-status"], String(GrpcStatus.INTERNAL));
      const gzip = await rawCall(session, "/tether.test.Edge/Echo", entry("a"), { "grpc-encoding": "gzip" });
      assert.equal(gzip.headers["grpc-status"], String(GrpcStatus.UNIMPLEMENTED));

      const tooLarge = await rawCall(session, "/tether.test.Edge/Echo", framed(new Uint8Array(0), 0, 4096));
      assert.equal(tooLarge.headers["grpc-status"], String(GrpcStatus.RESOURCE_EXHAUSTED));
      assert.match(decodeURIComponent(String(tooLarge.headers["grpc-message"])), /4096 vs\. 1024/);

      const badTimeout = await rawCall(session, "/tether.test.Edge/Echo", entry("a"), {
        "grpc-timeout": "soon",
      });
      assert.equal(badTimeout.headers["grpc-status"], String(GrpcStatus.INTERNAL));

      const notGrpc = await rawCall(session, "/tether.test.Edge/Echo", entry("a"), {
        "content-type": "application/json",
      });
      assert.equal(notGrpc.headers[":status"], 415);

      const none = await rawCall(session, "/tether.test.Edge/Echo", undefined);
      assert.equal(none.headers["grpc-status"], String(GrpcStatus.UNIMPLEMENTED));
      const two = await rawCall(session, "/tether.test.Edge/Echo", Buffer.concat([entry("a"), entry("b")]));
      assert.equal(two.headers["grpc-status"], String(GrpcStatus.UNIMPLEMENTED));
    })
  );
});

Deno.test("h2server: the server's own deadline (grpc-timeout) ends the call and aborts the handler; RST_STREAM aborts it too", async () => {
  await withServer((socket, seen) =>
    withSession(socket, async (session) => {
      // No client-side timer here: only the server can end this call.
      const expired = await rawCall(session, "/tether.test.Edge/Echo", entry("wait:server-deadline"), {
        "grpc-timeout": "200m",
      });
      assert.equal(expired.headers["grpc-status"], String(GrpcStatus.DEADLINE_EXCEEDED));
      assert.ok(await eventually(() => seen.aborts.has("wait:server-deadline")));
      assert.equal(
        (seen.aborts.get("wait:server-deadline") as TetherError).status,
        GrpcStatus.DEADLINE_EXCEEDED,
      );

      const stream = session.request({
        ":method": "POST",
        ":path": "/tether.test.Edge/Echo",
        "content-type": "application/grpc",
      });
      stream.on("error", () => {});
      stream.end(entry("wait:rst"));
      await new Promise((resolve) => setTimeout(resolve, 100));
      stream.close(http2.constants.NGHTTP2_CANCEL);
      assert.ok(await eventually(() => seen.aborts.has("wait:rst")), "RST_STREAM did not abort the handler");
      assert.equal((seen.aborts.get("wait:rst") as TetherError).status, GrpcStatus.CANCELLED);
    })
  );
});

Deno.test("h2server: a handler sees the request metadata, without the transport headers", async () => {
  await withServer((socket) =>
    withSession(socket, async (session) => {
      const answer = await rawCall(session, "/tether.test.Edge/Echo", entry("meta"), {
        "x-trace": "abc",
        "grpc-timeout": "10S",
        "x-blob-bin": "AAEC",
      });
      const metadata = JSON.parse(text(decodeEntry(answer.data.subarray(5)).value));
      assert.equal(metadata["x-trace"], "abc");
      for (const hidden of ["grpc-timeout", "te", "content-type", ":path", "x-blob-bin"]) {
        assert.equal(metadata[hidden], undefined, `${hidden} reached the handler`);
      }
    })
  );
});

Deno.test("h2server: a caller that does not read pauses the handler's stream (flow control), and gets everything once it reads", async () => {
  await withServer((socket, seen) =>
    withSession(socket, async (session) => {
      const stream = session.request({
        ":method": "POST",
        ":path": "/tether.test.Edge/Flood",
        "content-type": "application/grpc",
      });
      stream.on("error", () => {});
      // 200 answers of 64 KiB (12.5 MiB) against HTTP/2's default 64 KiB window of this client.
      stream.end(framed(encodeAdd({ a: 200n, b: 65536n })));
      stream.pause();
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.ok(
        seen.produced < 50,
        `the handler produced ${seen.produced} answers for a caller reading none`,
      );
      let bytes = 0;
      stream.on("data", (chunk: Buffer) => bytes += chunk.length);
      stream.resume();
      await new Promise((resolve) => stream.on("close", resolve));
      assert.equal(seen.produced, 200);
      assert.ok(bytes > 200 * 65536, `only ${bytes} bytes arrived`);
    })
  );
});

Deno.test("h2server: the default request limit is go-plugin's (2^31 - 1 bytes), as with grpc-js's server", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tether-h2server-" });
  const running = await startServer(
    [edgeService({ aborts: new Map(), produced: 0 })],
    { network: "unix", socketDir: dir },
    undefined,
  );
  try {
    await withSession(running.endpoint.address, async (session) => {
      const over = await rawCall(session, "/tether.test.Edge/Echo", framed(new Uint8Array(0), 0, 2 ** 31));
      assert.equal(over.headers["grpc-status"], String(GrpcStatus.RESOURCE_EXHAUSTED));
      assert.match(decodeURIComponent(String(over.headers["grpc-message"])), /2147483648 vs\. 2147483647/);
    });
  } finally {
    running.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** The modules a program loads at start (static imports only), from `deno info --json`. */
async function staticGraph(entry: string): Promise<string[]> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: repoRoot,
    stderr: "inherit",
  }).output();
  const info = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    roots: string[];
    redirects?: Record<string, string>;
    modules: { specifier: string; dependencies?: { code?: { specifier: string }; isDynamic?: boolean }[] }[];
  };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const stack = [...info.roots];
  while (stack.length > 0) {
    let specifier = stack.pop()!;
    specifier = info.redirects?.[specifier] ?? specifier;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dependency of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dependency.code && !dependency.isDynamic) stack.push(dependency.code.specifier);
    }
  }
  return [...seen];
}

Deno.test("h2server: a plugin that only serves loads no grpc-js (static module graph of plugin.ts and the KV example)", async () => {
  for (const entry of ["plugin.ts", "examples/kv/plugin.ts"]) {
    const graph = await staticGraph(entry);
    assert.ok(
      graph.some((s) => s.endsWith("/src/h2server.ts")),
      `${entry}: the lean server is not in its graph`,
    );
    assert.deepEqual(graph.filter((s) => s.includes("grpc-js")), [], `${entry} loads grpc-js at start`);
  }
});

Deno.test("h2server: a handler that does not read its requests pauses the caller (flow control), and reads them all later", async () => {
  const release = Promise.withResolvers<void>();
  await withServer(async (socket, seen) => {
    seen.release = release.promise;
    await withSession(socket, async (session) => {
      const stream = session.request({
        ":method": "POST",
        ":path": "/tether.test.Edge/Hold",
        "content-type": "application/grpc",
      });
      stream.on("error", () => {});
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      const closed = new Promise((resolve) => stream.on("close", resolve));
      // 20,000 requests of about 1 KB (the test server's limit is 1 KiB): 20 MB, over twice the 8 MiB stream
      // window the server grants. Held, the server reads none, so the caller must stall before the end.
      const total = 20_000;
      const message = entry("x", "y".repeat(1000));
      let written = 0;
      const writer = (async () => {
        for (let i = 0; i < total; i++) {
          if (!stream.write(message)) await new Promise((resolve) => stream.once("drain", resolve));
          written++;
        }
        stream.end();
      })();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const whileHeld = written;
      release.resolve();
      await writer;
      await closed;
      assert.ok(whileHeld < total, `the caller wrote all ${total} requests while the handler read none`);
      const answer = Buffer.concat(chunks);
      assert.equal(deserializer(AddResponseSchema)(answer.subarray(5)).sum, BigInt(total));
    });
  });
});

Deno.test("h2server: a client stream cut off by the caller (RST_STREAM) makes the handler's request loop throw CANCELLED, not end as if complete", async () => {
  await withServer((socket, seen) =>
    withSession(socket, async (session) => {
      const add = (a: number, b: number) =>
        framed(serializer(AddRequestSchema)({ a: BigInt(a), b: BigInt(b) }));
      // Half-closed: the loop completes with every request.
      const whole = await rawCall(session, "/tether.test.Edge/Sum", Buffer.concat([add(1, 2), add(3, 4)]));
      assert.equal(whole.trailers?.["grpc-status"], String(GrpcStatus.OK));
      assert.equal(seen.sumLoop, "completed 2");

      // Cut off after two requests, without a half-close: the loop must not look complete.
      seen.sumLoop = undefined;
      const stream = session.request({
        ":method": "POST",
        ":path": "/tether.test.Edge/Sum",
        "content-type": "application/grpc",
      });
      stream.on("error", () => {});
      stream.write(Buffer.concat([add(1, 2), add(3, 4)]));
      await new Promise((resolve) => setTimeout(resolve, 100));
      stream.close(http2.constants.NGHTTP2_CANCEL);
      assert.ok(
        await eventually(() => seen.sumLoop !== undefined),
        "Sum's request loop neither ended nor threw",
      );
      assert.equal(seen.sumLoop, `threw ${GrpcStatus.CANCELLED}`);
    })
  );
});
