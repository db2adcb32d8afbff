/**
 * Attempts that need a launch of their own: the attack is the plugin's code
 * graph, its configuration, its handshake, its resource use, or the host's
 * options. Each plugin here is written at test time into a fresh plugin tree
 * (paths embedded literally, as an attacker who knows them would write them)
 * and judged from the host's side only: the random token must not reach any
 * log, error or answer, decoys must stay unreached, and nothing may be left.
 *
 * @module
 */

import type { LaunchAttempt } from "./probe.ts";
import { channelAttempts, moduleAttempts } from "./launch_code.ts";
import { stateAttempts } from "./launch_state.ts";
import { availabilityAttempts, outliveAttempt } from "./launch_availability.ts";
import { answerAttempts } from "./launch_answers.ts";
import { callbackAttempts } from "./launch_callbacks.ts";
import { protocolAttempts } from "./launch_protocol.ts";
import { inputAttempts, isolationAttempts } from "./launch_inputs.ts";

export type { LaunchAttempt } from "./probe.ts";

const serial = (a: LaunchAttempt): LaunchAttempt => ({ ...a, serial: true });
// Judged by the host's own memory.
const SERIAL_LIES = new Set(["proto11", "proto16"]);

/** Every attempt with a launch of its own, in the order they are reported. */
export const LAUNCH_ATTEMPTS: readonly LaunchAttempt[] = [
  ...isolationAttempts.map(serial),
  ...moduleAttempts,
  ...channelAttempts,
  ...stateAttempts,
  ...availabilityAttempts.map(serial),
  serial(outliveAttempt),
  ...answerAttempts,
  ...callbackAttempts,
  ...protocolAttempts.map((a) => SERIAL_LIES.has(a.id) ? serial(a) : a),
  ...inputAttempts,
];
