/**
 * Deno's opt-in memory trim for idle `deno` plugins. A plugin started with
 * `DENO_USR2_MEMORY_TRIM=1` in its environment answers SIGUSR2 with glibc's
 * `malloc_trim(0)` and a V8 garbage collection (denoland/deno#28880): the
 * memory it grew while busy goes back to the system. Without that variable
 * SIGUSR2's default action ends the process, so the trimmer signals only the
 * Deno process the launch started with it, and checks that every time.
 *
 * "Idle" is measured by the host, never read from anything the plugin writes:
 * the process's CPU time (`utime + stime` of `/proc/<pid>/stat`) that moved
 * and then stood still for `idleMs`. So any work counts (calls on any
 * connection, brokered ones, background timers) and the channel needs no hook.
 * After a trim the next one waits for new activity.
 *
 * Linux only (it reads `/proc`); elsewhere, or without the host permissions
 * it needs, a launch runs untrimmed and the host says why once.
 *
 * @module
 */

import { TetherError } from "./errors.ts";
import type { Logger } from "./logs.ts";

/** The variable that makes a Deno process install its SIGUSR2 trim handler. */
export const MEMORY_TRIM_ENV = "DENO_USR2_MEMORY_TRIM";

/** Default quiet time (ms) before an active `deno` plugin is trimmed. */
export const DEFAULT_TRIM_IDLE_MS = 2000;
/** Shortest `memoryTrim.idleMs` accepted: shorter would trim between the calls of a busy plugin. */
export const MIN_TRIM_IDLE_MS = 100;
/** Longest `memoryTrim.idleMs` accepted (one day). */
export const MAX_TRIM_IDLE_MS = 86_400_000;

/**
 * A `deno` plugin's memory trim: `true` or absent (default: on, idle after
 * {@linkcode DEFAULT_TRIM_IDLE_MS}), `false` (off: the plugin gets no
 * `DENO_USR2_MEMORY_TRIM` and is never signalled), or `{ idleMs }`. Native
 * plugins are never trimmed.
 */
export type MemoryTrimOption = boolean | { readonly idleMs?: number };

/** What {@linkcode resolveMemoryTrim} decided for one launch. */
export interface MemoryTrim {
  /** How long the plugin's CPU time must stand still after it moved before SIGUSR2 is sent. */
  readonly idleMs: number;
}

/**
 * The trim a launch gets, from its option: `undefined` when it is off or the
 * plugin is native. Checked for every runtime, so a bad value is caught even
 * where it has no effect. The one place this is decided.
 *
 * @throws {TetherError} `config` naming the plugin and the field on a bad value.
 *
 * @example
 * ```ts
 * import { resolveMemoryTrim } from "./memory_trim.ts";
 * console.log(resolveMemoryTrim(undefined, "deno", "kv")); // { idleMs: 2000 }
 * console.log(resolveMemoryTrim({ idleMs: 500 }, "deno", "kv")); // { idleMs: 500 }
 * console.log(resolveMemoryTrim(false, "deno", "kv")); // undefined
 * console.log(resolveMemoryTrim(undefined, "native", "kv")); // undefined
 * ```
 */
export function resolveMemoryTrim(
  option: MemoryTrimOption | undefined,
  runtime: "deno" | "native",
  plugin: string,
): MemoryTrim | undefined {
  let idleMs = DEFAULT_TRIM_IDLE_MS;
  if (option === false) return undefined;
  if (option !== undefined && option !== true) {
    if (typeof option !== "object" || option === null || Array.isArray(option)) {
      throw new TetherError(
        "config",
        `plugin ${plugin}: memoryTrim must be true, false or { idleMs }, found ${JSON.stringify(option)}`,
        { plugin },
      );
    }
    const unknown = Object.keys(option).filter((key) => key !== "idleMs");
    if (unknown.length > 0) {
      throw new TetherError(
        "config",
        `plugin ${plugin}: memoryTrim has unknown field ${unknown[0]} (the only field is idleMs)`,
        { plugin },
      );
    }
    const value = option.idleMs ?? DEFAULT_TRIM_IDLE_MS;
    if (!Number.isInteger(value) || value < MIN_TRIM_IDLE_MS || value > MAX_TRIM_IDLE_MS) {
      throw new TetherError(
        "config",
        `plugin ${plugin}: memoryTrim.idleMs must be a whole number of milliseconds from ${MIN_TRIM_IDLE_MS} ` +
          `to ${MAX_TRIM_IDLE_MS}, found ${JSON.stringify(value)} (memoryTrim: false switches the trim off)`,
        { plugin },
      );
    }
    idleMs = value;
  }
  return runtime === "deno" ? { idleMs } : undefined;
}

let unavailable: string | null | undefined;

