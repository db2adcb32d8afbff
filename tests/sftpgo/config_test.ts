import assert from "node:assert/strict";
import {
  ConfigError,
  loadPluginsConfig,
  parsePluginsConfig,
  type PluginConfig,
  validatePluginsConfig,
} from "../../src/sftpgo/config.ts";
import { runtimeFor } from "../../src/launch.ts";

const FIXTURES = new URL("../fixtures/config/", import.meta.url);
const fixture = (name: string) => new URL(name, FIXTURES).pathname;
const FILE = "rules.yaml";

/** Joins lines so each test's line numbers can be read off the source. */
const lines = (...ls: string[]) => ls.join("\n") + "\n";

interface Want {
  line: number;
  column: number;
  path: string;
  expected: string;
  found: string;
  hint?: string;
}

/** Asserts that `text` fails with a first error at `want`, and that the message says all of it. */
function rejects(text: string, want: Want): ConfigError {
  let error: unknown;
  try {
    parsePluginsConfig(text, FILE);
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
  const first = error.message.split("\n")[0];
  assert.ok(
    first.startsWith(`${FILE}:${want.line}:${want.column}: ${want.path ? `${want.path}: ` : ""}expected `),
    `unexpected location or path in: ${first}`,
  );
  assert.ok(first.includes(`expected ${want.expected}`), `missing expected ${want.expected} in: ${first}`);
  assert.ok(first.includes(`found ${want.found}`), `missing found ${want.found} in: ${first}`);
  if (want.hint !== undefined) assert.ok(first.includes(want.hint), `missing hint ${want.hint} in: ${first}`);
  assert.equal(error.file, FILE);
  assert.equal(error.line, want.line);
  assert.equal(error.column, want.column);
  assert.equal(error.path, want.path);
  assert.equal(error.code, "config");
  return error;
}

function texts(plugins: { warnings: { text: string }[] }): string[] {
  return plugins.warnings.map((w) => w.text);
}

const NOTIFIER = ["    notifier_options:", "      fs_events: [upload]"];

// ---------------------------------------------------------------------------------------------------------------
// Happy paths

Deno.test("bare top-level list", async () => {
  const plugins = await loadPluginsConfig(fixture("bare-list.yaml"));
  assert.equal(plugins.length, 2);
  assert.equal(plugins[0].type, "ipfilter");
  assert.deepEqual(plugins[0].args, ["serve", "--db-file", "/var/lib/geoip/GeoLite2-Country.mmdb"]);
  assert.deepEqual(plugins[0].source, { file: fixture("bare-list.yaml"), line: 2, column: 3, index: 0 });
  assert.equal(plugins[1].type, "eventsearcher");
  assert.equal(plugins[1].source.line, 5);
  assert.deepEqual(plugins.warnings, []);
});

Deno.test("plugins-only document", async () => {
  const [auth] = await loadPluginsConfig(fixture("plugins-only.yaml"));
  assert.equal(auth.type, "auth");
  assert.deepEqual(auth.args, ["serve", "--config-file", "/etc/sftpgo/ldap.yaml"]);
  assert.equal(auth.autoMtls, true);
  assert.deepEqual(auth.authOptions, { scope: 5 });
  assert.equal(auth.source.line, 3);
});

Deno.test("full SFTPGo YAML config: other sections are ignored", async () => {
  const plugins = await loadPluginsConfig(fixture("sftpgo.yaml"));
  assert.deepEqual(plugins.map((p) => p.type), ["notifier", "kms", "auth", "ipfilter", "eventsearcher"]);
  const [notifier, kms, auth, ipfilter] = plugins;
  assert.deepEqual(notifier.notifierOptions, {
    fsEvents: ["upload", "download", "delete", "rename"],
    providerEvents: ["add", "update", "delete"],
    providerObjects: ["user", "admin"],
    logEvents: [1, 5],
    retryMaxTime: 60,
    retryQueueMaxSize: 1000,
  });
  assert.equal(notifier.sha256sum, "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9");
  assert.equal(notifier.source.line, 32);
  assert.deepEqual(kms.kmsOptions, { scheme: "hashivault", encryptedStatus: "VaultTransit" });
  assert.equal(kms.envPrefix, "VAULT_");
  assert.deepEqual(auth.envVars, ["TZ", "LDAP_PASSWORD"]);
  assert.equal(ipfilter.envPrefix, "none");
  assert.deepEqual(plugins.warnings, []);
});

Deno.test("JSON config (SFTPGo's default format), with positions", async () => {
  const plugins = await loadPluginsConfig(fixture("sftpgo.json"));
  assert.deepEqual(plugins.map((p) => p.type), ["notifier", "kms"]);
  assert.deepEqual(plugins[0].notifierOptions?.fsEvents, ["upload", "first-upload"]);
  assert.equal(plugins[0].sha256sum, undefined);
  // Zero-valued options for other types, as SFTPGo writes them when it dumps a config, are not warned about.
  assert.deepEqual(plugins.warnings, []);
  assert.deepEqual(plugins[1].source, { file: fixture("sftpgo.json"), line: 43, column: 5, index: 1 });
});

Deno.test("tab-indented JSON parses, with positions", () => {
  const plugins = parsePluginsConfig(
    '{\n\t"plugins": [\n\t\t{"type": "ipfilter", "cmd": "/f"}\n\t]\n}\n',
    FILE,
  );
  assert.deepEqual(plugins[0].source, { file: FILE, line: 3, column: 3, index: 0 });
});

Deno.test("JSON config errors carry line and column", async () => {
  const path = fixture("invalid.json");
  await assert.rejects(() => loadPluginsConfig(path), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(
      error.message,
      `${path}:8:27: plugins[0].notifier_options.retry_max_time: expected an integer from 0 to 2147483 (seconds; 0 disables retries; ` +
        `a longer time overflows the retry timer, which would then fire at once), found "abc"`,
    );
    return true;
  });
});

Deno.test("defaults match SFTPGo and Tether's documented defaults", () => {
  const [p] = parsePluginsConfig("- {type: ipfilter, cmd: /usr/bin/filter}", FILE);
  const expected: PluginConfig = {
    type: "ipfilter",
    cmd: "/usr/bin/filter",
    args: [],
    autoMtls: false,
    envPrefix: "",
    envVars: [],
    tether: {
      runtime: "native",
      startTimeoutMs: 60_000,
      callTimeoutMs: 20_000,
      restart: { initialBackoffMs: 250, maxBackoffMs: 30_000, maxRestarts: 0 },
      healthCheckIntervalMs: 5_000,
      permissions: {
        read: [],
        write: [],
        net: [],
        env: [],
        sys: [],
        run: [],
        ffi: [],
        import: [],
        all: false,
      },
      allowBroadPermissions: false,
    },
    source: { file: FILE, line: 1, column: 3, index: 0 },
  };
  assert.deepEqual(p, expected);
});

