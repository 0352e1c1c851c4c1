// Report what V8 sees of a wasinfer module's ABI, as JSON on stdout, for tests/artifact/test_node_engine.py.
//   node abi_contract.mjs model.wasm
// Everything the ABI tables of docs/abi.md promise that a host can observe without running a model.
import { readFileSync } from "node:fs";

const module = await WebAssembly.compile(readFileSync(process.argv[2]));
const [section] = WebAssembly.Module.customSections(module, "wasinfer.metadata");
const meta = JSON.parse(new TextDecoder().decode(section));
const imports = {};
for (const { module: from, name } of WebAssembly.Module.imports(module)) {
  (imports[from] ??= {})[name] = () => { throw new Error(`${from}.${name} was called`); };
}
const { exports: abi } = await WebAssembly.instantiate(module, imports);
const memoryBytes = abi.memory.buffer.byteLength;
const maxBatch = abi.wasinfer_max_batch();
// ABI 3: a run reads each symbolic input's dims at its dims_offset; its largest (`shape`) are in its ranges
const setDims = (t, dims) => new Int32Array(abi.memory.buffer, t.dims_offset, dims.length).set(dims);
const symbolic = meta.inputs.filter((t) => t.dims_offset != null);
symbolic.forEach((t) => setDims(t, t.shape));
const runStatus = Object.fromEntries([0, -1, maxBatch + 1, 1].map((n) => [n, abi.wasinfer_run(n)]));
// wasinfer_run(1) with one run-time dim just below, then just above, its range (the others at their largest)
const outside = (t, axis, size) => {
  setDims(t, t.shape.map((d, a) => (a === axis ? size : d)));
  const status = abi.wasinfer_run(1);
  setDims(t, t.shape);
  return status;
};
const rangeStatus = symbolic.flatMap((t) => t.run_time_axes.map((axis, j) =>
  ({ input: t.name, axis, below: outside(t, axis, t.ranges[j][0] - 1), above: outside(t, axis, t.ranges[j][1] + 1) })));

console.log(JSON.stringify({
  exports: WebAssembly.Module.exports(module).map(({ name, kind }) =>
    ({ name, kind, arity: kind === "function" ? abi[name].length : null })),
  imports: WebAssembly.Module.imports(module),
  metadata: meta,
  abi_version: abi.wasinfer_abi_version(),
  max_batch: maxBatch,
  input_ptrs: [...meta.inputs.keys(), meta.inputs.length, -1].map((i) => abi.wasinfer_input_ptr(i)),
  output_ptrs: [...meta.outputs.keys(), meta.outputs.length, -1].map((i) => abi.wasinfer_output_ptr(i)),
  run_status: runStatus,
  range_status: rangeStatus,
  memory_bytes: memoryBytes,
  memory_grew: abi.memory.buffer.byteLength !== memoryBytes,
}));
