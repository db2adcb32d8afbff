/**
 * Launch attempts that lie in the go-plugin handshake.
 *
 * @module
 */

import { encodeRawBase64 } from "../../../src/handshake.ts";
import { generateCertificate } from "../../../src/mtls.ts";
import type { World } from "./world.ts";
import { type LaunchAttempt, leaks, note, type Probe, probe } from "./probe.ts";

// ------------------------------------------------------------------ protocol lies
const LIAR = `
const [template, mode] = Deno.args;
const socket = Deno.env.get("TETHER_PLUGIN_SOCKET") ?? "";
const privateDir = socket.slice(0, socket.lastIndexOf("/"));
if (mode === "listen") {
  const listener = Deno.listen({ transport: "unix", path: socket });
  (async () => { for await (const conn of listener) conn.close(); })();
}
if (mode === "junk") console.log("hello from the plugin before its handshake");
if (mode === "hugeerr") { const chunk = new TextEncoder().encode("e".repeat(1 << 20)); for (let i = 0; i < 96; i++) Deno.stderr.writeSync(chunk); await new Promise((r) => setTimeout(r, 30000)); }
if (mode === "huge") { const chunk = new TextEncoder().encode("z".repeat(1 << 20)); for (let i = 0; i < 32; i++) Deno.stdout.writeSync(chunk); }
if (mode === "closeout") { Deno.stdout.close(); await new Promise((r) => setTimeout(r, 30000)); }
console.log(template.replaceAll("{SOCK}", socket).replaceAll("{PRIV}", privateDir));
if (mode === "exit") Deno.exit(0);
await new Promise((r) => setTimeout(r, 8000));
`;

let certLine: Promise<string> | undefined;
const cert = () => certLine ??= generateCertificate().then((c) => encodeRawBase64(c.certDer));

/** Decoys of one attempt: a unix socket at `<world.dir>/decoy-<id>.sock` and a TCP port; they count connections. */
interface Decoy {
  readonly unix: string;
  readonly tcpPort: number;
  readonly hits: string[];
  close(): Promise<void>;
}

function decoy(world: World, id: string): Decoy {
  const unix = `${world.dir}/decoy-${id}.sock`;
  const listeners = [
    Deno.listen({ transport: "unix", path: unix }),
    Deno.listen({ hostname: "0.0.0.0", port: 0 }),
  ];
  const hits: string[] = [];
  const serving = listeners.map(async (listener) => {
    try {
      for await (const conn of listener) {
        hits.push(`${id} reached ${listener.addr.transport === "unix" ? unix : "a TCP decoy"}`);
        conn.close();
      }
    } catch {
      // Closed.
    }
  });
  return {
    unix,
    tcpPort: (listeners[1].addr as Deno.NetAddr).port,
    hits,
    close: async () => {
      for (const listener of listeners) listener.close();
      await Promise.all(serving);
    },
  };
}

function lie(
  id: string,
  description: string,
  line: (w: World, cert: string, decoy: Decoy) => string,
  mode = "",
  extra: Partial<Probe> = {},
): LaunchAttempt {
  return {
    id,
    cls: "protocol-lies",
    description,
    expect: "denied",
    run: async (world) => {
      // The host's peak resident memory while the plugin runs (a line buffered without bound shows here).
      const before = Deno.memoryUsage().rss;
      let peak = before;
      const sampler = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 25);
      const own = decoy(world, id);
      try {
        const result = await probe(world, id, {
          files: { "liar.ts": LIAR },
          entry: "liar.ts",
          args: [line(world, await cert(), own), mode],
          startTimeoutMs: 8000,
          ...extra,
        });
        const evidence = leaks(world, result, { mustNotStart: true });
        if (own.hits.length > 0) {
          evidence.push(`the host connected where the plugin said (${own.hits.length}x): ${own.hits[0]}`);
        }
        const growth = Math.max(peak, Deno.memoryUsage().rss) - before;
        if (growth > 256 * 2 ** 20) evidence.push(`the HOST grew by ${(growth / 2 ** 20).toFixed(0)} MiB`);
        return { evidence, note: `${note(result)}; host peak +${(growth / 2 ** 20).toFixed(0)} MiB` };
      } finally {
        clearInterval(sampler);
        await own.close();
      }
    },
  };
}

export const protocolAttempts: LaunchAttempt[] = [
  lie(
    "proto01",
    "handshake naming the host's own unix socket (a foreign address)",
    (_w, c, d) => `1|1|unix|${d.unix}|grpc|${c}`,
  ),
  lie(
    "proto02",
    "handshake naming a TCP listener of the host (a foreign address)",
    (_w, c, d) => `1|1|tcp|127.0.0.1:${d.tcpPort}|grpc|${c}`,
  ),
  lie(
    "proto03",
    "handshake naming another plugin's socket",
    (w, c) => `1|1|unix|${w.ctx.neighborSocket}|grpc|${c}`,
  ),
  lie(
    "proto04",
    "handshake address leaving its private dir with ../",
    // The private dir is <world.dir>/s-proto04/tether-*: two levels up is where this attempt's decoy listens.
    (_w, c) => `1|1|unix|{PRIV}/../../decoy-proto04.sock|grpc|${c}`,
  ),
  lie("proto05", "absurd app protocol version", (_w, c) => `1|99999999999999999999|unix|{SOCK}|grpc|${c}`),
  lie("proto06", "negative core protocol version", (_w, c) => `-1|1|unix|{SOCK}|grpc|${c}`),
  lie("proto07", "garbage certificate", () => {
    const bytes = crypto.getRandomValues(new Uint8Array(300));
    return `1|1|unix|{SOCK}|grpc|${encodeRawBase64(bytes)}`;
  }, "listen"),
  lie(
    "proto08",
    "a foreign (valid, self-signed) certificate on a socket that does not speak TLS",
    (_w, c) => `1|1|unix|{SOCK}|grpc|${c}`,
    "listen",
  ),
  lie(
    "proto09",
    "no certificate although the host asked for AutoMTLS (fail-open mTLS)",
    () => `1|1|unix|{SOCK}|grpc|`,
    "listen",
  ),
  lie("proto10", "output before the handshake line", (_w, c) => `1|1|unix|{SOCK}|grpc|${c}`, "junk"),
  lie("proto11", "a 32 MiB first line with no newline", () => "", "huge"),
  lie(
    "proto16",
    "a 96 MiB stderr line without a newline before the handshake (raw stderr, no serve())",
    () => "",
    "hugeerr",
    { startTimeoutMs: 6000 },
  ),
  lie(
    "proto12",
    "valid-looking handshake, then exit at once",
    (_w, c) => `1|1|unix|{SOCK}|grpc|${c}`,
    "exit",
  ),
  lie("proto13", "net/rpc protocol in the handshake", () => `1|1|unix|{SOCK}|netrpc|`, "listen"),
  lie("proto14", "closes stdout without a handshake and keeps running", () => "", "closeout", {
    startTimeoutMs: 2000,
  }),
  lie(
    "proto15",
    "handshake naming a unix socket in the write grant the plugin made itself",
    (w, c) => `1|1|unix|${w.ctx.out}/own.sock|grpc|${c}`,
  ),
];
