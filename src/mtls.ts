/**
 * AutoMTLS: the throw-away certificates host and plugin make for each launch
 * and pin on each other, as go-plugin does (ECDSA P-521, ecdsa-with-SHA512,
 * self-signed CA cert for `localhost`). Made with `@peculiar/x509` on Web
 * Crypto; nothing is written to disk.
 *
 * @module
 */

// @peculiar/x509 resolves its algorithm registry through tsyringe, which needs
// the Reflect metadata API loaded first.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { TetherError } from "./errors.ts";

x509.cryptoProvider.set(crypto);

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
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: toHex(serial),
      name: "CN=localhost, O=HashiCorp",
      notBefore: new Date(now - 30_000),
      notAfter: new Date(now + validityMs),
      signingAlgorithm: signing,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment |
            x509.KeyUsageFlags.keyAgreement | x509.KeyUsageFlags.keyCertSign,
          true,
        ),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.clientAuth,
          x509.ExtendedKeyUsage.serverAuth,
        ]),
        new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "localhost" }]),
      ],
    });
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
    return {
      certPem: `${cert.toString("pem")}\n`,
      certDer: new Uint8Array(cert.rawData),
      keyPem: toPem("PRIVATE KEY", pkcs8),
    };
  } catch (cause) {
    throw new TetherError("tls", `could not make an AutoMTLS certificate: ${errorMessage(cause)}`, { cause });
  }
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
    return `${new x509.X509Certificate(new Uint8Array(der)).toString("pem")}\n`;
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
    return new Uint8Array(new x509.X509Certificate(pem).rawData);
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

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
