/* Hardening: the library never aborts its host on a failed allocation,
 * payloads that validate decode to finite values, one rule for non-finite
 * float inputs, the edge rules of the header's "Conventions", and a loss
 * scaler that cannot get stuck at 0. Uses only the public header. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static int under_valgrind(void) {
    const char *p = getenv("LD_PRELOAD");
    return p != NULL && strstr(p, "vgpreload") != NULL;
}

/* ---- payloads built by hand (the documented wire format) ---- */

static uint32_t crc32_ref(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A payload of `method` with params a, b and `nf` body floats; returns its length. */
static size_t make_payload(uint8_t *out, uint8_t method, uint64_t dim, uint32_t a, uint32_t b,
                           const float *body, size_t nf) {
    memcpy(out, "TGRC", 4);
    out[4] = 1;
    out[5] = 0;
    out[6] = method;
    out[7] = 0;
    put64(out + 8, dim);
    put64(out + 16, 99); /* seed */
    put32(out + 24, a);
    put32(out + 28, b);
    put64(out + 32, 4 * nf);
    memcpy(out + 40, body, 4 * nf);
    put32(out + 40 + 4 * nf, crc32_ref(out, 40 + 4 * nf));
    return 44 + 4 * nf;
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

/* Issue items 3 and 4: a payload that validates decodes finite; a sum
 * that would not is refused. Before: payload_info accepted a projection of
 * 3e38s and decompress returned inf; a 2-row sketch of 3e38s decoded to inf
 * ((a + b) / 2 overflowed); payload_sum of two such sketches returned OK. */
static void test_payloads_decode_finite(void) {
    uint8_t p[256], q[256], s[256];
    float out[8];
    tritter_grad_payload_info_t info;

    /* projection, dim 8, m = 2: values beyond f32::MAX / 2 are invalid ... */
    float big[2] = {3e38f, -3e38f};
    size_t n = make_payload(p, TRITTER_GRAD_PROJECTION, 8, 2, 0, big, 2);
    CHECK_ERR(tritter_grad_payload_info(p, n, &info), TRITTER_ERR_INVALID_DATA, "payload");
    CHECK_ERR(tritter_grad_decompress(p, n, out, 8), TRITTER_ERR_INVALID_DATA, "payload");
    /* ... values up to it decode finite (m = 1: every coordinate adds +-y twice) */
    float edge[1] = {0x1.fffffep+126f}; /* f32::MAX / 2 */
    n = make_payload(p, TRITTER_GRAD_PROJECTION, 8, 1, 0, edge, 1);
    CHECK_OK(tritter_grad_payload_info(p, n, &info));
    CHECK_OK(tritter_grad_decompress(p, n, out, 8));
    CHECK(all_finite(out, 8));
    /* the raw transpose keeps the same rule */
    CHECK_ERR(tritter_grad_unproject(big, 2, 99, out, 8), TRITTER_ERR_INVALID_ARGUMENT, "compressed");
    /* a sum of valid projections beyond the bound is refused, nothing written */
    memset(s, 0xAB, sizeof s);
    CHECK_ERR(tritter_grad_payload_sum(p, n, p, n, s, sizeof s), TRITTER_ERR_NON_FINITE, "sum");
    CHECK(s[0] == 0xAB && s[40] == 0xAB);

    /* 2-row sketch, one column, both rows 3e38: every estimate is +-3e38 or 0 */
    float tab[2] = {3e38f, 3e38f};
    n = make_payload(p, TRITTER_GRAD_SKETCH, 8, 2, 1, tab, 2);
    CHECK_OK(tritter_grad_payload_info(p, n, &info));
    CHECK_OK(tritter_grad_decompress(p, n, out, 8));
    CHECK(all_finite(out, 8));
    int hit = 0;
    for (int i = 0; i < 8; i++) {
        CHECK(out[i] == 3e38f || out[i] == -3e38f || out[i] == 0.0f);
        hit |= out[i] != 0.0f;
    }
    CHECK(hit);
    CHECK_ERR(tritter_grad_payload_sum(p, n, p, n, s, sizeof s), TRITTER_ERR_NON_FINITE, "sum");
    /* a sum that stays in range is fine, and decodes finite */
    float half[2] = {-2e38f, -2e38f};
    size_t m = make_payload(q, TRITTER_GRAD_SKETCH, 8, 2, 1, half, 2);
    CHECK_OK(tritter_grad_payload_sum(p, n, q, m, s, sizeof s));
    CHECK_OK(tritter_grad_decompress(s, n, out, 8));
    CHECK(all_finite(out, 8));

    /* The count-sketch export refuses to emit an overflowed table: a seed
     * whose one-column sketch gives both coordinates the same sign (read off
     * unit gradients) makes 3e38 + 3e38 overflow. */
    uint64_t seed = 0;
    for (;; seed++) {
        float e0[2] = {1, 0}, e1[2] = {0, 1}, s0, s1;
        CHECK_OK(tritter_count_sketch(e0, 2, 1, 1, seed, &s0, 1));
        CHECK_OK(tritter_count_sketch(e1, 2, 1, 1, seed, &s1, 1));
        if (s0 == s1) break;
        CHECK(seed < 64);
    }
    float g[2] = {3e38f, 3e38f}, t1[1];
    CHECK_ERR(tritter_count_sketch(g, 2, 1, 1, seed, t1, 1), TRITTER_ERR_INVALID_ARGUMENT, "grad");
    /* FetchSGD: a step that would overflow its state is refused. Step 1 puts
     * 3e38 in both buckets and zeroes one (the applied coordinate's); step 2
     * would make the other 0.5 * 3e38 + 3e38. */
    tritter_fetchsgd_t *f = NULL;
    CHECK_OK(tritter_fetchsgd_new(8, 1, 2, 1, 1, 0.5f, &f));
    float t2[2] = {3e38f, 3e38f}, upd[8];
    CHECK_OK(tritter_fetchsgd_step(f, t2, 2, upd, 8));
    CHECK(all_finite(upd, 8));
    CHECK_ERR(tritter_fetchsgd_step(f, t2, 2, upd, 8), TRITTER_ERR_NON_FINITE, "summed");
    /* the state was left intact: e = 3e38, u = 3e38 in the live bucket, so
     * -3e38 gives u = -1.5e38, e = 1.5e38 (an overflowed state could not) */
    float back[2] = {-3e38f, -3e38f};
    CHECK_OK(tritter_fetchsgd_step(f, back, 2, upd, 8));
    CHECK(all_finite(upd, 8));
    tritter_fetchsgd_free(f);
}

/* Issue item 7 (aliasing): payload_sum may write over one of its inputs. */
static void test_payload_sum_in_place(void) {
    enum { N = 500 };
    static float g[N], h[N];
    for (int i = 0; i < N; i++) {
        g[i] = (float)((i * 37) % 11) - 5.0f;
        h[i] = (float)((i * 13) % 7) - 3.0f;
    }
    tritter_grad_config_t cfg;
    CHECK_OK(tritter_grad_config_default(&cfg));
    cfg.method = TRITTER_GRAD_SKETCH;
    cfg.ratio = 4.0;
    cfg.rows = 3;
    cfg.error_feedback = false;
    tritter_grad_compressor_t *c0 = NULL, *c1 = NULL;
    CHECK_OK(tritter_grad_compressor_new(N, &cfg, &c0));
    CHECK_OK(tritter_grad_compressor_new(N, &cfg, &c1));
    size_t wire = 0, w = 0;
    CHECK_OK(tritter_grad_compressor_wire_bytes(c0, &wire));
    uint8_t *a = malloc(wire), *b = malloc(wire), *sum = malloc(wire);
    CHECK_OK(tritter_grad_compressor_compress(c0, g, N, a, wire, &w));
    CHECK_OK(tritter_grad_compressor_compress(c1, h, N, b, wire, &w));
    CHECK_OK(tritter_grad_payload_sum(a, wire, b, wire, sum, wire));
    CHECK_OK(tritter_grad_payload_sum(a, wire, b, wire, a, wire)); /* into a */
    CHECK(memcmp(a, sum, wire) == 0);
    CHECK_OK(tritter_grad_compressor_compress(c0, g, N, a, wire, &w)); /* step 1: new seed */
    CHECK_ERR(tritter_grad_payload_sum(b, wire, a, wire, a, wire), TRITTER_ERR_INVALID_ARGUMENT, "other");
    uint8_t *a_copy = malloc(wire);
    memcpy(a_copy, a, wire);
    CHECK(memcmp(a, a_copy, wire) == 0); /* nothing written on error */
    tritter_grad_compressor_free(c0);
    tritter_grad_compressor_free(c1);
    free(a);
    free(b);
    free(sum);
    free(a_copy);
}

/* Issue item 5: one rule for float inputs (NaN in bias was accepted, y = NaN). */
static void test_non_finite_rule(void) {
    float w[6] = {0.5f, -1.0f, 0.2f, 1.0f, 0.0f, -0.3f}, x[3] = {1, 2, 3}, y[2];
    tritter_ternary_matrix_t *m = NULL;
    CHECK_OK(tritter_ternary_matrix_from_f32(w, 2, 3, NULL, &m));
    float bias[2] = {0.0f, NAN};
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 1, 3, bias, 2, TRITTER_ACT_F32, y, 2),
              TRITTER_ERR_NON_FINITE, "bias");
    bias[1] = INFINITY;
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 1, 3, bias, 2, TRITTER_ACT_INT8, y, 2),
              TRITTER_ERR_NON_FINITE, "bias");
    int64_t xs[2] = {1, 3}, ys[2] = {1, 2}, bs[1] = {2};
    tritter_dl_tensor_t xt = {x, {TRITTER_DL_CPU, 0}, 2, {TRITTER_DL_FLOAT, 32, 1}, xs, NULL, 0};
    tritter_dl_tensor_t yt = {y, {TRITTER_DL_CPU, 0}, 2, {TRITTER_DL_FLOAT, 32, 1}, ys, NULL, 0};
    tritter_dl_tensor_t bt = {bias, {TRITTER_DL_CPU, 0}, 1, {TRITTER_DL_FLOAT, 32, 1}, bs, NULL, 0};
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &xt, &bt, TRITTER_ACT_F32, &yt), TRITTER_ERR_NON_FINITE,
              "bias");
    x[1] = NAN;
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 1, 3, NULL, 0, TRITTER_ACT_F32, y, 2), TRITTER_ERR_NON_FINITE,
              "x");
    tritter_ternary_matrix_free(m);
    /* the other float arrays a call reads as data follow the same rule */
    float g[4] = {1, NAN, 0, 0}, t[4], o[4];
    CHECK_ERR(tritter_count_sketch(g, 4, 1, 4, 0, t, 4), TRITTER_ERR_NON_FINITE, "grad");
    CHECK_ERR(tritter_grad_project(g, 4, 0, o, 2), TRITTER_ERR_NON_FINITE, "grad");
    CHECK_ERR(tritter_grad_unproject(g, 4, 0, o, 4), TRITTER_ERR_NON_FINITE, "compressed");
    CHECK_ERR(tritter_count_sketch_estimate(g, 4, 1, 4, 0, o, 4), TRITTER_ERR_NON_FINITE, "table");
    float s2[2] = {1.0f, NAN};
    int8_t tt[6] = {1, 0, -1, 0, 1, 1};
    CHECK_ERR(tritter_ternary_matrix_from_ternary(tt, 2, 3, s2, 2, TRITTER_GRANULARITY_PER_ROW, 0, &m),
              TRITTER_ERR_NON_FINITE, "scales");
    tritter_ternary_accumulator_t *acc = NULL;
    CHECK_OK(tritter_ternary_accumulator_new(4, 4, 0, &acc));
    CHECK_ERR(tritter_ternary_accumulator_add(acc, g, 4, 1.0f), TRITTER_ERR_NON_FINITE, "grad");
    tritter_ternary_accumulator_free(acc);
}

