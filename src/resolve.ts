/**
 * Where a path really leads: the one resolution every layer that judges a
 * path by its destination calls (the module graph check, the grant walks, the
 * audit labels of {@linkcode PermissionPolicy}). It never guesses: a path the
 * host cannot follow to its end comes back as {@linkcode Unresolvable}, and
 * each caller says what that means for it (refuse a launch, label an audit
 * line), never "judge it by its name", since a symlink on it could lead
 * anywhere.
 *
 * @module
 */

/** A path followed to its end: symlinks resolved, `.` and `..` applied, no trailing slash. */
export interface Resolved {
  /** The real path (for a path that does not exist yet: its longest existing prefix resolved, the rest appended). */
  readonly resolved: string;
}

/** A path the host cannot follow to its end. */
export interface Unresolvable {
  /** The prefix of the path where resolution stopped. */
  readonly unresolvable: string;
  /** Why, for errors and logs, e.g. `a dangling symlink (to /nowhere)`. */
  readonly reason: string;
  /** The host's own Deno permissions forbid looking (`NotCapable`): it needs `--allow-read` on the path. */
  readonly hostMayNotRead: boolean;
  /** The error that stopped it (none for a dangling symlink). */
  readonly cause?: unknown;
}

/** What {@linkcode resolvePath} found. */
export type Resolution = Resolved | Unresolvable;

/**
 * Normalises an absolute path lexically, as Deno normalises its path grants
 * (`.` dropped, `..` applied to the text, repeated and trailing `/` removed).
 *
 * @example
 * ```ts
 * import { normalizePath } from "./resolve.ts";
 * console.log(normalizePath("/srv//data/../out/")); // "/srv/out"
 * ```
 */
export function normalizePath(path: string): string {
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}

function why(cause: unknown): string {
  if (cause instanceof Deno.errors.NotCapable) return `the host may not read it (${String(cause)})`;
  if (cause instanceof Deno.errors.PermissionDenied) {
    return `the operating system refuses the host access (${String(cause)})`;
  }
  if (cause instanceof Deno.errors.FilesystemLoop) return `a symlink loop (${String(cause)})`;
  return String(cause);
}

/**
 * Resolves an absolute path (normalised first) to where it really leads. A
 * path that does not exist yet resolves its longest existing prefix and
 * appends the rest (a grant or a file about to be written still resolves its
 * parents). Anything else that stops `realpath` is {@linkcode Unresolvable}:
 * a dangling symlink on the path (it leads wherever its target later
 * appears), a symlink loop, a path through a file, a directory the operating
 * system or the host's own Deno permissions keep it from reading.
 *
 * @example
 * ```ts
 * import { resolvePath } from "./resolve.ts";
 * const where = resolvePath("/tmp/not-there-yet/file.txt");
 * if ("resolved" in where) console.log(where.resolved); // e.g. "/tmp/not-there-yet/file.txt"
 * else console.log(`cannot resolve ${where.unresolvable}: ${where.reason}`);
 * ```
 */
export function resolvePath(path: string): Resolution {
  let head = normalizePath(path);
  const tail: string[] = [];
  while (true) {
    try {
      const real = Deno.realPathSync(head);
      return { resolved: tail.length === 0 ? real : normalizePath(`${real}/${tail.reverse().join("/")}`) };
    } catch (cause) {
      if (!(cause instanceof Deno.errors.NotFound) || head === "/") {
        return {
          unresolvable: head,
          reason: why(cause),
          hostMayNotRead: cause instanceof Deno.errors.NotCapable,
          cause,
        };
      }
    }
    // Not there: missing (resolve the parent), or a symlink whose target is missing (no guess where it leads).
    let info: Deno.FileInfo | undefined;
    try {
      info = Deno.lstatSync(head);
    } catch (cause) {
      if (!(cause instanceof Deno.errors.NotFound)) {
        return {
          unresolvable: head,
          reason: why(cause),
          hostMayNotRead: cause instanceof Deno.errors.NotCapable,
          cause,
        };
      }
    }
    if (info?.isSymlink) {
      let target = "?";
      try {
        target = Deno.readLinkSync(head);
      } catch {
        // The reason below says enough without it.
      }
      return { unresolvable: head, reason: `a dangling symlink (to ${target})`, hostMayNotRead: false };
    }
    tail.push(head.slice(head.lastIndexOf("/") + 1));
    head = head.slice(0, head.lastIndexOf("/")) || "/";
  }
}
