/* Mixed precision through the C ABI only: conversions against a brute-force
 * C reference (exhaustive for 16-bit inputs), stochastic rounding properties,
 * the loss scaler against GradScaler's update rules, and every bad input. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rand32(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 32);
}
static float from_bits(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static uint32_t to_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

/* Exact value of a binary16 pattern (non-NaN). */
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 0x1f;
    double m = h & 0x3ff, v;
    if (e == 0) v = ldexp(m, -24);
    else if (e == 31) v = INFINITY;
    else v = ldexp(1.0 + m / 1024.0, e - 15);
    return (h & 0x8000) ? -v : v;
}
static double bf16_value(uint16_t h) { return (double)from_bits((uint32_t)h << 16); }

/* Nearest representable by binary search over positive patterns, ties to even. */
static uint16_t ref_narrow(float x, double (*val)(uint16_t), uint16_t maxf, uint16_t inf) {
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    uint16_t lo = 0, hi = maxf;
    while (lo < hi) {
        uint16_t mid = (uint16_t)(lo + (hi - lo + 1) / 2);
        if (val(mid) <= a) lo = mid; else hi = (uint16_t)(mid - 1);
    }
    double vb = val(lo);
    if (vb == a) return sign | lo;
    double va = lo == maxf ? 2 * val(maxf) - val((uint16_t)(maxf - 1)) : val((uint16_t)(lo + 1));
    uint16_t above = lo == maxf ? inf : (uint16_t)(lo + 1);
    double db = a - vb, da = va - a;
    uint16_t pick = db < da ? lo : da < db ? above : (lo & 1) == 0 ? lo : above;
    return sign | pick;
}

static void test_widen_exhaustive(void) {
    uint16_t *h = malloc(65536 * 2);
    float *f = malloc(65536 * 4);
    uint16_t *back = malloc(65536 * 2);
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    CHECK_OK(tritter_f16_to_f32(h, 65536, f, 65536));
    CHECK_OK(tritter_f32_to_f16(f, 65536, back, 65536));
    for (uint32_t i = 0; i < 65536; i++) {
        int nan = (i & 0x7c00) == 0x7c00 && (i & 0x3ff);
        if (nan) {
            CHECK(isnan(f[i]) && !!signbit(f[i]) == !!(i & 0x8000));
            CHECK(back[i] == (uint16_t)(i | 0x200)); /* quieted, payload kept */
        } else {
            CHECK((double)f[i] == f16_value((uint16_t)i));
            CHECK(!!signbit(f[i]) == !!(i & 0x8000));
            CHECK(back[i] == i);
        }
    }
    CHECK_OK(tritter_bf16_to_f32(h, 65536, f, 65536));
    CHECK_OK(tritter_f32_to_bf16(f, 65536, back, 65536));
    for (uint32_t i = 0; i < 65536; i++) {
        CHECK(to_bits(f[i]) == i << 16);
        CHECK(back[i] == (isnan(f[i]) ? (uint16_t)(i | 0x40) : i));
    }
    free(h); free(f); free(back);
}

static void test_narrow_random(size_t n) {
    float *x = malloc((n + 16) * 4);
    uint16_t *b = malloc((n + 16) * 2), *h = malloc((n + 16) * 2);
    for (size_t i = 0; i < n; i++) x[i] = from_bits(rand32());
    const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, 65504.0f, 65520.0f, 65519.996f,
                              5.9604645e-8f, 2.9802322e-8f, 1.0f, 1.00390625f, 3.4028235e38f};
    for (size_t i = 0; i < sizeof specials / sizeof *specials && i < n; i++) x[i * 3 % n] = specials[i];
    CHECK_OK(tritter_f32_to_bf16(x, n, b, n + 16));
    CHECK_OK(tritter_f32_to_f16(x, n, h, n));
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i])) {
            CHECK(b[i] == (uint16_t)((to_bits(x[i]) >> 16) | 0x40));
            CHECK((h[i] & 0x7e00) == 0x7e00 && !!(h[i] & 0x8000) == !!signbit(x[i]));
            continue;
        }
        if (isinf(x[i])) {
            CHECK(b[i] == (signbit(x[i]) ? 0xff80 : 0x7f80));
            CHECK(h[i] == (signbit(x[i]) ? 0xfc00 : 0x7c00));
            continue;
        }
        CHECK(b[i] == ref_narrow(x[i], bf16_value, 0x7f7f, 0x7f80));
        CHECK(h[i] == ref_narrow(x[i], f16_value, 0x7bff, 0x7c00));
    }
    free(x); free(b); free(h);
}

