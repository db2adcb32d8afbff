/**
 * The one body of the six `serveX` functions (`serveAuth`, `serveNotifier`,
 * `serveKms`, `serveIpFilter`, `serveEventSearcher`, `serveMetadata`): serve
 * one SFTPGo plugin type's service, with that type's handshake, built from
 * the caller's implementation or its factory. Plugin side only.
 *
 * @module
 */

import type { ServiceRegistration } from "../service.ts";
import { type PluginServer, serve } from "../server.ts";
import { sftpgoHandshakes, type SftpgoPluginType } from "./handshakes.ts";
import type { ImplementationFactory, SftpgoPluginContext, SftpgoServeOptions } from "./types.ts";

/**
 * Serves one SFTPGo plugin type: `service` turns the implementation (or what
 * the factory returns for the plugin's context) into its registration.
 *
 * @example
 * ```ts ignore
 * import { serveOne } from "./serve_one.ts";
 * import { ipFilterService } from "./ipfilter.ts";
 * await serveOne("ipfilter", ipFilterService, { checkIP: () => ({ allowed: true }) }, {});
 * ```
 */
export function serveOne<T extends object>(
  type: SftpgoPluginType,
  service: (impl: T) => ServiceRegistration,
  impl: ImplementationFactory<T>,
  options: SftpgoServeOptions,
): Promise<PluginServer> {
  const pick = (plugin: SftpgoPluginContext): T =>
    typeof impl === "function" ? (impl as (plugin: SftpgoPluginContext) => T)(plugin) : impl;
  return serve({
    ...options,
    handshake: sftpgoHandshakes[type],
    services: (plugin) => [service(pick(plugin))],
  });
}
