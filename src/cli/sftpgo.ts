/**
 * `tether sftpgo check CONFIG` and `tether sftpgo run CONFIG`.
 *
 * `check` validates an SFTPGo config's plugins section without starting anything: the loader's errors and
 * warnings (file:line:col), each `cmd` (exists, is a file, is executable or, for Deno plugins, readable), each
 * `sha256sum` against the file's bytes, and SFTPGo's `killProcess` collision: before starting a plugin SFTPGo
 * kills the first running process whose executable path (absolute, symlinks resolved) equals that plugin's
 * `cmd` as written, so two plugins with the same `cmd` (e.g. `/usr/local/bin/deno` for two TypeScript plugins)
 * kill each other, and a shared interpreter as `cmd` can kill an unrelated process.
 *
 * `run` starts them under `PluginManager` and shows live status until SIGINT or SIGTERM, which stop the
 * plugins gracefully (exit 0).
 *
 * @module
 */

import { runtimeFor } from "../launch.ts";
import {
  ConfigError,
  type ConfigWarning,
  loadPluginsConfig,
  type PluginConfig,
  type PluginConfigList,
} from "../sftpgo/config.ts";
import { PluginManager, type PluginStatus } from "../sftpgo/manager.ts";
import { parse, str } from "./args.ts";
import { sha256File } from "./checksum.ts";
import { formatLog } from "./plugin.ts";
import { CliError, ExitCode, type Output, UsageError } from "./output.ts";

/** `tether sftpgo --help`. */
export const SFTPGO_HELP = `Usage: tether sftpgo check [options] CONFIG
       tether sftpgo run [options] CONFIG

check  validates the plugins section of an SFTPGo config (sftpgo.yaml, .yml, .json or
       .toml) without starting anything: errors and warnings with file:line, each cmd
       (exists, is a file, executable), each sha256sum against the file, and SFTPGo's
       killProcess collision (before starting a plugin SFTPGo kills the first process
       whose executable path equals its cmd as written, so two plugins with the same
       absolute cmd kill each other).
run    starts the plugins under Tether's PluginManager and shows live status until
       Ctrl-C (SIGINT) or SIGTERM, which stop them gracefully.

Options:
  --no-env          do not apply SFTPGO_PLUGINS__<n>__<KEY> environment overrides
                    (applied by default, as SFTPGo does)
  --base-dir DIR    directory relative cmd paths are resolved against (default: the
                    current directory, as SFTPGo)
  --config FILE     deno.json for unbundled TypeScript plugins (run only)
  --json            check: one JSON document; run: one JSON line per status change
  -h, --help        show this help

Exit codes: 0 ok (check: no errors; run: stopped by a signal), 1 the config cannot be
read, 2 usage, 3 the config has errors, 4 a plugin did not start (run).`;

/** A finding of `check` beyond the loader's: placed as a loader warning is, at either level. */
type Finding = Omit<ConfigWarning, "text"> & { level: "error" | "warning" };

const INTERPRETERS = /^(deno|node|nodejs|bun|python[0-9.]*|perl|ruby|php|java|sh|bash|dash|zsh|env)$/;

function resolveCmd(cmd: string, baseDir: string): string {
  if (cmd.startsWith("/") || !cmd.includes("/")) return cmd;
  return `${baseDir.replace(/\/+$/, "")}/${cmd.replace(/^\.\//, "")}`;
}

