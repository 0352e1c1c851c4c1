/* An image classifier in the shape of WasmEdge's WASI-NN examples, written against the raw ABI.
 *
 *   classifier name  ALIAS               INPUT DIMS OUTPUT   (load_by_name of a --nn-preload alias)
 *   classifier bytes ENCODING MODEL_PATH INPUT DIMS OUTPUT   (read the model from a preopened dir, load)
 *
 * ENCODING is a name (onnx, tensorflowlite, autodetect, ...) or the number itself. INPUT is a file of
 * raw little-endian float32 values, or "-" for stdin. DIMS is like "1x64". OUTPUT is the index of the
 * float32 output to read. Prints the bytes written, every score and the top class ("top: 7"); exits 1
 * with "error: STEP N" when a call fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasi_nn.h"

#define MAX_DIMS 8
#define MAX_OUT (1 << 16)

static uint8_t *read_all(const char *path, uint32_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    if (f != stdin) fclose(f);
    *len = (uint32_t)n;
    return buf;
}

static int encoding_of(const char *s) {
    static const char *names[] = {"openvino", "onnx", "tensorflow", "pytorch", "tensorflowlite", "autodetect", "ggml"};
    for (int i = 0; i < (int)(sizeof names / sizeof *names); i++)
        if (strcmp(s, names[i]) == 0) return i;
    return atoi(s);
}

static int check(const char *step, uint32_t err) {
    if (err != NN_SUCCESS) {
        printf("error: %s %u\n", step, err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int by_name = argc == 6 && strcmp(argv[1], "name") == 0;
    int by_bytes = argc == 7 && strcmp(argv[1], "bytes") == 0;
    if (!by_name && !by_bytes) {
        fprintf(stderr, "usage: classifier name ALIAS INPUT DIMS OUTPUT\n"
                        "       classifier bytes ENCODING MODEL INPUT DIMS OUTPUT\n");
        return 2;
    }
    const char *input_path = argv[by_name ? 3 : 4];
    const char *dims_arg = argv[by_name ? 4 : 5];
    uint32_t out_index = (uint32_t)atoi(argv[by_name ? 5 : 6]);

    nn_graph graph;
    if (by_name) {
        const char *alias = argv[2];
        if (check("load_by_name", nn_load_by_name(NN_ADDR(alias), strlen(alias), NN_ADDR(&graph)))) return 1;
    } else {
        nn_builder builder;
        builder.buf = read_all(argv[3], &builder.len);
        if (!builder.buf) return 1;
        if (check("load", nn_load(NN_ADDR(&builder), 1, encoding_of(argv[2]), NN_CPU, NN_ADDR(&graph)))) return 1;
    }

    uint32_t dims[MAX_DIMS], ndims = 0;
    for (const char *p = dims_arg; *p && ndims < MAX_DIMS;) {
        char *end;
        dims[ndims++] = (uint32_t)strtoul(p, &end, 10);
        p = *end ? end + 1 : end;
    }
    nn_tensor input = {dims, ndims, NN_F32, NULL, 0};
    input.data = read_all(input_path, &input.data_len);
    if (!input.data) return 1;

    nn_context ctx;
    if (check("init_execution_context", nn_init_execution_context(graph, NN_ADDR(&ctx)))) return 1;
    if (check("set_input", nn_set_input(ctx, 0, NN_ADDR(&input)))) return 1;
    if (check("compute", nn_compute(ctx))) return 1;

    static float out[MAX_OUT / sizeof(float)];
    uint32_t written = 0;
    if (check("get_output", nn_get_output(ctx, out_index, NN_ADDR(out), sizeof out, NN_ADDR(&written)))) return 1;
    uint32_t n = written / sizeof(float);
    printf("bytes: %u\nscores:", written);
    uint32_t top = 0;
    for (uint32_t i = 0; i < n; i++) {
        printf(" %.9g", out[i]);
        if (out[i] > out[top]) top = i;
    }
    printf("\ntop: %u\n", top);
    return 0;
}
