/**
 * `tether call [options] -- CMD ARGS… METHOD JSON`: launches a plugin, calls one method with a JSON request and
 * prints the JSON response, like grpcurl. Message types come from the plugin's gRPC reflection, or from
 * `--descriptor-set FILE` (a binary `google.protobuf.FileDescriptorSet`, e.g. from
 * `buf build -o set.binpb`) for plugins that serve none.
 *
 * @module
 */

import {
  createFileRegistry,
  type DescMethod,
  type DescService,
  type FileRegistry,
  fromBinary,
  fromJson,
  type JsonValue,
  toJson,
} from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { TetherError } from "../errors.ts";
import { reflect } from "../reflection.ts";
import { int, parse, str } from "./args.ts";
import { CliError, ExitCode, type Output, UsageError } from "./output.ts";
import { LAUNCH_HELP, LAUNCH_OPTIONS, withPlugin } from "./plugin.ts";

/** `tether call --help`. */
export const CALL_HELP = `Usage: tether call [options] -- CMD [ARGS...] METHOD JSON

Launches the plugin CMD, calls METHOD with the request JSON and prints the response
as JSON (protobuf JSON mapping), then stops the plugin. METHOD is
package.Service/Method (or package.Service.Method). JSON is the request, or "-" to
read it from stdin; for client or bidi streams give a JSON array of requests.
Server streams print one JSON document per message.

Types come from the plugin's gRPC reflection (Go plugins and Tether plugins serve
it), or from --descriptor-set for plugins that do not.

${LAUNCH_HELP}
  --descriptor-set FILE     binary FileDescriptorSet with the service (e.g. made with
                            "buf build -o set.binpb" or "protoc --include_imports -o set.binpb")
  --timeout MS              deadline of the call (default 20000)
  --show-logs               print the plugin's logs to stderr
  --json                    print {"response": ...} (or {"responses": [...]}) as one document
  -h, --help                show this help

Example:
  tether call --cookie-key TETHER_KV_PLUGIN --cookie-value kv-7d3f2a -- ./kvplugin \\
    tether.kv.v1.KV/Put '{"key": "a", "value": "aGk="}'

Exit codes: 0 ok, 2 usage, 4 the plugin did not start, 5 the call failed (a gRPC
status other than OK, an unknown method, a request that does not fit the type).`;

function findMethod(registry: FileRegistry, name: string): { service: DescService; method: DescMethod } {
  const m = /^\/?([A-Za-z0-9_.]+)[/.]([A-Za-z0-9_]+)$/.exec(name);
  if (m === null) {
    throw new UsageError(`METHOD must look like package.Service/Method, found ${JSON.stringify(name)}`);
  }
  const service = registry.getService(m[1]);
  if (service === undefined) {
    const known = [...registry].filter((d) => d.kind === "service").map((d) => d.typeName);
    throw new CliError(
      `no service ${m[1]} on this plugin; it serves ${known.join(", ") || "nothing known"}`,
      ExitCode.call,
    );
  }
  const method = service.methods.find((x) => x.name === m[2]);
  if (method === undefined) {
    throw new CliError(
      `service ${m[1]} has no method ${m[2]}; it has ${service.methods.map((x) => x.name).join(", ")}`,
      ExitCode.call,
    );
  }
  return { service, method };
}

async function readInput(text: string): Promise<JsonValue> {
  const raw = text === "-" ? await new Response(Deno.stdin.readable).text() : text;
  try {
    return JSON.parse(raw);
  } catch (error) {
    throw new UsageError(
      `the request is not JSON: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

/** Runs `tether call`; returns the exit code. */
export async function callCommand(args: string[], out: Output): Promise<number> {
  const { values, rest } = parse(args, {
    ...LAUNCH_OPTIONS,
    "descriptor-set": { type: "string" },
    timeout: { type: "string" },
    "show-logs": { type: "boolean" },
  });
  if (values.help) {
    out.line(CALL_HELP);
    return ExitCode.ok;
  }
  if (rest.length < 3) throw new UsageError('give "-- CMD [ARGS...] METHOD JSON"');
  const timeoutMs = int(values, "timeout", 20_000, { min: 1 });
  const methodName = rest.at(-2)!;
  const input = await readInput(rest.at(-1)!);
  let fixed: FileRegistry | undefined;
  const setFile = str(values, "descriptor-set");
  if (setFile !== undefined) {
    try {
      fixed = createFileRegistry(fromBinary(FileDescriptorSetSchema, await Deno.readFile(setFile)));
    } catch (error) {
      throw new CliError(
        `cannot use --descriptor-set ${setFile}: ${error instanceof Error ? error.message : String(error)}`,
        ExitCode.failure,
      );
    }
  }
  return await withPlugin(values, rest.slice(0, -2), out, async ({ client }) => {
    out.progress("reading services over gRPC reflection");
    const registry = fixed ?? (await reflect(client)).registry;
    const { service, method } = findMethod(registry, methodName);
    const toMessage = (value: JsonValue) => {
      try {
        return fromJson(method.input, value, { registry });
      } catch (error) {
        throw new CliError(
          `the request does not fit ${method.input.typeName}: ${
            error instanceof Error ? error.message : String(error)
          }`,
          ExitCode.call,
        );
      }
    };
    const stub = client.dispense(service) as unknown as Record<
      string,
      (request: unknown, options: { timeoutMs: number }) => unknown
    >;
    const call = stub[method.localName];
    const render = (message: unknown) => toJson(method.output, message as never, { registry });
    out.progress(`calling ${service.typeName}/${method.name}`);
    const responses: JsonValue[] = [];
    try {
      if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
        const request = method.methodKind === "unary" ? toMessage(input) : streamOf(input, toMessage);
        responses.push(render(await (call(request, { timeoutMs }) as Promise<unknown>)));
      } else {
        const request = method.methodKind === "server_streaming"
          ? toMessage(input)
          : streamOf(input, toMessage);
        for await (const message of call(request, { timeoutMs }) as AsyncIterable<unknown>) {
          const json = render(message);
          responses.push(json);
          if (!out.json) out.line(JSON.stringify(json, null, 2));
        }
      }
    } catch (error) {
      if (error instanceof CliError) throw error;
      // A call's TetherError already says "<method> failed: <STATUS>: <message>" (rpc.ts); anything else gets that form.
      const message = error instanceof TetherError && error.status !== undefined
        ? error.message
        : `${service.typeName}/${method.name} failed: UNKNOWN: ${
          error instanceof Error ? error.message : String(error)
        }`;
      throw new CliError(message, ExitCode.call, { cause: error });
    }
    out.clearProgress();
    if (out.json) {
      out.emit(
        method.methodKind.endsWith("server_streaming") || method.methodKind === "bidi_streaming"
          ? { responses }
          : { response: responses[0] },
      );
    } else if (method.methodKind === "unary" || method.methodKind === "client_streaming") {
      out.line(JSON.stringify(responses[0], null, 2));
    }
    return ExitCode.ok;
  }, { showLogs: values["show-logs"] === true });
}

async function* streamOf<T>(input: JsonValue, toMessage: (value: JsonValue) => T): AsyncIterable<T> {
  const items = Array.isArray(input) ? input : [input];
  for (const item of items) yield toMessage(item);
}
