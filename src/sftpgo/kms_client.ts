/**
 * SFTPGo `kms` plugins, host side: {@linkcode KmsClient}. The plugin side and the vocabulary both share are
 * in kms.ts.
 *
 * @module
 */

import { KMS } from "../gen/sftpgo/kms/kms_pb.ts";
import type { CallOptions } from "../rpc.ts";
import type { KmsDecryptRequest, KmsEncryptRequest, KmsEncryptResult } from "./kms.ts";
import type { PluginDispenser, SftpgoClientDefaults } from "./types.ts";
import { PluginCalls } from "./client_calls.ts";

/**
 * The host side of a `kms` plugin.
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { KmsClient, sftpgoHandshakes } from "@tether/tether/sftpgo";
 *
 * await using plugin = new PluginClient({ cmd: "./kms-plugin", handshake: sftpgoHandshakes.kms });
 * await plugin.start();
 * const kms = new KmsClient(plugin);
 * const sealed = await kms.encrypt({ payload: "s3cret", additionalData: "alice", url: "local://key1" });
 * console.log(await kms.decrypt({ ...sealed, additionalData: "alice", url: "local://key1" })); // "s3cret"
 * ```
 */
export class KmsClient {
  readonly #calls: PluginCalls<typeof KMS>;

  /** Wraps a started plugin client; `defaults.timeoutMs` is the deadline of each call (default 20 s, as the sdk). */
  constructor(plugin: PluginDispenser, defaults: SftpgoClientDefaults = {}) {
    this.#calls = new PluginCalls(plugin, KMS, defaults);
  }

  /** Encrypts a secret (`Encrypt`). */
  async encrypt(request: KmsEncryptRequest, options?: CallOptions): Promise<KmsEncryptResult> {
    const response = await this.#calls.stub.encrypt({
      payload: request.payload,
      additionalData: request.additionalData ?? "",
      url: request.url,
      masterKey: request.masterKey ?? "",
    }, this.#calls.options(options));
    return { payload: response.payload, key: response.key, mode: response.mode };
  }

  /** Decrypts a secret (`Decrypt`); resolves to the plaintext. */
  async decrypt(request: KmsDecryptRequest, options?: CallOptions): Promise<string> {
    const response = await this.#calls.stub.decrypt({
      payload: request.payload,
      key: request.key,
      additionalData: request.additionalData ?? "",
      mode: request.mode,
      url: request.url,
      masterKey: request.masterKey ?? "",
    }, this.#calls.options(options));
    return response.payload;
  }
}
