// wasinfer: run a wasinfer module (one self-contained .wasm: code, weights, metadata) in a browser or in Node,
// with nothing else to download. The module's contract with its host is docs/abi.md of the wasinfer project;
// this file is that host, with the checks and the error wording of wasinfer's Python runtime, so that a
// tensor the server refuses is refused here in the same words. No Node-only API is used: the same file
// runs in every engine with WebAssembly SIMD128.

const METADATA_SECTION = "wasinfer.metadata";
const RELAXED_CODE_SECTION = "wasinfer.relaxed_code"; // a second code section, see `relaxedSimd` in load()
const ABI_VERSIONS = [1, 2, 3];

// Each dtype of docs/abi.md, its element bytes, and the typed array that holds it. bool is one byte (0 or 1), so a
// Uint8Array; float16 has no typed array before Float16Array, so its raw bits travel in a Uint16Array, as do
// bfloat16's; the float8/float4 bit patterns and the 4- and 2-bit integers (one per byte) travel in a Uint8Array.
const DTYPES = {
  bool: [1, Uint8Array], int8: [1, Int8Array], uint8: [1, Uint8Array], int16: [2, Int16Array],
  uint16: [2, Uint16Array], float16: [2, Uint16Array], bfloat16: [2, Uint16Array], int32: [4, Int32Array],
  uint32: [4, Uint32Array], float32: [4, Float32Array], int64: [8, BigInt64Array], uint64: [8, BigUint64Array],
  float64: [8, Float64Array], float8_e4m3fn: [1, Uint8Array], float8_e4m3fnuz: [1, Uint8Array],
  float8_e5m2: [1, Uint8Array], float8_e5m2fnuz: [1, Uint8Array], float8_e8m0fnu: [1, Uint8Array],
  float4_e2m1fn: [1, Uint8Array],
  int4: [1, Uint8Array], uint4: [1, Uint8Array], int2: [1, Uint8Array], uint2: [1, Uint8Array],
};
// The dtypes whose raw bits travel in another dtype's typed array (the caller's array then says that dtype).
const RAW_BITS = { float16: "uint16", bfloat16: "uint16", float8_e4m3fn: "uint8", float8_e4m3fnuz: "uint8",
  float8_e5m2: "uint8", float8_e5m2fnuz: "uint8", float8_e8m0fnu: "uint8", float4_e2m1fn: "uint8", int4: "uint8", uint4: "uint8",
  int2: "uint8", uint2: "uint8" };
// What a caller's typed array says its dtype is (the name errors print for it), by its class's name: a Node Buffer
// is a Uint8Array, and an array from another realm (an iframe, a worker's message) is named as one from this one.
const DTYPE_OF = {
  Float32Array: "float32", Float64Array: "float64", BigInt64Array: "int64", Int32Array: "int32", Int16Array: "int16",
  Int8Array: "int8", BigUint64Array: "uint64", Uint32Array: "uint32", Uint16Array: "uint16", Uint8Array: "uint8",
  Uint8ClampedArray: "uint8", Float16Array: "float16",
};

/** An input that does not match the model (name, dtype, shape, batch): the Python runtime's InputError. */
export class InputError extends Error {
  constructor(message) {
    super(message);
    this.name = "InputError";
  }
}

/** The module trapped or broke its contract; the run failed and the next one gets a fresh instance. */
export class ModelFault extends Error {
  constructor(message) {
    super(message);
    this.name = "ModelFault";
  }
}

// The smallest modules that use a SIMD128 instruction and a relaxed-SIMD one (i8x16.splat; i8x16.relaxed_swizzle):
// an engine that validates them runs such code.
const SIMD_PROBE = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15,
  253, 98, 11];
const RELAXED_SIMD_PROBE = [0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 15, 1, 13, 0, 65, 1,
  253, 15, 65, 2, 253, 15, 253, 128, 2, 11];

/** What this engine runs: SIMD128 (every wasinfer module needs it) and relaxed SIMD (only its faster variant). */
export function features() {
  const validates = (bytes) => typeof WebAssembly === "object" && WebAssembly.validate(new Uint8Array(bytes));
  return { simd: validates(SIMD_PROBE), relaxedSimd: validates(RELAXED_SIMD_PROBE) };
}

