/**
 * SFTPGo `kms` plugins: the requests both sides share, and the plugin side
 * ({@linkcode serveKms} turns a {@linkcode KmsService} into a plugin). The
 * host side, `KmsClient`, is in kms_client.ts, which plugins never load.
 *
 * SFTPGo stores what `encrypt` returns (payload, key, mode) with the secret
 * and hands all of it back, with the same additional data, url and master
 * key, to `decrypt`. What `key` and `mode` mean is up to the plugin (e.g. a
 * wrapped data key, and which master key wrapped it).
 *
 * @module
 */

import { KMS } from "../gen/sftpgo/kms/kms_pb.ts";
import type { HandlerContext, ServiceRegistration } from "../service.ts";
import { registration } from "../service.ts";
import type { PluginServer } from "../server.ts";
import { serveOne } from "./serve_one.ts";
import type { ImplementationFactory, SftpgoServeOptions } from "./types.ts";

/**
 * What to encrypt.
 *
 * @example
 * ```ts
 * import type { KmsEncryptRequest } from "./kms.ts";
 * const request: KmsEncryptRequest = { payload: "s3cret", additionalData: "user:alice", url: "awskms:///alias/sftpgo" };
 * ```
 */
export interface KmsEncryptRequest {
  /** The plaintext. */
  readonly payload: string;
  /** Data bound to the ciphertext (SFTPGo passes e.g. the username); must be the same to decrypt. */
  readonly additionalData?: string;
  /** The key's URL in the KMS (SFTPGo's `kms.secrets.url`). */
  readonly url: string;
  /** SFTPGo's `kms.secrets.master_key`, if configured. */
  readonly masterKey?: string;
}

/**
 * What `encrypt` returns, stored by SFTPGo with the secret.
 *
 * @example
 * ```ts
 * import type { KmsEncryptResult } from "./kms.ts";
 * const sealed: KmsEncryptResult = { payload: "b64...", key: "wrapped-data-key", mode: 1 };
 * ```
 */
export interface KmsEncryptResult {
  /** The ciphertext. */
  readonly payload: string;
  /** Plugin-defined key material (e.g. a wrapped data key). */
  readonly key: string;
  /** Plugin-defined mode (int32). */
  readonly mode: number;
}

/**
 * What to decrypt: a stored {@linkcode KmsEncryptResult} plus the inputs of
 * the encryption.
 *
 * @example
 * ```ts
 * import type { KmsDecryptRequest } from "./kms.ts";
 * const request: KmsDecryptRequest = { payload: "b64...", key: "wrapped", mode: 1, additionalData: "user:alice", url: "awskms:///alias/sftpgo" };
 * ```
 */
export interface KmsDecryptRequest extends KmsEncryptResult {
  /** As given to `encrypt`. */
  readonly additionalData?: string;
  /** As given to `encrypt`. */
  readonly url: string;
  /** As given to `encrypt`. */
  readonly masterKey?: string;
}

/**
 * A `kms` plugin. Throw to refuse (bad master key, tampered data, ...).
 * Requests arrive with every field present (empty strings when unset).
 *
 * @example
 * ```ts
 * import type { KmsService } from "./kms.ts";
 * // Not encryption: shows the shape only.
 * const kms: KmsService = {
 *   encrypt: ({ payload }) => ({ payload: btoa(payload), key: "", mode: 1 }),
 *   decrypt: ({ payload }) => atob(payload),
 * };
 * ```
 */
export interface KmsService {
  /** Encrypts. */
  encrypt(
    request: Required<KmsEncryptRequest>,
    context: HandlerContext,
  ): KmsEncryptResult | Promise<KmsEncryptResult>;
  /** Decrypts; returns the plaintext. */
  decrypt(request: Required<KmsDecryptRequest>, context: HandlerContext): string | Promise<string>;
}

/**
 * The gRPC registration of a {@linkcode KmsService}, for {@linkcode serve}
 * when {@linkcode serveKms} is not flexible enough.
 *
 * @example
 * ```ts
 * import { kmsService } from "./kms.ts";
 * const reg = kmsService({ encrypt: ({ payload }) => ({ payload, key: "", mode: 0 }), decrypt: ({ payload }) => payload });
 * console.log(reg.service.typeName); // "proto.KMS"
 * ```
 */
export function kmsService(impl: KmsService): ServiceRegistration<typeof KMS> {
  return registration(KMS, {
    encrypt: async (request, context) => {
      const result = await impl.encrypt({
        payload: request.payload,
        additionalData: request.additionalData,
        url: request.url,
        masterKey: request.masterKey,
      }, context);
      return { payload: result.payload, key: result.key, mode: result.mode };
    },
    decrypt: async (request, context) => ({
      payload: await impl.decrypt({
        payload: request.payload,
        key: request.key,
        additionalData: request.additionalData,
        mode: request.mode,
        url: request.url,
        masterKey: request.masterKey,
      }, context),
    }),
  });
}

/**
 * Serves a `kms` plugin with SFTPGo's KMS handshake.
 *
 * @example
 * ```ts ignore
 * import { serveKms } from "@tether/tether/sftpgo/plugin";
 * import { seal, open } from "./my-crypto.ts";
 *
 * await serveKms({
 *   encrypt: async (request) => await seal(request),
 *   decrypt: async (request) => await open(request),
 * });
 * ```
 */
export function serveKms(
  impl: ImplementationFactory<KmsService>,
  options: SftpgoServeOptions = {},
): Promise<PluginServer> {
  return serveOne("kms", kmsService, impl, options);
}
