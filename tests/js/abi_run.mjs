// Call a wasinfer model through its ABI, with nothing but Node (>= 20) on the host.
//   node abi_run.mjs model.wasm input0.bin [input1.bin ...]
// An input file holds the tensor's raw bytes (C order, little-endian) for N samples, in the
// order of the metadata's inputs; output i is written to output<i>.bin in the same form. An input
// with run-time dims (ABI 3: symbolic dims) is given with this run's dims, e.g. x.bin:1,3,48,320.
import { readFileSync, writeFileSync } from "node:fs";

const ITEM_BYTES = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1,
                     uint64: 8, uint32: 4, uint16: 2, uint8: 1, bool: 1 };  // the narrow types (docs above): 1
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
const version = abi.wasinfer_abi_version();  // 2: some output's shape is decided by each run; 3: some input's
if (![1, 2, 3].includes(version)) throw new Error(`unsupported wasinfer ABI version ${version}`);

const elements = (shape) => shape.reduce((a, b) => a * b, 1);
const sampleBytes = (t) => elements(t.shape) * (ITEM_BYTES[t.dtype] ?? 1);
// ABI 2 and 3: a tensor's dims this run (int32 each, at dims_offset) where it has run-time axes
const dimsAt = (t) => new Int32Array(abi.memory.buffer, t.dims_offset, t.shape.length);
const shapeOf = (t) => t.dims_offset == null ? t.shape : Array.from(dimsAt(t));
let batch = 1;
meta.inputs.forEach((t, i) => {
  const [path, dims] = inputPaths[i].split(":");
  const raw = readFileSync(path);
  if (t.batch_axis !== null) batch = raw.length / sampleBytes(t);
  if (t.dims_offset != null) {  // ABI 3: the host writes the input's dims; its values are packed for them
    if (dims === undefined) throw new Error(`input ${t.name} has run-time dims: give them, ${path}:d0,d1,...`);
    dimsAt(t).set(dims.split(",").map(Number));
  }
  if (raw.length > (t.batch_axis !== null ? abi.wasinfer_max_batch() : 1) * sampleBytes(t)) {
    throw new Error(`${path}: more bytes than input ${t.name}'s slot holds`);
  }
  new Uint8Array(abi.memory.buffer, abi.wasinfer_input_ptr(i), raw.length).set(raw);
});
// 0: ok; 1: batch outside 1..wasinfer_max_batch(), or (ABI 3) an input's dims outside their ranges
const status = abi.wasinfer_run(batch);
if (status !== 0) throw new Error(`wasinfer_run returned ${status}`);
meta.outputs.forEach((t, i) => {
  const bytes = (t.batch_axis !== null ? batch : 1) * elements(shapeOf(t)) * (ITEM_BYTES[t.dtype] ?? 1);
  writeFileSync(`output${i}.bin`, new Uint8Array(abi.memory.buffer, abi.wasinfer_output_ptr(i), bytes));
});
