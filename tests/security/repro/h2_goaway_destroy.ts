/**
 * Not a test: a standalone reproduction (no Tether code) of a use-after-free in Deno 2.9.6's `node:http2`
 * server, for docs/security.md and an upstream report. A client makes one call on a connection and then ends
 * the connection with `session.close()` (GOAWAY). The server session receives the GOAWAY inside
 * `nghttp2_session_mem_recv`; Deno's `onGoawayData` calls `session.close()` there, the graceful close completes
 * at once (no stream left open), and `destroy()` frees the nghttp2 session while `mem_recv` is still running.
 *
 * It counts how often the server session's native `destroy` runs inside its native `receive` (the freeing
 * inside nghttp2) by wrapping both on the session's internal handle, and whether the process survives. With
 * `--defer` the server does what src/h2server.ts does (every `session.destroy()` waits one `setImmediate`).
 *
 * Usage: deno run -A tests/security/repro/h2_goaway_destroy.ts [connections=200] [bodyKiB=1024] [--defer]
 *
 * @module
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import { Buffer } from "node:buffer";

const numbers = Deno.args.filter((a) => !a.startsWith("--"));
const connections = Number(numbers[0] ?? 200);
const body = Buffer.alloc(Number(numbers[1] ?? 1024) * 1024);
const defer = Deno.args.includes("--defer");

let inReceive = 0;
let destroysInsideReceive = 0;
let destroys = 0;
const dir = Deno.makeTempDirSync();
const path = `${dir}/s`;
const server = http2.createServer();
server.on("session", (session) => {
  session.on("error", () => {});
  // The internal handle (Deno's InternalHttp2Session): wrap receive and destroy to see whether one runs in the other.
  const key = Object.getOwnPropertySymbols(session).find((s) => s.description === "kHandle")!;
  // deno-lint-ignore no-explicit-any
  const handle = (session as any)[key];
  const receive = handle.receive;
  handle.receive = function (...args: unknown[]) {
    inReceive++;
    try {
      return receive.apply(this, args);
    } finally {
      inReceive--;
    }
  };
  const destroy = handle.destroy;
  handle.destroy = function (...args: unknown[]) {
    destroys++;
    if (inReceive > 0) destroysInsideReceive++;
    return destroy.apply(this, args);
  };
  if (defer) {
    const destroyNow = session.destroy;
    session.destroy = (...args: Parameters<typeof session.destroy>) => {
      setImmediate(() => destroyNow.apply(session, args));
    };
  }
});
server.on("stream", (stream: http2.ServerHttp2Stream) => {
  stream.on("error", () => {});
  stream.on("data", () => {});
  stream.on("end", () => {
    stream.respond({ ":status": 200 });
    stream.end("ok");
  });
});
await new Promise<void>((resolve) => server.listen(path, resolve));

function call(): Promise<void> {
  return new Promise((resolve) => {
    const session = http2.connect("http://localhost", { createConnection: () => net.connect(path) });
    session.on("error", () => resolve());
    const stream = session.request({ ":method": "POST", ":path": "/" });
    stream.on("error", () => {});
    stream.resume();
    stream.on("close", () => {
      session.close();
      resolve();
    });
    stream.end(body);
  });
}

// 16 at a time, as callback02's plugin.
for (let done = 0; done < connections; done += 16) {
  await Promise.all(Array.from({ length: Math.min(16, connections - done) }, call));
}
await new Promise((resolve) => setTimeout(resolve, 200));
console.log(
  JSON.stringify({ connections, defer, serverSessionDestroys: destroys, destroysInsideReceive }),
);
server.close();
Deno.removeSync(dir, { recursive: true });
