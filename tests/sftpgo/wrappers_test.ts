/**
 * The TypeScript example plugins (examples/sftpgo/plugins/*.ts) under
 * Tether's typed host wrappers: each plugin's documented behaviour, end to
 * end over go-plugin's transport (AutoMTLS).
 */

import assert from "node:assert/strict";
import {
  AuthClient,
  EventSearcherClient,
  FsEventStatus,
  IpFilterClient,
  KmsClient,
  LogEventType,
  NotifierClient,
  SearchOrder,
} from "../../sftpgo.ts";
import { GrpcStatus, TetherError } from "../../mod.ts";
import { readJsonLines, tsPlugin, withPlugin } from "./support.ts";
import { goFixture, ignoreWithoutGo } from "../helpers.ts";

const examples = "examples/sftpgo/plugins";

async function rejectsWithText(promise: Promise<unknown>, text: string, status?: number): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof TetherError, String(error));
    assert.ok(error.message.includes(text), error.message);
    if (status !== undefined) assert.equal(error.status, status, error.message);
    return true;
  });
}

/** A password hash in the example's format, with few iterations to keep the test fast (the count is in the hash). */
async function pbkdf2Hash(password: string, iterations = 1000): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, [
    "deriveBits",
  ]);
  const bits = new Uint8Array(
    await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, key, 256),
  );
  const b64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
  return `$pbkdf2-sha256$${iterations}$${b64(salt)}$${b64(bits)}`;
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "tether-examples-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("sftpgo examples: auth plugin: static users, hashed passwords, public keys, keyboard-interactive", () =>
  withTempDir(async (dir) => {
    const users = `${dir}/users.json`;
    await Deno.writeTextFile(
      users,
      JSON.stringify({
        users: [
          {
            username: "alice",
            password: await pbkdf2Hash("wonderland"),
            public_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice alice@laptop"],
            user: { home_dir: "/srv/alice", permissions: { "/": ["*"] } },
          },
          { username: "keys-only", public_keys: ["ssh-ed25519 AAAAkeysonly"], user: { home_dir: "/srv/k" } },
        ],
      }),
    );
    // The users file by environment variable (the argument works the same).
    await withPlugin("auth", tsPlugin(`${examples}/auth.ts`), async (plugin) => {
      const auth = new AuthClient(plugin);
      const base = { ip: "198.51.100.7", protocol: "SSH" };
      const alice = { status: 1, home_dir: "/srv/alice", permissions: { "/": ["*"] }, username: "alice" };

      const ok = await auth.checkUserAndPass({ ...base, username: "alice", password: "wonderland" });
      assert.deepEqual(ok.user, alice);
      assert.ok(
        !new TextDecoder().decode(ok.userJson).includes("pbkdf2"),
        "the hash never leaves the plugin",
      );
      await rejectsWithText(
        auth.checkUserAndPass({ ...base, username: "alice", password: "Wonderland" }),
        "invalid credentials",
      );
      await rejectsWithText(
        auth.checkUserAndPass({ ...base, username: "nobody", password: "x" }),
        "invalid credentials",
      );
      await rejectsWithText(
        auth.checkUserAndPass({ ...base, username: "keys-only", password: "" }),
        "invalid credentials",
      );

      // The comment of an authorized_keys line does not matter; the key does.
      const key = await auth.checkUserAndPublicKey({
        ...base,
        username: "alice",
        pubKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAlice",
      });
      assert.deepEqual(key.user, alice);
      await rejectsWithText(
        auth.checkUserAndPublicKey({ ...base, username: "alice", pubKey: "ssh-ed25519 AAAAother" }),
        "invalid public key",
      );
      assert.equal(
        (await auth.checkUserAndPublicKey({
          ...base,
          username: "keys-only",
          pubKey: "ssh-ed25519 AAAAkeysonly x",
        })).user?.home_dir,
        "/srv/k",
      );

      // Not implemented by the example: the host sees UNIMPLEMENTED, i.e. a refused login.
      await rejectsWithText(
        auth.checkUserAndTLSCert({ ...base, username: "alice", tlsCert: "-----BEGIN CERTIFICATE-----" }),
        "not implemented",
        GrpcStatus.UNIMPLEMENTED,
      );

      assert.deepEqual(
        (await auth.checkUserAndKeyboardInteractive({ ...base, username: "alice" })).user,
        alice,
      );
      await rejectsWithText(
        auth.checkUserAndKeyboardInteractive({ ...base, username: "keys-only" }),
        "not available",
      );
      const prompts: string[][] = [];
      const login = (password: string) =>
        auth.keyboardInteractive({
          username: "alice",
          ip: base.ip,
          challenge: ({ questions }) => {
            prompts.push([...questions]);
            return [password];
          },
        });
      assert.deepEqual(await login("wonderland"), { authenticated: true, steps: 2 });
      assert.deepEqual(prompts, [["Password: "]]);
      assert.deepEqual(await login("nope"), {
        authenticated: false,
        steps: 2,
        authResult: -1,
        reason: "the plugin refused the login (auth_result -1)",
      });
    }, { TETHER_AUTH_USERS: users });
  }));

