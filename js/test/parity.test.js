// Parity with wasinfer's Python runtime: tests/artifact/test_js_package.py compiles modules, runs them with
// wasmtime on their plain SIMD128 code, and writes the inputs, outputs and the runtime's error messages for bad
// inputs under the directory WASINFER_PARITY names (manifest.json lists them). Here the package must give the
// same specs, the same output bits and the same errors, word for word.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { test } from "node:test";
import { Worker } from "node:worker_threads";

import { features, load, selectRelaxedCode } from "../index.js";
import { createWorkerModel } from "../worker.js";

const DIRECTORY = process.env.WASINFER_PARITY;
const SKIP = DIRECTORY ? false : "WASINFER_PARITY is not set: tests/artifact/test_js_package.py writes the parity set";
const manifest = DIRECTORY ? JSON.parse(readFileSync(join(DIRECTORY, "manifest.json"), "utf8")) : { modules: [] };
const TYPED = {
  float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array, uint8: Uint8Array,
  bool: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array, uint32: Uint32Array,
  bfloat16: Uint16Array, float8_e4m3fn: Uint8Array, int4: Uint8Array,
};

const bytesOf = (file) => readFileSync(join(DIRECTORY, file));
/** A tensor the manifest describes, as run() takes it: a typed array over a copy of the file's bytes. */
function tensor({ file, dtype, shape }) {
  const raw = bytesOf(file);
  const Typed = TYPED[dtype];
  const copy = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
  return { data: new Typed(copy), shape };
}
const feedsOf = (described) => Object.fromEntries(Object.entries(described).map(([n, t]) => [n, tensor(t)]));
const rawBytes = (data) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

/** Outputs equal to the manifest's: names, dtypes, shapes, and every byte. */
function assertSameOutputs(got, want, label) {
  assert.deepEqual(Object.keys(got), Object.keys(want), label);
  for (const [name, described] of Object.entries(want)) {
    assert.equal(got[name].dtype, described.dtype, `${label} ${name}: dtype`);
    assert.deepEqual(got[name].shape, described.shape, `${label} ${name}: shape`);
    assert.ok(got[name].data instanceof TYPED[described.dtype], `${label} ${name}: ${got[name].data.constructor.name}`);
    assert.deepEqual(rawBytes(got[name].data), new Uint8Array(bytesOf(described.file)), `${label} ${name}: bytes differ`);
  }
}

/** Outputs close to the manifest's (the relaxed-SIMD code: fused multiply-adds may round differently). */
function assertCloseOutputs(got, want, label) {
  for (const [name, described] of Object.entries(want)) {
    assert.deepEqual(got[name].shape, described.shape, `${label} ${name}: shape`);
    const expected = tensor(described).data;
    got[name].data.forEach((value, i) => {
      const diff = Math.abs(Number(value) - Number(expected[i]));
      assert.ok(diff <= 1e-5 * Math.max(1, Math.abs(Number(expected[i]))), `${label} ${name}[${i}]: ${value} vs ${expected[i]}`);
    });
  }
}

test("parity with the Python runtime", { skip: SKIP }, async (t) => {
  t.diagnostic(`parity: ${manifest.modules.length} modules`);
  t.diagnostic(`relaxed simd: ${features().relaxedSimd ? "on" : "off"}`);
  for (const entry of manifest.modules) {
    await t.test(entry.name, async () => {
      const model = await load(bytesOf(entry.file));
      const asPython = (spec) => ({ name: spec.name, dtype: spec.dtype, shape: spec.shape, batch_axis: spec.batchAxis,
        ranges: spec.ranges, steps: spec.steps });
      assert.deepEqual(JSON.parse(JSON.stringify(model.inputs.map(asPython))), entry.inputs);
      assert.deepEqual(JSON.parse(JSON.stringify(model.outputs.map(asPython))), entry.outputs);
      for (const [i, run] of entry.runs.entries()) {
        assertSameOutputs(await model.run(feedsOf(run.feeds)), run.outputs, `${entry.name} run ${i}`);
      }
      for (const { feeds, message } of entry.errors) {
        await assert.rejects(model.run(feedsOf(feeds)), { name: "InputError", message });
      }
      // a refused run leaves the instance usable
      assertSameOutputs(await model.run(feedsOf(entry.runs[0].feeds)), entry.runs[0].outputs, "after a refusal");
      for (const { feeds, message } of entry.faults) { // the trap's own words differ between engines
        await assert.rejects(model.run(feedsOf(feeds)), (error) => error.name === "ModelFault" &&
          error.message.startsWith(message.slice(0, message.indexOf("): ") + 3)));
        assertSameOutputs(await model.run(feedsOf(entry.runs[0].feeds)), entry.runs[0].outputs, "after a fault");
      }
      if (features().relaxedSimd) {
        const relaxed = await load(bytesOf(entry.file), { relaxedSimd: true });
        for (const [i, run] of entry.runs.entries()) {
          assertCloseOutputs(await relaxed.run(feedsOf(run.feeds)), run.relaxed, `${entry.name} relaxed run ${i}`);
        }
      }
    });
  }
});