Deno.test("empty document, empty list and a config without plugins load as no plugins", () => {
  assert.deepEqual([...parsePluginsConfig("", FILE)], []);
  assert.deepEqual([...parsePluginsConfig("plugins: []", FILE)], []);
  assert.deepEqual([...parsePluginsConfig("plugins:", FILE)], []);
  const none = parsePluginsConfig("common: {idle_timeout: 15}\n", FILE);
  assert.equal(none.length, 0);
  assert.deepEqual(texts(none), [`${FILE}:1:1: no "plugins" key, so no plugins are configured`]);
});

Deno.test("tether additions", async () => {
  const [audit, auth, blocklist] = await loadPluginsConfig(fixture("tether.yaml"));
  assert.deepEqual(audit.tether, {
    runtime: "deno",
    startTimeoutMs: 10_000,
    callTimeoutMs: 5_000,
    restart: { initialBackoffMs: 500, maxBackoffMs: 60_000, maxRestarts: 10 },
    healthCheckIntervalMs: 0,
    permissions: {
      read: ["/srv/sftpgo/plugins", "/var/log/sftpgo"],
      write: [],
      net: ["siem.internal:514"],
      env: ["AUDIT_TOKEN"],
      sys: ["hostname"],
      run: [],
      ffi: [],
      import: [],
      all: false,
    },
    allowBroadPermissions: false,
    notifierOrder: "ordered",
  });
  assert.equal(auth.tether.runtime, "native");
  assert.equal(auth.tether.uid, 1000);
  assert.equal(auth.tether.gid, 1000);
  assert.equal(blocklist.tether.runtime, "deno");
  assert.deepEqual(blocklist.tether.permissions.run, ["/usr/bin/whois"]);
  assert.equal(blocklist.tether.permissions.ffi, true);
  assert.equal(blocklist.tether.allowBroadPermissions, true);
});

Deno.test("runtime auto is decided by launch.ts runtimeFor, the one rule (jsx/cts included)", () => {
  const runtimeOf = (cmd: string, runtime = "auto") =>
    parsePluginsConfig(`- {type: ipfilter, cmd: ${JSON.stringify(cmd)}, tether: {runtime: ${runtime}}}`)[0]
      .tether.runtime;
  for (const ext of ["ts", "tsx", "js", "mjs", "mts", "cjs", "cts", "jsx", "TS"]) {
    const cmd = `/opt/plugins/p.${ext}`;
    assert.equal(runtimeOf(cmd), "deno", ext);
    assert.equal(runtimeOf(cmd), runtimeFor(cmd, "auto"), ext);
  }
  for (const cmd of ["/usr/bin/sftpgo-plugin-auth", "C:\\plugins\\auth.exe", "/opt/ts", "run.sh"]) {
    assert.equal(runtimeOf(cmd), "native", cmd);
    assert.equal(runtimeOf(cmd), runtimeFor(cmd, "auto"), cmd);
  }
  assert.equal(runtimeOf("/opt/p.ts", "native"), "native");
  assert.equal(runtimeOf("/opt/p", "deno"), "deno");
  // Issue 7: a .jsx plugin with permissions was refused as "native" while launch ran it under deno.
  const [jsx] = parsePluginsConfig(
    "- {type: ipfilter, cmd: /opt/plugin.jsx, tether: {permissions: {read: [/srv]}}}",
  );
  assert.equal(jsx.tether.runtime, "deno");
  assert.deepEqual(jsx.tether.permissions.read, ["/srv"]);
});

Deno.test("SFTPGo's weak decoding: numbers and booleans in string lists, strings for ints and bools, comma lists", () => {
  const [p] = parsePluginsConfig(
    lines(
      "- type: auth",
      "  cmd: /bin/auth",
      "  args: [--port, 8080, --verbose, true]",
      '  auto_mtls: "true"',
      '  auth_options: {scope: "0x3"}',
      "  env_vars: TZ,LANG",
    ),
    FILE,
  );
  assert.deepEqual(p.args, ["--port", "8080", "--verbose", "1"]);
  assert.equal(p.autoMtls, true);
  assert.deepEqual(p.authOptions, { scope: 3 });
  assert.deepEqual(p.envVars, ["TZ", "LANG"]);
});

Deno.test("keys are case-insensitive, as in SFTPGo (viper lowercases them)", () => {
  const [p] = parsePluginsConfig("Plugins:\n  - {Type: ipfilter, CMD: /bin/f, Auto_MTLS: true}\n", FILE);
  assert.equal(p.type, "ipfilter");
  assert.equal(p.cmd, "/bin/f");
  assert.equal(p.autoMtls, true);
});

Deno.test("YAML merge keys work, as in SFTPGo's YAML reader", () => {
  const plugins = parsePluginsConfig(
    lines(
      "common: &pubsub",
      "  cmd: /usr/local/bin/sftpgo-plugin-pubsub",
      "  type: notifier",
      "plugins:",
      "  - <<: *pubsub",
      "    notifier_options: {fs_events: [upload]}",
      "  - <<: *pubsub",
      "    notifier_options: {log_events: [1]}",
      "    retry: 1",
    ),
    FILE,
  );
  assert.deepEqual(plugins.map((p) => p.cmd), [
    "/usr/local/bin/sftpgo-plugin-pubsub",
    "/usr/local/bin/sftpgo-plugin-pubsub",
  ]);
  assert.deepEqual(texts(plugins), [
    `${FILE}:9:5: plugins[1].retry: unknown key; SFTPGo ignores it and so does Tether`,
  ]);
});

// ---------------------------------------------------------------------------------------------------------------
// One test per rule

Deno.test("rule: the document must be valid YAML or JSON", () => {
  const error = (() => {
    try {
      parsePluginsConfig(lines("plugins:", "  - type: [ipfilter", "    cmd: /x", "x: ]"), FILE);
    } catch (e) {
      return e;
    }
  })();
  assert.ok(error instanceof ConfigError);
  assert.match(error.message, /^rules\.yaml:\d+:\d+: invalid YAML: /);
  assert.equal(error.expected, "valid YAML or JSON");
});

