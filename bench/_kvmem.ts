setInterval(() => {
  // deno-lint-ignore no-explicit-any
  const before = Deno.memoryUsage();
  (globalThis as any).gc?.();
  const after = Deno.memoryUsage();
  Deno.writeTextFileSync("/tmp/perfw/kvmem.txt", JSON.stringify({ before, after }) + "\n", { append: true });
}, 700);
await import("../examples/kv/plugin.ts");
