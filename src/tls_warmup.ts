/**
 * A head start for the runtime's one-time TLS set-up, for plugins (serve())
 * and hosts (PluginClient) alike.
 *
 * @module
 */

let tlsWarmed = false;

/**
 * Starts the runtime's one-time TLS crypto set-up on a background thread, so
 * that the first TLS connection does not pay for it on the main thread.
 * Deno (2.9) does that set-up (about 40-60 ms of CPU) inside the first
 * TLS wrap of a process, synchronously, while the caller's first
 * connection waits; a Web Crypto P-256 key generation triggers the same
 * set-up, and Web Crypto runs it off the main thread. The key made is thrown
 * away (non-extractable, never used): nothing of it reaches TLS. Call it as
 * soon as a process knows it will serve TLS; later calls do nothing.
 *
 * @example
 * ```ts
 * import { warmTlsRuntime } from "./tls_warmup.ts";
 * warmTlsRuntime(); // e.g. when AutoMTLS is asked for, before the certificate is made
 * ```
 */
export function warmTlsRuntime(): void {
  if (tlsWarmed) return;
  tlsWarmed = true;
  // A failure here only means no head start: the first TLS wrap then does the set-up itself.
  crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]).catch(() => {});
}