Deno.test("rule: duplicate keys are rejected, including keys that differ only in case", () => {
  rejects(lines("plugins:", "  - type: ipfilter", "    cmd: /a", "    CMD: /b"), {
    line: 4,
    column: 5,
    path: "plugins[0].cmd",
    expected: "each key once (SFTPGo compares keys case-insensitively)",
    found: 'both "cmd" and "CMD"',
  });
});

Deno.test("rule: the top level is a plugins list or a mapping with a plugins key", () => {
  rejects("just a string\n", {
    line: 1,
    column: 1,
    path: "",
    expected: 'a list of plugins, or a mapping with a "plugins" key',
    found: '"just a string"',
  });
});

Deno.test("rule: each plugin is a mapping", () => {
  rejects(lines("plugins:", "  - {type: ipfilter, cmd: /a}", "  - ~"), {
    line: 3,
    column: 5,
    path: "plugins[1]",
    expected: "a mapping with the plugin's type, cmd and options",
    found: "null",
  });
});

Deno.test("rule: type is required", () => {
  rejects(lines("plugins:", "  - cmd: /usr/bin/x"), {
    line: 2,
    column: 5,
    path: "plugins[0].type",
    expected: 'one of "auth", "notifier", "kms", "ipfilter", "eventsearcher" (or the legacy "metadata")',
    found: "nothing",
  });
});

Deno.test("rule: type must be a known type (with a suggestion for typos)", () => {
  rejects(lines("plugins:", "  - {type: ipfilter, cmd: /a}", "  - type: notifer", "    cmd: /b"), {
    line: 3,
    column: 11,
    path: "plugins[1].type",
    expected: 'one of "auth", "notifier"',
    found: '"notifer"',
    hint: 'did you mean "notifier"?',
  });
});

Deno.test("rule: metadata is accepted as a legacy type, with a warning", () => {
  const plugins = parsePluginsConfig(
    lines("- type: metadata", "  cmd: /usr/bin/sftpgo-plugin-metadata"),
    FILE,
  );
  assert.equal(plugins[0].type, "metadata");
  assert.deepEqual(texts(plugins), [
    `${FILE}:1:9: plugins[0].type: legacy type "metadata": SFTPGo 2.6 and later refuse to start with it; ` +
    "Tether still hosts it",
  ]);
});

Deno.test("rule: cmd is required and non-empty", () => {
  rejects(lines("plugins:", "  - type: ipfilter", '    cmd: ""'), {
    line: 3,
    column: 10,
    path: "plugins[0].cmd",
    expected: "a non-empty string (the plugin executable)",
    found: '""',
  });
  rejects(lines("plugins:", "  - type: ipfilter", "    cmd:"), {
    line: 3,
    column: 5,
    path: "plugins[0].cmd",
    expected: "a non-empty string",
    found: "null",
  });
});

Deno.test("rule: a missing key next to a misspelt one names the misspelling", () => {
  const error = rejects(lines("plugins:", "  - type: ipfilter", "    cmdd: /usr/bin/x"), {
    line: 2,
    column: 5,
    path: "plugins[0].cmd",
    expected: "a non-empty string (the plugin executable)",
    found: "nothing",
    hint: '"cmdd" at line 3 looks like a misspelling of it',
  });
  assert.deepEqual(error.warnings.map((w) => w.text), [
    `${FILE}:3:5: plugins[0].cmdd: unknown key (did you mean "cmd"?); SFTPGo ignores it and so does Tether`,
  ]);
});

Deno.test("rule: args is a list of strings", () => {
  rejects(lines("- type: ipfilter", "  cmd: /a", "  args: [serve, [--nested]]"), {
    line: 3,
    column: 17,
    path: "plugins[0].args[1]",
    expected: "a string",
    found: 'a list ["--nested"]',
  });
  rejects(lines("- type: ipfilter", "  cmd: /a", "  args: {config: x}"), {
    line: 3,
    column: 9,
    path: "plugins[0].args[0]",
    expected: "a string",
    found: 'a mapping {"config":"x"}',
  });
});

Deno.test("rule: sha256sum is 64 hex characters, normalised to lowercase", () => {
  rejects(lines("- type: ipfilter", "  cmd: /a", "  sha256sum: abc123"), {
    line: 3,
    column: 14,
    path: "plugins[0].sha256sum",
    expected: "64 hexadecimal characters (the executable's SHA-256)",
    found: '"abc123"',
  });
  const [p] = parsePluginsConfig(`- {type: ipfilter, cmd: /a, sha256sum: ${"AbC1".repeat(16)}}`, FILE);
  assert.equal(p.sha256sum, "abc1".repeat(16));
});

Deno.test("rule: auto_mtls is a boolean", () => {
  rejects(lines("- type: ipfilter", "  cmd: /a", "  auto_mtls: yes"), {
    line: 3,
    column: 14,
    path: "plugins[0].auto_mtls",
    expected: "a boolean (true or false)",
    found: '"yes"',
  });
});

Deno.test("rule: env_prefix is a string", () => {
  rejects(lines("- type: ipfilter", "  cmd: /a", "  env_prefix: [A_, B_]"), {
    line: 3,
    column: 15,
    path: "plugins[0].env_prefix",
    expected: 'a string ("" for the default prefix, "none", "*" or a prefix)',
    found: 'a list ["A_","B_"]',
  });
});

Deno.test("rule: env_vars are environment variable names (non-portable ones warn)", () => {
  rejects(lines("- type: ipfilter", "  cmd: /a", "  env_vars: [TZ, LANG=C]"), {
    line: 3,
    column: 18,
    path: "plugins[0].env_vars[1]",
    expected: 'an environment variable name (non-empty, without "=" or NUL)',
    found: '"LANG=C"',
  });
  const plugins = parsePluginsConfig(
    lines("- type: ipfilter", "  cmd: /a", "  env_vars: [TZ, my.var]"),
    FILE,
  );
  assert.deepEqual(plugins[0].envVars, ["TZ", "my.var"]);
  assert.deepEqual(texts(plugins), [
    `${FILE}:3:18: plugins[0].env_vars[1]: "my.var" is not a portable environment variable name ` +
    '(letters, digits and "_", not starting with a digit)',
  ]);
});

Deno.test("rule: a notifier needs notifier_options with at least one event class", () => {
  rejects(lines("plugins:", "  - type: notifier", "    cmd: /n"), {
    line: 2,
    column: 5,
    path: "plugins[0].notifier_options",
    expected: "at least one event class: a non-empty fs_events or log_events, " +
      "or both provider_events and provider_objects non-empty",
    found: "no events",
  });
});

