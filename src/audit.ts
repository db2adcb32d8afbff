/**
 * What a TypeScript plugin's permission checks looked like, for operators.
 *
 * Deno writes one JSON line per permission check to the file named by
 * `DENO_AUDIT_PERMISSIONS` (granted or not; it does not say which). That file
 * is written by the plugin's own process, so every line is the plugin's word:
 * this module only REPORTS, it never decides. Decisions are Deno's own
 * `--allow-*`/`--deny-*` flags (see {@linkcode PermissionPolicy.flags}), which
 * nothing inside the plugin can answer.
 *
 * The host evaluates each line against the plugin's policy to say whether the
 * check was (probably) allowed, and reports {@linkcode PermissionEvent}s with
 * `source: "plugin-audit"`. A line that is not a well-formed audit record is
 * counted and reported as tampering; it never passes silently.
 *
 * @module
 */

import type { PermissionPolicy } from "./permissions.ts";

/** A permission check a plugin made, as the host learned of it. */
export interface PermissionEvent {
  /** The plugin's name. */
  readonly plugin: string;
  /** The permission kind: read, write, net, env, sys, run, ffi, import. */
  readonly permission: string;
  /** What it asked for (path, host:port, variable name, ...), or null for "all". */
  readonly target: string | null;
  /** Whether the plugin's policy allows it (Deno's flags made the actual decision). */
  readonly allowed: boolean;
  /** When the check was made (as the plugin's process wrote it). */
  readonly time: Date;
  /**
   * Where the event came from. Both are UNTRUSTED: they are written by the
   * plugin's process, so a hostile plugin can forge, suppress or flood them.
   * They never grant anything.
   *
   * - `plugin-audit`: a line of Deno's permission audit (`DENO_AUDIT_PERMISSIONS`).
   * - `plugin`: reported by Tether's `serve()` inside the plugin (e.g. a `Deno.permissions.request`).
   */
  readonly source: "plugin-audit" | "plugin";
}

/** Log field through which Tether's serve() reports `Deno.permissions.request` calls. */
export const PERMISSION_REQUEST_FIELD = "tether_permission_request";

/** Longest audit line accepted; a longer one is tampering (Deno's lines are a path plus ~100 bytes). */
export const AUDIT_MAX_LINE_BYTES = 16 * 1024;

/** Most audit bytes read per launch; beyond it reading stops and it counts as tampering (a flood). */
export const AUDIT_MAX_TOTAL_BYTES = 64 * 1024 * 1024;

const KINDS = new Set(["read", "write", "net", "env", "sys", "run", "ffi", "import"]);

/** Why an audit line was not accepted. */
export interface AuditTamper {
  /** The plugin's name. */
  readonly plugin: string;
  /** What was wrong, e.g. `line longer than 16384 bytes` or `not JSON`. */
  readonly reason: string;
  /** The start of the offending line (at most 200 characters). */
  readonly excerpt: string;
  /** How many malformed lines so far in this launch, this one included. */
  readonly count: number;
}

/** Options of {@linkcode AuditReader}. */
export interface AuditReaderOptions {
  /** The file Deno writes (`DENO_AUDIT_PERMISSIONS`), in the launch's private directory. */
  readonly path: string;
  /** The plugin's policy, to label each check. */
  readonly policy: PermissionPolicy;
  /** The plugin's name. */
  readonly plugin: string;
  /** Receives each denied check (and allowed ones when `reportAllowed`). */
  readonly onEvent: (event: PermissionEvent) => void;
  /** Receives each malformed line. */
  readonly onTamper: (tamper: AuditTamper) => void;
  /** Report allowed checks too (default false). */
  readonly reportAllowed?: boolean;
  /** How often to look for new lines while the plugin runs (default 100 ms). */
  readonly pollMs?: number;
}

/**
 * Parses one audit line into its permission and value, or says what is wrong.
 *
 * @example
 * ```ts
 * import { parseAuditLine } from "./audit.ts";
 * const line = '{"v":1,"datetime":"2026-11-27T16:20:45Z","permission":"read","value":"/etc/passwd"}';
 * console.log(parseAuditLine(line)); // { permission: "read", value: "/etc/passwd", time: ... }
 * console.log(parseAuditLine("hello")); // "not JSON"
 * ```
 */
export function parseAuditLine(
  line: string,
): { permission: string; value: string | null; time: Date } | string {
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return "not JSON";
  }
  if (typeof record !== "object" || record === null || Array.isArray(record)) return "not a JSON object";
  const r = record as Record<string, unknown>;
  if (r.v !== 1) return `unknown version ${JSON.stringify(r.v)}`;
  if (typeof r.permission !== "string" || !KINDS.has(r.permission)) {
    return `unknown permission ${JSON.stringify(r.permission)}`;
  }
  if (r.value !== null && r.value !== undefined && typeof r.value !== "string") {
    return "value is not a string";
  }
  const time = typeof r.datetime === "string" ? new Date(r.datetime) : new Date(NaN);
  if (Number.isNaN(time.getTime())) return "missing or bad datetime";
  for (const key of Object.keys(r)) {
    if (!["v", "datetime", "permission", "value", "stack"].includes(key)) return `unexpected field ${key}`;
  }
  return { permission: r.permission, value: (r.value as string | null | undefined) ?? null, time };
}

