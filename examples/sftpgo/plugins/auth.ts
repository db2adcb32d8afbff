/**
 * An SFTPGo `auth` plugin with static users: passwords (PBKDF2-SHA256 hashes,
 * checked with Web Crypto), public keys and a one-question
 * keyboard-interactive login, from one JSON file.
 *
 *   deno run examples/sftpgo/plugins/auth.ts [USERS_JSON]
 *   deno run --allow-env='GRPC_*' examples/sftpgo/plugins/auth.ts hash PASSWORD   # a hash for the file
 *
 * The file is the argument, or `$TETHER_AUTH_USERS`. Beyond what serving
 * takes, the plugin needs only to read it (`--allow-read=<it>`, plus
 * `--allow-env=TETHER_AUTH_USERS` when using the variable):
 *
 * ```json
 * {
 *   "users": [{
 *     "username": "alice",
 *     "password": "$pbkdf2-sha256$600000$<salt, base64>$<hash, base64>",
 *     "public_keys": ["ssh-ed25519 AAAAC3Nz... alice@laptop"],
 *     "user": { "home_dir": "/srv/alice", "permissions": { "/": ["*"] } }
 *   }]
 * }
 * ```
 *
 * A successful check answers with `user` plus `username` and `status: 1`:
 * SFTPGo creates or updates that user. The password hash is never sent.
 *
 * @module
 */

import { KeyboardAuthResult, serveAuth, type SftpgoUser } from "../../../src/sftpgo/plugin.ts";

interface StaticUser {
  username: string;
  password?: string;
  public_keys?: string[];
  user?: SftpgoUser;
}

const ITERATIONS = 600_000; // OWASP's 2023 figure for PBKDF2-SHA256.
const encoder = new TextEncoder();
const toBase64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const fromBase64 = (text: string) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

async function pbkdf2(
  password: string,
  salt: Uint8Array<ArrayBuffer>,
  iterations: number,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", encoder.encode(password), "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    key,
    256,
  );
  return new Uint8Array(bits);
}

async function hashPassword(password: string): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  return `$pbkdf2-sha256$${ITERATIONS}$${toBase64(salt)}$${
    toBase64(await pbkdf2(password, salt, ITERATIONS))
  }`;
}

async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [, scheme, iterations, salt, hash] = stored.split("$");
  if (scheme !== "pbkdf2-sha256" || !salt || !hash) return false;
  const expected = fromBase64(hash);
  const actual = await pbkdf2(password, fromBase64(salt), Number(iterations));
  // Compare every byte, so the time taken does not tell how much matched.
  let diff = expected.length ^ actual.length;
  for (let i = 0; i < expected.length; i++) diff |= expected[i] ^ (actual[i] ?? 0);
  return diff === 0;
}

if (Deno.args[0] === "hash") {
  console.log(await hashPassword(Deno.args[1] ?? ""));
  Deno.exit(0);
}

const path = Deno.args[0] ?? Deno.env.get("TETHER_AUTH_USERS");
if (!path) {
  console.error("usage: auth.ts USERS_JSON (or set TETHER_AUTH_USERS)");
  Deno.exit(2);
}
const users = new Map<string, StaticUser>(
  (JSON.parse(await Deno.readTextFile(path)).users as StaticUser[]).map((u) => [u.username, u]),
);
// Unknown users are checked against this, so they take as long as known ones.
const decoy = await hashPassword(crypto.randomUUID());

function sftpgoUser(entry: StaticUser): SftpgoUser {
  return { status: 1, ...entry.user, username: entry.username };
}

async function checkPassword(username: string, password: string): Promise<StaticUser | undefined> {
  const entry = users.get(username);
  const ok = await verifyPassword(password, entry?.password ?? decoy);
  return ok && entry?.password ? entry : undefined;
}

await serveAuth({
  checkUserAndPass: async ({ username, password }) => {
    const entry = await checkPassword(username, password);
    if (!entry) throw new Error("invalid credentials");
    return sftpgoUser(entry);
  },
  checkUserAndPublicKey: ({ username, pubKey }) => {
    // authorized_keys lines compare on type and key, not on the trailing comment.
    const keyOf = (line: string) => line.trim().split(/\s+/).slice(0, 2).join(" ");
    const entry = users.get(username);
    if (!entry?.public_keys?.some((key) => keyOf(key) === keyOf(pubKey))) {
      throw new Error("invalid public key");
    }
    return sftpgoUser(entry);
  },
  checkUserAndKeyboardInteractive: ({ username }) => {
    const entry = users.get(username);
    if (!entry?.password) throw new Error("keyboard interactive authentication not available");
    return sftpgoUser(entry);
  },
  // One question; the plugin checks the answer itself (check_password 0), so SFTPGo never needs the hash.
  sendKeyboardAuthRequest: async ({ username, answers, step }) => {
    if (step === 1) return { questions: ["Password: "], echos: [false] };
    const ok = step === 2 && answers.length === 1 && await checkPassword(username, answers[0]) !== undefined;
    return { authResult: ok ? KeyboardAuthResult.Ok : KeyboardAuthResult.Fail };
  },
});
