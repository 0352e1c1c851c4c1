// onnxruntime-web (ONNX Runtime compiled to Wasm) in Node, one thread: the Wasm peer of
// benchmarks/compile_bench.py. Every number is taken here, inside Node, so the JSON pipe to
// Python never counts. The sampling policy mirrors compile_bench.py's `sample`.
//
// usage: node ort_web_bench.mjs JOB.json  ->  one JSON object on stdout
// JOB: {budget: {warmup_min, warmup_seconds, min_iters, max_iters, max_seconds, cold_min, cold_max, cold_seconds},
//       models: [{name, path, inputs: [{name, file, dims, type}]}]}
// (input files: raw little-endian values of `type`: float32, int32, int64 or bool)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { performance } from "node:perf_hooks";

import * as ort from "onnxruntime-web";

const require = createRequire(import.meta.url);
// The .wasm that ships in the package, next to the .mjs Node resolved: nothing is fetched at run time.
const dist = dirname(require.resolve("onnxruntime-web/ort-wasm-simd-threaded.wasm"));

ort.env.wasm.numThreads = 1; // the single-core comparison: no worker threads
ort.env.wasm.proxy = false;
ort.env.wasm.wasmPaths = dist + "/";
ort.env.logLevel = "error";

const SESSION_OPTIONS = { executionProviders: ["wasm"], graphOptimizationLevel: "all", executionMode: "sequential" };

// ort.Tensor's type name → the typed array that holds it (bool as one byte per value)
const ARRAYS = { float32: Float32Array, int32: Int32Array, int64: BigInt64Array, bool: Uint8Array };

function feedsOf(model) {
  const feeds = {};
  for (const input of model.inputs) {
    const bytes = readFileSync(input.file);
    const type = input.type ?? "float32";
    const Array_ = ARRAYS[type];
    const data = new Array_(bytes.buffer, bytes.byteOffset, bytes.byteLength / Array_.BYTES_PER_ELEMENT);
    feeds[input.name] = new ort.Tensor(type, data, input.dims);
  }
  return feeds;
}

/** Milliseconds per call of `fn`: at least `min` calls, then more while under `max` calls and `seconds`. */
async function sample(fn, min, max, seconds) {
  const times = [];
  const deadline = performance.now() + seconds * 1000;
  while (times.length < min || (times.length < max && performance.now() < deadline)) {
    const started = performance.now();
    await fn();
    times.push(performance.now() - started);
  }
  return times;
}

/** Session creation (reading the file included) plus the first result. */
async function coldStart(path, feeds) {
  const session = await ort.InferenceSession.create(readFileSync(path), SESSION_OPTIONS);
  await session.run(feeds);
  await session.release();
}

/** The outputs as plain numbers, for compile_bench.py's agreement check. */
function plain(outputs) {
  const result = {};
  for (const [name, tensor] of Object.entries(outputs)) result[name] = Array.from(tensor.data, Number);
  return result;
}

async function benchModel(model, budget) {
  const feeds = feedsOf(model);
  const start = () => coldStart(model.path, feeds);
  // Not samples: the first start in a process pays one-time setup (instantiating ORT's own Wasm), and
  // V8 keeps compiling ORT's code for a while after (cold starts of digits settle after ~0.5 s).
  const [firstColdMs] = await sample(start, budget.warmup_min, Infinity, budget.warmup_seconds);
  const cold = await sample(start, budget.cold_min, budget.cold_max, budget.cold_seconds);
  const session = await ort.InferenceSession.create(readFileSync(model.path), SESSION_OPTIONS);
  await sample(() => session.run(feeds), budget.warmup_min, Infinity, budget.warmup_seconds);
  const latency = await sample(() => session.run(feeds), budget.min_iters, budget.max_iters, budget.max_seconds);
  const outputs = plain(await session.run(feeds));
  await session.release();
  return { status: "ok", first_cold_ms: firstColdMs, cold_ms: cold, latency_ms: latency, outputs };
}

async function main() {
  const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
  const results = { version: ort.env.versions?.web ?? null, node: process.version, models: {} };
  for (const model of job.models) {
    try {
      results.models[model.name] = await benchModel(model, job.budget);
    } catch (error) {
      results.models[model.name] = { status: "error", reason: String(error?.message ?? error).split("\n")[0] };
    }
  }
  process.stdout.write(JSON.stringify(results));
}

await main();
