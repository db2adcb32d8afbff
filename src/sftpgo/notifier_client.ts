/**
 * SFTPGo `notifier` plugins, host side: {@linkcode NotifierClient} sends events the way SFTPGo does. The
 * plugin side and the vocabulary both share are in notifier.ts.
 *
 * @module
 */

import { Notifier as NotifierService } from "../gen/sftpgo/notifier/notifier_pb.ts";
import type { CallOptions } from "../rpc.ts";
import type { FsEventInput, LogEventInput, ProviderEventInput } from "./notifier.ts";
import { jsonBytes, type PluginDispenser, type SftpgoClientDefaults, toInt64, toUnixNanos } from "./types.ts";
import { PluginCalls } from "./client_calls.ts";

function nowNs(): bigint {
  return toUnixNanos(new Date());
}

/**
 * The host side of a `notifier` plugin. A rejection means the plugin did not
 * take the event; the {@linkcode TetherError} says whether the plugin refused
 * it (`rpc`) or is gone (`exited`, `closed`).
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { FsEventStatus, NotifierClient, sftpgoHandshakes } from "@tether/tether/sftpgo";
 *
 * await using plugin = new PluginClient({ cmd: "./notifier-plugin", handshake: sftpgoHandshakes.notifier });
 * await plugin.start();
 * const notifier = new NotifierClient(plugin);
 * await notifier.sendFsEvent({ action: "upload", username: "alice", virtualPath: "/a.txt", status: FsEventStatus.Ok });
 * ```
 */
export class NotifierClient {
  readonly #calls: PluginCalls<typeof NotifierService>;

  /** Wraps a started plugin client; `defaults.timeoutMs` is the deadline of each call (default 20 s, as the sdk). */
  constructor(plugin: PluginDispenser, defaults: SftpgoClientDefaults = {}) {
    this.#calls = new PluginCalls(plugin, NotifierService, defaults);
  }

  /** Sends a filesystem event (`SendFsEvent`). */
  async sendFsEvent(event: FsEventInput, options?: CallOptions): Promise<void> {
    await this.#calls.stub.sendFsEvent({
      timestamp: event.timestamp === undefined ? nowNs() : toUnixNanos(event.timestamp),
      action: event.action,
      username: event.username,
      fsPath: event.fsPath ?? "",
      fsTargetPath: event.fsTargetPath ?? "",
      sshCmd: event.sshCmd ?? "",
      fileSize: toInt64(event.fileSize, "fileSize"),
      protocol: event.protocol ?? "",
      status: event.status ?? 0,
      ip: event.ip ?? "",
      virtualPath: event.virtualPath ?? "",
      virtualTargetPath: event.virtualTargetPath ?? "",
      sessionId: event.sessionId ?? "",
      fsProvider: event.fsProvider ?? 0,
      bucket: event.bucket ?? "",
      endpoint: event.endpoint ?? "",
      openFlags: event.openFlags ?? 0,
      role: event.role ?? "",
      elapsed: toInt64(event.elapsedMs, "elapsedMs"),
      metadata: { ...event.metadata },
    }, this.#calls.options(options));
  }

  /** Sends a provider event (`SendProviderEvent`). */
  async sendProviderEvent(event: ProviderEventInput, options?: CallOptions): Promise<void> {
    await this.#calls.stub.sendProviderEvent({
      timestamp: event.timestamp === undefined ? nowNs() : toUnixNanos(event.timestamp),
      action: event.action,
      objectType: event.objectType,
      username: event.username,
      ip: event.ip ?? "",
      objectName: event.objectName,
      objectData: jsonBytes(event.objectData),
      role: event.role ?? "",
    }, this.#calls.options(options));
  }

  /** Sends a log event (`SendLogEvent`). */
  async sendLogEvent(event: LogEventInput, options?: CallOptions): Promise<void> {
    await this.#calls.stub.sendLogEvent({
      timestamp: event.timestamp === undefined ? nowNs() : toUnixNanos(event.timestamp),
      event: event.event,
      username: event.username ?? "",
      protocol: event.protocol ?? "",
      ip: event.ip ?? "",
      message: event.message ?? "",
      role: event.role ?? "",
    }, this.#calls.options(options));
  }

  #notifier() {
    return this.#calls.stub;
  }
}
