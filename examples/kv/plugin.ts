/**
 * A TypeScript KV plugin: an in-memory key-value store served with
 * `serve()`. A Tether host or a Go go-plugin host can launch it:
 *
 *   deno run --allow-env --allow-read --allow-write --allow-net examples/kv/plugin.ts
 *
 * (run by hand it only prints go-plugin's "This binary is a plugin" notice).
 *
 * @module
 */

import { GrpcStatus, registration, serve, TetherError } from "../../plugin.ts";
import { Adder, KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import type { LogLevel } from "../../mod.ts";
import { kvHandshake } from "./handshake.ts";

const store = new Map<string, Uint8Array>();
const levels = new Set<LogLevel>(["trace", "debug", "info", "warn", "error"]);

await serve({
  handshake: kvHandshake,
  // `--debug`: started by hand, printing how a host reattaches (go-plugin's Debug/Test mode).
  debug: Deno.args.includes("--debug") ? { provider: "tether.dev/examples/kv" } : undefined,
  services: ({ broker, logger }) => [
    registration(KV, {
      get: ({ key }) => {
        const value = store.get(key);
        return value ? { value, found: true } : { found: false };
      },
      put: ({ key, value }) => {
        store.set(key, value);
        return {};
      },
      list: async function* ({ prefix }) {
        for (const key of [...store.keys()].filter((k) => k.startsWith(prefix)).sort()) {
          yield { key, value: store.get(key) };
        }
      },
      addViaHost: async ({ adderBrokerId, a, b }) => {
        const connection = await broker.dial(adderBrokerId);
        try {
          const { sum } = await connection.client(Adder).add({ a, b });
          return { sum };
        } finally {
          connection.close();
        }
      },
      openAdder: async () => {
        const brokerId = broker.nextId();
        await broker.acceptAndServe(brokerId, [registration(Adder, { add: ({ a, b }) => ({ sum: a + b }) })]);
        return { brokerId };
      },
      emit: ({ stdout, stderr, logLevel, logMessage }) => {
        if (stdout) Deno.stdout.writeSync(new TextEncoder().encode(stdout));
        if (stderr) Deno.stderr.writeSync(new TextEncoder().encode(stderr));
        if (logLevel) {
          if (!levels.has(logLevel as LogLevel)) {
            throw new TetherError("rpc", `unknown log level ${logLevel}`, {
              status: GrpcStatus.INVALID_ARGUMENT,
            });
          }
          logger.log({ level: logLevel as LogLevel, message: logMessage, fields: { source: "emit" } });
        }
        return {};
      },
      sleep: async ({ millis, exitCode }, { signal }) => {
        if (exitCode !== 0) Deno.exit(exitCode);
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, millis);
          signal.addEventListener("abort", () => {
            clearTimeout(timer);
            reject(new TetherError("rpc", "sleep cancelled", { status: GrpcStatus.CANCELLED }));
          }, { once: true });
        });
        return {};
      },
    }),
  ],
});