/** Throw, saying what is missing, unless an engine with `found` (features()) can run wasinfer modules. */
export function assertSupported(found = features()) {
  if (!found.simd) {
    throw new Error("this JavaScript engine lacks WebAssembly SIMD128 (fixed-width SIMD), which every wasinfer " +
      "module uses: run it in Chrome or Edge >= 91, Firefox >= 89, Safari >= 16.4 or Node >= 16.4");
  }
}

// Errors quote names and lists as Python's repr does, so that they read exactly as the server's.
const repr = (s) => (s.includes("'") && !s.includes('"') ? `"${s}"` : `'${s.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`);
const list = (items) => `[${items.join(", ")}]`;
const product = (dims) => dims.reduce((a, b) => a * b, 1);

/** The ranges and steps of a tensor spec's run-time axes, by axis, as the Python runtime's TensorSpec has them. */
function axesOf(spec) {
  const ranges = {};
  const steps = {};
  (spec.run_time_axes ?? []).forEach((axis, i) => {
    if (spec.ranges?.[i]) ranges[axis] = [spec.ranges[i][0], spec.ranges[i][1]];
    if ((spec.steps?.[i] ?? 1) > 1) steps[axis] = spec.steps[i];
  });
  return { ranges, steps };
}

/** A tensor as a caller sees it: -1 for the batch's axis and for each axis a run decides, with its range. */
function callerSpec(spec) {
  const shape = spec.shape.slice();
  if (spec.batch_axis !== null) shape[spec.batch_axis] = -1;
  for (const axis of spec.run_time_axes ?? []) shape[axis] = -1;
  return { name: spec.name, dtype: spec.dtype, shape, batchAxis: spec.batch_axis, ...axesOf(spec) };
}

/** The wasinfer.metadata custom section's JSON; an Error when the module has none. */
function readMetadata(module) {
  const [section] = WebAssembly.Module.customSections(module, METADATA_SECTION);
  if (section === undefined) throw new Error(`no ${METADATA_SECTION} section: not a wasinfer module`);
  const meta = JSON.parse(new TextDecoder().decode(section));
  if (!ABI_VERSIONS.includes(meta.abi_version)) {
    throw new Error(`unsupported wasinfer ABI version ${meta.abi_version} (this package runs ${ABI_VERSIONS.join(", ")})`);
  }
  for (const group of ["inputs", "outputs"]) {
    meta[group].forEach((spec, index) => { // a dtype no slot can hold (a string): as wasinfer's own readers say it
      if (!Object.hasOwn(DTYPES, spec.dtype)) {
        const value = typeof spec.dtype === "string" ? repr(spec.dtype) : JSON.stringify(spec.dtype);
        throw new Error(`metadata field ${group}[${index}].dtype (${repr(spec.name)}) is ${value}: expected one of ` +
          Object.keys(DTYPES).join(", "));
      }
    });
  }
  return meta;
}

function readUleb(bytes, at) {
  let value = 0;
  for (let shift = 0; ; shift += 7) {
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return [value, at];
  }
}

function uleb(value) {
  const out = [];
  do {
    const byte = value % 128;
    value = Math.floor(value / 128);
    out.push(value > 0 ? byte | 0x80 : byte);
  } while (value > 0);
  return out;
}

/** The module with its relaxed-SIMD code section in place of the plain one, where it carries one (wasinfer's
 * artifact/variants.py writes it; this is its select_code); otherwise `bytes` itself. */
