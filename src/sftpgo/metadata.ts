/**
 * SFTPGo's legacy `metadata` plugins (removed in SFTPGo 2.6, sdk v0.1.6 was
 * the last with them): the plugin side, {@linkcode serveMetadata}; the host
 * side, `MetadataClient`, is in metadata_client.ts, which plugins never load. Such a plugin stored modification times for
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
import type { HandlerContext, ServiceRegistration } from "../service.ts";
import { registration } from "../service.ts";
import type { PluginServer } from "../server.ts";
import { serveOne } from "./serve_one.ts";
import type { ImplementationFactory, SftpgoServeOptions } from "./types.ts";

/**
 * Milliseconds since the epoch, the wire's unit for modification times (both directions).
 *
 * @example
 * ```ts
 * import { msOf } from "./metadata.ts";
 * console.log(msOf(new Date(0))); // 0n
 * ```
 */
export function msOf(time: Date): bigint {
  const ms = time.getTime();
  if (!Number.isFinite(ms)) throw new TetherError("config", "invalid Date: it has no time value");
  return BigInt(ms);
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
 * import { serveMetadata } from "@tether/tether/sftpgo/plugin";
 * import { metadater } from "./my-store.ts";
 *
 * await serveMetadata(metadater);
 * ```
 */
export function serveMetadata(
  impl: ImplementationFactory<Metadater>,
  options: SftpgoServeOptions = {},
): Promise<PluginServer> {
  return serveOne("metadata", metadataService, impl, options);
}