function lookPath(name: string): string | undefined {
  let path: string | undefined;
  try {
    path = Deno.env.get("PATH");
  } catch {
    return undefined;
  }
  for (const dir of (path ?? "").split(":")) {
    if (dir === "") continue;
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return `${dir}/${name}`;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

async function load(file: string, useEnv: boolean): Promise<PluginConfigList> {
  try {
    return await loadPluginsConfig(file, useEnv ? { env: Deno.env.toObject() } : {});
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new CliError(
      `cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`,
      ExitCode.failure,
    );
  }
}

async function checkPlugins(
  plugins: PluginConfigList,
  baseDir: string,
  out: Output,
): Promise<{ findings: Finding[]; plugins: Record<string, unknown>[] }> {
  const findings: Finding[] = [];
  const at = (p: PluginConfig, field: string, level: Finding["level"], message: string) =>
    findings.push({
      level,
      file: p.source.file,
      line: p.source.line,
      column: p.source.column,
      path: `plugins[${p.source.index}].${field}`,
      message,
    });
  const report: Record<string, unknown>[] = [];
  for (const p of plugins) {
    const runtime = runtimeFor(p.cmd, p.tether.runtime);
    let resolved: string | undefined = resolveCmd(p.cmd, baseDir);
    if (!resolved.includes("/")) {
      resolved = lookPath(resolved);
      if (resolved === undefined) at(p, "cmd", "error", `${JSON.stringify(p.cmd)} is not found in PATH`);
    }
    const entry: Record<string, unknown> = {
      index: p.source.index,
      type: p.type,
      cmd: p.cmd,
      runtime,
      resolved,
    };
    if (resolved !== undefined) {
      let info: Deno.FileInfo | undefined;
      try {
        info = await Deno.stat(resolved);
      } catch (error) {
        at(
          p,
          "cmd",
          "error",
          `${resolved} ${
            error instanceof Deno.errors.NotFound ? "does not exist" : `cannot be read: ${error}`
          }`,
        );
      }
      if (info !== undefined && !info.isFile) at(p, "cmd", "error", `${resolved} is not a file`);
      if (info?.isFile && runtime === "native" && ((info.mode ?? 0) & 0o111) === 0) {
        at(
          p,
          "cmd",
          "error",
          `${resolved} is not executable (mode ${((info.mode ?? 0) & 0o7777).toString(8)}); chmod +x it`,
        );
      }
      if (info?.isFile && p.sha256sum !== undefined) {
        try {
          const { sha256 } = await sha256File(resolved, (done, total) => {
            if (total > 16 << 20) out.progress(`hashing ${resolved}: ${Math.floor((done / total) * 100)}%`);
          });
          out.clearProgress();
          entry.sha256 = { expected: p.sha256sum, actual: sha256, ok: sha256 === p.sha256sum };
          if (sha256 !== p.sha256sum) {
            at(
              p,
              "sha256sum",
              "error",
              `does not match ${resolved}: the file's SHA-256 is ${sha256}, the config says ${p.sha256sum} ` +
                "(SFTPGo and Tether refuse to start it; run `tether checksum` on the file you mean to run)",
            );
          }
        } catch (error) {
          at(p, "sha256sum", "error", `cannot hash ${resolved}: ${error}`);
        }
      }
      let real: string | undefined;
      try {
        real = Deno.realPathSync(resolved);
      } catch {
        real = undefined;
      }
      entry.executable = real;
      const base = (real ?? resolved).split("/").pop() ?? "";
      // killProcess compares /proc/<pid>/exe (absolute, symlinks resolved) with cmd as written.
      if (real !== undefined && real === p.cmd && INTERPRETERS.test(base)) {
        at(
          p,
          "cmd",
          "warning",
          `is the interpreter ${base}: before starting this plugin SFTPGo kills the first running process whose ` +
            `executable is ${
              JSON.stringify(p.cmd)
            }, which may be any unrelated ${base} process on the host ` +
            "(Tether runs TypeScript plugins from cmd: plugin.ts instead)",
        );
      }
    }
    report.push(entry);
  }
  // SFTPGo's killProcess(cmd), run before each plugin starts, kills the first process whose /proc/<pid>/exe
  // (absolute, symlinks resolved) equals cmd as written. So plugins sharing an executable collide when one of
  // them names it by that exact path.
  const byExecutable = new Map<string, PluginConfig[]>();
  plugins.forEach((p, i) => {
    const real = report[i].executable as string | undefined;
    if (real !== undefined) byExecutable.set(real, [...(byExecutable.get(real) ?? []), p]);
  });
  for (const [real, same] of byExecutable) {
    if (same.length < 2) continue;
    const where = (q: PluginConfig) =>
      `plugins[${q.source.index}]${q.source.line > 0 ? ` (line ${q.source.line})` : ""}`;
    for (const p of same) {
      const others = same.filter((q) => q !== p).map(where).join(", ");
      if (p.cmd === real) {
        at(
          p,
          "cmd",
          "error",
          `${
            JSON.stringify(p.cmd)
          } is also the executable of ${others}: before starting a plugin SFTPGo kills the ` +
            "running process whose executable is its cmd, so these plugins kill each other; give each its own " +
            "executable (a copy or a wrapper script)",
        );
      } else if (!same.some((q) => q.cmd === real)) {
        at(
          p,
          "cmd",
          "warning",
          `runs the same executable (${real}) as ${others}; SFTPGo's killProcess matches a running plugin only ` +
            `when cmd is written as that absolute path, so it neither kills nor cleans up these (write ${real} ` +
            "and they would kill each other)",
        );
      }
    }
  }
  return { findings, plugins: report };
}

function location(f: { file: string; line: number; column: number }): string {
  return f.line > 0 ? `${f.file}:${f.line}:${f.column}` : f.file;
}

async function check(file: string, useEnv: boolean, baseDir: string, out: Output): Promise<number> {
  let plugins: PluginConfigList;
  out.progress(`loading ${file}`);
  try {
    plugins = await load(file, useEnv);
  } catch (error) {
    out.clearProgress();
    if (!(error instanceof ConfigError)) throw error;
    const errors = error.errors.map((e) => ({
      level: "error" as const,
      file: e.file,
      line: e.line,
      column: e.column,
      path: e.path,
      message: e.message.split("\n")[0].replace(/^.*?: (plugins\S*: )?/, ""),
      text: e === error ? error.message.split("\n")[0] : e.message,
    }));
    const warnings = error.warnings.map((w) => ({ level: "warning" as const, ...w }));
    if (out.json) {
      out.emit({ ok: false, errors, warnings, plugins: [] });
    } else {
      for (const w of warnings) out.line(`${out.yellow("warning")}: ${w.text}`);
      for (const e of errors) out.line(`${out.red("error")}: ${e.text}`);
      out.line(`${file}: ${errors.length} error(s), ${warnings.length} warning(s)`);
    }
    return ExitCode.invalid;
  }
  const { findings, plugins: report } = await checkPlugins(plugins, baseDir, out);
  out.clearProgress();
  const warnings = [
    ...plugins.warnings.map((w) => ({ level: "warning" as const, ...w })),
    ...findings.filter((f) => f.level === "warning").map((f) => ({
      ...f,
      text: `${location(f)}: ${f.path}: ${f.message}`,
    })),
  ];
  const errors = findings.filter((f) => f.level === "error").map((f) => ({
    ...f,
    text: `${location(f)}: ${f.path}: ${f.message}`,
  }));
  if (out.json) {
    out.emit({ ok: errors.length === 0, errors, warnings, plugins: report });
  } else {
    for (const w of warnings) out.line(`${out.yellow("warning")}: ${w.text}`);
    for (const e of errors) out.line(`${out.red("error")}: ${e.text}`);
    out.line(
      `${file}: ${plugins.length} plugin(s), ${errors.length} error(s), ${warnings.length} warning(s)` +
        (errors.length === 0 ? ` ${out.green("ok")}` : ""),
    );
  }
  return errors.length === 0 ? ExitCode.ok : ExitCode.invalid;
}

function statusLine(s: PluginStatus): string {
  const parts = [s.name.padEnd(16), s.state.padEnd(10), `pid ${s.pid ?? "-"}`, `restarts ${s.restarts}`];
  if (s.type === "notifier") parts.push(`queued ${s.queued}`, `delivered ${s.delivered}`);
  if (!s.active) parts.push("(inactive: shadowed by SFTPGo's routing)");
  if (s.lastError) parts.push(`last error: ${s.lastError}`);
  return parts.join("  ");
}

async function run(
  file: string,
  useEnv: boolean,
  baseDir: string,
  denoConfig: string | undefined,
  out: Output,
) {
  let plugins: PluginConfigList;
  try {
    plugins = await load(file, useEnv);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    out.error(error.message);
    return ExitCode.invalid;
  }
  for (const w of plugins.warnings) out.error(`${out.yellow("warning")}: ${w.text}`);
  const manager = new PluginManager(plugins, {
    baseDir,
    ...(denoConfig !== undefined ? { denoConfig } : {}),
    logger: {
      log: (record) => {
        if (out.json) out.error(JSON.stringify({ log: record }));
        else out.error(out.dim(formatLog(record)));
      },
    },
  });
  const stop = Promise.withResolvers<string>();
  const onSignal = (signal: Deno.Signal) => () => stop.resolve(signal);
  const sigint = onSignal("SIGINT");
  const sigterm = onSignal("SIGTERM");
  Deno.addSignalListener("SIGINT", sigint);
  Deno.addSignalListener("SIGTERM", sigterm);
  try {
    out.progress(`starting ${plugins.length} plugin(s)`);
    try {
      await Promise.race([
        manager.start(),
        stop.promise.then(() => {
          throw new CliError("interrupted while starting", ExitCode.ok);
        }),
      ]);
    } catch (error) {
      out.clearProgress();
      await manager.stop();
      if (error instanceof CliError && error.exitCode === ExitCode.ok) return ExitCode.ok;
      throw new CliError(
        `plugins did not start: ${error instanceof Error ? error.message : String(error)}`,
        ExitCode.start,
        { cause: error },
      );
    }
    out.clearProgress();
    let last = "";
    const show = () => {
      const status = manager.status();
      const text = JSON.stringify(status);
      if (text === last) return;
      last = text;
      if (out.json) {
        out.line(JSON.stringify({ status }));
      } else {
        out.line(`${out.bold(new Date().toISOString())} ${status.length} plugin(s)`);
        for (const s of status) out.line(`  ${statusLine(s)}`);
      }
    };
    show();
    const timer = setInterval(show, 1000);
    const signal = await stop.promise;
    clearInterval(timer);
    out.error(`${signal}: stopping the plugins`);
    const report = await manager.stop();
    if (out.json) out.line(JSON.stringify({ stopped: report }));
    else out.line("stopped");
    return ExitCode.ok;
  } finally {
    Deno.removeSignalListener("SIGINT", sigint);
    Deno.removeSignalListener("SIGTERM", sigterm);
  }
}

/** Runs `tether sftpgo check|run`; returns the exit code. */
export async function sftpgoCommand(args: string[], out: Output): Promise<number> {
  const { values, positionals } = parse(args, {
    "no-env": { type: "boolean" },
    "base-dir": { type: "string" },
    config: { type: "string" },
  });
  if (values.help || positionals.length === 0) {
    if (!values.help) throw new UsageError("sftpgo needs a subcommand: check or run");
    out.line(SFTPGO_HELP);
    return ExitCode.ok;
  }
  const [sub, file, ...extra] = positionals;
  if (sub !== "check" && sub !== "run") {
    throw new UsageError(`unknown sftpgo subcommand ${JSON.stringify(sub)}; use check or run`);
  }
  if (file === undefined) throw new UsageError(`sftpgo ${sub} needs a CONFIG file`);
  if (extra.length > 0) throw new UsageError(`unexpected arguments: ${extra.join(" ")}`);
  const baseDir = str(values, "base-dir") ?? Deno.cwd();
  const useEnv = !values["no-env"];
  return sub === "check"
    ? await check(file, useEnv, baseDir, out)
    : await run(file, useEnv, baseDir, str(values, "config"), out);
}