/**
 * Why this host cannot trim its plugins, or `undefined` when it can. It needs
 * Linux's `/proc` (which Deno 2.9.6 lets a host read under `/proc/<pid>/`
 * only with `--allow-all`) and unscoped `--allow-run` (`Deno.kill` on the
 * Deno process, which under bubblewrap is not the host's own child).
 *
 * @example
 * ```ts ignore
 * import { trimUnavailable } from "./memory_trim.ts";
 * console.log(trimUnavailable() ?? "this host trims its idle deno plugins");
 * ```
 */
export function trimUnavailable(): string | undefined {
  if (unavailable !== undefined) return unavailable ?? undefined;
  unavailable = null;
  if (Deno.build.os !== "linux") {
    unavailable = `it needs Linux's /proc (this is ${Deno.build.os})`;
  } else if (Deno.permissions.querySync({ name: "run" }).state !== "granted") {
    unavailable = "it needs unscoped --allow-run (Deno.kill on the plugin's Deno process)";
  } else {
    try {
      Deno.readTextFileSync("/proc/self/stat");
    } catch (error) {
      unavailable = error instanceof Deno.errors.NotCapable
        ? "it reads /proc/<pid>/stat of the plugin, which Deno 2.9.6 allows only with --allow-all"
        : `it cannot read /proc (${String(error)})`;
    }
  }
  return unavailable ?? undefined;
}

/** One process, as the trimmer knows it: its pid and start time, which together never name another one. */
export interface TrimTarget {
  readonly pid: number;
  /** Field 22 of `/proc/<pid>/stat` (clock ticks since boot). */
  readonly start: string;
}

/** Fields after the command name of `/proc/<pid>/stat` (the name may hold spaces and parentheses). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** `utime + stime` (clock ticks) of a process, or `undefined` when it is not `target` any more. */
export function cpuTicks(target: TrimTarget): number | undefined {
  const fields = statFields(target.pid);
  // After the ')': state is field 3, so utime (14) is index 11, stime (15) 12, starttime (22) 19.
  if (!fields || fields[19] !== target.start) return undefined;
  return Number(fields[11]) + Number(fields[12]);
}

function sameFile(path: string, file: Deno.FileInfo): boolean {
  try {
    const info = Deno.statSync(path);
    return info.dev === file.dev && info.ino === file.ino;
  } catch {
    return false;
  }
}

