/**
 * SFTPGo `auth` plugins, host side: {@linkcode AuthClient} calls a plugin the way SFTPGo does (including the
 * keyboard-interactive loop). The plugin side and the vocabulary both share are in auth.ts.
 *
 * @module
 */

import { Auth, type AuthResponse, type KeyboardAuthResponse } from "../gen/sftpgo/auth/auth_pb.ts";
import type { CallOptions } from "../rpc.ts";
import {
  type AuthCheckBase,
  type AuthResult,
  type KeyboardAuthReply,
  KeyboardAuthResult,
  type KeyboardAuthStep,
  KeyboardCheck,
  type KeyboardInteractiveOptions,
  type KeyboardInteractiveOutcome,
} from "./auth.ts";
import {
  badAnswer,
  jsonBytes,
  parseJsonObject,
  type PluginDispenser,
  type SftpgoClientDefaults,
  type SftpgoUser,
} from "./types.ts";
import { PluginCalls } from "./client_calls.ts";

/**
 * The user JSON an auth call sends: the caller's, else what SFTPGo sends for
 * a user it does not have (its zero user, `{"id":0,"username":"<name>"}`:
 * SFTPGo marshals the whole zero-valued struct, which a Go plugin decodes to
 * the same value). Never empty bytes, which real plugins refuse
 * (`unexpected end of JSON input`).
 *
 * @example
 * ```ts
 * import { userJsonFor } from "./auth_client.ts";
 * console.log(new TextDecoder().decode(userJsonFor({ username: "alice" }))); // {"id":0,"username":"alice"}
 * ```
 */
export function userJsonFor(
  request: { readonly username: string; readonly user?: AuthCheckBase["user"] },
): Uint8Array {
  return jsonBytes(request.user ?? { id: 0, username: request.username });
}

function decodeUser(response: AuthResponse): AuthResult {
  const userJson = response.user;
  let user: SftpgoUser | undefined;
  try {
    user = parseJsonObject<SftpgoUser>(userJson);
  } catch (error) {
    // SFTPGo cannot unmarshal it either, and refuses the login.
    throw badAnswer("with user JSON that is not a JSON object", error, userJson);
  }
  return { user, userJson };
}

function toReply(response: KeyboardAuthResponse): KeyboardAuthReply {
  return {
    instructions: response.instructions,
    questions: response.questions,
    echos: response.echos,
    authResult: response.authResult,
    checkPassword: response.checkPassword,
  };
}

/**
 * The host side of an `auth` plugin, with SFTPGo's semantics. Every method
 * rejects with a {@linkcode TetherError} when the call fails, which for
 * SFTPGo means the login fails.
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "@tether/tether";
 * import { AuthClient, sftpgoHandshakes } from "@tether/tether/sftpgo";
 *
 * await using plugin = new PluginClient({ cmd: "./auth-plugin", handshake: sftpgoHandshakes.auth });
 * await plugin.start();
 * const auth = new AuthClient(plugin);
 * try {
 *   const { user } = await auth.checkUserAndPass({ username: "alice", password: "wonderland", ip: "198.51.100.7", protocol: "SSH" });
 *   console.log(user ? `welcome ${user.username}` : "check the password locally");
 * } catch {
 *   console.log("login refused");
 * }
 * ```
 */
export class AuthClient {
  readonly #calls: PluginCalls<typeof Auth>;

  /** Wraps a started plugin client; `defaults.timeoutMs` is the deadline of each call (default 20 s, as the sdk). */
  constructor(plugin: PluginDispenser, defaults: SftpgoClientDefaults = {}) {
    this.#calls = new PluginCalls(plugin, Auth, defaults);
  }

