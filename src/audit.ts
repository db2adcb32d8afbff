/**
 * Tether's side of Deno's permission broker (`DENO_PERMISSION_BROKER_PATH`):
 * a TypeScript plugin's Deno runtime sends every permission check to the
 * host over a unix socket, one JSON line each, and waits for the answer. The
 * host answers from the plugin's {@linkcode PermissionPolicy} and reports each
 * denial as a {@linkcode PermissionEvent}, so an operator sees exactly what a
 * plugin tried. If the host goes away, Deno ends the plugin.
 *
 * @module
 */

import type { PermissionPolicy } from "./permissions.ts";

/** A permission check a plugin made, as the host saw it. */
export interface PermissionEvent {
  /** The plugin's name. */
  readonly plugin: string;
  /** The permission kind: read, write, net, env, sys, run, ffi, import. */
  readonly permission: string;
  /** What it asked for (path, host:port, variable name, ...), or null for "all". */
  readonly target: string | null;
  /** Whether it was allowed. Only denials are reported unless asked otherwise. */
  readonly allowed: boolean;
  /** When Deno made the check. */
  readonly time: Date;
  /**
   * `deno`: the check came from the Deno runtime through the broker (cannot be
   * forged by the plugin). `plugin`: reported by Tether's `serve()` inside the
   * plugin (e.g. `Deno.permissions.request`, which Deno answers without asking
   * the broker); a hostile plugin could suppress or forge these.
   */
  readonly source: "deno" | "plugin";
}

/** Log field through which Tether's serve() reports `Deno.permissions.request` calls. */
export const PERMISSION_REQUEST_FIELD = "tether_permission_request";

interface BrokerRequest {
  v: number;
  id: number;
  pid?: number;
  datetime?: string;
  permission: string;
  value: string | null;
}

const encoder = new TextEncoder();

/**
 * Serves Deno's permission broker protocol for one plugin process.
 *
 * @example
 * ```ts ignore
 * const broker = new PermissionBrokerServer(`${dir}/perm.sock`, policy, "kv", (event) => console.log(event));
 * // start the plugin with DENO_PERMISSION_BROKER_PATH=`${dir}/perm.sock`
 * broker.close();
 * ```
 */
export class PermissionBrokerServer {
  readonly #listener: Deno.UnixListener;
  readonly #connections = new Set<Deno.Conn>();
  readonly #done: Promise<void>;
  #closed = false;
  /** Where the plugin's runtime connects. */
  readonly path: string;

  /**
   * Listens on `path` (a unix socket in a directory only the host can use).
   *
   * @param onEvent receives every denial (and every allowed check if `reportAllowed`)
   */
  constructor(
    path: string,
    policy: PermissionPolicy,
    plugin: string,
    onEvent: (event: PermissionEvent) => void,
    reportAllowed = false,
  ) {
    this.path = path;
    this.#listener = Deno.listen({ transport: "unix", path });
    this.#done = this.#serve(policy, plugin, onEvent, reportAllowed);
  }

  async #serve(
    policy: PermissionPolicy,
    plugin: string,
    onEvent: (event: PermissionEvent) => void,
    reportAllowed: boolean,
  ): Promise<void> {
    const handlers: Promise<void>[] = [];
    try {
      for await (const conn of this.#listener) {
        this.#connections.add(conn);
        handlers.push(this.#handle(conn, policy, plugin, onEvent, reportAllowed));
      }
    } catch {
      // Listener closed.
    }
    await Promise.allSettled(handlers);
  }

  async #handle(
    conn: Deno.Conn,
    policy: PermissionPolicy,
    plugin: string,
    onEvent: (event: PermissionEvent) => void,
    reportAllowed: boolean,
  ): Promise<void> {
    let pending = "";
    try {
      for await (const text of conn.readable.pipeThrough(new TextDecoderStream())) {
        pending += text;
        let newline: number;
        while ((newline = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          let request: BrokerRequest;
          try {
            request = JSON.parse(line);
          } catch {
            continue;
          }
          const allowed = policy.decide(request.permission, request.value ?? null);
          const answer: Record<string, unknown> = { id: request.id, result: allowed ? "allow" : "deny" };
          if (!allowed) {
            answer.reason = `Tether denied ${request.permission} access${
              request.value ? ` to ${request.value}` : ""
            }: not in plugin ${plugin}'s permissions`;
          }
          await conn.write(encoder.encode(`${JSON.stringify(answer)}\n`));
          if (!allowed || reportAllowed) {
            onEvent({
              plugin,
              permission: request.permission,
              target: request.value ?? null,
              allowed,
              time: request.datetime ? new Date(request.datetime) : new Date(),
              source: "deno",
            });
          }
        }
      }
    } catch {
      // The plugin exited.
    } finally {
      this.#connections.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  }

  /** Stops listening and drops open connections; resolves when all handlers ended. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#listener.close();
      for (const conn of this.#connections) {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
    }
    return this.#done;
  }
}
