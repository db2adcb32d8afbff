/**
 * A host script for the KV example: starts a KV plugin with Tether, calls
 * every kind of RPC, and prints what it does.
 *
 *   deno run -A examples/kv/host.ts                       # the TypeScript plugin
 *   deno run -A examples/kv/host.ts ./tests/interop/go/bin/kvplugin   # a Go plugin
 *
 * @module
 */

import { consoleLogger, PluginClient, registration } from "../../mod.ts";
import { Adder, KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { kvHandshake } from "./handshake.ts";

const text = new TextDecoder();

/** Runs the KV walkthrough against the plugin at `cmd` and prints a transcript. */
export async function runKvDemo(cmd: string, label: string): Promise<void> {
  const say = (line: string) => console.log(`  [${label}] ${line}`);
  const started = performance.now();
  await using client = new PluginClient({
    cmd,
    handshake: kvHandshake,
    // TypeScript plugins run sandboxed by Deno; this one needs the repo's import map.
    denoConfig: new URL("../../deno.json", import.meta.url).pathname,
    logger: consoleLogger({ level: "info", name: label }),
    stdout: (chunk) => say(`plugin stdout: ${text.decode(chunk).trimEnd()}`),
    stderr: (chunk) => say(`plugin stderr: ${text.decode(chunk).trimEnd()}`),
    onPermissionEvent: (event) => say(`denied ${event.permission} ${event.target ?? ""}`),
  });
  await client.start();
  say(
    `started pid ${client.pid} on ${client.endpoint?.network}:${client.endpoint?.address} ` +
      `(protocol v${client.protocolVersion}, mTLS, ${Math.round(performance.now() - started)} ms)`,
  );
  const kv = client.dispense(KV);
  await kv.put({ key: "greeting", value: new TextEncoder().encode("hello from the host") });
  const got = await kv.get({ key: "greeting" });
  say(`put/get greeting -> ${JSON.stringify(text.decode(got.value))}`);
  await kv.put({ key: "fruit/apple", value: new TextEncoder().encode("red") });
  await kv.put({ key: "fruit/kiwi", value: new TextEncoder().encode("green") });
  const listed: string[] = [];
  for await (const entry of kv.list({ prefix: "fruit/" })) {
    listed.push(`${entry.key}=${text.decode(entry.value)}`);
  }
  say(`list fruit/ (server stream) -> ${listed.join(", ")}`);

  const id = client.broker.nextId();
  await client.broker.acceptAndServe(id, [registration(Adder, { add: ({ a, b }) => ({ sum: a + b }) })]);
  const viaHost = await kv.addViaHost({ adderBrokerId: id, a: 2n, b: 40n });
  say(`plugin called back the host's Adder through the broker: 2 + 40 = ${viaHost.sum}`);
  const { brokerId } = await kv.openAdder({});
  const connection = await client.broker.dial(brokerId);
  const fromPlugin = await connection.client(Adder).add({ a: 20n, b: 22n });
  say(`host called the plugin's brokered Adder: 20 + 22 = ${fromPlugin.sum}`);

  await kv.emit({ stdout: "written to stdout\n", logLevel: "info", logMessage: "a log line at info" });
  await client.ping();
  say("health check: SERVING");
  try {
    await kv.sleep({ millis: 10_000 }, { timeoutMs: 100 });
  } catch (error) {
    say(
      `a 10 s call with a 100 ms deadline -> ${(error as Error).name} ${
        (error as { statusName?: string }).statusName
      }`,
    );
  }
  await client.kill();
  const exit = await client.exited;
  say(`killed: exit code ${exit.code}${exit.killed ? " (forced)" : " (graceful Shutdown)"}`);
}

if (import.meta.main) {
  const cmd = Deno.args[0] ?? new URL("./plugin.ts", import.meta.url).pathname;
  await runKvDemo(cmd, cmd.endsWith(".ts") ? "ts-kv" : "go-kv");
}
