/**
 * The go-plugin handshake: the environment a host gives a plugin, and the one
 * line a plugin prints on stdout to say where and how to reach it.
 *
 * `CORE|APP|NETWORK|ADDRESS|PROTOCOL|CERT[|MUX]`, e.g.
 * `1|1|unix|/tmp/plugin123|grpc|MIIB...` (CERT is base64 without padding).
 *
 * @module
 */

import { TetherError } from "./errors.ts";
import { parseGoBool } from "./gobool.ts";

/** go-plugin's core protocol version; every plugin prints `1` first. */
export const CORE_PROTOCOL_VERSION = 1;

/** Environment variables of the go-plugin protocol. */
export const PluginEnv = {
  minPort: "PLUGIN_MIN_PORT",
  maxPort: "PLUGIN_MAX_PORT",
  protocolVersions: "PLUGIN_PROTOCOL_VERSIONS",
  clientCert: "PLUGIN_CLIENT_CERT",
  multiplexGrpc: "PLUGIN_MULTIPLEX_GRPC",
  unixSocketDir: "PLUGIN_UNIX_SOCKET_DIR",
  unixSocketGroup: "PLUGIN_UNIX_SOCKET_GROUP",
  /**
   * Tether's own addition: the exact socket path a Tether host chose, so a
   * sandboxed plugin can be granted that one path and nothing else. Go
   * plugins ignore it.
   */
  tetherSocketPath: "TETHER_PLUGIN_SOCKET",
} as const;

/**
 * The environment variables a `deno` plugin may read for the go-plugin protocol itself (cookie, `PLUGIN_*`,
 * `TETHER_PLUGIN_SOCKET`): the one list hosts and `tether pack` grant, and the one
 * `serve()` reads from.
 *
 * @example
 * ```ts
 * import { protocolEnv } from "./handshake.ts";
 * console.log(protocolEnv("KV_PLUGIN").includes("PLUGIN_CLIENT_CERT")); // true
 * ```
 */
export function protocolEnv(cookieKey: string): string[] {
  return [
    cookieKey,
    PluginEnv.protocolVersions,
    PluginEnv.clientCert,
    PluginEnv.unixSocketDir,
    PluginEnv.unixSocketGroup,
    PluginEnv.minPort,
    PluginEnv.maxPort,
    PluginEnv.multiplexGrpc,
    PluginEnv.tetherSocketPath,
  ];
}

/**
 * What host and plugin must agree on before they talk: the magic cookie
 * (a guard against running a plugin by hand, not a security measure) and the
 * application protocol version(s).
 *
 * @example
 * ```ts
 * import type { HandshakeConfig } from "./handshake.ts";
 * const handshake: HandshakeConfig = {
 *   protocolVersion: 1,
 *   magicCookieKey: "TETHER_KV_PLUGIN",
 *   magicCookieValue: "kv-7d3f2a",
 * };
 * ```
 */
export interface HandshakeConfig {
  /** Environment variable that carries the cookie, e.g. `SFTPGO_PLUGIN_AUTH`. */
  readonly magicCookieKey: string;
  /** The value the plugin expects in {@linkcode HandshakeConfig.magicCookieKey}. */
  readonly magicCookieValue: string;
  /** The application protocol version (go-plugin's `ProtocolVersion`). */
  readonly protocolVersion?: number;
  /**
   * Several versions at once (go-plugin's `VersionedPlugins` keys). The host
   * offers all of them plus {@linkcode HandshakeConfig.protocolVersion}; the
   * plugin picks its highest one the host offers.
   */
  readonly protocolVersions?: readonly number[];
}

/** The application versions a handshake config offers, highest first, without duplicates. */
export function offeredVersions(handshake: HandshakeConfig): number[] {
  const all = new Set<number>(handshake.protocolVersions ?? []);
  if (handshake.protocolVersion !== undefined) all.add(handshake.protocolVersion);
  for (const version of all) {
    if (!Number.isSafeInteger(version) || version < 0) {
      throw new TetherError("config", `handshake protocol version ${version} is not a non-negative integer`);
    }
  }
  if (all.size === 0) {
    throw new TetherError(
      "config",
      "handshake has no protocol version: set protocolVersion (or protocolVersions) to what the plugin speaks",
    );
  }
  return [...all].sort((a, b) => b - a);
}

