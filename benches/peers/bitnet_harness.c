// bitnet.cpp I2_S vs tritter-accel int8, side by side in one process, for
// scripts/bench-matmul.sh (BITNET_HARNESS). Our own code: it calls
// bitnet.cpp's ggml_vec_dot_i2_i8_s / quantize_i2_s (src/ggml-bitnet-mad.cpp
// of a microsoft/BitNet checkout you supply, compiled unchanged by
// scripts/build-bitnet-harness.sh) and this library's C API.
//
// usage: bitnet_harness ROWS COLS BATCH THREADS ROUNDS
//   Weights: random trits, the same values in both libraries (bitnet: its
//   I2_S layout with its per-tensor scale; ours: per-row scales, int8
//   activations, 2-bit and base-3 compute formats). Weights are cold: each
//   call uses the next of enough matrices to exceed 64 MiB. bitnet's per-call
//   work is what its llama.cpp fork does for an I2_S mul_mat: per-token int8
//   absmax quantization of the activations (with their sum), one
//   ggml_vec_dot_i2_i8_s per weight row (batch 1: 1x1 kernel; batch % 4 == 0:
//   the Nx1 kernel over all batch columns), and (sum - act_sum) * w_scale /
//   act_scale. THREADS (1 or 2): persistent pthreads, rows split in halves,
//   spin barrier. "read_floor_2bit": reading the same I2_S bytes, split the
//   same way. Each round times every implementation (medians of the round
//   interleaved), and the medians over rounds are printed as
//   `impl rows cols batch threads median_us` lines.
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tritter_accel.h"

