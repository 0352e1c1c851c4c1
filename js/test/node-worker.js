// A Node worker thread dressed as a module Web Worker's global scope (what parity.test.js's nodeWorker starts):
// addEventListener("message") and postMessage on the global over Node's parentPort, and a WorkerGlobalScope that
// the global is an instance of. worker-thread.js is then imported exactly as a browser's worker runs it.
import { parentPort } from "node:worker_threads";

globalThis.WorkerGlobalScope = class WorkerGlobalScope {
  static [Symbol.hasInstance](scope) {
    return scope === globalThis;
  }
};
globalThis.addEventListener = (type, listener) => parentPort.on(type, (data) => listener({ data }));
globalThis.postMessage = (message, transfer) => parentPort.postMessage(message, transfer);

await import("../worker-thread.js");