/** Checks a handshake config's cookie fields, as go-plugin's Serve does. */
export function assertCookie(handshake: HandshakeConfig): void {
  if (!handshake.magicCookieKey || !handshake.magicCookieValue) {
    throw new TetherError(
      "config",
      "handshake needs both magicCookieKey and magicCookieValue (they must match the plugin's)",
    );
  }
}

/** The parts of a plugin's handshake line. */
export interface HandshakeLine {
  /** The application protocol version the plugin chose. */
  readonly appVersion: number;
  /** `unix` or `tcp`. */
  readonly network: "unix" | "tcp";
  /** The socket path, or `host:port`. */
  readonly address: string;
  /** The RPC protocol; Tether speaks only `grpc`. */
  readonly protocol: "grpc";
  /** The plugin's AutoMTLS certificate (DER), if it printed one. */
  readonly serverCertDer?: Uint8Array;
  /** The 7th field, if present: whether the plugin multiplexes its broker. */
  readonly multiplex?: boolean;
}

/** A handshake line (or part of one) as quoted in an error: long enough to recognise, never megabytes. */
function quoteLine(line: string): string {
  const MAX = 200;
  return line.length <= MAX
    ? JSON.stringify(line)
    : `${JSON.stringify(line.slice(0, MAX))}... (${line.length} characters)`;
}

/** Text from a handshake line as is when short, else quoted and cut. */
function clip(text: string): string {
  return text.length <= 200 ? text : quoteLine(text);
}

const diagnosis = "This usually means the plugin printed to stdout before its handshake line, " +
  "is not a go-plugin plugin, was given wrong arguments, or was not built for this machine.";

/**
 * Parses a plugin's handshake line the way a go-plugin host does (split on
 * every `|`, trailing whitespace ignored, extra fields ignored) and checks it
 * against the versions the host offered.
 *
 * @example
 * ```ts
 * import { parseHandshakeLine } from "./handshake.ts";
 * const line = parseHandshakeLine("1|1|unix|/tmp/plugin42|grpc|", [1]);
 * console.log(line.network, line.address); // unix /tmp/plugin42
 * ```
 *
 * @throws {TetherError} `handshake`, naming the field that is wrong and the line.
 */
export function parseHandshakeLine(rawLine: string, offered: readonly number[]): HandshakeLine {
  const line = rawLine.trim();
  const parts = line.split("|");
  if (parts.length < 4) {
    throw new TetherError(
      "handshake",
      `Unrecognized remote plugin message: ${quoteLine(line)}. ${diagnosis}`,
    );
  }
  const [core, app, network, address, protocol = "netrpc", cert = "", mux] = parts;
  if (!/^[+-]?\d+$/.test(core)) {
    throw new TetherError(
      "handshake",
      `error parsing core protocol version ${quoteLine(core)} in ${quoteLine(line)}`,
    );
  }
  if (Number(core) !== CORE_PROTOCOL_VERSION) {
    throw new TetherError(
      "handshake",
      `incompatible core API version with plugin. Plugin version: ${core}, Core version: ${CORE_PROTOCOL_VERSION}. ` +
        "The plugin usually only needs to be rebuilt with a current go-plugin.",
    );
  }
  const appVersion = /^[+-]?\d+$/.test(app) ? Number(app) : NaN;
  if (!offered.includes(appVersion)) {
    throw new TetherError(
      "handshake",
      `incompatible API version with plugin. Plugin version: ${app}, Client versions: [${
        offered.join(" ")
      }]. ` +
        "Upgrade the host or the plugin so that they share a protocol version.",
    );
  }
  if (network !== "unix" && network !== "tcp") {
    throw new TetherError(
      "handshake",
      `unknown address type: ${clip(network)} (in handshake line ${quoteLine(line)})`,
    );
  }
  if (protocol === "netrpc") {
    throw new TetherError(
      "handshake",
      "the plugin speaks go-plugin's net/rpc protocol, which Tether does not support: " +
        "serve it with GRPCServer (plugin.DefaultGRPCServer) and gRPC plugin types",
    );
  }
  if (protocol !== "grpc") {
    throw new TetherError(
      "handshake",
      `unsupported plugin protocol ${quoteLine(protocol)}. Supported: [grpc]`,
    );
  }
  let serverCertDer: Uint8Array | undefined;
  // go-plugin reads the certificate only past 50 characters: shorter values
  // were unused padding in older plugins.
  if (cert.length > 50) serverCertDer = decodeRawBase64(cert);
  const result: { -readonly [K in keyof HandshakeLine]: HandshakeLine[K] } = {
    appVersion,
    network,
    address,
    protocol,
  };
  if (serverCertDer) result.serverCertDer = serverCertDer;
  // Go's ParseBool, as go-plugin reads it; a value it cannot parse states nothing (go-plugin reads the field
  // only when the host asked for multiplexing, and then refuses the plugin, as a missing field does here).
  const multiplex = mux === undefined ? undefined : parseGoBool(mux);
  if (multiplex !== undefined) result.multiplex = multiplex;
  return result;
}

