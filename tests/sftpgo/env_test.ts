import assert from "node:assert/strict";
import { pluginEnvironment, pluginEnvPrefix } from "../../src/sftpgo/env.ts";
import { ConfigError, parsePluginsConfig } from "../../src/sftpgo/config.ts";

const HOST = {
  SFTPGO_PLUGIN_PUBSUB_URL: "nats://nats:4222",
  SFTPGO_PLUGIN_PUBSUB_TOPIC: "events",
  SFTPGO_PLUGIN_AUTH_LDAP: "ldap://x",
  PATH: "/usr/bin:/bin",
  HOME: "/var/lib/sftpgo",
  TZ: "UTC",
};

const linux = { os: "linux" } as const;
const windows = { os: "windows" } as const;

Deno.test('env_prefix "": prefix from the cmd base name, upper-cased, "-" → "_", extension dropped', () => {
  const config = { cmd: "/usr/local/bin/sftpgo-plugin-pubsub", envPrefix: "", envVars: [] };
  assert.equal(pluginEnvPrefix(config, linux), "SFTPGO_PLUGIN_PUBSUB_");
  assert.deepEqual(pluginEnvironment(config, HOST, linux), {
    SFTPGO_PLUGIN_PUBSUB_URL: "nats://nats:4222",
    SFTPGO_PLUGIN_PUBSUB_TOPIC: "events",
  });
});

Deno.test('env_prefix "": Go filepath.Base/Ext edge cases', () => {
  const prefix = (cmd: string, options: { os: "linux" | "windows" } = linux) =>
    pluginEnvPrefix({ cmd, envPrefix: "" }, options);
  assert.equal(prefix("/opt/sftpgo-plugin-auth.exe"), "SFTPGO_PLUGIN_AUTH_");
  // Only the last extension goes; other dots stay.
  assert.equal(prefix("/opt/my.plugin.bin"), "MY.PLUGIN_");
  // A leading-dot name is all extension, as filepath.Ext sees it.
  assert.equal(prefix("/opt/.plugin"), "_");
  // Trailing slashes are ignored by filepath.Base.
  assert.equal(prefix("/opt/plugin-dir/"), "PLUGIN_DIR_");
  assert.equal(prefix("relative-plugin"), "RELATIVE_PLUGIN_");
  // A script: the extension is dropped too.
  assert.equal(prefix("./plugins/audit-log.ts"), "AUDIT_LOG_");
  // "\" is not a separator on Linux, so the whole string is the base name there.
  assert.equal(prefix("C:\\plugins\\geo-ip.exe"), "C:\\PLUGINS\\GEO_IP_");
  assert.equal(prefix("C:\\plugins\\geo-ip.exe", windows), "GEO_IP_");
  assert.equal(prefix("C:/plugins/geo-ip.exe", windows), "GEO_IP_");
  // Go's ToUpper maps code points one to one: ß stays ß (JavaScript would give "SS").
  assert.equal(prefix("/opt/straße"), "STRAßE_");
});

Deno.test("env_prefix none: nothing by prefix, env_vars still added", () => {
  const config = { cmd: "/usr/local/bin/sftpgo-plugin-pubsub", envPrefix: "none", envVars: ["TZ"] };
  assert.equal(pluginEnvPrefix(config, linux), "");
  assert.deepEqual(pluginEnvironment(config, HOST, linux), { TZ: "UTC" });
  assert.deepEqual(pluginEnvironment({ ...config, envVars: [] }, HOST, linux), {});
});

Deno.test("env_prefix *: the whole host environment, env_vars not consulted", () => {
  const config = { cmd: "/usr/bin/x", envPrefix: "*", envVars: ["UNSET_VAR"] };
  const env = pluginEnvironment(config, HOST, linux);
  assert.deepEqual(env, HOST);
  // SFTPGo returns before the env_vars loop, so an unset name does not appear as "".
  assert.equal("UNSET_VAR" in env, false);
  assert.notEqual(env, HOST);
});

