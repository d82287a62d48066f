/* Ternary quantization, packing and matmul through the C ABI only:
 * results against a plain C reference, and every bad input against its status. */
#include <math.h>
#include <stdint.h>

#include "check.h"

static uint64_t rng_state = 0x1234567887654321ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* Reference: AbsMean per row, t = +1 iff w / (s + eps) > 0.5. */
static void ref_quantize_rows(const float *w, size_t rows, size_t cols, float eps, int8_t *t, float *s) {
    for (size_t r = 0; r < rows; r++) {
        double sum = 0;
        for (size_t c = 0; c < cols; c++) sum += fabs(w[r * cols + c]);
        s[r] = cols ? (float)(sum / (double)cols) : 0.0f;
        for (size_t c = 0; c < cols; c++) {
            float q = w[r * cols + c] / (s[r] + eps);
            t[r * cols + c] = (int8_t)((q > 0.5f) - (q < -0.5f));
        }
    }
}

static void test_quantize_pack_matmul(size_t rows, size_t cols, size_t batch) {
    size_t n = rows * cols;
    float *w = malloc((n ? n : 1) * sizeof(float));
    int8_t *t = malloc(n ? n : 1), *t_ref = malloc(n ? n : 1), *t_back = malloc(n ? n : 1);
    float *s = malloc((rows ? rows : 1) * sizeof(float)), *s_ref = malloc((rows ? rows : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) w[i] = frand();

    tritter_quant_config_t cfg;
    CHECK_OK(tritter_quant_config_default(&cfg));
    CHECK(cfg.method == TRITTER_QUANT_ABSMEAN && cfg.granularity == TRITTER_GRANULARITY_PER_ROW);
    CHECK_OK(tritter_quantize_f32(w, rows, cols, &cfg, t, n, s, rows));
    ref_quantize_rows(w, rows, cols, cfg.eps, t_ref, s_ref);
    size_t mismatches = 0;
    for (size_t r = 0; r < rows; r++) {
        CHECK(fabsf(s[r] - s_ref[r]) <= 1e-6f * (1.0f + s_ref[r]));
        for (size_t c = 0; c < cols; c++) {
            size_t i = r * cols + c;
            /* Values exactly at the 0.5 boundary may round either way with a 1-ulp scale difference. */
            if (t[i] != t_ref[i]) {
                mismatches++;
                CHECK(fabsf(fabsf(w[i] / (s[r] + cfg.eps)) - 0.5f) < 1e-5f);
            }
        }
    }
    CHECK(mismatches <= n / 1000 + 1);

    /* Pack both layouts, check the 2-bit codes by hand, unpack back. */
    for (uint32_t layout = 0; layout < 2; layout++) {
        size_t psize = 0;
        CHECK_OK(tritter_packed_size(rows, cols, layout, &psize));
        size_t per_byte = layout == TRITTER_LAYOUT_2BIT ? 4 : 5;
        CHECK(psize == rows * ((cols + per_byte - 1) / per_byte));
        uint8_t *p = malloc(psize ? psize : 1);
        CHECK_OK(tritter_pack(t, rows, cols, layout, p, psize));
        if (layout == TRITTER_LAYOUT_2BIT && rows && cols) {
            size_t rb = (cols + 3) / 4;
            for (size_t c = 0; c < cols; c++) {
                int code = (p[c / 4] >> (2 * (c % 4))) & 3;
                int want = t[c] == 0 ? 0 : (t[c] == 1 ? 1 : 2);
                CHECK(code == want);
            }
            (void)rb;
        }
        CHECK_OK(tritter_unpack(p, psize, rows, cols, layout, t_back, n));
        CHECK(n == 0 || memcmp(t, t_back, n) == 0);
        free(p);
    }

    /* Matrix handle: matmul against a double-precision reference. */
    tritter_ternary_matrix_t *m = NULL;
    CHECK_OK(tritter_ternary_matrix_from_f32(w, rows, cols, &cfg, &m));
    CHECK(m != NULL);
    tritter_matrix_info_t info;
    CHECK_OK(tritter_ternary_matrix_info(m, &info));
    CHECK(info.rows == rows && info.cols == cols && info.num_scales == rows);
    CHECK(info.packed_bytes_2bit == rows * ((cols + 3) / 4));
    size_t nx = batch * cols, ny = batch * rows;
    float *x = malloc((nx ? nx : 1) * sizeof(float));
    float *bias = malloc((rows ? rows : 1) * sizeof(float));
    float *y = malloc((ny ? ny : 1) * sizeof(float));
    for (size_t i = 0; i < batch * cols; i++) x[i] = frand();
    for (size_t i = 0; i < rows; i++) bias[i] = frand();
    CHECK_OK(tritter_ternary_matrix_to_ternary(m, t_back, n));
    for (size_t mode = 0; mode < 2; mode++) {
        CHECK_OK(tritter_ternary_matrix_matmul(m, x, batch, cols, bias, rows, (uint32_t)mode, y, batch * rows));
        for (size_t b = 0; b < batch; b++) {
            double amax = 0;
            for (size_t k = 0; k < cols; k++) amax = fmax(amax, fabs(x[b * cols + k]));
            for (size_t o = 0; o < rows; o++) {
                double acc = 0, absacc = 0;
                for (size_t k = 0; k < cols; k++) {
                    acc += (double)t_back[o * cols + k] * x[b * cols + k];
                    absacc += fabs(x[b * cols + k]);
                }
                double want = acc * s[o] + bias[o];
                /* f32 summation bound; int8 adds the activation rounding bound s * cols * amax / 254. */
                double tol = 1e-6 * (1 + cols) * (absacc * s[o] + 1);
                if (mode == TRITTER_ACT_INT8) tol += s[o] * (double)cols * amax / 254.0 * 1.001;
                CHECK(fabs(y[b * rows + o] - want) <= tol);
            }
        }
    }
    /* The base-3 kernel layout: int8 results are bit-identical, f32 within the bound. */
    tritter_ternary_matrix_t *m3 = NULL;
    CHECK_OK(tritter_ternary_matrix_with_compute_format(m, TRITTER_COMPUTE_BASE3, &m3));
    tritter_matrix_info_t info3;
    CHECK_OK(tritter_ternary_matrix_info(m3, &info3));
    CHECK(info3.compute_format == TRITTER_COMPUTE_BASE3 && info.compute_format == TRITTER_COMPUTE_2BIT);
    CHECK(info3.rows == rows && info3.cols == cols);
    {
        float *ya = malloc((ny ? ny : 1) * sizeof(float)), *yb = malloc((ny ? ny : 1) * sizeof(float));
        CHECK_OK(tritter_ternary_matrix_matmul(m, x, batch, cols, bias, rows, TRITTER_ACT_INT8, ya, ny));
        CHECK_OK(tritter_ternary_matrix_matmul(m3, x, batch, cols, bias, rows, TRITTER_ACT_INT8, yb, ny));
        CHECK(ny == 0 || memcmp(ya, yb, ny * sizeof(float)) == 0);
        free(ya);
        free(yb);
    }
    tritter_ternary_matrix_free(m3);

    /* Export and re-import both layouts: the same matrix, the same products. */
    float *y2 = malloc((ny ? ny : 1) * sizeof(float));
    CHECK_OK(tritter_ternary_matrix_matmul(m, x, batch, cols, NULL, 0, TRITTER_ACT_F32, y, batch * rows));
    for (uint32_t layout = 0; layout < 2; layout++) {
        size_t psize = layout == 0 ? info.packed_bytes_2bit : info.packed_bytes_base3;
        uint8_t *p = malloc(psize ? psize : 1);
        CHECK_OK(tritter_ternary_matrix_export_packed(m, layout, p, psize));
        CHECK_OK(tritter_ternary_matrix_scales(m, s_ref, rows));
        tritter_ternary_matrix_t *m2 = NULL;
        CHECK_OK(tritter_ternary_matrix_from_packed(p, psize, rows, cols, layout, s_ref, rows,
                                                    TRITTER_GRANULARITY_PER_ROW, 0, &m2));
        CHECK_OK(tritter_ternary_matrix_matmul(m2, x, batch, cols, NULL, 0, TRITTER_ACT_F32, y2, batch * rows));
        CHECK(batch * rows == 0 || memcmp(y, y2, batch * rows * sizeof(float)) == 0);
        tritter_ternary_matrix_free(m2);
        free(p);
    }
    /* Dequantized weights are t * s. */
    float *wd = malloc((n ? n : 1) * sizeof(float));
    CHECK_OK(tritter_ternary_matrix_to_f32(m, wd, n));
    for (size_t i = 0; i < n; i++) CHECK(wd[i] == (float)t_back[i] * s[i / (cols ? cols : 1)]);
    tritter_ternary_matrix_free(m);
    free(w); free(t); free(t_ref); free(t_back); free(s); free(s_ref); free(x); free(bias); free(y); free(y2); free(wd);
}

static void test_per_group_and_ternary_import(void) {
    /* 2 x 10 with groups of 4: scales [2, 3]. */
    const int8_t t[20] = {1, -1, 0, 1, 0, 0, -1, 1, 1, 1, /**/ -1, 0, 0, 0, 1, 1, 1, 1, 0, -1};
    const float sc[6] = {0.5f, 2.0f, 1.0f, 3.0f, 0.25f, 4.0f};
    size_t ns = 0;
    CHECK_OK(tritter_num_scales(TRITTER_GRANULARITY_PER_GROUP, 4, 2, 10, &ns));
    CHECK(ns == 6);
    tritter_ternary_matrix_t *m = NULL;
    CHECK_OK(tritter_ternary_matrix_from_ternary(t, 2, 10, sc, 6, TRITTER_GRANULARITY_PER_GROUP, 4, &m));
    const float x[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    float y[2];
    CHECK_OK(tritter_ternary_matrix_matmul(m, x, 1, 10, NULL, 0, TRITTER_ACT_F32, y, 2));
    /* row 0: g0 = 1-2+4 = 3 (*0.5), g1 = -7+8 = 1 (*2), g2 = 9+10 = 19 (*1) -> 1.5 + 2 + 19 */
    CHECK(y[0] == 22.5f);
    /* row 1: g0 = -1 (*3), g1 = 5+6+7+8 = 26 (*0.25), g2 = -10 (*4) -> -3 + 6.5 - 40 */
    CHECK(y[1] == -36.5f);
    tritter_matrix_info_t info;
    CHECK_OK(tritter_ternary_matrix_info(m, &info));
    CHECK(info.granularity == TRITTER_GRANULARITY_PER_GROUP && info.group_size == 4 && info.groups_per_row == 3);
    tritter_ternary_matrix_free(m);

    /* The quantizer keeps one scale per group (never averaged away). */
    const float w[8] = {10, -10, 10, -10, 0.1f, -0.1f, 0.1f, 0.1f};
    tritter_quant_config_t cfg;
    CHECK_OK(tritter_quant_config_default(&cfg));
    cfg.granularity = TRITTER_GRANULARITY_PER_GROUP;
    cfg.group_size = 4;
    int8_t tq[8];
    float s2[2];
    CHECK_OK(tritter_quantize_f32(w, 1, 8, &cfg, tq, 8, s2, 2));
    CHECK(s2[0] == 10.0f && fabsf(s2[1] - 0.1f) < 1e-7f);
    for (int i = 0; i < 8; i++) CHECK(tq[i] == (w[i] > 0 ? 1 : -1));
    /* Threshold: |w| <= f * s -> 0. */
    cfg.granularity = TRITTER_GRANULARITY_PER_TENSOR;
    cfg.method = TRITTER_QUANT_ABSMAX;
    cfg.use_threshold = true;
    cfg.threshold_factor = 0.05f;
    float s1;
    CHECK_OK(tritter_quantize_f32(w, 1, 8, &cfg, tq, 8, &s1, 1));
    CHECK(s1 == 10.0f);
    for (int i = 4; i < 8; i++) CHECK(tq[i] == 0);
}

static void test_activations(void) {
    const float x[8] = {0.0f, 1.0f, -2.0f, 0.5f, 0, 0, 0, 0};
    int8_t q[8];
    float s[2];
    CHECK_OK(tritter_quantize_activations_i8(x, 2, 4, q, 8, s, 2));
    CHECK(s[0] == 63.5f);
    CHECK(q[0] == 0 && q[1] == 64 && q[2] == -127 && q[3] == 32);
    CHECK(q[4] == 0 && q[7] == 0);
    CHECK_ERR(tritter_quantize_activations_i8(x, 2, 4, q, 7, s, 2), TRITTER_ERR_BUFFER_TOO_SMALL, "q_out");
    CHECK_ERR(tritter_quantize_activations_i8(NULL, 2, 4, q, 8, s, 2), TRITTER_ERR_NULL_POINTER, "x");
}

static void test_dlpack(void) {
    float w[12];
    for (int i = 0; i < 12; i++) w[i] = frand();
    int64_t wshape[2] = {3, 4};
    tritter_dl_tensor_t wt = {w, {TRITTER_DL_CPU, 0}, 2, {TRITTER_DL_FLOAT, 32, 1}, wshape, NULL, 0};
    tritter_ternary_matrix_t *m = NULL;
    CHECK_OK(tritter_ternary_matrix_from_dlpack(&wt, NULL, &m));
    /* x: a strided view (every other column of a 2 x 8 buffer). */
    float xbuf[16];
    for (int i = 0; i < 16; i++) xbuf[i] = frand();
    int64_t xshape[2] = {2, 4}, xstrides[2] = {8, 2};
    tritter_dl_tensor_t xt = {xbuf, {TRITTER_DL_CPU, 0}, 2, {TRITTER_DL_FLOAT, 32, 1}, xshape, xstrides, 0};
    float y[6], ycont[6], xc[8];
    int64_t yshape[2] = {2, 3};
    tritter_dl_tensor_t yt = {y, {TRITTER_DL_CPU, 0}, 2, {TRITTER_DL_FLOAT, 32, 1}, yshape, NULL, 0};
    CHECK_OK(tritter_ternary_matrix_matmul_dlpack(m, &xt, NULL, TRITTER_ACT_F32, &yt));
    for (int b = 0; b < 2; b++)
        for (int k = 0; k < 4; k++) xc[b * 4 + k] = xbuf[b * 8 + 2 * k];
    CHECK_OK(tritter_ternary_matrix_matmul(m, xc, 2, 4, NULL, 0, TRITTER_ACT_F32, ycont, 6));
    CHECK(memcmp(y, ycont, sizeof y) == 0);

    /* Wrong dtype, device, ndim, shape, misalignment, NULL data, negative stride, aliasing output. */
    tritter_dl_tensor_t bad = xt;
    bad.dtype.bits = 64;
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &bad, NULL, 0, &yt), TRITTER_ERR_UNSUPPORTED_DTYPE, "x");
    bad = xt;
    bad.device.device_type = TRITTER_DL_CUDA;
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &bad, NULL, 0, &yt), TRITTER_ERR_CUDA_UNAVAILABLE, "x");
    bad.device.device_type = 7; /* Vulkan */
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &bad, NULL, 0, &yt), TRITTER_ERR_UNSUPPORTED_DEVICE, "x");
    bad = xt;
    bad.ndim = 1;
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &bad, NULL, 0, &yt), TRITTER_ERR_SHAPE_MISMATCH, "x");
    bad = xt;
    bad.byte_offset = 2;
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &bad, NULL, 0, &yt), TRITTER_ERR_INVALID_ARGUMENT, "x");
    bad = xt;
    bad.data = NULL;
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &bad, NULL, 0, &yt), TRITTER_ERR_NULL_POINTER, "x");
    int64_t negstrides[2] = {8, -2};
    bad = xt;
    bad.strides = negstrides;
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &bad, NULL, 0, &yt), TRITTER_ERR_INVALID_ARGUMENT, "x");
    int64_t hugeshape[2] = {INT64_MAX, 4};
    bad = xt;
    bad.shape = hugeshape;
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &bad, NULL, 0, &yt), TRITTER_ERR_SIZE_OVERFLOW, "x");
    int64_t zerostride[2] = {0, 1};
    tritter_dl_tensor_t ybad = yt;
    ybad.strides = zerostride;
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &xt, NULL, 0, &ybad), TRITTER_ERR_INVALID_ARGUMENT, "y");
    int64_t yshape_bad[2] = {2, 4};
    ybad = yt;
    ybad.shape = yshape_bad;
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &xt, NULL, 0, &ybad), TRITTER_ERR_SHAPE_MISMATCH, "y");
    float bias[2];
    int64_t bshape[1] = {2};
    tritter_dl_tensor_t bt = {bias, {TRITTER_DL_CPU, 0}, 1, {TRITTER_DL_FLOAT, 32, 1}, bshape, NULL, 0};
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &xt, &bt, 0, &yt), TRITTER_ERR_SHAPE_MISMATCH, "bias");
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, NULL, NULL, 0, &yt), TRITTER_ERR_NULL_POINTER, "x");
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &xt, NULL, 0, NULL), TRITTER_ERR_NULL_POINTER, "y");
    CHECK_ERR(tritter_ternary_matrix_from_dlpack(NULL, NULL, &m), TRITTER_ERR_NULL_POINTER, "weights");
    tritter_ternary_matrix_free(m);
}

