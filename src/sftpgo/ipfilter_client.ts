/**
 * SFTPGo `ipfilter` plugins, host side: {@linkcode IpFilterClient}, with SFTPGo's reading of an answer. The
 * plugin side and the vocabulary both share are in ipfilter.ts.
 *
 * @module
 */

import { IPFilter } from "../gen/sftpgo/ipfilter/ipfilter_pb.ts";
import type { CallOptions } from "../rpc.ts";
import type { IpCheckResult } from "./ipfilter.ts";
import {
  isTransportFailure,
  type PluginDispenser,
  pluginErrorMessage,
  type SftpgoClientDefaults,
} from "./types.ts";
import { PluginCalls } from "./client_calls.ts";

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
  readonly #calls: PluginCalls<typeof IPFilter>;

  /** Wraps a started plugin client; `defaults.timeoutMs` is the deadline of each call (default 20 s, as the sdk). */
  constructor(plugin: PluginDispenser, defaults: SftpgoClientDefaults = {}) {
    this.#calls = new PluginCalls(plugin, IPFilter, defaults);
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
      await this.#calls.stub.checkIP(
        { ip, protocol },
        this.#calls.options(options),
      );
      return { allowed: true };
    } catch (error) {
      if (isTransportFailure(error)) throw error;
      return { allowed: false, reason: pluginErrorMessage(error) };
    }
  }

  /** Tells the plugin to reload its lists (`Reload`; SFTPGo sends it when it reloads its own config). */
  async reload(options?: CallOptions): Promise<void> {
    await this.#calls.stub.reload({}, this.#calls.options(options));
  }
}
