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
  /**
   * Set when the host could not resolve where the path leads (a dangling symlink, a symlink loop, a
   * directory it may not read): which prefix and why. Such a check is labelled not allowed, never
   * judged by its name.
   */
  readonly unresolved?: string;
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

/**
 * Audit bytes the host reads before it frees them. Deno opens the audit file
 * `O_WRONLY|O_CREAT|O_TRUNC` (no `O_APPEND`; measured with strace, Deno 2.9.6)
 * and writes each line with one `write()` at its own offset. So once the host
 * has read this much and is at the end of the file on a line boundary, it
 * truncates the file to 0: the blocks it read are freed, Deno's next line
 * lands at its old offset (the file becomes sparse: a hole, then the line), and
 * the reader goes on from where it was. A line Deno wrote between the host's
 * last read and the truncation is cut to zeros: the reader sees those bytes as
 * NULs (Deno writes none itself) and reports them as lost (tampering) once
 * Deno writes a later line past it; a cut line that is the plugin's last goes
 * unseen (a limit, in docs/security.md).
 */
export const AUDIT_ROTATE_BYTES = 4 * 1024 * 1024;

/**
 * Most audit bytes the file may hold since the host last freed it (rotation
 * needs the host at the end of what Deno wrote). Beyond it the plugin checks
 * permissions faster than the host can follow; reading stops and
 * {@linkcode AuditReaderOptions.onFlood} is called (the launch ends the plugin
 * with `resource_limit`), so the file's disk use stays bounded (about this
 * much) and the host never runs blind while the plugin goes on.
 */
export const AUDIT_MAX_BACKLOG_BYTES = 64 * 1024 * 1024;

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
  /**
   * Called once when the file holds more than {@linkcode AUDIT_MAX_BACKLOG_BYTES} since the host last freed
   * it (it never caught up with the end of what the plugin wrote; the host stops reading): end
   * the plugin. Without it the flood is reported through `onTamper` only.
   */
  readonly onFlood?: (held: number) => void;
  /** Rotation threshold (default {@linkcode AUDIT_ROTATE_BYTES}; smaller in tests). */
  readonly rotateBytes?: number;
  /** Backlog limit (default {@linkcode AUDIT_MAX_BACKLOG_BYTES}; smaller in tests). */
  readonly maxBacklogBytes?: number;
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

  /** Times the file was truncated after reading (each freed what had been read). */
  rotations = 0;
  /** Audit bytes lost (cut by a rotation before the host read them); each loss is reported as tampering. */
  lostBytes = 0;
  /** Whether the plugin wrote more than the backlog limit before the host caught up (reading stopped). */
  get flooded(): boolean {
    return this.#flooded;
  }

  async #readMore(): Promise<void> {
    if (this.#flooded) return;
    let file: Deno.FsFile;
    let writable = true;
    try {
      file = await Deno.open(this.#options.path, { read: true, write: true });
    } catch {
      try {
        // Owned by the plugin's uid (0600): read only, no rotation; the backlog limit still bounds it.
        file = await Deno.open(this.#options.path, { read: true });
        writable = false;
      } catch {
        return; // Not there (yet, or the private directory is gone).
      }
    }
    const rotateBytes = this.#options.rotateBytes ?? AUDIT_ROTATE_BYTES;
    const maxBacklog = this.#options.maxBacklogBytes ?? AUDIT_MAX_BACKLOG_BYTES;
    try {
      await file.seek(this.#offset, Deno.SeekMode.Start);
      const chunk = new Uint8Array(64 * 1024);
      let sinceCheck = 0;
      while (true) {
        // The file's size is how far Deno has written; since the last truncation all of it is still on disk
        // (read or not: a host that never catches up to the end never frees what it read).
        if (sinceCheck === 0 || sinceCheck >= 1024 * 1024) {
          sinceCheck = 0;
          const held = (await file.stat()).size - this.#rotatedAt;
          if (held > maxBacklog) {
            this.#flood(held, maxBacklog);
            return;
          }
        }
        let n = await file.read(chunk);
        if (
          !n && writable && this.#offset - this.#rotatedAt >= rotateBytes && this.#pendingBytes === 0 &&
          !this.#skipping
        ) {
          // At the end of what Deno wrote, on a line boundary: free what was read. The last look and the
          // truncation are back-to-back synchronous calls, so the window in which Deno can write a line that
          // is then cut is as short as this host can make it; such a line is counted (NULs), not missed.
          n = file.readSync(chunk);
          if (!n) {
            file.truncateSync(0);
            this.#rotatedAt = this.#offset;
            this.rotations++;
          }
        }
        if (n === null || n === 0) break;
        this.#offset += n;
        sinceCheck += n;
        this.#consume(chunk.subarray(0, n));
      }
      this.#reportLost();
    } finally {
      file.close();
    }
  }

  #flooded = false;
  #rotatedAt = 0;
  #lostReported = 0;

  #flood(held: number, limit: number): void {
    this.#flooded = true;
    this.#tamper(
      `${held} bytes of audit not caught up with (more than ${limit}): the plugin checks permissions faster than the host ` +
        "can read them; reading stopped",
      "",
    );
    this.#options.onFlood?.(held);
  }

  #reportLost(): void {
    if (this.lostBytes === this.#lostReported) return;
    const lost = this.lostBytes - this.#lostReported;
    this.#lostReported = this.lostBytes;
    this.#tamper(`${lost} bytes of audit lost: written while the host truncated the file it had read`, "");
  }

  #consume(bytes: Uint8Array): void {
    let start = 0;
    while (start < bytes.length) {
      if (bytes[start] === 0 && this.#pendingBytes === 0 && !this.#skipping) {
        // A hole left by a rotation where a line was cut (Deno never writes NUL): count it, then go on.
        let end = start;
        while (end < bytes.length && bytes[end] === 0) end++;
        this.lostBytes += end - start;
        start = end;
        continue;
      }
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
    const { allowed, unresolved } = policy.label(parsed.permission, parsed.value);
    if (!allowed || reportAllowed) {
      onEvent({
        plugin,
        permission: parsed.permission,
        target: parsed.value,
        allowed,
        ...(unresolved === undefined ? {} : { unresolved }),
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