/**
 * Follows a plugin's audit file from a fixed offset, in bounded chunks, one
 * pass over each byte: complete lines are parsed, a partial line waits for its
 * end, a line over {@linkcode AUDIT_MAX_LINE_BYTES} is dropped as tampering
 * up to its newline.
 *
 * @example
 * ```ts ignore
 * const reader = new AuditReader({ path, policy, plugin: "kv", onEvent: console.log, onTamper: console.warn });
 * reader.start();
 * // ... the plugin runs with DENO_AUDIT_PERMISSIONS=path ...
 * await reader.stop(); // reads what is left
 * console.log(reader.lines, reader.malformed);
 * ```
 */
export class AuditReader {
  readonly #options: AuditReaderOptions;
  #offset = 0;
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #skipping = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #reading: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Well-formed lines read. */
  lines = 0;
  /** Malformed lines (and floods) seen. */
  malformed = 0;

  /** Prepares to follow `options.path` (nothing is read until {@linkcode AuditReader.start}). */
  constructor(options: AuditReaderOptions) {
    this.#options = options;
  }

  /** Starts polling the file. */
  start(): void {
    const tick = () => {
      if (this.#stopped) return;
      this.#reading = this.#reading.then(() => this.#readMore()).finally(() => {
        if (!this.#stopped) this.#timer = setTimeout(tick, this.#options.pollMs ?? 100);
      });
    };
    tick();
  }

  /** Stops polling after reading what the file holds now. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#reading;
    await this.#readMore();
  }

  async #readMore(): Promise<void> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.#options.path, { read: true });
    } catch {
      return; // Not there (yet, or the private directory is gone).
    }
    try {
      await file.seek(this.#offset, Deno.SeekMode.Start);
      const chunk = new Uint8Array(64 * 1024);
      while (this.#offset < AUDIT_MAX_TOTAL_BYTES) {
        const n = await file.read(chunk);
        if (n === null || n === 0) break;
        this.#offset += n;
        this.#consume(chunk.subarray(0, n));
      }
      if (this.#offset >= AUDIT_MAX_TOTAL_BYTES && !this.#flooded) {
        this.#flooded = true;
        this.#tamper(`more than ${AUDIT_MAX_TOTAL_BYTES} bytes of audit; the rest is not read`, "");
      }
    } finally {
      file.close();
    }
  }

  #flooded = false;

  #consume(bytes: Uint8Array): void {
    let start = 0;
    while (start < bytes.length) {
      const newline = bytes.indexOf(10, start);
      const end = newline < 0 ? bytes.length : newline;
      const piece = bytes.subarray(start, end);
      if (this.#skipping) {
        if (newline >= 0) this.#skipping = false;
      } else if (this.#pendingBytes + piece.length > AUDIT_MAX_LINE_BYTES) {
        const head = new TextDecoder().decode(this.#pending[0] ?? piece).slice(0, 200);
        this.#pending = [];
        this.#pendingBytes = 0;
        this.#skipping = newline < 0;
        this.#tamper(`line longer than ${AUDIT_MAX_LINE_BYTES} bytes`, head);
      } else if (newline < 0) {
        this.#pending.push(piece.slice());
        this.#pendingBytes += piece.length;
      } else {
        const parts = [...this.#pending, piece];
        this.#pending = [];
        this.#pendingBytes = 0;
        const whole = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
        let at = 0;
        for (const part of parts) {
          whole.set(part, at);
          at += part.length;
        }
        this.#line(whole);
      }
      start = end + 1;
    }
  }

  #line(bytes: Uint8Array): void {
    let line: string;
    try {
      line = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      this.#tamper("not UTF-8", new TextDecoder().decode(bytes).slice(0, 200));
      return;
    }
    const parsed = parseAuditLine(line);
    if (typeof parsed === "string") {
      this.#tamper(parsed, line.slice(0, 200));
      return;
    }
    this.lines++;
    const { policy, plugin, onEvent, reportAllowed } = this.#options;
    const allowed = policy.decide(parsed.permission, parsed.value);
    if (!allowed || reportAllowed) {
      onEvent({
        plugin,
        permission: parsed.permission,
        target: parsed.value,
        allowed,
        time: parsed.time,
        source: "plugin-audit",
      });
    }
  }

  #tamper(reason: string, excerpt: string): void {
    this.malformed++;
    this.#options.onTamper({ plugin: this.#options.plugin, reason, excerpt, count: this.malformed });
  }
}