export function selectRelaxedCode(bytes) {
  const sections = [];
  let variant = null;
  for (let at = 8; at < bytes.length;) {
    const id = bytes[at];
    const [size, start] = readUleb(bytes, at + 1);
    const payload = bytes.subarray(start, start + size);
    at = start + size;
    if (id === 0) {
      const [nameLength, nameStart] = readUleb(payload, 0);
      const name = new TextDecoder().decode(payload.subarray(nameStart, nameStart + nameLength));
      if (name === RELAXED_CODE_SECTION) {
        variant = payload.subarray(nameStart + nameLength);
        continue;
      }
    }
    sections.push([id, payload]);
  }
  if (variant === null) return bytes;
  const parts = [bytes.subarray(0, 8)];
  for (const [id, payload] of sections) {
    const body = id === 10 ? variant : payload;
    parts.push(new Uint8Array([id, ...uleb(body.length)]), body);
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

/** A fetch Response's module: compiled while it downloads where the engine can (served as application/wasm). */
async function compileResponse(response, relaxed) {
  if (!response.ok) throw new Error(`fetching ${response.url || "the module"}: HTTP ${response.status}`);
  const streams = typeof WebAssembly.compileStreaming === "function" && !relaxed &&
    (response.headers.get("content-type") ?? "").split(";")[0].trim() === "application/wasm";
  if (streams) return WebAssembly.compileStreaming(response);
  return compileBytes(new Uint8Array(await response.arrayBuffer()), relaxed);
}

function compileBytes(bytes, relaxed) {
  return WebAssembly.compile(relaxed ? selectRelaxedCode(bytes) : bytes);
}

/** `source` as an absolute URL: relative to the page in a browser; in Node, where there is no page, an Error that
 * says to pass the file's bytes instead (Node's fetch takes no paths and no file: URLs). */
function urlOf(source) {
  try {
    return new URL(source, globalThis.location?.href);
  } catch {
    throw new TypeError(`load() cannot fetch ${repr(String(source))}: not an absolute URL, and there is no page to ` +
      "resolve it against (in Node, pass the file's bytes: load(await readFile(path)))");
  }
}

/** A compiled module from whatever `load` takes. */
function compileSource(source, relaxed) {
  if (source instanceof WebAssembly.Module) return source;
  if (source instanceof ArrayBuffer) return compileBytes(new Uint8Array(source), relaxed);
  if (ArrayBuffer.isView(source)) {
    return compileBytes(new Uint8Array(source.buffer, source.byteOffset, source.byteLength), relaxed);
  }
  if (typeof Response === "function" && source instanceof Response) return compileResponse(source, relaxed);
  if (typeof source === "string" || source instanceof URL) return fetch(urlOf(source)).then((r) => compileResponse(r, relaxed));
  throw new TypeError("load() takes the module's bytes (ArrayBuffer, Uint8Array, Buffer), a Response, a URL or " +
    `a WebAssembly.Module, got ${source === null ? "null" : typeof source}`);
}

/**
 * Load a wasinfer module: compile it, read its metadata, instantiate it.
 * `options.relaxedSimd`: run the module's relaxed-SIMD code variant where the engine has relaxed SIMD (faster, results
 * different in the last bits); by default the plain SIMD128 code runs, giving the same bits in every engine.
 */
export async function load(source, options = {}) {
  assertSupported();
  const relaxed = Boolean(options.relaxedSimd) && features().relaxedSimd;
  return Model.instantiate(await compileSource(source, relaxed));
}

/** One instance of a compiled module; `run` takes and returns tensors by name. */
export class Model {
  #module;
  #meta;
  #instance = null;

  constructor(module, meta) {
    this.#module = module;
    this.#meta = meta;
    /** The model's name (the source file's stem, or the ONNX graph name). */
    this.name = meta.name;
    /** The ABI version: 1, 2 (run-time output shapes) or 3 (symbolic input dims). */
    this.abiVersion = meta.abi_version;
    /** The largest batch one run takes. */
    this.maxBatch = meta.max_batch;
    this.inputs = meta.inputs.map(callerSpec);
    this.outputs = meta.outputs.map(callerSpec);
  }

  /** A model of a compiled module, instantiated (its start function run) so that a module that cannot start fails
   * here rather than at its first run. */
  static async instantiate(module) {
    const model = new Model(module, readMetadata(module));
    await model.#exports();
    return model;
  }

  /** The metadata section as the module carries it (docs/abi.md, "The metadata section"). */
  get metadata() {
    return this.#meta;
  }

  /** The instance's exports, instantiating first where there is none (at load, or the run after a fault). */
  async #exports() {
    if (this.#instance === null) {
      // A module built with --wasi imports three WASI functions for its _start; the ABI never calls them.
      const imports = {};
      for (const { module: from, name } of WebAssembly.Module.imports(this.#module)) {
        (imports[from] ??= {})[name] = () => { throw new Error(`${from}.${name} is not provided`); };
      }
      let instance;
      try {
        instance = await WebAssembly.instantiate(this.#module, imports);
      } catch (error) { // the start function, which writes the constants, trapped
        if (!(error instanceof WebAssembly.RuntimeError)) throw error;
        throw new ModelFault(`model ${repr(this.name)} trapped (instantiation): ${error.message}`);
      }
      const abi = instance.exports;
      if (abi.wasinfer_abi_version() !== this.#meta.abi_version) {
        throw new Error(`model ${repr(this.name)}: wasinfer_abi_version() is ${abi.wasinfer_abi_version()} but its ` +
          `metadata says ${this.#meta.abi_version}`);
      }
      this.#instance = abi;
    }
    return this.#instance;
  }

  /**
   * Run the model on `inputs`: {name: {data: TypedArray, shape: number[]}} for every input. Every input is checked
   * against the metadata before memory is touched (an InputError names what is wrong); the result is
   * {name: {data, shape, dtype}} for every output, copied out of the module's memory.
   */
  async run(inputs) {
    const abi = await this.#exports();
    const { specs, batch } = this.#check(inputs);
    const memory = abi.memory.buffer;
    specs.forEach(({ spec, data, shape }, i) => {
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      new Uint8Array(memory, abi.wasinfer_input_ptr(i), bytes.length).set(bytes);
      if (spec.dims_offset != null) new Int32Array(memory, spec.dims_offset, shape.length).set(shape);
    });
    let status;
    try {
      status = abi.wasinfer_run(batch);
    } catch (error) { // a trap leaves the memory half-written: the next run gets a fresh instance
      this.#instance = null;
      throw new ModelFault(`model ${repr(this.name)} trapped (wasinfer_run): ${error.message}`);
    }
    if (status !== 0) {
      const errors = this.#meta.run_errors ?? [];
      if (status >= 2 && status < 2 + errors.length) throw new InputError(`model ${repr(this.name)}: ${errors[status - 2]}`);
      throw new Error(`wasinfer_run returned ${status}`);
    }
    const outputs = {};
    this.#meta.outputs.forEach((spec, i) => {
      const shape = spec.dims_offset == null ? shapeFor(spec, batch) : this.#runTimeShape(spec, memory);
      const [itemBytes, Typed] = DTYPES[spec.dtype];
      const start = abi.wasinfer_output_ptr(i);
      const data = new Typed(memory.slice(start, start + product(shape) * itemBytes));
      outputs[spec.name] = { data, shape, dtype: spec.dtype };
    });
    return outputs;
  }

  /** The dims this run wrote for an output whose shape it decides; past the largest is the module's fault. */
  #runTimeShape(spec, memory) {
    const dims = Array.from(new Int32Array(memory, spec.dims_offset, spec.shape.length));
    if (dims.some((d, axis) => d < 0 || d > spec.shape[axis])) {
      this.#instance = null;
      throw new ModelFault(`model ${repr(this.name)} wrote dims ${list(dims)} for output ${repr(spec.name)}, ` +
        `outside its largest shape ${list(spec.shape)}`);
    }
    return dims;
  }

  /** Every input checked as the Python runtime checks it (runtime/wasm.py: WasmModel.run), in the same order. */
  #check(inputs) {
    const meta = this.#meta;
    const given = Object.keys(inputs ?? {});
    const missing = meta.inputs.filter((s) => !given.includes(s.name)).map((s) => repr(s.name));
    const extra = given.filter((n) => !meta.inputs.some((s) => s.name === n)).sort().map(repr);
    if (missing.length || extra.length) throw new InputError(`inputs: missing ${list(missing)}, unexpected ${list(extra)}`);
    const batches = new Set();
    const specs = meta.inputs.map((spec) => {
      const { data, shape } = tensorOf(spec, inputs[spec.name]);
      const got = DTYPE_OF[data[Symbol.toStringTag]];
      if (!accepts(spec.dtype, got)) {
        throw new InputError(`input ${repr(spec.name)}: expected dtype ${spec.dtype}, got ${got}`);
      }
      const n = batchOf(spec, shape, meta.max_batch);
      if (spec.batch_axis !== null) batches.add(n);
      if (data.length !== product(shape)) {
        throw new InputError(`input ${repr(spec.name)}: shape ${list(shape)} holds ${product(shape)} values, ` +
          `got ${data.length}`);
      }
      return { spec, data, shape };
    });
    if (batches.size > 1) throw new InputError(`inputs have different batch sizes: ${list([...batches].sort((a, b) => a - b))}`);
    const batch = batches.size ? [...batches][0] : 1;
    if (!(batch >= 1 && batch <= meta.max_batch)) {
      throw new InputError(`batch ${batch} is outside 1..${meta.max_batch} (compiled --max-batch)`);
    }
    checkSymbolsAgree(specs);
    return { specs, batch };
  }
}