Deno.test("custom env_prefix: matched on NAME=value, as written (case-sensitive)", () => {
  assert.deepEqual(
    pluginEnvironment({ cmd: "/usr/bin/x", envPrefix: "SFTPGO_PLUGIN_", envVars: [] }, HOST, linux),
    {
      SFTPGO_PLUGIN_PUBSUB_URL: "nats://nats:4222",
      SFTPGO_PLUGIN_PUBSUB_TOPIC: "events",
      SFTPGO_PLUGIN_AUTH_LDAP: "ldap://x",
    },
  );
  assert.deepEqual(
    pluginEnvironment({ cmd: "/usr/bin/x", envPrefix: "sftpgo_", envVars: [] }, HOST, linux),
    {},
  );
  // SFTPGo tests the prefix against the whole "NAME=value" string, so a prefix can reach into the value.
  assert.deepEqual(pluginEnvironment({ cmd: "/usr/bin/x", envPrefix: "TZ=U", envVars: [] }, HOST, linux), {
    TZ: "UTC",
  });
  assert.deepEqual(pluginEnvironment({ cmd: "/usr/bin/x", envPrefix: "TZ=X", envVars: [] }, HOST, linux), {});
});

Deno.test("env_vars: added after the prefix selection; unset names arrive empty, as in SFTPGo", () => {
  const config = {
    cmd: "/usr/local/bin/sftpgo-plugin-auth",
    envPrefix: "",
    envVars: ["PATH", "HOME", "LANG"],
  };
  assert.deepEqual(pluginEnvironment(config, HOST, linux), {
    SFTPGO_PLUGIN_AUTH_LDAP: "ldap://x",
    PATH: "/usr/bin:/bin",
    HOME: "/var/lib/sftpgo",
    // SFTPGo appends "LANG=" + os.Getenv("LANG") whether or not LANG is set.
    LANG: "",
  });
});

Deno.test("the environment starts empty: PATH and HOME are absent unless selected", () => {
  const env = pluginEnvironment({ cmd: "/usr/bin/plugin", envPrefix: "", envVars: [] }, HOST, linux);
  assert.deepEqual(env, {});
});

Deno.test("Windows: env_vars are looked up ignoring case, the prefix match is still exact", () => {
  const host = { Path: "C:\\Windows", GEO_IP_DB: "c:\\geo.mmdb", geo_ip_lower: "x" };
  const config = { cmd: "C:\\plugins\\geo-ip.exe", envPrefix: "", envVars: ["PATH"] };
  assert.deepEqual(pluginEnvironment(config, host, windows), {
    GEO_IP_DB: "c:\\geo.mmdb",
    PATH: "C:\\Windows",
  });
  assert.deepEqual(pluginEnvironment({ ...config, cmd: "/opt/geo-ip" }, host, linux), {
    GEO_IP_DB: "c:\\geo.mmdb",
    PATH: "",
  });
});

Deno.test("a __proto__ variable is stored as data", () => {
  const host = JSON.parse('{"__proto__": "x", "A_1": "y"}') as Record<string, string>;
  const env = pluginEnvironment({ cmd: "/opt/a", envPrefix: "*", envVars: [] }, host, linux);
  assert.equal(Object.getPrototypeOf(env), Object.prototype);
  assert.deepEqual(Object.keys(env).sort(), ["A_1", "__proto__"]);
});

// ---------------------------------------------------------------------------------------------------------------
// SFTPGO_PLUGINS__<n>__<KEY> overrides (SFTPGo internal/config/config.go getPluginsFromEnv)

const FILE_CONFIG = [
  "plugins:",
  "  - type: notifier",
  "    cmd: /usr/bin/pubsub",
  "    args: [serve]",
  "    notifier_options: {fs_events: [upload], retry_max_time: 60}",
].join("\n");

Deno.test("env overrides: fields of an existing entry are replaced, SFTPGo's parsing rules apply", () => {
  const [p] = parsePluginsConfig(FILE_CONFIG, "sftpgo.yaml", {
    env: {
      SFTPGO_PLUGINS__0__CMD: "/opt/pubsub-v2",
      SFTPGO_PLUGINS__0__ARGS: " serve , --topic,, x ",
      SFTPGO_PLUGINS__0__AUTO_MTLS: " t ",
      SFTPGO_PLUGINS__0__NOTIFIER_OPTIONS__FS_EVENTS: "upload,download",
      SFTPGO_PLUGINS__0__NOTIFIER_OPTIONS__LOG_EVENTS: "1, 5",
      SFTPGO_PLUGINS__0__NOTIFIER_OPTIONS__RETRY_QUEUE_MAX_SIZE: "10",
      SFTPGO_PLUGINS__0__ENV_VARS: "",
      UNRELATED: "x",
    },
  });
  assert.equal(p.cmd, "/opt/pubsub-v2");
  // Split on ",", trimmed, empty items dropped.
  assert.deepEqual(p.args, ["serve", "--topic", "x"]);
  assert.equal(p.autoMtls, true);
  assert.deepEqual(p.notifierOptions?.fsEvents, ["upload", "download"]);
  assert.deepEqual(p.notifierOptions?.logEvents, [1, 5]);
  // Fields the environment does not set keep the file's values.
  assert.equal(p.notifierOptions?.retryMaxTime, 60);
  assert.equal(p.notifierOptions?.retryQueueMaxSize, 10);
  assert.deepEqual(p.envVars, []);
  // The entry is still located in the file.
  assert.equal(p.source.file, "sftpgo.yaml");
  assert.equal(p.source.line, 2);
});

