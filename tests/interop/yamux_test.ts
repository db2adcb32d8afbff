/**
 * Tether's yamux framing (src/yamux.ts) against hashicorp/yamux v0.1.2 (tests/interop/go/cmd/yamuxecho):
 * a Tether client session opens several streams at once and sends more than a window (256 KiB) on each,
 * which the Go server echoes back byte for byte; the Go server pings the client and opens a stream of its
 * own.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "node:net";
import { YamuxSession, type YamuxStream } from "../../src/yamux.ts";
import { goFixture, ignoreWithoutGo } from "../helpers.ts";

function collect(stream: YamuxStream): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    stream.on("data", (chunk: Uint8Array) => chunks.push(new Uint8Array(chunk)));
    stream.on("end", () => {
      const total = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let offset = 0;
      for (const chunk of chunks) {
        total.set(chunk, offset);
        offset += chunk.length;
      }
      resolve(total);
    });
    stream.on("error", reject);
  });
}

Deno.test({
  name:
    "yamux: Tether client <-> hashicorp/yamux server: concurrent streams past the window, ping, server stream",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tyx" });
    const path = `${dir}/mux.sock`;
    const server = new Deno.Command(await goFixture("yamuxecho"), {
      args: [path],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    try {
      const reader = server.stdout.getReader();
      assert.equal(new TextDecoder().decode((await reader.read()).value).trim(), "ready");
      reader.releaseLock();
      const greeting = Promise.withResolvers<Uint8Array>();
      const socket = connect({ path });
      await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
      const session = new YamuxSession(socket, "client", (stream) => {
        collect(stream).then(greeting.resolve, greeting.reject);
      });
      const payloads = [0, 1, 2].map((n) => {
        const bytes = new Uint8Array(600 * 1024 + n * 4099);
        for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + n) & 0xff;
        return bytes;
      });
      const echoed = await Promise.all(payloads.map((payload) => {
        const stream = session.open();
        assert.equal(stream.id % 2, 1, "client streams are odd");
        const back = collect(stream);
        stream.end(payload);
        return back;
      }));
      for (const [n, payload] of payloads.entries()) {
        assert.equal(echoed[n].length, payload.length, `stream ${n} length`);
        assert.ok(echoed[n].every((byte, i) => byte === payload[i]), `stream ${n} bytes`);
      }
      assert.equal(new TextDecoder().decode(await greeting.promise), "hello from go, ping ok");
      session.close();
      await session.done;
      const status = await server.status;
      assert.equal(status.code, 0, new TextDecoder().decode((await server.stderr.getReader().read()).value));
    } finally {
      try {
        server.kill("SIGKILL");
      } catch {
        // Gone.
      }
      await server.status;
      await server.stderr.cancel().catch(() => {});
      await server.stdout.cancel().catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
