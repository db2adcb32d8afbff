import assert from "node:assert/strict";
import { pluginEnvironment, pluginEnvPrefix } from "../../src/sftpgo/env.ts";

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
