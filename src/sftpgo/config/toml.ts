/**
 * TOML input for the config loader, with positions: `toml-eslint-parser` gives a syntax tree with a location on
 * every key, table header and value, so TOML errors name a line and column just as YAML ones do.
 *
 * @module
 */

import { type AST, getStaticTOMLValue, ParseError, parseTOML } from "toml-eslint-parser";
import type { Locator, Position } from "./locate.ts";
import type { PathSeg } from "./text.ts";
import { ConfigError } from "./types.ts";

interface Spot {
  key: Position;
  value: Position;
}

/**
 * Positions of every key and value in a TOML document, by lower-cased path (viper compares keys
 * case-insensitively).
 *
 * @example
 * ```ts
 * import { parseTomlDocument } from "./toml.ts";
 * const { locator } = parseTomlDocument('[[plugins]]\ntype = "ipfilter"\n', "sftpgo.toml");
 * locator.setRoot(["plugins"]);
 * console.log(locator.value([0, "type"])); // { line: 2, column: 8 }
 * ```
 */
export class TomlLocator implements Locator {
  #root: PathSeg[] = [];
  readonly #spots = new Map<string, Spot>();

  /** Indexes `program`; `file` is the name used in messages. */
  constructor(program: AST.TOMLProgram, readonly file: string) {
    const top = program.body[0];
    for (const item of top.body) {
      if (item.type === "TOMLTable") {
        const path = item.resolvedKey.map((k) => typeof k === "string" ? k.toLowerCase() : k);
        const at = pos(item);
        this.#set(path, { key: at, value: at });
        for (const kv of item.body) this.#keyValue(path, kv);
      } else {
        this.#keyValue([], item);
      }
    }
  }

  /** Sets the path from the document root to the plugins list. */
  setRoot(root: PathSeg[]): void {
    this.#root = root.map((k) => typeof k === "string" ? k.toLowerCase() : k);
  }

  /** Position of the value at `path`, or of the nearest enclosing node that exists. */
  value(path: PathSeg[]): Position {
    return this.#nearest([...this.#root, ...path]).value;
  }

  /** Position of `key` inside the table at `path`. */
  key(path: PathSeg[], key: string): Position {
    return this.#nearest([...this.#root, ...path, key]).key;
  }

  #nearest(path: PathSeg[]): Spot {
    const norm = path.map((k) => typeof k === "string" ? k.toLowerCase() : k);
    for (let i = norm.length; i > 0; i--) {
      const spot = this.#spots.get(JSON.stringify(norm.slice(0, i)));
      if (spot !== undefined) return spot;
    }
    return { key: { line: 1, column: 1 }, value: { line: 1, column: 1 } };
  }

  #set(path: PathSeg[], spot: Spot): void {
    const id = JSON.stringify(path);
    // The first definition wins (an array of tables is located at its first header).
    if (!this.#spots.has(id)) this.#spots.set(id, spot);
  }

  #keyValue(base: PathSeg[], kv: AST.TOMLKeyValue): void {
    const names = kv.key.keys.map((k) => (k.type === "TOMLBare" ? k.name : k.value).toLowerCase());
    const path = [...base, ...names];
    this.#set(path, { key: pos(kv.key), value: pos(kv.value) });
    this.#content(path, kv.value);
  }

  #content(path: PathSeg[], node: AST.TOMLContentNode): void {
    if (node.type === "TOMLArray") {
      node.elements.forEach((element, i) => {
        this.#set([...path, i], { key: pos(element), value: pos(element) });
        this.#content([...path, i], element);
      });
    } else if (node.type === "TOMLInlineTable") {
      for (const kv of node.body) this.#keyValue(path, kv);
    }
  }
}

function pos(node: { loc: { start: { line: number; column: number } } }): Position {
  // ESLint locations: 1-based lines, 0-based columns.
  return { line: node.loc.start.line, column: node.loc.start.column + 1 };
}

/**
 * Parses TOML text into a plain value and a {@linkcode TomlLocator}.
 *
 * @throws {ConfigError} With the line and column of a syntax error.
 *
 * @example
 * ```ts
 * import { parseTomlDocument } from "./toml.ts";
 * const { value } = parseTomlDocument('[[plugins]]\ntype = "ipfilter"\ncmd = "/bin/f"\n', "sftpgo.toml");
 * console.log(value); // { plugins: [{ type: "ipfilter", cmd: "/bin/f" }] }
 * ```
 */
export function parseTomlDocument(text: string, file: string): { value: unknown; locator: TomlLocator } {
  let program: AST.TOMLProgram;
  try {
    program = parseTOML(text, { tomlVersion: "1.0" });
  } catch (error) {
    if (!(error instanceof ParseError)) throw error;
    throw new ConfigError({
      file,
      line: error.lineNumber,
      column: error.column + 1,
      path: "",
      expected: "valid TOML",
      found: error.message,
      detail: `invalid TOML: ${error.message}`,
    });
  }
  return { value: getStaticTOMLValue(program), locator: new TomlLocator(program, file) };
}