Deno.test("sftpgo examples: notifier plugin writes one JSON line per event", () =>
  withTempDir(async (dir) => {
    const out = `${dir}/events.jsonl`;
    await withPlugin("notifier", tsPlugin(`${examples}/notifier.ts`, out), async (plugin) => {
      const notifier = new NotifierClient(plugin);
      await notifier.sendFsEvent({
        timestamp: 1767225600123456789n,
        action: "upload",
        username: "alice",
        virtualPath: "/in/a.txt",
        fsPath: "/srv/alice/in/a.txt",
        fileSize: 9876543210,
        protocol: "SFTP",
        status: FsEventStatus.Ok,
        ip: "198.51.100.7",
        elapsedMs: 12,
        metadata: { k: "v" },
      });
      await notifier.sendProviderEvent({
        timestamp: new Date("2026-01-01T00:00:01Z"),
        action: "add",
        objectType: "user",
        objectName: "bob",
        username: "admin",
        objectData: { username: "bob", status: 1 },
      });
      await notifier.sendLogEvent({
        event: LogEventType.LoginFailed,
        username: "mallory",
        protocol: "SSH",
        ip: "203.0.113.66",
      });
      // Concurrent events never interleave within a line.
      await Promise.all(
        Array.from(
          { length: 20 },
          (_, i) => notifier.sendFsEvent({ action: "download", username: `u${i}`, timestamp: BigInt(i) }),
        ),
      );
    });
    const lines = await readJsonLines(out);
    assert.equal(lines.length, 23);
    assert.deepEqual(lines[0], {
      kind: "fs",
      timestamp: "1767225600123456789",
      time: "2026-01-01T00:00:00.123Z",
      action: "upload",
      username: "alice",
      fs_path: "/srv/alice/in/a.txt",
      fs_target_path: "",
      virtual_path: "/in/a.txt",
      virtual_target_path: "",
      ssh_cmd: "",
      file_size: 9876543210,
      protocol: "SFTP",
      status: 1,
      ip: "198.51.100.7",
      session_id: "",
      fs_provider: 0,
      bucket: "",
      endpoint: "",
      open_flags: 0,
      role: "",
      elapsed_ms: 12,
      metadata: { k: "v" },
    });
    assert.deepEqual(lines[1], {
      kind: "provider",
      timestamp: "1767225601000000000",
      time: "2026-01-01T00:00:01.000Z",
      action: "add",
      object_type: "user",
      object_name: "bob",
      username: "admin",
      ip: "",
      role: "",
      object_data: { username: "bob", status: 1 },
    });
    assert.equal(lines[2].kind, "log");
    assert.equal(lines[2].event, 1);
    assert.deepEqual(
      new Set(lines.slice(3).map((l) => l.username)),
      new Set(Array.from({ length: 20 }, (_, i) => `u${i}`)),
    );
  }));

Deno.test("sftpgo examples: ipfilter plugin applies CIDR allow and deny lists", () =>
  withPlugin(
    "ipfilter",
    tsPlugin(
      `${examples}/ipfilter.ts`,
      "--allow",
      "198.51.100.0/24,2001:db8::/32",
      "--allow",
      "10.0.0.0/8",
      "--deny",
      "10.66.0.0/16",
      "--deny",
      "198.51.100.66",
    ),
    async (plugin) => {
      const filter = new IpFilterClient(plugin);
      const allowed = { allowed: true };
      assert.deepEqual(await filter.checkIP("198.51.100.7", "SSH"), allowed);
      assert.deepEqual(await filter.checkIP("10.1.2.3", "FTP"), allowed);
      assert.deepEqual(await filter.checkIP("::ffff:10.1.2.3", "FTP"), allowed);
      assert.deepEqual(await filter.checkIP("2001:db8:1::7", "DAV"), allowed);
      assert.deepEqual(await filter.checkIP("198.51.100.66", "SSH"), { allowed: false, reason: "ip denied" });
      assert.deepEqual(await filter.checkIP("::ffff:10.66.1.1", "SSH"), {
        allowed: false,
        reason: "ip denied",
      });
      assert.deepEqual(await filter.checkIP("203.0.113.9", "SSH"), {
        allowed: false,
        reason: "ip not in the allow list",
      });
      assert.deepEqual(await filter.checkIP("2001:db9::1", "SSH"), {
        allowed: false,
        reason: "ip not in the allow list",
      });
      assert.deepEqual(await filter.checkIP("not-an-ip", "SSH"), {
        allowed: false,
        reason: 'invalid ip "not-an-ip"',
      });
      await filter.reload();
      assert.deepEqual(await filter.checkIP("198.51.100.7", "SSH"), allowed);
    },
  ));

