// worker-thread.js in a Node worker thread, for parity.test.js: Node's parentPort in place of a Web Worker's scope.
import { parentPort } from "node:worker_threads";

import { serve } from "../worker-thread.js";

serve({
  addEventListener: (type, listener) => parentPort.on(type, (data) => listener({ data })),
  postMessage: (message, transfer) => parentPort.postMessage(message, transfer),
});
