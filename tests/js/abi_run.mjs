// Call a wasinfer model through its ABI, with nothing but Node (>= 20) on the host.
//   node abi_run.mjs model.wasm input0.bin [input1.bin ...]
// An input file holds the tensor's raw bytes (C order, little-endian) for N samples, in the
// order of the metadata's inputs; output i is written to output<i>.bin in the same form.
import { readFileSync, writeFileSync } from "node:fs";

const ITEM_BYTES = { float32: 4, float64: 8, float16: 2, int64: 8, int32: 4, int16: 2, int8: 1,
                     uint64: 8, uint32: 4, uint16: 2, uint8: 1, bool: 1 };
const [wasmPath, ...inputPaths] = process.argv.slice(2);

const module = await WebAssembly.compile(readFileSync(wasmPath));
const [section] = WebAssembly.Module.customSections(module, "wasinfer.metadata");
const meta = JSON.parse(new TextDecoder().decode(section));

// A module built with --wasi also imports three WASI functions; the ABI never calls them.
const imports = {};
for (const { module: from, name } of WebAssembly.Module.imports(module)) {
  (imports[from] ??= {})[name] = () => { throw new Error(`${from}.${name} is not provided`); };
}
const { exports: abi } = await WebAssembly.instantiate(module, imports);
const version = abi.wasinfer_abi_version();  // 2: some output's shape is decided by each run
if (version !== 1 && version !== 2) throw new Error(`unsupported wasinfer ABI version ${version}`);

const elements = (shape) => shape.reduce((a, b) => a * b, 1);
const sampleBytes = (t) => elements(t.shape) * ITEM_BYTES[t.dtype];
// ABI 2: the dims this run wrote (int32 each) for an output with run-time axes; the shape otherwise
const shapeOf = (t) => t.dims_offset == null ? t.shape
  : Array.from(new Int32Array(abi.memory.buffer, t.dims_offset, t.shape.length));
let batch = 1;
meta.inputs.forEach((t, i) => {
  const raw = readFileSync(inputPaths[i]);
  if (t.batch_axis !== null) batch = raw.length / sampleBytes(t);
  new Uint8Array(abi.memory.buffer, abi.wasinfer_input_ptr(i), raw.length).set(raw);
});
const status = abi.wasinfer_run(batch);  // 0: ok; 1: batch outside 1..wasinfer_max_batch()
if (status !== 0) throw new Error(`wasinfer_run returned ${status}`);
meta.outputs.forEach((t, i) => {
  const bytes = (t.batch_axis !== null ? batch : 1) * elements(shapeOf(t)) * ITEM_BYTES[t.dtype];
  writeFileSync(`output${i}.bin`, new Uint8Array(abi.memory.buffer, abi.wasinfer_output_ptr(i), bytes));
});
