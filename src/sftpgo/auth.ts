/**
 * SFTPGo `auth` plugins: the vocabulary both sides share, and the plugin
 * side ({@linkcode serveAuth} turns an {@linkcode Authenticator} into a
 * plugin). The host side, `AuthClient`, is in auth_client.ts, which plugins
 * never load.
 *
 * The contract (sdk `plugin/auth`): each check gets the credentials and the
 * user SFTPGo has (JSON: the stored user, or its zero user `{"id":0,"username":...}`
 * when it has none) and answers with
 * - an error: the login fails;
 * - no bytes: the user must already exist in SFTPGo, which checks the
 *   credentials itself;
 * - user JSON: SFTPGo creates or updates the user and lets it in.
 *
 * @module
 */

import { Auth } from "../gen/sftpgo/auth/auth_pb.ts";
import { GrpcStatus, TetherError } from "../errors.ts";
import type { CallOptions, HandlerContext, ServiceImplementation, ServiceRegistration } from "../service.ts";
import { registration } from "../service.ts";
import type { PluginServer } from "../server.ts";
import { serveOne } from "./serve_one.ts";
import {
  type ImplementationFactory,
  jsonBytes,
  type SftpgoServeOptions,
  type SftpgoUser,
  tryParseJsonObject,
} from "./types.ts";

// ---------------------------------------------------------------------------------------------------------------
// Shared vocabulary

/**
 * `auth_result` of a keyboard-interactive step: 0 asks for another step,
 * 1 lets the user in, anything else refuses it.
 *
 * @example
 * ```ts
 * import { KeyboardAuthResult } from "./auth.ts";
 * console.log(KeyboardAuthResult.Ok); // 1
 * ```
 */
export const KeyboardAuthResult = {
  /** Ask the next questions (another step follows). */
  Continue: 0,
  /** Authenticated. */
  Ok: 1,
  /** Refused (SFTPGo treats every value other than 0 and 1 the same). */
  Fail: -1,
} as const;

/**
 * `check_password` of a keyboard-interactive step: what the host must verify
 * itself in the (single) answer before sending `"OK"` in its place.
 *
 * @example
 * ```ts
 * import { KeyboardCheck } from "./auth.ts";
 * console.log(KeyboardCheck.Totp); // 2
 * ```
 */
export const KeyboardCheck = {
  /** Nothing: the answers go to the plugin as typed. */
  None: 0,
  /** The answer is the user's password; the host checks it. */
  Password: 1,
  /** The answer is a TOTP code; the host checks it against the user's TOTP secret. */
  Totp: 2,
} as const;

/**
 * What the host sends for a check besides the credential itself.
 *
 * @example
 * ```ts
 * import type { AuthCheckBase } from "./auth.ts";
 * const base: AuthCheckBase = { username: "alice", ip: "198.51.100.7", protocol: "SSH" };
 * ```
 */
export interface AuthCheckBase {
  /** The login name the client gave. */
  readonly username: string;
  /** The client's IP address. */
  readonly ip: string;
  /** `SSH`, `FTP`, `DAV` or `HTTP`. */
  readonly protocol: string;
  /**
   * The user SFTPGo already has under this name: an object is sent as JSON,
   * bytes and strings as they are. Default: SFTPGo's shape for a user it does
   * not have, `{"id":0,"username":"<username>"}` (see {@linkcode userJsonFor}).
   */
  readonly user?: SftpgoUser | Uint8Array | string;
}

/**
 * What a plugin's check answered.
 *
 * @example
 * ```ts
 * import type { AuthResult } from "./auth.ts";
 * function describe(result: AuthResult): string {
 *   return result.user ? `user ${result.user.username} from the plugin` : "must exist locally";
 * }
 * ```
 */
export interface AuthResult {
  /**
   * The user to create or update, parsed; `undefined` when the plugin
   * answered with no bytes: the user must already exist and the host checks
   * the credentials itself.
   */
  readonly user: SftpgoUser | undefined;
  /** The bytes the plugin sent (empty when {@linkcode AuthResult.user} is `undefined`). */
  readonly userJson: Uint8Array;
}

