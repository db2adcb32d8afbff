import { PluginClient } from "../mod.ts";
import { KV } from "../src/gen/tether/kv/v1/kv_pb.ts";
import { kvHandshake } from "../examples/kv/handshake.ts";
const [cmd, ...args] = Deno.args;
const c = new PluginClient({
  cmd,
  args,
  env: { HOME: Deno.env.get("HOME")!, PATH: Deno.env.get("PATH")! },
  handshake: kvHandshake,
  autoMTLS: true,
});
await c.start();
const kv = c.dispense(KV);
const dump = (tag: string) => {
  const text = Deno.readTextFileSync(`/proc/${c.pid}/smaps`);
  const maps: [string, number][] = [];
  let cur = "";
  for (const line of text.split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      const p = line.split(/\s+/);
      cur = p[5] ?? "[anon]";
      if (!cur) cur = "[anon]";
    }
    const m = /^Rss:\s+(\d+)/.exec(line);
    if (m) maps.push([cur, Number(m[1])]);
  }
  const agg = new Map<string, number>();
  for (const [k, v] of maps) agg.set(k, (agg.get(k) ?? 0) + v);
  const big = maps.filter(([k]) => k === "[anon]" || k === "").map(([, v]) => v).sort((a, b) => b - a).slice(
    0,
    8,
  );
  console.log(
    tag,
    [...agg].sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, v]) =>
      `${k.split("/").pop()}=${(v / 1024).toFixed(1)}M`
    ).join(" "),
    "largest anon:",
    big.map((v) => (v / 1024).toFixed(1)).join(","),
  );
};
dump("start");
await kv.put({ key: "b", value: new Uint8Array(64) });
for (let i = 0; i < 2000; i++) await kv.get({ key: "b" });
await new Promise((r) => setTimeout(r, 1000));
dump("after");
await c.kill();
