// Types of index.js: a wasinfer module's tensors and its `run`, as docs/abi.md of the wasinfer project defines them.

/** The dtypes of the ABI, named as NumPy names them. */
export type DType =
  | "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "int16" | "int8"
  | "uint64" | "uint32" | "uint16" | "uint8" | "bool"
  | "float8_e4m3fn" | "float8_e4m3fnuz" | "float8_e5m2" | "float8_e5m2fnuz" | "float8_e8m0fnu" | "float4_e2m1fn"
  | "int4" | "uint4" | "int2" | "uint2";

/** The typed arrays tensors travel in: int64/uint64 as BigInt64Array/BigUint64Array, bool as Uint8Array (0 or 1),
 * float16 as its raw bits in a Uint16Array (or a Float16Array where the engine has one, as an input), bfloat16 as
 * its raw bits in a Uint16Array, the float8/float4 and 4-/2-bit integer types one element per byte in a Uint8Array. */
export type TypedArray =
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array | Int32Array | Int16Array | Int8Array
  | Uint32Array | Uint16Array | Uint8Array | Uint8ClampedArray;

/** An input or output as a caller sees it (the Python runtime's TensorSpec). */
export interface TensorSpec {
  name: string;
  dtype: DType;
  /** -1 on the batch's axis and on each axis a run decides (a symbolic dim, or a run-time output shape). */
  shape: number[];
  /** The axis that carries the run-time batch, or null. */
  batchAxis: number | null;
  /** By axis: [smallest, largest] of each run-time axis that has a range (symbolic dims, ABI version 3). */
  ranges: Record<number, [number, number]>;
  /** By axis: the step of a range that takes only multiples (absent: 1). */
  steps: Record<number, number>;
}

/** One input of `run`: the values, dense in C order, and their shape. */
export interface Tensor<T extends TypedArray = TypedArray> {
  data: T;
  shape: number[];
}

/** One output of `run`: a copy of the values, this run's shape, and the dtype. */
export interface OutputTensor extends Tensor {
  dtype: DType;
}

/** The metadata section (docs/abi.md, "The metadata section"); keys not listed may appear. */
export interface Metadata {
  schema_version: number;
  abi_version: number;
  name: string;
  max_batch: number;
  inputs: object[];
  outputs: object[];
  run_errors?: string[];
  [key: string]: unknown;
}

export interface LoadOptions {
  /** Run the module's relaxed-SIMD code variant where the engine has relaxed SIMD (faster; results differ from the
   * plain code's in the last bits). Default false: the plain SIMD128 code, the same bits in every engine. */
  relaxedSimd?: boolean;
}

/** What this engine runs: SIMD128 (every wasinfer module needs it) and relaxed SIMD (only its faster variant). */
export interface Features {
  simd: boolean;
  relaxedSimd: boolean;
}

/** One instance of a compiled wasinfer module. */
export declare class Model {
  readonly name: string;
  /** 1, 2 (run-time output shapes) or 3 (symbolic input dims). */
  readonly abiVersion: number;
  readonly maxBatch: number;
  readonly inputs: TensorSpec[];
  readonly outputs: TensorSpec[];
  readonly metadata: Metadata;
  /** A model of a compiled module (load() compiles first, then calls this). */
  static instantiate(module: WebAssembly.Module): Promise<Model>;
  /**
   * Run on every input by name. Throws InputError (naming the input and what is wrong, in the words of
   * wasinfer's Python runtime) before anything runs, or ModelFault when the module traps.
   */
  run(inputs: Record<string, Tensor>): Promise<Record<string, OutputTensor>>;
}

/** Compile and instantiate a wasinfer module from its bytes, a fetch Response, a URL (fetched; compiled while it
 * downloads where the engine can) or a compiled WebAssembly.Module. */
export declare function load(
  source: ArrayBuffer | ArrayBufferView | Response | string | URL | WebAssembly.Module,
  options?: LoadOptions,
): Promise<Model>;

export declare function features(): Features;

/** Throws an Error naming what is missing unless an engine with `found` can run wasinfer modules (SIMD128). */
export declare function assertSupported(found?: Features): void;

/** The module's bytes with its relaxed-SIMD code in place of the plain code, where it carries that variant. */
export declare function selectRelaxedCode(bytes: Uint8Array): Uint8Array;

/** The caller's tensors do not match the model (name, dtype, shape, batch). */
export declare class InputError extends Error {}

/** The module trapped or broke its contract; the next run gets a fresh instance. */
export declare class ModelFault extends Error {}