Deno.test("rule: provider events count only when provider_events and provider_objects are both set", () => {
  rejects(
    lines(
      "plugins:",
      "  - type: notifier",
      "    cmd: /n",
      "    notifier_options:",
      "      provider_events: [add]",
    ),
    {
      line: 5,
      column: 7,
      path: "plugins[0].notifier_options",
      expected: "at least one event class",
      found: "provider_events without provider_objects",
    },
  );
  const [p] = parsePluginsConfig(
    "- {type: notifier, cmd: /n, notifier_options: {provider_events: [add], provider_objects: [user]}}",
    FILE,
  );
  assert.deepEqual(p.notifierOptions?.providerObjects, ["user"]);
});

Deno.test("rule: fs_events are SFTPGo's filesystem event names", () => {
  rejects(lines("- type: notifier", "  cmd: /n", "  notifier_options:", "    fs_events: [upload, downlod]"), {
    line: 4,
    column: 25,
    path: "plugins[0].notifier_options.fs_events[1]",
    expected: 'one of "upload", "pre-upload"',
    found: '"downlod"',
    hint: 'did you mean "download"?',
  });
});

Deno.test("rule: provider_events and provider_objects are SFTPGo's names", () => {
  rejects(
    lines(
      "- type: notifier",
      "  cmd: /n",
      "  notifier_options:",
      "    provider_events: [add, remove]",
      "    provider_objects: [user]",
    ),
    {
      line: 4,
      column: 28,
      path: "plugins[0].notifier_options.provider_events[1]",
      expected: 'one of "add", "update", "delete"',
      found: '"remove"',
    },
  );
  rejects(
    lines(
      "- type: notifier",
      "  cmd: /n",
      "  notifier_options:",
      "    provider_events: [add]",
      "    provider_objects: [users]",
    ),
    {
      line: 5,
      column: 24,
      path: "plugins[0].notifier_options.provider_objects[0]",
      expected: 'one of "user", "folder"',
      found: '"users"',
      hint: 'did you mean "user"?',
    },
  );
});

Deno.test("rule: log_events are event codes 1 to 5", () => {
  rejects(lines("- type: notifier", "  cmd: /n", "  notifier_options:", "    log_events: [1, 6]"), {
    line: 4,
    column: 21,
    path: "plugins[0].notifier_options.log_events[1]",
    expected: "an integer from 1 to 5 (1 login failed, 2 no such user, 3 no login tried, 4 not negotiated, " +
      "5 login ok)",
    found: "6",
  });
});

Deno.test("rule: retry_max_time is a non-negative integer of seconds", () => {
  const error = rejects(
    lines(
      "plugins:",
      "  - type: ipfilter",
      "    cmd: /usr/bin/filter",
      "  - type: notifier",
      "    cmd: /usr/bin/notifier",
      "    notifier_options:",
      "      fs_events: [upload]",
      "      retry_max_time: abc",
    ),
    {
      line: 8,
      column: 23,
      path: "plugins[1].notifier_options.retry_max_time",
      expected: "an integer from 0 to 2147483 (seconds",
      found: '"abc"',
    },
  );
  assert.equal(
    error.message,
    `${FILE}:8:23: plugins[1].notifier_options.retry_max_time: expected an integer from 0 to 2147483 (seconds; ` +
      `0 disables retries; a longer time overflows the retry timer, which would then fire at once), found "abc"`,
  );
  rejects(
    lines("- type: notifier", "  cmd: /n", ...NOTIFIER.map((l) => l.slice(2)), "    retry_max_time: -1"),
    {
      line: 5,
      column: 21,
      path: "plugins[0].notifier_options.retry_max_time",
      expected: "an integer from 0 to 2147483 (seconds",
      found: "-1",
    },
  );
});

Deno.test("rule: retry_queue_max_size is a non-negative integer", () => {
  rejects(
    lines(
      "- type: notifier",
      "  cmd: /n",
      ...NOTIFIER.map((l) => l.slice(2)),
      "    retry_queue_max_size: 1.5",
    ),
    {
      line: 5,
      column: 27,
      path: "plugins[0].notifier_options.retry_queue_max_size",
      expected: "a non-negative integer (0 for unlimited)",
      found: "1.5",
    },
  );
});

Deno.test("rule: kms_options.scheme is one of SFTPGo's KMS schemes", () => {
  rejects(
    lines("- type: kms", "  cmd: /k", "  kms_options:", "    scheme: vault", "    encrypted_status: AWS"),
    {
      line: 4,
      column: 13,
      path: "plugins[0].kms_options.scheme",
      expected: 'one of "awskms", "gcpkms", "hashivault", "azurekeyvault", "ocikeyvault"',
      found: '"vault"',
    },
  );
});

Deno.test("rule: kms_options.encrypted_status is one of SFTPGo's secret statuses", () => {
  rejects(
    lines("- type: kms", "  cmd: /k", "  kms_options:", "    scheme: awskms", "    encrypted_status: aws"),
    {
      line: 5,
      column: 23,
      path: "plugins[0].kms_options.encrypted_status",
      expected: 'one of "AWS", "GCP", "VaultTransit", "AzureKeyVault", "OracleKeyVault"',
      found: '"aws"',
      hint: 'did you mean "AWS"?',
    },
  );
});

Deno.test("rule: kms schemes are unique across kms plugins", () => {
  rejects(
    lines(
      "plugins:",
      "  - type: kms",
      "    cmd: /k1",
      "    kms_options: {scheme: awskms, encrypted_status: AWS}",
      "  - type: kms",
      "    cmd: /k2",
      "    kms_options: {scheme: awskms, encrypted_status: GCP}",
    ),
    {
      line: 7,
      column: 27,
      path: "plugins[1].kms_options.scheme",
      expected: "a scheme not used by another kms plugin",
      found: '"awskms"',
      hint: "already used by plugins[0] at line 4",
    },
  );
});

Deno.test("rule: kms encrypted statuses are unique across kms plugins", () => {
  rejects(
    lines(
      "plugins:",
      "  - type: kms",
      "    cmd: /k1",
      "    kms_options: {scheme: awskms, encrypted_status: AWS}",
      "  - type: kms",
      "    cmd: /k2",
      "    kms_options: {scheme: gcpkms, encrypted_status: AWS}",
    ),
    {
      line: 7,
      column: 53,
      path: "plugins[1].kms_options.encrypted_status",
      expected: "an encrypted_status not used by another kms plugin",
      found: '"AWS"',
      hint: "already used by plugins[0] at line 4",
    },
  );
});