/** `{data, shape}` of one input, or an InputError saying what the value lacks. */
function tensorOf(spec, value) {
  const data = value?.data;
  if (!ArrayBuffer.isView(data) || data instanceof DataView) {
    throw new InputError(`input ${repr(spec.name)}: expected {data, shape} with data a ${DTYPES[spec.dtype][1].name} ` +
      `(dtype ${spec.dtype}), got ${value?.constructor?.name ?? value} as the value`);
  }
  const shape = value.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new InputError(`input ${repr(spec.name)}: shape must be a list of non-negative integers, got ` +
      `${JSON.stringify(shape)}`);
  }
  return { data, shape };
}

/** Whether a typed array of dtype `got` holds a `wanted` tensor: its own, bool as bytes, float16, bfloat16 and the
 * narrow types as raw bits. */
const accepts = (wanted, got) => got === wanted || (wanted === "bool" && got === "uint8") ||
  RAW_BITS[wanted] === got;

/** The tensor's shape in a run of `count` samples. */
function shapeFor(spec, count) {
  const shape = spec.shape.slice();
  if (spec.batch_axis !== null) shape[spec.batch_axis] = count;
  return shape;
}

/** The batch an input's shape carries (1 when it carries none), or an InputError in the Python runtime's words. */
function batchOf(spec, shape, maxBatch) {
  const expected = spec.shape;
  const axis = spec.batch_axis;
  if (spec.run_time_axes?.length) { // symbolic dims (ABI version 3): each in its range, the others as compiled
    checkSymbolicDims(spec, shape);
    return 1;
  }
  if (axis !== null) {
    if (shape.length !== expected.length || shape.some((d, i) => i !== axis && d !== expected[i])) {
      const wanted = expected.map((d, i) => (i === axis ? "N" : String(d))).join(", ");
      throw new InputError(`input ${repr(spec.name)}: expected shape [${wanted}] with N <= ${maxBatch}, got ${list(shape)}`);
    }
    return shape[axis];
  }
  if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i])) {
    throw new InputError(`input ${repr(spec.name)}: expected shape ${list(expected)}, got ${list(shape)}`);
  }
  return 1;
}

