/**
 * grpc-js's client channel, for `setChannelImplementation("grpc-js")`: its
 * credentials and the `grpc.Client` that `openChannel` opens once it is
 * chosen. The only module on the client side that loads grpc-js; imported
 * dynamically by `src/channel.ts` when grpc-js is chosen (and by
 * `src/transport.ts`). Imports no protobuf runtime: `deno bundle` initialises
 * code shared between the lazily and the eagerly loaded parts of a bundle out
 * of order with protobuf-es's `"sideEffects": false`.
 *
 * @module
 */

import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { channelOptions, grpcTarget, peerCheck, setGrpcJsOpener } from "./channel.ts";
import type { TlsMaterial } from "./listen.ts";

/**
 * Credentials for a grpc-js client channel: TLS with a client certificate
 * (the plugin's certificate checked as the lean channel checks it), or
 * plaintext (h2c).
 *
 * @example
 * ```ts
 * import { channelCredentials } from "./grpcjs_channel.ts";
 * const credentials = channelCredentials(undefined); // plaintext
 * ```
 */
export function channelCredentials(tls: TlsMaterial | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    Buffer.from(tls.peerCaPem),
    Buffer.from(tls.keyPem),
    Buffer.from(tls.certPem),
    { checkServerIdentity: peerCheck(tls) },
  );
}

// The grpc-js channel of `setChannelImplementation("grpc-js")`, opened by `openChannel`.
setGrpcJsOpener((endpoint, tls, receive) =>
  new grpc.Client(grpcTarget(endpoint), channelCredentials(tls), channelOptions(tls, receive))
);
