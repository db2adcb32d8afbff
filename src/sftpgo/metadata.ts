/**
 * SFTPGo's legacy `metadata` plugins (removed in SFTPGo 2.6, sdk v0.1.6 was
 * the last with them), both sides: {@linkcode MetadataClient} and
 * {@linkcode serveMetadata}. Such a plugin stored modification times for
 * object storage backends, which cannot set them.
 *
 * Times are milliseconds since the Unix epoch on the wire (SFTPGo sent
 * `util.GetTimeAsMsSinceEpoch`); the wrappers use `Date`, which holds
 * exactly that. "No such object" is gRPC NOT_FOUND (the sdk maps it to
 * `ErrNoSuchObject`).
 *
 * @module
 */

import { Metadata } from "../gen/sftpgo/metadata/metadata_pb.ts";
import { GrpcStatus, TetherError } from "../errors.ts";
import type { CallOptions, HandlerContext, ServiceRegistration } from "../rpc.ts";
import { registration } from "../rpc.ts";
import { type PluginServer, serve } from "../server.ts";
import { sftpgoHandshakes } from "./handshakes.ts";
import {
  callOptions,
  type ImplementationFactory,
  type PluginDispenser,
  resolveImplementation,
  SDK_TIMEOUT_MS,
  serviceClient,
  type SftpgoClientDefaults,
  type SftpgoServeOptions,
} from "./types.ts";

function isNotFound(error: unknown): boolean {
  return error instanceof TetherError && error.code === "rpc" && error.status === GrpcStatus.NOT_FOUND;
}

