/**
 * The bare spawn floor: how soon a `deno` process can print a go-plugin
 * handshake line at all. Without flags it prints the line at once (Deno's own
 * start); with `--http2` it first loads `node:http2` and `node:tls` and
 * listens on a unix socket with an HTTP/2 server (what any Deno gRPC plugin
 * must do before its line). The line's protocol is `bare`, so the floor host
 * ends it with SIGTERM instead of dialling it.
 *
 *   deno run --no-config --no-prompt -A bench/floor/bare.ts [--http2]
 *
 * @module
 */

let socket: string | undefined;
if (Deno.args.includes("--http2")) {
  const http2 = await import("node:http2");
  await import("node:tls");
  const server = http2.createServer();
  socket = `${Deno.env.get("TMPDIR") || "/tmp"}/plugin${crypto.getRandomValues(new Uint32Array(1))[0]}`;
  await new Promise<void>((resolve) => server.listen(socket, resolve));
}
Deno.addSignalListener("SIGTERM", () => {
  if (socket) Deno.removeSync(socket);
  Deno.exit(0);
});
await Deno.stdout.write(new TextEncoder().encode(`1|1|unix|${socket ?? "-"}|bare|\n`));
setInterval(() => {}, 60_000);
