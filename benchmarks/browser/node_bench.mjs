// bench.js's measurement in Node, for browser_bench.py's Node columns: one fresh process per cell.
//   node node_bench.mjs wasinfer|ort JOB.json WORKDIR ORT_DIST  ->  one JSON object on stdout
// The job is the page's (URLs under /bench/ name files in WORKDIR). "First result" counts from the process's start
// (performance.now()'s origin in Node), as the page counts from navigation start: the runtime's import and
// compilation, the model's read and compilation (or session creation) and the first run.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [runtime, jobFile, workdir, ortDist] = process.argv.slice(2);
const file = (url) => join(workdir, url.replace(/^\/bench\//, ""));
const TYPED = { float32: Float32Array, int32: Int32Array, int64: BigInt64Array, bool: Uint8Array };

const job = JSON.parse(readFileSync(jobFile, "utf8"));
const inputs = {};
for (const { name, file: url, dtype, shape } of job.inputs) {
  const raw = readFileSync(file(url));
  inputs[name] = { data: new TYPED[dtype](raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)), shape, dtype };
}
const inputsMs = performance.now();

async function wasinfer() {
  const { load } = await import(new URL("../../js/index.js", import.meta.url));
  const model = await load(readFileSync(file(job.model)));
  const feeds = Object.fromEntries(Object.entries(inputs).map(([n, { data, shape }]) => [n, { data, shape }]));
  return [await model.run(feeds), () => model.run(feeds)];
}

async function onnxruntime() {
  const ort = await import(pathToFileURL(join(ortDist, "ort.node.min.mjs")).href);
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = ortDist + "/";
  ort.env.logLevel = "error";
  const session = await ort.InferenceSession.create(readFileSync(file(job.model)), { executionProviders: ["wasm"],
    graphOptimizationLevel: "all", executionMode: "sequential" });
  const feeds = Object.fromEntries(Object.entries(inputs).map(([n, { data, shape, dtype }]) =>
    [n, new ort.Tensor(dtype, data, shape)]));
  return [await session.run(feeds), () => session.run(feeds)];
}

const [, again] = await (runtime === "ort" ? onnxruntime : wasinfer)();
const firstMs = performance.now();
const latency = [];
const deadline = performance.now() + job.seconds * 1000;
while (latency.length < job.min_iters || (latency.length < job.max_iters && performance.now() < deadline)) {
  const started = performance.now();
  await again();
  latency.push(performance.now() - started);
}
process.stdout.write(JSON.stringify({ first_ms: firstMs, inputs_ms: inputsMs, latency_ms: latency }) + "\n");
process.exit(0); // onnxruntime-web may keep handles open
