/**
 * The host dials only the address it assigned (issue 7, finding 5): a plugin
 * whose handshake line names a TCP port, a socket elsewhere, or a symlink in
 * its private directory pointing elsewhere is refused before anything
 * connects, with an error naming expected and found, and is killed. Real
 * listeners count the connections that arrive: zero.
 */

import assert from "node:assert/strict";
import { repoRoot } from "../helpers.ts";
import { inSandbox, kvHandshake, rejectsWith } from "./support.ts";

const killTimeoutMs = 300;

/** A listener that counts the connections it accepts (and closes them). */
function counting(listener: Deno.Listener): { count(): number; close(): Promise<void> } {
  let count = 0;
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        count++;
        conn.close();
      }
    } catch {
      // Closed.
    }
  })();
  return {
    count: () => count,
    close: async () => {
      listener.close();
      await accepting;
    },
  };
}

Deno.test("address pin: a handshake line naming a foreign TCP port is refused without dialling; the plugin is killed", async () => {
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (tcp.addr as Deno.NetAddr).port;
  const listener = counting(tcp);
  try {
    await inSandbox(async (box) => {
      const client = box.client(box.shellFake("print_lines.sh", [`1|1|tcp|127.0.0.1:${port}|grpc|`], {
        // Plaintext, so nothing but the pin stands between the line and a dial.
        autoMTLS: false,
        killTimeoutMs,
      }));
      const error = await rejectsWith(client.start(), "handshake");
      assert.match(
        error.message,
        new RegExp(`announced tcp "127\\.0\\.0\\.1:${port}" in its handshake line`),
      );
      assert.match(error.message, /expected a unix socket directly inside .*\/tether-/);
      assert.match(error.message, /TCP is not allowed for this plugin/);
      assert.match(error.message, /allowTcp: true/);
      const exit = await client.exited;
      assert.equal(exit.killed, true);
    });
    assert.equal(listener.count(), 0, "the host connected to the foreign port");
  } finally {
    await listener.close();
  }
});

Deno.test("address pin (control): with allowTcp and that port in range, the same line is dialled", async () => {
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (tcp.addr as Deno.NetAddr).port;
  const listener = counting(tcp);
  try {
    await inSandbox(async (box) => {
      const client = box.client(box.shellFake("print_lines.sh", [`1|1|tcp|127.0.0.1:${port}|grpc|`], {
        autoMTLS: false,
        allowTcp: true,
        minPort: port,
        maxPort: port,
        killTimeoutMs,
        startTimeoutMs: 5_000,
      }));
      // The listener is not a gRPC server: the connection fails, after it was made.
      await assert.rejects(client.start());
    });
    assert.ok(listener.count() > 0, "the control never connected: the test could not see a dial");
  } finally {
    await listener.close();
  }
});

Deno.test("address pin: a unix socket outside the launch directory, or a symlink inside it to one, is never dialled", async () => {
  const outside = await Deno.makeTempDir({ dir: "/tmp", prefix: "tpin" });
  const path = `${outside}/service.sock`;
  const listener = counting(Deno.listen({ transport: "unix", path }));
  try {
    await inSandbox(async (box) => {
      const elsewhere = box.client(box.shellFake("print_lines.sh", [`1|1|unix|${path}|grpc|`], {
        autoMTLS: false,
        killTimeoutMs,
      }));
      const error = await rejectsWith(elsewhere.start(), "handshake");
      assert.match(error.message, new RegExp(`announced unix "${path}"`));
      assert.match(error.message, /not one this launch assigned/);

      // The plugin may write in its private directory: a symlink there to the service is refused too.
      const script = `/bin/ln -s ${path} "$PLUGIN_UNIX_SOCKET_DIR/plugin1"; ` +
        `printf '1|1|unix|%s|grpc|\\n' "$PLUGIN_UNIX_SOCKET_DIR/plugin1"; exec /bin/sleep 3600`;
      const symlink = box.client({
        cmd: "/bin/sh",
        args: ["-c", script],
        handshake: kvHandshake,
        unixSocketDir: box.dir,
        autoMTLS: false,
        killTimeoutMs,
        name: "symlinker",
      });
      const refused = await rejectsWith(symlink.start(), "handshake");
      assert.match(refused.message, /plugin symlinker announced unix ".*\/plugin1"/);
      assert.match(refused.message, /not a socket \(a symlink or file is refused\)/);
    });
    assert.equal(listener.count(), 0, "the host connected to a socket it did not assign");
  } finally {
    await listener.close();
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("address pin: a TypeScript plugin in Tether's sandbox must use exactly TETHER_PLUGIN_SOCKET", async () => {
  await inSandbox(async (box) => {
    // bare_plugin --no-listen names another path inside the private directory.
    const client = box.client({
      cmd: `${repoRoot}/tests/fixtures/plugins/bare_plugin.ts`,
      args: ["--no-listen", box.marker],
      runtime: "deno",
      denoConfig: `${repoRoot}/deno.json`,
      handshake: kvHandshake,
      unixSocketDir: box.dir,
      killTimeoutMs,
    });
    const error = await rejectsWith(client.start(), "handshake");
    assert.match(error.message, /announced unix ".*\/plugin-nobody-listens-\d+"/);
    assert.match(error.message, /expected unix socket .*\/tether-[^/]+\/plugin\.sock/);
  });
});