static void test_bad_input(void) {
    float w[8] = {1, -1, 0.5f, 0, 1, 1, -1, 0};
    int8_t t[8];
    float s[2];
    uint8_t p[4];
    tritter_ternary_matrix_t *m = NULL;
    tritter_quant_config_t cfg;
    CHECK_OK(tritter_quant_config_default(&cfg));

    CHECK_ERR(tritter_quant_config_default(NULL), TRITTER_ERR_NULL_POINTER, "config_out");
    CHECK_ERR(tritter_quantize_f32(NULL, 2, 4, &cfg, t, 8, s, 2), TRITTER_ERR_NULL_POINTER, "weights");
    CHECK_ERR(tritter_quantize_f32(w, 2, 4, &cfg, NULL, 8, s, 2), TRITTER_ERR_NULL_POINTER, "ternary_out");
    CHECK_ERR(tritter_quantize_f32(w, 2, 4, &cfg, t, 7, s, 2), TRITTER_ERR_BUFFER_TOO_SMALL, "ternary_out");
    CHECK_ERR(tritter_quantize_f32(w, 2, 4, &cfg, t, 8, s, 1), TRITTER_ERR_BUFFER_TOO_SMALL, "scales_out");
    CHECK_ERR(tritter_quantize_f32(w, SIZE_MAX, 2, &cfg, t, 8, s, 2), TRITTER_ERR_SIZE_OVERFLOW, "rows");
    CHECK_ERR(tritter_quantize_f32(w, (size_t)1 << 62, 1, &cfg, t, 8, s, 2), TRITTER_ERR_SIZE_OVERFLOW, "rows");
    w[3] = NAN;
    CHECK_ERR(tritter_quantize_f32(w, 2, 4, &cfg, t, 8, s, 2), TRITTER_ERR_NON_FINITE, "weights");
    CHECK_ERR(tritter_ternary_matrix_from_f32(w, 2, 4, &cfg, &m), TRITTER_ERR_NON_FINITE, "weights");
    w[3] = INFINITY;
    CHECK_ERR(tritter_ternary_matrix_from_f32(w, 2, 4, &cfg, &m), TRITTER_ERR_NON_FINITE, "weights");
    w[3] = 0;
    CHECK(m == NULL);

    tritter_quant_config_t bad = cfg;
    bad.method = 7;
    CHECK_ERR(tritter_quantize_f32(w, 2, 4, &bad, t, 8, s, 2), TRITTER_ERR_INVALID_ARGUMENT, "method");
    bad = cfg;
    bad.granularity = 9;
    CHECK_ERR(tritter_quantize_f32(w, 2, 4, &bad, t, 8, s, 2), TRITTER_ERR_INVALID_ARGUMENT, "granularity");
    bad = cfg;
    bad.granularity = TRITTER_GRANULARITY_PER_GROUP;
    bad.group_size = 0;
    CHECK_ERR(tritter_quantize_f32(w, 2, 4, &bad, t, 8, s, 2), TRITTER_ERR_INVALID_ARGUMENT, "group_size");
    bad = cfg;
    bad.eps = NAN;
    CHECK_ERR(tritter_quantize_f32(w, 2, 4, &bad, t, 8, s, 2), TRITTER_ERR_INVALID_ARGUMENT, "eps");
    bad = cfg;
    bad.use_threshold = true;
    bad.threshold_factor = -1;
    CHECK_ERR(tritter_quantize_f32(w, 2, 4, &bad, t, 8, s, 2), TRITTER_ERR_INVALID_ARGUMENT, "threshold_factor");

    /* Zero sizes are valid and produce empty results; (NULL, 0) is an empty buffer. */
    CHECK_OK(tritter_quantize_f32(NULL, 0, 4, &cfg, NULL, 0, NULL, 0));
    CHECK_OK(tritter_ternary_matrix_from_f32(NULL, 0, 0, NULL, &m));
    CHECK_OK(tritter_ternary_matrix_matmul(m, NULL, 0, 0, NULL, 0, TRITTER_ACT_F32, NULL, 0));
    tritter_ternary_matrix_free(m);
    m = NULL;

    /* Packing. */
    const int8_t badtrit[4] = {0, 1, 2, -1};
    CHECK_ERR(tritter_pack(badtrit, 1, 4, TRITTER_LAYOUT_2BIT, p, 4), TRITTER_ERR_INVALID_ARGUMENT, "ternary");
    CHECK_ERR(tritter_pack(t, 1, 4, 5, p, 4), TRITTER_ERR_INVALID_ARGUMENT, "layout");
    CHECK_ERR(tritter_pack(t, 2, 8, TRITTER_LAYOUT_2BIT, p, 3), TRITTER_ERR_BUFFER_TOO_SMALL, "packed_out");
    size_t sz;
    CHECK_ERR(tritter_packed_size(SIZE_MAX, SIZE_MAX, 0, &sz), TRITTER_ERR_SIZE_OVERFLOW, "rows");
    CHECK_ERR(tritter_packed_size(1, 1, 0, NULL), TRITTER_ERR_NULL_POINTER, "size_out");
    /* Corrupt bytes: code 11, non-zero padding, byte > 242 in base 3, wrong length. */
    uint8_t corrupt[2] = {0x03, 0x00};
    CHECK_ERR(tritter_unpack(corrupt, 1, 1, 4, TRITTER_LAYOUT_2BIT, t, 8), TRITTER_ERR_INVALID_DATA, "packed");
    corrupt[0] = 0x40; /* a code in the padding of a 3-wide row */
    CHECK_ERR(tritter_unpack(corrupt, 1, 1, 3, TRITTER_LAYOUT_2BIT, t, 8), TRITTER_ERR_INVALID_DATA, "packed");
    corrupt[0] = 243;
    CHECK_ERR(tritter_unpack(corrupt, 1, 1, 5, TRITTER_LAYOUT_BASE3, t, 8), TRITTER_ERR_INVALID_DATA, "packed");
    CHECK_ERR(tritter_unpack(corrupt, 2, 1, 4, TRITTER_LAYOUT_2BIT, t, 8), TRITTER_ERR_SHAPE_MISMATCH, "packed");
    corrupt[0] = 0xFF;
    float one = 1.0f;
    CHECK_ERR(tritter_ternary_matrix_from_packed(corrupt, 1, 1, 4, TRITTER_LAYOUT_2BIT, &one, 1, TRITTER_GRANULARITY_PER_ROW, 0, &m),
              TRITTER_ERR_INVALID_DATA, "packed");
    CHECK(m == NULL);

    /* Matrix creation and use. */
    CHECK_ERR(tritter_ternary_matrix_from_f32(w, 2, 4, &cfg, NULL), TRITTER_ERR_NULL_POINTER, "matrix_out");
    const int8_t tt[8] = {1, 0, -1, 1, 0, 0, 1, -1};
    const float sc[2] = {1, 2};
    CHECK_ERR(tritter_ternary_matrix_from_ternary(tt, 2, 4, sc, 1, TRITTER_GRANULARITY_PER_ROW, 0, &m), TRITTER_ERR_SHAPE_MISMATCH, "scales");
    const float scnan[2] = {1, NAN};
    CHECK_ERR(tritter_ternary_matrix_from_ternary(tt, 2, 4, scnan, 2, TRITTER_GRANULARITY_PER_ROW, 0, &m), TRITTER_ERR_NON_FINITE, "scales");
    CHECK_ERR(tritter_ternary_matrix_from_ternary(badtrit, 1, 4, sc, 1, TRITTER_GRANULARITY_PER_TENSOR, 0, &m), TRITTER_ERR_INVALID_ARGUMENT, "ternary");
    CHECK_OK(tritter_ternary_matrix_from_ternary(tt, 2, 4, sc, 2, TRITTER_GRANULARITY_PER_ROW, 0, &m));
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, y[4], bias[2] = {0, 0};
    CHECK_ERR(tritter_ternary_matrix_matmul(NULL, x, 1, 4, NULL, 0, 0, y, 2), TRITTER_ERR_NULL_POINTER, "matrix");
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 1, 3, NULL, 0, 0, y, 2), TRITTER_ERR_SHAPE_MISMATCH, "in_features");
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 1, 4, bias, 3, 0, y, 2), TRITTER_ERR_SHAPE_MISMATCH, "bias_len");
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 1, 4, NULL, 2, 0, y, 2), TRITTER_ERR_NULL_POINTER, "bias");
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 2, 4, NULL, 0, 0, y, 3), TRITTER_ERR_BUFFER_TOO_SMALL, "y_out");
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 1, 4, NULL, 0, 2, y, 2), TRITTER_ERR_INVALID_ARGUMENT, "act_mode");
    CHECK_ERR(tritter_ternary_matrix_matmul(m, NULL, 1, 4, NULL, 0, 0, y, 2), TRITTER_ERR_NULL_POINTER, "x");
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, SIZE_MAX / 2, 4, NULL, 0, 0, y, 2), TRITTER_ERR_SIZE_OVERFLOW, "batch");
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x + 1, 1, 4, NULL, 0, 0, (float *)((char *)y + 1), 2), TRITTER_ERR_INVALID_ARGUMENT, "y_out");
    x[2] = NAN;
    CHECK_ERR(tritter_ternary_matrix_matmul(m, x, 1, 4, NULL, 0, 0, y, 2), TRITTER_ERR_NON_FINITE, "x");
    CHECK_ERR(tritter_ternary_matrix_export_packed(m, 0, p, 1), TRITTER_ERR_BUFFER_TOO_SMALL, "packed_out");
    CHECK_ERR(tritter_ternary_matrix_scales(m, s, 1), TRITTER_ERR_BUFFER_TOO_SMALL, "scales_out");
    CHECK_ERR(tritter_ternary_matrix_to_f32(m, y, 4), TRITTER_ERR_BUFFER_TOO_SMALL, "weights_out");
    CHECK_ERR(tritter_ternary_matrix_to_ternary(m, t, 7), TRITTER_ERR_BUFFER_TOO_SMALL, "ternary_out");
    CHECK_ERR(tritter_ternary_matrix_info(m, NULL), TRITTER_ERR_NULL_POINTER, "info_out");
    CHECK_ERR(tritter_ternary_matrix_info(NULL, NULL), TRITTER_ERR_NULL_POINTER, "matrix");
    tritter_ternary_matrix_t *m2 = NULL;
    CHECK_ERR(tritter_ternary_matrix_with_compute_format(m, 2, &m2), TRITTER_ERR_INVALID_ARGUMENT, "compute_format");
    CHECK_ERR(tritter_ternary_matrix_with_compute_format(NULL, 0, &m2), TRITTER_ERR_NULL_POINTER, "matrix");
    CHECK_ERR(tritter_ternary_matrix_with_compute_format(m, 0, NULL), TRITTER_ERR_NULL_POINTER, "matrix_out");
    CHECK(m2 == NULL);
    tritter_ternary_matrix_free(m);
    tritter_ternary_matrix_free(NULL); /* no-op */
}