/* Issue item 7: the edge rules of the header's "Conventions". */
static void test_edge_rules(void) {
    /* zero sizes: empty matrices, buffers and hypervectors are valid ... */
    tritter_ternary_matrix_t *m = NULL;
    CHECK_OK(tritter_ternary_matrix_from_f32(NULL, 0, 4, NULL, &m));
    tritter_ternary_matrix_free(m);
    CHECK_OK(tritter_ternary_matrix_from_f32(NULL, 4, 0, NULL, &m));
    tritter_ternary_matrix_free(m);
    tritter_item_memory_t *im = NULL; /* was refused while every other VSA call took dim 0 */
    CHECK_OK(tritter_item_memory_new(0, &im));
    size_t found = 9;
    uint64_t label = 0;
    CHECK_OK(tritter_item_memory_add(im, NULL, 0, 5, NULL));
    CHECK_OK(tritter_item_memory_query_topk(im, NULL, 0, 1, TRITTER_VSA_METRIC_COSINE, &label, NULL, 1, &found));
    CHECK(found == 1 && label == 5);
    tritter_item_memory_free(im);
    tritter_bundle_accumulator_t *ba = NULL;
    CHECK_OK(tritter_bundle_accumulator_new(0, &ba));
    tritter_bundle_accumulator_free(ba);
    CHECK_OK(tritter_f32_to_f16(NULL, 0, NULL, 0));
    /* ... a gradient length of 0 is not (the payload format has no empty gradient) */
    tritter_grad_config_t cfg;
    CHECK_OK(tritter_grad_config_default(&cfg));
    tritter_grad_compressor_t *c = NULL;
    CHECK_ERR(tritter_grad_compressor_new(0, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    tritter_ternary_accumulator_t *acc = NULL;
    CHECK_ERR(tritter_ternary_accumulator_new(0, 256, 0, &acc), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    tritter_fetchsgd_t *f = NULL;
    CHECK_ERR(tritter_fetchsgd_new(0, 1, 4, 0, 1, 0.9f, &f), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    float t[4];
    CHECK_ERR(tritter_count_sketch(NULL, 0, 1, 4, 0, t, 4), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    CHECK_ERR(tritter_grad_project(NULL, 0, 0, NULL, 0), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    tritter_phase_trainer_t *tr = NULL;
    CHECK_OK(tritter_phase_trainer_new(NULL, &tr));
    size_t shape[2] = {3, 0}, id = 0;
    CHECK_ERR(tritter_phase_trainer_add_param(tr, shape, 2, &id), TRITTER_ERR_INVALID_ARGUMENT, "shape");
    tritter_phase_trainer_free(tr);

    /* an optional buffer is (NULL, 0) for "none"; NULL with a length is NULL */
    float w[6] = {0.5f, -1.0f, 0.2f, 1.0f, 0.0f, -0.3f}, x[3] = {1, 2, 3}, y[2], b[2] = {1, 2};
    CHECK_OK(tritter_ternary_matrix_from_f32(w, 2, 3, NULL, &m));
    CHECK_OK(tritter_ternary_matrix_matmul(m, x, 1, 3, NULL, 0, TRITTER_ACT_F32, y, 2));
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 1, 3, NULL, 2, TRITTER_ACT_F32, y, 2), TRITTER_ERR_NULL_POINTER,
              "bias");
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 1, 3, b, 0, TRITTER_ACT_F32, y, 2), TRITTER_ERR_SHAPE_MISMATCH,
              "bias_len");
    tritter_ternary_matrix_free(m);

    /* scales are magnitudes: >= 0 in matrices as in payload decoders */
    int8_t tt[6] = {1, 0, -1, 0, 1, 1};
    float neg[2] = {1.0f, -0.5f};
    CHECK_ERR(tritter_ternary_matrix_from_ternary(tt, 2, 3, neg, 2, TRITTER_GRANULARITY_PER_ROW, 0, &m),
              TRITTER_ERR_INVALID_ARGUMENT, "scales");
    uint8_t packed[2] = {0x11, 0x11};
    CHECK_ERR(tritter_ternary_matrix_from_packed(packed, 2, 2, 3, TRITTER_LAYOUT_2BIT, neg, 2,
                                                 TRITTER_GRANULARITY_PER_ROW, 0, &m),
              TRITTER_ERR_INVALID_ARGUMENT, "scales");
    float zero[2] = {0.0f, 0.0f};
    CHECK_OK(tritter_ternary_matrix_from_ternary(tt, 2, 3, zero, 2, TRITTER_GRANULARITY_PER_ROW, 0, &m));
    tritter_ternary_matrix_free(m);
}

/* Issue item 6: the default scaler stops at its floor and grows back
 * (before: min_scale 0, the scale reached 0 after ~150 overflows and stayed). */
static void test_loss_scaler_floor(void) {
    tritter_loss_scaler_config_t cfg;
    CHECK_OK(tritter_loss_scaler_config_default(&cfg));
    CHECK(cfg.min_scale == 0x1p-24f);
    cfg.growth_interval = 1;
    tritter_loss_scaler_t *s = NULL;
    CHECK_OK(tritter_loss_scaler_new(&cfg, &s));
    float v = 0;
    for (int i = 0; i < 400; i++) CHECK_OK(tritter_loss_scaler_update(s, true, &v));
    CHECK(v == 0x1p-24f);
    for (int i = 1; i <= 40; i++) {
        CHECK_OK(tritter_loss_scaler_update(s, false, &v));
        CHECK(v == ldexpf(1.0f, i - 24));
    }
    CHECK(v == 65536.0f);
    tritter_loss_scaler_free(s);
    cfg.min_scale = 0.0f;
    CHECK_ERR(tritter_loss_scaler_new(&cfg, &s), TRITTER_ERR_INVALID_ARGUMENT, "min_scale");
}

/* Issue item 2, sizes no allocator can grant: a status, never SIGABRT
 * (before: "memory allocation of 4611686018427387904 bytes failed", abort). */
static void test_impossible_sizes(void) {
    tritter_ternary_accumulator_t *acc = NULL;
    CHECK_ERR(tritter_ternary_accumulator_new(SIZE_MAX, 256, 0, &acc), TRITTER_ERR_OUT_OF_MEMORY, "dim");
    CHECK(acc == NULL);
    tritter_bundle_accumulator_t *ba = NULL;
    CHECK_ERR(tritter_bundle_accumulator_new(SIZE_MAX / 4, &ba), TRITTER_ERR_SIZE_OVERFLOW, "dim");
    CHECK(ba == NULL);
    /* a broadcast view: 2^62 logical elements over one float */
    float one = 1.0f;
    int64_t shape[2] = {INT64_C(1) << 31, INT64_C(1) << 31}, strides[2] = {0, 0};
    tritter_dl_tensor_t wt = {&one, {TRITTER_DL_CPU, 0}, 2, {TRITTER_DL_FLOAT, 32, 1}, shape, strides, 0};
    tritter_ternary_matrix_t *m = NULL;
    CHECK_ERR(tritter_ternary_matrix_from_dlpack(&wt, NULL, &m), TRITTER_ERR_SIZE_OVERFLOW, "weights");
    CHECK(m == NULL);
    /* the library still works */
    CHECK_OK(tritter_ternary_accumulator_new(100, 4, 0, &acc));
    tritter_ternary_accumulator_free(acc);
}

/* Issue item 2 under an address-space limit (setrlimit RLIMIT_AS in a
 * child): sizes the documentation allows, which the allocator refuses. */
static void rlimit_cases(void) {
    long pages = 0, page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    CHECK(f != NULL && fscanf(f, "%ld", &pages) == 1);
    fclose(f);
    rlim_t limit = (rlim_t)pages * (rlim_t)page + ((rlim_t)768 << 20);
    struct rlimit rl = {limit, limit};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);

    tritter_grad_config_t cfg;
    CHECK_OK(tritter_grad_config_default(&cfg)); /* error feedback on: a dim-float residual */
    tritter_grad_compressor_t *c = NULL;
    CHECK_ERR(tritter_grad_compressor_new(UINT32_MAX, &cfg, &c), TRITTER_ERR_OUT_OF_MEMORY, "dim");
    tritter_bundle_accumulator_t *ba = NULL;
    CHECK_ERR(tritter_bundle_accumulator_new((size_t)1 << 28, &ba), TRITTER_ERR_OUT_OF_MEMORY, "dim");
    tritter_fetchsgd_t *fs = NULL;
    CHECK_ERR(tritter_fetchsgd_new((size_t)1 << 30, 1, (size_t)1 << 28, 0, 1, 0.9f, &fs),
              TRITTER_ERR_OUT_OF_MEMORY, "cols");
    tritter_phase_trainer_t *tr = NULL;
    CHECK_OK(tritter_phase_trainer_new(NULL, &tr));
    size_t shape[2] = {(size_t)1 << 15, (size_t)1 << 15}, id = 7;
    CHECK_ERR(tritter_phase_trainer_add_param(tr, shape, 2, &id), TRITTER_ERR_OUT_OF_MEMORY, "shape");
    size_t small[1] = {10};
    CHECK_OK(tritter_phase_trainer_add_param(tr, small, 1, &id)); /* nothing half-registered */
    CHECK(id == 0);
    tritter_phase_trainer_free(tr);
    tritter_ternary_accumulator_t *acc = NULL;
    CHECK_ERR(tritter_ternary_accumulator_new((size_t)1 << 34, 256, 0, &acc), TRITTER_ERR_OUT_OF_MEMORY, "dim");
    float one = 1.0f;
    int64_t bshape[2] = {INT64_C(1) << 16, INT64_C(1) << 16}, bstrides[2] = {0, 0};
    tritter_dl_tensor_t wt = {&one, {TRITTER_DL_CPU, 0}, 2, {TRITTER_DL_FLOAT, 32, 1}, bshape, bstrides, 0};
    tritter_ternary_matrix_t *m = NULL;
    CHECK_ERR(tritter_ternary_matrix_from_dlpack(&wt, NULL, &m), TRITTER_ERR_OUT_OF_MEMORY, "weights");
    /* and the process carries on */
    float g[100], r[100];
    for (int i = 0; i < 100; i++) g[i] = (float)i;
    CHECK_OK(tritter_ternary_accumulator_new(100, 4, 0, &acc));
    CHECK_OK(tritter_ternary_accumulator_add(acc, g, 100, 1.0f));
    CHECK_OK(tritter_ternary_accumulator_read(acc, r, 100, false));
    tritter_ternary_accumulator_free(acc);
    printf("hardening (RLIMIT_AS child): %d checks passed\n", tritter_checks_run);
}

int main(void) {
    /* Fork before the library starts any thread (a child only has the
     * thread that forked it). */
    int child_ran = 0;
    if (!UNDER_ASAN && !under_valgrind()) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            rlimit_cases();
            fflush(stdout);
            _exit(0);
        }
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (WIFSIGNALED(st)) {
            fprintf(stderr, "RLIMIT_AS child killed by signal %d (an abort?)\n", WTERMSIG(st));
            return 1;
        }
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        child_ran = 1;
    }
    test_impossible_sizes();
    test_payloads_decode_finite();
    test_payload_sum_in_place();
    test_non_finite_rule();
    test_edge_rules();
    test_loss_scaler_floor();
    if (!child_ran) printf("hardening: RLIMIT_AS cases skipped (ASan or valgrind)\n");
    CHECK_DONE("hardening");
}
