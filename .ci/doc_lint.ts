/**
 * Runs `deno doc --lint` on the public entry points. Tether's public types are
 * generic over protobuf-es descriptors (`DescService`, `DescMessage`,
 * `MessageShape`, `MessageInitShape`): those belong to @bufbuild/protobuf and
 * are documented there, so references to them are the only findings allowed.
 * Re-exporting them would pull protobuf-es's own undocumented internals into
 * our docs instead.
 */

const entries = Deno.args.length > 0 ? Deno.args : ["mod.ts", "plugin.ts"];
const allowed = new Set(["DescService", "DescMessage", "MessageShape", "MessageInitShape"]);
const out = await new Deno.Command(Deno.execPath(), {
  args: ["doc", "--lint", ...entries],
  env: { NO_COLOR: "1" },
  stdout: "piped",
  stderr: "piped",
}).output();
const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
const findings = text.split("\n").filter((line) => /^error\[/.test(line));
const real = findings.filter((line) => {
  const match = line.match(/^error\[private-type-ref\]: .* references private type '([^']+)'/);
  return !(match && allowed.has(match[1]));
});
if (real.length > 0) {
  console.error(text);
  console.error(`deno doc --lint: ${real.length} finding(s) besides references to protobuf-es types`);
  Deno.exit(1);
}
console.log(
  `deno doc --lint ${entries.join(" ")}: clean (${findings.length} references to protobuf-es types allowed)`,
);
