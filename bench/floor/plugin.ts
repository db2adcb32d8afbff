/**
 * The floor plugin: the KV plugin's workload with Tether taken out and only
 * Deno's runtime layer left. `node:http2` and `node:tls`, nothing else: no
 * Tether, no protobuf runtime, no certificate code. It does what a go-plugin
 * gRPC plugin must and no more:
 *
 * - reads go-plugin's environment (`PLUGIN_PROTOCOL_VERSIONS`, and
 *   `PLUGIN_CLIENT_CERT` for AutoMTLS, which it then requires of the host);
 * - uses a certificate made before the run (`bench/floor/certs.ts`; a floor
 *   is a lower bound, so the certificate work is left out of it);
 * - listens on a unix socket as go-plugin does, prints the handshake line
 *   (with its certificate in base64 RawStd), ignores SIGINT;
 * - answers `KV/Put` with an empty message, `KV/Get` with one fixed,
 *   precomputed `GetResponse` (the bench's 64-byte value), SFTPGo's
 *   `Notifier` methods with an empty message (counting them), and
 *   `GRPCController/Shutdown` by exiting; go-plugin's stdio and broker
 *   streams are accepted and left open.
 *
 *   deno run --no-config --no-prompt -A bench/floor/plugin.ts --certs DIR [--out FILE]
 *
 * `--out FILE`: when the process ends, the counts of notifier calls as JSON
 * (`{"fs": N, "provider": N, "log": N}`), as bench/fixtures/count_notifier.ts.
 *
 * @module
 */

import * as http2 from "node:http2";
import { parseArgs } from "node:util";
import {
  derFromPem,
  getResponse,
  grpcFrame,
  rawBase64,
  readCerts,
  SESSION_WINDOW,
  STREAM_WINDOW,
  VALUE64,
} from "./wire.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { certs: { type: "string" }, out: { type: "string" } },
});
if (!values.certs) {
  console.error("usage: bench/floor/plugin.ts --certs DIR [--out FILE]");
  Deno.exit(2);
}

// Deno's one-time TLS crypto set-up, started on Web Crypto's thread while the rest loads, as Tether's
// serve() does (src/tls_warmup.ts): the floor keeps every trick Tether has, so it stays a lower bound.
if (Deno.env.get("PLUGIN_CLIENT_CERT")) {
  crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]).catch(() => {});
}

const versions = (Deno.env.get("PLUGIN_PROTOCOL_VERSIONS") ?? "1").split(",").map(Number).filter(
  Number.isInteger,
);
const version = versions.length ? Math.max(...versions) : 1;
const hostCert = Deno.env.get("PLUGIN_CLIENT_CERT");
const own = readCerts(values.certs, "plugin");

// Every answer precomputed: the Get answer, the empty message, the trailers.
const GET_ANSWER = getResponse(VALUE64);
const EMPTY = grpcFrame(new Uint8Array(0));
const HEADERS = { ":status": 200, "content-type": "application/grpc" };
const OK = { "grpc-status": "0" };
const counts = { fs: 0, provider: 0, log: 0 };

function answer(stream: http2.ServerHttp2Stream, message: Uint8Array): void {
  // The request is read to its end first, as a unary server does.
  stream.on("data", () => {});
  stream.once("end", () => {
    stream.respond(HEADERS, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers(OK));
    stream.end(message);
  });
}

const common: http2.ServerOptions = { settings: { initialWindowSize: STREAM_WINDOW } };
const server = hostCert
  ? http2.createSecureServer({
    ...common,
    key: own.keyPem,
    cert: own.certPem,
    ca: hostCert,
    requestCert: true,
    rejectUnauthorized: true,
  })
  : http2.createServer(common);
server.on("session", (session: http2.ServerHttp2Session) => {
  session.on("error", () => {});
  session.setLocalWindowSize(SESSION_WINDOW);
});
server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
  stream.on("error", () => {});
  const path = String(headers[":path"]);
  switch (path) {
    case "/tether.kv.v1.KV/Get":
      return answer(stream, GET_ANSWER);
    case "/tether.kv.v1.KV/Put":
      return answer(stream, EMPTY);
    case "/proto.Notifier/SendFsEvent":
      counts.fs++;
      return answer(stream, EMPTY);
    case "/proto.Notifier/SendProviderEvent":
      counts.provider++;
      return answer(stream, EMPTY);
    case "/proto.Notifier/SendLogEvent":
      counts.log++;
      return answer(stream, EMPTY);
    case "/plugin.GRPCController/Shutdown":
      answer(stream, EMPTY);
      stream.once("close", () => Deno.exit(0));
      return;
    case "/plugin.GRPCStdio/StreamStdio":
    case "/plugin.GRPCBroker/StartStream":
      // Open for as long as the connection: nothing is ever sent on them here.
      stream.respond(HEADERS);
      return;
    default:
      stream.respond({ ...HEADERS, "grpc-status": "12", "grpc-message": `unknown method ${path}` }, {
        endStream: true,
      });
  }
});

const dir = Deno.env.get("TMPDIR") || "/tmp";
const socket = `${dir}/plugin${crypto.getRandomValues(new Uint32Array(1))[0]}`;
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(socket);
  } catch {
    // Already gone.
  }
  if (values.out) Deno.writeTextFileSync(values.out, JSON.stringify(counts));
});
Deno.addSignalListener("SIGINT", () => {});
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));

await new Promise<void>((resolve) => server.listen(socket, resolve));
const cert = hostCert ? rawBase64(derFromPem(own.certPem)) : "";
await Deno.stdout.write(new TextEncoder().encode(`1|${version}|unix|${socket}|grpc|${cert}\n`));