size_t quantize_i2_s(const float *src, void *dst, int64_t nrow, int64_t n_per_row, const float *quant_weights);
void ggml_vec_dot_i2_i8_s(int n, float *s, size_t bs, const void *vx, size_t bx, const void *vy, size_t by, int nrc);

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(double *v, int n) {
    qsort(v, n, sizeof(double), cmpd);
    return v[n / 2];
}
static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
#define CHECK(call)                                                                  \
    do {                                                                             \
        if ((call) != 0) {                                                           \
            fprintf(stderr, "%s failed: %s\n", #call, tritter_last_error());         \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

// ---- the job both threads run
static int64_t R, K, B;
static int nthreads;
static uint8_t **wmats;    // I2_S bytes (R * K / 4) + scale
static float *wscale;      // per matrix
static int8_t *qact;       // [B][K]
static float *act_scale;   // [B]
static int32_t *act_sum;   // [B]
static float *yb;          // [R][B] partial sums, then [B][R] results
static float *ybt;
static int cur;            // matrix index of the current job
static int job_kind;       // 0 bitnet, 1 read floor
static volatile uint64_t sink;

static void work(int tid) {
    int64_t r0 = R * tid / nthreads, r1 = R * (tid + 1) / nthreads;
    const uint8_t *w = wmats[cur];
    if (job_kind == 1) {
        const uint64_t *p = (const uint64_t *)(w + r0 * K / 4), *e = (const uint64_t *)(w + r1 * K / 4);
        uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (; p + 4 <= e; p += 4) { a0 ^= p[0]; a1 ^= p[1]; a2 ^= p[2]; a3 ^= p[3]; }
        sink ^= a0 ^ a1 ^ a2 ^ a3;
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *x = w + r * K / 4;
        if (B == 1) {
            ggml_vec_dot_i2_i8_s((int)K, &yb[r], 1, x, (size_t)K, qact, (size_t)K, 1);
        } else {
            // column c's result at yb[r * B + c]
            ggml_vec_dot_i2_i8_s((int)K, &yb[r * B], 1, x, (size_t)K, qact, (size_t)K, (int)B);
        }
    }
    // epilogue for this thread's rows: (sum - act_sum) * w_scale / act_scale
    float ws = wscale[cur];
    for (int64_t r = r0; r < r1; r++)
        for (int64_t c = 0; c < B; c++)
            ybt[c * R + r] = ((float)yb[r * B + c] - (float)act_sum[c]) * ws / act_scale[c];
}

static atomic_int epoch, done;
static atomic_int quit;
// While our library is timed the bitnet helper must not spin: on a 2-core
// machine a spinning helper takes a core from our own worker threads.
// Parked, it sleeps 50 µs between checks (bitnet's rows are timed unparked,
// after a warm-up round, so its spinning hand-off is what gets measured).
static atomic_int parked;
static void *helper(void *arg) {
    int tid = (int)(intptr_t)arg, seen = 0;
    for (;;) {
        int e;
        while ((e = atomic_load(&epoch)) == seen) {
            if (atomic_load(&quit)) return NULL;
            if (atomic_load(&parked)) {
                struct timespec ts = {0, 50000};
                nanosleep(&ts, NULL);
            } else {
                __builtin_ia32_pause();
            }
        }
        seen = e;
        work(tid);
        atomic_fetch_add(&done, 1);
    }
}
static void run_job(void) {
    atomic_store(&done, 0);
    atomic_fetch_add(&epoch, 1);
    work(0);
    while (atomic_load(&done) < nthreads - 1) __builtin_ia32_pause();
}

// bitnet.cpp's per-token activation quantization (as its llama.cpp fork's
// quantize_row_i8_s: scale 127 / max|x|, round to nearest, and the row sum).
static void quantize_acts(const float *x) {
    for (int64_t c = 0; c < B; c++) {
        const float *xr = x + c * K;
        float mx = 1e-5f;
        for (int64_t k = 0; k < K; k++) mx = fmaxf(mx, fabsf(xr[k]));
        float s = 127.0f / mx;
        int32_t sum = 0;
        for (int64_t k = 0; k < K; k++) {
            int v = (int)nearbyintf(xr[k] * s);
            v = v > 127 ? 127 : v < -128 ? -128 : v;
            qact[c * K + k] = (int8_t)v;
            sum += v;
        }
        act_scale[c] = s;
        act_sum[c] = sum;
    }
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s ROWS COLS BATCH THREADS ROUNDS\n", argv[0]);
        return 2;
    }
    R = atoll(argv[1]);
    K = atoll(argv[2]);
    B = atoll(argv[3]);
    nthreads = atoi(argv[4]);
    int rounds = atoi(argv[5]);
    if (K % 128 || R % 4 || (B != 1 && B % 4) || nthreads < 1 || nthreads > 2 || rounds < 1) {
        fprintf(stderr, "need COLS %% 128 == 0, ROWS %% 4 == 0, BATCH 1 or a multiple of 4, THREADS 1-2\n");
        return 2;
    }
    size_t wbytes = (size_t)(R * K / 4) + 32;
    int nmat = (int)((64ull << 20) / wbytes + 1);
    if (nmat < 2) nmat = 2;

    // one random ternary matrix, shared by every copy (its values; the copies
    // are separate memory)
    int8_t *t = malloc(R * K);
    float *tf = malloc(sizeof(float) * R * K);
    for (int64_t i = 0; i < R * K; i++) {
        t[i] = (int8_t)(next() % 3) - 1;
        tf[i] = (float)t[i];
    }
    wmats = malloc(sizeof(*wmats) * nmat);
    wscale = malloc(sizeof(float) * nmat);
    for (int m = 0; m < nmat; m++) {
        wmats[m] = aligned_alloc(64, (wbytes + 63) / 64 * 64);
        if (m == 0) quantize_i2_s(tf, wmats[0], R, K, NULL);
        else memcpy(wmats[m], wmats[0], wbytes);
        memcpy(&wscale[m], wmats[m] + R * K / 4, sizeof(float));
    }
    float *scales = malloc(sizeof(float) * R);
    for (int64_t r = 0; r < R; r++) scales[r] = 1.0f;
    tritter_ternary_matrix_t **ours = malloc(sizeof(*ours) * nmat);
    tritter_ternary_matrix_t **ours3 = malloc(sizeof(*ours3) * nmat);
    for (int m = 0; m < nmat; m++) {
        CHECK(tritter_ternary_matrix_from_ternary(t, R, K, scales, R, TRITTER_GRANULARITY_PER_ROW, 0, &ours[m]));
        CHECK(tritter_ternary_matrix_with_compute_format(ours[m], TRITTER_COMPUTE_BASE3, &ours3[m]));
    }
    float *x = malloc(sizeof(float) * B * K);
    for (int64_t i = 0; i < B * K; i++) x[i] = (float)((next() >> 40) & 0xFFFF) / 32768.0f - 1.0f;
    qact = aligned_alloc(64, (B * K + 63) / 64 * 64);
    act_scale = malloc(sizeof(float) * B);
    act_sum = malloc(sizeof(int32_t) * B);
    yb = malloc(sizeof(float) * R * B);
    ybt = malloc(sizeof(float) * R * B);
    float *yo = malloc(sizeof(float) * R * B);

    pthread_t th;
    if (nthreads == 2) pthread_create(&th, NULL, helper, (void *)(intptr_t)1);
    CHECK(tritter_set_num_threads((size_t)nthreads));

    // correctness: bitnet's dot products equal Σ t·q on matrix 0, and its
    // outputs match ours within the int8 rounding of the two quantizers
    cur = 0;
    job_kind = 0;
    quantize_acts(x);
    run_job();
    for (int64_t r = 0; r < R; r += R / 8 + 1) {
        for (int64_t c = 0; c < B; c++) {
            int64_t want = 0;
            for (int64_t k = 0; k < K; k++) want += (int64_t)t[r * K + k] * qact[c * K + k];
            int64_t got = (int64_t)yb[r * B + c] - act_sum[c];
            if (got != want) {
                fprintf(stderr, "bitnet I2_S result mismatch at row %lld col %lld: %lld vs %lld\n",
                        (long long)r, (long long)c, (long long)got, (long long)want);
                return 1;
            }
        }
    }
    CHECK(tritter_ternary_matrix_matmul(ours[0], x, B, K, NULL, 0, TRITTER_ACT_INT8, yo, R * B));
    for (int64_t i = 0; i < R * B; i++) {
        float d = fabsf(yo[i] - ybt[i]);
        if (d > 1e-3f * (float)K) {
            fprintf(stderr, "bitnet and tritter disagree at %lld: %g vs %g\n", (long long)i, ybt[i], yo[i]);
            return 1;
        }
    }

    // f32 activations only at batch 1 (tritter's default mode; bitnet.cpp has none)
    int nimpl = B == 1 ? 5 : 4;
    const char *names[5] = {"read_floor_2bit", "bitnet_i2s", "tritter_i8", "tritter_i8_base3", "tritter_f32"};
    int reps = B == 1 ? 40 : 4;
    double *med = malloc(sizeof(double) * 5 * rounds);
    double *ts = malloc(sizeof(double) * reps);
    int it = 0;
    for (int rd = -1; rd < rounds; rd++) {  // round -1 warms up
        for (int impl = 0; impl < nimpl; impl++) {
            atomic_store(&parked, impl >= 2);
            for (int i = 0; i < reps; i++) {
                cur = it++ % nmat;
                double t0 = now_us();
                switch (impl) {
                case 0: job_kind = 1; run_job(); break;
                case 1: job_kind = 0; quantize_acts(x); run_job(); break;
                case 2: CHECK(tritter_ternary_matrix_matmul(ours[cur], x, B, K, NULL, 0, TRITTER_ACT_INT8, yo, R * B)); break;
                case 3: CHECK(tritter_ternary_matrix_matmul(ours3[cur], x, B, K, NULL, 0, TRITTER_ACT_INT8, yo, R * B)); break;
                case 4: CHECK(tritter_ternary_matrix_matmul(ours[cur], x, B, K, NULL, 0, TRITTER_ACT_F32, yo, R * B)); break;
                }
                ts[i] = now_us() - t0;
            }
            if (rd >= 0) med[impl * rounds + rd] = median(ts, reps);
        }
    }
    for (int impl = 0; impl < nimpl; impl++)
        printf("%s\t%lld\t%lld\t%lld\t%d\t%.2f\n", names[impl], (long long)R, (long long)K, (long long)B,
               nthreads, median(&med[impl * rounds], rounds));
    atomic_store(&quit, 1);
    if (nthreads == 2) pthread_join(th, NULL);
    for (int m = 0; m < nmat; m++) {
        tritter_ternary_matrix_free(ours[m]);
        tritter_ternary_matrix_free(ours3[m]);
    }
    return 0;
}
