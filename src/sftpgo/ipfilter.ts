/**
 * SFTPGo `ipfilter` plugins, both sides: {@linkcode IpFilterClient} asks a
 * plugin whether an address may connect; {@linkcode serveIpFilter} turns an
 * {@linkcode IpFilter} into one.
 *
 * The wire has no "allowed" flag: `CheckIP` succeeds to allow and fails to
 * deny, so the error's text is the reason. The host wrapper keeps the two
 * kinds of failure apart: the plugin's own "no" resolves to
 * `{ allowed: false, reason }`; a plugin that is gone, unreachable or too
 * slow rejects, and the caller decides (SFTPGo allows when the plugin has
 * exited and denies on any other error).
 *
 * @module
 */

import { IPFilter } from "../gen/sftpgo/ipfilter/ipfilter_pb.ts";
import { GrpcStatus, TetherError } from "../errors.ts";
import type { CallOptions, HandlerContext, ServiceRegistration } from "../rpc.ts";
import { registration } from "../rpc.ts";
import { type PluginServer, serve } from "../server.ts";
import { sftpgoHandshakes } from "./handshakes.ts";
import {
  callOptions,
  type ImplementationFactory,
  isTransportFailure,
  type PluginDispenser,
  pluginErrorMessage,
  resolveImplementation,
  serviceClient,
  type SftpgoClientDefaults,
  type SftpgoServeOptions,
} from "./types.ts";

/**
 * A filter's verdict on one address.
 *
 * @example
 * ```ts
 * import type { IpCheckResult } from "./ipfilter.ts";
 * const verdict: IpCheckResult = { allowed: false, reason: "ip banned" };
 * ```
 */
export type IpCheckResult =
  | {
    /** The address may connect. */
    readonly allowed: true;
  }
  | {
    /** The address is refused. */
    readonly allowed: false;
    /** The plugin's error message. */
    readonly reason: string;
  };

/**
 * The host side of an `ipfilter` plugin.
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { IpFilterClient, sftpgoHandshakes } from "@tether/tether/sftpgo";
 *
 * await using plugin = new PluginClient({ cmd: "./ipfilter-plugin", handshake: sftpgoHandshakes.ipfilter });
 * await plugin.start();
 * const filter = new IpFilterClient(plugin);
 * const verdict = await filter.checkIP("203.0.113.7", "SSH");
 * if (!verdict.allowed) console.log(`refused: ${verdict.reason}`);
 * ```
 */
export class IpFilterClient {
  readonly #plugin: PluginDispenser;
  readonly #defaults: SftpgoClientDefaults;

  /** Wraps a started plugin client; `defaults.timeoutMs` is the deadline of each call (default 20 s, as the sdk). */
  constructor(plugin: PluginDispenser, defaults: SftpgoClientDefaults = {}) {
    this.#plugin = plugin;
    this.#defaults = defaults;
  }

  /**
   * Asks whether `ip` may connect over `protocol` (`SSH`, `FTP`, `DAV`, `HTTP`).
   *
   * @throws {TetherError} when the answer is not the plugin's: the plugin
   * exited or was killed (`exited`, `closed`), cannot be reached
   * (UNAVAILABLE), the call was cancelled or ran out of time.
   */
  async checkIP(ip: string, protocol: string, options?: CallOptions): Promise<IpCheckResult> {
    try {
      await serviceClient(this.#plugin, IPFilter).checkIP(
        { ip, protocol },
        callOptions(this.#defaults, options),
      );
      return { allowed: true };
    } catch (error) {
      if (isTransportFailure(error)) throw error;
      return { allowed: false, reason: pluginErrorMessage(error) };
    }
  }

  /** Tells the plugin to reload its lists (`Reload`; SFTPGo sends it when it reloads its own config). */
  async reload(options?: CallOptions): Promise<void> {
    await serviceClient(this.#plugin, IPFilter).reload({}, callOptions(this.#defaults, options));
  }
}

/**
 * What an {@linkcode IpFilter} decides: `true`, `undefined` (nothing
 * returned) or `{ allowed: true }` allow; `false` or `{ allowed: false,
 * reason }` deny. Throwing denies too, with the error's message.
 *
 * @example
 * ```ts
 * import type { IpVerdict } from "./ipfilter.ts";
 * const verdict: IpVerdict = { allowed: false, reason: "country not allowed" };
 * ```
 */
export type IpVerdict = boolean | IpCheckResult | undefined | void;

/**
 * An `ipfilter` plugin.
 *
 * @example
 * ```ts
 * import type { IpFilter } from "./ipfilter.ts";
 * const filter: IpFilter = {
 *   checkIP: (ip) => ip.startsWith("10.") ? { allowed: false, reason: "ip banned" } : true,
 * };
 * ```
 */
export interface IpFilter {
  /** Whether `ip` may connect over `protocol`. */
  checkIP(ip: string, protocol: string, context: HandlerContext): IpVerdict | Promise<IpVerdict>;
  /** Reloads the plugin's lists; a filter without it ignores reloads. */
  reload?(context: HandlerContext): void | Promise<void>;
}

/**
 * The gRPC registration of an {@linkcode IpFilter}, for {@linkcode serve}
 * when {@linkcode serveIpFilter} is not flexible enough.
 *
 * @example
 * ```ts
 * import { ipFilterService } from "./ipfilter.ts";
 * console.log(ipFilterService({ checkIP: () => true }).service.typeName); // "proto.IPFilter"
 * ```
 */
export function ipFilterService(impl: IpFilter): ServiceRegistration<typeof IPFilter> {
  return registration(IPFilter, {
    checkIP: async (request, context) => {
      const verdict = await impl.checkIP(request.ip, request.protocol, context);
      if (verdict === undefined || verdict === true) return {};
      if (verdict === false) throw denied("ip not allowed");
      if (verdict.allowed) return {};
      throw denied(verdict.reason);
    },
    reload: async (_request, context) => {
      await impl.reload?.(context);
      return {};
    },
  });
}

// A deny is the plugin's answer, not a malfunction: PERMISSION_DENIED says so
// to a Tether host; SFTPGo only looks at whether there is an error.
function denied(reason: string): TetherError {
  return new TetherError("rpc", reason, { status: GrpcStatus.PERMISSION_DENIED });
}

/**
 * Serves an `ipfilter` plugin with SFTPGo's ipfilter handshake.
 *
 * @example
 * ```ts ignore
 * import { serveIpFilter } from "@tether/tether/sftpgo";
 *
 * await serveIpFilter({ checkIP: (ip) => ip !== "203.0.113.66" });
 * ```
 */
export function serveIpFilter(
  impl: ImplementationFactory<IpFilter>,
  options: SftpgoServeOptions = {},
): Promise<PluginServer> {
  return serve({
    ...options,
    handshake: sftpgoHandshakes.ipfilter,
    services: (plugin) => [ipFilterService(resolveImplementation(impl, plugin))],
  });
}
