/**
 * The KV example's handshake, shared by its host and plugin (and matching
 * the Go interop fixtures in tests/interop/go).
 *
 * @module
 */

import type { HandshakeConfig } from "../../mod.ts";

/** Cookie and version of the KV example plugin. */
export const kvHandshake: HandshakeConfig = {
  protocolVersion: 1,
  magicCookieKey: "TETHER_KV_PLUGIN",
  magicCookieValue: "kv-7d3f2a",
};
