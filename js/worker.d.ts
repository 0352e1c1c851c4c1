// Types of worker.js: a wasinfer model run in a Web Worker, with Model's `run`.
import type { LoadOptions, Metadata, OutputTensor, Tensor, TensorSpec } from "./index.js";

/** What worker.js needs of a worker: a Web Worker, or anything with the same three methods. */
export interface WorkerLike {
  postMessage(message: unknown, transfer: Transferable[]): void;
  addEventListener(type: "message" | "error", listener: (event: any) => void): void;
  terminate(): void;
}

export interface WorkerModelOptions extends LoadOptions {
  /** A worker already running worker-thread.js (default: a new module worker). */
  worker?: WorkerLike;
}

export declare class WorkerModel {
  readonly name: string;
  readonly abiVersion: number;
  readonly maxBatch: number;
  readonly inputs: TensorSpec[];
  readonly outputs: TensorSpec[];
  readonly metadata: Metadata;
  /** Model.run in the worker; with `transfer: true` the inputs' buffers are moved to it (detached here). */
  run(inputs: Record<string, Tensor>, options?: { transfer?: boolean }): Promise<Record<string, OutputTensor>>;
  terminate(): void;
}

export declare function createWorkerModel(
  source: ArrayBuffer | ArrayBufferView | Response | string | URL | WebAssembly.Module,
  options?: WorkerModelOptions,
): Promise<WorkerModel>;
