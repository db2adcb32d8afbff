/**
 * What every SFTPGo host-side wrapper (`AuthClient`, `NotifierClient`, ...)
 * holds: the plugin it calls, the service it calls there, and the defaults of
 * its calls. One class, so that the wrappers differ only in their methods.
 *
 * Host side only: nothing a plugin loads imports this module.
 *
 * @module
 */

import type { DescService } from "@bufbuild/protobuf";
import type { CallOptions, ServiceClient } from "../rpc.ts";
import { type PluginDispenser, SDK_TIMEOUT_MS, type SftpgoClientDefaults } from "./types.ts";

/**
 * The calls of one wrapper to one service of a started plugin.
 *
 * @example
 * ```ts ignore
 * import { IPFilter } from "../gen/sftpgo/ipfilter/ipfilter_pb.ts";
 * import { PluginCalls } from "./client_calls.ts";
 * const calls = new PluginCalls(plugin, IPFilter, { timeoutMs: 5_000 });
 * await calls.stub.checkIP({ ip: "198.51.100.7", protocol: "SSH" }, calls.options(undefined));
 * ```
 */
export class PluginCalls<S extends DescService> {
  readonly #plugin: PluginDispenser;
  readonly #service: S;
  /** What the wrapper was given: `timeoutMs` is the deadline of each call (default 20 s, as the sdk). */
  readonly defaults: SftpgoClientDefaults;

  /** Calls `service` on `plugin`, each call with `defaults` under its own options. */
  constructor(plugin: PluginDispenser, service: S, defaults: SftpgoClientDefaults) {
    this.#plugin = plugin;
    this.#service = service;
    this.defaults = defaults;
  }

  /**
   * The typed client of the service, asked of the dispenser at each call rather than kept, as the wrappers
   * always did: a dispenser may stand for a plugin that restarts, and `PluginClient` builds it once per
   * connection anyway.
   */
  get stub(): ServiceClient<S> {
    return (this.#plugin as { dispense(service: S): ServiceClient<S> }).dispense(this.#service);
  }

  /**
   * Per-call options over the defaults (or over `defaults` when a call has its own, e.g. a longer
   * deadline). An explicit `timeoutMs: undefined` in `options` does not erase the default deadline.
   */
  options(options: CallOptions | undefined, defaults: SftpgoClientDefaults = this.defaults): CallOptions {
    return { ...options, timeoutMs: options?.timeoutMs ?? defaults.timeoutMs ?? SDK_TIMEOUT_MS };
  }
}