Deno.test("rule: auth_options.scope is an integer from 1 to 15", () => {
  for (const [value, found] of [["0", "0"], ["16", "16"], ["-1", "-1"]]) {
    rejects(lines("- type: auth", "  cmd: /a", "  auth_options:", `    scope: ${value}`), {
      line: 4,
      column: 12,
      path: "plugins[0].auth_options.scope",
      expected: "an integer from 1 to 15 (bitmask: 1 password, 2 public key, 4 keyboard-interactive, " +
        "8 TLS certificate)",
      found,
    });
  }
  rejects(lines("- type: auth", "  cmd: /a"), {
    line: 1,
    column: 3,
    path: "plugins[0].auth_options.scope",
    expected: "an integer from 1 to 15",
    found: "nothing",
  });
});

Deno.test("rule: at most one eventsearcher", () => {
  rejects(
    lines(
      "plugins:",
      "  - type: eventsearcher",
      "    cmd: /s1",
      "  - type: ipfilter",
      "    cmd: /f",
      "  - type: eventsearcher",
      "    cmd: /s2",
    ),
    {
      line: 6,
      column: 11,
      path: "plugins[2].type",
      expected: "at most one eventsearcher plugin",
      found: "a second one",
      hint: "the first is plugins[0] at line 2",
    },
  );
});

Deno.test("rule: tether must be a mapping", () => {
  rejects(lines("- type: ipfilter", "  cmd: /f", "  tether: deno"), {
    line: 3,
    column: 11,
    path: "plugins[0].tether",
    expected: "a mapping",
    found: '"deno"',
  });
});

Deno.test("rule: tether.runtime is auto, deno or native", () => {
  rejects(lines("- type: ipfilter", "  cmd: /f", "  tether:", "    runtime: node"), {
    line: 4,
    column: 14,
    path: "plugins[0].tether.runtime",
    expected: 'one of "auto", "deno", "native"',
    found: '"node"',
  });
});

Deno.test("rule: tether timeouts are positive integers of milliseconds", () => {
  rejects(lines("- type: ipfilter", "  cmd: /f", "  tether:", "    start_timeout_ms: 0"), {
    line: 4,
    column: 23,
    path: "plugins[0].tether.start_timeout_ms",
    expected: "an integer from 1 to 2147483647 (milliseconds",
    found: "0",
  });
  // Tether's own keys are strictly typed: no SFTPGo-style string-to-number decoding.
  rejects(lines("- type: ipfilter", "  cmd: /f", "  tether:", '    call_timeout_ms: "5000"'), {
    line: 4,
    column: 22,
    path: "plugins[0].tether.call_timeout_ms",
    expected: "an integer from 1 to 2147483647 (milliseconds",
    found: '"5000"',
  });
});

Deno.test("rule: tether.health_check_interval_ms is a non-negative integer", () => {
  rejects(lines("- type: ipfilter", "  cmd: /f", "  tether:", "    health_check_interval_ms: -5"), {
    line: 4,
    column: 31,
    path: "plugins[0].tether.health_check_interval_ms",
    expected: "0 (no health checks) or an integer from 1 to 2147483647",
    found: "-5",
  });
});

Deno.test("rule: tether.restart backoffs are positive and max is at least initial; max_restarts >= 0", () => {
  rejects(
    lines(
      "- type: ipfilter",
      "  cmd: /f",
      "  tether:",
      "    restart:",
      "      initial_backoff_ms: 1000",
      "      max_backoff_ms: 500",
    ),
    {
      line: 6,
      column: 23,
      path: "plugins[0].tether.restart.max_backoff_ms",
      expected: "an integer no smaller than initial_backoff_ms (1000)",
      found: "500",
    },
  );
  rejects(lines("- type: ipfilter", "  cmd: /f", "  tether: {restart: {max_restarts: -1}}"), {
    line: 3,
    column: 36,
    path: "plugins[0].tether.restart.max_restarts",
    expected: "a non-negative integer (0 for unlimited)",
    found: "-1",
  });
});

Deno.test("rule: tether.permissions values are lists of names (or booleans for sys, run, ffi)", () => {
  rejects(lines("- type: ipfilter", "  cmd: ./f.ts", "  tether:", "    permissions:", "      read: /etc"), {
    line: 5,
    column: 13,
    path: "plugins[0].tether.permissions.read",
    expected: "a list of absolute paths",
    found: '"/etc"',
  });
  rejects(lines("- type: ipfilter", "  cmd: ./f.ts", "  tether:", "    permissions:", "      sys: yes"), {
    line: 5,
    column: 12,
    path: "plugins[0].tether.permissions.sys",
    expected: "true, false or a list of non-empty strings",
    found: '"yes"',
  });
});

Deno.test("rule: path grants are absolute, no grant has a comma, unix sockets are absolute", () => {
  rejects(
    lines("- type: ipfilter", "  cmd: ./f.ts", "  tether:", "    permissions:", "      write: [/tmp, ./out]"),
    {
      line: 5,
      column: 21,
      path: "plugins[0].tether.permissions.write[1]",
      expected: "an absolute path (starting with /)",
      found: '"./out"',
    },
  );
  rejects(
    lines(
      "- type: ipfilter",
      "  cmd: ./f.ts",
      "  tether:",
      "    permissions:",
      "      net: [unix:run/x.sock]",
    ),
    {
      line: 5,
      column: 13,
      path: "plugins[0].tether.permissions.net[0]",
      expected: "host, host:port or unix:/absolute/socket/path",
      found: '"unix:run/x.sock"',
    },
  );
});

Deno.test("rule: permissions apply only to runtime deno", () => {
  rejects(
    lines(
      "- type: ipfilter",
      "  cmd: /usr/bin/filter",
      "  tether:",
      "    permissions:",
      "      read: [/etc]",
    ),
    {
      line: 5,
      column: 7,
      path: "plugins[0].tether.permissions",
      expected: "no permissions (they only apply to runtime deno)",
      found: "grants for read",
      hint: 'cmd "/usr/bin/filter" resolves to runtime native; set "runtime: deno"',
    },
  );
});

Deno.test("rule: run, ffi and all grants need allow_broad_permissions: true", () => {
  const cases: [string, string, string][] = [
    ["run: [git]", 'a list ["git"]', "run"],
    ["ffi: true", "true", "ffi"],
    ["all: true", "true", "all"],
  ];
  for (const [grant, found, key] of cases) {
    rejects(
      lines("- type: ipfilter", "  cmd: ./filter.ts", "  tether:", "    permissions:", `      ${grant}`),
      {
        line: 5,
        column: 12,
        path: `plugins[0].tether.permissions.${key}`,
        expected: `no ${key} grant unless allow_broad_permissions is true`,
        found,
        hint: `add "allow_broad_permissions: true" to this plugin's tether mapping`,
      },
    );
  }
  // An empty grant list or false is no grant at all.
  const [p] = parsePluginsConfig(
    "- {type: ipfilter, cmd: ./f.ts, tether: {permissions: {run: [], ffi: false}}}",
    FILE,
  );
  assert.deepEqual([p.tether.permissions.run, p.tether.permissions.ffi], [[], []]);
});

