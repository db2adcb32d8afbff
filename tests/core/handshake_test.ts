/**
 * Unit tests of the handshake line: parsing (every error path), formatting,
 * version choice and go-plugin's unpadded base64.
 */

import assert from "node:assert/strict";
import { TetherError } from "../../mod.ts";
import {
  assertPinnedAddress,
  chooseVersion,
  decodeRawBase64,
  encodeRawBase64,
  formatHandshakeLine,
  type HandshakeLine,
  offeredVersions,
  parseHandshakeLine,
} from "../../src/handshake.ts";
import { generateCertificate } from "../../src/mtls.ts";

function throwsTether(fn: () => unknown, code: TetherError["code"], ...fragments: string[]): TetherError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof TetherError, `expected a TetherError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const fragment of fragments) {
    assert.ok(
      caught.message.includes(fragment),
      `message ${JSON.stringify(caught.message)} lacks ${fragment}`,
    );
  }
  return caught;
}

// A real certificate, for lines that must carry one.
const cert = await generateCertificate();
const certField = encodeRawBase64(cert.certDer);

Deno.test("parse: a Go plugin's line without certificate", () => {
  assert.deepEqual(parseHandshakeLine("1|1|unix|/tmp/plugin123|grpc|", [1]), {
    appVersion: 1,
    network: "unix",
    address: "/tmp/plugin123",
    protocol: "grpc",
  });
});

Deno.test("parse: tcp address, surrounding whitespace and CRLF are trimmed", () => {
  const line = parseHandshakeLine("  1|3|tcp|127.0.0.1:10001|grpc|\r\n", [1, 3]);
  assert.equal(line.network, "tcp");
  assert.equal(line.address, "127.0.0.1:10001");
  assert.equal(line.appVersion, 3);
});

Deno.test("parse: the certificate field is decoded (unpadded base64)", () => {
  const line = parseHandshakeLine(`1|1|unix|/tmp/p|grpc|${certField}`, [1]);
  assert.deepEqual(line.serverCertDer, cert.certDer);
});

Deno.test("parse: a certificate field of 50 characters or less is ignored, as go-plugin does", () => {
  const line = parseHandshakeLine(`1|1|unix|/tmp/p|grpc|${"A".repeat(50)}`, [1]);
  assert.equal(line.serverCertDer, undefined);
  // Even if it is not base64 at all.
  assert.equal(parseHandshakeLine("1|1|unix|/tmp/p|grpc|not=base64!", [1]).serverCertDer, undefined);
});

Deno.test("parse: the 7th (multiplex) field is read; further fields are ignored", () => {
  assert.equal(parseHandshakeLine("1|1|unix|/tmp/p|grpc||true", [1]).multiplex, true);
  assert.equal(parseHandshakeLine("1|1|unix|/tmp/p|grpc||false", [1]).multiplex, false);
  assert.equal(parseHandshakeLine("1|1|unix|/tmp/p|grpc|", [1]).multiplex, undefined);
  // Go's strconv.ParseBool spellings (parseGoBool); what it cannot parse states nothing.
  assert.equal(parseHandshakeLine("1|1|unix|/tmp/p|grpc||t", [1]).multiplex, true);
  assert.equal(parseHandshakeLine("1|1|unix|/tmp/p|grpc||F", [1]).multiplex, false);
  assert.equal(parseHandshakeLine("1|1|unix|/tmp/p|grpc||yes", [1]).multiplex, undefined);
  const extra = parseHandshakeLine("1|1|unix|/tmp/p|grpc||true|whatever|else", [1]);
  assert.equal(extra.multiplex, true);
  assert.equal(extra.address, "/tmp/p");
});

Deno.test("parse: fewer than 4 fields is an unrecognized message that quotes the line", () => {
  for (const raw of ["", "hello", "1|1|unix", "Listening on port 8080"]) {
    const error = throwsTether(
      () => parseHandshakeLine(raw, [1]),
      "handshake",
      "Unrecognized remote plugin message",
      JSON.stringify(raw),
    );
    // It explains the usual causes.
    assert.match(error.message, /printed to stdout before its handshake line/);
  }
});

Deno.test("parse: a bad core version", () => {
  throwsTether(
    () => parseHandshakeLine("2|1|unix|/tmp/p|grpc|", [1]),
    "handshake",
    "incompatible core API version",
    "Plugin version: 2",
  );
  throwsTether(
    () => parseHandshakeLine("0|1|unix|/tmp/p|grpc|", [1]),
    "handshake",
    "incompatible core API version",
  );
  throwsTether(
    () => parseHandshakeLine("x|1|unix|/tmp/p|grpc|", [1]),
    "handshake",
    "core protocol version",
    '"x"',
  );
});

Deno.test("parse: an app version the host did not offer", () => {
  throwsTether(
    () => parseHandshakeLine("1|2|unix|/tmp/p|grpc|", [1]),
    "handshake",
    "incompatible API version with plugin",
    "Plugin version: 2",
    "Client versions: [1]",
  );
  throwsTether(
    () => parseHandshakeLine("1|4|unix|/tmp/p|grpc|", [3, 1]),
    "handshake",
    "Plugin version: 4",
    "Client versions: [3 1]",
  );
  throwsTether(() => parseHandshakeLine("1|one|unix|/tmp/p|grpc|", [1]), "handshake", "Plugin version: one");
  throwsTether(
    () => parseHandshakeLine("1||unix|/tmp/p|grpc|", [1]),
    "handshake",
    "incompatible API version",
  );
});

Deno.test("parse: an unknown network", () => {
  throwsTether(
    () => parseHandshakeLine("1|1|pipe|/tmp/p|grpc|", [1]),
    "handshake",
    "unknown address type: pipe",
  );
  throwsTether(
    () => parseHandshakeLine("1|1|UNIX|/tmp/p|grpc|", [1]),
    "handshake",
    "unknown address type: UNIX",
  );
});

Deno.test("parse: netrpc, explicit or by a missing protocol field, is refused as not supported", () => {
  for (const raw of ["1|1|unix|/tmp/p|netrpc|", "1|1|unix|/tmp/p"]) {
    throwsTether(() => parseHandshakeLine(raw, [1]), "handshake", "net/rpc", "not support");
  }
});

Deno.test("parse: an unknown protocol", () => {
  throwsTether(
    () => parseHandshakeLine("1|1|unix|/tmp/p|http|", [1]),
    "handshake",
    'unsupported plugin protocol "http"',
    "Supported: [grpc]",
  );
});

Deno.test("parse: a padded or garbage certificate", () => {
  // Std base64 with padding, as a non-Go plugin might print by mistake.
  const padded = btoa(String.fromCharCode(...cert.certDer.subarray(0, 40)));
  assert.ok(padded.endsWith("=") && padded.length > 50);
  throwsTether(
    () => parseHandshakeLine(`1|1|unix|/tmp/p|grpc|${padded}`, [1]),
    "tls",
    "error parsing server cert",
    "padded",
  );
  throwsTether(
    () => parseHandshakeLine(`1|1|unix|/tmp/p|grpc|${"%$#!".repeat(20)}`, [1]),
    "tls",
    "error parsing server cert",
    "not base64",
  );
  // URL-safe alphabet is not Go's StdEncoding either.
  throwsTether(
    () => parseHandshakeLine(`1|1|unix|/tmp/p|grpc|${"ab-_".repeat(20)}`, [1]),
    "tls",
    "not base64",
  );
});

Deno.test("decodeRawBase64: round trip of every length, and rejects what RawStdEncoding rejects", () => {
  for (let length = 0; length < 40; length++) {
    const data = crypto.getRandomValues(new Uint8Array(length));
    const encoded = encodeRawBase64(data);
    assert.ok(!encoded.includes("="), `padding in ${encoded}`);
    assert.equal(encoded.length, Math.ceil((length * 4) / 3));
    assert.deepEqual(decodeRawBase64(encoded), data);
  }
  throwsTether(() => decodeRawBase64("QUJD="), "tls", "padded");
  throwsTether(() => decodeRawBase64("QUI="), "tls", "padded");
  throwsTether(() => decodeRawBase64("QU JD"), "tls", "not base64");
  // One leftover character cannot encode a byte.
  throwsTether(() => decodeRawBase64("QUJDR"), "tls", "error parsing server cert");
});

Deno.test("encodeRawBase64: large input (a 100 KB buffer) round-trips", () => {
  const data = new Uint8Array(100_000).map((_, i) => (i * 7) & 0xff);
  assert.deepEqual(decodeRawBase64(encodeRawBase64(data)), data);
});

Deno.test("format: 6 fields, empty certificate field, trailing newline", () => {
  assert.equal(
    formatHandshakeLine({ appVersion: 1, network: "unix", address: "/tmp/p1", protocol: "grpc" }),
    "1|1|unix|/tmp/p1|grpc|\n",
  );
});

Deno.test("format: certificate without padding, multiplex as the 7th field; parse reads it back", () => {
  const line: HandshakeLine = {
    appVersion: 7,
    network: "tcp",
    address: "127.0.0.1:12345",
    protocol: "grpc",
    serverCertDer: cert.certDer,
    multiplex: true,
  };
  const text = formatHandshakeLine(line);
  assert.ok(text.endsWith("|true\n"));
  const fields = text.trimEnd().split("|");
  assert.equal(fields.length, 7);
  assert.equal(fields[5], certField);
  assert.doesNotMatch(fields[5], /=/);
  assert.deepEqual(parseHandshakeLine(text, [7]), line);
});

Deno.test("chooseVersion: the plugin's highest version the host listed", () => {
  assert.equal(chooseVersion("1,2,3", [2, 3]), 3);
  assert.equal(chooseVersion("3,1,2", [1, 2]), 2);
  assert.equal(chooseVersion("1,2,3", [2, 4]), 2);
  assert.equal(chooseVersion("5,6", [6, 5, 1]), 6);
});

Deno.test("chooseVersion: no common version gives the plugin's lowest (the host reports the mismatch)", () => {
  assert.equal(chooseVersion("1", [3, 2]), 2);
  assert.equal(chooseVersion("", [4, 2, 9]), 2);
});

Deno.test("chooseVersion: invalid entries are reported and skipped", () => {
  const invalid: string[] = [];
  assert.equal(chooseVersion("x,2, 3,,1", [1, 2, 3], (entry) => invalid.push(entry)), 2);
  assert.deepEqual(invalid, ["x", " 3", ""]);
});

Deno.test("offeredVersions: union of protocolVersion and protocolVersions, highest first", () => {
  const cookie = { magicCookieKey: "K", magicCookieValue: "V" };
  assert.deepEqual(offeredVersions({ ...cookie, protocolVersion: 1, protocolVersions: [3, 2, 1] }), [
    3,
    2,
    1,
  ]);
  assert.deepEqual(offeredVersions({ ...cookie, protocolVersion: 5 }), [5]);
  throwsTether(() => offeredVersions(cookie), "config", "no protocol version");
  throwsTether(() => offeredVersions({ ...cookie, protocolVersion: 1.5 }), "config", "1.5");
  throwsTether(() => offeredVersions({ ...cookie, protocolVersions: [-1] }), "config", "-1");
});

Deno.test("assertPinnedAddress: only the assigned socket, or a socket directly inside the launch directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tether-pin-" });
  const other = await Deno.makeTempDir({ prefix: "tether-pin-other-" });
  const listeners: Deno.Listener[] = [];
  try {
    const socket = (path: string) => listeners.push(Deno.listen({ transport: "unix", path }));
    socket(`${dir}/plugin.sock`);
    socket(`${dir}/plugin12345`);
    socket(`${other}/elsewhere.sock`);
    await Deno.mkdir(`${dir}/sub`);
    socket(`${dir}/sub/nested.sock`);
    await Deno.symlink(`${other}/elsewhere.sock`, `${dir}/link.sock`);
    await Deno.writeTextFile(`${dir}/file`, "");

    const exact = { plugin: "p", socketPath: `${dir}/plugin.sock` };
    assertPinnedAddress({ network: "unix", address: `${dir}/plugin.sock` }, exact);
    throwsTether(
      () => assertPinnedAddress({ network: "unix", address: `${dir}/plugin12345` }, exact),
      "handshake",
      `plugin p announced unix "${dir}/plugin12345" in its handshake line`,
      `expected unix socket ${dir}/plugin.sock`,
      "Tether did not connect to it",
    );

    const inside = { plugin: "p", socketDir: dir };
    assertPinnedAddress({ network: "unix", address: `${dir}/plugin12345` }, inside);
    // Not there yet: allowed through (the dial then fails and says so).
    assertPinnedAddress({ network: "unix", address: `${dir}/not-yet` }, inside);
    for (
      const address of [
        `${other}/elsewhere.sock`,
        `${dir}/sub/nested.sock`,
        `${dir}/../x.sock`,
        `${dir}/`,
        "rel.sock",
      ]
    ) {
      throwsTether(
        () => assertPinnedAddress({ network: "unix", address }, inside),
        "handshake",
        `expected a unix socket directly inside ${dir}`,
        "not one this launch assigned",
      );
    }
    throwsTether(
      () => assertPinnedAddress({ network: "unix", address: `${dir}/link.sock` }, inside),
      "handshake",
      "not a socket (a symlink or file is refused)",
    );
    throwsTether(
      () => assertPinnedAddress({ network: "unix", address: `${dir}/file` }, inside),
      "handshake",
      "not a socket",
    );
  } finally {
    for (const listener of listeners) listener.close();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(other, { recursive: true });
  }
});

Deno.test("assertPinnedAddress: TCP refused unless allowed, then only 127.0.0.1 in the port range", () => {
  const unixOnly = { plugin: "p", socketDir: "/nonexistent-dir" };
  throwsTether(
    () => assertPinnedAddress({ network: "tcp", address: "127.0.0.1:22" }, unixOnly, "broker connection 3"),
    "handshake",
    'announced tcp "127.0.0.1:22" in broker connection 3',
    "TCP is not allowed for this plugin",
    "allowTcp: true",
  );
  const tcp = { plugin: "p", tcpPorts: [10000, 25000] as const };
  assertPinnedAddress({ network: "tcp", address: "127.0.0.1:10000" }, tcp);
  assertPinnedAddress({ network: "tcp", address: "127.0.0.1:25000" }, tcp);
  for (
    const address of ["127.0.0.1:9999", "127.0.0.1:25001", "10.0.0.1:12000", "localhost:12000", "127.0.0.1:x"]
  ) {
    throwsTether(
      () => assertPinnedAddress({ network: "tcp", address }, tcp),
      "handshake",
      "expected tcp 127.0.0.1:10000..25000",
    );
  }
  throwsTether(
    () => assertPinnedAddress({ network: "pipe", address: "x" }, tcp),
    "handshake",
    "unknown network",
  );
});

Deno.test("parse: a megabyte-long line is quoted cut in the error, with its length", () => {
  const long = "x".repeat(1024 * 1024);
  const error = throwsTether(() => parseHandshakeLine(long, [1]), "handshake", "(1048576 characters)");
  assert.ok(error.message.length < 1000, `message is ${error.message.length} characters`);
});
