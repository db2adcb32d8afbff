/**
 * Reattach configurations: how a host finds a plugin that something else
 * started (a debugger, a supervisor, a plugin served in debug mode), in
 * go-plugin's `ReattachConfig` JSON shape and Terraform's
 * `TF_REATTACH_PROVIDERS` (a map of provider address to that shape).
 *
 * @module
 */

import { TetherError } from "./errors.ts";

/** A plugin to attach to instead of launching one (go-plugin's `ReattachConfig`). */
export interface ReattachConfig {
  /** `unix` or `tcp`. */
  readonly network: "unix" | "tcp";
  /** Socket path or `host:port`. */
  readonly address: string;
  /** The application protocol version it serves (it is not negotiated: no handshake line is read). */
  readonly protocolVersion: number;
  /** Its process id, when known: watched for its exit, and SIGKILLed by `kill()` unless `test`. */
  readonly pid?: number;
  /**
   * go-plugin's `Test` (Terraform's debug mode): the plugin ends on its own, so
   * `kill()` only disconnects: no Shutdown, no signal. Otherwise `kill()` asks
   * for Shutdown and then SIGKILLs `pid`, as go-plugin does.
   */
  readonly test?: boolean;
}

/** go-plugin's `ReattachConfig` as JSON (Terraform's `TF_REATTACH_PROVIDERS` entries). */
export interface GoReattachJson {
  /** Always `grpc` for Tether. */
  Protocol: string;
  /** The application protocol version. */
  ProtocolVersion: number;
  /** Process id (0 when unknown). */
  Pid: number;
  /** Whether the plugin runs in test/debug mode. */
  Test: boolean;
  /** Where it listens. */
  Addr: { Network: string; String: string };
}

/**
 * The go-plugin JSON form of `config`.
 *
 * @example
 * ```ts
 * import { toGoReattachJson } from "./reattach.ts";
 * const json = toGoReattachJson({ network: "unix", address: "/tmp/p.sock", protocolVersion: 5, pid: 42, test: true });
 * console.log(JSON.stringify(json));
 * // {"Protocol":"grpc","ProtocolVersion":5,"Pid":42,"Test":true,"Addr":{"Network":"unix","String":"/tmp/p.sock"}}
 * ```
 */
export function toGoReattachJson(config: ReattachConfig): GoReattachJson {
  return {
    Protocol: "grpc",
    ProtocolVersion: config.protocolVersion,
    Pid: config.pid ?? 0,
    Test: config.test ?? false,
    Addr: { Network: config.network, String: config.address },
  };
}

/**
 * Reads a reattach configuration: go-plugin's JSON for one plugin, or a
 * `TF_REATTACH_PROVIDERS` map with `provider` naming the entry (the only
 * entry when there is one and `provider` is not given).
 *
 * @example
 * ```ts
 * import { parseReattachConfig } from "./reattach.ts";
 * const config = parseReattachConfig(
 *   '{"Protocol":"grpc","ProtocolVersion":1,"Pid":7,"Test":true,"Addr":{"Network":"unix","String":"/tmp/p"}}',
 * );
 * console.log(config.address, config.test); // /tmp/p true
 * ```
 *
 * @throws {TetherError} `config` naming the field that is missing or wrong.
 */
export function parseReattachConfig(text: string, provider?: string): ReattachConfig {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new TetherError("config", `reattach configuration: not JSON: ${(error as Error).message}`);
  }
  if (!isObject(value)) throw new TetherError("config", "reattach configuration: expected a JSON object");
  let entry: Record<string, unknown> = value;
  let where = "reattach configuration";
  if (!("Addr" in value)) {
    // A TF_REATTACH_PROVIDERS map.
    const names = Object.keys(value);
    const name = provider ?? (names.length === 1 ? names[0] : undefined);
    if (name === undefined || !isObject(value[name])) {
      throw new TetherError(
        "config",
        `reattach configuration: ${
          provider ? `no entry for provider ${JSON.stringify(provider)}` : "several providers, name one"
        } (found: ${names.map((n) => JSON.stringify(n)).join(", ") || "none"})`,
      );
    }
    entry = value[name] as Record<string, unknown>;
    where = `reattach configuration ${JSON.stringify(name)}`;
  }
  const protocol = entry.Protocol ?? "grpc";
  if (protocol !== "grpc") {
    throw new TetherError(
      "config",
      `${where}: Protocol is ${JSON.stringify(protocol)}, Tether speaks only "grpc"`,
    );
  }
  const addr = entry.Addr;
  if (!isObject(addr) || typeof addr.Network !== "string" || typeof addr.String !== "string") {
    throw new TetherError(
      "config",
      `${where}: Addr must be {"Network": "unix"|"tcp", "String": "<address>"}`,
    );
  }
  if (addr.Network !== "unix" && addr.Network !== "tcp") {
    throw new TetherError(
      "config",
      `${where}: Addr.Network is ${JSON.stringify(addr.Network)}, expected unix or tcp`,
    );
  }
  const version = entry.ProtocolVersion;
  if (!Number.isSafeInteger(version)) {
    throw new TetherError(
      "config",
      `${where}: ProtocolVersion must be an integer, got ${JSON.stringify(version)}`,
    );
  }
  const pid = entry.Pid ?? 0;
  if (!Number.isSafeInteger(pid) || (pid as number) < 0) {
    throw new TetherError(
      "config",
      `${where}: Pid must be a non-negative integer, got ${JSON.stringify(pid)}`,
    );
  }
  return {
    network: addr.Network,
    address: addr.String,
    protocolVersion: version as number,
    ...(pid ? { pid: pid as number } : {}),
    test: entry.Test === true,
  };
}

/**
 * What a plugin in debug mode prints: go-plugin's JSON, then Terraform's
 * `TF_REATTACH_PROVIDERS` line for `provider`.
 *
 * @example
 * ```ts
 * import { reattachInstructions } from "./reattach.ts";
 * const text = reattachInstructions({ network: "unix", address: "/tmp/p", protocolVersion: 1, pid: 7, test: true }, "kv");
 * console.log(text.includes("TF_REATTACH_PROVIDERS='{\"kv\":")); // true
 * ```
 */
export function reattachInstructions(config: ReattachConfig, provider: string): string {
  const json = JSON.stringify(toGoReattachJson(config));
  return "Plugin started in debug mode. To attach a go-plugin host, give it this ReattachConfig:\n\n" +
    `\t${REATTACH_PREFIX}${json}\n\n` +
    "To attach Terraform, set the TF_REATTACH_PROVIDERS environment variable:\n\n" +
    `\tTF_REATTACH_PROVIDERS='${JSON.stringify({ [provider]: toGoReattachJson(config) })}'\n\n`;
}

/** The prefix of the line carrying the go-plugin JSON in {@linkcode reattachInstructions}. */
export const REATTACH_PREFIX = "PLUGIN_REATTACH_CONFIG=";

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
