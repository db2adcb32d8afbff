/**
 * Draws docs/performance.svg from bench/results.json: latency and throughput
 * per pairing, large answers, start time and memory, as horizontal bars. Run
 * by `deno task bench` after it writes the JSON; alone it redraws the chart
 * from an existing file:
 *
 *   deno run --allow-read --allow-write bench/chart.ts [bench/results.json] [docs/performance.svg]
 *   deno run --allow-read bench/chart.ts --markdown [bench/results.json]   # the table of docs/performance.md
 *
 * @module
 */

/** One bar: its label, value, and whether it is the Go reference. */
interface Bar {
  label: string;
  value: number;
  reference?: boolean;
}

const WIDTH = 760;
const LABEL_W = 270;
const BAR_H = 16;
const GAP = 6;

function escape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function panel(title: string, unit: string, bars: Bar[], top: number): { svg: string; height: number } {
  const max = Math.max(...bars.map((b) => b.value), 1e-9);
  const room = WIDTH - LABEL_W - 110;
  const parts = [
    `<text x="10" y="${top + 16}" font-weight="bold" font-size="14">${escape(title)}</text>`,
  ];
  bars.forEach((bar, i) => {
    const y = top + 28 + i * (BAR_H + GAP);
    const w = Math.max(1, (bar.value / max) * room);
    const fill = bar.reference ? "#7f8c8d" : "#2e86c1";
    const shown = bar.value >= 100 ? Math.round(bar.value).toLocaleString("en-US") : bar.value.toFixed(1);
    parts.push(
      `<text x="${LABEL_W - 8}" y="${y + 12}" text-anchor="end" font-size="12">${escape(bar.label)}</text>`,
      `<rect x="${LABEL_W}" y="${y}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${fill}"/>`,
      `<text x="${LABEL_W + w + 6}" y="${y + 12}" font-size="12">${shown} ${escape(unit)}</text>`,
    );
  });
  return { svg: parts.join("\n"), height: 40 + bars.length * (BAR_H + GAP) };
}

// deno-lint-ignore no-explicit-any
type Results = any;

/**
 * The SVG text for a results.json object (as written by bench/run.ts).
 *
 * @example
 * ```ts ignore
 * import { renderChart } from "./chart.ts";
 * const svg = renderChart(JSON.parse(Deno.readTextFileSync("bench/results.json")));
 * ```
 */