/** Decodes base64 with the standard alphabet and no padding (Go's RawStdEncoding). */
export function decodeRawBase64(text: string): Uint8Array {
  if (!/^[A-Za-z0-9+/]*$/.test(text) || text.length % 4 === 1) {
    const bad = text.match(/[^A-Za-z0-9+/]/)?.[0];
    throw new TetherError(
      "tls",
      `error parsing server cert: ${
        bad === "=" ? "it is padded with '=', but go-plugin sends base64 without padding" : "it is not base64"
      }`,
    );
  }
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Encodes bytes as base64 with the standard alphabet and no padding (Go's RawStdEncoding). */
export function encodeRawBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary).replace(/=+$/, "");
}

/**
 * Formats the line a plugin prints, with the 6th field always present as a
 * Go plugin does.
 *
 * @example
 * ```ts
 * import { formatHandshakeLine } from "./handshake.ts";
 * console.log(formatHandshakeLine({ appVersion: 1, network: "unix", address: "/tmp/p1", protocol: "grpc" }));
 * // "1|1|unix|/tmp/p1|grpc|\n"
 * ```
 */
export function formatHandshakeLine(line: HandshakeLine): string {
  const cert = line.serverCertDer ? encodeRawBase64(line.serverCertDer) : "";
  const mux = line.multiplex === undefined ? "" : `|${line.multiplex}`;
  return `${CORE_PROTOCOL_VERSION}|${line.appVersion}|${line.network}|${line.address}|${line.protocol}|${cert}${mux}\n`;
}

/**
 * Picks the application version a plugin serves, as go-plugin's Serve does:
 * its highest version the host listed in `PLUGIN_PROTOCOL_VERSIONS`; if none
 * matches, its lowest, and the host reports the mismatch.
 *
 * @param hostList the raw `PLUGIN_PROTOCOL_VERSIONS` value (may be empty)
 * @param supported the versions the plugin serves
 * @param onInvalid called with each entry that is not an integer
 *
 * @example
 * ```ts
 * import { chooseVersion } from "./handshake.ts";
 * console.log(chooseVersion("1,2,3", [2, 4])); // 2
 * ```
 */
export function chooseVersion(
  hostList: string,
  supported: readonly number[],
  onInvalid: (entry: string) => void = () => {},
): number {
  const hostVersions: number[] = [];
  if (hostList !== "") {
    for (const entry of hostList.split(",")) {
      if (/^[+-]?\d+$/.test(entry)) hostVersions.push(Number(entry));
      else onInvalid(entry);
    }
  }
  const mine = [...supported].sort((a, b) => b - a);
  for (const version of mine) {
    if (hostVersions.includes(version)) return version;
  }
  return mine[mine.length - 1];
}

/**
 * Where a plugin Tether launched may listen. The handshake line (and each
 * broker announcement) names an address the plugin chose; the host dials it
 * only if it is one of these, so a plugin cannot point the host's TLS client
 * at some other local service.
 */
