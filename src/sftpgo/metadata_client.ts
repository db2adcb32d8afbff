/**
 * SFTPGo legacy `metadata` plugins, host side: {@linkcode MetadataClient}. The plugin side is in
 * metadata.ts.
 *
 * @module
 */

import { Metadata } from "../gen/sftpgo/metadata/metadata_pb.ts";
import { GrpcStatus, TetherError } from "../errors.ts";
import type { CallOptions } from "../rpc.ts";
import { msOf } from "./metadata.ts";
import { type PluginDispenser, SDK_TIMEOUT_MS, type SftpgoClientDefaults } from "./types.ts";
import { PluginCalls } from "./client_calls.ts";

function isNotFound(error: unknown): boolean {
  return error instanceof TetherError && error.code === "rpc" && error.status === GrpcStatus.NOT_FOUND;
}

/**
 * The host side of a legacy `metadata` plugin.
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { MetadataClient, sftpgoHandshakes } from "@tether/tether/sftpgo";
 *
 * await using plugin = new PluginClient({ cmd: "./metadata-plugin", handshake: sftpgoHandshakes.metadata });
 * await plugin.start();
 * const metadata = new MetadataClient(plugin);
 * await metadata.setModificationTime("s3://bucket", "/a.txt", new Date());
 * console.log(await metadata.getModificationTime("s3://bucket", "/a.txt"));
 * ```
 */
export class MetadataClient {
  readonly #calls: PluginCalls<typeof Metadata>;

  /**
   * Wraps a started plugin client; `defaults.timeoutMs` is the deadline of
   * each call (default 20 s, and 80 s for `getModificationTimes`, as the sdk).
   */
  constructor(plugin: PluginDispenser, defaults: SftpgoClientDefaults = {}) {
    this.#calls = new PluginCalls(plugin, Metadata, defaults);
  }

  /** Stores an object's modification time. */
  async setModificationTime(
    storageId: string,
    objectPath: string,
    modificationTime: Date,
    options?: CallOptions,
  ): Promise<void> {
    await this.#calls.stub.setModificationTime(
      { storageId, objectPath, modificationTime: msOf(modificationTime) },
      this.#calls.options(options),
    );
  }

  /** An object's stored modification time; `undefined` when the plugin has none (NOT_FOUND). */
  async getModificationTime(
    storageId: string,
    objectPath: string,
    options?: CallOptions,
  ): Promise<Date | undefined> {
    try {
      const response = await this.#calls.stub.getModificationTime(
        { storageId, objectPath },
        this.#calls.options(options),
      );
      return new Date(Number(response.modificationTime));
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** The stored modification times of the objects in a folder, by object path. */
  async getModificationTimes(
    storageId: string,
    folderPath: string,
    options?: CallOptions,
  ): Promise<Map<string, Date>> {
    // The sdk gives this listing four times the usual deadline.
    const defaults = { timeoutMs: (this.#calls.defaults.timeoutMs ?? SDK_TIMEOUT_MS) * 4 };
    const response = await this.#calls.stub.getModificationTimes(
      { storageId, folderPath },
      this.#calls.options(options, defaults),
    );
    return new Map(Object.entries(response.pairs).map(([path, ms]) => [path, new Date(Number(ms))]));
  }

  /** Forgets an object; resolves `false` when the plugin had nothing for it (NOT_FOUND). */
  async removeMetadata(storageId: string, objectPath: string, options?: CallOptions): Promise<boolean> {
    try {
      await this.#calls.stub.removeMetadata({ storageId, objectPath }, this.#calls.options(options));
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /** Folders that have stored metadata, at most `limit` (0: the plugin's choice), after `from` (paging). */
  async getFolders(
    storageId: string,
    page: { readonly limit?: number; readonly from?: string } = {},
    options?: CallOptions,
  ): Promise<string[]> {
    const response = await this.#calls.stub.getFolders(
      { storageId, limit: page.limit ?? 0, from: page.from ?? "" },
      this.#calls.options(options),
    );
    return response.folders;
  }

  #metadata() {
    return this.#calls.stub;
  }
}