Deno.test("rule: uid and gid only for native plugins", () => {
  rejects(lines("- type: ipfilter", "  cmd: ./filter.ts", "  tether:", "    gid: 100"), {
    line: 4,
    column: 10,
    path: "plugins[0].tether.gid",
    expected: "gid only for a native plugin",
    found: "100",
    hint: 'cmd "./filter.ts" resolves to runtime deno',
  });
  rejects(lines("- type: ipfilter", "  cmd: /bin/f", "  tether:", "    uid: -1"), {
    line: 4,
    column: 10,
    path: "plugins[0].tether.uid",
    expected: "a non-negative integer",
    found: "-1",
  });
});

Deno.test("rule: unknown keys warn (with suggestions) instead of failing", () => {
  const plugins = parsePluginsConfig(
    lines(
      "plugins:",
      "  - type: auth",
      "    cmd: /a",
      "    scope: 1",
      "    auth_options: {scope: 1, scop: 2}",
      "    runtime: deno",
      "    tether: {restart: {max_restart: 3}}",
      "    comment: anything",
    ),
    FILE,
  );
  assert.equal(plugins.length, 1);
  assert.deepEqual(texts(plugins), [
    `${FILE}:4:5: plugins[0].scope: unknown key (did you mean auth_options.scope?); ` +
    "SFTPGo ignores it and so does Tether",
    `${FILE}:5:30: plugins[0].auth_options.scop: unknown key (did you mean "scope"?); ` +
    "SFTPGo ignores it and so does Tether",
    `${FILE}:6:5: plugins[0].runtime: unknown key (did you mean tether.runtime?); ` +
    "SFTPGo ignores it and so does Tether",
    `${FILE}:7:24: plugins[0].tether.restart.max_restart: unknown key (did you mean "max_restarts"?); ` +
    "SFTPGo ignores it and so does Tether",
    `${FILE}:8:5: plugins[0].comment: unknown key; SFTPGo ignores it and so does Tether`,
  ]);
  const w = plugins.warnings[0];
  assert.deepEqual([w.file, w.line, w.column, w.path], [FILE, 4, 5, "plugins[0].scope"]);
});

Deno.test("rule: options for another plugin type warn when they are set", () => {
  const plugins = parsePluginsConfig(
    lines("- type: ipfilter", "  cmd: /f", "  auth_options: {scope: 1}", "  kms_options: {scheme: ''}"),
    FILE,
  );
  assert.equal(plugins[0].authOptions, undefined);
  assert.deepEqual(texts(plugins), [
    `${FILE}:3:17: plugins[0].auth_options: ignored for type "ipfilter" ` +
    "(SFTPGo reads these options only for that plugin type)",
  ]);
});

Deno.test("rule: shadowed ipfilter and auth plugins warn, following SFTPGo's dispatch", () => {
  const plugins = parsePluginsConfig(
    lines(
      "- {type: ipfilter, cmd: /f1}",
      "- {type: ipfilter, cmd: /f2}",
      "- {type: auth, cmd: /a1, auth_options: {scope: 3}}",
      "- {type: auth, cmd: /a2, auth_options: {scope: 2}}",
      "- {type: auth, cmd: /a3, auth_options: {scope: 6}}",
    ),
    FILE,
  );
  assert.deepEqual(texts(plugins), [
    `${FILE}:1:10: plugins[0].type: only the last ipfilter plugin is used (plugins[1] at line 2); ` +
    "this one is started but never asked",
    `${FILE}:4:48: plugins[3].auth_options.scope: every method in scope 2 is already handled by an earlier ` +
    "auth plugin, so this one is never called",
  ]);
});

// ---------------------------------------------------------------------------------------------------------------
// Reporting

Deno.test("all errors are reported at once, in file order", async () => {
  const path = fixture("multiple-errors.yaml");
  await assert.rejects(() => loadPluginsConfig(path), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.errors.map((e) => `${e.line}:${e.column} ${e.path}`), [
      "2:11 plugins[0].type",
      "4:5 plugins[1].cmd",
      "6:14 plugins[1].auth_options.scope",
      "10:15 plugins[2].kms_options.scheme",
    ]);
    assert.equal(error.errors[0], error);
    const messageLines = error.message.split("\n");
    assert.equal(messageLines.length, 4);
    assert.ok(messageLines.every((l) => l.startsWith(`${path}:`)));
    return true;
  });
});

Deno.test("validatePluginsConfig: same rules without positions", () => {
  const plugins = validatePluginsConfig({
    plugins: [{ type: "auth", cmd: "/a", auth_options: { scope: 1 } }],
  }, "obj");
  assert.deepEqual(plugins[0].source, { file: "obj", line: 0, column: 0, index: 0 });
  assert.throws(
    () =>
      validatePluginsConfig([{
        type: "notifier",
        cmd: "/n",
        notifier_options: { fs_events: ["upload"], retry_max_time: "abc" },
      }]),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.line, 0);
      assert.equal(
        error.message,
        "<inline>: plugins[0].notifier_options.retry_max_time: expected an integer from 0 to 2147483 (seconds; " +
          '0 disables retries; a longer time overflows the retry timer, which would then fire at once), found "abc"',
      );
      return true;
    },
  );
});

