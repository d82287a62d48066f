/* The training-path exports through the C ABI only: quantize straight into
 * 2-bit bytes, y = x W^T + b and dx = dy W on packed weights (f32 and bf16),
 * the transposed product of a matrix handle; results against a plain C
 * reference, every bad input against its status. */
#include <math.h>
#include <stdint.h>

#include "check.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static uint16_t to_bf16(float f) { /* round to nearest even (finite inputs) */
    uint32_t b;
    memcpy(&b, &f, 4);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
static float from_bf16(uint16_t h) {
    uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static tritter_dl_tensor_t dl2(void *data, int64_t *shape, uint8_t code, uint8_t bits) {
    tritter_dl_tensor_t t = {data, {TRITTER_DL_CPU, 0}, 2, {code, bits, 1}, shape, NULL, 0};
    return t;
}

/* trit of canonical 2-bit code at (r, k) */
static int trit(const uint8_t *p, size_t rb, size_t r, size_t k) {
    int c = (p[r * rb + k / 4] >> (2 * (k % 4))) & 3;
    return c == 1 ? 1 : (c == 2 ? -1 : 0);
}

static float scale_of(const float *s, uint32_t gran, size_t gs, size_t cols, size_t r, size_t k) {
    if (gran == TRITTER_GRANULARITY_PER_TENSOR) return s[0];
    if (gran == TRITTER_GRANULARITY_PER_ROW) return s[r];
    size_t ng = (cols + gs - 1) / gs;
    return s[r * ng + k / gs];
}

static void run_case(size_t rows, size_t cols, size_t batch, uint32_t gran, size_t gs, int threshold) {
    size_t n = rows * cols, rb = (cols + 3) / 4;
    float *w = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) w[i] = frand();
    tritter_quant_config_t cfg;
    CHECK_OK(tritter_quant_config_default(&cfg));
    cfg.granularity = gran;
    cfg.group_size = gs;
    if (threshold) {
        cfg.method = TRITTER_QUANT_ABSMAX;
        cfg.use_threshold = true;
        cfg.threshold_factor = 0.05f;
    }
    size_t ns = 0;
    CHECK_OK(tritter_num_scales(gran, gs, rows, cols, &ns));
    size_t srows = gran == TRITTER_GRANULARITY_PER_TENSOR ? 1 : rows;
    size_t sg = gran == TRITTER_GRANULARITY_PER_TENSOR ? 1 : (rows ? ns / rows : 1);

    /* quantize + pack in one call == quantize then pack */
    uint8_t *p = malloc(rows * rb + 1), *p_ref = malloc(rows * rb + 1);
    float *s = malloc((ns ? ns : 1) * sizeof(float)), *s_ref = malloc((ns ? ns : 1) * sizeof(float));
    int8_t *t = malloc(n ? n : 1);
    int64_t wshape[2] = {(int64_t)rows, (int64_t)cols}, pshape[2] = {(int64_t)rows, (int64_t)rb};
    int64_t sshape[2] = {(int64_t)srows, (int64_t)sg};
    tritter_dl_tensor_t wt = dl2(w, wshape, TRITTER_DL_FLOAT, 32);
    tritter_dl_tensor_t pt = dl2(p, pshape, TRITTER_DL_UINT, 8);
    tritter_dl_tensor_t st = dl2(s, sshape, TRITTER_DL_FLOAT, 32);
    CHECK_OK(tritter_quantize_pack_2bit_dlpack(&wt, &cfg, &pt, &st));
    CHECK_OK(tritter_quantize_f32(w, rows, cols, &cfg, t, n, s_ref, ns));
    CHECK_OK(tritter_pack(t, rows, cols, TRITTER_LAYOUT_2BIT, p_ref, rows * rb));
    CHECK(rows * rb == 0 || memcmp(p, p_ref, rows * rb) == 0);
    CHECK(ns == 0 || memcmp(s, s_ref, ns * sizeof(float)) == 0);

    /* y = x W^T + b, f32 and bf16, and dx = dy W */
    float *x = malloc((batch * cols + 1) * sizeof(float)), *y = malloc((batch * rows + 1) * sizeof(float));
    float *bias = malloc((rows + 1) * sizeof(float)), *dy = malloc((batch * rows + 1) * sizeof(float));
    float *dx = malloc((batch * cols + 1) * sizeof(float)), *dx2 = malloc((batch * cols + 1) * sizeof(float));
    uint16_t *xb = malloc((batch * cols + 1) * 2), *yb = malloc((batch * rows + 1) * 2);
    for (size_t i = 0; i < batch * cols; i++) {
        x[i] = frand();
        xb[i] = to_bf16(x[i]);
    }
    for (size_t i = 0; i < rows; i++) bias[i] = frand();
    for (size_t i = 0; i < batch * rows; i++) dy[i] = frand();
    int64_t xshape[2] = {(int64_t)batch, (int64_t)cols}, yshape[2] = {(int64_t)batch, (int64_t)rows};
    int64_t bshape[1] = {(int64_t)rows};
    tritter_dl_tensor_t xt = dl2(x, xshape, TRITTER_DL_FLOAT, 32), yt = dl2(y, yshape, TRITTER_DL_FLOAT, 32);
    tritter_dl_tensor_t xbt = dl2(xb, xshape, TRITTER_DL_BFLOAT, 16), ybt = dl2(yb, yshape, TRITTER_DL_BFLOAT, 16);
    tritter_dl_tensor_t bt = {bias, {TRITTER_DL_CPU, 0}, 1, {TRITTER_DL_FLOAT, 32, 1}, bshape, NULL, 0};
    tritter_dl_tensor_t dyt = dl2(dy, yshape, TRITTER_DL_FLOAT, 32), dxt = dl2(dx, xshape, TRITTER_DL_FLOAT, 32);
    CHECK_OK(tritter_ternary_linear_dlpack(&pt, cols, &st, gran, gs, &xt, &bt, TRITTER_ACT_F32, &yt));
    CHECK_OK(tritter_ternary_linear_dlpack(&pt, cols, &st, gran, gs, &xbt, &bt, TRITTER_ACT_F32, &ybt));
    CHECK_OK(tritter_ternary_linear_grad_input_dlpack(&pt, cols, &st, gran, gs, &dyt, &dxt));
    for (size_t b = 0; b < batch; b++) {
        for (size_t r = 0; r < rows; r++) {
            double want = bias[r], wantb = bias[r], mag = fabs(bias[r]);
            for (size_t k = 0; k < cols; k++) {
                double wq = trit(p, rb, r, k) * (double)scale_of(s, gran, gs, cols, r, k);
                want += wq * x[b * cols + k];
                wantb += wq * from_bf16(xb[b * cols + k]);
                mag += fabs(wq * x[b * cols + k]);
            }
            double bound = (cols + 2) * ldexp(mag, -24) * 1.001 + 1e-30;
            CHECK(fabs(y[b * rows + r] - want) <= bound);
            CHECK(fabs(from_bf16(yb[b * rows + r]) - wantb) <= bound + fabs(wantb) / 256.0 + 1e-30);
        }
        for (size_t k = 0; k < cols; k++) {
            double want = 0, mag = 0;
            for (size_t r = 0; r < rows; r++) {
                double wq = trit(p, rb, r, k) * (double)scale_of(s, gran, gs, cols, r, k);
                want += dy[b * rows + r] * wq;
                mag += fabs(dy[b * rows + r] * wq);
            }
            CHECK(fabs(dx[b * cols + k] - want) <= (rows + 2) * ldexp(mag, -24) * 1.001 + 1e-30);
        }
    }
    /* the same transposed product through a matrix handle */
    tritter_ternary_matrix_t *m = NULL;
    CHECK_OK(tritter_ternary_matrix_from_packed(p, rows * rb, rows, cols, TRITTER_LAYOUT_2BIT, s, ns, gran, gs, &m));
    tritter_dl_tensor_t dx2t = dl2(dx2, xshape, TRITTER_DL_FLOAT, 32);
    CHECK_OK(tritter_ternary_matrix_matmul_t_dlpack(m, &dyt, &dx2t));
    for (size_t i = 0; i < batch * cols; i++) CHECK(dx2[i] == dx[i]);
    tritter_ternary_matrix_free(m);

    free(w), free(p), free(p_ref), free(s), free(s_ref), free(t), free(x), free(y), free(bias), free(dy);
    free(dx), free(dx2), free(xb), free(yb);
}

