// The package's parity cases in a browser: the set tests/artifact/test_js_package.py writes (manifest.json, the
// modules, their inputs, the Python runtime's outputs and error messages), served under ?parity= (default
// /parity/). Every run's outputs must equal Python's byte for byte, on the page's thread (load) and in a Web Worker
// (createWorkerModel), and every refused input must be refused in the runtime's words. Asked for the relaxed-SIMD
// variant (load(..., {relaxedSimd: true})), an engine with relaxed SIMD runs it, within RELAXED_TOLERANCE of
// wasmtime's relaxed outputs (fused multiply-adds may round differently; how many runs are bit-equal is counted),
// and an engine without runs the plain code, bit-equal to the plain outputs. The result is window.parityResult:
// {modules, runs, refusals, faults, refusedAtLoad, relaxed, failures: [...]}; parity.test.js checks the same in
// Node. A module that traps must fail its run with a ModelFault and run again after it; the modules the runtime
// refuses at load must be refused in its words.
import { features, load } from "../index.js";
import { createWorkerModel } from "../worker.js";

const BASE = new URLSearchParams(location.search).get("parity") ?? "/parity/";
const TYPED = {
  float32: Float32Array, float64: Float64Array, int64: BigInt64Array, int32: Int32Array, uint8: Uint8Array,
  bool: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array, uint32: Uint32Array,
  bfloat16: Uint16Array, float8_e4m3fn: Uint8Array, int4: Uint8Array,
};