export interface AddressPin {
  /** The plugin's name, for errors. */
  readonly plugin: string;
  /** Exactly this unix socket (a Tether plugin: `TETHER_PLUGIN_SOCKET`). */
  readonly socketPath?: string;
  /**
   * Or any unix socket directly inside this directory (a go-plugin plugin makes
   * a randomly named socket in `PLUGIN_UNIX_SOCKET_DIR`, the launch's private
   * directory).
   */
  readonly socketDir?: string;
  /** TCP on `127.0.0.1` within these ports (`PLUGIN_MIN_PORT`..`PLUGIN_MAX_PORT`); absent: TCP refused. */
  readonly tcpPorts?: readonly [number, number];
}

/**
 * Refuses an address a plugin announced unless `pin` allows it: checked
 * before anything dials it.
 *
 * A unix socket must be named exactly (`socketPath`) or sit directly inside
 * `socketDir` (no `..`, no subdirectory), and must be a socket, not a symlink
 * to one elsewhere, when it is checked. TCP is accepted only on `127.0.0.1`
 * within `tcpPorts`, and only when `tcpPorts` is given.
 *
 * @example
 * ```ts
 * import { assertPinnedAddress } from "./handshake.ts";
 * try {
 *   assertPinnedAddress({ network: "tcp", address: "127.0.0.1:22" }, { plugin: "kv", socketDir: "/tmp/tether-x" });
 * } catch (error) {
 *   console.log((error as Error).message); // plugin kv announced tcp 127.0.0.1:22, expected ...
 * }
 * ```
 *
 * @param what what announced the address, e.g. "its handshake line" or "broker connection 3"
 * @throws {TetherError} `handshake`, naming the expected and the announced address.
 */
export function assertPinnedAddress(
  endpoint: { readonly network: string; readonly address: string },
  pin: AddressPin,
  what = "its handshake line",
): void {
  const expected: string[] = [];
  if (pin.socketPath !== undefined) expected.push(`unix socket ${pin.socketPath}`);
  if (pin.socketDir !== undefined) expected.push(`a unix socket directly inside ${pin.socketDir}`);
  if (pin.tcpPorts) expected.push(`tcp 127.0.0.1:${pin.tcpPorts[0]}..${pin.tcpPorts[1]}`);
  const refuse = (why: string): never => {
    throw new TetherError(
      "handshake",
      `plugin ${pin.plugin} announced ${endpoint.network} ${quoteLine(endpoint.address)} in ${what}, ` +
        `expected ${expected.join(" or ") || "nothing (no address is allowed)"}: ${why}. ` +
        "Tether did not connect to it and stopped the plugin." +
        (endpoint.network === "tcp" && !pin.tcpPorts
          ? " A plugin that can only listen on TCP needs allowTcp: true."
          : ""),
    );
  };
  if (endpoint.network === "unix") {
    const path = endpoint.address;
    const slash = path.lastIndexOf("/");
    const dir = path.slice(0, slash);
    const name = path.slice(slash + 1);
    const exact = pin.socketPath !== undefined && path === pin.socketPath;
    const inside = pin.socketDir !== undefined && slash > 0 && dir === pin.socketDir.replace(/\/+$/, "") &&
      name !== "" && name !== "." && name !== "..";
    if (!exact && !inside) refuse("the socket is not one this launch assigned");
    let isSocket = false;
    try {
      isSocket = Deno.lstatSync(path).isSocket === true;
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.NotFound) {
        // The host may not stat it (no read grant), or nothing is there yet (the dial then fails
        // and says so): the path check above is what guards.
        return;
      }
      refuse(`cannot see it (${error instanceof Error ? error.message : error})`);
    }
    if (!isSocket) refuse("it is not a socket (a symlink or file is refused)");
    return;
  }
  if (endpoint.network === "tcp") {
    if (!pin.tcpPorts) refuse("TCP is not allowed for this plugin");
    const match = /^127\.0\.0\.1:(\d{1,5})$/.exec(endpoint.address);
    const port = match ? Number(match[1]) : NaN;
    if (!(port >= pin.tcpPorts![0] && port <= pin.tcpPorts![1])) {
      refuse("only 127.0.0.1 within the assigned port range is accepted");
    }
    return;
  }
  refuse("unknown network");
}
