/**
 * SFTPGo `notifier` plugins: the events both sides speak of, and the plugin
 * side ({@linkcode serveNotifier} turns a {@linkcode Notifier} into a
 * plugin). The host side, `NotifierClient`, is in notifier_client.ts, which
 * plugins never load. A failed event means it was not delivered (SFTPGo may
 * queue it and try again).
 *
 * Times: `timestamp` is a `Date` or a `bigint` of Unix nanoseconds when you
 * send (default: now); a plugin receives both `timestamp: Date` and the exact
 * `timestampNs: bigint`. `elapsedMs` is milliseconds. `fileSize` is a
 * number on the plugin side: exact up to 2^53 bytes (8 PiB), beyond any real
 * file.
 *
 * @module
 */

import {
  type FsEvent as FsEventMessage,
  type LogEvent as LogEventMessage,
  Notifier as NotifierService,
  type ProviderEvent as ProviderEventMessage,
} from "../gen/sftpgo/notifier/notifier_pb.ts";
import type { HandlerContext, ServiceRegistration } from "../service.ts";
import { registration } from "../service.ts";
import type { PluginServer } from "../server.ts";
import { serveOne } from "./serve_one.ts";
import {
  fromUnixNanos,
  type ImplementationFactory,
  int64ToNumber,
  type SftpgoServeOptions,
  tryParseJsonObject,
} from "./types.ts";

/**
 * `status` of a filesystem event.
 *
 * @example
 * ```ts
 * import { FsEventStatus } from "./notifier.ts";
 * console.log(FsEventStatus.QuotaExceeded); // 3
 * ```
 */
export const FsEventStatus = {
  /** The operation succeeded. */
  Ok: 1,
  /** It failed. */
  Error: 2,
  /** It failed because of a quota. */
  QuotaExceeded: 3,
} as const;

/**
 * `fs_provider`: the storage backend of the user (sdk `FilesystemProvider`).
 *
 * @example
 * ```ts
 * import { FsProvider } from "./notifier.ts";
 * console.log(FsProvider.S3); // 1
 * ```
 */
export const FsProvider = {
  /** Local filesystem. */
  Local: 0,
  /** S3 compatible object storage. */
  S3: 1,
  /** Google Cloud Storage. */
  GCS: 2,
  /** Azure Blob Storage. */
  AzureBlob: 3,
  /** Local, encrypted. */
  Crypted: 4,
  /** Another SFTP server. */
  SFTP: 5,
  /** An HTTP backend. */
  HTTP: 6,
} as const;

/**
 * `event` of a log event (sdk `LogEventType`).
 *
 * @example
 * ```ts
 * import { LogEventType } from "./notifier.ts";
 * console.log(LogEventType.LoginOK); // 5
 * ```
 */
export const LogEventType = {
  /** Wrong credentials. */
  LoginFailed: 1,
  /** The user does not exist. */
  LoginNoUser: 2,
  /** The client connected without trying to log in. */
  NoLoginTried: 3,
  /** The SSH/TLS negotiation failed. */
  NotNegotiated: 4,
  /** A successful login. */
  LoginOK: 5,
} as const;

// ---------------------------------------------------------------------------------------------------------------
// What the host side speaks of (the host side itself is in notifier_client.ts)

/**
 * A filesystem event to send. Only `action` and `username` are required;
 * everything else defaults to empty / 0, `timestamp` to now.
 *
 * @example
 * ```ts
 * import { FsEventStatus, type FsEventInput } from "./notifier.ts";
 * const upload: FsEventInput = {
 *   action: "upload",
 *   username: "alice",
 *   virtualPath: "/in/report.csv",
 *   fsPath: "/srv/alice/in/report.csv",
 *   fileSize: 1024,
 *   protocol: "SFTP",
 *   status: FsEventStatus.Ok,
 *   elapsedMs: 12,
 * };
 * ```
 */