/**
 * One keyboard-interactive request: the host's side of a step.
 *
 * @example
 * ```ts
 * import type { KeyboardAuthStep } from "./auth.ts";
 * const first: KeyboardAuthStep = { requestId: "c1", username: "alice", ip: "198.51.100.7", step: 1 };
 * ```
 */
export interface KeyboardAuthStep {
  /** The same for every step of one login. */
  readonly requestId: string;
  /** The login name. */
  readonly username: string;
  /** The user's stored password (a hash in SFTPGo), or empty. */
  readonly password?: string;
  /** The client's IP; SFTPGo sends it in step 1 only. */
  readonly ip?: string;
  /** The client's answers to the previous step's questions. */
  readonly answers?: readonly string[];
  /** The previous step's questions. */
  readonly questions?: readonly string[];
  /** 1 for the first step, then 2, 3, ... */
  readonly step: number;
}

/**
 * A plugin's answer to a keyboard-interactive step.
 *
 * @example
 * ```ts
 * import { KeyboardAuthResult, KeyboardCheck, type KeyboardAuthReply } from "./auth.ts";
 * const ask: KeyboardAuthReply = {
 *   instructions: "",
 *   questions: ["Password: "],
 *   echos: [false],
 *   authResult: KeyboardAuthResult.Continue,
 *   checkPassword: KeyboardCheck.Password,
 * };
 * ```
 */
export interface KeyboardAuthReply {
  /** Text shown above the questions. */
  readonly instructions: string;
  /** The prompts for the next answers. */
  readonly questions: readonly string[];
  /** Per question, whether the client may echo what the user types. */
  readonly echos: readonly boolean[];
  /** See {@linkcode KeyboardAuthResult}. */
  readonly authResult: number;
  /** See {@linkcode KeyboardCheck}. */
  readonly checkPassword: number;
}

// ---------------------------------------------------------------------------------------------------------------
// What the host side speaks of (the host side itself is in auth_client.ts)

/**
 * The prompt of a keyboard-interactive step, as the SSH client would show it.
 *
 * @example
 * ```ts
 * import type { KeyboardChallenge } from "./auth.ts";
 * const answer = (c: KeyboardChallenge) => c.questions.map(() => "secret");
 * ```
 */
export interface KeyboardChallenge {
  /** Which step asks (1, 2, ...). */
  readonly step: number;
  /** Text shown above the questions. */
  readonly instructions: string;
  /** The prompts. */
  readonly questions: readonly string[];
  /** Per prompt, whether the typed text may be echoed. */
  readonly echos: readonly boolean[];
}

/**
 * How to run a whole keyboard-interactive login with
 * {@linkcode AuthClient.keyboardInteractive}.
 *
 * @example
 * ```ts
 * import type { KeyboardInteractiveOptions } from "./auth.ts";
 * const options: KeyboardInteractiveOptions = {
 *   username: "alice",
 *   ip: "198.51.100.7",
 *   challenge: ({ questions }) => questions.map(() => "wonderland"),
 *   checkPassword: (password) => password === "wonderland",
 * };
 * ```
 */
export interface KeyboardInteractiveOptions {
  /** The login name. */
  readonly username: string;
  /** The client's IP (sent in step 1 only, as SFTPGo does). */
  readonly ip: string;
  /** The user's stored password (SFTPGo sends its hash), if any. */
  readonly password?: string;
  /** The id of this login, the same in every step (default: a random one). */
  readonly requestId?: string;
  /** Asks the client; returns one answer per question. Throw to abort (e.g. the client went away). */
  readonly challenge: (challenge: KeyboardChallenge) => readonly string[] | Promise<readonly string[]>;
  /** For `check_password` 1: whether the answer is the user's password. Without it such a step fails. */
  readonly checkPassword?: (password: string) => boolean | Promise<boolean>;
  /** For `check_password` 2: whether the answer is a valid TOTP code. Without it such a step fails. */
  readonly checkTotp?: (code: string) => boolean | Promise<boolean>;
  /** Gives up after this many steps (default 64; SFTPGo has no limit, a looping plugin would hang the login). */
  readonly maxSteps?: number;
  /** Per-RPC options (each step is one call with its own deadline). */
  readonly callOptions?: CallOptions;
}

