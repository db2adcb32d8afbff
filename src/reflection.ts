/**
 * gRPC server reflection, both sides.
 *
 * - {@linkcode reflectionServices}: what `serve()` registers so that grpcurl, `tether inspect` and any other
 *   reflection client can list a Tether plugin's services and read their descriptors. Like grpc-go's
 *   `reflection.Register` (which go-plugin calls for every Go plugin), it serves both
 *   `grpc.reflection.v1.ServerReflection` and `grpc.reflection.v1alpha.ServerReflection`.
 * - {@linkcode reflect}: asks a running plugin (Go or Tether) for its services and their descriptors, and
 *   returns a registry from which calls can be made with JSON in and out.
 *
 * @module
 */

import {
  createFileRegistry,
  type DescFile,
  type DescService,
  type FileRegistry,
  toBinary,
} from "@bufbuild/protobuf";
import { fromBinary } from "@bufbuild/protobuf";
import {
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { GrpcStatus, TetherError } from "./errors.ts";
import * as v1 from "./gen/grpc/reflection/v1/reflection_pb.ts";
import * as v1alpha from "./gen/grpc/reflection/v1alpha/reflection_pb.ts";
import { registration, type ServiceClient, type ServiceRegistration } from "./service.ts";

type Request = v1.ServerReflectionRequest;
type ResponseInit = Omit<v1.ServerReflectionResponse, "$typeName" | "originalRequest"> & {
  originalRequest?: Request;
};

/** Every file reachable from the served services, by name, and the file defining each symbol. */
class Index {
  readonly files = new Map<string, DescFile>();
  readonly symbols = new Map<string, DescFile>();
  readonly services: string[];

  constructor(services: readonly DescService[]) {
    this.services = [...new Set(services.map((s) => s.typeName))].sort();
    for (const service of services) this.#add(service.file);
  }

  #add(file: DescFile): void {
    // DescFile.name drops ".proto"; reflection clients ask by the full name, as in FileDescriptorProto.name.
    if (this.files.has(file.proto.name)) return;
    this.files.set(file.proto.name, file);
    for (const dep of file.dependencies) this.#add(dep);
    const prefix = file.proto.package ? `${file.proto.package}.` : "";
    for (const service of file.services) {
      this.symbols.set(service.typeName, file);
      for (const method of service.methods) this.symbols.set(`${service.typeName}.${method.name}`, file);
    }
    const messages = [...file.messages];
    while (messages.length > 0) {
      const message = messages.pop()!;
      this.symbols.set(message.typeName, file);
      messages.push(...message.nestedMessages);
      for (const e of message.nestedEnums) this.symbols.set(e.typeName, file);
      for (const x of message.nestedExtensions) this.symbols.set(x.typeName, file);
    }
    for (const e of file.enums) this.symbols.set(e.typeName, file);
    for (const x of file.extensions) this.symbols.set(x.typeName, file);
    if (prefix) this.symbols.set(file.proto.package, file);
  }

  /** The file and everything it imports, serialized, the file first (as grpc-go answers). */
  closure(file: DescFile): Uint8Array[] {
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    const visit = (f: DescFile) => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      for (const dep of f.dependencies) visit(dep);
    };
    visit(file);
    return out;
  }

  answer(request: Request): ResponseInit {
    const base = { validHost: request.host, originalRequest: request };
    const notFound = (what: string): ResponseInit => ({
      ...base,
      messageResponse: {
        case: "errorResponse",
        value: create(v1.ErrorResponseSchema, {
          errorCode: GrpcStatus.NOT_FOUND,
          errorMessage: `${what} not found`,
        }),
      },
    });
    const files = (file: DescFile | undefined, what: string): ResponseInit =>
      file === undefined ? notFound(what) : {
        ...base,
        messageResponse: {
          case: "fileDescriptorResponse",
          value: create(v1.FileDescriptorResponseSchema, { fileDescriptorProto: this.closure(file) }),
        },
      };
    const r = request.messageRequest;
    switch (r.case) {
      case "listServices":
        return {
          ...base,
          messageResponse: {
            case: "listServicesResponse",
            value: create(v1.ListServiceResponseSchema, { service: this.services.map((name) => ({ name })) }),
          },
        };
      case "fileByFilename":
        return files(this.files.get(r.value), `file ${JSON.stringify(r.value)}`);
      case "fileContainingSymbol":
        return files(this.symbols.get(r.value), `symbol ${JSON.stringify(r.value)}`);
      case "fileContainingExtension": {
        const { containingType, extensionNumber } = r.value;
        const file = [...this.files.values()].find((f) =>
          allExtensions(f).some((x) => x.extendee.typeName === containingType && x.number === extensionNumber)
        );
        return files(file, `extension ${extensionNumber} of ${containingType}`);
      }
      case "allExtensionNumbersOfType": {
        if (!this.symbols.has(r.value)) return notFound(`type ${JSON.stringify(r.value)}`);
        const numbers = [...this.files.values()].flatMap((f) =>
          allExtensions(f).filter((x) => x.extendee.typeName === r.value).map((x) => x.number)
        );
        return {
          ...base,
          messageResponse: {
            case: "allExtensionNumbersResponse",
            value: create(v1.ExtensionNumberResponseSchema, {
              baseTypeName: r.value,
              extensionNumber: numbers,
            }),
          },
        };
      }
      default:
        return {
          ...base,
          messageResponse: {
            case: "errorResponse",
            value: create(v1.ErrorResponseSchema, {
              errorCode: GrpcStatus.INVALID_ARGUMENT,
              errorMessage: "empty reflection request",
            }),
          },
        };
    }
  }
}

