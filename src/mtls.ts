/**
 * AutoMTLS: the throw-away certificates host and plugin make for each launch
 * and pin on each other, as go-plugin does (ECDSA P-521, ecdsa-with-SHA512,
 * self-signed CA cert for `localhost`). The key and the signature come from
 * Web Crypto; the certificate structure is `@peculiar/asn1-x509`'s (RFC 5280
 * schema) encoded by `@peculiar/asn1-schema`, the layer under `@peculiar/x509`
 * without its algorithm registry (tsyringe, reflect-metadata) and the CMS,
 * PKCS#12, RSA and CSR schemas it loads: a plugin starts faster and smaller.
 * Those packages are CommonJS; they are imported as one pre-built ES module
 * (`src/gen/x509/asn1.js`, `deno task gen` from the locked versions), which
 * loads without Deno's CommonJS loader. Nothing is written to disk.
 *
 * @module
 */

import {
  AlgorithmIdentifier,
  AsnConvert,
  AttributeTypeAndValue,
  AttributeValue,
  BasicConstraints,
  Certificate,
  ECDSASigValue,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ecdsaWithSHA512,
  id_kp_clientAuth,
  id_kp_serverAuth,
  KeyUsage,
  KeyUsageFlags,
  Name,
  OctetString,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
} from "./gen/x509/asn1.js";
import { TetherError } from "./errors.ts";

/** A certificate and its private key, ready for `node:tls`/grpc-js. */
export interface CertificateBundle {
  /** The certificate, PEM (`-----BEGIN CERTIFICATE-----`, ends with a newline). */
  readonly certPem: string;
  /** The certificate, DER. */
  readonly certDer: Uint8Array;
  /** The private key, PKCS#8 PEM. Never log it. */
  readonly keyPem: string;
}

const signing = { name: "ECDSA", namedCurve: "P-521", hash: "SHA-512" } as const;
// ~30 years, like go-plugin (262980h).
const validityMs = 262_980 * 3600_000;

/**
 * Makes a fresh AutoMTLS certificate: ECDSA P-521 key, signed with SHA-512,
 * CN `localhost`, SAN DNS `localhost`, CA flag set (each side pins the
 * other's certificate as its only root), client and server auth.
 *
 * @example
 * ```ts
 * import { generateCertificate } from "./mtls.ts";
 * const { certPem } = await generateCertificate();
 * console.log(certPem.startsWith("-----BEGIN CERTIFICATE-----")); // true
 * ```
 */
export async function generateCertificate(): Promise<CertificateBundle> {
  try {
    const keys = await crypto.subtle.generateKey(signing, true, ["sign", "verify"]);
    const serial = crypto.getRandomValues(new Uint8Array(16));
    serial[0] &= 0x7f; // a positive serial below 2^128
    serial[0] |= 0x01; // and a first byte that is not zero: the INTEGER stays 16 bytes, minimal
    const now = Date.now();
    const name = new Name([
      rdn("2.5.4.3", "localhost"), // CN
      rdn("2.5.4.10", "HashiCorp"), // O
    ]);
    const algorithm = new AlgorithmIdentifier({ algorithm: id_ecdsaWithSHA512 });
    const tbs = new TBSCertificate({
      version: Version.v3,
      serialNumber: serial.buffer,
      signature: algorithm,
      issuer: name,
      validity: new Validity({ notBefore: new Date(now - 30_000), notAfter: new Date(now + validityMs) }),
      subject: name,
      subjectPublicKeyInfo: AsnConvert.parse(
        await crypto.subtle.exportKey("spki", keys.publicKey),
        SubjectPublicKeyInfo,
      ),
      extensions: new Extensions([
        extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: true })),
        extension(
          id_ce_keyUsage,
          true,
          new KeyUsage(
            KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment | KeyUsageFlags.keyAgreement |
              KeyUsageFlags.keyCertSign,
          ),
        ),
        extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_clientAuth, id_kp_serverAuth])),
        extension(
          id_ce_subjectAltName,
          false,
          new SubjectAlternativeName([new GeneralName({ dNSName: "localhost" })]),
        ),
      ]),
    });
    const raw = new Uint8Array(
      await crypto.subtle.sign(signing, keys.privateKey, AsnConvert.serialize(tbs)),
    );
    // Web Crypto signs as r || s (66 bytes each for P-521); X.509 wants the DER ECDSA-Sig-Value.
    const half = raw.length / 2;
    const signature = AsnConvert.serialize(
      new ECDSASigValue({ r: derInteger(raw.subarray(0, half)), s: derInteger(raw.subarray(half)) }),
    );
    const certDer = new Uint8Array(
      AsnConvert.serialize(
        new Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm, signatureValue: signature }),
      ),
    );
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
    return { certPem: toPem("CERTIFICATE", certDer), certDer, keyPem: toPem("PRIVATE KEY", pkcs8) };
  } catch (cause) {
    throw new TetherError("tls", `could not make an AutoMTLS certificate: ${errorMessage(cause)}`, { cause });
  }
}

