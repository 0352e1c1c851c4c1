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

console.log(JSON.stringify({
  exports: WebAssembly.Module.exports(module).map(({ name, kind }) =>
    ({ name, kind, arity: kind === "function" ? abi[name].length : null })),
  imports: WebAssembly.Module.imports(module),
  metadata: meta,
  abi_version: abi.wasinfer_abi_version(),
  max_batch: maxBatch,
  input_ptrs: [...meta.inputs.keys(), meta.inputs.length, -1].map((i) => abi.wasinfer_input_ptr(i)),
  output_ptrs: [...meta.outputs.keys(), meta.outputs.length, -1].map((i) => abi.wasinfer_output_ptr(i)),
  run_status: Object.fromEntries([0, -1, maxBatch + 1, 1].map((n) => [n, abi.wasinfer_run(n)])),
  memory_bytes: memoryBytes,
  memory_grew: abi.memory.buffer.byteLength !== memoryBytes,
}));