function allExtensions(file: DescFile) {
  const out = [...file.extensions];
  const messages = [...file.messages];
  while (messages.length > 0) {
    const m = messages.pop()!;
    out.push(...m.nestedExtensions);
    messages.push(...m.nestedMessages);
  }
  return out;
}

/**
 * The reflection services for a server that serves `registrations`: v1 and v1alpha, each listing every
 * registered service plus both reflection services, as grpc-go does.
 *
 * @param registrations The server's other services.
 * @returns Two registrations to add to the server.
 *
 * @example
 * ```ts
 * import { reflectionServices } from "./reflection.ts";
 * import { registration } from "./service.ts";
 * import { Adder } from "./gen/tether/kv/v1/kv_pb.ts";
 * const adder = registration(Adder, { add: (req) => ({ sum: req.a + req.b }) });
 * const services = [adder, ...reflectionServices([adder])];
 * console.log(services.map((s) => s.service.typeName));
 * // ["tether.kv.v1.Adder", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"]
 * ```
 */
export function reflectionServices(registrations: readonly ServiceRegistration[]): ServiceRegistration[] {
  const index = new Index([
    ...registrations.map((r) => r.service),
    v1.ServerReflection,
    v1alpha.ServerReflection,
  ]);
  return [
    registration(v1.ServerReflection, {
      serverReflectionInfo: async function* (requests) {
        for await (const request of requests) yield index.answer(request);
      },
    }),
    registration(v1alpha.ServerReflection, {
      serverReflectionInfo: async function* (requests) {
        // Same fields and numbers: translate through the wire format.
        for await (const request of requests) {
          const asV1 = fromBinary(
            v1.ServerReflectionRequestSchema,
            toBinary(v1alpha.ServerReflectionRequestSchema, request),
          );
          const answer = create(v1.ServerReflectionResponseSchema, index.answer(asV1));
          yield fromBinary(
            v1alpha.ServerReflectionResponseSchema,
            toBinary(v1.ServerReflectionResponseSchema, answer),
          );
        }
      },
    }),
  ];
}

/**
 * `registrations` plus their reflection services: the one hook `serve()` calls.
 *
 * @example
 * ```ts
 * import { withReflection } from "./reflection.ts";
 * console.log(withReflection([]).length); // 2
 * ```
 */
export function withReflection(registrations: readonly ServiceRegistration[]): ServiceRegistration[] {
  return [...registrations, ...reflectionServices(registrations)];
}

/** Anything that can dispense a service client, such as a started `PluginClient`. */
export interface Dispenser {
  /** A client for `service` over the plugin's connection. */
  dispense<S extends DescService>(service: S): ServiceClient<S>;
}