Deno.test("env overrides: an index past the end appends, as SFTPGo does, and only 0..9 are read", () => {
  const plugins = parsePluginsConfig(FILE_CONFIG, "sftpgo.yaml", {
    env: {
      SFTPGO_PLUGINS__3__TYPE: "auth",
      SFTPGO_PLUGINS__3__CMD: "/opt/auth",
      SFTPGO_PLUGINS__3__AUTH_OPTIONS__SCOPE: "5",
      SFTPGO_PLUGINS__10__TYPE: "ipfilter",
      SFTPGO_PLUGINS__0__CMDD: "/x",
    },
  });
  assert.equal(plugins.length, 2);
  assert.equal(plugins[1].type, "auth");
  assert.equal(plugins[1].authOptions?.scope, 5);
  assert.equal(plugins[1].source.file, "environment variable SFTPGO_PLUGINS__3__*");
  const texts = plugins.warnings.map((w) => w.text);
  assert.ok(
    texts.includes(
      "environment variable SFTPGO_PLUGINS__3__*: adds plugins[1], not plugins[3]: SFTPGo appends an index past " +
        "the end of the list",
    ),
    texts.join("\n"),
  );
  assert.ok(
    texts.some((t) => t.startsWith("environment variable SFTPGO_PLUGINS__10__TYPE: SFTPGo only reads")),
  );
  assert.ok(
    texts.some((t) => t.startsWith('environment variable SFTPGO_PLUGINS__0__CMDD: unknown key "CMDD"')),
  );
});

Deno.test("env overrides: errors name the variable, not a file line", () => {
  assert.throws(
    () =>
      parsePluginsConfig(FILE_CONFIG, "sftpgo.yaml", {
        env: {
          SFTPGO_PLUGINS__0__NOTIFIER_OPTIONS__FS_EVENTS: "upload,uplod",
          SFTPGO_PLUGINS__0__AUTO_MTLS: "yes",
        },
      }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      const messages = error.message.split("\n");
      assert.equal(messages.length, 2);
      assert.ok(
        messages.includes(
          "environment variable SFTPGO_PLUGINS__0__AUTO_MTLS: plugins[0].auto_mtls: expected a boolean (1, t, true, " +
            '0, f, false, ...; SFTPGo would silently ignore anything else), found "yes"',
        ),
        messages.join("\n"),
      );
      assert.ok(
        messages.some((m) =>
          m.startsWith(
            "environment variable SFTPGO_PLUGINS__0__NOTIFIER_OPTIONS__FS_EVENTS: " +
              "plugins[0].notifier_options.fs_events[1]: expected one of",
          ) && m.includes('did you mean "upload"?')
        ),
        messages.join("\n"),
      );
      return true;
    },
  );
  // Config-level rules apply to values from the environment too (issue 7: no leading "-").
  assert.throws(
    () =>
      parsePluginsConfig("plugins: []", "sftpgo.yaml", {
        env: { SFTPGO_PLUGINS__0__TYPE: "ipfilter", SFTPGO_PLUGINS__0__CMD: "-x" },
      }),
    {
      message:
        /^environment variable SFTPGO_PLUGINS__0__CMD: plugins\[0\]\.cmd: expected a path that does not start with "-"/,
    },
  );
});

Deno.test("env overrides: without an env option nothing is read from the environment", () => {
  const plugins = parsePluginsConfig(FILE_CONFIG, "sftpgo.yaml");
  assert.equal(plugins[0].cmd, "/usr/bin/pubsub");
});
