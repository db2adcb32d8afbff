/**
 * TLS between host and plugin: AutoMTLS on and off against the TS and Go
 * plugins, manual TLS, foreign clients that must be refused, a plugin whose
 * certificate is not the announced one, pinning at the transport level, and
 * the AutoMTLS certificate's properties.
 */

// @peculiar/x509 needs the Reflect metadata API before it loads (as in src/mtls.ts).
import "reflect-metadata";
import assert from "node:assert/strict";
import { connect as tlsConnect } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import * as x509 from "@peculiar/x509";
import {
  GrpcStatus,
  type PluginClient,
  type PluginClientOptions,
  registration,
  TetherError,
} from "../../mod.ts";
import { Health } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { Adder, KV } from "../../src/gen/tether/kv/v1/kv_pb.ts";
import { certificateDerToPem, certificatePemToDer, generateCertificate, sameBytes } from "../../src/mtls.ts";
import { createServiceClient } from "../../src/rpc.ts";
import { channelCredentials, channelOptions, startServer, type TlsMaterial } from "../../src/transport.ts";
import { ignoreWithoutGo } from "../helpers.ts";
import { bytes, inSandbox, rejectsWith, type Sandbox, text } from "./support.ts";

async function started(box: Sandbox, options: PluginClientOptions): Promise<PluginClient> {
  const client = box.client(options);
  await client.start();
  return client;
}

async function roundTrip(client: PluginClient): Promise<void> {
  const kv = client.dispense(KV);
  await kv.put({ key: "tls", value: bytes("works") });
  assert.equal(text((await kv.get({ key: "tls" })).value), "works");
  await client.ping();
}

/** A Health check from a foreign grpc-js client; resolves to the error, or undefined if it succeeded. */
async function foreignCheck(address: string, credentials: grpc.ChannelCredentials, tls?: TlsMaterial) {
  const channel = new grpc.Client(`unix:${address}`, credentials, channelOptions(tls));
  try {
    await createServiceClient(channel, Health).check({ service: "plugin" }, { timeoutMs: 10_000 });
    return undefined;
  } catch (error) {
    return error;
  } finally {
    channel.close();
  }
}

/** The certificate a TLS server on a unix socket presents (DER), read with a throw-away client certificate. */
async function serverCertificate(address: string): Promise<Uint8Array> {
  const probe = await generateCertificate();
  return await new Promise((resolve, reject) => {
    const socket = tlsConnect({
      path: address,
      cert: probe.certPem,
      key: probe.keyPem,
      rejectUnauthorized: false,
      ALPNProtocols: ["h2"],
      servername: "localhost",
    }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.destroy();
      resolve(new Uint8Array(raw));
    });
    socket.on("error", reject);
  });
}

function assertRefused(error: unknown, who: string): void {
  assert.ok(error !== undefined, `${who} was let in`);
  assert.ok(error instanceof TetherError, `${who}: ${String(error)}`);
  assert.equal(error.code, "rpc");
  assert.equal(error.status, GrpcStatus.UNAVAILABLE, `${who}: ${error.message}`);
}

for (const autoMTLS of [true, false]) {
  const mode = autoMTLS ? "AutoMTLS on" : "AutoMTLS off (plaintext)";
  Deno.test(`mtls: TS plugin, ${mode}: calls work, and the transport is what was asked for`, async () => {
    await inSandbox(async (box) => {
      const client = await started(box, box.tsKv({ autoMTLS }));
      await roundTrip(client);
      // A plaintext client gets in exactly when TLS is off.
      const plain = await foreignCheck(client.endpoint!.address, grpc.credentials.createInsecure());
      if (autoMTLS) assertRefused(plain, "a plaintext client");
      else assert.equal(plain, undefined, `plaintext client refused: ${String(plain)}`);
    });
  });

  Deno.test({
    name: `mtls: Go plugin, ${mode}: calls work, and the transport is what was asked for`,
    ignore: ignoreWithoutGo(),
    fn: () =>
      inSandbox(async (box) => {
        const client = await started(box, await box.goKv([], { autoMTLS }));
        await roundTrip(client);
        const plain = await foreignCheck(client.endpoint!.address, grpc.credentials.createInsecure());
        if (autoMTLS) assertRefused(plain, "a plaintext client");
        else assert.equal(plain, undefined, `plaintext client refused: ${String(plain)}`);
      }),
  });
}

