// Run a wasinfer module as a WASI command under Node: .npy inputs on stdin, .npy outputs on stdout.
//   node --no-warnings wasi_run.mjs model.wasm < inputs.npy > outputs.npy
// The exit status is the module's: 0 ok, 1 I/O error, 2 the inputs do not match the model.
import { readFileSync } from "node:fs";
import { WASI } from "node:wasi";

const wasi = new WASI({ version: "preview1", args: [], env: {}, stdin: 0, stdout: 1, stderr: 2, returnOnExit: true });
const module = await WebAssembly.compile(readFileSync(process.argv[2]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
