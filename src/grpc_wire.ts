/**
 * gRPC's framing over HTTP/2, shared by the lean channel (`src/h2channel.ts`)
 * and the lean server (`src/h2server.ts`): method paths, the 5-byte message
 * prefix and go-plugin's size limit, the `grpc-timeout` header, the
 * percent-encoding of `grpc-message` and the content types that mean gRPC.
 * No gRPC library and no protobuf runtime under it (types only), so the
 * client side can be loaded lazily without pulling the protobuf runtime into
 * a lazily initialised part of a bundle.
 *
 * @module
 */

import type { DescMethod } from "@bufbuild/protobuf";
import { Buffer } from "node:buffer";
import { GrpcStatus } from "./errors.ts";
import { tooLargeStatus } from "./receive_limits.ts";

/** go-plugin sets both message size limits to MaxInt32 (the host receives less by default: `src/receive_limits.ts`). */
export const MAX_MESSAGE_BYTES = 2 ** 31 - 1;

/**
 * The full gRPC path of a method, e.g. `/plugin.GRPCController/Shutdown`.
 *
 * @example
 * ```ts
 * import { methodPath } from "./grpc_wire.ts";
 * import { GRPCController } from "./gen/plugin/grpc_controller_pb.ts";
 * console.log(methodPath(GRPCController.method.shutdown)); // "/plugin.GRPCController/Shutdown"
 * ```
 */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** A status to end a call with: code and message. */
export type WireStatus = [code: number, details: string];

/**
 * What a {@linkcode MessageDecoder} tells about the memory it takes: the
 * receive budget of `src/receive_limits.ts`, for the host's channel.
 */
export interface DecoderAccounting {
  /** Named in the over-limit status (e.g. `plugin "kv"`), with the option to raise. */
  readonly peer?: string;
  /**
   * Asked before the decoder holds `bytes` more: a status refuses them (the
   * decoder stops there). Taken bytes stay taken: the caller gives them back
   * as it hands each message on (its length) and when the call ends.
   */
  take(bytes: number): WireStatus | undefined;
}

/**
 * A message is copied into one buffer of its exact length once 1/8 of it, or
 * 16 MiB, has arrived: memory then stays about 1x the payload (plus at most
 * 16 MiB of pieces waiting for the garbage collector), where collecting every
 * chunk and concatenating at the end held 2x; and the announced length alone
 * never allocates anything. From then the whole length counts against the
 * receive budget (the pages of a large buffer only take memory as written).
 */
function wholeAfter(length: number): number {
  return Math.min(length / 8, 16 * 2 ** 20);
}

/**
 * Splits HTTP/2 DATA into gRPC messages (1 flag byte, 4 length bytes, the message).
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { frame, MessageDecoder } from "./grpc_wire.ts";
 * const out: Buffer[] = [];
 * new MessageDecoder(1024).push(frame(Buffer.from("hi")), out);
 * console.log(out[0].toString()); // "hi"
 * ```
 */
export class MessageDecoder {
  readonly #max: number;
  readonly #accounting: DecoderAccounting | undefined;
  /** A prefix split across chunks, made only when one is: most calls never need it. */
  #header: Buffer | undefined;
  #headerFill = 0;
  /** Bytes of the current message still to come; -1 while reading a prefix. */
  #need = -1;
  #length = 0;
  /** The current message's first pieces (views of chunks), until enough of it came for its own buffer. */
  #parts: Buffer[] = [];
  #partsBytes = 0;
  /** The current message's own buffer, once made; `#filled` bytes of it are written. */
  #whole: Buffer | undefined;
  #filled = 0;
  #taken = 0;

  /**
   * @param maxMessageBytes the largest message accepted; a larger announced length is refused.
   * @param accounting where the memory held is counted (the host's receive budget); none by default.
   */
  constructor(maxMessageBytes: number, accounting?: DecoderAccounting) {
    this.#max = maxMessageBytes;
    this.#accounting = accounting;
  }

  /**
   * Bytes this decoder has taken from its accounting so far (all messages): its caller gives back each
   * message's length as it hands it on, and the rest when the call ends.
   */
  get takenBytes(): number {
    return this.#taken;
  }

  /** True between messages: no prefix or message begun and not finished. */
  get idle(): boolean {
    return this.#need < 0 && this.#headerFill === 0;
  }

