/**
 * Draws docs/performance.svg from bench/results.json: latency and throughput
 * per pairing, large answers, start time and memory, as horizontal bars. Run
 * by `deno task bench` after it writes the JSON; alone it redraws the chart
 * from an existing file:
 *
 *   deno run --allow-read --allow-write bench/chart.ts [bench/results.json] [docs/performance.svg]
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
    ["go_host_ts_plugin", "Go host -> TypeScript plugin"],
    ["tether_host_ts_plugin", "Tether host -> TypeScript plugin"],
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

if (import.meta.main) {
  const [input = "bench/results.json", output = "docs/performance.svg"] = Deno.args;
  Deno.writeTextFileSync(output, renderChart(JSON.parse(Deno.readTextFileSync(input))));
  console.log(`wrote ${output}`);
}
