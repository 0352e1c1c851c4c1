// One cold-page measurement for benchmarks/browser_bench.py: ?runtime=wasinfer|ort&job=URL. The job names the model
// (a wasinfer module or the .onnx for onnxruntime-web) and its inputs (raw files); the page imports its runtime only
// now, so the runtime's download, compilation and the model's are all inside "first result", which is counted from
// navigation start (performance.now()'s origin). Then the same inputs run again, warm, for the per-inference times.
// window.benchResult: {first_ms, inputs_ms, phases: {imported, loaded}, latency_ms: [...], outputs: {name: [first values]}, shapes: {name: [...]}}.
const params = new URLSearchParams(location.search);
const RUNTIME = params.get("runtime");
const TYPED = { float32: Float32Array, int32: Int32Array, int64: BigInt64Array, bool: Uint8Array };

async function readInputs(job) {
  const inputs = {};
  await Promise.all(job.inputs.map(async ({ name, file, dtype, shape }) => {
    const bytes = await (await fetch(file)).arrayBuffer();
    inputs[name] = { data: new TYPED[dtype](bytes), shape, dtype };
  }));
  return inputs;
}

/**
 * Milliseconds per call: `min` samples at least, then more while under `max` and `seconds`. Outside a
 * cross-origin-isolated page, Chromium rounds performance.now() to 100 µs, so a sample of a fast model times
 * enough calls back to back to last about 5 ms, and is their mean.
 */
async function sample(run, min, max, seconds) {
  const probe = performance.now();
  await run();
  const reps = Math.min(1000, Math.max(1, Math.ceil(5 / Math.max(performance.now() - probe, 0.005))));
  const times = [];
  const deadline = performance.now() + seconds * 1000;
  while (times.length < min || (times.length < max && performance.now() < deadline)) {
    const started = performance.now();
    for (let i = 0; i < reps; i++) await run();
    times.push((performance.now() - started) / reps);
  }
  return times;
}

const head = (data) => Array.from(data.subarray(0, 64), Number);

const phases = {}; // when each step ended, ms since navigation start

async function wasinfer(job, inputs) {
  const { load } = await import("/index.js");
  phases.imported = performance.now();
  const model = await load(job.model);
  phases.loaded = performance.now();
  const feeds = Object.fromEntries(Object.entries(inputs).map(([n, { data, shape }]) => [n, { data, shape }]));
  const outputs = await model.run(feeds);
  return [outputs, () => model.run(feeds)];
}

async function onnxruntime(job, inputs) {
  const ort = await import("/ort/ort.wasm.min.mjs");
  phases.imported = performance.now();
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = "/ort/";
  const session = await ort.InferenceSession.create(job.model, { executionProviders: ["wasm"],
    graphOptimizationLevel: "all", executionMode: "sequential" });
  phases.loaded = performance.now();
  const feeds = Object.fromEntries(Object.entries(inputs).map(([n, { data, shape, dtype }]) =>
    [n, new ort.Tensor(dtype, data, shape)]));
  const outputs = await session.run(feeds);
  return [outputs, () => session.run(feeds)];
}

async function measure() {
  const job = await (await fetch(params.get("job"))).json();
  const inputs = await readInputs(job);
  const inputsMs = performance.now();
  const [outputs, again] = await (RUNTIME === "ort" ? onnxruntime : wasinfer)(job, inputs);
  const firstMs = performance.now();
  const latency = await sample(again, job.min_iters, job.max_iters, job.seconds);
  return { first_ms: firstMs, inputs_ms: inputsMs, phases, latency_ms: latency,
    outputs: Object.fromEntries(Object.entries(outputs).map(([n, t]) => [n, head(t.data)])),
    shapes: Object.fromEntries(Object.entries(outputs).map(([n, t]) => [n, Array.from(t.shape ?? t.dims)])) };
}

window.benchResult = measure().catch((error) => ({ error: String(error?.stack ?? error) }));
window.benchResult.then((result) => { document.getElementById("log").textContent = JSON.stringify(result); });