Deno.test("sftpgo examples: kms plugin round-trips with AES-GCM, binds additional data, tells keys apart", async () => {
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
  const url = "local://key";
  let sealedByFirst: { payload: string; key: string; mode: number } | undefined;
  await withPlugin("kms", tsPlugin(`${examples}/kms.ts`), async (plugin) => {
    const kms = new KmsClient(plugin);
    const secret = "s3cret ✓ with unicode";
    const sealed = await kms.encrypt({ payload: secret, additionalData: "user:alice", url });
    sealedByFirst = sealed;
    assert.equal(sealed.mode, 1);
    assert.match(sealed.key, /^sha256:[0-9a-f]{16}$/);
    assert.ok(!sealed.payload.includes("s3cret"));
    assert.equal(await kms.decrypt({ ...sealed, additionalData: "user:alice", url }), secret);
    // Fresh IV each time.
    assert.notEqual(
      (await kms.encrypt({ payload: secret, additionalData: "user:alice", url })).payload,
      sealed.payload,
    );
    await rejectsWithText(kms.decrypt({ ...sealed, additionalData: "user:bob", url }), "decryption failed");

    const withMaster = await kms.encrypt({ payload: secret, url, masterKey: "from sftpgo's config" });
    assert.equal(withMaster.mode, 2);
    assert.notEqual(withMaster.key, sealed.key);
    assert.equal(await kms.decrypt({ ...withMaster, url, masterKey: "from sftpgo's config" }), secret);
    await rejectsWithText(kms.decrypt({ ...withMaster, url, masterKey: "another" }), "encrypted with key");
    await rejectsWithText(kms.decrypt({ ...withMaster, url }), "mode 2 needs the master key");
    await rejectsWithText(kms.decrypt({ ...sealed, mode: 7, url }), "unsupported mode 7");
  }, { TETHER_KMS_KEY: key });
  // Another key in the environment: the stored key id says it is not the one.
  const other = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));
  await withPlugin("kms", tsPlugin(`${examples}/kms.ts`), async (plugin) => {
    await rejectsWithText(
      new KmsClient(plugin).decrypt({ ...sealedByFirst!, additionalData: "user:alice", url }),
      "encrypted with key",
    );
  }, { TETHER_KMS_KEY: other });
});

