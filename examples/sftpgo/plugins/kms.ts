/**
 * An SFTPGo `kms` plugin that encrypts secrets locally with AES-256-GCM
 * (Web Crypto):
 *
 *   TETHER_KMS_KEY=$(openssl rand -base64 32) deno run examples/sftpgo/plugins/kms.ts
 *
 * Beyond what serving takes, it needs only `--allow-env=TETHER_KMS_KEY`.
 *
 * Which key:
 * - mode 1: the 32-byte key in `$TETHER_KMS_KEY` (base64), when SFTPGo sends
 *   no master key;
 * - mode 2: a key derived (HKDF-SHA256) from the `master_key` SFTPGo sends,
 *   for setups that keep the key in SFTPGo's config rather than here.
 *
 * What SFTPGo stores: `payload` = base64(12-byte random IV ‖ ciphertext ‖
 * tag), with the secret's additional data authenticated alongside; `key` =
 * `sha256:` + 16 hex digits of the key's SHA-256, which names the key without
 * revealing it, so that decrypting with another key fails with a clear
 * message. The `url` is not used: there is only one key per mode.
 *
 * @module
 */

import { serveKms } from "../../../src/sftpgo/plugin.ts";

const encoder = new TextEncoder();
const toBase64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const fromBase64 = (text: string) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const toHex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

interface Key {
  id: string;
  key: CryptoKey;
}

async function aesKey(raw: Uint8Array<ArrayBuffer>): Promise<Key> {
  const id = `sha256:${toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", raw))).slice(0, 16)}`;
  return { id, key: await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]) };
}

async function envKey(): Promise<Key> {
  const text = Deno.env.get("TETHER_KMS_KEY");
  const raw = text ? fromBase64(text) : undefined;
  if (raw?.length !== 32) throw new Error("TETHER_KMS_KEY must hold 32 bytes, base64-encoded");
  return await aesKey(raw);
}

async function masterKey(secret: string): Promise<Key> {
  const material = await crypto.subtle.importKey("raw", encoder.encode(secret), "HKDF", false, [
    "deriveBits",
  ]);
  const info = encoder.encode("tether sftpgo kms example v1");
  const bits = await crypto.subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: new Uint8Array(), info },
    material,
    256,
  );
  return await aesKey(new Uint8Array(bits));
}

// Read once, at start. A missing or bad key fails each mode 1 call with a clear message rather than
// stopping the plugin: mode 2 does not need it.
const fromEnv = envKey();
fromEnv.catch(() => {});

await serveKms({
  encrypt: async ({ payload, additionalData, masterKey: master }) => {
    const mode = master === "" ? 1 : 2;
    const { id, key } = mode === 1 ? await fromEnv : await masterKey(master);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const sealed = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: encoder.encode(additionalData) },
      key,
      encoder.encode(payload),
    );
    return { payload: toBase64(new Uint8Array([...iv, ...new Uint8Array(sealed)])), key: id, mode };
  },
  decrypt: async ({ payload, key: keyId, additionalData, mode, masterKey: master }) => {
    if (mode !== 1 && mode !== 2) throw new Error(`unsupported mode ${mode}`);
    if (mode === 2 && master === "") throw new Error("mode 2 needs the master key");
    const { id, key } = mode === 1 ? await fromEnv : await masterKey(master);
    if (keyId !== id) throw new Error(`encrypted with key ${keyId}, but this plugin has ${id}`);
    const bytes = fromBase64(payload);
    try {
      const plain = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: bytes.subarray(0, 12), additionalData: encoder.encode(additionalData) },
        key,
        bytes.subarray(12),
      );
      return new TextDecoder().decode(plain);
    } catch {
      throw new Error("decryption failed: the payload or its additional data was altered");
    }
  },
});