function msOf(time: Date): bigint {
  const ms = time.getTime();
  if (!Number.isFinite(ms)) throw new TetherError("config", "invalid Date: it has no time value");
  return BigInt(ms);
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
  readonly #plugin: PluginDispenser;
  readonly #defaults: SftpgoClientDefaults;

  /**
   * Wraps a started plugin client; `defaults.timeoutMs` is the deadline of
   * each call (default 20 s, and 80 s for `getModificationTimes`, as the sdk).
   */
  constructor(plugin: PluginDispenser, defaults: SftpgoClientDefaults = {}) {
    this.#plugin = plugin;
    this.#defaults = defaults;
  }

  /** Stores an object's modification time. */
  async setModificationTime(
    storageId: string,
    objectPath: string,
    modificationTime: Date,
    options?: CallOptions,
  ): Promise<void> {
    await this.#metadata().setModificationTime(
      { storageId, objectPath, modificationTime: msOf(modificationTime) },
      callOptions(this.#defaults, options),
    );
  }

  /** An object's stored modification time; `undefined` when the plugin has none (NOT_FOUND). */
  async getModificationTime(
    storageId: string,
    objectPath: string,
    options?: CallOptions,
  ): Promise<Date | undefined> {
    try {
      const response = await this.#metadata().getModificationTime(
        { storageId, objectPath },
        callOptions(this.#defaults, options),
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
    const defaults = { timeoutMs: (this.#defaults.timeoutMs ?? SDK_TIMEOUT_MS) * 4 };
    const response = await this.#metadata().getModificationTimes(
      { storageId, folderPath },
      callOptions(defaults, options),
    );
    return new Map(Object.entries(response.pairs).map(([path, ms]) => [path, new Date(Number(ms))]));
  }

  /** Forgets an object; resolves `false` when the plugin had nothing for it (NOT_FOUND). */
  async removeMetadata(storageId: string, objectPath: string, options?: CallOptions): Promise<boolean> {
    try {
      await this.#metadata().removeMetadata({ storageId, objectPath }, callOptions(this.#defaults, options));
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
    const response = await this.#metadata().getFolders(
      { storageId, limit: page.limit ?? 0, from: page.from ?? "" },
      callOptions(this.#defaults, options),
    );
    return response.folders;
  }

  #metadata() {
    return serviceClient(this.#plugin, Metadata);
  }
}

/**
 * A legacy `metadata` plugin. Return `undefined` from
 * {@linkcode Metadater.getModificationTime} or `false` from
 * {@linkcode Metadater.removeMetadata} for "no such object" (sent as
 * NOT_FOUND); throw for any other failure.
 *
 * @example
 * ```ts
 * import type { Metadater } from "./metadata.ts";
 * const times = new Map<string, Date>();
 * const key = (storageId: string, path: string) => `${storageId}\0${path}`;
 * const metadater: Metadater = {
 *   setModificationTime: ({ storageId, objectPath, modificationTime }) => void times.set(key(storageId, objectPath), modificationTime),
 *   getModificationTime: ({ storageId, objectPath }) => times.get(key(storageId, objectPath)),
 *   getModificationTimes: () => new Map(),
 *   removeMetadata: ({ storageId, objectPath }) => times.delete(key(storageId, objectPath)),
 *   getFolders: () => [],
 * };
 * ```
 */
export interface Metadater {
  /** Stores an object's modification time. */
  setModificationTime(
    request: { readonly storageId: string; readonly objectPath: string; readonly modificationTime: Date },
    context: HandlerContext,
  ): void | Promise<void>;
  /** An object's modification time, or `undefined` when unknown. */
  getModificationTime(
    request: { readonly storageId: string; readonly objectPath: string },
    context: HandlerContext,
  ): Date | undefined | Promise<Date | undefined>;
  /** The modification times of a folder's objects, by object path. */
  getModificationTimes(
    request: { readonly storageId: string; readonly folderPath: string },
    context: HandlerContext,
  ):
    | ReadonlyMap<string, Date>
    | Readonly<Record<string, Date>>
    | Promise<
      ReadonlyMap<string, Date> | Readonly<Record<string, Date>>
    >;
  /** Forgets an object; `false` when there was nothing to forget. */
  removeMetadata(
    request: { readonly storageId: string; readonly objectPath: string },
    context: HandlerContext,
  ): boolean | void | Promise<boolean | void>;
  /** Folders with stored metadata (`limit` 0: no limit), after `from`. */
  getFolders(
    request: { readonly storageId: string; readonly limit: number; readonly from: string },
    context: HandlerContext,
  ): readonly string[] | Promise<readonly string[]>;
}

function noSuchObject(path: string): TetherError {
  // The sdk's ErrNoSuchObject text, so logs read the same as with a Go plugin.
  return new TetherError("rpc", `no such object: ${path}`, { status: GrpcStatus.NOT_FOUND });
}

/**
 * The gRPC registration of a {@linkcode Metadater}, for {@linkcode serve}
 * when {@linkcode serveMetadata} is not flexible enough.
 *
 * @example
 * ```ts
 * import { metadataService } from "./metadata.ts";
 * const reg = metadataService({
 *   setModificationTime: () => {},
 *   getModificationTime: () => undefined,
 *   getModificationTimes: () => new Map(),
 *   removeMetadata: () => false,
 *   getFolders: () => [],
 * });
 * console.log(reg.service.typeName); // "proto.Metadata"
 * ```
 */
export function metadataService(impl: Metadater): ServiceRegistration<typeof Metadata> {
  return registration(Metadata, {
    setModificationTime: async ({ storageId, objectPath, modificationTime }, context) => {
      await impl.setModificationTime({
        storageId,
        objectPath,
        modificationTime: new Date(Number(modificationTime)),
      }, context);
      return {};
    },
    getModificationTime: async ({ storageId, objectPath }, context) => {
      const time = await impl.getModificationTime({ storageId, objectPath }, context);
      if (time === undefined) throw noSuchObject(objectPath);
      return { modificationTime: msOf(time) };
    },
    getModificationTimes: async ({ storageId, folderPath }, context) => {
      const times = await impl.getModificationTimes({ storageId, folderPath }, context);
      const entries = times instanceof Map
        ? [...times.entries()]
        : Object.entries(times as Record<string, Date>);
      return { pairs: Object.fromEntries(entries.map(([path, time]) => [path, msOf(time)])) };
    },
    removeMetadata: async ({ storageId, objectPath }, context) => {
      if (await impl.removeMetadata({ storageId, objectPath }, context) === false) {
        throw noSuchObject(objectPath);
      }
      return {};
    },
    getFolders: async ({ storageId, limit, from }, context) => ({
      folders: [...await impl.getFolders({ storageId, limit, from }, context)],
    }),
  });
}

/**
 * Serves a legacy `metadata` plugin with its sdk handshake.
 *
 * @example
 * ```ts ignore
 * import { serveMetadata } from "@tether/tether/sftpgo";
 * import { metadater } from "./my-store.ts";
 *
 * await serveMetadata(metadater);
 * ```
 */
export function serveMetadata(
  impl: ImplementationFactory<Metadater>,
  options: SftpgoServeOptions = {},
): Promise<PluginServer> {
  return serve({
    ...options,
    handshake: sftpgoHandshakes.metadata,
    services: (plugin) => [metadataService(resolveImplementation(impl, plugin))],
  });
}
