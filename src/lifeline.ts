/**
 * No plugin outlives its host, whatever ends the host:
 * - SIGTERM, SIGINT, SIGHUP: every running plugin is stopped gracefully
 *   (go-plugin's Shutdown, then SIGKILL), its private directory removed, and
 *   the signal raised again so the host still ends as the signal would have
 *   made it (opt out with `handleSignals: false` when the host manages signals);
 * - `Deno.exit()`, an uncaught error or unhandled rejection: every plugin is
 *   SIGKILLed and its private directory removed synchronously (no time for more);
 * - SIGKILL or a crash of the host, where no code runs: the kernel kills the
 *   plugin, because it was started under `setpriv --pdeathsig KILL`
 *   (PR_SET_PDEATHSIG), and the next host sweeps the private directories
 *   left behind (see `stale.ts`).
 *
 * @module
 */

import { TetherError } from "./errors.ts";

/**
 * util-linux's `setpriv`, at its Debian path. Not looked up on PATH (the host
 * would need env access) nor stat'ed (the host would need read access): a
 * missing one shows up at spawn, as a clear error.
 */
export const SETPRIV = "/usr/bin/setpriv";

/** The signals after which Tether stops the plugins and lets the host end. */
export const HOST_EXIT_SIGNALS: readonly Deno.Signal[] = ["SIGTERM", "SIGINT", "SIGHUP"];

const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/** One running plugin, as the lifeline sees it. */
export interface LifelineEntry {
  /** Stops the plugin gracefully (resolves once it is reaped and its files are gone). */
  kill(): Promise<void>;
  /** SIGKILLs the plugin and removes its files, synchronously (for `unload`). */
  killNow(): void;
  /** Whether a signal should stop it (the client's `handleSignals` option). */
  readonly onSignals: boolean;
  /**
   * Stopped, and awaited, before the plain plugin entries: a plugin manager
   * flushes its notifier queues and reports what it delivered, left and
   * dropped, then kills its own plugins.
   */
  readonly first?: boolean;
}

const entries = new Set<LifelineEntry>();
let handling: Deno.Signal | undefined;
let signalsInstalled = false;

function onUnload(): void {
  for (const entry of [...entries]) {
    try {
      entry.killNow();
    } catch {
      // Best effort: the process is ending.
    }
  }
}

/**
 * An uncaught error or unhandled rejection ends the host after its listeners
 * ran, with no `unload`: this is its last chance to run code. A listener that
 * calls `preventDefault()` keeps the host alive; one registered before ours
 * is seen here (a later one is not: documented limit).
 */
function onFatal(event: Event): void {
  if (!event.defaultPrevented) onUnload();
}

const listeners = new Map<Deno.Signal, () => void>(
  HOST_EXIT_SIGNALS.map((signal) => [signal, () => void onSignal(signal)]),
);

async function onSignal(signal: Deno.Signal): Promise<void> {
  if (handling) {
    // A second signal while stopping: no more grace.
    onUnload();
    reraise(handling);
    return;
  }
  handling = signal;
  const stopping = [...entries].filter((entry) => entry.onSignals);
  await Promise.allSettled(stopping.filter((entry) => entry.first).map((entry) => entry.kill()));
  await Promise.allSettled(stopping.filter((entry) => !entry.first).map((entry) => entry.kill()));
  reraise(signal);
}

/** Ends the host as `signal` would have: our listeners are gone, so the default action applies. */
function reraise(signal: Deno.Signal): void {
  uninstallSignals();
  try {
    Deno.kill(Deno.pid, signal);
  } catch {
    // Deno.kill needs unscoped --allow-run; exit with the status a shell reports for the signal instead.
    Deno.exit(128 + (SIGNAL_NUMBERS[signal] ?? 15));
  }
}

function installSignals(): void {
  if (signalsInstalled || Deno.build.os === "windows") return;
  for (const [signal, listener] of listeners) Deno.addSignalListener(signal, listener);
  signalsInstalled = true;
}

function uninstallSignals(): void {
  if (!signalsInstalled) return;
  for (const [signal, listener] of listeners) Deno.removeSignalListener(signal, listener);
  signalsInstalled = false;
}

/**
 * Tracks a running plugin until the returned function is called (when it has
 * exited). Signal listeners exist only while a plugin that wants them runs,
 * so they never keep an idle host alive nor change its signals otherwise.
 *
 * @example
 * ```ts
 * import { track } from "./lifeline.ts";
 * const release = track({ kill: () => Promise.resolve(), killNow: () => {}, onSignals: true });
 * release();
 * ```
 */
export function track(entry: LifelineEntry): () => void {
  if (entries.size === 0) {
    globalThis.addEventListener("unload", onUnload);
    globalThis.addEventListener("error", onFatal);
    globalThis.addEventListener("unhandledrejection", onFatal);
  }
  entries.add(entry);
  if (entry.onSignals) installSignals();
  return () => {
    entries.delete(entry);
    if (entries.size === 0) {
      globalThis.removeEventListener("unload", onUnload);
      globalThis.removeEventListener("error", onFatal);
      globalThis.removeEventListener("unhandledrejection", onFatal);
    }
    if (![...entries].some((e) => e.onSignals) && !handling) uninstallSignals();
  };
}

/**
 * The command line that runs `cmd` so the kernel SIGKILLs it when the host
 * dies (`setpriv --pdeathsig KILL -- cmd args...`). Linux only: elsewhere there
 * is no such mechanism and the command is returned unchanged (a documented
 * limit: only a host that can still run code cleans up there).
 *
 * PR_SET_PDEATHSIG fires when the thread that spawned the child ends: Deno
 * spawns from the JavaScript thread, which for the main module lives as long
 * as the host; a plugin started from a Worker dies with that Worker.
 *
 * @throws {TetherError} `config` when `cmd` is a bare name (no PATH lookup happens under setpriv).
 *
 * @example
 * ```ts ignore
 * import { dieWithHost } from "./lifeline.ts";
 * const { cmd, args } = dieWithHost("/opt/plugins/auth", ["--verbose"], "auth");
 * // cmd = "/usr/bin/setpriv", args = ["--pdeathsig", "KILL", "--", "/opt/plugins/auth", "--verbose"]
 * ```
 */
export function dieWithHost(
  cmd: string,
  args: readonly string[],
  plugin: string,
): { cmd: string; args: string[]; wrapped: boolean } {
  if (Deno.build.os !== "linux") return { cmd, args: [...args], wrapped: false };
  if (!cmd.includes("/")) {
    throw new TetherError(
      "config",
      `plugin ${plugin}: give its command as a path (got "${cmd}"): it is started under setpriv with a clean ` +
        "environment, where no PATH lookup happens",
      { plugin },
    );
  }
  return { cmd: SETPRIV, args: ["--pdeathsig", "KILL", "--", cmd, ...args], wrapped: true };
}
