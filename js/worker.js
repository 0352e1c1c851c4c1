// Run a wasinfer module off the main thread: the same `run` as index.js's Model, answered by a Web Worker
// (worker-thread.js) over postMessage, so inference never blocks the page.
//   const model = await createWorkerModel("model.wasm");
//   const { probabilities } = await model.run({ input: { data, shape: [1, 64] } });
import { InputError, ModelFault } from "./index.js";

const ERRORS = { InputError, ModelFault, TypeError, RangeError, CompileError: WebAssembly.CompileError };

/**
 * Load `source` (a URL, the module's bytes or a WebAssembly.Module: what postMessage can carry; a Response is read
 * here first) in a worker and return a model whose `run` posts to it. `options.worker`: a Worker already running
 * worker-thread.js (default: a new module worker); the other options are load()'s.
 */
export async function createWorkerModel(source, options = {}) {
  const { worker: given, ...loadOptions } = options;
  if (given === undefined && typeof Worker !== "function") {
    throw new Error("createWorkerModel needs Web Workers, which this engine lacks: pass {worker}, a Worker-like " +
      "object running worker-thread.js (in Node, a worker_threads Worker behind an adapter), or use load()");
  }
  const script = given === undefined ? new URL("./worker-thread.js", import.meta.url).href : undefined;
  const worker = given ?? new Worker(script, { type: "module" });
  if (typeof Response === "function" && source instanceof Response) source = new Uint8Array(await source.arrayBuffer());
  if (typeof source === "string" && typeof location === "object") source = new URL(source, location.href).href;
  if (source instanceof URL) source = source.href;
  const model = new WorkerModel(worker, script);
  try {
    Object.assign(model, await model.call({ op: "load", source, options: loadOptions }));
  } catch (error) {
    if (given === undefined) worker.terminate(); // a worker this call started goes with its failure
    throw error;
  }
  return model;
}

/** A model living in a worker: `run` as Model.run, and `terminate` to stop the worker. */
export class WorkerModel {
  #worker;
  #pending = new Map(); // request id → [resolve, reject]
  #next = 0;
  #failure = null; // the worker's failure: every later call fails with it at once rather than waiting for ever

  /** `script`: the worker's script URL, named when the worker fails to start. */
  constructor(worker, script = "worker-thread.js") {
    this.#worker = worker;
    worker.addEventListener("message", ({ data }) => {
      const [resolve, reject] = this.#pending.get(data.id) ?? [];
      this.#pending.delete(data.id);
      if (data.ok) resolve?.(data.value);
      else reject?.(new (ERRORS[data.error.name] ?? Error)(data.error.message));
    });
    worker.addEventListener("error", (event) => { // the worker itself failed: every call fails
      // An uncaught error in the worker has a message. A script that did not load has none, in every browser (a
      // bare Event): it was missing, or not JavaScript to the browser, which refuses a module worker served with
      // another MIME type (Chromium, Firefox; WebKit runs it).
      const why = event?.message || `its script ${script} did not load (missing, or not served with a JavaScript ` +
        "MIME type such as text/javascript, which module workers need)";
      this.#failure = new Error(`the wasinfer worker failed: ${why}`);
      for (const [, reject] of this.#pending.values()) reject(this.#failure);
      this.#pending.clear();
    });
  }

  /** Post one request; its answer, or its error rebuilt as the class the worker threw (InputError, ...). */
  call(request, transfer = []) {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, [resolve, reject]);
      this.#worker.postMessage({ id, ...request }, transfer);
    });
  }

  /**
   * Model.run in the worker. The inputs are copied to it, or with `{transfer: true}` moved (their buffers are then
   * detached here: no copy for large tensors); the outputs' buffers are always moved back.
   */
  run(inputs, { transfer = false } = {}) {
    const buffers = transfer ? [...new Set(Object.values(inputs).map((t) => t?.data?.buffer).filter(Boolean))] : [];
    return this.call({ op: "run", inputs }, buffers);
  }

  /** Stop the worker; pending runs never settle. */
  terminate() {
    this.#worker.terminate();
  }
}
