// The worker side of worker.js: a Web Worker that loads one wasinfer module and answers its `run` requests.
// Started as a module worker it serves itself; another host (Node's worker_threads) calls serve() with a scope
// that has addEventListener("message") and postMessage.
import { load } from "./index.js";

/** Answer worker.js's requests ({id, op: "load" | "run", ...}) arriving on `scope`. */
export function serve(scope) {
  let model = null;
  scope.addEventListener("message", async ({ data: { id, op, source, options, inputs } }) => {
    try {
      if (op === "load") {
        model = await load(source, options);
        const { name, abiVersion, maxBatch, inputs: specs, outputs, metadata } = model;
        scope.postMessage({ id, ok: true, value: { name, abiVersion, maxBatch, inputs: specs, outputs, metadata } });
      } else if (op === "run") {
        if (model === null) throw new Error("run before load: the worker has no model");
        const outputs = await model.run(inputs);
        scope.postMessage({ id, ok: true, value: outputs }, Object.values(outputs).map((t) => t.data.buffer));
      } else {
        throw new Error(`unknown request ${JSON.stringify(op)}`);
      }
    } catch (error) {
      scope.postMessage({ id, ok: false, error: { name: error?.name ?? "Error", message: String(error?.message ?? error) } });
    }
  });
}

if (typeof WorkerGlobalScope === "function" && globalThis instanceof WorkerGlobalScope) serve(globalThis);