function rdn(type: string, value: string): RelativeDistinguishedName {
  return new RelativeDistinguishedName([
    new AttributeTypeAndValue({ type, value: new AttributeValue({ printableString: value }) }),
  ]);
}

function extension(id: string, critical: boolean, value: unknown): Extension {
  return new Extension({
    extnID: id,
    critical,
    extnValue: new OctetString(AsnConvert.serialize(value)),
  });
}

/** An unsigned big-endian number as a minimal positive DER INTEGER body. */
function derInteger(bytes: Uint8Array): ArrayBuffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const trimmed = bytes.subarray(start);
  const out = new Uint8Array(trimmed.length + (trimmed[0] & 0x80 ? 1 : 0));
  out.set(trimmed, out.length - trimmed.length);
  return out.buffer;
}

let spare: Promise<CertificateBundle> | undefined;

/**
 * Starts making the next launch's certificate now, in the background, if none
 * is waiting. Certificate work (mostly JavaScript ASN.1 encoding, then a P-521
 * signature) then happens while the host is otherwise idle, not between
 * `start()` and the plugin's first answer.
 *
 * @example
 * ```ts
 * import { prepareCertificate } from "./mtls.ts";
 * prepareCertificate(); // e.g. when a PluginClient is made, well before start()
 * ```
 */
export function prepareCertificate(): void {
  if (spare) return;
  const next = generateCertificate();
  // A failure surfaces when the certificate is taken; an untaken one must not be an unhandled rejection.
  next.catch(() => {});
  spare = next;
}

/**
 * A fresh AutoMTLS certificate for one launch: the one made in the background
 * if there is one, else a new one; either way a next one is then started in
 * the background. Every certificate is handed out once, never reused, and
 * never leaves this process's memory.
 *
 * @example
 * ```ts
 * import { takeCertificate } from "./mtls.ts";
 * const first = await takeCertificate();
 * const second = await takeCertificate();
 * console.log(first.certPem !== second.certPem); // true
 * ```
 */
export async function takeCertificate(): Promise<CertificateBundle> {
  const mine = spare ?? generateCertificate();
  spare = undefined;
  const bundle = await mine;
  // Made while this launch waits for its plugin to start and print its handshake line.
  prepareCertificate();
  return bundle;
}

/**
 * Turns a certificate's DER bytes (from a handshake line) into PEM, checking
 * that they are a certificate.
 *
 * @example
 * ```ts
 * import { certificateDerToPem, generateCertificate } from "./mtls.ts";
 * const { certDer } = await generateCertificate();
 * console.log(certificateDerToPem(certDer).startsWith("-----BEGIN CERTIFICATE-----")); // true
 * ```
 */
export function certificateDerToPem(der: Uint8Array): string {
  try {
    AsnConvert.parse(new Uint8Array(der), Certificate);
    return toPem("CERTIFICATE", der);
  } catch (cause) {
    throw new TetherError("tls", `error parsing server cert: ${errorMessage(cause)}`, { cause });
  }
}

/**
 * Parses the first certificate of a PEM text (such as `PLUGIN_CLIENT_CERT`)
 * and returns its DER bytes.
 *
 * @example
 * ```ts
 * import { certificatePemToDer, generateCertificate } from "./mtls.ts";
 * const { certPem, certDer } = await generateCertificate();
 * console.log(certificatePemToDer(certPem).length === certDer.length); // true
 * ```
 */
export function certificatePemToDer(pem: string): Uint8Array {
  try {
    const match = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(pem);
    if (!match) throw new Error("no -----BEGIN CERTIFICATE----- block");
    const der = Uint8Array.from(atob(match[1].replace(/\s+/g, "")), (c) => c.charCodeAt(0));
    AsnConvert.parse(der, Certificate);
    return der;
  } catch (cause) {
    throw new TetherError("tls", `PLUGIN_CLIENT_CERT is not a PEM certificate: ${errorMessage(cause)}`, {
      cause,
    });
  }
}

/** Byte-wise equality, for pinning a peer's certificate. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function toPem(label: string, der: Uint8Array): string {
  let binary = "";
  for (const byte of der) binary += String.fromCharCode(byte);
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
