/**
 * Private directories of hosts that died without running code (SIGKILL, a
 * crash): each launch's directory `tether-XXXX` gets an owner marker written
 * by the HOST next to it, `tether-XXXX.owner`, holding the host's pid, its
 * start time (from `/proc/<pid>/stat`) and the boot id. The next host that
 * starts a plugin in the same base directory removes every directory whose
 * marker names a host that is no longer running.
 *
 * The marker is written before its directory is made ({@linkcode makeMarkedDir}),
 * so no moment leaves a directory without one.
 *
 * Nothing a plugin writes is trusted for this: the marker lives outside the
 * private directory, must be a regular file (not a symlink) owned by the
 * host's own uid, and only real directories named like Tether's, next to a
 * valid marker and owned by the host's uid (or the uid the marker says the
 * host gave it), are removed (without following symlinks). A directory with
 * no marker is never touched.
 *
 * @module
 */

/** What a host writes about itself next to each private directory. */
export interface OwnerMarker {
  /** The host's process id. */
  readonly pid: number;
  /** Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), or null when unreadable. */
  readonly start: string | null;
  /** `/proc/sys/kernel/random/boot_id`, or null when unreadable. */
  readonly boot: string | null;
  /** The host's pid namespace (`/proc/self/ns/pid`), or null: pids of another namespace say nothing here. */
  readonly pidns?: string | null;
  /** The uid the host gives the directory when not its own (a plugin run under its own uid). */
  readonly dirUid?: number;
}

const MARKER_SUFFIX = ".owner";
const PRIVATE_DIR = /^tether-[A-Za-z0-9_]+$/;

/**
 * Whether a name is one Tether gives a launch's private directory
 * (`tether-` then letters, digits and `_`, as {@linkcode makeMarkedDir} makes
 * them) or its owner marker (the same, then `.owner`): the one rule the sweep
 * and the namespace's grant checks share. A user's own `tether-data-1`
 * (a `-` after the prefix) is not such a name.
 *
 * @example
 * ```ts
 * import { isPrivateName } from "./stale.ts";
 * console.assert(isPrivateName("tether-a1B2_c3") && isPrivateName("tether-a1B2_c3.owner"));
 * console.assert(!isPrivateName("tether-sftpgo-demo"));
 * ```
 */
export function isPrivateName(name: string): boolean {
  return PRIVATE_DIR.test(name.endsWith(MARKER_SUFFIX) ? name.slice(0, -MARKER_SUFFIX.length) : name);
}

function readOrNull(path: string): string | null {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return null;
  }
}

function linkOrNull(path: string): string | null {
  try {
    return Deno.readLinkSync(path);
  } catch {
    return null;
  }
}

/**
 * The fields of /proc/<pid>/stat from field 3 (the state) on. The command name (field 2) is the executed
 * file's name, which may hold spaces, `)` and `) Z `, so count after its LAST `)`.
 */