/**
 * How a keyboard-interactive login ended. A failed RPC rejects instead (for
 * SFTPGo, also a failed login).
 *
 * @example
 * ```ts
 * import type { KeyboardInteractiveOutcome } from "./auth.ts";
 * const show = (o: KeyboardInteractiveOutcome) => o.authenticated ? "in" : `refused: ${o.reason}`;
 * ```
 */
export type KeyboardInteractiveOutcome =
  | {
    /** The plugin answered `auth_result` 1. */
    readonly authenticated: true;
    /** Steps (RPCs) it took. */
    readonly steps: number;
  }
  | {
    /** The login failed. */
    readonly authenticated: false;
    /** Steps (RPCs) made. */
    readonly steps: number;
    /** The plugin's non-zero, non-1 `auth_result`, when that is why. */
    readonly authResult?: number;
    /** Why, in words. */
    readonly reason: string;
  };

// ---------------------------------------------------------------------------------------------------------------
// Plugin side

/**
 * What every check hands to an {@linkcode Authenticator}.
 *
 * @example
 * ```ts
 * import type { AuthRequest } from "./auth.ts";
 * const isKnown = (request: AuthRequest) => request.user !== undefined;
 * ```
 */
export interface AuthRequest {
  /** The login name the client gave. */
  readonly username: string;
  /** The client's IP address. */
  readonly ip: string;
  /** `SSH`, `FTP`, `DAV` or `HTTP`. */
  readonly protocol: string;
  /** The user SFTPGo already has under this name; `undefined` when it has none (or sent something that is not a JSON object). */
  readonly user: SftpgoUser | undefined;
  /** The user JSON bytes as the host sent them. */
  readonly userJson: Uint8Array;
}

/**
 * What an {@linkcode Authenticator} check answers: the user to create or
 * update (an object, or JSON as bytes or text), or `undefined` / `null`
 * ("the user must already exist; check the credentials locally"). Throw to
 * refuse the login: the host gets the error's message.
 *
 * @example
 * ```ts
 * import type { AuthAnswer } from "./auth.ts";
 * const answer: AuthAnswer = { username: "alice", status: 1, home_dir: "/srv/alice", permissions: { "/": ["*"] } };
 * ```
 */
export type AuthAnswer = SftpgoUser | Uint8Array | string | undefined | null;

/**
 * A plugin's reply to a step; omitted fields are empty / 0.
 *
 * @example
 * ```ts
 * import { KeyboardAuthResult, type KeyboardAuthAnswer } from "./auth.ts";
 * const done: KeyboardAuthAnswer = { authResult: KeyboardAuthResult.Ok };
 * ```
 */
export type KeyboardAuthAnswer = Partial<KeyboardAuthReply>;

/**
 * An `auth` plugin. Each method may be left out: a missing check refuses
 * every login of that kind (the host gets UNIMPLEMENTED), so a password-only
 * plugin implements just {@linkcode Authenticator.checkUserAndPass}.
 *
 * @example
 * ```ts
 * import type { Authenticator } from "./auth.ts";
 * const auth: Authenticator = {
 *   checkUserAndPass: ({ username, password }) => {
 *     if (username === "alice" && password === "wonderland") {
 *       return { username, status: 1, home_dir: "/srv/alice", permissions: { "/": ["*"] } };
 *     }
 *     throw new Error("invalid credentials");
 *   },
 * };
 * ```
 */
export interface Authenticator {
  /** Password login. */
  checkUserAndPass?(
    request: AuthRequest & { readonly password: string },
    context: HandlerContext,
  ): AuthAnswer | Promise<AuthAnswer>;
  /** TLS client certificate login; `tlsCert` is PEM. */
  checkUserAndTLSCert?(
    request: AuthRequest & { readonly tlsCert: string },
    context: HandlerContext,
  ): AuthAnswer | Promise<AuthAnswer>;
  /** Public key login; `pubKey` in authorized_keys format. */
  checkUserAndPublicKey?(
    request: AuthRequest & { readonly pubKey: string },
    context: HandlerContext,
  ): AuthAnswer | Promise<AuthAnswer>;
  /** Whether to take this user through keyboard-interactive steps (answer as for the other checks). */
  checkUserAndKeyboardInteractive?(
    request: AuthRequest,
    context: HandlerContext,
  ): AuthAnswer | Promise<AuthAnswer>;
  /** One keyboard-interactive step. */
  sendKeyboardAuthRequest?(
    request: Required<KeyboardAuthStep>,
    context: HandlerContext,
  ): KeyboardAuthAnswer | Promise<KeyboardAuthAnswer>;
}

