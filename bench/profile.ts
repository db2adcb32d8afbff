/**
 * Summarises a V8 CPU profile (`deno run --cpu-prof`) by package and by
 * function: self time, as a share of the whole. How docs/performance.md
 * attributes cost to Deno, grpc-js, protobuf-es and Tether:
 *
 *   deno run -A --cpu-prof --cpu-prof-dir=/tmp/prof bench/tether_host.ts --n 6000 --spawn-runs 0 -- tests/interop/go/bin/kvplugin
 *   deno run --allow-read bench/profile.ts /tmp/prof/*.cpuprofile [rows]
 *
 * Packages: npm packages by name@version, Deno's built-in modules by path
 * (`ext:deno_node/http2.ts`), Tether's files as `tether:<dir>/<file>`, and
 * native work (an op, the garbage collector, idle) by its own name.
 *
 * @module
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: CallFrame }[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time per package and per function, in microseconds, with the total. */
export function summarise(profile: CpuProfile): {
  totalUs: number;
  byPackage: Map<string, number>;
  byFunction: Map<string, number>;
} {
  const frames = new Map(profile.nodes.map((node) => [node.id, node.callFrame]));
  const byPackage = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let totalUs = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    totalUs += us;
    const frame = frames.get(id)!;
    const url = frame.url;
    const npm = /node_modules\/\.deno\/([^/]+)/.exec(url)?.[1];
    const where = npm ??
      (url.startsWith("ext:") || url.startsWith("node:")
        ? url.split("/").slice(0, url.includes("/internal/") ? 3 : 2).join("/")
        : url.startsWith("file://")
        ? `tether:${url.replace(/^.*?\/(src|bench|examples|tests)\//, "$1/")}`
        : frame.functionName || "(native)");
    byPackage.set(where, (byPackage.get(where) ?? 0) + us);
    const name = `${frame.functionName || "(anonymous)"} ${npm ?? (url || "(native)")}:${frame.lineNumber}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
  });
  return { totalUs, byPackage, byFunction };
}

if (import.meta.main) {
  const [file, rowsArg] = Deno.args;
  if (!file) {
    console.error("usage: deno run --allow-read bench/profile.ts <file.cpuprofile> [rows]");
    Deno.exit(2);
  }
  const rows = Number(rowsArg ?? 25);
  const { totalUs, byPackage, byFunction } = summarise(JSON.parse(Deno.readTextFileSync(file)));
  const print = (title: string, map: Map<string, number>) => {
    console.log(`--- ${title}`);
    for (const [key, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, rows)) {
      console.log(
        `${((us / totalUs) * 100).toFixed(1).padStart(5)} % ${(us / 1000).toFixed(1).padStart(8)} ms  ${key}`,
      );
    }
  };
  console.log(`total ${(totalUs / 1000).toFixed(1)} ms`);
  print("self time by package", byPackage);
  print("self time by function", byFunction);
}