function statFields(pid: number | "self"): string[] | null {
  const stat = readOrNull(`/proc/${pid}/stat`);
  if (stat === null) return null;
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** Field 22 of /proc/<pid>/stat (start time). */
function startTime(pid: number | "self"): string | null {
  return statFields(pid)?.[19] ?? null;
}

/** The marker path of a private directory. */
export function markerPath(privateDir: string): string {
  return `${privateDir}${MARKER_SUFFIX}`;
}

let self: OwnerMarker | undefined;

/** This host's marker content. */
function selfMarker(): OwnerMarker {
  self ??= {
    pid: Deno.pid,
    start: startTime(Deno.pid),
    boot: readOrNull("/proc/sys/kernel/random/boot_id"),
    pidns: linkOrNull("/proc/self/ns/pid"),
  };
  return self;
}

/**
 * Creates a private directory `tether-XXXX` (mode 0700) in `base` (default:
 * the system temp dir) with its owner marker written FIRST, synchronously:
 * the marker file gets a fresh unique name (`Deno.makeTempFileSync`, mode
 * 0600), is filled, and only then is the directory named after it made. So a
 * host killed at any point leaves nothing, an empty marker (killed between
 * creating and filling it: a 0-byte file, no directory; kept, since whose it
 * is cannot be told), a filled marker with no directory (swept) or a marked
 * directory (swept), never a directory without a marker. A name taken
 * meanwhile (a directory or link already there) is given up (its marker
 * removed) and another tried.
 *
 * @param base Where to create it.
 * @param options `prefix`: the name's start (default `tether-`; it must start so, and the rest be letters,
 *   digits or `_`, or the sweep never looks at it). `dirUid`: the uid the caller will give the directory (a
 *   plugin run under its own uid), recorded in the marker so the sweep accepts a directory owned by it as well
 *   as one owned by the host.
 * @returns The directory's path; its marker is {@linkcode markerPath} of it.
 *
 * @example
 * ```ts ignore
 * import { makeMarkedDir } from "./stale.ts";
 * const privateDir = makeMarkedDir("/tmp"); // "/tmp/tether-1f2e3d...", next to "/tmp/tether-1f2e3d....owner"
 * ```
 */
export function makeMarkedDir(
  base?: string,
  options: { readonly prefix?: string; readonly dirUid?: number } = {},
): string {
  const { prefix = "tether-", dirUid } = options;
  if (!PRIVATE_DIR.test(`${prefix}x`)) throw new TypeError(`makeMarkedDir: prefix ${prefix} is not swept`);
  for (let attempt = 1;; attempt++) {
    const marker = Deno.makeTempFileSync({ dir: base, prefix, suffix: MARKER_SUFFIX });
    const dir = marker.slice(0, -MARKER_SUFFIX.length);
    try {
      const owner: OwnerMarker = dirUid === undefined ? selfMarker() : { ...selfMarker(), dirUid };
      Deno.writeTextFileSync(marker, JSON.stringify(owner), { create: false });
      Deno.mkdirSync(dir, { mode: 0o700 });
      return dir;
    } catch (error) {
      removeMarkerFile(marker);
      if (!(error instanceof Deno.errors.AlreadyExists) || attempt >= 10) throw error;
    }
  }
}

function removeMarkerFile(marker: string): void {
  try {
    Deno.removeSync(marker);
  } catch {
    // Already gone.
  }
}

/** Removes the owner marker of `privateDir`, synchronously (also used from `unload`). */
export function removeOwnerMarker(privateDir: string): void {
  removeMarkerFile(markerPath(privateDir));
}

/** Whether the host a marker names is still running (same pid, same start, same boot). */
function ownerAlive(marker: OwnerMarker): boolean {
  const here = selfMarker();
  if (marker.boot !== null && here.boot !== null && marker.boot !== here.boot) return false;
  // A host in another pid namespace (another container sharing this directory): we cannot see it, so keep it.
  if ((marker.pidns ?? null) !== (here.pidns ?? null)) return true;
  const fields = statFields(marker.pid);
  if (fields === null) return false;
  // A zombie host cannot run code any more: its directories are as good as orphaned.
  if (fields[0] === "Z") return false;
  const start = fields[19] ?? null;
  return marker.start === null || start === null || start === marker.start;
}

function parseMarker(text: string): OwnerMarker | undefined {
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    if (!Number.isInteger(value.pid) || (value.pid as number) <= 0) return undefined;
    const start = typeof value.start === "string" ? value.start : null;
    const boot = typeof value.boot === "string" ? value.boot : null;
    const pidns = typeof value.pidns === "string" ? value.pidns : null;
    const dirUid = Number.isInteger(value.dirUid) ? value.dirUid as number : undefined;
    return { pid: value.pid as number, start, boot, pidns, ...(dirUid === undefined ? {} : { dirUid }) };
  } catch {
    return undefined;
  }
}

const swept = new Set<string>();

/**
 * Removes the private directories (and markers) in `base` whose owner host is
 * gone. Runs once per base directory per host; needs read access to `/proc`
 * (without it, nothing is removed and `[]` is returned). Returns the removed
 * directories.
 *
 * @example
 * ```ts ignore
 * import { sweepStaleDirs } from "./stale.ts";
 * const removed = await sweepStaleDirs(Deno.env.get("TMPDIR") ?? "/tmp");
 * ```
 */
export async function sweepStaleDirs(base: string): Promise<string[]> {
  if (swept.has(base) || Deno.build.os !== "linux") return [];
  swept.add(base);
  // Without /proc we cannot tell a dead host from a live one: remove nothing.
  if (selfMarker().start === null) return [];
  const uid = Deno.uid();
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(base)];
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!entry.isFile || !entry.name.endsWith(MARKER_SUFFIX)) continue;
    const dirName = entry.name.slice(0, -MARKER_SUFFIX.length);
    if (!PRIVATE_DIR.test(dirName)) continue;
    const marker = `${base}/${entry.name}`;
    try {
      const info = await Deno.lstat(marker);
      if (!info.isFile || (uid !== null && info.uid !== uid)) continue;
      const owner = parseMarker(await Deno.readTextFile(marker));
      if (!owner || owner.pid === Deno.pid || ownerAlive(owner)) continue;
      const dir = `${base}/${dirName}`;
      const dirInfo = await Deno.lstat(dir).catch(() => undefined);
      // The marker is made before its directory: a directory there may be someone else's, planted after
      // its host died. Only one owned by the host's uid (or the uid it gave the directory) is removed.
      const ours = uid === null || dirInfo?.uid === uid ||
        (owner.dirUid !== undefined && dirInfo?.uid === owner.dirUid);
      if (dirInfo?.isDirectory && ours) {
        await Deno.remove(dir, { recursive: true });
        removed.push(dir);
      }
      await Deno.remove(marker);
    } catch {
      // Not ours to remove, or removed by another host meanwhile.
    }
  }
  return removed;
}
