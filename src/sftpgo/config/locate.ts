/**
 * Where a field path is in the source text, for messages; {@linkcode NullLocator} when there is no text.
 *
 * @module
 */

import { isAlias, isMap, isScalar, isSeq, type LineCounter } from "yaml";
import type { Document, Node as YamlNode, Pair } from "yaml";
import type { PathSeg } from "./text.ts";

/** A 1-based line and column (0 when unknown), and where the value came from when it is not the file. */
export interface Position {
  line: number;
  column: number;
  /** Where the value came from when not the locator's file (e.g. `environment variable SFTPGO_PLUGINS__0__CMD`). */
  file?: string;
}

/** Maps paths (relative to the plugins list) to positions in the source. */
export interface Locator {
  readonly file: string;
  /** Sets the path from the document root to the plugins list. */
  setRoot(root: PathSeg[]): void;
  /** Position of the value at `path`, or of the nearest enclosing node that exists. */
  value(path: PathSeg[]): Position;
  /** Position of the key `key` inside the mapping at `path`. */
  key(path: PathSeg[], key: string): Position;
}

/**
 * The locator for values that did not come from text: every position is 0.
 *
 * @example
 * ```ts
 * import { NullLocator } from "./locate.ts";
 * console.log(new NullLocator("obj").value()); // { line: 0, column: 0 }
 * ```
 */
export class NullLocator implements Locator {
  constructor(readonly file: string) {}
  setRoot(): void {}
  value(): Position {
    return { line: 0, column: 0 };
  }
  key(): Position {
    return { line: 0, column: 0 };
  }
}

/**
 * The locator of a YAML (or JSON) document: follows paths case-insensitively and through `<<` merges, as
 * viper reads them.
 *
 * @example
 * ```ts
 * import { LineCounter, parseDocument } from "yaml";
 * import { DocLocator } from "./locate.ts";
 * const lineCounter = new LineCounter();
 * const doc = parseDocument("plugins:\n  - cmd: /bin/x\n", { lineCounter });
 * const locator = new DocLocator(doc, lineCounter, "a.yaml");
 * locator.setRoot(["plugins"]);
 * console.log(locator.value([0, "cmd"])); // { line: 2, column: 10 }
 * ```
 */
export class DocLocator implements Locator {
  #root: PathSeg[] = [];
  constructor(
    readonly doc: Document,
    readonly lineCounter: LineCounter,
    readonly file: string,
  ) {}

  setRoot(root: PathSeg[]): void {
    this.#root = root;
  }

  value(path: PathSeg[]): Position {
    const { node, pair } = this.#walk([...this.#root, ...path]);
    // `key:` with nothing after it has an empty value node; point at the key instead.
    const empty = isScalar(node) && node.range !== undefined && node.range !== null &&
      node.range[0] === node.range[1];
    if (empty && pair !== undefined && isScalar(pair.key)) return this.#pos(pair.key);
    return this.#pos(node);
  }

  key(path: PathSeg[], key: string): Position {
    const { node } = this.#walk([...this.#root, ...path]);
    const pair = isMap(node) ? this.#findPair(node, key) : undefined;
    return this.#pos(pair !== undefined && isScalar(pair.key) ? pair.key : node);
  }

  #pos(node: unknown): Position {
    const range = (node as YamlNode | null)?.range;
    if (range === undefined || range === null) return { line: 1, column: 1 };
    const { line, col } = this.lineCounter.linePos(range[0]);
    return { line, column: col };
  }

  #resolve(node: unknown): unknown {
    let n = node;
    for (let i = 0; i < 100 && isAlias(n); i++) n = n.resolve(this.doc);
    return n;
  }

  /** Follows `path` as far as it exists, matching keys case-insensitively and through `<<` merges like SFTPGo. */
  #walk(path: PathSeg[]): { node: unknown; pair?: Pair } {
    let node: unknown = this.doc.contents;
    let pair: Pair | undefined;
    for (const seg of path) {
      const n = this.#resolve(node);
      if (typeof seg === "number") {
        if (isSeq(n) && n.items[seg] !== undefined) {
          node = n.items[seg];
          pair = undefined;
          continue;
        }
        // A single mapping (or scalar) where a list was expected is lifted into a one-item list, as
        // mapstructure does; item 0 is the value itself.
        if (!isSeq(n) && seg === 0) continue;
        break;
      }
      if (!isMap(n)) break;
      const found = this.#findPair(n, seg);
      if (found === undefined) break;
      pair = found;
      node = found.value ?? found.key;
    }
    return { node: this.#resolve(node), pair };
  }

  #findPair(map: unknown, key: string, depth = 0): Pair | undefined {
    if (!isMap(map) || depth > 20) return undefined;
    const lower = key.toLowerCase();
    const pairs = map.items as Pair[];
    const direct = pairs.find((p) => isScalar(p.key) && p.key.value === key) ??
      pairs.find((p) => isScalar(p.key) && String(p.key.value).toLowerCase() === lower);
    if (direct !== undefined) return direct;
    for (const p of pairs) {
      if (!isScalar(p.key) || (p.key.value !== "<<" && typeof p.key.value !== "symbol")) continue;
      const sources = isSeq(p.value) ? p.value.items : [p.value];
      for (const source of sources) {
        const hit = this.#findPair(this.#resolve(source), key, depth + 1);
        if (hit !== undefined) return hit;
      }
    }
    return undefined;
  }
}