/** An input with symbolic dims (ABI version 3): within its ranges (and steps) on its run-time axes, as compiled
 * elsewhere (runtime/wasm.py: check_symbolic_dims). */
function checkSymbolicDims(spec, dims) {
  const { ranges } = axesOf(spec);
  const stepOf = (axis) => spec.steps?.[spec.run_time_axes.indexOf(axis)] ?? 1;
  if (dims.length !== spec.shape.length || dims.some((d, i) => !(i in ranges) && d !== spec.shape[i])) {
    const wanted = spec.shape.map((d, i) => (i in ranges ? `${ranges[i][0]}..${ranges[i][1]}` : String(d))).join(", ");
    throw new InputError(`input ${repr(spec.name)}: expected shape [${wanted}], got ${list(dims)}`);
  }
  for (const [axis, [low, high]] of Object.entries(ranges)) {
    const size = dims[axis];
    if (!(low <= size && size <= high)) {
      throw new InputError(`input ${repr(spec.name)}: axis ${axis} is ${size}, outside its range ${low}..${high}`);
    }
    const step = stepOf(Number(axis));
    if (size % step) {
      throw new InputError(`input ${repr(spec.name)}: axis ${axis} is ${size}, not a multiple of ${step} ` +
        `(its range is ${low}..${high}:${step})`);
    }
  }
}

/** Dims that are one symbol (inputs whose model names a dim alike) must be equal in a run. */
function checkSymbolsAgree(specs) {
  const seen = new Map();
  for (const { spec, shape } of specs) {
    (spec.run_time_axes ?? []).forEach((axis, i) => {
      const symbol = spec.symbolic_dims?.[i];
      if (symbol === undefined) return;
      const size = shape[axis];
      if (!seen.has(symbol)) seen.set(symbol, [spec.name, axis, size]);
      const [firstName, firstAxis, firstSize] = seen.get(symbol);
      if (firstSize !== size) {
        throw new InputError(`input ${repr(spec.name)}: axis ${axis} is ${size}, but it is the dim ${repr(symbol)} ` +
          `that input ${repr(firstName)} has as ${firstSize} (axis ${firstAxis})`);
      }
    });
  }
}