test("modules the runtime refuses at load are refused in its words", { skip: SKIP }, async () => {
  assert.equal(manifest.refused.length, 2);
  for (const { file, error, message } of manifest.refused) {
    if (error === "ModelFault") { // the trap's own words differ between engines
      await assert.rejects(load(bytesOf(file)), (e) => e.name === "ModelFault" &&
        e.message.startsWith(message.slice(0, message.indexOf("): ") + 3)));
    } else {
      await assert.rejects(load(bytesOf(file)), { name: "Error", message });
    }
  }
});

test("what only a JS caller can get wrong is named too: a Buffer, a bare array, data unlike its shape", { skip: SKIP },
  async () => {
    const entry = manifest.modules.find((m) => m.name === "cnn");
    const model = await load(bytesOf(entry.file));
    const { file, shape } = entry.runs[0].feeds.x;
    const { data } = tensor(entry.runs[0].feeds.x);
    const refused = async (x, message) => assert.rejects(model.run({ x }), { name: "InputError", message });
    await refused({ data: bytesOf(file), shape }, "input 'x': expected dtype float32, got uint8");
    await refused(data, "input 'x': expected {data, shape} with data a Float32Array (dtype float32), got " +
      "Float32Array as the value");
    await refused({ data: data.subarray(1), shape }, "input 'x': shape [1, 1, 8, 8] holds 64 values, got 63");
    await refused({ data, shape: [1, 1, 8, 8.5] }, "input 'x': shape must be a list of non-negative integers, got " +
      "[1,1,8,8.5]");
  });

test("the relaxed-SIMD variant is swapped in for the plain code", { skip: SKIP }, () => {
  const bytes = new Uint8Array(bytesOf("cnn.wasm"));
  const swapped = selectRelaxedCode(bytes);
  assert.ok(swapped.length < bytes.length, "the variant's section is dropped");
  assert.equal(WebAssembly.validate(swapped), features().relaxedSimd, "relaxed_madd validates only with relaxed SIMD");
  assert.ok(WebAssembly.validate(bytes));
});

test("load takes bytes, an ArrayBuffer, a Response and a URL, served as application/wasm or not", { skip: SKIP },
  async () => {
    const entry = manifest.modules.find((m) => m.name === "digits");
    const file = bytesOf(entry.file);
    const served = [];
    const server = createServer((request, response) => {
      served.push(request.url);
      if (request.url === "/missing.wasm") return response.writeHead(404).end();
      const type = request.url === "/octet.wasm" ? "application/octet-stream" : "application/wasm";
      response.writeHead(200, { "content-type": type }).end(file);
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${server.address().port}`;
    try {
      const sources = [file, file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength), new Uint8Array(file),
        `${base}/model.wasm`, new URL(`${base}/octet.wasm`), await fetch(`${base}/model.wasm`)];
      for (const source of sources) {
        const model = await load(source);
        assertSameOutputs(await model.run(feedsOf(entry.runs[0].feeds)), entry.runs[0].outputs, String(source.constructor.name));
      }
      await assert.rejects(load(`${base}/missing.wasm`), /HTTP 404/);
      assert.deepEqual(served, ["/model.wasm", "/model.wasm", "/octet.wasm", "/missing.wasm"]);  // the Response first
    } finally {
      server.close();
    }
  });

/** A Node worker thread running worker-thread.js, seen through the Web Worker methods worker.js uses. */
function nodeWorker() {
  const worker = new Worker(new URL("./node-worker.js", import.meta.url));
  return {
    postMessage: (message, transfer) => worker.postMessage(message, transfer),
    addEventListener: (type, listener) => worker.on(type, (data) => listener(type === "message" ? { data } : data)),
    terminate: () => worker.terminate(),
  };
}

// (bounded: a worker that never answers would leave its run pending for ever)
test("a worker runs the model with the same run, and refuses with the same errors", { skip: SKIP, timeout: 60_000 },
  async () => {
    for (const entry of manifest.modules.filter((m) => ["digits", "symbolic", "cnn"].includes(m.name))) {
      const model = await createWorkerModel(bytesOf(entry.file), { worker: nodeWorker() });
      try {
        assert.deepEqual(model.inputs, (await load(bytesOf(entry.file))).inputs);
        for (const [i, run] of entry.runs.entries()) {
          const feeds = feedsOf(run.feeds);
          assertSameOutputs(await model.run(feeds, { transfer: i % 2 === 1 }), run.outputs, `${entry.name} worker run ${i}`);
          const moved = Object.values(feeds).every((t) => t.data.buffer.byteLength === 0);
          assert.equal(moved, i % 2 === 1, "inputs are moved with {transfer: true} only");
        }
        for (const { feeds, message } of entry.errors) {
          await assert.rejects(model.run(feedsOf(feeds)), { name: "InputError", message });
        }
      } finally {
        model.terminate();
      }
    }
  });

test("a worker that cannot load the module says why", { timeout: 60_000 }, async () => {
  const worker = nodeWorker();
  try {
    await assert.rejects(createWorkerModel(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0]), { worker }),
      { name: "Error", message: "no wasinfer.metadata section: not a wasinfer module" });
  } finally {
    worker.terminate();
  }
  await assert.rejects(createWorkerModel(new Uint8Array(8)), /createWorkerModel needs Web Workers/);
});