export interface FsEventInput {
  /** When it happened: a `Date`, or a `bigint` of Unix nanoseconds. Default: now. */
  readonly timestamp?: Date | bigint;
  /** `upload`, `download`, `delete`, `rename`, `mkdir`, `rmdir`, `ssh_cmd`, `pre-upload`, ... */
  readonly action: string;
  /** Who did it. */
  readonly username: string;
  /** The path on the storage backend. */
  readonly fsPath?: string;
  /** The target path on the backend (rename, copy). */
  readonly fsTargetPath?: string;
  /** The path the user sees. */
  readonly virtualPath?: string;
  /** The target path the user sees (rename, copy). */
  readonly virtualTargetPath?: string;
  /** The SSH command, for `ssh_cmd`. */
  readonly sshCmd?: string;
  /** Bytes (number or bigint). */
  readonly fileSize?: number | bigint;
  /** `SFTP`, `SCP`, `SSH`, `FTP`, `DAV`, `HTTP`, `HTTPShare`, `DataRetention`, `EventAction`, ... */
  readonly protocol?: string;
  /** See {@linkcode FsEventStatus}. */
  readonly status?: number;
  /** The client's IP. */
  readonly ip?: string;
  /** The connection id. */
  readonly sessionId?: string;
  /** See {@linkcode FsProvider}. */
  readonly fsProvider?: number;
  /** Bucket, for object storage backends. */
  readonly bucket?: string;
  /** Endpoint, for object storage backends. */
  readonly endpoint?: string;
  /** `open(2)` flags of an upload. */
  readonly openFlags?: number;
  /** The user's role. */
  readonly role?: string;
  /** How long the operation took, in milliseconds. */
  readonly elapsedMs?: number | bigint;
  /** Extra key/value pairs (e.g. object metadata). */
  readonly metadata?: Readonly<Record<string, string>>;
}

/**
 * A provider (data model) event to send: an object was added, updated or
 * deleted.
 *
 * @example
 * ```ts
 * import type { ProviderEventInput } from "./notifier.ts";
 * const update: ProviderEventInput = {
 *   action: "update",
 *   objectType: "user",
 *   objectName: "alice",
 *   username: "admin",
 *   objectData: { username: "alice", status: 1 },
 * };
 * ```
 */
export interface ProviderEventInput {
  /** When it happened: a `Date`, or a `bigint` of Unix nanoseconds. Default: now. */
  readonly timestamp?: Date | bigint;
  /** `add`, `update` or `delete`. */
  readonly action: string;
  /** `user`, `folder`, `group`, `admin`, `api_key`, `share`, `event_action`, `event_rule`, `role`, ... */
  readonly objectType: string;
  /** Who did it (an admin, or the user itself). */
  readonly username: string;
  /** Their IP. */
  readonly ip?: string;
  /** The object's name. */
  readonly objectName: string;
  /** The object: an object is sent as JSON, bytes and strings as they are. */
  readonly objectData?: object | Uint8Array | string;
  /** The admin's role. */
  readonly role?: string;
}

/**
 * A log event to send (logins and connection failures).
 *
 * @example
 * ```ts
 * import { LogEventType, type LogEventInput } from "./notifier.ts";
 * const failed: LogEventInput = { event: LogEventType.LoginFailed, username: "mallory", protocol: "SSH", ip: "203.0.113.66", message: "invalid credentials" };
 * ```
 */
