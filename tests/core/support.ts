/**
 * Shared pieces of the core suite: command lines for the TS and Go KV
 * plugins and the fake plugins, a logger that records, and a per-test
 * sandbox that checks nothing leaks (processes, sockets).
 *
 * @module
 */

import assert from "node:assert/strict";
import { type LogRecord, PluginClient, type PluginClientOptions, TetherError } from "../../mod.ts";
import { kvHandshake } from "../../examples/kv/handshake.ts";
import {
  denoPlugin,
  eventually,
  goFixture,
  isAlive,
  pluginSockets,
  processesMatching,
  repoRoot,
} from "../helpers.ts";

export { kvHandshake };

/** Directory of the fake plugins. */
export const fakes = `${repoRoot}/tests/fixtures/plugins`;

/** A logger that keeps every record. */
export class Recorder {
  readonly records: LogRecord[] = [];
  log(record: LogRecord): void {
    this.records.push(record);
  }
  /** Records whose message contains `text`. */
  find(text: string): LogRecord[] {
    return this.records.filter((record) => record.message.includes(text));
  }
}

/** Whether a unix socket file refuses connections (nobody listens: a stale socket). */
async function isStaleSocket(path: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return false;
  } catch (error) {
    return error instanceof Deno.errors.ConnectionRefused;
  }
}

/**
 * One test's world: a private socket directory, a marker argument that makes
 * the test's plugin processes findable by command line, and the clients it
 * started. {@linkcode Sandbox.close} kills every client and asserts that no
 * process and nothing in the private directory (and, with `checkTmp`, no new
 * stale `plugin*` socket in /tmp) is left.
 */
export class Sandbox {
  readonly dir: string;
  readonly marker = `tether-core-${crypto.randomUUID().slice(0, 8)}`;
  readonly clients: PluginClient[] = [];
  /** Also check /tmp for new stale `plugin*` sockets (set by tests whose plugins use /tmp). */
  checkTmp = false;
  readonly #tmpBefore: Set<string>;
  readonly #extraPids: number[] = [];

  private constructor(dir: string) {
    this.dir = dir;
    this.#tmpBefore = new Set(pluginSockets("/tmp"));
  }

  static async create(): Promise<Sandbox> {
    // Short path: unix socket paths are limited to 107 bytes.
    return new Sandbox(await Deno.makeTempDir({ dir: "/tmp", prefix: "tc" }));
  }

  /** Makes a client that the sandbox kills and checks at the end. */
  client(options: PluginClientOptions): PluginClient {
    const client = new PluginClient(options);
    this.clients.push(client);
    return client;
  }

  /** Also checks that this pid is gone at the end. */
  watchPid(pid: number): void {
    this.#extraPids.push(pid);
  }

  /** Options for the TypeScript KV example plugin. */
  tsKv(extra: Partial<PluginClientOptions> = {}): PluginClientOptions {
    const { cmd, args } = denoPlugin("examples/kv/plugin.ts");
    return { cmd, args: [...args, this.marker], handshake: kvHandshake, unixSocketDir: this.dir, ...extra };
  }

  /** Options for a TypeScript fake plugin in tests/fixtures/plugins. */
  tsFake(
    file: string,
    pluginArgs: string[] = [],
    extra: Partial<PluginClientOptions> = {},
  ): PluginClientOptions {
    const { cmd, args } = denoPlugin(`tests/fixtures/plugins/${file}`);
    return {
      cmd,
      args: [...args, ...pluginArgs, this.marker],
      handshake: kvHandshake,
      unixSocketDir: this.dir,
      ...extra,
    };
  }

  /** Options for the Go KV plugin (flags first: Go's flag parsing stops at the marker). */
  async goKv(flags: string[] = [], extra: Partial<PluginClientOptions> = {}): Promise<PluginClientOptions> {
    return {
      cmd: await goFixture("kvplugin"),
      args: [...flags, this.marker],
      handshake: kvHandshake,
      unixSocketDir: this.dir,
      ...extra,
    };
  }

  /** Options for a shell fake plugin (they `exec sleep`, so they are tracked by pid, not marker). */
  shellFake(
    file: string,
    args: string[] = [],
    extra: Partial<PluginClientOptions> = {},
  ): PluginClientOptions {
    return { cmd: `${fakes}/${file}`, args, handshake: kvHandshake, unixSocketDir: this.dir, ...extra };
  }

  /** Kills all clients, then asserts that nothing is left behind. */
  async close(): Promise<void> {
    await Promise.all(this.clients.map((client) => client.kill()));
    const pids = [...this.clients.map((client) => client.pid), ...this.#extraPids].filter((pid) =>
      pid !== undefined
    ) as number[];
    try {
      assert.ok(
        await eventually(() => pids.every((pid) => !isAlive(pid)), 10_000),
        `plugin processes still alive: ${pids.filter(isAlive).join(", ")}`,
      );
      assert.ok(
        await eventually(() => processesMatching(this.marker).length === 0, 10_000),
        `leftover processes: ${processesMatching(this.marker).join(", ")}`,
      );
      // Each launch's private directory (sockets, broker sockets) must be gone.
      const left = [...Deno.readDirSync(this.dir)].map((entry) => `${this.dir}/${entry.name}`);
      assert.deepEqual(left, [], "files left in the plugin socket directory");
      if (this.checkTmp) {
        // Only for tests that let plugins use /tmp: other test suites may run beside this one.
        const fresh = pluginSockets("/tmp").filter((path) => !this.#tmpBefore.has(path));
        const stale: string[] = [];
        for (const path of fresh) if (await isStaleSocket(path)) stale.push(path);
        assert.deepEqual(stale, [], "stale plugin sockets left in /tmp");
      }
    } finally {
      for (const pid of pids) {
        try {
          if (isAlive(pid)) Deno.kill(pid, "SIGKILL");
        } catch {
          // Gone.
        }
      }
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    }
  }
}

/** Runs `body` in a fresh sandbox and checks for leaks afterwards (also when `body` fails). */
export async function inSandbox(body: (box: Sandbox) => Promise<void>): Promise<void> {
  const box = await Sandbox.create();
  let failure: unknown;
  try {
    await body(box);
  } catch (error) {
    failure = error;
  }
  try {
    await box.close();
  } catch (leak) {
    // Report the body's failure first; a leak after it is a consequence.
    failure ??= leak;
  }
  if (failure !== undefined) throw failure;
}

/**
 * Awaits `promise`, which must reject with a {@linkcode TetherError} of the
 * given code; returns the error for more checks.
 */
export async function rejectsWith(
  promise: Promise<unknown>,
  code: TetherError["code"],
): Promise<TetherError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof TetherError, `expected a TetherError, got ${String(error)}`);
    assert.equal(error.code, code, `expected code ${code}, got ${error.code}: ${error.message}`);
    return error;
  }
  assert.fail(`expected a rejection with code ${code}, but it resolved`);
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Bytes of a string. */
export function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** A string of bytes. */
export function text(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}