Deno.test("loadPluginsConfig refuses HCL, INI and .env files, saying why and what to use", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (
      const [ext, why] of [
        ["hcl", "HCL 1, for which no maintained parser exists on npm"],
        ["ini", "cannot hold the plugins list"],
        ["env", "set SFTPGO_PLUGINS__<n>__<KEY> environment variables instead"],
      ]
    ) {
      const path = `${dir}/sftpgo.${ext}`;
      await Deno.writeTextFile(path, "");
      await assert.rejects(() => loadPluginsConfig(path), (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.ok(
          error.message.startsWith(`${path}: expected a YAML, JSON or TOML file, found a .${ext} file`),
        );
        assert.ok(error.message.includes(why), error.message);
        return true;
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Issue 7 (config side) and issue 9 item 4 (formats)

Deno.test("rule: cmd must not start with '-' (it would read as a flag)", () => {
  const error = rejects(lines("- type: ipfilter", "  cmd: --allow-all.ts"), {
    line: 2,
    column: 8,
    path: "plugins[0].cmd",
    expected: 'a path that does not start with "-"',
    found: '"--allow-all.ts"',
    hint: 'write "./-name" for a file really named so',
  });
  assert.equal(error.errors.length, 1);
  // Arguments come after the entry point (`deno run <flags> <entry> <args>`), so they are the plugin's own.
  const [p] = parsePluginsConfig("- {type: ipfilter, cmd: /opt/f.ts, args: [--verbose, -x]}", FILE);
  assert.deepEqual(p.args, ["--verbose", "-x"]);
});

Deno.test("rule: every *_ms timer and retry_max_time fit a JavaScript timer (2^31-1 ms)", () => {
  const too = 2 ** 31;
  for (
    const [key, column] of [
      ["start_timeout_ms", 23],
      ["call_timeout_ms", 22],
      ["health_check_interval_ms", 31],
    ] as const
  ) {
    rejects(lines("- type: ipfilter", "  cmd: /f", "  tether:", `    ${key}: ${too}`), {
      line: 4,
      column,
      path: `plugins[0].tether.${key}`,
      expected: key.startsWith("health")
        ? "0 (no health checks) or an integer from 1 to 2147483647"
        : "an integer from 1 to 2147483647",
      found: String(too),
    });
  }
  for (const key of ["initial_backoff_ms", "max_backoff_ms"]) {
    const error = rejects(
      lines("- type: ipfilter", "  cmd: /f", "  tether:", "    restart:", `      ${key}: ${too}`),
      {
        line: 5,
        column: key.length + 9,
        path: `plugins[0].tether.restart.${key}`,
        expected: "an integer from 1 to 2147483647",
        found: String(too),
      },
    );
    assert.ok(error.message.includes("overflows the timer, which would then fire at once"));
  }
  rejects(
    lines(
      "- type: notifier",
      "  cmd: /n",
      "  notifier_options:",
      "    fs_events: [upload]",
      "    retry_max_time: 2147484",
    ),
    {
      line: 5,
      column: 21,
      path: "plugins[0].notifier_options.retry_max_time",
      expected: "an integer from 0 to 2147483 (seconds",
      found: "2147484",
    },
  );
  // The largest values are accepted, and 0 still disables health checks and retries.
  const [p] = parsePluginsConfig(
    lines(
      "- type: ipfilter",
      "  cmd: /f",
      "  tether:",
      "    start_timeout_ms: 2147483647",
      "    health_check_interval_ms: 0",
    ),
  );
  assert.equal(p.tether.startTimeoutMs, 2147483647);
  assert.equal(p.tether.healthCheckIntervalMs, 0);
});

Deno.test("rule: grant entries go through validatePermissionEntries (separators, leading '-'), each at its position", () => {
  let error: unknown;
  try {
    parsePluginsConfig(
      lines(
        "- type: ipfilter",
        "  cmd: /opt/f.ts",
        "  tether:",
        "    permissions:",
        '      env: ["A,B"]',
        '      read: ["/srv/a\\n/etc"]',
        '      net: ["-host"]',
      ),
      FILE,
    );
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ConfigError);
  assert.deepEqual(error.errors.map((e) => `${e.line}:${e.column} ${e.path}`), [
    "5:13 plugins[0].tether.permissions.env[0]",
    "6:14 plugins[0].tether.permissions.read[0]",
    "7:13 plugins[0].tether.permissions.net[0]",
  ]);
  const [env, read, net] = error.message.split("\n");
  assert.equal(
    env,
    `${FILE}:5:13: plugins[0].tether.permissions.env[0]: "A,B" contains ",", a list separator in Deno's flags; ` +
      "write one entry per list item",
  );
  assert.ok(read.includes('contains "\\n"'), read);
  assert.ok(net.endsWith('"-host" starts with "-" and would read as a command-line flag'), net);
});

const SAME_PLUGINS = {
  yaml: lines(
    "plugins:",
    "  - type: notifier",
    "    cmd: /usr/local/bin/pubsub",
    "    args: [serve, --x, '8080']",
    "    auto_mtls: true",
    "    notifier_options:",
    "      fs_events: [upload, download]",
    "      retry_max_time: 60",
    "  - type: auth",
    "    cmd: /opt/auth.ts",
    "    auth_options: {scope: 5}",
    "    tether:",
    "      start_timeout_ms: 1000",
    "      permissions: {read: [/srv], net: ['ldap.internal:636']}",
  ),
  json: JSON.stringify(
    {
      plugins: [
        {
          type: "notifier",
          cmd: "/usr/local/bin/pubsub",
          args: ["serve", "--x", "8080"],
          auto_mtls: true,
          notifier_options: { fs_events: ["upload", "download"], retry_max_time: 60 },
        },
        {
          type: "auth",
          cmd: "/opt/auth.ts",
          auth_options: { scope: 5 },
          tether: { start_timeout_ms: 1000, permissions: { read: ["/srv"], net: ["ldap.internal:636"] } },
        },
      ],
    },
    null,
    2,
  ),
  toml: lines(
    "[[plugins]]",
    'type = "notifier"',
    'cmd = "/usr/local/bin/pubsub"',
    'args = ["serve", "--x", "8080"]',
    "auto_mtls = true",
    "[plugins.notifier_options]",
    'fs_events = ["upload", "download"]',
    "retry_max_time = 60",
    "",
    "[[plugins]]",
    'type = "auth"',
    'cmd = "/opt/auth.ts"',
    "auth_options = { scope = 5 }",
    "[plugins.tether]",
    "start_timeout_ms = 1000",
    "[plugins.tether.permissions]",
    'read = ["/srv"]',
    'net = ["ldap.internal:636"]',
  ),
};

Deno.test("formats: YAML, JSON and TOML of the same config give the same plugins", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const loaded = [];
    for (const [ext, text] of Object.entries(SAME_PLUGINS)) {
      const path = `${dir}/sftpgo.${ext}`;
      await Deno.writeTextFile(path, text);
      const plugins = await loadPluginsConfig(path);
      assert.deepEqual(plugins.warnings, [], ext);
      loaded.push(plugins.map(({ source: _source, ...rest }) => rest));
    }
    assert.equal(loaded[0].length, 2);
    assert.deepEqual(loaded[1], loaded[0]);
    assert.deepEqual(loaded[2], loaded[0]);
    assert.equal(loaded[0][1].tether.runtime, "deno");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("formats: TOML errors and warnings carry line and column", () => {
  const text = SAME_PLUGINS.toml.replace("retry_max_time = 60", "retry_max_time = -1\nretry_max_tim = 3");
  let error: unknown;
  try {
    parsePluginsConfig(text, "sftpgo.toml");
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ConfigError);
  assert.equal(error.line, 8);
  assert.equal(error.column, 18);
  assert.equal(error.path, "plugins[0].notifier_options.retry_max_time");
  assert.equal(error.warnings[0].text.split(": ")[0], "sftpgo.toml:9:1");
  assert.ok(error.warnings[0].text.includes('did you mean "retry_max_time"'));
  // An inline-table value inside an array of tables.
  assert.throws(
    () => parsePluginsConfig(SAME_PLUGINS.toml.replace("scope = 5", "scope = 0"), "sftpgo.toml"),
    {
      message: /^sftpgo\.toml:13:26: plugins\[1\]\.auth_options\.scope: expected an integer from 1 to 15/,
    },
  );
  // Syntax errors.
  assert.throws(() => parsePluginsConfig('[[plugins]]\ntype = "auth\n', "sftpgo.toml"), {
    message: /^sftpgo\.toml:2:\d+: invalid TOML: /,
  });
  // The existing fixture loads.
  assert.equal(
    parsePluginsConfig(Deno.readTextFileSync(fixture("sftpgo.toml")), "sftpgo.toml")[0].type,
    "ipfilter",
  );
});

Deno.test("tether.notifier_order: ordered by default, unordered when asked, notifiers only", () => {
  const [plain, unordered, ordered, filter] = parsePluginsConfig(
    lines(
      "- {type: notifier, cmd: /n, notifier_options: {fs_events: [upload]}}",
      "- {type: notifier, cmd: /n, notifier_options: {fs_events: [upload]}, tether: {notifier_order: unordered}}",
      "- {type: notifier, cmd: /n, notifier_options: {fs_events: [upload]}, tether: {notifier_order: ordered}}",
      "- {type: ipfilter, cmd: /f}",
    ),
    FILE,
  );
  assert.equal(plain.tether.notifierOrder, "ordered");
  assert.equal(unordered.tether.notifierOrder, "unordered");
  assert.equal(ordered.tether.notifierOrder, "ordered");
  assert.equal(filter.tether.notifierOrder, undefined);
});

const NOTIFIER_ENTRY = [
  "- type: notifier",
  "  cmd: /n",
  "  notifier_options: {fs_events: [upload]}",
  "  tether:",
];

Deno.test("rule: tether.notifier_order is ordered or unordered, strictly", () => {
  rejects(lines(...NOTIFIER_ENTRY, "    notifier_order: random"), {
    line: 5,
    column: 21,
    path: "plugins[0].tether.notifier_order",
    expected: 'one of "ordered", "unordered"',
    found: '"random"',
  });
  // Tether's keys are not decoded weakly: no case folding, no other types.
  rejects(lines(...NOTIFIER_ENTRY, "    notifier_order: Unordered"), {
    line: 5,
    column: 21,
    path: "plugins[0].tether.notifier_order",
    expected: 'one of "ordered", "unordered"',
    found: '"Unordered"',
  });
  rejects(lines(...NOTIFIER_ENTRY, "    notifier_order: true"), {
    line: 5,
    column: 21,
    path: "plugins[0].tether.notifier_order",
    expected: 'one of "ordered", "unordered"',
    found: "true",
  });
});

Deno.test("rule: tether.notifier_order only for a notifier plugin", () => {
  rejects(lines("- type: ipfilter", "  cmd: /f", "  tether:", "    notifier_order: unordered"), {
    line: 4,
    column: 21,
    path: "plugins[0].tether.notifier_order",
    expected: "notifier_order only for a notifier plugin",
    found: '"unordered"',
    hint: "this plugin's type is ipfilter; remove notifier_order from its tether mapping",
  });
});

Deno.test("rule: tether.max_receive_message_bytes is an integer from 1 to 2^31-1 bytes; absent means PluginClient's default", () => {
  const [set] = parsePluginsConfig(
    lines("- type: ipfilter", "  cmd: /f", "  tether:", "    max_receive_message_bytes: 2147483647"),
    FILE,
  );
  assert.equal(set.tether.maxReceiveMessageBytes, 2 ** 31 - 1);
  const [unset] = parsePluginsConfig(lines("- type: ipfilter", "  cmd: /f"), FILE);
  assert.equal(unset.tether.maxReceiveMessageBytes, undefined);
  for (
    const [value, found] of [["0", "0"], ["2147483648", "2147483648"], ['"64MiB"', '"64MiB"'], ["1.5", "1.5"]]
  ) {
    rejects(lines("- type: ipfilter", "  cmd: /f", "  tether:", `    max_receive_message_bytes: ${value}`), {
      line: 4,
      column: 32,
      path: "plugins[0].tether.max_receive_message_bytes",
      expected: "an integer from 1 to 2147483647 (bytes; 2^31-1 is go-plugin's own limit)",
      found,
    });
  }
});

Deno.test("rule: tether.memory_trim_idle_ms is 0 (off) or 100 to 86400000 ms, for deno plugins only; absent means PluginClient's default", () => {
  const trim = (value: string, cmd = "/opt/f.ts") =>
    lines("- type: ipfilter", `  cmd: ${cmd}`, "  tether:", `    memory_trim_idle_ms: ${value}`);
  assert.equal(parsePluginsConfig(trim("500"), FILE)[0].tether.memoryTrimIdleMs, 500);
  assert.equal(parsePluginsConfig(trim("0"), FILE)[0].tether.memoryTrimIdleMs, 0);
  assert.equal(
    parsePluginsConfig(lines("- type: ipfilter", "  cmd: /opt/f.ts"), FILE)[0].tether.memoryTrimIdleMs,
    undefined,
  );
  for (
    const [value, found] of [["99", "99"], ["86400001", "86400001"], ["-1", "-1"], ['"2s"', '"2s"'], [
      "1.5",
      "1.5",
    ]]
  ) {
    rejects(trim(value), {
      line: 4,
      column: 26,
      path: "plugins[0].tether.memory_trim_idle_ms",
      expected: "0 (no idle memory trim) or an integer from 100 to 86400000 (milliseconds)",
      found,
    });
  }
  rejects(trim("500", "/bin/f"), {
    line: 4,
    column: 26,
    path: "plugins[0].tether.memory_trim_idle_ms",
    expected: "memory_trim_idle_ms only for a deno plugin",
    found: "500",
    hint: 'cmd "/bin/f" resolves to runtime native',
  });
});
