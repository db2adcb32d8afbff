/**
 * Not a test: a tiny Tether host that a hostile suite attempt kills with
 * SIGKILL. It starts the bundled hostile plugin (isolation mode and paths from
 * its JSON argument), asks it to try to outlive its host (`avail:outlive`),
 * prints `{"pid":…,"tree":[…],"privateDir":…}` and waits to be killed.
 *
 * Usage: orphan_host.ts '{"bundle":…,"sha256":…,"sockets":…,"mode":…}'
 *
 * @module
 */

import { PluginClient, type PluginClientOptions } from "../../../mod.ts";
import { KV } from "../../../src/gen/tether/kv/v1/kv_pb.ts";
import { kvHandshake } from "../support.ts";
import { descendants } from "./world.ts";

const { bundle, sha256, sockets, mode } = JSON.parse(Deno.args[0]);
const client = new PluginClient({
  cmd: bundle,
  sha256,
  runtime: "deno",
  handshake: kvHandshake,
  unixSocketDir: sockets,
  args: ["{}"],
  name: "orphan",
  isolation: mode,
} as PluginClientOptions);
await client.start();
await client.dispense(KV).get({ key: "avail:outlive" });
const address = client.endpoint!.address;
console.log(JSON.stringify({
  pid: client.pid,
  tree: [client.pid, ...descendants(client.pid!)],
  privateDir: address.slice(0, address.lastIndexOf("/")),
}));
setInterval(() => {}, 60_000);
