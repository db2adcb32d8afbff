/**
 * The handshake of each SFTPGo plugin type: the magic cookie and protocol
 * version that sftpgo/sdk (v0.1.9; metadata from v0.1.6, its last release)
 * puts in `Handshake`, and the gRPC service each type serves. A host and a
 * plugin of one type must use the same values; a plugin started with another
 * type's cookie exits with status 1.
 *
 * @module
 */

import type { DescService } from "@bufbuild/protobuf";
import type { HandshakeConfig } from "../handshake.ts";
import { Auth } from "../gen/sftpgo/auth/auth_pb.ts";
import { Searcher } from "../gen/sftpgo/eventsearcher/search_pb.ts";
import { IPFilter } from "../gen/sftpgo/ipfilter/ipfilter_pb.ts";
import { KMS } from "../gen/sftpgo/kms/kms_pb.ts";
import { Metadata } from "../gen/sftpgo/metadata/metadata_pb.ts";
import { Notifier } from "../gen/sftpgo/notifier/notifier_pb.ts";

/**
 * An SFTPGo plugin type, as written in `type:` of SFTPGo's `plugins`
 * config and used as the key of the sdk's `PluginMap`. `metadata` is the
 * legacy type SFTPGo 2.6 removed.
 *
 * @example
 * ```ts
 * import type { SftpgoPluginType } from "./handshakes.ts";
 * const type: SftpgoPluginType = "ipfilter";
 * ```
 */
export type SftpgoPluginType = "auth" | "notifier" | "kms" | "ipfilter" | "eventsearcher" | "metadata";

/**
 * Handshake of every SFTPGo plugin type (all use protocol version 1).
 *
 * @example
 * ```ts
 * import { sftpgoHandshakes } from "./handshakes.ts";
 * console.log(sftpgoHandshakes.auth.magicCookieKey); // "SFTPGO_PLUGIN_AUTH"
 * ```
 *
 * @example Launching an SFTPGo plugin
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { sftpgoHandshakes } from "@tether/tether/sftpgo";
 *
 * const client = new PluginClient({ cmd: "/usr/local/bin/sftpgo-plugin-pubsub", args: ["serve"], handshake: sftpgoHandshakes.notifier });
 * ```
 */
export const sftpgoHandshakes: Readonly<Record<SftpgoPluginType, HandshakeConfig>> = Object.freeze({
  auth: Object.freeze({
    protocolVersion: 1,
    magicCookieKey: "SFTPGO_PLUGIN_AUTH",
    magicCookieValue: "d1ed507d-d2be-4a38-a460-6fe0b2cc7efc",
  }),
  notifier: Object.freeze({
    protocolVersion: 1,
    magicCookieKey: "SFTPGO_PLUGIN_NOTIFIER",
    magicCookieValue: "c499b98b-cd59-4df2-92b3-6268817f4d80",
  }),
  kms: Object.freeze({
    protocolVersion: 1,
    magicCookieKey: "SFTPGO_PLUGIN_KMS",
    magicCookieValue: "223e3571-7ed2-4b96-b4b3-c7eb87d7ca1d",
  }),
  ipfilter: Object.freeze({
    protocolVersion: 1,
    magicCookieKey: "SFTPGO_PLUGIN_IPFILTER",
    magicCookieValue: "368dbdab-4839-4bec-b75f-fc74a2d50f24",
  }),
  eventsearcher: Object.freeze({
    protocolVersion: 1,
    magicCookieKey: "SFTPGO_PLUGIN_EVENTSEARCHER",
    magicCookieValue: "2b523805-0279-471c-895e-6c0d39002ca4",
  }),
  metadata: Object.freeze({
    protocolVersion: 1,
    magicCookieKey: "SFTPGO_PLUGIN_METADATA",
    magicCookieValue: "85dddeea-56d8-4d5b-b488-8b125edb3a0f",
  }),
});

/**
 * The gRPC service each type serves (`/proto.<Service>/<Method>`), for
 * {@linkcode PluginClient.dispense} when the typed wrappers are not wanted.
 *
 * @example
 * ```ts
 * import { sftpgoServices } from "./handshakes.ts";
 * console.log(sftpgoServices.eventsearcher.typeName); // "proto.Searcher"
 * ```
 */
export const sftpgoServices: {
  readonly auth: typeof Auth;
  readonly notifier: typeof Notifier;
  readonly kms: typeof KMS;
  readonly ipfilter: typeof IPFilter;
  readonly eventsearcher: typeof Searcher;
  readonly metadata: typeof Metadata;
} = Object.freeze({
  auth: Auth,
  notifier: Notifier,
  kms: KMS,
  ipfilter: IPFilter,
  eventsearcher: Searcher,
  metadata: Metadata,
});

/** Compile-time check that every type has a service. */
const _everyType: Record<SftpgoPluginType, DescService> = sftpgoServices;
void _everyType;