static void test_runtime(void) {
    CHECK(tritter_abi_version() == TRITTER_ABI_VERSION);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TRITTER_VERSION_MAJOR, TRITTER_VERSION_MINOR, TRITTER_VERSION_PATCH);
    CHECK(strcmp(tritter_version(), want) == 0);
    CHECK(strcmp(tritter_status_name(TRITTER_ERR_INVALID_DATA), "TRITTER_ERR_INVALID_DATA") == 0);
    CHECK(strcmp(tritter_status_name(12345), "TRITTER_UNKNOWN_STATUS") == 0);
    CHECK(!tritter_cuda_available());
    size_t nt = 0;
    CHECK_OK(tritter_set_num_threads(1));
    CHECK_OK(tritter_get_num_threads(&nt));
    CHECK(nt == 1);
    CHECK_OK(tritter_set_num_threads(0));
    CHECK_ERR(tritter_set_num_threads(100000), TRITTER_ERR_INVALID_ARGUMENT, "num_threads");
    CHECK_ERR(tritter_get_num_threads(NULL), TRITTER_ERR_NULL_POINTER, "num_threads_out");
}

int main(void) {
    test_runtime();
    const size_t dims[] = {1, 3, 4, 5, 31, 33, 257};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        for (size_t j = 0; j < sizeof dims / sizeof *dims; j++)
            test_quantize_pack_matmul(dims[i], dims[j], 1 + (i + j) % 4);
    test_quantize_pack_matmul(0, 5, 2);
    test_quantize_pack_matmul(5, 0, 2);
    test_quantize_pack_matmul(3, 7, 0);
    test_per_group_and_ternary_import();
    test_activations();
    test_dlpack();
    test_bad_input();
    CHECK_DONE("ternary.c");
}