Deno.test("sftpgo examples: eventsearcher plugin finds the notifier's events", () =>
  withTempDir(async (dir) => {
    const file = `${dir}/events.jsonl`;
    const t0 = 1767225600000000000n;
    const second = 1_000_000_000n;
    await withPlugin("notifier", tsPlugin(`${examples}/notifier.ts`, file), async (plugin) => {
      const notifier = new NotifierClient(plugin);
      for (
        const [i, [action, username]] of [["upload", "alice"], ["download", "bob"], ["upload", "bob"], [
          "delete",
          "alice",
        ], [
          "upload",
          "alice",
        ]].entries()
      ) {
        await notifier.sendFsEvent({
          timestamp: t0 + BigInt(i) * second,
          action,
          username,
          protocol: i % 2 ? "FTP" : "SFTP",
          status: 1,
        });
      }
      await notifier.sendProviderEvent({
        timestamp: t0,
        action: "add",
        objectType: "user",
        objectName: "bob",
        username: "admin",
        objectData: { username: "bob" },
      });
      await notifier.sendLogEvent({
        timestamp: t0,
        event: LogEventType.LoginOK,
        username: "alice",
        protocol: "SSH",
      });
      await notifier.sendLogEvent({
        timestamp: t0 + second,
        event: LogEventType.LoginFailed,
        username: "mallory",
        protocol: "FTP",
      });
    });

    await withPlugin("eventsearcher", tsPlugin(`${examples}/eventsearcher.ts`, file), async (plugin) => {
      const search = new EventSearcherClient(plugin);
      type Found = { id: string; action: string; username: string; timestamp: string; object_data?: unknown };
      const fs = async (query: Parameters<EventSearcherClient["searchFsEvents"]>[0]) =>
        ((await search.searchFsEvents(query)).data as Found[]).map((e) =>
          `${e.action}:${e.username}:${BigInt(e.timestamp) - t0}`
        );

      // Default order is DESC (newest first).
      assert.deepEqual(await fs({}), [
        `upload:alice:${4n * second}`,
        `delete:alice:${3n * second}`,
        `upload:bob:${2n * second}`,
        `download:bob:${second}`,
        "upload:alice:0",
      ]);
      assert.deepEqual(await fs({ username: "alice", order: SearchOrder.Asc }), [
        "upload:alice:0",
        `delete:alice:${3n * second}`,
        `upload:alice:${4n * second}`,
      ]);
      assert.deepEqual(await fs({ actions: ["upload"], order: SearchOrder.Asc, limit: 2 }), [
        "upload:alice:0",
        `upload:bob:${2n * second}`,
      ]);
      // Time range, inclusive, as Date or nanoseconds.
      assert.deepEqual(
        await fs({
          startTimestamp: t0 + second,
          endTimestamp: new Date(Number((t0 + 2n * second) / 1_000_000n)),
          order: SearchOrder.Asc,
        }),
        [
          `download:bob:${second}`,
          `upload:bob:${2n * second}`,
        ],
      );
      assert.deepEqual(await fs({ protocols: ["FTP"], order: SearchOrder.Asc }), [
        `download:bob:${second}`,
        `delete:alice:${3n * second}`,
      ]);
      // Paging: continue after an id.
      const page1 = (await search.searchFsEvents({ order: SearchOrder.Asc, limit: 2 })).data as Found[];
      const page2 = (await search.searchFsEvents({ order: SearchOrder.Asc, limit: 2, fromId: page1[1].id }))
        .data as Found[];
      assert.deepEqual(page2.map((e) => e.action), ["upload", "delete"]);

      const providers = (await search.searchProviderEvents({ objectTypes: ["user"] })).data as Found[];
      assert.deepEqual(providers.map((e) => [e.action, e.object_data]), [["add", { username: "bob" }]]);
      const omitted = (await search.searchProviderEvents({ omitObjectData: true })).data as Found[];
      assert.equal(omitted[0].object_data, undefined);
      const logs = (await search.searchLogEvents({ events: [LogEventType.LoginFailed] })).data as Found[];
      assert.deepEqual(logs.map((e) => e.username), ["mallory"]);
      assert.deepEqual((await search.searchLogEvents({ username: "nobody" })).data, []);
    });
  }));

Deno.test({
  name: "auth defaults: without `user`, every check sends SFTPGo's zero user, so a Go plugin that " +
    "json.Unmarshals it (as sftpgo-plugin-auth) accepts a correct password; empty bytes it refuses",
  ignore: ignoreWithoutGo(),
  fn: async () => {
    await withPlugin("auth", { cmd: await goFixture("userauth"), args: [] }, async (client) => {
      const auth = new AuthClient(client);
      const base = { username: "bob", ip: "198.51.100.7", protocol: "SSH" };
      // No user: {"id":0,"username":"bob"} goes out, as SFTPGo sends for a user it does not have.
      const fresh = await auth.checkUserAndPass({ ...base, password: "secret" });
      assert.deepEqual(fresh.user, { id: 0, username: "bob", status: 1, home_dir: "/srv/bob" });
      assert.equal((await auth.checkUserAndPublicKey({ ...base, pubKey: "ssh-ed25519 AAAA" })).user?.id, 0);
      assert.equal((await auth.checkUserAndKeyboardInteractive(base)).user?.username, "bob");
      const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
      assert.equal((await auth.checkUserAndTLSCert({ ...base, tlsCert: cert })).user?.username, "bob");
      // A stored user goes out as given (the plugin keeps its id).
      const stored = await auth.checkUserAndPass({
        ...base,
        password: "secret",
        user: { id: 42, username: "bob" },
      });
      assert.equal(stored.user?.id, 42);
      await rejectsWithText(auth.checkUserAndPass({ ...base, password: "wrong" }), "invalid credentials");
      // What Tether used to send: empty bytes, which such a plugin cannot parse.
      await rejectsWithText(
        auth.checkUserAndPass({ ...base, password: "secret", user: new Uint8Array() }),
        "unexpected end of JSON input",
      );
    });
  },
});
