// ggml mul_mat timing harness for scripts/bench-matmul.sh (GGML_HARNESS).
// Our own code: it only calls ggml's public API (ggml.h, ggml-cpu.h) and
// contains no ggml source. Built against a ggml checkout obtained separately
// (ggml-org/ggml commit d99724f2) by scripts/build-ggml-harness.sh.
//
// usage: harness TYPE N K BATCH THREADS REPS   TYPE in tq2_0 tq1_0 f32
//   W: N x K (out x in) quantized from uniform [-1, 1) with ggml_quantize_chunk,
//   X: BATCH x K f32; enough weight copies to exceed 64 MiB (weights cold),
//   one ggml_mul_mat graph per copy computed in rotation on a persistent
//   ggml_threadpool after 2 warm-up rotations.
// prints: median_us
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ggml.h"
#include "ggml-cpu.h"

static double now_us(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    if (argc < 7) { fprintf(stderr, "usage: %s TYPE N K BATCH THREADS REPS\n", argv[0]); return 2; }
    enum ggml_type ty = !strcmp(argv[1], "tq2_0") ? GGML_TYPE_TQ2_0 : !strcmp(argv[1], "tq1_0") ? GGML_TYPE_TQ1_0 : GGML_TYPE_F32;
    int64_t N = atoll(argv[2]), K = atoll(argv[3]), B = atoll(argv[4]);
    int th = atoi(argv[5]), reps = atoi(argv[6]);
    size_t wbytes = ggml_row_size(ty, K) * N;
    int nmat = (int)((64ull << 20) / wbytes + 1); if (nmat < 2) nmat = 2;
    size_t mem = nmat * (wbytes + 4 * N * B + 1024) + 4 * K * B + nmat * ggml_graph_overhead() + (64 << 20);
    struct ggml_init_params ip = { mem, NULL, false };
    struct ggml_context *ctx = ggml_init(ip);
    float *src = malloc(sizeof(float) * N * K);
    srand(1); for (int64_t i = 0; i < N * K; i++) src[i] = (float)rand() / RAND_MAX * 2 - 1;
    struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, B);
    for (int64_t i = 0; i < K * B; i++) ((float *)x->data)[i] = (float)rand() / RAND_MAX * 2 - 1;
    struct ggml_cgraph **g = malloc(sizeof(*g) * nmat); void *w0 = NULL;
    for (int m = 0; m < nmat; m++) {
        struct ggml_tensor *w = ggml_new_tensor_2d(ctx, ty, K, N);
        if (m == 0) { w0 = w->data; if (ty == GGML_TYPE_F32) memcpy(w->data, src, wbytes); else ggml_quantize_chunk(ty, src, w->data, 0, N, K, NULL); }
        else memcpy(w->data, w0, wbytes);
        g[m] = ggml_new_graph(ctx);
        ggml_build_forward_expand(g[m], ggml_mul_mat(ctx, w, x));
    }
    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(th);
    struct ggml_threadpool *tp = ggml_threadpool_new(&tpp);
    struct ggml_cplan plan = ggml_graph_plan(g[0], th, tp);
    uint8_t *work = malloc(plan.work_size + 64);
    double *t = malloc(sizeof(double) * reps);
    for (int i = -2 * nmat; i < reps; i++) {
        struct ggml_cgraph *gg = g[(i + 2 * nmat) % nmat];
        struct ggml_cplan p = ggml_graph_plan(gg, th, tp); p.work_data = work;
        double t0 = now_us(); ggml_graph_compute(gg, &p); double t1 = now_us();
        if (i >= 0) t[i] = t1 - t0;
    }
    qsort(t, reps, sizeof(double), cmpd);
    printf("%.2f\n", t[reps / 2]);
    ggml_threadpool_free(tp);
    return 0;
}
