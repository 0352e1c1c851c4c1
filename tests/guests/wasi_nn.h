/* The `wasi_ephemeral_nn` host functions as WasmEdge's WASI-NN plugin exports them to wasm32 guests.
 *
 * Written for wasinfer's tests from the witx definition (WebAssembly/wasi-nn, wasi-nn.witx and
 * wasi-nn.abi.md) and WasmEdge's plugin (plugins/wasi_nn/wasinnfunc.cpp for the lowered signatures,
 * plugins/wasi_nn/wasinntypes.h for the enum values). Every function returns an `nn_errno`; results come
 * back through pointers, as witx lowers `(expected T (error $nn_errno))`.
 *
 * Lowering on wasm32 (pointers and lengths are u32, enums are passed as i32):
 *   list<T>                 -> (T *ptr, u32 len)
 *   graph_builder_array     -> pointer to `len` (u8 *ptr, u32 len) pairs, then `len`
 *   tensor (record)         -> pointer to { u32 *dims, u32 ndims, u8 type (padded to 4),
 *                                           u8 *data, u32 data_len }: 20 bytes, align 4
 */
#ifndef WASINFER_TEST_WASI_NN_H
#define WASINFER_TEST_WASI_NN_H

#include <stdint.h>

typedef uint32_t nn_graph;
typedef uint32_t nn_context;

/* $nn_errno: witx lists success..runtime_error; WasmEdge (wasinntypes.h) adds 6..8, which wasmtime's
 * witx also has. */
enum nn_errno {
    NN_SUCCESS = 0,
    NN_INVALID_ARGUMENT = 1,
    NN_INVALID_ENCODING = 2,
    NN_MISSING_MEMORY = 3,
    NN_BUSY = 4,
    NN_RUNTIME_ERROR = 5,
    NN_UNSUPPORTED_OPERATION = 6,
    NN_TOO_LARGE = 7,
    NN_NOT_FOUND = 8,
};

/* $graph_encoding, in witx order (openvino, onnx, tensorflow, pytorch, tensorflowlite); WasmEdge adds
 * autodetect = 5 and ggml = 6. (The first ephemeral witx had tensorflow = 1, onnx = 2; neither
 * WasmEdge nor wasmtime uses that order any more.) */
enum nn_encoding {
    NN_OPENVINO = 0,
    NN_ONNX = 1,
    NN_TENSORFLOW = 2,
    NN_PYTORCH = 3,
    NN_TENSORFLOWLITE = 4,
    NN_AUTODETECT = 5,
    NN_GGML = 6,
};

/* $execution_target; WasmEdge adds auto = 3 */
enum nn_target { NN_CPU = 0, NN_GPU = 1, NN_TPU = 2, NN_AUTO = 3 };

/* $tensor_type as WasmEdge numbers it now (wasinntypes.h, and the wasmedge-wasi-nn crate guests
 * build with): f64 after f32, i64 last. The witx, and WasmEdge before it added the 64-bit types,
 * have f16 0, f32 1, u8 2, i32 3; f16 and f32 are the same in both. */
enum nn_tensor_type { NN_F16 = 0, NN_F32 = 1, NN_F64 = 2, NN_U8 = 3, NN_I32 = 4, NN_I64 = 5 };

typedef struct {
    const uint8_t *buf;
    uint32_t len;
} nn_builder;

typedef struct {
    const uint32_t *dims;
    uint32_t ndims;
    uint8_t type;      /* enum nn_tensor_type; the record pads it to 4 bytes */
    const uint8_t *data;
    uint32_t data_len;
} nn_tensor;

_Static_assert(sizeof(nn_builder) == 8, "graph_builder is (ptr, len)");
_Static_assert(sizeof(nn_tensor) == 20, "witx lays the tensor record out in 20 bytes");
_Static_assert(__builtin_offsetof(nn_tensor, data) == 12, "tensor.data follows the padded type byte");

#define NN_IMPORT(name) __attribute__((import_module("wasi_ephemeral_nn"), import_name(name)))

/* The raw imports take plain u32s so that the misuse guests can pass any address. */
NN_IMPORT("load")
uint32_t nn_load(uint32_t builders, uint32_t builders_len, uint32_t encoding, uint32_t target,
                 uint32_t graph_out);
NN_IMPORT("load_by_name")
uint32_t nn_load_by_name(uint32_t name, uint32_t name_len, uint32_t graph_out);
NN_IMPORT("init_execution_context")
uint32_t nn_init_execution_context(nn_graph graph, uint32_t context_out);
NN_IMPORT("set_input")
uint32_t nn_set_input(nn_context context, uint32_t index, uint32_t tensor);
NN_IMPORT("compute")
uint32_t nn_compute(nn_context context);
NN_IMPORT("get_output")
uint32_t nn_get_output(nn_context context, uint32_t index, uint32_t out, uint32_t out_max,
                       uint32_t bytes_written_out);
/* WasmEdge's additions (not in the witx): free a graph or a context. */
NN_IMPORT("unload")
uint32_t nn_unload(nn_graph graph);
NN_IMPORT("finalize_execution_context")
uint32_t nn_finalize_execution_context(nn_context context);

#define NN_ADDR(p) ((uint32_t)(uintptr_t)(p))

#endif