static void test_stochastic(void) {
    enum { N = 20000 };
    float *x = malloc(N * 4);
    uint16_t *a = malloc(N * 2), *b = malloc(N * 2);
    float v = 1.0f + 0.25f / 128.0f; /* a quarter ulp above 1.0 in bf16 */
    for (int i = 0; i < N; i++) x[i] = v;
    CHECK_OK(tritter_f32_to_bf16_stochastic(x, N, 42, 0, a, N));
    int ups = 0;
    for (int i = 0; i < N; i++) {
        CHECK(a[i] == 0x3f80 || a[i] == 0x3f81);
        ups += a[i] == 0x3f81;
    }
    /* Binomial(N, 1/4): sd = sqrt(N * 3/16) ~ 61; 6 sd. */
    CHECK(fabs(ups - N / 4.0) < 6 * sqrt(N * 3.0 / 16.0));
    /* Pieces with offsets equal the whole. */
    CHECK_OK(tritter_f32_to_bf16_stochastic(x, 777, 42, 0, b, 777));
    CHECK_OK(tritter_f32_to_bf16_stochastic(x + 777, N - 777, 42, 777, b + 777, N - 777));
    CHECK(memcmp(a, b, N * 2) == 0);
    CHECK_ERR(tritter_f32_to_bf16_stochastic(x, 10, 1, UINT64_MAX - 3, a, N), TRITTER_ERR_SIZE_OVERFLOW, "offset");
    CHECK_ERR(tritter_f32_to_bf16_stochastic(NULL, 10, 1, 0, a, N), TRITTER_ERR_NULL_POINTER, "src");
    CHECK_ERR(tritter_f32_to_bf16_stochastic(x, 10, 1, 0, a, 9), TRITTER_ERR_BUFFER_TOO_SMALL, "dst");
    free(x); free(a); free(b);
}

static void test_convert_errors(void) {
    float x[4] = {1, 2, 3, 4};
    uint16_t h[4];
    CHECK_OK(tritter_f32_to_bf16(NULL, 0, NULL, 0));
    CHECK_ERR(tritter_f32_to_bf16(NULL, 4, h, 4), TRITTER_ERR_NULL_POINTER, "src");
    CHECK_ERR(tritter_f32_to_f16(x, 4, NULL, 4), TRITTER_ERR_NULL_POINTER, "dst");
    CHECK_ERR(tritter_f32_to_f16(x, 4, h, 3), TRITTER_ERR_BUFFER_TOO_SMALL, "dst");
    CHECK_ERR(tritter_bf16_to_f32(h, 4, x, 2), TRITTER_ERR_BUFFER_TOO_SMALL, "dst");
    CHECK_ERR(tritter_f16_to_f32(h, SIZE_MAX / 2, x, SIZE_MAX / 2), TRITTER_ERR_SIZE_OVERFLOW, "src");
}

/* GradScaler's documented update rules, written out. */
static float ref_update(float *scale, uint32_t *tracker, int found, float growth, float backoff, uint32_t interval) {
    if (found) { *scale *= backoff; *tracker = 0; }
    else if (*tracker + 1 == interval) {
        float g = *scale * growth;
        if (isfinite(g)) *scale = g;
        *tracker = 0;
    } else (*tracker)++;
    return *scale;
}

