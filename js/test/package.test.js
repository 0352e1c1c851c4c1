// The package itself, with no Python: its files, what it asks of the engine, and how it refuses what it cannot load.
import assert from "node:assert/strict";
import { readFileSync, statSync } from "node:fs";
import { test } from "node:test";

import * as wasinfer from "../index.js";

const ROOT = new URL("../", import.meta.url);
const pkg = JSON.parse(readFileSync(new URL("package.json", ROOT), "utf8"));
const RUNTIME = pkg.files.filter((f) => f.endsWith(".js"));

test("package.json describes an ES module with its types and only the runtime's files", () => {
  assert.equal(pkg.name, "wasinfer");
  assert.equal(pkg.type, "module");
  assert.equal(pkg.exports["."].default, "./index.js");
  assert.equal(pkg.exports["."].types, pkg.types);
  assert.deepEqual(pkg.dependencies ?? {}, {});
  for (const file of pkg.files) assert.ok(statSync(new URL(file, ROOT)).isFile(), `${file} is missing`);
  assert.deepEqual(RUNTIME, ["index.js", "worker.js", "worker-thread.js"]);
});

test("the runtime code is under 30 KiB unminified", () => {
  const bytes = RUNTIME.reduce((n, f) => n + statSync(new URL(f, ROOT)).size, 0);
  assert.ok(bytes < 30 * 1024, `${bytes} bytes`);
});

test("the runtime uses no Node-only API, so the same files run in a browser", () => {
  for (const file of RUNTIME) {
    const source = readFileSync(new URL(file, ROOT), "utf8");
    for (const nodeOnly of [/from "node:/, /import\("node:/, /\brequire\(/, /\bprocess\./, /\bBuffer\.\w/, /__dirname/]) {
      assert.doesNotMatch(source, nodeOnly, `${file} uses ${nodeOnly}`);
    }
  }
});

test("index.d.ts declares every export of index.js", () => {
  const types = readFileSync(new URL("index.d.ts", ROOT), "utf8");
  for (const name of Object.keys(wasinfer)) {
    assert.match(types, new RegExp(`export declare (function|class) ${name}\\b`), `${name} has no type`);
  }
});

test("an engine without SIMD128 is refused saying so; this one has it", () => {
  assert.equal(wasinfer.features().simd, true);
  assert.throws(() => wasinfer.assertSupported({ simd: false, relaxedSimd: false }), /lacks WebAssembly SIMD128/);
  wasinfer.assertSupported();
});

test("what is not a wasinfer module is refused saying what it is", async () => {
  const empty = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]);
  await assert.rejects(wasinfer.load(empty), /no wasinfer\.metadata section: not a wasinfer module/);
  await assert.rejects(wasinfer.load(42), { name: "TypeError", message: /load\(\) takes the module's bytes/ });
  await assert.rejects(wasinfer.load(new Uint8Array([1, 2, 3])), { name: "CompileError" });
  await assert.rejects(wasinfer.load("model.wasm"),
    { name: "TypeError", message: /cannot fetch 'model.wasm': not an absolute URL.*load\(await readFile\(path\)\)/ });
  assert.equal(wasinfer.selectRelaxedCode(empty), empty, "a module without the variant is returned as it is");
});