  /**
   * Feeds a chunk; the messages it completes go to `out`, each in its own
   * memory (never a view of a chunk). Memory follows the bytes that arrived,
   * not the length a peer announces. Returns the status to end the call with
   * for a compressed message, one over the limit or bytes the accounting
   * refused.
   */
  push(chunk: Buffer, out: Buffer[]): WireStatus | undefined {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#need < 0) {
        let flag: number;
        if (this.#headerFill === 0 && chunk.length - offset >= 5) {
          flag = chunk[offset];
          this.#length = chunk.readUInt32BE(offset + 1);
          offset += 5;
        } else {
          const header = this.#header ??= Buffer.alloc(5);
          const take = Math.min(5 - this.#headerFill, chunk.length - offset);
          chunk.copy(header, this.#headerFill, offset, offset + take);
          this.#headerFill += take;
          offset += take;
          if (this.#headerFill < 5) break;
          this.#headerFill = 0;
          flag = header[0];
          this.#length = header.readUInt32BE(1);
        }
        if (flag !== 0) return [GrpcStatus.INTERNAL, "compressed message received, none was negotiated"];
        if (this.#length > this.#max) return tooLargeStatus(this.#length, this.#max, this.#accounting?.peer);
        this.#need = this.#length;
      }
      const take = Math.min(this.#need, chunk.length - offset);
      const refused = take > 0 || this.#length === 0
        ? this.#add(chunk.subarray(offset, offset + take))
        : undefined;
      if (refused) return refused;
      offset += take;
      this.#need -= take;
      if (this.#need === 0) {
        out.push(this.#whole!);
        this.#whole = undefined;
        this.#filled = 0;
        this.#need = -1;
      }
    }
    return undefined;
  }

  /** Holds one piece of the current message: in its own buffer once there is one, else as a view. */
  #add(piece: Buffer): WireStatus | undefined {
    if (this.#whole) {
      this.#whole.set(piece, this.#filled);
      this.#filled += piece.length;
      return undefined;
    }
    const accounting = this.#accounting;
    if (this.#partsBytes === 0 && piece.length === this.#length) {
      // The whole message in one chunk (most calls): straight into its own buffer.
      const refused = accounting?.take(piece.length);
      if (refused) return refused;
      this.#taken += piece.length;
      this.#whole = Buffer.allocUnsafe(piece.length);
      this.#whole.set(piece);
      this.#filled = piece.length;
      return undefined;
    }
    const refused = accounting?.take(piece.length);
    if (refused) return refused;
    this.#taken += piece.length;
    this.#parts.push(piece);
    this.#partsBytes += piece.length;
    if (this.#partsBytes < wholeAfter(this.#length)) return undefined;
    // Enough of it came to be worth its own buffer (all of it, for a message within one chunk).
    // Counted at its full length from here on: the pieces copied into it are let go.
    const rest = this.#length - this.#partsBytes;
    const whole = accounting?.take(rest);
    if (whole) return whole;
    this.#taken += rest;
    this.#whole = Buffer.allocUnsafe(this.#length);
    for (const part of this.#parts) {
      this.#whole.set(part, this.#filled);
      this.#filled += part.length;
    }
    this.#parts = [];
    this.#partsBytes = 0;
    return undefined;
  }
}

/**
 * One message with its 5-byte prefix (uncompressed), in one buffer.
 *
 * @example
 * ```ts
 * import { Buffer } from "node:buffer";
 * import { frame } from "./grpc_wire.ts";
 * console.log(frame(Buffer.from("hi")).length); // 7
 * ```
 */
export function frame(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(message.length + 5);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  return framed;
}

/**
 * `grpc-timeout` as grpc-js writes it: at most 8 digits, the finest unit that fits.
 *
 * @example
 * ```ts
 * import { formatTimeout } from "./grpc_wire.ts";
 * console.log(formatTimeout(1500)); // "1500m"
 * ```
 */
export function formatTimeout(ms: number): string {
  const units: [string, number][] = [["m", 1], ["S", 1000], ["M", 60_000], ["H", 3_600_000]];
  for (const [unit, factor] of units) {
    const amount = Math.ceil(ms / factor);
    if (amount < 1e8) return `${amount}${unit}`;
  }
  return "99999999H";
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * Milliseconds of a `grpc-timeout` value (1 to 8 digits and a unit of
 * H, M, S, m, u, n), or `undefined` when it is not one.
 *
 * @example
 * ```ts
 * import { parseTimeout } from "./grpc_wire.ts";
 * console.log(parseTimeout("2S"), parseTimeout("soon")); // 2000 undefined
 * ```
 */
export function parseTimeout(value: string): number | undefined {
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  return match ? Number(match[1]) * TIMEOUT_UNITS[match[2]] : undefined;
}

/**
 * `grpc-message` as the gRPC spec percent-encodes it: bytes outside printable
 * ASCII, and `%`, as `%XX` of their UTF-8. A space at either end is encoded
 * too (any decoder accepts `%20`): Deno's HTTP/2 layer drops a header value
 * that begins or ends with one.
 *
 * @example
 * ```ts
 * import { encodeStatusMessage } from "./grpc_wire.ts";
 * console.log(encodeStatusMessage("100% sûr ")); // "100%25 s%C3%BBr%20"
 * ```
 */
export function encodeStatusMessage(details: string): string {
  if (/^(?! )[\x20-\x24\x26-\x7e]*$/.test(details) && !details.endsWith(" ")) return details;
  const bytes = new TextEncoder().encode(details);
  let out = "";
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i];
    const edgeSpace = byte === 0x20 && (i === 0 || i === bytes.length - 1);
    out += byte < 0x20 || byte > 0x7e || byte === 0x25 || edgeSpace
      ? `%${byte.toString(16).toUpperCase().padStart(2, "0")}`
      : String.fromCharCode(byte);
  }
  return out;
}

/**
 * A received `grpc-message`, percent-decoded (left as it came when it is not valid percent-encoding).
 *
 * @example
 * ```ts
 * import { decodeStatusMessage } from "./grpc_wire.ts";
 * console.log(decodeStatusMessage("s%C3%BBr")); // "sûr"
 * ```
 */
export function decodeStatusMessage(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * Whether a `content-type` is gRPC's: `application/grpc`, or it followed by `+codec` or `;parameters`.
 *
 * @example
 * ```ts
 * import { isGrpcContentType } from "./grpc_wire.ts";
 * console.log(isGrpcContentType("application/grpc+proto"), isGrpcContentType("application/json")); // true false
 * ```
 */
export function isGrpcContentType(value: unknown): boolean {
  return typeof value === "string" && /^application\/grpc(?:$|[+;])/i.test(value);
}
