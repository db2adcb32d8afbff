/**
 * An SFTPGo `ipfilter` plugin with CIDR allow and deny lists:
 *
 *   deno run examples/sftpgo/plugins/ipfilter.ts [--allow CIDR,...] [--deny CIDR,...]
 *
 * Both flags may repeat; a bare address counts as a /32 (IPv4) or /128
 * (IPv6). An address in a deny range is refused; otherwise, when there are
 * allow ranges, only addresses in one of them may connect; with no allow
 * ranges, everything not denied may. IPv4-mapped IPv6 addresses
 * (`::ffff:10.1.2.3`) are matched as IPv4. An address that does not parse is
 * refused. The lists come from the command line, so a reload changes
 * nothing; it is only logged. It needs no permission beyond what serving
 * takes.
 *
 * @module
 */

import { serveIpFilter } from "../../../src/sftpgo/plugin.ts";

interface Address {
  bits: 32 | 128;
  value: bigint;
}

interface Range extends Address {
  prefix: number;
}

function parseIPv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return undefined;
  return parts.reduce((value, part) => (value << 8n) | BigInt(part), 0n);
}

function parseIPv6(text: string): bigint | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = halves.map((half) => (half === "" ? [] : half.split(":")));
  // A dotted IPv4 tail stands for the last two groups.
  const last = groups[groups.length - 1];
  const tail = last.length > 0 && last[last.length - 1].includes(".") ? parseIPv4(last.pop()!) : undefined;
  if (tail !== undefined) last.push((tail >> 16n).toString(16), (tail & 0xffffn).toString(16));
  if (!groups.flat().every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  const count = groups.flat().length;
  if (halves.length === 1 ? count !== 8 : count > 7) return undefined;
  const all = halves.length === 1 ? groups[0] : [...groups[0], ...Array(8 - count).fill("0"), ...groups[1]];
  return all.reduce((value, group) => (value << 16n) | BigInt(`0x${group}`), 0n);
}

function parseAddress(text: string): Address | undefined {
  const v4 = parseIPv4(text);
  if (v4 !== undefined) return { bits: 32, value: v4 };
  const v6 = text.includes(":") ? parseIPv6(text.replace(/%.*$/, "")) : undefined;
  if (v6 === undefined) return undefined;
  // ::ffff:a.b.c.d is an IPv4 client seen through an IPv6 socket.
  if (v6 >> 32n === 0xffffn) return { bits: 32, value: v6 & 0xffffffffn };
  return { bits: 128, value: v6 };
}

function parseRange(text: string): Range {
  const [ip, prefixText] = text.split("/");
  const address = parseAddress(ip);
  const prefix = prefixText === undefined ? address?.bits : Number(prefixText);
  if (!address || prefix === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > address.bits) {
    console.error(`invalid CIDR ${JSON.stringify(text)}`);
    Deno.exit(2);
  }
  return { ...address, prefix };
}

function contains(range: Range, address: Address): boolean {
  if (range.bits !== address.bits) return false;
  const shift = BigInt(range.bits - range.prefix);
  return range.value >> shift === address.value >> shift;
}

function ranges(flag: string): Range[] {
  return Deno.args.flatMap((arg, i) => (Deno.args[i - 1] === flag ? arg.split(",") : []))
    .filter((cidr) => cidr.trim() !== "")
    .map((cidr) => parseRange(cidr.trim()));
}

const allow = ranges("--allow");
const deny = ranges("--deny");

await serveIpFilter(({ logger }) => ({
  checkIP: (ip) => {
    const address = parseAddress(ip);
    if (!address) return { allowed: false, reason: `invalid ip ${JSON.stringify(ip)}` };
    if (deny.some((range) => contains(range, address))) return { allowed: false, reason: "ip denied" };
    if (allow.length > 0 && !allow.some((range) => contains(range, address))) {
      return { allowed: false, reason: "ip not in the allow list" };
    }
    return true;
  },
  reload: () =>
    logger.log({ level: "info", message: "reload: the lists come from the command line", fields: {} }),
}));
