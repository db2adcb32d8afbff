/** `parseGoBool` against every spelling Go's strconv.ParseBool documents (go/src/internal/strconv/atob.go). */

import assert from "node:assert/strict";
import { parseGoBool } from "../../src/gobool.ts";

Deno.test("parseGoBool: Go's six true spellings are true", () => {
  for (const text of ["1", "t", "T", "true", "TRUE", "True"]) assert.equal(parseGoBool(text), true, text);
});

Deno.test("parseGoBool: Go's six false spellings are false", () => {
  for (const text of ["0", "f", "F", "false", "FALSE", "False"]) assert.equal(parseGoBool(text), false, text);
});

Deno.test("parseGoBool: anything else is not a boolean (Go's ErrSyntax), spaces and case mixes included", () => {
  for (
    const text of [
      "",
      "yes",
      "no",
      "on",
      "off",
      "y",
      "n",
      "tRUE",
      "fALSE",
      "truE",
      " true",
      "1 ",
      "01",
      "2",
      "-1",
    ]
  ) {
    assert.equal(parseGoBool(text), undefined, JSON.stringify(text));
  }
});