static void test_loss_scaler(void) {
    tritter_loss_scaler_config_t cfg;
    CHECK_OK(tritter_loss_scaler_config_default(&cfg));
    CHECK(cfg.init_scale == 65536.0f && cfg.growth_factor == 2.0f && cfg.backoff_factor == 0.5f);
    CHECK(cfg.growth_interval == 2000 && cfg.min_scale == 0x1p-24f && isinf(cfg.max_scale));
    cfg.growth_interval = 4;
    tritter_loss_scaler_t *s = NULL;
    CHECK_OK(tritter_loss_scaler_new(&cfg, &s));
    float ref = cfg.init_scale;
    uint32_t tr = 0;
    for (int i = 0; i < 300; i++) {
        int found = (i % 13 == 3) || (i % 29 == 0) || (i >= 100 && i < 106);
        float got;
        CHECK_OK(tritter_loss_scaler_update(s, found, &got));
        CHECK(got == ref_update(&ref, &tr, found, 2.0f, 0.5f, 4));
        tritter_loss_scaler_state_t st;
        CHECK_OK(tritter_loss_scaler_state(s, &st));
        CHECK(st.scale == ref && st.growth_tracker == tr && st.updates == (uint64_t)i + 1);
    }
    CHECK_OK(tritter_loss_scaler_update(s, false, NULL));

    /* unscale: two buffers multiplied by 1/scale; inf detection. */
    CHECK_OK(tritter_loss_scaler_set_scale(s, 4.0f));
    float a[5] = {4, 8, -12, 0, 2}, b[3] = {1, 2, 3};
    float *bufs[3] = {a, NULL, b};
    size_t lens[3] = {5, 0, 3};
    bool found = true;
    CHECK_OK(tritter_loss_scaler_unscale(s, bufs, lens, 3, &found));
    CHECK(!found && a[0] == 1 && a[1] == 2 && a[2] == -3 && a[4] == 0.5f && b[2] == 0.75f);
    b[1] = INFINITY;
    CHECK_OK(tritter_loss_scaler_unscale(s, bufs, lens, 3, &found));
    CHECK(found);
    const float *cbufs[2] = {a, b};
    size_t clens[2] = {5, 3};
    CHECK_OK(tritter_found_inf(cbufs, clens, 1, &found));
    CHECK(!found);
    CHECK_OK(tritter_found_inf(cbufs, clens, 2, &found));
    CHECK(found);
    CHECK_OK(tritter_found_inf(NULL, NULL, 0, &found));
    CHECK(!found);

    /* Bad inputs. */
    float *overlap[2] = {a, a + 2};
    size_t olens[2] = {3, 2};
    CHECK_ERR(tritter_loss_scaler_unscale(s, overlap, olens, 2, &found), TRITTER_ERR_INVALID_ARGUMENT, "buffers");
    float *nullbuf[1] = {NULL};
    size_t one[1] = {1};
    CHECK_ERR(tritter_loss_scaler_unscale(s, nullbuf, one, 1, &found), TRITTER_ERR_NULL_POINTER, "buffers");
    CHECK_ERR(tritter_loss_scaler_unscale(s, NULL, lens, 3, &found), TRITTER_ERR_NULL_POINTER, "buffers");
    CHECK_ERR(tritter_loss_scaler_unscale(s, bufs, NULL, 3, &found), TRITTER_ERR_NULL_POINTER, "lens");
    CHECK_ERR(tritter_loss_scaler_unscale(s, bufs, lens, 3, NULL), TRITTER_ERR_NULL_POINTER, "found_inf_out");
    CHECK_ERR(tritter_loss_scaler_unscale(NULL, bufs, lens, 3, &found), TRITTER_ERR_NULL_POINTER, "scaler");
    size_t huge[1] = {SIZE_MAX / 2};
    CHECK_ERR(tritter_loss_scaler_unscale(s, bufs, huge, 1, &found), TRITTER_ERR_SIZE_OVERFLOW, "buffers");
    CHECK_ERR(tritter_found_inf(cbufs, clens, 2, NULL), TRITTER_ERR_NULL_POINTER, "found_inf_out");
    CHECK_ERR(tritter_loss_scaler_set_scale(s, 0.0f), TRITTER_ERR_INVALID_ARGUMENT, "scale");
    CHECK_ERR(tritter_loss_scaler_set_scale(s, NAN), TRITTER_ERR_INVALID_ARGUMENT, "scale");
    CHECK_ERR(tritter_loss_scaler_set_scale(NULL, 1.0f), TRITTER_ERR_NULL_POINTER, "scaler");
    CHECK_ERR(tritter_loss_scaler_update(NULL, false, NULL), TRITTER_ERR_NULL_POINTER, "scaler");
    CHECK_ERR(tritter_loss_scaler_state(s, NULL), TRITTER_ERR_NULL_POINTER, "state_out");
    CHECK_ERR(tritter_loss_scaler_state(NULL, NULL), TRITTER_ERR_NULL_POINTER, "scaler");
    tritter_loss_scaler_free(s);
    tritter_loss_scaler_free(NULL);

    tritter_loss_scaler_config_t bad;
    CHECK_OK(tritter_loss_scaler_config_default(&bad));
    bad.growth_interval = 0;
    CHECK_ERR(tritter_loss_scaler_new(&bad, &s), TRITTER_ERR_INVALID_ARGUMENT, "growth_interval");
    CHECK_OK(tritter_loss_scaler_config_default(&bad));
    bad.backoff_factor = 1.5f;
    CHECK_ERR(tritter_loss_scaler_new(&bad, &s), TRITTER_ERR_INVALID_ARGUMENT, "backoff_factor");
    CHECK_OK(tritter_loss_scaler_config_default(&bad));
    bad.init_scale = INFINITY;
    CHECK_ERR(tritter_loss_scaler_new(&bad, &s), TRITTER_ERR_INVALID_ARGUMENT, "init_scale");
    CHECK_OK(tritter_loss_scaler_config_default(&bad));
    bad.max_scale = 1.0f;
    CHECK_ERR(tritter_loss_scaler_new(&bad, &s), TRITTER_ERR_INVALID_ARGUMENT, "init_scale");
    CHECK_ERR(tritter_loss_scaler_new(NULL, NULL), TRITTER_ERR_NULL_POINTER, "scaler_out");
    CHECK_ERR(tritter_loss_scaler_config_default(NULL), TRITTER_ERR_NULL_POINTER, "config_out");
    /* NULL config = defaults; bounds clamp. */
    CHECK_OK(tritter_loss_scaler_new(NULL, &s));
    tritter_loss_scaler_free(s);
    CHECK_OK(tritter_loss_scaler_config_default(&cfg));
    cfg.init_scale = 4; cfg.min_scale = 2; cfg.max_scale = 8; cfg.growth_interval = 1;
    CHECK_OK(tritter_loss_scaler_new(&cfg, &s));
    float v;
    CHECK_OK(tritter_loss_scaler_update(s, false, &v)); CHECK(v == 8);
    CHECK_OK(tritter_loss_scaler_update(s, false, &v)); CHECK(v == 8);
    CHECK_OK(tritter_loss_scaler_update(s, true, &v)); CHECK(v == 4);
    CHECK_OK(tritter_loss_scaler_update(s, true, &v)); CHECK(v == 2);
    CHECK_OK(tritter_loss_scaler_update(s, true, &v)); CHECK(v == 2);
    tritter_loss_scaler_free(s);
}

int main(void) {
    test_widen_exhaustive();
    test_narrow_random(1);
    test_narrow_random(33);
    test_narrow_random(20000);
    test_stochastic();
    test_convert_errors();
    test_loss_scaler();
    CHECK_DONE("precision");
}