async function bytesOf(file) {
  const response = await fetch(BASE + file);
  if (!response.ok) throw new Error(`${file}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

const RELAXED_TOLERANCE = 1e-5; // relative, as parity.test.js's assertCloseOutputs

async function feedsOf(described) {
  const feeds = {};
  for (const [name, { file, dtype, shape }] of Object.entries(described)) {
    feeds[name] = { data: new TYPED[dtype]((await bytesOf(file)).buffer), shape };
  }
  return feeds;
}

/** What differs between outputs and the manifest's (names, dtypes, shapes, bytes); [] when nothing does. */
async function differences(got, want, label) {
  const found = [];
  if (JSON.stringify(Object.keys(got)) !== JSON.stringify(Object.keys(want))) found.push(`${label}: output names`);
  for (const [name, { file, dtype, shape }] of Object.entries(want)) {
    const tensor = got[name];
    if (!tensor) continue;
    if (tensor.dtype !== dtype) found.push(`${label} ${name}: dtype ${tensor.dtype}, expected ${dtype}`);
    if (JSON.stringify(tensor.shape) !== JSON.stringify(shape)) found.push(`${label} ${name}: shape [${tensor.shape}], expected [${shape}]`);
    const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
    const expected = await bytesOf(file);
    if (bytes.length !== expected.length || bytes.some((b, i) => b !== expected[i])) found.push(`${label} ${name}: bytes differ`);
  }
  return found;
}

/** Compare relaxed-variant outputs with wasmtime's (same names, shapes; values within RELAXED_TOLERANCE):
 * whether every byte is equal too, and the largest relative difference; failures pushed to `found`. */
async function closeness(got, want, label, found) {
  let bitEqual = true;
  let largest = 0;
  for (const [name, { file, dtype, shape }] of Object.entries(want)) {
    const tensor = got[name];
    if (!tensor || JSON.stringify(tensor.shape) !== JSON.stringify(shape)) {
      found.push(`${label} ${name}: missing or shape [${tensor?.shape}], expected [${shape}]`);
      bitEqual = false;
      continue;
    }
    const raw = await bytesOf(file);
    const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
    if (bytes.length !== raw.length || bytes.some((b, i) => b !== raw[i])) bitEqual = false;
    const expected = new TYPED[dtype](raw.buffer);
    tensor.data.forEach((value, i) => {
      const wanted = Number(expected[i]);
      const relative = Math.abs(Number(value) - wanted) / Math.max(1, Math.abs(wanted));
      if (!(relative <= RELAXED_TOLERANCE)) found.push(`${label} ${name}[${i}]: ${value}, expected ${wanted}`);
      largest = Math.max(largest, relative);
    });
  }
  return { bitEqual, largest };
}

async function check() {
  const manifest = await (await fetch(BASE + "manifest.json")).json();
  const result = { modules: 0, runs: 0, refusals: 0, faults: 0, refusedAtLoad: 0, failures: [], features: features(),
    names: [] };
  // the relaxed variant asked for: what ran (the variant, or the plain code where the engine lacks relaxed SIMD)
  result.relaxed = { ran: features().relaxedSimd ? "relaxed" : "plain", runs: 0, bitEqual: 0, largestDifference: 0 };
  for (const entry of manifest.modules) {
    const wasm = await bytesOf(entry.file);
    for (const [where, model] of [["page", await load(wasm)], ["worker", await createWorkerModel(wasm.slice())]]) {
      for (const [i, run] of entry.runs.entries()) {
        const outputs = await model.run(await feedsOf(run.feeds));
        result.failures.push(...await differences(outputs, run.outputs, `${entry.name} ${where} run ${i}`));
        result.runs += 1;
      }
      for (const [i, { feeds, message }] of entry.errors.entries()) {
        try {
          await model.run(await feedsOf(feeds));
          result.failures.push(`${entry.name} ${where} bad input ${i}: ran, expected "${message}"`);
        } catch (error) {
          if (error.name !== "InputError" || error.message !== message) {
            result.failures.push(`${entry.name} ${where} bad input ${i}: ${error.name} "${error.message}", expected "${message}"`);
          }
          result.refusals += 1;
        }
      }
      for (const [i, { feeds, message }] of (entry.faults ?? []).entries()) { // a trap's own words differ by engine
        const label = `${entry.name} ${where} fault ${i}`;
        try {
          await model.run(await feedsOf(feeds));
          result.failures.push(`${label}: ran, expected a ModelFault "${message}"`);
        } catch (error) {
          if (!isFault(error, message)) result.failures.push(`${label}: ${error.name} "${error.message}", expected "${message}"`);
          result.faults += 1;
        }
        // the next run gets a fresh instance
        const outputs = await model.run(await feedsOf(entry.runs[0].feeds));
        result.failures.push(...await differences(outputs, entry.runs[0].outputs, `${label}, the run after`));
      }
      model.terminate?.();
    }
    const relaxed = await load(wasm, { relaxedSimd: true });
    for (const [i, run] of entry.runs.entries()) {
      const outputs = await relaxed.run(await feedsOf(run.feeds));
      const label = `${entry.name} relaxed run ${i}`;
      if (features().relaxedSimd) {
        const { bitEqual, largest } = await closeness(outputs, run.relaxed, label, result.failures);
        result.relaxed.bitEqual += bitEqual ? 1 : 0;
        result.relaxed.largestDifference = Math.max(result.relaxed.largestDifference, largest);
      } else {
        const found = await differences(outputs, run.outputs, label);
        result.failures.push(...found);
        result.relaxed.bitEqual += found.length ? 0 : 1;
      }
      result.relaxed.runs += 1;
    }
    result.modules += 1;
    result.names.push(entry.name);
  }
  // modules that no run should reach: refused at load, in the runtime's words (a trap's own words aside)
  for (const { file, error: kind, message } of manifest.refused ?? []) {
    for (const [where, loader] of [["page", load], ["worker", createWorkerModel]]) {
      try {
        (await loader(await bytesOf(file))).terminate?.();
        result.failures.push(`${file} ${where}: loaded, expected ${kind} "${message}"`);
      } catch (error) {
        const same = kind === "ModelFault" ? isFault(error, message) : error.name === "Error" && error.message === message;
        if (!same) result.failures.push(`${file} ${where}: ${error.name} "${error.message}", expected "${message}"`);
        result.refusedAtLoad += 1;
      }
    }
  }
  return result;
}

/** A ModelFault saying what the runtime's does up to the trap's own words ("model 'x' trapped (wasinfer_run): "). */
const isFault = (error, message) => error.name === "ModelFault" &&
  error.message.startsWith(message.slice(0, message.indexOf("): ") + 3));

window.parityResult = check().catch((error) => ({ failures: [`the check itself failed: ${error.stack ?? error}`] }));
window.parityResult.then((result) => {
  document.getElementById("log").textContent = JSON.stringify(result, null, 1);
});
