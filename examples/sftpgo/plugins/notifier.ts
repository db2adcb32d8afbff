/**
 * An SFTPGo `notifier` plugin that appends every event it receives to a
 * JSON-lines file (which `eventsearcher.ts` searches):
 *
 *   deno run examples/sftpgo/plugins/notifier.ts EVENTS_JSONL
 *
 * Beyond what serving takes, it needs only `--allow-write=EVENTS_JSONL`.
 *
 * One line per event, keys as in SFTPGo's own JSON:
 *
 * ```json
 * {"kind":"fs","timestamp":"1767225600123456789","time":"2026-01-01T00:00:00.123Z","action":"upload","username":"alice",...}
 * ```
 *
 * `kind` is `fs`, `provider` or `log`; `timestamp` is Unix nanoseconds as a
 * decimal string (exact, unlike a JSON number read by JavaScript); `time` is
 * the same instant as ISO 8601, to the millisecond. Provider events carry the
 * changed object parsed, as `object_data`.
 *
 * @module
 */

import { serveNotifier } from "../../../src/sftpgo/plugin.ts";

const path = Deno.args[0];
if (!path) {
  console.error("usage: notifier.ts EVENTS_JSONL");
  Deno.exit(2);
}

// One write at a time, so that concurrent events never interleave within a line.
let writes: Promise<void> = Promise.resolve();
function append(
  kind: string,
  timestamp: { ns: bigint; date: Date },
  fields: Record<string, unknown>,
): Promise<void> {
  const line = JSON.stringify({
    kind,
    timestamp: String(timestamp.ns),
    time: timestamp.date.toISOString(),
    ...fields,
  });
  const write = writes.then(() => Deno.writeTextFile(path, line + "\n", { append: true, create: true }));
  // A failed write fails this event (SFTPGo may retry it) but not the ones after it.
  writes = write.catch(() => {});
  return write;
}

await serveNotifier({
  notifyFsEvent: (e) =>
    append("fs", { ns: e.timestampNs, date: e.timestamp }, {
      action: e.action,
      username: e.username,
      fs_path: e.fsPath,
      fs_target_path: e.fsTargetPath,
      virtual_path: e.virtualPath,
      virtual_target_path: e.virtualTargetPath,
      ssh_cmd: e.sshCmd,
      file_size: e.fileSize,
      protocol: e.protocol,
      status: e.status,
      ip: e.ip,
      session_id: e.sessionId,
      fs_provider: e.fsProvider,
      bucket: e.bucket,
      endpoint: e.endpoint,
      open_flags: e.openFlags,
      role: e.role,
      elapsed_ms: e.elapsedMs,
      metadata: e.metadata,
    }),
  notifyProviderEvent: (e) =>
    append("provider", { ns: e.timestampNs, date: e.timestamp }, {
      action: e.action,
      object_type: e.objectType,
      object_name: e.objectName,
      username: e.username,
      ip: e.ip,
      role: e.role,
      object_data: e.object,
    }),
  notifyLogEvent: (e) =>
    append("log", { ns: e.timestampNs, date: e.timestamp }, {
      event: e.event,
      username: e.username,
      protocol: e.protocol,
      ip: e.ip,
      message: e.message,
      role: e.role,
    }),
});
