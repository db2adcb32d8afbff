/**
 * An SFTPGo `eventsearcher` plugin over the JSON-lines file that
 * `notifier.ts` writes:
 *
 *   deno run examples/sftpgo/plugins/eventsearcher.ts EVENTS_JSONL
 *
 * Beyond what serving takes, it needs only `--allow-read=EVENTS_JSONL`.
 *
 * Each search reads the file afresh and answers with a JSON array of the
 * matching lines (as `notifier.ts` wrote them, plus `id`, the line number).
 * Filters applied: the time range (inclusive, nanoseconds), username, ip,
 * role, actions (fs and provider), protocols and statuses (fs), object
 * types and name (provider), events and protocols (log); then the order
 * (`ASC` oldest first, `DESC` newest first) and the limit (default 100, as
 * SFTPGo's API). `from_id` continues after that id in the chosen order.
 * Provider results leave out `object_data` when asked to.
 *
 * @module
 */

import { type SearchFilterBase, SearchOrder, serveEventSearcher } from "../../../src/sftpgo/plugin.ts";

type Line = Record<string, unknown> & { id: string; kind: string; timestamp: string };

const path = Deno.args[0];
if (!path) {
  console.error("usage: eventsearcher.ts EVENTS_JSONL");
  Deno.exit(2);
}

async function read(kind: string): Promise<Line[]> {
  const text = await Deno.readTextFile(path).catch((error) => {
    if (error instanceof Deno.errors.NotFound) return ""; // no event yet
    throw error;
  });
  return text.split("\n").flatMap((raw, i) => {
    if (raw.trim() === "") return [];
    const line = { ...JSON.parse(raw), id: String(i + 1) } as Line;
    return line.kind === kind ? [line] : [];
  });
}

/** `values` empty means "any". */
const anyOf = <T>(values: readonly T[], value: unknown) => values.length === 0 || values.includes(value as T);
const equalOrAny = (wanted: string, value: unknown) => wanted === "" || wanted === value;

function search(lines: Line[], filter: SearchFilterBase, match: (line: Line) => boolean): Line[] {
  const found = lines.filter((line) => {
    const ns = BigInt(line.timestamp);
    return (filter.startTimestampNs === 0n || ns >= filter.startTimestampNs) &&
      (filter.endTimestampNs === 0n || ns <= filter.endTimestampNs) &&
      equalOrAny(filter.username, line.username) && equalOrAny(filter.ip, line.ip) &&
      equalOrAny(filter.role, line.role) && match(line);
  });
  // Oldest first; lines are in arrival order, so a stable sort keeps ties in it.
  found.sort((a, b) => Number(BigInt(a.timestamp) - BigInt(b.timestamp)));
  if (filter.order === SearchOrder.Desc) found.reverse();
  const start = filter.fromId === "" ? 0 : found.findIndex((line) => line.id === filter.fromId) + 1;
  return found.slice(start, start + (filter.limit > 0 ? filter.limit : 100));
}

await serveEventSearcher({
  searchFsEvents: async (f) =>
    search(
      await read("fs"),
      f,
      (l) => anyOf(f.actions, l.action) && anyOf(f.protocols, l.protocol) && anyOf(f.statuses, l.status),
    ),
  searchProviderEvents: async (f) =>
    search(
      await read("provider"),
      f,
      (l) =>
        anyOf(f.actions, l.action) && anyOf(f.objectTypes, l.object_type) &&
        equalOrAny(f.objectName, l.object_name),
    ).map((line) => (f.omitObjectData ? { ...line, object_data: undefined } : line)),
  searchLogEvents: async (f) =>
    search(await read("log"), f, (l) => anyOf(f.events, l.event) && anyOf(f.protocols, l.protocol)),
});
