/**
 * SFTPGo `ipfilter` plugins: the verdicts both sides share, and the plugin
 * side ({@linkcode serveIpFilter} turns an {@linkcode IpFilter} into a
 * plugin). The host side, `IpFilterClient`, is in ipfilter_client.ts, which
 * plugins never load.
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
import type { HandlerContext, ServiceRegistration } from "../service.ts";
import { registration } from "../service.ts";
import type { PluginServer } from "../server.ts";
import { serveOne } from "./serve_one.ts";
import type { ImplementationFactory, SftpgoServeOptions } from "./types.ts";

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
 * import { serveIpFilter } from "@tether/tether/sftpgo/plugin";
 *
 * await serveIpFilter({ checkIP: (ip) => ip !== "203.0.113.66" });
 * ```
 */
export function serveIpFilter(
  impl: ImplementationFactory<IpFilter>,
  options: SftpgoServeOptions = {},
): Promise<PluginServer> {
  return serveOne("ipfilter", ipFilterService, impl, options);
}