export function renderChart(results: Results): string {
  const r = results.results;
  const pairings: [string, string, boolean?][] = [
    ["go_host_go_plugin", "Go host -> Go plugin (reference)", true],
    ["tether_host_go_plugin", "Tether host -> Go plugin"],
    ["tether_grpcjs_host_go_plugin", "Tether host (grpc-js channel) -> Go plugin"],
    ["floor_host_go_plugin", "floor host (Deno only) -> Go plugin"],
    ["go_host_ts_plugin", "Go host -> TypeScript plugin"],
    ["go_host_ts_grpcjs_server_plugin", "Go host -> TypeScript plugin (grpc-js server)"],
    ["go_host_floor_plugin", "Go host -> floor plugin (Deno only)"],
    ["tether_host_ts_plugin", "Tether host -> TypeScript plugin"],
    ["floor_host_floor_plugin", "floor host -> floor plugin"],
  ];
  const present = pairings.filter(([key]) => r[key]);
  const panels: [string, string, Bar[]][] = [
    [
      "p50 latency of one 64-byte Get (lower is better)",
      "us",
      present.map(([key, label, ref]) => ({ label, value: r[key].seq_p50_us, reference: ref })),
    ],
    [
      `Throughput, ${results.config.concurrency} calls in flight (higher is better)`,
      "calls/s",
      present.map(([key, label, ref]) => ({ label, value: r[key].calls_per_sec, reference: ref })),
    ],
  ];
  if (results.large_answers) {
    const l = results.large_answers;
    panels.push([
      `Large answer: Get of ${(l.bytes / 1048576).toFixed(0)} MiB from a Go plugin (lower is better)`,
      "ms",
      [
        { label: "Go host", value: l.go_host, reference: true },
        { label: "Tether host", value: l.tether_host },
        { label: "Tether host (grpc-js channel)", value: l.tether_grpcjs_host },
        ...(l.floor_host === undefined ? [] : [{ label: "floor host (Deno only)", value: l.floor_host }]),
      ],
    ]);
  }
  const spawn: Bar[] = [
    { label: "Go host: Go plugin", value: r.go_host_go_plugin.spawn_typical_ms, reference: true },
    { label: "Go host: TypeScript plugin", value: r.go_host_ts_plugin.spawn_typical_ms },
  ];
  if (results.bundled_ts_plugin_spawn) {
    spawn.push({
      label: "Go host: TypeScript plugin, bundled",
      value: results.bundled_ts_plugin_spawn.go_host_ms,
    });
  }
  const fl = results.floors;
  if (fl) {
    spawn.push(
      { label: "Go host: floor plugin (Deno only)", value: r.go_host_floor_plugin.spawn_typical_ms },
      { label: "to handshake line: Go plugin", value: fl.spawn_to_line.go_plugin_ms, reference: true },
      { label: "to handshake line: bare deno", value: fl.spawn_to_line.bare_deno_ms },
      { label: "to line: deno, node:http2 listening", value: fl.spawn_to_line.bare_deno_http2_ms },
    );
  }
  spawn.push(
    { label: "Tether host: Go plugin", value: r.tether_host_go_plugin.spawn_typical_ms },
    { label: "Tether host: TypeScript plugin", value: r.tether_host_ts_plugin.spawn_typical_ms },
  );
  if (results.bundled_ts_plugin_spawn) {
    spawn.push({
      label: "Tether host: TypeScript plugin, bundled",
      value: results.bundled_ts_plugin_spawn.tether_host_ms,
    });
  }
  panels.push(["Spawn to first answer, typical (lower is better)", "ms", spawn]);
  if (results.memory) {
    const m = results.memory;
    panels.push([
      `Memory: RSS after ${m.calls} calls, idle (lower is better)`,
      "MiB",
      [
        { label: "Go plugin", value: m.go_plugin_mib, reference: true },
        { label: "TypeScript plugin (deno run)", value: m.ts_plugin_mib },
        { label: "TypeScript plugin, bundled", value: m.ts_plugin_bundled_mib },
        { label: "TypeScript plugin, bundled, small heap", value: m.ts_plugin_bundled_small_heap_mib },
        { label: "bare deno run (for scale)", value: m.bare_deno_mib },
        { label: "Tether host: added by first plugin", value: m.host_first_plugin_added_mib },
        ...(m.host_first_plugin_added_grpcjs_mib === undefined ? [] : [{
          label: "  same, grpc-js channel",
          value: m.host_first_plugin_added_grpcjs_mib,
        }]),
        ...(m.host_first_plugin_added_small_heap_mib === undefined ? [] : [{
          label: "  same, host with small young generation",
          value: m.host_first_plugin_added_small_heap_mib,
        }]),
        ...(m.ts_plugin_trimmed_mib === undefined ? [] : [
          { label: "TypeScript plugin, trimmed", value: m.ts_plugin_trimmed_mib },
          { label: "Tether host: first plugin, trimmed", value: m.host_first_plugin_added_trimmed_mib },
        ]),
        ...(fl === undefined ? [] : [
          { label: "floor plugin (Deno only)", value: fl.memory.floor_plugin_mib },
          { label: "floor plugin, small heap", value: fl.memory.floor_plugin_small_heap_mib },
          { label: "floor plugin, trimmed", value: fl.memory.floor_plugin_trimmed_mib },
          { label: "floor host: added by first plugin", value: fl.memory.floor_host_first_plugin_added_mib },
        ]),
      ],
    ]);
  }
  if (results.notifier?.sftpgo_floor) {
    const n = results.notifier;
    panels.push([
      "Notifier: fs events/s into one plugin, SFTPGo's sender or Tether's (higher is better)",
      "events/s",
      [
        { label: "SFTPGo's sender -> floor plugin", value: n.sftpgo_floor.events_per_s },
        { label: "SFTPGo's sender -> TypeScript plugin", value: n.sftpgo.events_per_s },
        { label: "PluginManager unordered -> TS plugin", value: n.unordered.events_per_s },
        { label: "PluginManager ordered -> TS plugin", value: n.ordered.events_per_s },
      ],
    ]);
  }
  let y = 34;
  const body: string[] = [];
  for (const [title, unit, bars] of panels) {
    const { svg, height } = panel(title, unit, bars, y);
    body.push(svg);
    y += height + 10;
  }
  const env = results.environment;
  const caption =
    `${results.date.slice(0, 16).replace("T", " ")} UTC, ${env.cpus} CPUs, load ${
      env.load_average_start[0].toFixed(1)
    } -> ${
      env.load_average_end[0].toFixed(1)
    }, Deno ${env.deno}, Go ${env.go}, go-plugin ${env.go_plugin}; ` +
    `median of ${results.config.rounds} round(s); grey: the Go reference`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y + 10}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="12" fill="#555">${escape(caption)}</text>`,
    ...body,
    `</svg>`,
    "",
  ].join("\n");
}

const fmt = (x: number, digits = 2) => x.toFixed(digits);

/**
 * The table (what, this run, target, met) as Markdown, from a
 * results.json object; `deno run bench/chart.ts --markdown [results.json]`
 * prints it for docs/performance.md.
 *
 * @example
 * ```ts ignore
 * import { renderTable } from "./chart.ts";
 * console.log(renderTable(JSON.parse(Deno.readTextFileSync("bench/results.json"))));
 * ```
 */
export function renderTable(results: Results): string {
  const t = results.targets;
  const r = results.results;
  const v = results.ratios.versus_go_host_go_plugin;
  const m = results.memory;
  const n = results.notifier;
  const yes = (ok: boolean) => ok ? "**met**" : "not met";
  const rows: [string, string, string, string][] = [
    [
      "Tether host -> Go plugin, p50 latency",
      `${fmt(r.tether_host_go_plugin.seq_p50_us, 0)} us, **${fmt(t.tether_host_go_plugin_p50, 1)}x** ` +
      `(grpc-js channel: ${fmt(v.tether_grpcjs_host_go_plugin.p50, 1)}x)`,
      "<= 1.5x",
      yes(t.tether_host_go_plugin_p50 <= 1.5),
    ],
    [
      "Tether host -> Go plugin, throughput, 16 in flight",
      `${fmt(r.tether_host_go_plugin.calls_per_sec, 0)}/s, **${fmt(t.tether_host_go_plugin_throughput)}x** ` +
      `(grpc-js channel: ${fmt(v.tether_grpcjs_host_go_plugin.throughput)}x)`,
      ">= 0.7x",
      yes(t.tether_host_go_plugin_throughput >= 0.7),
    ],
    [
      "Go host -> TypeScript plugin, p50 / throughput",
      `**${fmt(t.go_host_ts_plugin_p50, 1)}x / ${fmt(t.go_host_ts_plugin_throughput)}x**`,
      "<= 1.5x / >= 0.7x",
      yes(t.go_host_ts_plugin_p50 <= 1.5 && t.go_host_ts_plugin_throughput >= 0.7),
    ],
    [
      "Tether host -> TypeScript plugin, p50 / throughput",
      `**${fmt(t.tether_host_ts_plugin_p50, 1)}x / ${fmt(t.tether_host_ts_plugin_throughput)}x**`,
      "<= 2x / >= 0.5x",
      yes(t.tether_host_ts_plugin_p50 <= 2 && t.tether_host_ts_plugin_throughput >= 0.5),
    ],
    [
      "TypeScript plugin: spawn -> first answer",
      `${fmt(r.go_host_ts_plugin.spawn_typical_ms, 0)} ms, **${
        fmt(t.ts_spawn_vs_go_spawn_go_host, 1)
      }x** a Go ` +
      `plugin's (Go host); ${fmt(t.ts_spawn_vs_go_spawn_tether_host, 1)}x (Tether host); bundled: ` +
      `${fmt(t.bundled_ts_spawn_vs_go_spawn_go_host, 1)}x / ${
        fmt(t.bundled_ts_spawn_vs_go_spawn_tether_host, 1)
      }x`,
      "<= 1.5x a Go plugin's",
      yes(t.ts_spawn_vs_go_spawn_go_host <= 1.5),
    ],
    [
      `Large answers (${(results.large_answers.bytes / 1048576).toFixed(0)} MiB Get from a Go plugin)`,
      `${fmt(results.large_answers.tether_host, 1)} ms vs ${fmt(results.large_answers.go_host, 1)} ms, **${
        fmt(t.large_answers_vs_go_host, 1)
      }x** a Go host (grpc-js channel: ${fmt(t.large_answers_grpcjs_vs_go_host, 1)}x)`,
      "<= 1.2x",
      yes(t.large_answers_vs_go_host <= 1.2),
    ],
    [
      `RSS of an idle TypeScript plugin (after ${m.calls} calls)`,
      `**${fmt(m.ts_plugin_mib, 0)} MiB** (bundled ${fmt(m.ts_plugin_bundled_mib, 0)}, bundled + ` +
      `\`--max-semi-space-size=1\` ${fmt(m.ts_plugin_bundled_small_heap_mib, 0)}; anonymous memory ${
        fmt(m.ts_plugin_anon_mib, 0)
      } MiB, the deno executable's shared pages ${fmt(m.ts_plugin_file_mib, 0)} MiB; trimmed ${
        fmt(m.ts_plugin_trimmed_mib ?? NaN, 0)
      }); Go plugin ${fmt(m.go_plugin_mib, 0)} MiB, bare deno ${fmt(m.bare_deno_mib, 0)} MiB`,
      "<= 50 MiB",
      yes(m.ts_plugin_mib <= 50),
    ],
    [
      "host RSS added by its first plugin",
      `**+${fmt(m.host_first_plugin_added_mib, 0)} MiB** (anonymous +${
        fmt(m.host_first_plugin_added_anon_mib, 0)
      } MiB; grpc-js channel: +${fmt(m.host_first_plugin_added_grpcjs_mib, 0)} MiB; host run with ` +
      `\`--max-semi-space-size=1\`: +${
        fmt(m.host_first_plugin_added_small_heap_mib ?? NaN, 0)
      } MiB; trimmed: +${fmt(m.host_first_plugin_added_trimmed_mib ?? NaN, 0)} MiB; loading Tether itself: +${
        fmt(m.host_loaded_added_mib, 0)
      } MiB)`,
      "<= +30 MiB",
      yes(m.host_first_plugin_added_mib <= 30),
    ],
    [
      "notifier: fs events/s into one TypeScript plugin, 0 lost",
      `PluginManager unordered: **${n.unordered.events_per_s}/s**, ${n.unordered.lost} lost, **${
        fmt(n.unordered.events_per_s / n.sftpgo.events_per_s)
      }x** SFTPGo's own sender (${n.sftpgo.events_per_s}/s, ${n.sftpgo.lost} lost); PluginManager ordered: ` +
      `${n.ordered.events_per_s}/s, ${n.ordered.lost} lost; Tether host unordered outside PluginManager: ` +
      `${n.unordered_direct.events_per_s}/s, ${n.unordered_direct.lost} lost`,
      ">= 20,000/s unordered",
      yes(n.unordered.events_per_s >= 20000),
    ],
  ];
  const floors = floorCells(results);
  return [
    "| what | this run | floor: Deno only, same run | target | |",
    "| --- | --- | --- | --- | --- |",
    ...rows.map(([what, run, target, met], i) => `| ${[what, run, floors[i], target, met].join(" | ")} |`),
    "",
  ].join("\n");
}

