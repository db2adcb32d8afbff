/**
 * Support for the SFTPGo wrapper tests: launch a plugin (Go fixture or
 * TypeScript) under Tether's host in a private TMPDIR and check that it is
 * gone afterwards; run sftpgohost against a plugin and parse its report.
 *
 * @module
 */

import assert from "node:assert/strict";
import { PluginClient } from "../../mod.ts";
import { sftpgoHandshakes, type SftpgoPluginType } from "../../sftpgo.ts";
import { denoPlugin, goFixture, pluginSockets } from "../helpers.ts";

/** A command line. */
export interface Command {
  readonly cmd: string;
  readonly args: readonly string[];
}

/** `bin/sftpgo-plugins <type> [args]`, built on demand. */
export async function goPlugin(type: SftpgoPluginType, ...args: string[]): Promise<Command> {
  return { cmd: await goFixture("sftpgo-plugins"), args: [type, ...args] };
}

/** A TypeScript plugin of this repository, run with Deno (all permissions for now), with extra script arguments. */
export function tsPlugin(entry: string, ...args: string[]): Command {
  const command = denoPlugin(entry);
  return { cmd: command.cmd, args: [...command.args, ...args] };
}

/**
 * Starts `command` as an SFTPGo plugin of `type` (AutoMTLS on, TMPDIR in a
 * fresh directory), runs `fn`, then kills it and checks that the process
 * exited and left no socket behind.
 */
export async function withPlugin<T>(
  type: SftpgoPluginType,
  command: Command | Promise<Command>,
  fn: (client: PluginClient, dir: string) => Promise<T>,
  env: Record<string, string> = {},
): Promise<T> {
  const { cmd, args } = await command;
  const dir = await Deno.makeTempDir({ prefix: "tether-sftpgo-" });
  const client = new PluginClient({
    cmd,
    args,
    handshake: sftpgoHandshakes[type],
    autoMTLS: true,
    env: { TMPDIR: dir, ...env },
  });
  try {
    await client.start();
    return await fn(client, dir);
  } finally {
    await client.kill();
    const sockets = pluginSockets(dir);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    assert.ok(client.hasExited, `${type} plugin still running after kill()`);
    assert.deepEqual(sockets, [], "plugin sockets left behind");
  }
}

/** One call of sftpgohost's report. */
export interface SftpgohostCall {
  rpc: string;
  method: string;
  request: unknown;
  response: unknown;
  error: string | null;
  expect: string;
  mismatch?: string;
  ok: boolean;
}

/** sftpgohost's JSON report. */
export interface SftpgohostReport {
  type: string;
  ok: boolean;
  automtls: boolean;
  start: { ok: boolean; protocol?: string; version?: number; error?: string };
  calls: SftpgohostCall[];
  kill: { duration_ms: number; graceful: boolean; exited: boolean };
  error?: string;
}

/** Runs `bin/sftpgohost -type <type> <flags> -- <plugin>`; returns its report, exit code and stderr. */
export async function runSftpgohost(
  type: SftpgoPluginType,
  plugin: Command,
  flags: readonly string[] = [],
): Promise<{ code: number; report: SftpgohostReport; stderr: string }> {
  const dir = await Deno.makeTempDir({ prefix: "tether-sftpgohost-" });
  try {
    const out = await new Deno.Command(await goFixture("sftpgohost"), {
      args: [
        "-type",
        type,
        "-automtls=true",
        "-log-level",
        "info",
        ...flags,
        "--",
        plugin.cmd,
        ...plugin.args,
      ],
      env: { TMPDIR: dir },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout).trim();
    const stderr = new TextDecoder().decode(out.stderr);
    let report: SftpgohostReport;
    try {
      report = JSON.parse(stdout.split("\n").pop() ?? "");
    } catch {
      throw new Error(
        `sftpgohost printed no JSON report (exit ${out.code}):\n${stdout}\n--- stderr ---\n${stderr}`,
      );
    }
    assert.deepEqual(pluginSockets(dir), [], "plugin sockets left behind by the Go host's plugin");
    return { code: out.code, report, stderr };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Reads a JSON-lines file. */
export async function readJsonLines(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line));
}

const decoder = new TextDecoder();

/** UTF-8 text of bytes. */
export function text(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}
