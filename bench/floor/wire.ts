/**
 * What the floor host and the floor plugin share: fixed protobuf bytes for the
 * KV calls, the gRPC message prefix, the go-plugin handshake line and the
 * certificate files the bench makes before a run. No Tether import and no
 * protobuf runtime: a floor is the same workload with only Deno's runtime
 * layer (`node:http2`, `node:tls`) left, so everything here is done once, at
 * start, or by hand in a few lines.
 *
 * @module
 */

/** The KV plugin's handshake (examples/kv/handshake.ts, tests/interop/go/internal/kvplug). */
export const KV_COOKIE = { key: "TETHER_KV_PLUGIN", value: "kv-7d3f2a", version: 1 } as const;

/** HTTP/2 windows as Tether's channel and server set them (src/h2channel.ts, src/h2server.ts). */
export const STREAM_WINDOW = 8 << 20;
/** The connection window, as Tether's. */
export const SESSION_WINDOW = 32 << 20;

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A length-delimited protobuf field (wire type 2). */
function field(number: number, bytes: Uint8Array): number[] {
  return [(number << 3) | 2, ...varint(bytes.length), ...bytes];
}

/** The gRPC message: the 5-byte prefix (uncompressed, big-endian length) and the message. */
export function grpcFrame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

/** `GetRequest{key}` framed. */
export function getRequest(key: string): Uint8Array {
  return grpcFrame(new Uint8Array(field(1, new TextEncoder().encode(key))));
}

/** `PutRequest{key, value}` framed (built without spreading a large value onto the stack). */
export function putRequest(key: string, value: Uint8Array): Uint8Array {
  const head = [...field(1, new TextEncoder().encode(key)), (2 << 3) | 2, ...varint(value.length)];
  const message = new Uint8Array(head.length + value.length);
  message.set(head);
  message.set(value, head.length);
  return grpcFrame(message);
}

/** `GetResponse{value, found: true}` framed: the floor plugin's one answer to every Get. */
export function getResponse(value: Uint8Array): Uint8Array {
  return grpcFrame(new Uint8Array([...field(1, value), (2 << 3) | 0, 1]));
}

/** The bench's 64-byte value (as bench/tether_host.ts and the Go reference). */
export const VALUE64: Uint8Array = new Uint8Array(64).map((_, i) => 97 + (i % 26));

/** Standard base64 without padding (Go's RawStdEncoding), as go-plugin prints the certificate. */
export function rawBase64(der: Uint8Array): string {
  return btoa(String.fromCharCode(...der)).replace(/=+$/, "");
}

/** PEM of a certificate given as (padded or raw) base64 DER. */
export function pemFromBase64(b64: string): string {
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  return `-----BEGIN CERTIFICATE-----\n${padded.match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`;
}

/** DER of a PEM certificate. */
export function derFromPem(pem: string): Uint8Array {
  const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/** The parts of a go-plugin handshake line a host needs. */
export interface HandshakeLine {
  network: string;
  address: string;
  protocol: string;
  /** The plugin's certificate, PEM; absent without AutoMTLS. */
  certPem?: string;
}

/** Parses `CORE|APP|NET|ADDR|PROTO|CERT`, failing with the line when it is not one. */
export function parseHandshakeLine(line: string): HandshakeLine {
  const parts = line.trim().split("|");
  if (parts.length < 5 || parts[0] !== "1") {
    throw new Error(`floor host: not a go-plugin handshake line: ${JSON.stringify(line)}`);
  }
  const cert = parts[5] ?? "";
  return {
    network: parts[2],
    address: parts[3],
    protocol: parts[4],
    ...(cert.length > 50 ? { certPem: pemFromBase64(cert) } : {}),
  };
}

/** The certificate files of one side, made before the run (`bench/floor/certs.ts`). */
export interface CertFiles {
  certPem: string;
  keyPem: string;
}

/** Reads `<dir>/<side>.crt` and `<dir>/<side>.key`. */
export function readCerts(dir: string, side: "host" | "plugin"): CertFiles {
  return {
    certPem: Deno.readTextFileSync(`${dir}/${side}.crt`),
    keyPem: Deno.readTextFileSync(`${dir}/${side}.key`),
  };
}

/** VmRSS, RssAnon and RssFile of a process, KiB (as bench/memory.ts reads them). */
export function rss(pid: number | "self"): { rss_kib: number; anon_kib: number; file_kib: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rss_kib: kib("VmRSS"), anon_kib: kib("RssAnon"), file_kib: kib("RssFile") };
}