function authRequest(
  request: { username: string; ip: string; protocol: string; user: Uint8Array },
): AuthRequest {
  return {
    username: request.username,
    ip: request.ip,
    protocol: request.protocol,
    user: tryParseJsonObject<SftpgoUser>(request.user),
    userJson: request.user,
  };
}

function unimplemented(method: string): TetherError {
  return new TetherError("rpc", `${method} is not implemented by this auth plugin`, {
    status: GrpcStatus.UNIMPLEMENTED,
  });
}

/**
 * The gRPC registration of an {@linkcode Authenticator}, for
 * {@linkcode serve} when {@linkcode serveAuth} is not flexible enough.
 *
 * @example
 * ```ts
 * import { authService } from "./auth.ts";
 * const registration = authService({ checkUserAndPass: () => undefined });
 * console.log(registration.service.typeName); // "proto.Auth"
 * ```
 */
export function authService(impl: Authenticator): ServiceRegistration<typeof Auth> {
  const implementation: ServiceImplementation<typeof Auth> = {
    checkUserAndPass: async (request, context) => {
      if (!impl.checkUserAndPass) throw unimplemented("CheckUserAndPass");
      return {
        user: jsonBytes(
          await impl.checkUserAndPass({ ...authRequest(request), password: request.password }, context),
        ),
      };
    },
    checkUserAndTLSCert: async (request, context) => {
      if (!impl.checkUserAndTLSCert) throw unimplemented("CheckUserAndTLSCert");
      return {
        user: jsonBytes(
          await impl.checkUserAndTLSCert({ ...authRequest(request), tlsCert: request.tlsCert }, context),
        ),
      };
    },
    checkUserAndPublicKey: async (request, context) => {
      if (!impl.checkUserAndPublicKey) throw unimplemented("CheckUserAndPublicKey");
      return {
        user: jsonBytes(
          await impl.checkUserAndPublicKey({ ...authRequest(request), pubKey: request.pubKey }, context),
        ),
      };
    },
    checkUserAndKeyboardInteractive: async (request, context) => {
      if (!impl.checkUserAndKeyboardInteractive) throw unimplemented("CheckUserAndKeyboardInteractive");
      return { user: jsonBytes(await impl.checkUserAndKeyboardInteractive(authRequest(request), context)) };
    },
    sendKeyboardAuthRequest: async (request, context) => {
      if (!impl.sendKeyboardAuthRequest) throw unimplemented("SendKeyboardAuthRequest");
      const reply = await impl.sendKeyboardAuthRequest({
        requestId: request.requestID,
        username: request.username,
        password: request.password,
        ip: request.ip,
        answers: request.answers,
        questions: request.questions,
        step: request.step,
      }, context);
      return {
        instructions: reply.instructions ?? "",
        questions: [...(reply.questions ?? [])],
        echos: [...(reply.echos ?? [])],
        authResult: reply.authResult ?? KeyboardAuthResult.Continue,
        checkPassword: reply.checkPassword ?? KeyboardCheck.None,
      };
    },
  };
  return registration(Auth, implementation);
}

/**
 * Serves an `auth` plugin with SFTPGo's auth handshake. Resolves once the
 * plugin is listening; the process then runs until the host stops it.
 *
 * @example
 * ```ts ignore
 * import { serveAuth } from "@tether/tether/sftpgo/plugin";
 *
 * await serveAuth({
 *   checkUserAndPass: ({ username, password }) => {
 *     if (username === "alice" && password === "wonderland") {
 *       return { username, status: 1, home_dir: "/srv/alice", permissions: { "/": ["*"] } };
 *     }
 *     throw new Error("invalid credentials");
 *   },
 * });
 * ```
 */
export function serveAuth(
  impl: ImplementationFactory<Authenticator>,
  options: SftpgoServeOptions = {},
): Promise<PluginServer> {
  return serveOne("auth", authService, impl, options);
}