/** What {@linkcode reflect} learnt about a server. */
export interface Reflection {
  /** The reflection version that answered. */
  readonly version: "v1" | "v1alpha";
  /** Fully qualified names of the served services, sorted. */
  readonly services: readonly string[];
  /** Every file the services need, for {@linkcode FileRegistry.getService} and JSON conversion. */
  readonly registry: FileRegistry;
}

/**
 * Lists a server's services over gRPC reflection and fetches their descriptors: v1 first, v1alpha when the
 * server does not implement v1 (older grpc-go).
 *
 * @param client A started plugin client (or anything that dispenses service clients).
 * @param options `timeoutMs` per reflection stream (default 10 s).
 * @returns The services and a registry with their files.
 * @throws {TetherError} `rpc` when the server serves no reflection, with what to do.
 *
 * @example
 * ```ts ignore
 * import { PluginClient } from "./client.ts";
 * import { reflect } from "./reflection.ts";
 * await using client = new PluginClient({ cmd: "./plugin", handshake });
 * await client.start();
 * const { services, registry } = await reflect(client);
 * for (const name of services) console.log(name, registry.getService(name)?.methods.map((m) => m.name));
 * ```
 */
export async function reflect(client: Dispenser, options: { timeoutMs?: number } = {}): Promise<Reflection> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  let lastError: unknown;
  for (
    const [version, service] of [["v1", v1.ServerReflection], ["v1alpha", v1alpha.ServerReflection]] as const
  ) {
    try {
      const stub = client.dispense(service as typeof v1.ServerReflection);
      // Every request on one stream, then half-close: grpc-go and serve() both answer each request in order and
      // end the stream (tests/core/bidi_test.ts).
      const exchange = async (requests: v1.ServerReflectionRequest["messageRequest"][]) => {
        const answers: v1.ServerReflectionResponse[] = [];
        const sent = (async function* () {
          for (const messageRequest of requests) yield { messageRequest };
        })();
        for await (const answer of stub.serverReflectionInfo(sent, { timeoutMs })) answers.push(answer);
        if (answers.length !== requests.length) {
          throw new TetherError(
            "rpc",
            `reflection ${version}: the server gave ${answers.length} answers to ${requests.length} requests on ` +
              "one stream (one each expected); pass the service descriptors with --descriptor-set",
          );
        }
        return answers;
      };
      const [list] = await exchange([{ case: "listServices", value: "" }]);
      if (list.messageResponse.case !== "listServicesResponse") {
        throw new TetherError("rpc", `reflection ${version}: unexpected answer to list_services`);
      }
      const services = list.messageResponse.value.service.map((s) => s.name).sort();
      const answers = await exchange(services.map((name) => ({ case: "fileContainingSymbol", value: name })));
      const files = new Map<string, FileDescriptorProto>();
      for (const answer of answers) {
        if (answer.messageResponse.case !== "fileDescriptorResponse") continue;
        for (const bytes of answer.messageResponse.value.fileDescriptorProto) {
          const proto = fromBinary(FileDescriptorProtoSchema, bytes);
          if (!files.has(proto.name)) files.set(proto.name, proto);
        }
      }
      // A FileDescriptorSet lists imports before the files that import them (as protoc writes it).
      const ordered: FileDescriptorProto[] = [];
      const placed = new Set<string>();
      const place = (name: string) => {
        const file = files.get(name);
        if (file === undefined || placed.has(name)) return;
        placed.add(name);
        for (const dep of file.dependency) place(dep);
        ordered.push(file);
      };
      for (const name of files.keys()) place(name);
      const set = create(FileDescriptorSetSchema, { file: ordered });
      return { version, services, registry: createFileRegistry(set) };
    } catch (error) {
      lastError = error;
      if (!(error instanceof TetherError && error.status === GrpcStatus.UNIMPLEMENTED)) throw error;
    }
  }
  throw new TetherError(
    "rpc",
    "the plugin serves no gRPC reflection (neither grpc.reflection.v1 nor v1alpha); " +
      "pass the service descriptors with --descriptor-set",
    { cause: lastError },
  );
}
