/* Gradient compression, FetchSGD, random projection and the ternary
 * accumulator through the C ABI only: results against plain C references
 * (the hash, the count sketch, top-k, the payload layout and its CRC-32),
 * and every bad input against its status. */
#include <math.h>
#include <stdint.h>

#include "check.h"

/* ---- reference hashing (the crate's counter-based rng, from its docs) ---- */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t hash2(uint64_t seed, uint64_t i) {
    return mix64(mix64(seed * 0x9E3779B97F4A7C15ull ^ 0xD1B54A32D192ED03ull) + i * 0x9E3779B97F4A7C15ull);
}
static uint64_t derive(uint64_t seed, uint64_t tag) { return hash2(seed ^ 0x5851F42D4C957F2Dull, tag); }

static uint32_t crc32_ref(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static uint64_t lcg = 0x9E3779B97F4A7C15ull;
static int irand(int m) { /* integer in [-m, m] */
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((lcg >> 33) % (uint64_t)(2 * m + 1)) - m;
}

/* Count sketch from the definition (integer data: exact in float). */
static void ref_sketch(const float *g, size_t n, size_t rows, size_t cols, uint64_t seed, float *t) {
    memset(t, 0, rows * cols * sizeof(float));
    for (size_t r = 0; r < rows; r++) {
        uint64_t rs = derive(seed, r);
        for (size_t i = 0; i < n; i++) {
            uint64_t h = hash2(rs, i);
            size_t b = (size_t)(((h >> 32) * (uint64_t)cols) >> 32);
            t[r * cols + b] += (h & 1) ? -g[i] : g[i];
        }
    }
}

static void test_count_sketch(void) {
    enum { N = 3001, R = 3, COLS = 97 };
    static float a[N], b[N], ab[N], ta[R * COLS], tb[R * COLS], tab[R * COLS], tref[R * COLS], est[N];
    for (size_t i = 0; i < N; i++) {
        a[i] = (float)irand(100);
        b[i] = (float)irand(50);
        ab[i] = a[i] + b[i];
    }
    CHECK_OK(tritter_count_sketch(a, N, R, COLS, 42, ta, R * COLS));
    ref_sketch(a, N, R, COLS, 42, tref);
    CHECK(memcmp(ta, tref, sizeof ta) == 0);
    /* Linearity, exact for integer data. */
    CHECK_OK(tritter_count_sketch(b, N, R, COLS, 42, tb, R * COLS));
    CHECK_OK(tritter_count_sketch(ab, N, R, COLS, 42, tab, R * COLS));
    for (size_t j = 0; j < R * COLS; j++) CHECK(ta[j] + tb[j] == tab[j]);
    /* Median-of-3 estimate at a few coordinates. */
    CHECK_OK(tritter_count_sketch_estimate(ta, R * COLS, R, COLS, 42, est, N));
    for (size_t i = 0; i < N; i += 97) {
        float v[R];
        for (size_t r = 0; r < R; r++) {
            uint64_t h = hash2(derive(42, r), i);
            size_t bk = (size_t)(((h >> 32) * (uint64_t)COLS) >> 32);
            v[r] = (h & 1) ? -ta[r * COLS + bk] : ta[r * COLS + bk];
        }
        float lo = fminf(v[0], v[1]), hi = fmaxf(v[0], v[1]);
        float med = fmaxf(lo, fminf(hi, v[2]));
        CHECK(est[i] == med);
    }
    /* Bad inputs. */
    CHECK_ERR(tritter_count_sketch(NULL, N, R, COLS, 42, ta, R * COLS), TRITTER_ERR_NULL_POINTER, "grad");
    CHECK_ERR(tritter_count_sketch(a, N, R, COLS, 42, NULL, R * COLS), TRITTER_ERR_NULL_POINTER, "table_out");
    CHECK_ERR(tritter_count_sketch(a, N, R, COLS, 42, ta, R * COLS - 1), TRITTER_ERR_BUFFER_TOO_SMALL, "table_out");
    CHECK_ERR(tritter_count_sketch(a, 0, R, COLS, 42, ta, R * COLS), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    CHECK_ERR(tritter_count_sketch(a, N, 0, COLS, 42, ta, R * COLS), TRITTER_ERR_INVALID_ARGUMENT, "rows");
    CHECK_ERR(tritter_count_sketch(a, N, 16, COLS, 42, ta, R * COLS), TRITTER_ERR_INVALID_ARGUMENT, "rows");
    CHECK_ERR(tritter_count_sketch(a, N, R, 0, 42, ta, R * COLS), TRITTER_ERR_INVALID_ARGUMENT, "cols");
    CHECK_ERR(tritter_count_sketch(a, N, R, SIZE_MAX, 42, ta, R * COLS), TRITTER_ERR_INVALID_ARGUMENT, "cols");
    CHECK_ERR(tritter_count_sketch(a, SIZE_MAX, R, COLS, 42, ta, R * COLS), TRITTER_ERR_SIZE_OVERFLOW, "grad");
    a[5] = NAN;
    CHECK_ERR(tritter_count_sketch(a, N, R, COLS, 42, ta, R * COLS), TRITTER_ERR_NON_FINITE, "grad");
    a[5] = 0;
    CHECK_ERR(tritter_count_sketch_estimate(ta, R * COLS - 1, R, COLS, 42, est, N), TRITTER_ERR_SHAPE_MISMATCH, "table");
    CHECK_ERR(tritter_count_sketch_estimate(NULL, R * COLS, R, COLS, 42, est, N), TRITTER_ERR_NULL_POINTER, "table");
    CHECK_ERR(tritter_count_sketch_estimate(ta, R * COLS, R, COLS, 42, NULL, N), TRITTER_ERR_NULL_POINTER, "out");
}

static tritter_grad_compressor_t *make(uint32_t method, double ratio, bool ef, size_t dim) {
    tritter_grad_config_t cfg;
    CHECK_OK(tritter_grad_config_default(&cfg));
    cfg.method = method;
    cfg.ratio = ratio;
    cfg.error_feedback = ef;
    cfg.seed = 7;
    tritter_grad_compressor_t *c = NULL;
    CHECK_OK(tritter_grad_compressor_new(dim, &cfg, &c));
    CHECK(c != NULL);
    return c;
}

static void test_topk_payload(void) {
    enum { N = 1000 };
    static float g[N], d[N], res[N];
    for (size_t i = 0; i < N; i++) g[i] = (float)(irand(1000)) + (float)i * 1e-3f; /* distinct magnitudes */
    tritter_grad_compressor_t *c = make(TRITTER_GRAD_TOPK, 10.0, true, N);
    size_t wire = 0, written = 0;
    CHECK_OK(tritter_grad_compressor_wire_bytes(c, &wire));
    size_t k = N / 20;
    CHECK(wire == TRITTER_GRAD_PAYLOAD_OVERHEAD + 8 * k);
    uint8_t *p = malloc(wire);
    CHECK_OK(tritter_grad_compressor_compress(c, g, N, p, wire, &written));
    CHECK(written == wire);
    /* Header layout and CRC by hand. */
    CHECK(memcmp(p, "TGRC", 4) == 0 && p[4] == 1 && p[5] == 0 && p[6] == TRITTER_GRAD_TOPK && p[7] == 0);
    CHECK(rd64(p + 8) == N && rd32(p + 24) == k && rd32(p + 28) == 0 && rd64(p + 32) == 8 * k);
    CHECK(rd32(p + wire - 4) == crc32_ref(p, wire - 4));
    /* Kept coordinates: exactly those with |g| above the (k+1)-th largest. */
    size_t kept = 0;
    for (size_t j = 0; j < k; j++) {
        uint32_t idx = rd32(p + 40 + 4 * j);
        float v;
        memcpy(&v, p + 40 + 4 * k + 4 * j, 4);
        CHECK(idx < N && v == g[idx]);
        size_t larger = 0;
        for (size_t i = 0; i < N; i++) larger += fabsf(g[i]) > fabsf(g[idx]);
        CHECK(larger < k);
        kept++;
    }
    CHECK(kept == k);
    tritter_grad_payload_info_t info;
    CHECK_OK(tritter_grad_payload_info(p, wire, &info));
    CHECK(info.method == TRITTER_GRAD_TOPK && info.dim == N && info.param_a == k && info.wire_bytes == wire);
    CHECK(info.seed == rd64(p + 16));
    /* Error feedback: residual + decoded == gradient (first step). */
    CHECK_OK(tritter_grad_decompress(p, wire, d, N));
    CHECK_OK(tritter_grad_compressor_residual(c, res, N));
    for (size_t i = 0; i < N; i++) CHECK(res[i] + d[i] == g[i]);
    uint64_t step = 0;
    CHECK_OK(tritter_grad_compressor_step(c, &step));
    CHECK(step == 1);

    /* Corruption: every byte flip and every truncation is rejected. */
    for (size_t i = 0; i < wire; i++) {
        p[i] ^= 0x10;
        CHECK_ERR(tritter_grad_decompress(p, wire, d, N), TRITTER_ERR_INVALID_DATA, "payload");
        CHECK_ERR(tritter_grad_payload_info(p, wire, &info), TRITTER_ERR_INVALID_DATA, "payload");
        p[i] ^= 0x10;
    }
    for (size_t len = 0; len < wire; len += 7)
        CHECK_ERR(tritter_grad_decompress(p, len, d, N), TRITTER_ERR_INVALID_DATA, "payload");
    CHECK_ERR(tritter_grad_decompress(p, wire, d, N - 1), TRITTER_ERR_SHAPE_MISMATCH, "out");
    CHECK_ERR(tritter_grad_decompress(NULL, wire, d, N), TRITTER_ERR_NULL_POINTER, "payload");
    CHECK_ERR(tritter_grad_decompress(p, wire, NULL, N), TRITTER_ERR_NULL_POINTER, "out");
    CHECK_ERR(tritter_grad_payload_info(p, wire, NULL), TRITTER_ERR_NULL_POINTER, "info_out");
    /* Top-k payloads are not linear. */
    CHECK_ERR(tritter_grad_payload_sum(p, wire, p, wire, p, wire), TRITTER_ERR_INVALID_ARGUMENT, "other");

    /* Compress: bad inputs leave the state unchanged. */
    CHECK_ERR(tritter_grad_compressor_compress(c, g, N, p, wire - 1, &written), TRITTER_ERR_BUFFER_TOO_SMALL, "payload_out");
    CHECK_ERR(tritter_grad_compressor_compress(c, g, N - 1, p, wire, &written), TRITTER_ERR_SHAPE_MISMATCH, "grad");
    CHECK_ERR(tritter_grad_compressor_compress(c, NULL, N, p, wire, &written), TRITTER_ERR_NULL_POINTER, "grad");
    CHECK_ERR(tritter_grad_compressor_compress(c, g, N, NULL, wire, &written), TRITTER_ERR_NULL_POINTER, "payload_out");
    CHECK_ERR(tritter_grad_compressor_compress(c, g, N, p, wire, NULL), TRITTER_ERR_NULL_POINTER, "written_out");
    CHECK_ERR(tritter_grad_compressor_compress(NULL, g, N, p, wire, &written), TRITTER_ERR_NULL_POINTER, "compressor");
    g[3] = INFINITY;
    CHECK_ERR(tritter_grad_compressor_compress(c, g, N, p, wire, &written), TRITTER_ERR_NON_FINITE, "grad");
    CHECK_OK(tritter_grad_compressor_step(c, &step));
    CHECK(step == 1);
    CHECK_ERR(tritter_grad_compressor_residual(c, res, N - 1), TRITTER_ERR_BUFFER_TOO_SMALL, "residual_out");
    CHECK_ERR(tritter_grad_compressor_wire_bytes(NULL, &wire), TRITTER_ERR_NULL_POINTER, "compressor");
    CHECK_ERR(tritter_grad_compressor_wire_bytes(c, NULL), TRITTER_ERR_NULL_POINTER, "bytes_out");
    CHECK_OK(tritter_grad_compressor_reset(c));
    CHECK_OK(tritter_grad_compressor_step(c, &step));
    CHECK(step == 0);
    CHECK_ERR(tritter_grad_compressor_reset(NULL), TRITTER_ERR_NULL_POINTER, "compressor");
    tritter_grad_compressor_free(c);
    free(p);

    /* Without error feedback there is no residual (call-order mistake). */
    c = make(TRITTER_GRAD_TOPK, 10.0, false, N);
    CHECK_ERR(tritter_grad_compressor_residual(c, res, N), TRITTER_ERR_INVALID_STATE, "compressor");
    tritter_grad_compressor_free(c);
    tritter_grad_compressor_free(NULL);
}

static void test_config_errors(void) {
    tritter_grad_config_t cfg;
    tritter_grad_compressor_t *c = NULL;
    CHECK_ERR(tritter_grad_config_default(NULL), TRITTER_ERR_NULL_POINTER, "config_out");
    CHECK_OK(tritter_grad_config_default(&cfg));
    CHECK(cfg.method == TRITTER_GRAD_TOPK && cfg.ratio == 32.0 && cfg.block == 256 && cfg.error_feedback);
    CHECK_ERR(tritter_grad_compressor_new(100, NULL, &c), TRITTER_ERR_NULL_POINTER, "config");
    CHECK_ERR(tritter_grad_compressor_new(100, &cfg, NULL), TRITTER_ERR_NULL_POINTER, "compressor_out");
    CHECK_ERR(tritter_grad_compressor_new(0, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    CHECK_ERR(tritter_grad_compressor_new(SIZE_MAX, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    cfg.method = 0;
    CHECK_ERR(tritter_grad_compressor_new(100, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "method");
    cfg.method = 99;
    CHECK_ERR(tritter_grad_compressor_new(100, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "method");
    cfg.method = TRITTER_GRAD_TOPK;
    cfg.ratio = 0.5;
    CHECK_ERR(tritter_grad_compressor_new(100, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "ratio");
    cfg.ratio = NAN;
    CHECK_ERR(tritter_grad_compressor_new(100, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "ratio");
    cfg.ratio = 4;
    cfg.method = TRITTER_GRAD_TERNARY;
    cfg.block = 6;
    CHECK_ERR(tritter_grad_compressor_new(100, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "block");
    cfg.method = TRITTER_GRAD_SKETCH;
    cfg.rows = 0;
    CHECK_ERR(tritter_grad_compressor_new(100, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "rows");
    CHECK(c == NULL);
}

static void test_ternary_and_sketch_payloads(void) {
    enum { N = 1001 };
    static float g[N], d[N], d2[N], res[N];
    for (size_t i = 0; i < N; i++) g[i] = (float)irand(20) * 0.25f;
    tritter_grad_compressor_t *c = make(TRITTER_GRAD_TERNARY, 1.0, true, N);
    size_t wire = 0, written = 0;
    CHECK_OK(tritter_grad_compressor_wire_bytes(c, &wire));
    size_t nb = (N + 255) / 256;
    CHECK(wire == TRITTER_GRAD_PAYLOAD_OVERHEAD + 4 * nb + (N + 3) / 4);
    uint8_t *p = malloc(wire);
    CHECK_OK(tritter_grad_compressor_compress(c, g, N, p, wire, &written));
    CHECK_OK(tritter_grad_decompress(p, wire, d, N));
    CHECK_OK(tritter_grad_compressor_residual(c, res, N));
    for (size_t i = 0; i < N; i++) {
        float s;
        memcpy(&s, p + 40 + 4 * (i / 256), 4);
        float mx = 0;
        for (size_t j = (i / 256) * 256; j < N && j < (i / 256 + 1) * 256; j++) mx = fmaxf(mx, fabsf(g[j]));
        CHECK(s == mx);
        int code = (p[40 + 4 * nb + i / 4] >> (2 * (i % 4))) & 3;
        CHECK(code != 3);
        float want = code == 0 ? 0.0f : (code == 1 ? s : -s);
        CHECK(d[i] == want);
        if (code != 0) CHECK((code == 1) == (g[i] > 0)); /* sign preserved */
        CHECK(res[i] + d[i] == g[i]);
    }
    /* A `11` code with a valid CRC is still rejected. */
    p[40 + 4 * nb] = 0xFF;
    uint32_t crc = crc32_ref(p, wire - 4);
    memcpy(p + wire - 4, &crc, 4);
    CHECK_ERR(tritter_grad_decompress(p, wire, d, N), TRITTER_ERR_INVALID_DATA, "payload");
    tritter_grad_compressor_free(c);
    free(p);

    /* Sketch payloads of two workers sum to the payload of the summed gradient. */
    tritter_grad_compressor_t *w0 = make(TRITTER_GRAD_SKETCH, 8.0, false, N);
    tritter_grad_compressor_t *w1 = make(TRITTER_GRAD_SKETCH, 8.0, false, N);
    tritter_grad_compressor_t *w2 = make(TRITTER_GRAD_SKETCH, 8.0, false, N);
    CHECK_OK(tritter_grad_compressor_wire_bytes(w0, &wire));
    CHECK(wire == TRITTER_GRAD_PAYLOAD_OVERHEAD + 4 * (N / 8));
    uint8_t *pa = malloc(wire), *pb = malloc(wire), *pab = malloc(wire), *ps = malloc(wire);
    static float h[N], gh[N];
    for (size_t i = 0; i < N; i++) {
        h[i] = (float)irand(9);
        gh[i] = g[i] + h[i];
    }
    CHECK_OK(tritter_grad_compressor_compress(w0, g, N, pa, wire, &written));
    CHECK_OK(tritter_grad_compressor_compress(w1, h, N, pb, wire, &written));
    CHECK_OK(tritter_grad_compressor_compress(w2, gh, N, pab, wire, &written));
    CHECK_OK(tritter_grad_payload_sum(pa, wire, pb, wire, ps, wire));
    CHECK(memcmp(ps, pab, wire) == 0); /* quarter-integers: exact sums */
    CHECK_OK(tritter_grad_decompress(ps, wire, d, N));
    CHECK_OK(tritter_grad_decompress(pab, wire, d2, N));
    CHECK(memcmp(d, d2, sizeof d) == 0);
    CHECK_ERR(tritter_grad_payload_sum(pa, wire, pb, wire, ps, wire - 1), TRITTER_ERR_BUFFER_TOO_SMALL, "sum_out");
    /* Next step: another seed, so the sum is refused. */
    CHECK_OK(tritter_grad_compressor_compress(w1, h, N, pb, wire, &written));
    CHECK_ERR(tritter_grad_payload_sum(pa, wire, pb, wire, ps, wire), TRITTER_ERR_INVALID_ARGUMENT, "other");
    CHECK_ERR(tritter_grad_payload_sum(NULL, wire, pb, wire, ps, wire), TRITTER_ERR_NULL_POINTER, "a");
    pb[0] ^= 1;
    CHECK_ERR(tritter_grad_payload_sum(pa, wire, pb, wire, ps, wire), TRITTER_ERR_INVALID_DATA, "payload");
    tritter_grad_compressor_free(w0);
    tritter_grad_compressor_free(w1);
    tritter_grad_compressor_free(w2);
    free(pa);
    free(pb);
    free(pab);
    free(ps);
}

static void test_fetchsgd(void) {
    enum { N = 5000, R = 3, COLS = 1000, K = 10 };
    static float g[N], t[R * COLS], up[N];
    tritter_fetchsgd_t *f = NULL;
    /* Three rows: with one row every coordinate sharing a heavy hitter's bucket
     * has the same estimate, so top-k cannot tell them apart. */
    CHECK_OK(tritter_fetchsgd_new(N, R, COLS, 3, K, 0.9f, &f));
    for (size_t i = 0; i < N; i++) g[i] = (float)irand(3) * 0.01f;
    for (size_t i = 0; i < 5; i++) g[i * 777] = 100.0f + (float)i; /* heavy hitters */
    CHECK_OK(tritter_count_sketch(g, N, R, COLS, 3, t, R * COLS));
    CHECK_OK(tritter_fetchsgd_step(f, t, R * COLS, up, N));
    size_t nnz = 0;
    for (size_t i = 0; i < N; i++) nnz += up[i] != 0.0f;
    CHECK(nnz <= K);
    for (size_t i = 0; i < 5; i++) CHECK(fabsf(up[i * 777] - g[i * 777]) < 2.0f);
    CHECK_ERR(tritter_fetchsgd_step(f, t, R * COLS - 1, up, N), TRITTER_ERR_SHAPE_MISMATCH, "summed");
    CHECK_ERR(tritter_fetchsgd_step(f, t, R * COLS, up, N - 1), TRITTER_ERR_BUFFER_TOO_SMALL, "update_out");
    CHECK_ERR(tritter_fetchsgd_step(NULL, t, R * COLS, up, N), TRITTER_ERR_NULL_POINTER, "fetchsgd");
    t[0] = NAN;
    CHECK_ERR(tritter_fetchsgd_step(f, t, R * COLS, up, N), TRITTER_ERR_NON_FINITE, "summed");
    CHECK_OK(tritter_fetchsgd_reset(f));
    tritter_fetchsgd_free(f);
    tritter_fetchsgd_free(NULL);
    tritter_fetchsgd_t *bad = NULL;
    CHECK_ERR(tritter_fetchsgd_new(N, 1, COLS, 3, 0, 0.9f, &bad), TRITTER_ERR_INVALID_ARGUMENT, "k");
    CHECK_ERR(tritter_fetchsgd_new(N, 1, COLS, 3, N + 1, 0.9f, &bad), TRITTER_ERR_INVALID_ARGUMENT, "k");
    CHECK_ERR(tritter_fetchsgd_new(N, 1, COLS, 3, K, 1.0f, &bad), TRITTER_ERR_INVALID_ARGUMENT, "momentum");
    CHECK_ERR(tritter_fetchsgd_new(N, 1, COLS, 3, K, NAN, &bad), TRITTER_ERR_INVALID_ARGUMENT, "momentum");
    CHECK_ERR(tritter_fetchsgd_new(N, 0, COLS, 3, K, 0.9f, &bad), TRITTER_ERR_INVALID_ARGUMENT, "rows");
    CHECK_ERR(tritter_fetchsgd_new(N, 1, COLS, 3, K, 0.9f, NULL), TRITTER_ERR_NULL_POINTER, "fetchsgd_out");
    CHECK(bad == NULL);
}

static void test_projection(void) {
    enum { N = 9000 };
    static float g[N], back[N];
    size_t m = 0;
    CHECK_OK(tritter_grad_projection_len(N, 0.1, &m));
    CHECK(m == 900);
    float *y = malloc(m * sizeof(float));
    for (size_t i = 0; i < N; i++) g[i] = (float)irand(10);
    CHECK_OK(tritter_grad_project(g, N, 5, y, m));
    /* Reference: 3 equal blocks, 2 entries ±1/√2 per column. */
    float *yr = calloc(m, sizeof(float));
    size_t nb = 3;
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * N / nb, hi = (b + 1) * N / nb, ylo = b * m / nb, yhi = (b + 1) * m / nb;
        for (size_t i = lo; i < hi; i++)
            for (size_t t = 0; t < 2; t++) {
                uint64_t hh = hash2(5, i * 2 + t);
                size_t r = ylo + (size_t)(((hh >> 32) * (uint64_t)(yhi - ylo)) >> 32);
                float sv = g[i] * 0.70710678f;
                yr[r] += (hh & 1) ? -sv : sv;
            }
    }
    for (size_t r = 0; r < m; r++) CHECK(fabsf(y[r] - yr[r]) <= 1e-4f * (1.0f + fabsf(yr[r])));
    CHECK_OK(tritter_grad_unproject(y, m, 5, back, N));
    CHECK_ERR(tritter_grad_project(g, N, 5, y, 2), TRITTER_ERR_INVALID_ARGUMENT, "m");
    CHECK_ERR(tritter_grad_project(NULL, N, 5, y, m), TRITTER_ERR_NULL_POINTER, "grad");
    CHECK_ERR(tritter_grad_unproject(y, m, 5, NULL, N), TRITTER_ERR_NULL_POINTER, "out");
    CHECK_ERR(tritter_grad_unproject(y, m, 5, back, 0), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    CHECK_ERR(tritter_grad_projection_len(N, 0.0, &m), TRITTER_ERR_INVALID_ARGUMENT, "ratio");
    CHECK_ERR(tritter_grad_projection_len(N, 1.5, &m), TRITTER_ERR_INVALID_ARGUMENT, "ratio");
    CHECK_ERR(tritter_grad_projection_len(0, 0.5, &m), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    CHECK_ERR(tritter_grad_projection_len(N, 0.5, NULL), TRITTER_ERR_NULL_POINTER, "m_out");
    free(y);
    free(yr);
}

static void test_accumulator(void) {
    enum { N = 1000 };
    static float g[N], out[N];
    tritter_ternary_accumulator_t *a = NULL;
    CHECK_OK(tritter_ternary_accumulator_new(N, 256, 1, &a));
    size_t mem = 0;
    uint64_t count = 9;
    CHECK_OK(tritter_ternary_accumulator_info(a, &mem, &count));
    CHECK(mem == 250 + 4 * 4 && count == 0); /* packed: 2 bits a coordinate + 4 scales */
    /* Values of equal magnitude are kept exactly (Bernoulli(1)). */
    for (size_t i = 0; i < N; i++) g[i] = (i % 3 == 0) ? -0.5f : 0.5f;
    CHECK_OK(tritter_ternary_accumulator_add(a, g, N, 2.0f));
    CHECK_OK(tritter_ternary_accumulator_add(a, g, N, 2.0f));
    CHECK_OK(tritter_ternary_accumulator_read(a, out, N, false));
    for (size_t i = 0; i < N; i++) CHECK(out[i] == 2.0f * 2.0f * g[i]);
    CHECK_OK(tritter_ternary_accumulator_read(a, out, N, true));
    for (size_t i = 0; i < N; i++) CHECK(out[i] == 2.0f * g[i]);
    CHECK_OK(tritter_ternary_accumulator_info(a, &mem, &count));
    CHECK(count == 2);
    CHECK_ERR(tritter_ternary_accumulator_add(a, g, N - 1, 1.0f), TRITTER_ERR_SHAPE_MISMATCH, "grad");
    CHECK_ERR(tritter_ternary_accumulator_add(a, NULL, N, 1.0f), TRITTER_ERR_NULL_POINTER, "grad");
    CHECK_ERR(tritter_ternary_accumulator_add(a, g, N, NAN), TRITTER_ERR_INVALID_ARGUMENT, "alpha");
    CHECK_ERR(tritter_ternary_accumulator_add(NULL, g, N, 1.0f), TRITTER_ERR_NULL_POINTER, "accumulator");
    g[7] = NAN;
    CHECK_ERR(tritter_ternary_accumulator_add(a, g, N, 1.0f), TRITTER_ERR_NON_FINITE, "grad");
    CHECK_ERR(tritter_ternary_accumulator_read(a, out, N + 1, false), TRITTER_ERR_SHAPE_MISMATCH, "out");
    CHECK_ERR(tritter_ternary_accumulator_read(a, NULL, N, false), TRITTER_ERR_NULL_POINTER, "out");
    CHECK_ERR(tritter_ternary_accumulator_info(a, NULL, &count), TRITTER_ERR_NULL_POINTER, "memory_bytes_out");
    CHECK_ERR(tritter_ternary_accumulator_info(a, &mem, NULL), TRITTER_ERR_NULL_POINTER, "count_out");
    CHECK_OK(tritter_ternary_accumulator_info(a, &mem, &count));
    CHECK(count == 2);
    CHECK_OK(tritter_ternary_accumulator_reset(a));
    CHECK_OK(tritter_ternary_accumulator_read(a, out, N, false));
    for (size_t i = 0; i < N; i++) CHECK(out[i] == 0.0f);
    tritter_ternary_accumulator_free(a);
    tritter_ternary_accumulator_free(NULL);
    tritter_ternary_accumulator_t *bad = NULL;
    CHECK_ERR(tritter_ternary_accumulator_new(0, 256, 1, &bad), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    CHECK_ERR(tritter_ternary_accumulator_new(N, 7, 1, &bad), TRITTER_ERR_INVALID_ARGUMENT, "block");
    CHECK_ERR(tritter_ternary_accumulator_new(N, 256, 1, NULL), TRITTER_ERR_NULL_POINTER, "accumulator_out");
    CHECK(bad == NULL);
}

/* Reference decoder of the quantized top-k body (docs: src/grad/compress/qtopk.rs):
 * 2^v f32 levels, then per entry: unary(gap >> r), 0, r low bits, sign, v-bit code (LSB first). */
static int ref_qtopk_decode(const uint8_t *body, size_t body_len, size_t dim, size_t k, unsigned r, unsigned v,
                            float *out) {
    size_t nl = (size_t)1 << v, pos = 0, nbits = (body_len - 4 * nl) * 8;
    const uint8_t *s = body + 4 * nl;
    float lv[16];
    memcpy(lv, body, 4 * nl);
#define BIT() (pos < nbits ? (s[pos / 8] >> (pos % 8)) & 1 : 2); pos++
    for (size_t i = 0; i < dim; i++) out[i] = 0.0f;
    size_t next = 0;
    for (size_t j = 0; j < k; j++) {
        uint64_t q = 0, low = 0, code = 0;
        for (;;) { int b = BIT(); if (b == 2) return -1; if (b == 0) break; q++; }
        for (unsigned t = 0; t < r; t++) { int b = BIT(); if (b == 2) return -1; low |= (uint64_t)b << t; }
        int neg = BIT();
        if (neg == 2) return -1;
        for (unsigned t = 0; t < v; t++) { int b = BIT(); if (b == 2) return -1; code |= (uint64_t)b << t; }
        size_t i = next + (size_t)((q << r) | low);
        if (i >= dim) return -1;
        out[i] = neg ? -lv[code] : lv[code];
        next = i + 1;
    }
    for (; pos < nbits; pos++) if ((s[pos / 8] >> (pos % 8)) & 1) return -1;
#undef BIT
    return 0;
}

static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void test_qtopk_payload(void) {
    enum { N = 5000 };
    static float g[N], d[N], ref[N], res[N];
    for (size_t i = 0; i < N; i++) {
        float u = (float)irand(1000) / 1000.0f;
        g[i] = u * u * u + (float)i * 1e-7f; /* heavy-ish tails, distinct magnitudes */
    }
    for (unsigned v = 0; v <= 4; v++) {
        for (int ri = 0; ri < 3; ri++) {
            double ratio = ri == 0 ? 10.0 : ri == 1 ? 32.0 : 100.0;
            tritter_grad_config_t cfg;
            CHECK_OK(tritter_grad_config_default(&cfg));
            CHECK(cfg.value_bits == 2);
            cfg.method = TRITTER_GRAD_QTOPK;
            cfg.ratio = ratio;
            cfg.value_bits = v;
            cfg.seed = 3;
            tritter_grad_compressor_t *c = NULL;
            CHECK_OK(tritter_grad_compressor_new(N, &cfg, &c));
            size_t wire = 0, written = 0;
            CHECK_OK(tritter_grad_compressor_wire_bytes(c, &wire));
            CHECK(wire - TRITTER_GRAD_PAYLOAD_OVERHEAD <= (size_t)(4.0 * N / ratio));
            uint8_t *p = malloc(wire);
            CHECK_OK(tritter_grad_compressor_compress(c, g, N, p, wire, &written));
            CHECK(written == wire && p[6] == TRITTER_GRAD_QTOPK);
            size_t k = rd32(p + 24);
            unsigned r = rd32(p + 28) & 0xFF;
            CHECK((rd32(p + 28) >> 8) == v && r <= 31 && k > N / 64);
            CHECK(rd32(p + wire - 4) == crc32_ref(p, wire - 4));
            /* The library's decode equals an independent decoder of the documented stream. */
            CHECK(ref_qtopk_decode(p + 40, wire - 44, N, k, r, v, ref) == 0);
            CHECK_OK(tritter_grad_decompress(p, wire, d, N));
            /* Kept = the k largest magnitudes (all distinct), signs preserved. */
            static float mags[N];
            for (size_t i = 0; i < N; i++) mags[i] = fabsf(g[i]);
            qsort(mags, N, sizeof(float), cmp_desc);
            float thresh = mags[k - 1];
            size_t nz = 0;
            for (size_t i = 0; i < N; i++) {
                CHECK(d[i] == ref[i]);
                nz += d[i] != 0.0f;
                if (fabsf(g[i]) >= thresh) CHECK(d[i] != 0.0f && (d[i] < 0) == (g[i] < 0));
                else CHECK(d[i] == 0.0f);
            }
            CHECK(nz == k);
            CHECK_OK(tritter_grad_compressor_residual(c, res, N));
            for (size_t i = 0; i < N; i++) CHECK(res[i] == g[i] - d[i]);
            /* A corrupted stream with a valid CRC is still rejected: set every padding/stream
             * bit in the last byte, then re-seal the checksum. */
            uint8_t last = p[wire - 5];
            p[wire - 5] = 0xFF;
            uint32_t crc = crc32_ref(p, wire - 4);
            memcpy(p + wire - 4, &crc, 4); /* little-endian host */
            if (ref_qtopk_decode(p + 40, wire - 44, N, k, r, v, ref) != 0)
                CHECK_ERR(tritter_grad_decompress(p, wire, d, N), TRITTER_ERR_INVALID_DATA, "payload");
            p[wire - 5] = last;
            /* A negative level with a valid CRC. */
            float neg = -1.0f;
            memcpy(p + 40, &neg, 4);
            crc = crc32_ref(p, wire - 4);
            memcpy(p + wire - 4, &crc, 4);
            CHECK_ERR(tritter_grad_decompress(p, wire, d, N), TRITTER_ERR_INVALID_DATA, "payload");
            /* Value bits out of range in the header (re-sealed). */
            p[29] = 5;
            crc = crc32_ref(p, wire - 4);
            memcpy(p + wire - 4, &crc, 4);
            CHECK_ERR(tritter_grad_payload_info(p, wire, &(tritter_grad_payload_info_t){0}), TRITTER_ERR_INVALID_DATA,
                      "payload");
            for (size_t len = 0; len < wire; len += 5)
                CHECK_ERR(tritter_grad_decompress(p, len, d, N), TRITTER_ERR_INVALID_DATA, "payload");
            free(p);
            tritter_grad_compressor_free(c);
        }
    }
    tritter_grad_config_t cfg;
    tritter_grad_compressor_t *c = NULL;
    CHECK_OK(tritter_grad_config_default(&cfg));
    cfg.method = TRITTER_GRAD_QTOPK;
    cfg.value_bits = 5;
    CHECK_ERR(tritter_grad_compressor_new(100, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "value_bits");
    cfg.value_bits = SIZE_MAX;
    CHECK_ERR(tritter_grad_compressor_new(100, &cfg, &c), TRITTER_ERR_INVALID_ARGUMENT, "value_bits");
    CHECK(c == NULL);
}

/* The two-phase region exchange: three ranks in one process (the all-to-all and
 * all-gather done by copying), against one plain compressor per region, every
 * rank's update identical, the error-feedback sum conserved; then bad input. */
static void test_region_exchange(void) {
    enum { N = 1000, W = 3 };
    static float g[W][N], upd[W][N], loc[N], own[N], d[N];
    static double total[N], applied[N];
    const uint64_t seeds[W] = {11, 22, 33};
    tritter_grad_config_t cfg;
    CHECK_OK(tritter_grad_config_default(&cfg));
    cfg.method = TRITTER_GRAD_QTOPK;
    cfg.ratio = 8.0;
    cfg.seed = 5;
    tritter_grad_regions_t *x[W];
    tritter_grad_compressor_t *ref[W][W]; /* ref[rank][region] */
    size_t L = (N + W - 1) / W;
    for (int r = 0; r < W; r++) {
        tritter_grad_config_t c = cfg;
        c.worker = (uint64_t)r;
        x[r] = NULL;
        CHECK_OK(tritter_grad_regions_new(N, W, (size_t)r, &c, &c, seeds, W, &x[r]));
        for (int j = 0; j < W; j++) {
            tritter_grad_config_t cj = c;
            cj.seed = seeds[j];
            size_t len = (size_t)(j + 1) * L > N ? N - (size_t)j * L : L;
            CHECK_OK(tritter_grad_compressor_new(len, &cj, &ref[r][j]));
        }
    }
    size_t slot = 0, oslot = 0, s2 = 0, o2 = 0;
    CHECK_OK(tritter_grad_regions_slot_bytes(x[0], &slot, &oslot));
    CHECK_OK(tritter_grad_regions_slot_bytes(x[2], &s2, &o2));
    CHECK(slot == s2 && oslot == o2 && slot > TRITTER_GRAD_PAYLOAD_OVERHEAD && slot <= TRITTER_GRAD_PAYLOAD_OVERHEAD + 4 * L / 8);
    uint8_t *slots = malloc(W * W * slot), *recv = malloc(W * slot), *gathered = malloc(W * oslot);
    uint8_t *p = malloc(slot);
    for (int step = 0; step < 4; step++) {
        for (int r = 0; r < W; r++)
            for (size_t i = 0; i < N; i++) {
                g[r][i] = (float)irand(1000) / 997.0f;
                total[i] += g[r][i];
            }
        for (int r = 0; r < W; r++) {
            CHECK_OK(tritter_grad_regions_compress(x[r], g[r], N, slots + (size_t)r * W * slot, W * slot));
            for (int j = 0; j < W; j++) { /* slot j = the plain compressor's payload of region j, zero-padded */
                size_t wire = 0, written = 0;
                CHECK_OK(tritter_grad_compressor_wire_bytes(ref[r][j], &wire));
                CHECK_OK(tritter_grad_compressor_compress(ref[r][j], g[r] + (size_t)j * L,
                                                          j == W - 1 ? N - (size_t)j * L : L, p, slot, &written));
                const uint8_t *s = slots + ((size_t)r * W + (size_t)j) * slot;
                CHECK(memcmp(s, p, wire) == 0);
                for (size_t b = wire; b < slot; b++) CHECK(s[b] == 0);
            }
        }
        for (int o = 0; o < W; o++) { /* owner o receives slot o of every rank */
            for (int r = 0; r < W; r++) memcpy(recv + (size_t)r * slot, slots + ((size_t)r * W + (size_t)o) * slot, slot);
            CHECK_OK(tritter_grad_regions_reduce(x[o], recv, W * slot, gathered + (size_t)o * oslot, oslot));
        }
        for (int r = 0; r < W; r++) CHECK_OK(tritter_grad_regions_decode(x[r], gathered, W * oslot, upd[r], N));
        for (int r = 1; r < W; r++) CHECK(memcmp(upd[r], upd[0], sizeof upd[0]) == 0);
        for (size_t i = 0; i < N; i++) applied[i] += (double)W * upd[0][i];
    }
    double held_err = 0, scale = 0;
    static double held[N];
    for (int r = 0; r < W; r++) {
        CHECK_OK(tritter_grad_regions_residuals(x[r], loc, N, own, N));
        for (size_t i = 0; i < N; i++) held[i] += (double)loc[i] + own[i];
    }
    for (size_t i = 0; i < N; i++) {
        held_err = fmax(held_err, fabs(total[i] - applied[i] - held[i]));
        scale = fmax(scale, fabs(total[i]));
    }
    CHECK(held_err <= 1e-5 * scale);

    /* bad input */
    tritter_grad_regions_t *y = NULL;
    CHECK_ERR(tritter_grad_regions_new(N, W, 0, NULL, &cfg, NULL, 0, &y), TRITTER_ERR_NULL_POINTER, "local");
    CHECK_ERR(tritter_grad_regions_new(N, W, 0, &cfg, NULL, NULL, 0, &y), TRITTER_ERR_NULL_POINTER, "owner");
    CHECK_ERR(tritter_grad_regions_new(N, W, 0, &cfg, &cfg, NULL, 0, NULL), TRITTER_ERR_NULL_POINTER, "regions_out");
    CHECK_ERR(tritter_grad_regions_new(0, W, 0, &cfg, &cfg, NULL, 0, &y), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    CHECK_ERR(tritter_grad_regions_new(SIZE_MAX, W, 0, &cfg, &cfg, NULL, 0, &y), TRITTER_ERR_INVALID_ARGUMENT, "dim");
    CHECK_ERR(tritter_grad_regions_new(N, 0, 0, &cfg, &cfg, NULL, 0, &y), TRITTER_ERR_INVALID_ARGUMENT, "world");
    CHECK_ERR(tritter_grad_regions_new(N, SIZE_MAX, 0, &cfg, &cfg, NULL, 0, &y), TRITTER_ERR_INVALID_ARGUMENT, "world");
    CHECK_ERR(tritter_grad_regions_new(N, W, W, &cfg, &cfg, NULL, 0, &y), TRITTER_ERR_INVALID_ARGUMENT, "rank");
    CHECK_ERR(tritter_grad_regions_new(N, W, 0, &cfg, &cfg, seeds, 2, &y), TRITTER_ERR_SHAPE_MISMATCH, "region_seeds");
    CHECK_ERR(tritter_grad_regions_new(N, W, 0, &cfg, &cfg, NULL, W, &y), TRITTER_ERR_NULL_POINTER, "region_seeds");
    tritter_grad_config_t bad = cfg;
    bad.ratio = 0.5;
    CHECK_ERR(tritter_grad_regions_new(N, W, 0, &bad, &cfg, NULL, 0, &y), TRITTER_ERR_INVALID_ARGUMENT, "ratio");
    bad = cfg;
    bad.method = 99;
    CHECK_ERR(tritter_grad_regions_new(N, W, 0, &cfg, &bad, NULL, 0, &y), TRITTER_ERR_INVALID_ARGUMENT, "method");
    CHECK(y == NULL);
    size_t a = 0;
    CHECK_ERR(tritter_grad_regions_slot_bytes(NULL, &a, &a), TRITTER_ERR_NULL_POINTER, "regions");
    CHECK_ERR(tritter_grad_regions_slot_bytes(x[0], NULL, &a), TRITTER_ERR_NULL_POINTER, "slot_out");
    CHECK_ERR(tritter_grad_regions_slot_bytes(x[0], &a, NULL), TRITTER_ERR_NULL_POINTER, "owner_slot_out");
    CHECK_ERR(tritter_grad_regions_compress(NULL, g[0], N, slots, W * slot), TRITTER_ERR_NULL_POINTER, "regions");
    CHECK_ERR(tritter_grad_regions_compress(x[0], NULL, N, slots, W * slot), TRITTER_ERR_NULL_POINTER, "grad");
    CHECK_ERR(tritter_grad_regions_compress(x[0], g[0], N - 1, slots, W * slot), TRITTER_ERR_SHAPE_MISMATCH, "grad");
    CHECK_ERR(tritter_grad_regions_compress(x[0], g[0], SIZE_MAX, slots, W * slot), TRITTER_ERR_SIZE_OVERFLOW, "grad");
    CHECK_ERR(tritter_grad_regions_compress(x[0], g[0], N, slots, W * slot - 1), TRITTER_ERR_SHAPE_MISMATCH, "slots_out");
    CHECK_ERR(tritter_grad_regions_compress(x[0], g[0], N, NULL, W * slot), TRITTER_ERR_NULL_POINTER, "slots_out");
    CHECK_OK(tritter_grad_regions_residuals(x[0], loc, N, own, N));
    g[0][N - 1] = NAN;
    CHECK_ERR(tritter_grad_regions_compress(x[0], g[0], N, slots, W * slot), TRITTER_ERR_NON_FINITE, "grad");
    g[0][N - 1] = 0;
    CHECK_OK(tritter_grad_regions_residuals(x[0], d, N, own, N));
    CHECK(memcmp(d, loc, sizeof d) == 0); /* unchanged by the failed call */
    /* corrupt rows: named, owner_out unchanged */
    for (int r = 0; r < W; r++) memcpy(recv + (size_t)r * slot, slots + ((size_t)r * W) * slot, slot);
    uint8_t *o = malloc(oslot);
    memset(o, 0x5A, oslot);
    recv[slot + 60] ^= 4;
    CHECK_ERR(tritter_grad_regions_reduce(x[0], recv, W * slot, o, oslot), TRITTER_ERR_INVALID_DATA, "received");
    CHECK(strstr(tritter_last_error(), "row 1") != NULL);
    for (size_t b = 0; b < oslot; b++) CHECK(o[b] == 0x5A);
    CHECK_ERR(tritter_grad_regions_reduce(x[0], recv, W * slot - 1, o, oslot), TRITTER_ERR_SHAPE_MISMATCH, "received");
    CHECK_ERR(tritter_grad_regions_reduce(x[0], recv, W * slot, o, oslot + 1), TRITTER_ERR_SHAPE_MISMATCH, "owner_out");
    CHECK_ERR(tritter_grad_regions_reduce(x[0], NULL, W * slot, o, oslot), TRITTER_ERR_NULL_POINTER, "received");
    memset(recv, 0, W * slot); /* zero bytes: not a payload */
    CHECK_ERR(tritter_grad_regions_reduce(x[0], recv, W * slot, o, oslot), TRITTER_ERR_INVALID_DATA, "received");
    gathered[2 * oslot + 3] ^= 0x80; /* bad magic in row 2 */
    for (size_t i = 0; i < N; i++) d[i] = 1.0f;
    CHECK_ERR(tritter_grad_regions_decode(x[1], gathered, W * oslot, d, N), TRITTER_ERR_INVALID_DATA, "gathered");
    CHECK(strstr(tritter_last_error(), "row 2") != NULL);
    for (size_t i = 0; i < N; i++) CHECK(d[i] == 0.0f);
    CHECK_ERR(tritter_grad_regions_decode(x[1], gathered, W * oslot, d, N + 1), TRITTER_ERR_SHAPE_MISMATCH, "out");
    CHECK_ERR(tritter_grad_regions_decode(x[1], gathered, W * oslot + 1, d, N), TRITTER_ERR_SHAPE_MISMATCH, "gathered");
    CHECK_ERR(tritter_grad_regions_decode(x[1], gathered, W * oslot, NULL, N), TRITTER_ERR_NULL_POINTER, "out");
    CHECK_ERR(tritter_grad_regions_residuals(x[0], loc, N - 1, own, N), TRITTER_ERR_SHAPE_MISMATCH, "local_out");
    CHECK_ERR(tritter_grad_regions_residuals(x[0], loc, N, NULL, N), TRITTER_ERR_NULL_POINTER, "owner_out");
    /* without error feedback there is no residual */
    tritter_grad_config_t noef = cfg;
    noef.error_feedback = false;
    CHECK_OK(tritter_grad_regions_new(N, W, 1, &noef, &noef, NULL, 0, &y));
    CHECK_ERR(tritter_grad_regions_residuals(y, loc, N, own, N), TRITTER_ERR_INVALID_STATE, "residual");
    tritter_grad_regions_free(y);
    /* more ranks than coordinates: empty regions, still consistent */
    CHECK_OK(tritter_grad_regions_new(2, 5, 4, &cfg, &cfg, NULL, 0, &y));
    CHECK_OK(tritter_grad_regions_slot_bytes(y, &a, &s2));
    tritter_grad_regions_free(y);
    tritter_grad_regions_free(NULL);
    for (int r = 0; r < W; r++) {
        tritter_grad_regions_free(x[r]);
        for (int j = 0; j < W; j++) tritter_grad_compressor_free(ref[r][j]);
    }
    free(slots), free(recv), free(gathered), free(p), free(o);
}

int main(void) {
    test_count_sketch();
    test_topk_payload();
    test_qtopk_payload();
    test_config_errors();
    test_ternary_and_sketch_payloads();
    test_fetchsgd();
    test_projection();
    test_accumulator();
    test_region_exchange();
    CHECK_DONE("grad");
}