  /** Password login (`CheckUserAndPass`). */
  async checkUserAndPass(
    request: AuthCheckBase & { readonly password: string },
    options?: CallOptions,
  ): Promise<AuthResult> {
    const response = await this.#calls.stub.checkUserAndPass({
      username: request.username,
      password: request.password,
      ip: request.ip,
      protocol: request.protocol,
      user: userJsonFor(request),
    }, this.#calls.options(options));
    return decodeUser(response);
  }

  /** TLS client certificate login (`CheckUserAndTLSCert`); `tlsCert` is PEM. */
  async checkUserAndTLSCert(
    request: AuthCheckBase & { readonly tlsCert: string },
    options?: CallOptions,
  ): Promise<AuthResult> {
    const response = await this.#calls.stub.checkUserAndTLSCert({
      username: request.username,
      tlsCert: request.tlsCert,
      ip: request.ip,
      protocol: request.protocol,
      user: userJsonFor(request),
    }, this.#calls.options(options));
    return decodeUser(response);
  }

  /** Public key login (`CheckUserAndPublicKey`); `pubKey` in authorized_keys format. */
  async checkUserAndPublicKey(
    request: AuthCheckBase & { readonly pubKey: string },
    options?: CallOptions,
  ): Promise<AuthResult> {
    const response = await this.#calls.stub.checkUserAndPublicKey({
      username: request.username,
      pubKey: request.pubKey,
      ip: request.ip,
      protocol: request.protocol,
      user: userJsonFor(request),
    }, this.#calls.options(options));
    return decodeUser(response);
  }

  /**
   * Whether the plugin takes this user through keyboard-interactive login
   * (`CheckUserAndKeyboardInteractive`): SFTPGo calls it first, then runs
   * the steps ({@linkcode AuthClient.keyboardInteractive}).
   */
  async checkUserAndKeyboardInteractive(request: AuthCheckBase, options?: CallOptions): Promise<AuthResult> {
    const response = await this.#calls.stub.checkUserAndKeyboardInteractive({
      username: request.username,
      ip: request.ip,
      protocol: request.protocol,
      user: userJsonFor(request),
    }, this.#calls.options(options));
    return decodeUser(response);
  }

  /** One keyboard-interactive step (`SendKeyboardAuthRequest`), as given. */
  async sendKeyboardAuthRequest(step: KeyboardAuthStep, options?: CallOptions): Promise<KeyboardAuthReply> {
    const response = await this.#calls.stub.sendKeyboardAuthRequest({
      requestID: step.requestId,
      username: step.username,
      password: step.password ?? "",
      ip: step.ip ?? "",
      answers: [...(step.answers ?? [])],
      questions: [...(step.questions ?? [])],
      step: step.step,
    }, this.#calls.options(options));
    return toReply(response);
  }

  /**
   * Runs a whole keyboard-interactive login as SFTPGo does
   * (`executeKeyboardInteractivePlugin`):
   * 1. Step 1 carries username, stored password, ip and a fresh request id.
   * 2. A non-zero `auth_result` ends the login: 1 authenticated, else refused.
   * 3. Otherwise the reply must have questions and one echo flag per
   *    question; the client answers them, one answer per question.
   * 4. With exactly one answer and `check_password` 2 the host checks it as a
   *    TOTP code, with any other positive value as the password; on success
   *    the plugin gets `"OK"` instead of the answer, on failure the login is
   *    refused.
   * 5. The next step (same id, step + 1, no ip) carries the answers and the
   *    questions they answer.
   */
  async keyboardInteractive(options: KeyboardInteractiveOptions): Promise<KeyboardInteractiveOutcome> {
    const requestId = options.requestId ?? crypto.randomUUID();
    const maxSteps = options.maxSteps ?? 64;
    let request: KeyboardAuthStep = {
      requestId,
      username: options.username,
      password: options.password ?? "",
      ip: options.ip,
      step: 1,
    };
    for (let steps = 1;; steps++) {
      const reply = await this.sendKeyboardAuthRequest(request, options.callOptions);
      if (reply.authResult === KeyboardAuthResult.Ok) return { authenticated: true, steps };
      if (reply.authResult !== KeyboardAuthResult.Continue) {
        return {
          authenticated: false,
          steps,
          authResult: reply.authResult,
          reason: `the plugin refused the login (auth_result ${reply.authResult})`,
        };
      }
      const fail = (reason: string): KeyboardInteractiveOutcome => ({ authenticated: false, steps, reason });
      if (reply.questions.length === 0) return fail("the plugin's reply has no questions");
      if (reply.questions.length !== reply.echos.length) {
        return fail(
          `the plugin's reply has ${reply.questions.length} questions but ${reply.echos.length} echos`,
        );
      }
      if (steps >= maxSteps) return fail(`no decision after ${steps} steps`);
      const answers = [
        ...await options.challenge({
          step: request.step,
          instructions: reply.instructions,
          questions: reply.questions,
          echos: reply.echos,
        }),
      ];
      if (answers.length !== reply.questions.length) {
        return fail(`the client gave ${answers.length} answers to ${reply.questions.length} questions`);
      }
      if (answers.length === 1 && reply.checkPassword > 0) {
        if (reply.checkPassword === KeyboardCheck.Totp) {
          if (!options.checkTotp) {
            return fail("the plugin asked the host to check a TOTP code, and it cannot");
          }
          if (!await options.checkTotp(answers[0])) return fail("invalid TOTP code");
        } else {
          if (!options.checkPassword) {
            return fail("the plugin asked the host to check the password, and it cannot");
          }
          if (!await options.checkPassword(answers[0])) return fail("invalid password");
        }
        // The plugin learns that the check passed, never the secret itself.
        answers[0] = "OK";
      }
      request = {
        requestId,
        username: options.username,
        password: options.password ?? "",
        answers,
        questions: reply.questions,
        step: request.step + 1,
      };
    }
  }

  #auth() {
    return this.#calls.stub;
  }
}
