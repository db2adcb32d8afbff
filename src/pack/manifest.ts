/**
 * What a packed plugin carries besides its code: the permissions it was packed
 * with and how to run it. Written by `tether pack` (pack.ts), read by the
 * packed file's launcher (launcher.ts). Both the manifest and the code are
 * inside the packed file, so its SHA-256 covers them.
 *
 * @module
 */

import type { Isolation, ResourceLimits } from "../isolation.ts";
import type { DenoPermissions } from "../permissions.ts";

/** Format version of {@linkcode PackManifest}. */
export const PACK_FORMAT = 1;

/** The name of the global the packed program sets before the launcher runs. */
export const PACK_GLOBAL = "__TETHER_PACK__";

/**
 * How a packed plugin runs.
 *
 * @example
 * ```ts
 * import type { PackManifest } from "./manifest.ts";
 * const manifest: PackManifest = {
 *   format: 1, name: "auth", cookieKey: "SFTPGO_PLUGIN_AUTH", permissions: { read: ["/etc/auth.json"] },
 *   isolation: "auto", pluginSha256: "0".repeat(64),
 * };
 * ```
 */
export interface PackManifest {
  /** {@linkcode PACK_FORMAT}. */
  readonly format: number;
  /** The plugin's name (in logs and errors). */
  readonly name: string;
  /** The magic cookie variable of the plugin's handshake (granted to the plugin with the other protocol variables). */
  readonly cookieKey: string;
  /** Deny-by-default grants. */
  readonly permissions: DenoPermissions;
  /** Explicit denials. */
  readonly denyPermissions?: DenoPermissions;
  /** Opt-in for `run`, `ffi`, `all` grants. */
  readonly allowBroadPermissions?: boolean;
  /** OS layer (bubblewrap namespaces). */
  readonly isolation: Isolation;
  /** Memory limits. */
  readonly limits?: ResourceLimits;
  /** SHA-256 of the bundled plugin code (checked again by the launch, which runs the checked copy). */
  readonly pluginSha256: string;
}

/** What the packed program hands the launcher: the manifest and the bundled plugin code. */
export interface PackPayload {
  /** The manifest. */
  readonly manifest: PackManifest;
  /** The plugin's code: one bundled JavaScript file. */
  readonly plugin: string;
}
