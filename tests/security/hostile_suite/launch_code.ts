/**
 * Launch attempts on the module system and the decision channels: the plugin's code graph, its own
 * configuration, and what its first statements can reach.
 *
 * @module
 */

import {
  existing,
  fileUrl,
  graph,
  type LaunchAttempt,
  leaks,
  note,
  outside,
  probe,
  reader,
} from "./probe.ts";
import { UNTRUSTED_SOURCES } from "./world.ts";

// ------------------------------------------------------------------ module system
export const moduleAttempts: LaunchAttempt[] = [
  graph("lmod01", "static text import of a file outside the tree (literal path)", (w) => ({
    files: {
      "main.ts": `import s from ${
        JSON.stringify(w.ctx.canary)
      } with { type: "text" };\nconsole.error("GOT:" + s);\n`,
    },
  })),
  graph("lmod02", "static JSON import of a file outside the tree", (w) => ({
    files: {
      "main.ts": `import j from ${
        JSON.stringify(w.ctx.secretJson)
      } with { type: "json" };\nconsole.error("GOT:" + JSON.stringify(j));\n`,
    },
  })),
  graph("lmod03", "static bytes import of a file outside the tree", (w) => ({
    files: {
      "main.ts": `import b from ${JSON.stringify(w.ctx.canary)} with { type: "bytes" };\n` +
        `console.error("GOT:" + new TextDecoder().decode(b));\n`,
    },
  })),
  graph("lmod04", "static import of an ES module outside the tree (absolute path)", (w) => ({
    files: {
      "main.ts": `import { secret } from ${
        JSON.stringify(w.ctx.outsideModule)
      };\nconsole.error("GOT:" + secret);\n`,
    },
  })),
  graph("lmod05", "static import of an ES module outside the tree (relative ../../root/mod.js)", () => ({
    files: { "main.ts": `import { secret } from "../../root/mod.js";\nconsole.error("GOT:" + secret);\n` },
  })),
  graph("lmod06", "literal dynamic import() of a text file outside", (w) => ({
    files: {
      "main.ts": `const m = await import(${
        JSON.stringify(w.ctx.canary)
      }, { with: { type: "text" } });\nconsole.error("GOT:" + m.default);\n`,
    },
  })),
  graph("lmod07", "literal dynamic import() of a JSON file outside", (w) => ({
    files: {
      "main.ts":
        `const m = await import(${JSON.stringify(w.ctx.secretJson)}, { with: { type: "json" } });\n` +
        `console.error("GOT:" + JSON.stringify(m.default));\n`,
    },
  })),
  graph("lmod08", "literal dynamic import() of bytes outside", (w) => ({
    files: {
      "main.ts": `const m = await import(${JSON.stringify(w.ctx.canary)}, { with: { type: "bytes" } });\n` +
        `console.error("GOT:" + new TextDecoder().decode(m.default));\n`,
    },
  })),
  graph("lmod09", 'literal import("/etc/shadow", { with: { type: "text" } })', () => ({
    files: {
      "main.ts": `const m = await import("/etc/shadow", { with: { type: "text" } });\n` +
        `console.error("GOT:" + m.default.length + " bytes of /etc/shadow");\n`,
    },
  })),
  graph("lmod10", "require() of an outside CommonJS module from a .cjs entry", (w) => ({
    entry: "main.cjs",
    files: {
      "main.cjs": `const m = require(${
        JSON.stringify(w.ctx.outsideCjs)
      });\nconsole.error("GOT:" + m.secret);\n`,
    },
  })),
  graph("lmod11", "createRequire with a literal outside path", (w) => ({
    files: {
      "main.ts":
        `import { createRequire } from "node:module";\nconst require = createRequire(import.meta.url);\n` +
        `console.error("GOT:" + require(${JSON.stringify(w.ctx.outsideCjs)}).secret);\n`,
    },
  })),
  graph("lmod12", "symlink inside the plugin tree pointing at a module outside", (w) => ({
    links: { "link.js": w.ctx.outsideModule },
    files: { "main.ts": `import { secret } from "./link.js";\nconsole.error("GOT:" + secret);\n` },
  })),
  graph("lmod13", "symlinked directory inside the tree (-> the secrets' directory)", (w) => ({
    links: { "sub": w.ctx.root },
    files: {
      "main.ts":
        `import s from "./sub/secret.txt" with { type: "text" };\nimport { secret } from "./sub/mod.js";\n` +
        `console.error("GOT:" + s + secret);\n`,
    },
  })),
  graph(
    "lmod14",
    "import map in the plugin's own deno.json (given as denoConfig) mapping a bare name outside",
    (w) => ({
      denoConfig: "tree",
      files: {
        "deno.json": JSON.stringify({ imports: { "innocent": fileUrl(w.ctx.outsideModule) } }),
        "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n`,
      },
    }),
  ),
  graph(
    "lmod15",
    "auto-discovered deno.json (no denoConfig given) with an import map leading outside",
    (w) => ({
      files: {
        "deno.json": JSON.stringify({ imports: { "innocent": fileUrl(w.ctx.outsideModule) } }),
        "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n`,
      },
    }),
  ),
  graph("lmod16", "deno.json naming an import map file outside the tree", async (w) => {
    const dir = await outside(w);
    await Deno.writeTextFile(
      `${dir}/import_map.json`,
      JSON.stringify({ imports: { "innocent": fileUrl(w.ctx.outsideModule) } }),
    );
    return {
      denoConfig: "tree",
      files: {
        "deno.json": JSON.stringify({ importMap: `${dir}/import_map.json` }),
        "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n`,
      },
    };
  }),
  graph("lmod17", "auto-discovered deno.json with a 'permissions' set granting read and env", (w) => ({
    files: {
      "deno.json": JSON.stringify({ permissions: { default: { read: true, env: true, sys: true } } }),
      "main.ts": reader(w),
    },
  })),
  graph(
    "lmod18",
    "package in the tree's node_modules whose package.json main is ../../../../root/mod.js",
    () => ({
      files: {
        "package.json": JSON.stringify({
          name: "innocent-app",
          type: "module",
          dependencies: { innocent: "*" },
        }),
        "node_modules/innocent/package.json": JSON.stringify({
          name: "innocent",
          main: "../../../../root/mod.js",
        }),
        "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n`,
      },
    }),
  ),
  graph("lmod19", "node_modules/<pkg> symlinked to a package outside the tree", async (w) => {
    const dir = await outside(w);
    await Deno.mkdir(`${dir}/evilpkg`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/evilpkg/package.json`,
      JSON.stringify({ name: "evilpkg", type: "module", main: "index.js" }),
    );
    await Deno.writeTextFile(`${dir}/evilpkg/index.js`, `export const secret = "PKG-${w.token}";\n`);
    return {
      links: { "node_modules/evilpkg": `${dir}/evilpkg` },
      files: {
        "package.json": JSON.stringify({ name: "innocent", type: "module", dependencies: { evilpkg: "*" } }),
        "main.ts": `import { secret } from "evilpkg";\nconsole.error("GOT:" + secret);\n`,
      },
    };
  }),
  graph("lmod20", "static import of a data: module that literally imports the canary", (w) => {
    const inner = `import s from ${
      JSON.stringify(fileUrl(w.ctx.canary))
    } with { type: "text" }; console.error("GOT:" + s);`;
    return {
      files: {
        "main.ts": `import ${JSON.stringify(`data:text/javascript,${encodeURIComponent(inner)}`)};\n`,
      },
    };
  }),
  graph("lmod21", "literal text import of /proc/self/environ (its own ungranted env)", () => ({
    files: {
      "main.ts":
        `import env from "/proc/self/environ" with { type: "text" };\nconsole.error("GOT:" + env);\n`,
    },
  })),
  graph("lmod22", "Worker from a literal local file outside the tree", (w) => ({
    files: {
      "main.ts":
        `const worker = new Worker(${JSON.stringify(fileUrl(w.ctx.outsideWorker))}, { type: "module" });\n` +
        `worker.onmessage = (e) => { console.error("GOT:" + e.data); Deno.exit(3); };\n` +
        `worker.onerror = (e) => { console.error("refused: " + e.message); Deno.exit(4); };\n` +
        `setTimeout(() => Deno.exit(5), 4000);\n`,
    },
  })),
  graph(
    "lmod23",
    "deno.json in the tree that is a symlink to a config outside (its import map leads outside)",
    async (w) => {
      const dir = await outside(w);
      await Deno.writeTextFile(
        `${dir}/deno.json`,
        JSON.stringify({ imports: { "innocent": fileUrl(w.ctx.outsideModule) } }),
      );
      return {
        links: { "deno.json": `${dir}/deno.json` },
        files: { "main.ts": `import { secret } from "innocent";\nconsole.error("GOT:" + secret);\n` },
      };
    },
  ),
  graph(
    "lmod24",
    "the plugin's own deno.json sets lock.path outside: does the runtime write the lockfile there?",
    async (w) => ({
      files: {
        "deno.json": JSON.stringify({ lock: { path: `${await outside(w)}/escaped-lmod24.lock` } }),
        "main.ts":
          `import YAML from "npm:yaml@2.9.1";\nconsole.error("loaded " + typeof YAML);\nDeno.exit(3);\n`,
      },
    }),
    "fs-modules",
    (w) => existing([`${w.dir}/outside/escaped-lmod24.lock`]),
  ),
  graph(
    "lmod25",
    "the plugin's own deno.json points lock.path at an existing host JSON file: is it overwritten?",
    async (w) => {
      await Deno.writeTextFile(
        `${await outside(w)}/victim.json`,
        `{"version":"5","owner":"host-${w.token}"}\n`,
      );
      return {
        files: {
          "deno.json": JSON.stringify({ lock: { path: `${w.dir}/outside/victim.json` } }),
          "main.ts":
            `import YAML from "npm:yaml@2.9.1";\nconsole.error("loaded " + typeof YAML);\nDeno.exit(3);\n`,
        },
      };
    },
    "fs-modules",
    (w) =>
      Deno.readTextFileSync(`${w.dir}/outside/victim.json`) === `{"version":"5","owner":"host-${w.token}"}\n`
        ? []
        : ["the runtime overwrote a host file outside the grants with a lockfile"],
  ),
  graph(
    "lmod26",
    "npm import with the plugin's deno.json (nodeModulesDir auto): does the runtime write node_modules/ and " +
      "deno.lock into the plugin's tree (not granted for writing)?",
    () => ({
      files: {
        "deno.json": JSON.stringify({ nodeModulesDir: "auto" }),
        "main.ts":
          `import YAML from "npm:yaml@2.9.1";\nconsole.error("loaded " + typeof YAML);\nDeno.exit(3);\n`,
      },
    }),
    "fs-modules",
    (_w, tree) => existing([`${tree}/node_modules`, `${tree}/deno.lock`]),
  ),
];

// ------------------------------------------------------------------ decision channels (issue 7: the broker's fd)
export const channelAttempts: LaunchAttempt[] = [
  graph(
    "lchan01",
    "forged broker answer: first statement writes a granted request with id 1 on fd 3 " +
      "(node:net Socket({fd: 3})), then reads the canary",
    (w) => ({
      files: {
        "main.ts": `import net from "node:net";\n` +
          `const line = JSON.stringify({ v: 1, pid: 1, id: 1, datetime: new Date().toISOString(), permission: "env", value: "GRPC_TRACE" }) + "\\n";\n` +
          `try { const s = new net.Socket({ fd: 3, readable: false, writable: true }); s.on("error", () => {}); s.write(line); } catch (e) { console.error("refused: " + e); }\n` +
          `await new Promise((r) => setTimeout(r, 300));\n` + reader(w),
      },
    }),
    "decision-channels",
  ),
  {
    id: "lchan02",
    cls: "decision-channels",
    description: "forge audit records on every fd 3..40 at start-up (before any real check) and end",
    expect: "denied",
    run: async (world) => {
      const before = world.events.length;
      const result = await probe(world, "lchan02", {
        files: {
          "main.ts": `import net from "node:net";\nimport fs from "node:fs";\n` +
            `const line = JSON.stringify({ v: 1, pid: 1, id: 77, datetime: new Date().toISOString(), permission: "read", value: "/FORGED-lchan02" }) + "\\n";\n` +
            `for (let fd = 3; fd <= 40; fd++) { try { const s = new net.Socket({ fd, readable: false, writable: true }); s.on("error", () => {}); s.write(line); } catch { try { fs.writeSync(fd, line); } catch { /* no */ } } }\n` +
            `await new Promise((r) => setTimeout(r, 300));\nDeno.exit(3);\n`,
        },
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      const evidence = leaks(world, result);
      for (const event of world.events.slice(before)) {
        if (event.target?.includes("FORGED-lchan02") && !UNTRUSTED_SOURCES.includes(event.source)) {
          evidence.push(
            `the host reported a forged record as the runtime's: ${event.permission} ${event.target}`,
          );
        }
      }
      return { evidence, note: note(result) };
    },
  },
  graph(
    "lchan03",
    "set DENO_PERMISSION_BROKER_PATH-like variables from inside (Deno.env.set) then read",
    (w) => ({
      files: {
        "main.ts":
          `try { Deno.env.set("DENO_PERMISSION_BROKER_PATH", "/tmp/nowhere.sock"); } catch (e) { console.error("refused: " + e); }\n` +
          reader(w),
      },
    }),
    "decision-channels",
  ),
];