static void test_bad_inputs(void) {
    enum { R = 6, C = 10, B = 3, RB = (C + 3) / 4 };
    float w[R * C], x[B * C], y[B * R], s[R], dy[B * R], dx[B * C];
    uint8_t p[R * RB];
    for (int i = 0; i < R * C; i++) w[i] = frand();
    for (int i = 0; i < B * C; i++) x[i] = frand();
    for (int i = 0; i < B * R; i++) dy[i] = frand();
    int64_t wshape[2] = {R, C}, pshape[2] = {R, RB}, sshape[2] = {R, 1}, xshape[2] = {B, C}, yshape[2] = {B, R};
    tritter_dl_tensor_t wt = dl2(w, wshape, TRITTER_DL_FLOAT, 32), pt = dl2(p, pshape, TRITTER_DL_UINT, 8);
    tritter_dl_tensor_t st = dl2(s, sshape, TRITTER_DL_FLOAT, 32), xt = dl2(x, xshape, TRITTER_DL_FLOAT, 32);
    tritter_dl_tensor_t yt = dl2(y, yshape, TRITTER_DL_FLOAT, 32), dyt = dl2(dy, yshape, TRITTER_DL_FLOAT, 32);
    tritter_dl_tensor_t dxt = dl2(dx, xshape, TRITTER_DL_FLOAT, 32);
    const uint32_t ROW = TRITTER_GRANULARITY_PER_ROW;
    CHECK_OK(tritter_quantize_pack_2bit_dlpack(&wt, NULL, &pt, &st));

    /* quantize_pack: NULLs, shapes, dtypes, non-finite weights, bad config */
    CHECK_ERR(tritter_quantize_pack_2bit_dlpack(NULL, NULL, &pt, &st), TRITTER_ERR_NULL_POINTER, "weights");
    CHECK_ERR(tritter_quantize_pack_2bit_dlpack(&wt, NULL, NULL, &st), TRITTER_ERR_NULL_POINTER, "packed_out");
    CHECK_ERR(tritter_quantize_pack_2bit_dlpack(&wt, NULL, &pt, NULL), TRITTER_ERR_NULL_POINTER, "scales_out");
    tritter_dl_tensor_t bad = st;
    int64_t sshape_bad[2] = {1, 1};
    bad.shape = sshape_bad;
    CHECK_ERR(tritter_quantize_pack_2bit_dlpack(&wt, NULL, &pt, &bad), TRITTER_ERR_SHAPE_MISMATCH, "scales_out");
    bad = pt;
    int64_t pshape_bad[2] = {R, RB + 1};
    bad.shape = pshape_bad;
    CHECK_ERR(tritter_quantize_pack_2bit_dlpack(&wt, NULL, &bad, &st), TRITTER_ERR_SHAPE_MISMATCH, "packed_out");
    bad = wt;
    bad.dtype.bits = 64;
    CHECK_ERR(tritter_quantize_pack_2bit_dlpack(&bad, NULL, &pt, &st), TRITTER_ERR_UNSUPPORTED_DTYPE, "weights");
    float wnan[R * C];
    memcpy(wnan, w, sizeof w);
    wnan[17] = NAN;
    tritter_dl_tensor_t wnt = dl2(wnan, wshape, TRITTER_DL_FLOAT, 32);
    CHECK_ERR(tritter_quantize_pack_2bit_dlpack(&wnt, NULL, &pt, &st), TRITTER_ERR_NON_FINITE, "weights");
    tritter_quant_config_t cfg;
    CHECK_OK(tritter_quant_config_default(&cfg));
    cfg.granularity = 9;
    CHECK_ERR(tritter_quantize_pack_2bit_dlpack(&wt, &cfg, &pt, &st), TRITTER_ERR_INVALID_ARGUMENT, "granularity");
    CHECK_OK(tritter_quantize_pack_2bit_dlpack(&wt, NULL, &pt, &st));

    /* linear: every argument */
    CHECK_ERR(tritter_ternary_linear_dlpack(NULL, C, &st, ROW, 0, &xt, NULL, 0, &yt), TRITTER_ERR_NULL_POINTER, "packed");
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, NULL, ROW, 0, &xt, NULL, 0, &yt), TRITTER_ERR_NULL_POINTER, "scales");
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, ROW, 0, NULL, NULL, 0, &yt), TRITTER_ERR_NULL_POINTER, "x");
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, ROW, 0, &xt, NULL, 0, NULL), TRITTER_ERR_NULL_POINTER, "y");
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C + 4, &st, ROW, 0, &xt, NULL, 0, &yt), TRITTER_ERR_SHAPE_MISMATCH, "packed");
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, 7, 0, &xt, NULL, 0, &yt), TRITTER_ERR_INVALID_ARGUMENT, "granularity");
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, TRITTER_GRANULARITY_PER_GROUP, 0, &xt, NULL, 0, &yt),
              TRITTER_ERR_INVALID_ARGUMENT, "group_size");
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, TRITTER_GRANULARITY_PER_TENSOR, 0, &xt, NULL, 0, &yt),
              TRITTER_ERR_SHAPE_MISMATCH, "scales");
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, ROW, 0, &xt, NULL, 5, &yt), TRITTER_ERR_INVALID_ARGUMENT, "act_mode");
    bad = xt;
    bad.dtype.code = TRITTER_DL_INT;
    bad.dtype.bits = 8;
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, ROW, 0, &bad, NULL, 0, &yt), TRITTER_ERR_UNSUPPORTED_DTYPE, "x");
    bad = xt;
    bad.device.device_type = TRITTER_DL_CUDA;
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, ROW, 0, &bad, NULL, 0, &yt), TRITTER_ERR_CUDA_UNAVAILABLE, "x");
    bad = yt;
    int64_t yshape_bad[2] = {B, R + 1};
    bad.shape = yshape_bad;
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, ROW, 0, &xt, NULL, 0, &bad), TRITTER_ERR_SHAPE_MISMATCH, "y");
    float bias[R + 1];
    int64_t bshape[1] = {R + 1};
    tritter_dl_tensor_t bt = {bias, {TRITTER_DL_CPU, 0}, 1, {TRITTER_DL_FLOAT, 32, 1}, bshape, NULL, 0};
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, ROW, 0, &xt, &bt, 0, &yt), TRITTER_ERR_SHAPE_MISMATCH, "bias");
    /* packed must be row-major contiguous */
    bad = pt;
    int64_t pstrides[2] = {1, R};
    bad.strides = pstrides;
    CHECK_ERR(tritter_ternary_linear_dlpack(&bad, C, &st, ROW, 0, &xt, NULL, 0, &yt), TRITTER_ERR_INVALID_ARGUMENT, "packed");
    /* an invalid code 11 anywhere: invalid data, both products */
    uint8_t pc[R * RB];
    memcpy(pc, p, sizeof p);
    pc[R * RB - 1] |= 0x03;
    tritter_dl_tensor_t pct = dl2(pc, pshape, TRITTER_DL_UINT, 8);
    CHECK_ERR(tritter_ternary_linear_dlpack(&pct, C, &st, ROW, 0, &xt, NULL, 0, &yt), TRITTER_ERR_INVALID_DATA, "packed");
    CHECK_ERR(tritter_ternary_linear_grad_input_dlpack(&pct, C, &st, ROW, 0, &dyt, &dxt), TRITTER_ERR_INVALID_DATA, "packed");
    /* non-finite scales */
    float snan[R];
    memcpy(snan, s, sizeof s);
    snan[2] = INFINITY;
    tritter_dl_tensor_t snt = dl2(snan, sshape, TRITTER_DL_FLOAT, 32);
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &snt, ROW, 0, &xt, NULL, 0, &yt), TRITTER_ERR_NON_FINITE, "scales");
    /* huge sizes: an overflowing shape is an error, not an allocation */
    bad = xt;
    int64_t xshape_huge[2] = {INT64_MAX / 2, C};
    bad.shape = xshape_huge;
    CHECK_ERR(tritter_ternary_linear_dlpack(&pt, C, &st, ROW, 0, &bad, NULL, 0, &yt), TRITTER_ERR_SIZE_OVERFLOW, "x");

    /* grad input: shapes and dtypes */
    CHECK_ERR(tritter_ternary_linear_grad_input_dlpack(&pt, C, &st, ROW, 0, NULL, &dxt), TRITTER_ERR_NULL_POINTER, "dy");
    CHECK_ERR(tritter_ternary_linear_grad_input_dlpack(&pt, C, &st, ROW, 0, &dyt, NULL), TRITTER_ERR_NULL_POINTER, "dx");
    CHECK_ERR(tritter_ternary_linear_grad_input_dlpack(&pt, C, &st, ROW, 0, &xt, &dxt), TRITTER_ERR_SHAPE_MISMATCH, "dy");
    CHECK_ERR(tritter_ternary_linear_grad_input_dlpack(&pt, C, &st, ROW, 0, &dyt, &yt), TRITTER_ERR_SHAPE_MISMATCH, "dx");
    bad = dxt;
    bad.dtype.bits = 16; /* float16: not accepted */
    CHECK_ERR(tritter_ternary_linear_grad_input_dlpack(&pt, C, &st, ROW, 0, &dyt, &bad), TRITTER_ERR_UNSUPPORTED_DTYPE, "dx");

    /* matrix handle: NULL, base-3 compute format */
    CHECK_ERR(tritter_ternary_matrix_matmul_t_dlpack(NULL, &dyt, &dxt), TRITTER_ERR_NULL_POINTER, "matrix");
    tritter_ternary_matrix_t *m = NULL, *m3 = NULL;
    CHECK_OK(tritter_ternary_matrix_from_f32(w, R, C, NULL, &m));
    CHECK_OK(tritter_ternary_matrix_with_compute_format(m, TRITTER_COMPUTE_BASE3, &m3));
    CHECK_ERR(tritter_ternary_matrix_matmul_t_dlpack(m3, &dyt, &dxt), TRITTER_ERR_INVALID_ARGUMENT, "matrix");
    CHECK_ERR(tritter_ternary_matrix_matmul_t_dlpack(m, &dyt, &yt), TRITTER_ERR_SHAPE_MISMATCH, "dx");
    CHECK_OK(tritter_ternary_matrix_matmul_t_dlpack(m, &dyt, &dxt));
    tritter_ternary_matrix_free(m3);
    tritter_ternary_matrix_free(m);
    tritter_ternary_matrix_free(NULL);
}

int main(void) {
    /* boundary shapes; batch 0 and empty matrices included */
    size_t shapes[][3] = {{0, 5, 2}, {3, 0, 2}, {1, 1, 1}, {4, 5, 0}, {5, 31, 3}, {33, 257, 7}, {17, 300, 17}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        size_t r = shapes[i][0], c = shapes[i][1], b = shapes[i][2];
        run_case(r, c, b, TRITTER_GRANULARITY_PER_ROW, 0, 0);
        run_case(r, c, b, TRITTER_GRANULARITY_PER_TENSOR, 0, 1);
        run_case(r, c, b, TRITTER_GRANULARITY_PER_GROUP, 8, 0);
    }
    test_bad_inputs();
    CHECK_DONE("train");
}