export interface LogEventInput {
  /** When it happened: a `Date`, or a `bigint` of Unix nanoseconds. Default: now. */
  readonly timestamp?: Date | bigint;
  /** See {@linkcode LogEventType}. */
  readonly event: number;
  /** The login name. */
  readonly username?: string;
  /** The protocol. */
  readonly protocol?: string;
  /** The client's IP. */
  readonly ip?: string;
  /** The log message. */
  readonly message?: string;
  /** The user's role. */
  readonly role?: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Plugin side

/**
 * A filesystem event as a plugin receives it: every field present.
 *
 * @example
 * ```ts
 * import type { FsEvent } from "./notifier.ts";
 * const line = (e: FsEvent) => `${e.timestamp.toISOString()} ${e.username} ${e.action} ${e.virtualPath}`;
 * ```
 */
export interface FsEvent {
  /** When it happened (millisecond precision). */
  readonly timestamp: Date;
  /** When it happened, exact: Unix nanoseconds. */
  readonly timestampNs: bigint;
  /** The action. */
  readonly action: string;
  /** Who did it. */
  readonly username: string;
  /** The path on the storage backend. */
  readonly fsPath: string;
  /** The target path on the backend. */
  readonly fsTargetPath: string;
  /** The path the user sees. */
  readonly virtualPath: string;
  /** The target path the user sees. */
  readonly virtualTargetPath: string;
  /** The SSH command. */
  readonly sshCmd: string;
  /** Bytes. */
  readonly fileSize: number;
  /** The protocol. */
  readonly protocol: string;
  /** See {@linkcode FsEventStatus}. */
  readonly status: number;
  /** The client's IP. */
  readonly ip: string;
  /** The connection id. */
  readonly sessionId: string;
  /** See {@linkcode FsProvider}. */
  readonly fsProvider: number;
  /** Bucket. */
  readonly bucket: string;
  /** Endpoint. */
  readonly endpoint: string;
  /** `open(2)` flags. */
  readonly openFlags: number;
  /** The user's role. */
  readonly role: string;
  /** Duration in milliseconds. */
  readonly elapsedMs: number;
  /** Extra key/value pairs. */
  readonly metadata: Readonly<Record<string, string>>;
}

/**
 * A provider event as a plugin receives it.
 *
 * @example
 * ```ts
 * import type { ProviderEvent } from "./notifier.ts";
 * const line = (e: ProviderEvent) => `${e.username} ${e.action} ${e.objectType} ${e.objectName}`;
 * ```
 */
export interface ProviderEvent {
  /** When it happened (millisecond precision). */
  readonly timestamp: Date;
  /** When it happened, exact: Unix nanoseconds. */
  readonly timestampNs: bigint;
  /** `add`, `update` or `delete`. */
  readonly action: string;
  /** The kind of object. */
  readonly objectType: string;
  /** Who did it. */
  readonly username: string;
  /** Their IP. */
  readonly ip: string;
  /** The object's name. */
  readonly objectName: string;
  /** The object, parsed; `undefined` when none was sent or it is not a JSON object. */
  readonly object: Record<string, unknown> | undefined;
  /** The object's JSON bytes as sent. */
  readonly objectData: Uint8Array;
  /** The admin's role. */
  readonly role: string;
}

/**
 * A log event as a plugin receives it.
 *
 * @example
 * ```ts
 * import { LogEventType, type LogEvent } from "./notifier.ts";
 * const isFailure = (e: LogEvent) => e.event !== LogEventType.LoginOK;
 * ```
 */
export interface LogEvent {
  /** When it happened (millisecond precision). */
  readonly timestamp: Date;
  /** When it happened, exact: Unix nanoseconds. */
  readonly timestampNs: bigint;
  /** See {@linkcode LogEventType}. */
  readonly event: number;
  /** The login name. */
  readonly username: string;
  /** The protocol. */
  readonly protocol: string;
  /** The client's IP. */
  readonly ip: string;
  /** The log message. */
  readonly message: string;
  /** The user's role. */
  readonly role: string;
}

/**
 * A `notifier` plugin. A method left out accepts and drops its events
 * (SFTPGo only sends the kinds its config subscribes to). Throw to report
 * that an event was not delivered.
 *
 * @example
 * ```ts
 * import type { Notifier } from "./notifier.ts";
 * const notifier: Notifier = {
 *   notifyFsEvent: (event) => console.log(event.action, event.virtualPath),
 * };
 * ```
 */
export interface Notifier {
  /** A filesystem event. */
  notifyFsEvent?(event: FsEvent, context: HandlerContext): void | Promise<void>;
  /** A provider event. */
  notifyProviderEvent?(event: ProviderEvent, context: HandlerContext): void | Promise<void>;
  /** A log event. */
  notifyLogEvent?(event: LogEvent, context: HandlerContext): void | Promise<void>;
}

/**
 * The plugin's view of a received filesystem event.
 *
 * @example
 * ```ts
 * import { create } from "@bufbuild/protobuf";
 * import { FsEventSchema } from "../gen/sftpgo/notifier/notifier_pb.ts";
 * import { fsEventFromMessage } from "./notifier.ts";
 * const event = fsEventFromMessage(create(FsEventSchema, { timestamp: 1767225600123456789n, action: "upload" }));
 * console.log(event.timestamp.toISOString()); // 2026-01-01T00:00:00.123Z
 * ```
 */
export function fsEventFromMessage(raw: FsEventMessage): FsEvent {
  return {
    timestamp: fromUnixNanos(raw.timestamp),
    timestampNs: raw.timestamp,
    action: raw.action,
    username: raw.username,
    fsPath: raw.fsPath,
    fsTargetPath: raw.fsTargetPath,
    virtualPath: raw.virtualPath,
    virtualTargetPath: raw.virtualTargetPath,
    sshCmd: raw.sshCmd,
    fileSize: int64ToNumber(raw.fileSize),
    protocol: raw.protocol,
    status: raw.status,
    ip: raw.ip,
    sessionId: raw.sessionId,
    fsProvider: raw.fsProvider,
    bucket: raw.bucket,
    endpoint: raw.endpoint,
    openFlags: raw.openFlags,
    role: raw.role,
    elapsedMs: int64ToNumber(raw.elapsed),
    metadata: raw.metadata,
  };
}

/**
 * The plugin's view of a received provider event.
 *
 * @example
 * ```ts
 * import { create } from "@bufbuild/protobuf";
 * import { ProviderEventSchema } from "../gen/sftpgo/notifier/notifier_pb.ts";
 * import { providerEventFromMessage } from "./notifier.ts";
 * const event = providerEventFromMessage(create(ProviderEventSchema, { objectData: new TextEncoder().encode('{"username":"alice"}') }));
 * console.log(event.object?.username); // "alice"
 * ```
 */
export function providerEventFromMessage(raw: ProviderEventMessage): ProviderEvent {
  return {
    timestamp: fromUnixNanos(raw.timestamp),
    timestampNs: raw.timestamp,
    action: raw.action,
    objectType: raw.objectType,
    username: raw.username,
    ip: raw.ip,
    objectName: raw.objectName,
    object: tryParseJsonObject(raw.objectData),
    objectData: raw.objectData,
    role: raw.role,
  };
}

/**
 * The plugin's view of a received log event.
 *
 * @example
 * ```ts
 * import { create } from "@bufbuild/protobuf";
 * import { LogEventSchema } from "../gen/sftpgo/notifier/notifier_pb.ts";
 * import { logEventFromMessage } from "./notifier.ts";
 * console.log(logEventFromMessage(create(LogEventSchema, { event: 5 })).event); // 5
 * ```
 */
export function logEventFromMessage(raw: LogEventMessage): LogEvent {
  return {
    timestamp: fromUnixNanos(raw.timestamp),
    timestampNs: raw.timestamp,
    event: raw.event,
    username: raw.username,
    protocol: raw.protocol,
    ip: raw.ip,
    message: raw.message,
    role: raw.role,
  };
}

/**
 * The gRPC registration of a {@linkcode Notifier}, for {@linkcode serve}
 * when {@linkcode serveNotifier} is not flexible enough.
 *
 * @example
 * ```ts
 * import { notifierService } from "./notifier.ts";
 * console.log(notifierService({}).service.typeName); // "proto.Notifier"
 * ```
 */
export function notifierService(impl: Notifier): ServiceRegistration<typeof NotifierService> {
  return registration(NotifierService, {
    sendFsEvent: (request, context) =>
      acknowledge(impl.notifyFsEvent?.(fsEventFromMessage(request), context)),
    sendProviderEvent: (request, context) =>
      acknowledge(impl.notifyProviderEvent?.(providerEventFromMessage(request), context)),
    sendLogEvent: (request, context) =>
      acknowledge(impl.notifyLogEvent?.(logEventFromMessage(request), context)),
  });
}

const EMPTY = {} as const;

/**
 * The empty answer, once the notifier handled the event: at once when it returned (no promise and no extra
 * turn per event), after its promise when it gave one.
 */
function acknowledge(handled: void | Promise<void>): typeof EMPTY | Promise<typeof EMPTY> {
  return typeof (handled as PromiseLike<void> | undefined)?.then === "function"
    ? Promise.resolve(handled).then(() => EMPTY)
    : EMPTY;
}

/**
 * Serves a `notifier` plugin with SFTPGo's notifier handshake.
 *
 * @example
 * ```ts ignore
 * import { serveNotifier } from "@tether/tether/sftpgo/plugin";
 *
 * await serveNotifier({
 *   notifyFsEvent: (event) => console.error(event.timestamp.toISOString(), event.username, event.action),
 * });
 * ```
 */
export function serveNotifier(
  impl: ImplementationFactory<Notifier>,
  options: SftpgoServeOptions = {},
): Promise<PluginServer> {
  return serveOne("notifier", notifierService, impl, options);
}