async function foreignClientsRefused(client: PluginClient): Promise<void> {
  const address = client.endpoint!.address;
  const serverDer = await serverCertificate(address);
  const serverPem = certificateDerToPem(serverDer);

  // (a) no TLS at all.
  assertRefused(await foreignCheck(address, grpc.credentials.createInsecure()), "a plaintext client");

  // (b) TLS that trusts the plugin, but no client certificate.
  const noCert = grpc.credentials.createSsl(Buffer.from(serverPem), null, null, {
    checkServerIdentity: () => undefined,
  });
  assertRefused(
    await foreignCheck(address, noCert, { certPem: "", keyPem: "", peerCaPem: serverPem }),
    "no cert",
  );

  // (c) TLS with a well-formed AutoMTLS-style certificate that is not the host's.
  const stranger = await generateCertificate();
  const strangerTls: TlsMaterial = {
    certPem: stranger.certPem,
    keyPem: stranger.keyPem,
    peerCaPem: serverPem,
    pinnedPeerDer: serverDer,
    serverName: "localhost",
  };
  assertRefused(
    await foreignCheck(address, channelCredentials(strangerTls), strangerTls),
    "a stranger's cert",
  );

  // The real host is still served.
  await roundTrip(client);
}

Deno.test("mtls: a TS plugin refuses foreign clients (no TLS, no client cert, a cert that is not the host's)", async () => {
  await inSandbox(async (box) => await foreignClientsRefused(await started(box, box.tsKv())));
});

Deno.test({
  name: "mtls: a Go plugin refuses the same foreign clients (reference behaviour)",
  ignore: ignoreWithoutGo(),
  fn: () => inSandbox(async (box) => await foreignClientsRefused(await started(box, await box.goKv()))),
});

Deno.test("mtls: each launch of a plugin serves a fresh AutoMTLS certificate", async () => {
  await inSandbox(async (box) => {
    const one = await started(box, box.tsKv());
    const two = await started(box, box.tsKv());
    const a = await serverCertificate(one.endpoint!.address);
    const b = await serverCertificate(two.endpoint!.address);
    assert.ok(!sameBytes(a, b), "two launches share a certificate");
    for (const der of [a, b]) {
      const cert = new x509.X509Certificate(new Uint8Array(der));
      assert.equal(cert.subject, "CN=localhost, O=HashiCorp");
    }
  });
});

Deno.test("mtls: a plugin presenting another certificate than its handshake line's is refused (tls)", async () => {
  await inSandbox(async (box) => {
    const client = box.client(box.tsFake("bare_plugin.ts", ["--wrong-cert"], { killTimeoutMs: 300 }));
    const error = await rejectsWith(client.start(), "tls");
    assert.match(error.message, /could not connect to plugin/);
    assert.equal(error.plugin, client.name);
  });
});

Deno.test("mtls: manual TLS (TLSProvider-style) against a TS plugin", async () => {
  await inSandbox(async (box) => {
    const host = await generateCertificate();
    const plugin = await generateCertificate();
    const env = { TEST_TLS_CERT: plugin.certPem, TEST_TLS_KEY: plugin.keyPem, TEST_TLS_CA: host.certPem };
    const client = await started(
      box,
      box.tsFake("manual_tls.ts", [], {
        env,
        tls: { certPem: host.certPem, keyPem: host.keyPem, caPem: plugin.certPem },
      }),
    );
    await client.ping();
    // It is TLS: a plaintext client is refused.
    assertRefused(
      await foreignCheck(client.endpoint!.address, grpc.credentials.createInsecure()),
      "plaintext",
    );
    assert.ok(sameBytes(await serverCertificate(client.endpoint!.address), plugin.certDer));

    // A host that trusts another CA refuses to talk to it.
    const other = await generateCertificate();
    const distrustful = box.client(
      box.tsFake("manual_tls.ts", [], {
        env,
        killTimeoutMs: 300,
        tls: { certPem: host.certPem, keyPem: host.keyPem, caPem: other.certPem },
      }),
    );
    const error = await rejectsWith(distrustful.start(), "tls");
    assert.match(error.message, /could not connect/);
  });
});