/** The floor column of the table, row by row (bench/floor; "-" for a results file without floors). */
function floorCells(results: Results): string[] {
  const f = results.floors;
  if (!f) return Array(9).fill("-");
  const t = f.targets;
  const r = results.results;
  const l = f.spawn_to_line;
  const m = f.memory;
  const n = results.notifier.sftpgo_floor;
  return [
    `${fmt(r.floor_host_go_plugin.seq_p50_us, 0)} us, **${
      fmt(t.tether_host_go_plugin_p50, 1)
    }x** (floor host)`,
    `${fmt(r.floor_host_go_plugin.calls_per_sec, 0)}/s, **${fmt(t.tether_host_go_plugin_throughput)}x**`,
    `**${fmt(t.go_host_ts_plugin_p50, 1)}x / ${fmt(t.go_host_ts_plugin_throughput)}x** (floor plugin)`,
    `**${fmt(t.tether_host_ts_plugin_p50, 1)}x / ${fmt(t.tether_host_ts_plugin_throughput)}x**`,
    `${fmt(r.go_host_floor_plugin.spawn_typical_ms, 0)} ms, **${fmt(t.ts_spawn_vs_go_spawn_go_host, 1)}x** ` +
    `(Go host); ${fmt(t.ts_spawn_vs_go_spawn_tether_host, 1)}x (floor host); to the handshake line: bare ` +
    `deno ${fmt(t.bare_deno_line_vs_go_plugin_line, 1)}x, with \`node:http2\` listening ` +
    `${fmt(t.bare_deno_http2_line_vs_go_plugin_line, 1)}x a Go plugin's (${fmt(l.go_plugin_ms, 0)} ms)`,
    `${fmt(results.large_answers.floor_host, 1)} ms, **${fmt(t.large_answers_vs_go_host, 1)}x**`,
    `**${fmt(m.floor_plugin_mib, 0)} MiB** (anonymous ${fmt(m.floor_plugin_anon_mib, 0)}; ` +
    `\`--max-semi-space-size=1\` ${fmt(m.floor_plugin_small_heap_mib, 0)}; trimmed ${
      fmt(m.floor_plugin_trimmed_mib, 0)
    }, anonymous ${fmt(m.floor_plugin_trimmed_anon_mib, 0)})`,
    `**+${fmt(m.floor_host_first_plugin_added_mib, 0)} MiB** (anonymous +${
      fmt(m.floor_host_first_plugin_added_anon_mib, 0)
    }; host with \`--max-semi-space-size=1\`: +${fmt(m.floor_host_first_plugin_added_small_heap_mib, 0)}; ` +
    `trimmed: +${fmt(m.floor_host_first_plugin_added_trimmed_mib, 0)})`,
    `SFTPGo's sender -> floor plugin: **${n.events_per_s}/s**, ${n.lost} lost`,
  ];
}

if (import.meta.main) {
  if (Deno.args[0] === "--markdown") {
    console.log(renderTable(JSON.parse(Deno.readTextFileSync(Deno.args[1] ?? "bench/results.json"))));
  } else {
    const [input = "bench/results.json", output = "docs/performance.svg"] = Deno.args;
    Deno.writeTextFileSync(output, renderChart(JSON.parse(Deno.readTextFileSync(input))));
    console.log(`wrote ${output}`);
  }
}