function children(pid: number): number[] {
  const found: number[] = [];
  try {
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      const list = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`).trim();
      if (list) found.push(...list.split(" ").map(Number));
    }
  } catch {
    // Gone meanwhile.
  }
  return found;
}

/**
 * The Deno process a launch started, below the host's child `root`: `root`
 * itself when it runs `deno` (setpriv and prlimit exec into it), else the one
 * Deno process reached through `wrappers` (bubblewrap, which forks). Processes
 * are matched by their executable file (`/proc/<pid>/exe`, device and inode),
 * never by name; the walk never goes below a Deno process (what the plugin
 * starts itself is never a target). `undefined` while the wrappers have not
 * started it yet, or when more than one candidate shows.
 *
 * @example
 * ```ts ignore
 * import { findTrimTarget } from "./memory_trim.ts";
 * const target = findTrimTarget(child.pid, Deno.execPath(), ["/usr/bin/bwrap"]);
 * ```
 */
export function findTrimTarget(
  root: number,
  deno: string,
  wrappers: readonly string[],
): TrimTarget | undefined {
  let denoFile: Deno.FileInfo;
  try {
    denoFile = Deno.statSync(deno);
  } catch {
    return undefined;
  }
  const wrapperFiles = wrappers.flatMap((path) => {
    try {
      return [Deno.statSync(path)];
    } catch {
      return [];
    }
  });
  const found: number[] = [];
  const queue = [root];
  // bwrap forks at most twice (its monitor, then pid 1 of the namespace): a short walk.
  for (let steps = 0; queue.length > 0 && steps < 16; steps++) {
    const pid = queue.shift()!;
    const exe = `/proc/${pid}/exe`;
    if (sameFile(exe, denoFile)) found.push(pid);
    else if (wrapperFiles.some((file) => sameFile(exe, file))) queue.push(...children(pid));
  }
  if (found.length !== 1) return undefined;
  const start = statFields(found[0])?.[19];
  return start === undefined ? undefined : { pid: found[0], start };
}

/**
 * Whether `target` is still the process found, runs `deno`, was started with
 * `DENO_USR2_MEMORY_TRIM=1` (its `/proc/<pid>/environ`) and catches SIGUSR2
 * (`SigCgt` of its status): only then does SIGUSR2 not end it.
 *
 * @example
 * ```ts ignore
 * import { findTrimTarget, safeToSignal } from "./memory_trim.ts";
 * const target = findTrimTarget(pid, Deno.execPath(), []);
 * if (target && safeToSignal(target, Deno.execPath())) Deno.kill(target.pid, "SIGUSR2");
 * ```
 */
export function safeToSignal(target: TrimTarget, deno: string): boolean {
  try {
    if (statFields(target.pid)?.[19] !== target.start) return false;
    if (!sameFile(`/proc/${target.pid}/exe`, Deno.statSync(deno))) return false;
    const environ = Deno.readTextFileSync(`/proc/${target.pid}/environ`).split("\0");
    if (!environ.includes(`${MEMORY_TRIM_ENV}=1`)) return false;
    return catchesSigusr2(target.pid);
  } catch {
    return false;
  }
}

/**
 * Whether a process has a handler for SIGUSR2 (bit 11 of `SigCgt` in its status).
 *
 * @example
 * ```ts ignore
 * import { catchesSigusr2 } from "./memory_trim.ts";
 * console.log(catchesSigusr2(Deno.pid));
 * ```
 */
export function catchesSigusr2(pid: number): boolean {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return mask !== undefined && (BigInt(`0x${mask}`) & (1n << 11n)) !== 0n;
}

/** What {@linkcode startMemoryTrimmer} needs. */
export interface TrimmerOptions {
  /** The plugin's name, for the log. */
  readonly plugin: string;
  /** The pid of the process the host spawned. */
  readonly root: number;
  /** The Deno executable the launch runs. */
  readonly deno: string;
  /** Executables between `root` and Deno that fork (bubblewrap). */
  readonly wrappers: readonly string[];
  /** Quiet time before a trim. */
  readonly idleMs: number;
  /** Where to log (each trim at debug). */
  readonly logger: Logger;
}

/** A running trimmer. */
export interface Trimmer {
  /** How many times SIGUSR2 was sent. */
  readonly trims: number;
  /** Stops it (no timer left); safe to call more than once. */
  stop(): void;
}

/**
 * Watches one launched Deno process and sends it SIGUSR2 once it has been
 * idle for `idleMs` after activity; again only after new activity. The CPU
 * the trim itself uses (a GC, `malloc_trim`) right after the signal is not
 * activity. Stops itself when the process is gone; call `stop()` when the
 * plugin ends.
 *
 * @example
 * ```ts ignore
 * import { startMemoryTrimmer } from "./memory_trim.ts";
 * const trimmer = startMemoryTrimmer({
 *   plugin: "kv", root: child.pid, deno: Deno.execPath(), wrappers: [], idleMs: 2000, logger,
 * });
 * child.status.finally(() => trimmer.stop());
 * ```
 */
export function startMemoryTrimmer(options: TrimmerOptions): Trimmer {
  const pollMs = Math.min(500, Math.max(25, Math.floor(options.idleMs / 4)));
  let target: TrimTarget | undefined;
  let last = -1;
  let quietSince = 0;
  // The start is activity: a plugin that loaded its module graph and then waits is worth one trim.
  let armed = true;
  // Polls after a trim whose CPU is the trim's own.
  let settling = 0;
  let trims = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  const stop = () => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
  };
  const poll = () => {
    const now = Date.now();
    if (!target) {
      target = findTrimTarget(options.root, options.deno, options.wrappers);
      if (!target) {
        // Not started yet (setpriv, prlimit, bwrap still on their way), or the launch is gone.
        if (statFields(options.root) === undefined) stop();
        return;
      }
    }
    const ticks = cpuTicks(target);
    if (ticks === undefined) return stop();
    if (ticks !== last) {
      last = ticks;
      quietSince = now;
      if (settling > 0) settling--;
      else armed = true;
      return;
    }
    settling = 0;
    if (!armed || now - quietSince < options.idleMs) return;
    armed = false;
    if (!safeToSignal(target, options.deno)) {
      options.logger.log({
        level: "warn",
        message:
          "plugin not trimmed: its Deno process no longer shows the trim handler Tether started it with",
        fields: { plugin: options.plugin, pid: target.pid },
      });
      return stop();
    }
    try {
      Deno.kill(target.pid, "SIGUSR2");
    } catch {
      return stop();
    }
    trims++;
    settling = 2;
    options.logger.log({
      level: "debug",
      message: "plugin idle: memory trimmed",
      fields: { plugin: options.plugin, pid: target.pid, idleMs: options.idleMs, trims },
    });
  };
  const interval = setInterval(poll, pollMs);
  timer = interval;
  // A plugin's trimmer never keeps the host alive on its own.
  Deno.unrefTimer(interval);
  return {
    get trims() {
      return trims;
    },
    stop,
  };
}