Deno.test("mtls: transport: a pinned peer certificate must match exactly, even when the CA would accept", async () => {
  const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "tc" });
  const server = await generateCertificate();
  const client = await generateCertificate();
  const other = await generateCertificate();
  const running = await startServer(
    [registration(Adder, { add: ({ a, b }) => ({ sum: a + b }) })],
    { network: "unix", socketDir: dir },
    { certPem: server.certPem, keyPem: server.keyPem, peerCaPem: client.certPem },
  );
  const call = async (tls: TlsMaterial) => {
    const channel = new grpc.Client(
      `unix:${running.endpoint.address}`,
      channelCredentials(tls),
      channelOptions(tls),
    );
    try {
      return (await createServiceClient(channel, Adder).add({ a: 1n, b: 2n }, { timeoutMs: 10_000 })).sum;
    } catch (error) {
      return error;
    } finally {
      channel.close();
    }
  };
  try {
    const base = {
      certPem: client.certPem,
      keyPem: client.keyPem,
      peerCaPem: server.certPem,
      serverName: "localhost",
    };
    assert.equal(await call({ ...base, pinnedPeerDer: server.certDer }), 3n);
    assert.equal(await call(base), 3n, "CA-only verification should work without a pin");
    // Pinned to another certificate: refused although the CA matches.
    assertRefused(await call({ ...base, pinnedPeerDer: other.certDer }), "a wrong pin");
    // Trusting another CA: refused.
    assertRefused(await call({ ...base, peerCaPem: other.certPem }), "a wrong CA");
    // A client certificate the server does not trust: refused by the server.
    assertRefused(
      await call({ ...base, certPem: other.certPem, keyPem: other.keyPem, pinnedPeerDer: server.certDer }),
      "an untrusted client",
    );
    // A name the certificate does not carry.
    assertRefused(await call({ ...base, serverName: "plugin.example" }), "a wrong server name");
  } finally {
    running.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mtls: AutoMTLS certificates look like go-plugin's", async () => {
  const bundle = await generateCertificate();
  const cert = new x509.X509Certificate(new Uint8Array(bundle.certDer));
  assert.equal(cert.subject, "CN=localhost, O=HashiCorp");
  assert.equal(cert.issuer, cert.subject, "not self-signed");
  assert.ok(await cert.verify({ signatureOnly: true }), "self-signature does not verify");
  assert.equal((cert.publicKey.algorithm as EcKeyAlgorithm).namedCurve, "P-521");
  assert.equal((cert.signatureAlgorithm as EcdsaParams & { hash: Algorithm }).hash.name, "SHA-512");
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  assert.ok(basic?.ca, "IsCA must be true (each side pins the other's cert as its root)");
  const usages = cert.getExtension(x509.KeyUsagesExtension)!.usages;
  for (
    const flag of [
      x509.KeyUsageFlags.digitalSignature,
      x509.KeyUsageFlags.keyEncipherment,
      x509.KeyUsageFlags.keyAgreement,
      x509.KeyUsageFlags.keyCertSign,
    ]
  ) {
    assert.ok(usages & flag, `key usage ${flag} missing`);
  }
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages.map(String);
  assert.ok(eku.includes(x509.ExtendedKeyUsage.clientAuth) && eku.includes(x509.ExtendedKeyUsage.serverAuth));
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.toJSON();
  assert.deepEqual(san, [{ type: "dns", value: "localhost" }]);
  const now = Date.now();
  assert.ok(cert.notBefore.getTime() <= now - 20_000 && cert.notBefore.getTime() >= now - 120_000);
  const years = (cert.notAfter.getTime() - now) / (365.25 * 24 * 3600_000);
  assert.ok(years > 29.9 && years < 30.1, `valid for ${years} years`);
  const serial = BigInt(`0x${cert.serialNumber}`);
  assert.ok(serial > 0n && serial < 2n ** 128n);
  // PEM of the certificate round-trips; the key is PKCS#8 PEM.
  assert.ok(sameBytes(certificatePemToDer(bundle.certPem), bundle.certDer));
  assert.match(bundle.keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
  assert.ok(bundle.certPem.endsWith("-----END CERTIFICATE-----\n"));
  // Serials differ between certificates.
  const second = new x509.X509Certificate(new Uint8Array((await generateCertificate()).certDer));
  assert.notEqual(second.serialNumber, cert.serialNumber);
});

Deno.test("mtls: malformed certificate input is a tls error", () => {
  assert.throws(
    () => certificateDerToPem(new Uint8Array([1, 2, 3])),
    (e) => e instanceof TetherError && e.code === "tls",
  );
  assert.throws(() => certificatePemToDer("not a pem"), (e) => e instanceof TetherError && e.code === "tls");
});
