/* A guest that breaks the wasi_ephemeral_nn ABI one way per MODE and prints the error code it got.
 *
 *   misuse MODE [ALIAS]
 *
 * ALIAS names a preloaded model that takes one float32 [1, 64] input and has a float32 output at
 * index 1 with more than 8 bytes (the digits demo). Each checked call prints "errno: N"; a call that
 * should have failed but did not still prints its code, so the test sees what happened. `oom`,
 * `grow_trap` and `spin` never call the ABI: they exercise the host's memory cap and deadline.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasi_nn.h"

#define OOB 0xFFFFFFF0u /* far past any memory a guest this small has */

static float digit[64];
static uint32_t dims_ok[2] = {1, 64};
static const char junk[] = "this is not a model";

static void report(uint32_t err) { printf("errno: %u\n", err); }

static nn_context context_for(const char *alias) {
    nn_graph graph = 0;
    nn_context ctx = 0;
    uint32_t err = nn_load_by_name(NN_ADDR(alias), strlen(alias), NN_ADDR(&graph));
    if (err == NN_SUCCESS) err = nn_init_execution_context(graph, NN_ADDR(&ctx));
    if (err != NN_SUCCESS) {
        printf("setup failed: %u\n", err);
        exit(3);
    }
    return ctx;
}

static uint32_t set_digit(nn_context ctx, const uint32_t *dims, uint32_t ndims, uint8_t type, uint32_t len) {
    nn_tensor t = {dims, ndims, type, (const uint8_t *)digit, len};
    return nn_set_input(ctx, 0, NN_ADDR(&t));
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: misuse MODE [ALIAS]\n");
        return 2;
    }
    const char *mode = argv[1];
    const char *alias = argc > 2 ? argv[2] : "default";
    for (int i = 0; i < 64; i++) digit[i] = (float)(i % 17);
    uint32_t graph = 0, ctx = 0, written = 0;
    static float out[1024];

    if (!strcmp(mode, "oob_builder")) { /* the builder array itself lies outside memory */
        report(nn_load(OOB, 1, NN_ONNX, NN_CPU, NN_ADDR(&graph)));
    } else if (!strcmp(mode, "oob_builder_data")) { /* one builder's bytes lie outside memory */
        nn_builder b = {(const uint8_t *)(uintptr_t)OOB, 64};
        report(nn_load(NN_ADDR(&b), 1, NN_ONNX, NN_CPU, NN_ADDR(&graph)));
    } else if (!strcmp(mode, "builder_len_overflow")) { /* ptr + len wraps around 2^32 */
        nn_builder b = {(const uint8_t *)junk, 0xFFFFFF00u};
        report(nn_load(NN_ADDR(&b), 1, NN_ONNX, NN_CPU, NN_ADDR(&graph)));
    } else if (!strcmp(mode, "builder_count_overflow")) { /* 2^29 pairs: 4 GiB of builder array */
        nn_builder b = {(const uint8_t *)junk, sizeof junk};
        report(nn_load(NN_ADDR(&b), 0x20000000u, NN_ONNX, NN_CPU, NN_ADDR(&graph)));
    } else if (!strcmp(mode, "graph_out_oob")) {
        nn_builder b = {(const uint8_t *)junk, sizeof junk};
        report(nn_load(NN_ADDR(&b), 1, NN_ONNX, NN_CPU, OOB));
    } else if (!strcmp(mode, "garbage_model")) {
        nn_builder b = {(const uint8_t *)junk, sizeof junk};
        report(nn_load(NN_ADDR(&b), 1, NN_ONNX, NN_CPU, NN_ADDR(&graph)));
    } else if (!strcmp(mode, "unknown_encoding")) {
        nn_builder b = {(const uint8_t *)junk, sizeof junk};
        report(nn_load(NN_ADDR(&b), 1, 99, NN_CPU, NN_ADDR(&graph)));
    } else if (!strcmp(mode, "unknown_target")) {
        nn_builder b = {(const uint8_t *)junk, sizeof junk};
        report(nn_load(NN_ADDR(&b), 1, NN_ONNX, 9, NN_ADDR(&graph)));
    } else if (!strcmp(mode, "unknown_alias")) {
        const char *name = "no-such-model";
        report(nn_load_by_name(NN_ADDR(name), strlen(name), NN_ADDR(&graph)));
    } else if (!strcmp(mode, "alias_oob")) {
        report(nn_load_by_name(OOB, 64, NN_ADDR(&graph)));
    } else if (!strcmp(mode, "bad_graph")) {
        report(nn_init_execution_context(0xBAD, NN_ADDR(&ctx)));
    } else if (!strcmp(mode, "bad_context")) { /* every call that takes a context */
        report(set_digit(0xBAD, dims_ok, 2, NN_F32, sizeof digit));
        report(nn_compute(0xBAD));
        report(nn_get_output(0xBAD, 1, NN_ADDR(out), sizeof out, NN_ADDR(&written)));
    } else if (!strcmp(mode, "compute_before_input")) {
        report(nn_compute(context_for(alias)));
    } else if (!strcmp(mode, "wrong_dims")) {
        static const uint32_t dims[2] = {1, 63};
        report(set_digit(context_for(alias), dims, 2, NN_F32, 63 * sizeof(float)));
    } else if (!strcmp(mode, "wrong_rank")) {
        static const uint32_t dims[1] = {64};
        report(set_digit(context_for(alias), dims, 1, NN_F32, sizeof digit));
    } else if (!strcmp(mode, "wrong_type")) { /* right byte count, but declared i32 */
        report(set_digit(context_for(alias), dims_ok, 2, NN_I32, sizeof digit));
    } else if (!strcmp(mode, "unknown_type")) {
        report(set_digit(context_for(alias), dims_ok, 2, 42, sizeof digit));
    } else if (!strcmp(mode, "short_data")) {
        report(set_digit(context_for(alias), dims_ok, 2, NN_F32, sizeof digit / 2));
    } else if (!strcmp(mode, "tensor_oob")) {
        report(nn_set_input(context_for(alias), 0, OOB));
    } else if (!strcmp(mode, "dims_oob")) {
        nn_tensor t = {(const uint32_t *)(uintptr_t)OOB, 2, NN_F32, (const uint8_t *)digit, sizeof digit};
        report(nn_set_input(context_for(alias), 0, NN_ADDR(&t)));
    } else if (!strcmp(mode, "bad_input_index")) {
        nn_tensor t = {dims_ok, 2, NN_F32, (const uint8_t *)digit, sizeof digit};
        report(nn_set_input(context_for(alias), 7, NN_ADDR(&t)));
    } else if (!strcmp(mode, "small_output") || !strcmp(mode, "bytes_written_oob") ||
               !strcmp(mode, "output_oob") || !strcmp(mode, "bad_output_index")) {
        ctx = context_for(alias);
        if (set_digit(ctx, dims_ok, 2, NN_F32, sizeof digit) || nn_compute(ctx)) {
            printf("setup failed\n");
            return 3;
        }
        if (!strcmp(mode, "small_output"))
            report(nn_get_output(ctx, 1, NN_ADDR(out), 8, NN_ADDR(&written)));
        else if (!strcmp(mode, "bytes_written_oob"))
            report(nn_get_output(ctx, 1, NN_ADDR(out), sizeof out, OOB));
        else if (!strcmp(mode, "output_oob"))
            report(nn_get_output(ctx, 1, OOB, 4096, NN_ADDR(&written)));
        else
            report(nn_get_output(ctx, 99, NN_ADDR(out), sizeof out, NN_ADDR(&written)));
        /* the context must still work after the failed call */
        report(nn_get_output(ctx, 1, NN_ADDR(out), sizeof out, NN_ADDR(&written)));
        printf("written: %u\n", written);
    } else if (!strcmp(mode, "freed_handles")) { /* a freed handle is as unknown as one never given */
        graph = 0;
        if (nn_load_by_name(NN_ADDR(alias), strlen(alias), NN_ADDR(&graph)) ||
            nn_init_execution_context(graph, NN_ADDR(&ctx))) {
            printf("setup failed\n");
            return 3;
        }
        report(nn_finalize_execution_context(ctx));
        report(nn_compute(ctx));
        report(nn_unload(graph));
        report(nn_init_execution_context(graph, NN_ADDR(&ctx)));
        report(nn_unload(graph));
    } else if (!strcmp(mode, "many_contexts")) { /* ask for contexts until the host refuses */
        graph = 0;
        if (nn_load_by_name(NN_ADDR(alias), strlen(alias), NN_ADDR(&graph))) {
            printf("setup failed\n");
            return 3;
        }
        uint32_t made = 0, err = NN_SUCCESS;
        for (; made < 100000 && (err = nn_init_execution_context(graph, NN_ADDR(&ctx))) == NN_SUCCESS; made++) {
        }
        report(err);
        printf("contexts: %u\n", made);
    } else if (!strcmp(mode, "oom")) { /* grow until the host's cap says no; malloc then gives NULL */
        static char *volatile kept[8192]; /* kept and touched, so the compiler cannot drop the calls */
        uint32_t mib = 0;
        for (; mib < 8192; mib++) {
            char *p = malloc(1 << 20);
            if (!p) break;
            memset(p, 1, 1 << 20);
            kept[mib] = p;
        }
        printf("allocated: %u MiB\n", mib);
    } else if (!strcmp(mode, "grow_trap")) { /* an allocator that aborts when memory.grow fails */
        while (__builtin_wasm_memory_grow(0, 1) != (size_t)-1) {
        }
        __builtin_trap();
    } else if (!strcmp(mode, "spin")) {
        volatile uint64_t n = 0;
        for (;;) n++;
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    fflush(stdout);
    return 0;
}
