/* The CUDA-aware entry points from C. Without a usable GPU (CI) every CUDA
 * tensor gets TRITTER_ERR_CUDA_UNAVAILABLE naming the tensor, and the host
 * routes of the same DLPack exports work; bad arguments are reported either
 * way. (With a GPU the CUDA routes are compared with the CPU in tests/cuda.rs.) */
#include <stdint.h>

#include "check.h"

static uint32_t seed = 7;
static float frand(void) {
    seed = seed * 1664525u + 1013904223u;
    return (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
}

#define F32 {TRITTER_DL_FLOAT, 32, 1}
#define BF16 {TRITTER_DL_BFLOAT, 16, 1}
#define I8 {TRITTER_DL_INT, 8, 1}
#define U8 {TRITTER_DL_UINT, 8, 1}

int main(void) {
    const int gpu = tritter_cuda_available();
    size_t count = 99;
    CHECK_OK(tritter_cuda_device_count(&count));
    CHECK(gpu ? count > 0 : count == 0);
    CHECK_ERR(tritter_cuda_device_count(NULL), TRITTER_ERR_NULL_POINTER, "count_out");
    if (gpu) {
        CHECK_OK(tritter_cuda_check());
    } else {
        CHECK_ERR(tritter_cuda_check(), TRITTER_ERR_CUDA_UNAVAILABLE, "CUDA");
    }

    enum { R = 6, C = 40, B = 3 };
    float w[R * C], x[B * C], y[B * R], y2[B * R];
    for (int i = 0; i < R * C; i++) w[i] = frand();
    for (int i = 0; i < B * C; i++) x[i] = frand();
    tritter_ternary_matrix_t *m = NULL;
    CHECK_OK(tritter_ternary_matrix_from_f32(w, R, C, NULL, &m));

    /* to_device */
    CHECK_ERR(tritter_ternary_matrix_to_device(NULL, 0), TRITTER_ERR_NULL_POINTER, "matrix");
    if (gpu) {
        CHECK_OK(tritter_ternary_matrix_to_device(m, 0));
        CHECK_ERR(tritter_ternary_matrix_to_device(m, -1), TRITTER_ERR_UNSUPPORTED_DEVICE, "device");
    } else {
        CHECK_ERR(tritter_ternary_matrix_to_device(m, 0), TRITTER_ERR_CUDA_UNAVAILABLE, "CUDA");
    }

    /* matmul with a stream: host tensors ignore the stream. */
    int64_t xs[2] = {B, C}, ys[2] = {B, R};
    tritter_dl_tensor_t xt = {x, {TRITTER_DL_CPU, 0}, 2, F32, xs, NULL, 0};
    tritter_dl_tensor_t yt = {y, {TRITTER_DL_CPU, 0}, 2, F32, ys, NULL, 0};
    CHECK_OK(tritter_ternary_matrix_matmul_dlpack_stream(m, &xt, NULL, TRITTER_ACT_INT8, &yt, (void *)0x1234));
    CHECK_OK(tritter_ternary_matrix_matmul(m, x, B, C, NULL, 0, TRITTER_ACT_INT8, y2, B * R));
    CHECK(memcmp(y, y2, sizeof y) == 0);
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack_stream(m, NULL, NULL, 0, &yt, NULL), TRITTER_ERR_NULL_POINTER, "x");
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack_stream(m, &xt, NULL, 0, NULL, NULL), TRITTER_ERR_NULL_POINTER, "y");
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack_stream(NULL, &xt, NULL, 0, &yt, NULL), TRITTER_ERR_NULL_POINTER, "matrix");
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack_stream(m, &xt, NULL, 9, &yt, NULL), TRITTER_ERR_INVALID_ARGUMENT, "act_mode");
    tritter_dl_tensor_t bad = yt;
    bad.device.device_type = 7;
    CHECK_ERR(tritter_ternary_matrix_matmul_dlpack_stream(m, &xt, NULL, 0, &bad, NULL), TRITTER_ERR_UNSUPPORTED_DEVICE, "y");
    if (!gpu) {
        /* Any CUDA tensor: unavailable, named, whatever the others are. */
        tritter_dl_tensor_t xc = xt, yc = yt, bc = {y, {TRITTER_DL_CUDA, 0}, 1, F32, &ys[1], NULL, 0};
        xc.device.device_type = TRITTER_DL_CUDA;
        yc.device.device_type = TRITTER_DL_CUDA;
        CHECK_ERR(tritter_ternary_matrix_matmul_dlpack_stream(m, &xc, NULL, 0, &yc, NULL), TRITTER_ERR_CUDA_UNAVAILABLE, "x");
        CHECK_ERR(tritter_ternary_matrix_matmul_dlpack_stream(m, &xt, NULL, 0, &yc, NULL), TRITTER_ERR_CUDA_UNAVAILABLE, "y");
        CHECK_ERR(tritter_ternary_matrix_matmul_dlpack_stream(m, &xt, &bc, 0, &yt, NULL), TRITTER_ERR_CUDA_UNAVAILABLE, "bias");
        yc.device.device_type = TRITTER_DL_CUDA_MANAGED;
        CHECK_ERR(tritter_ternary_matrix_matmul_dlpack(m, &xt, NULL, 0, &yc), TRITTER_ERR_CUDA_UNAVAILABLE, "y");
        tritter_ternary_matrix_t *m2 = NULL;
        int64_t ws[2] = {R, C};
        tritter_dl_tensor_t wc = {w, {TRITTER_DL_CUDA, 0}, 2, F32, ws, NULL, 0};
        CHECK_ERR(tritter_ternary_matrix_from_dlpack(&wc, NULL, &m2), TRITTER_ERR_CUDA_UNAVAILABLE, "weights");
        CHECK(m2 == NULL);
    }

    /* quantize + pack */
    enum { RB = (C + 3) / 4 };
    uint8_t packed[R * RB], packed2[R * RB];
    float scales[R];
    int64_t ws[2] = {R, C}, ps[2] = {R, RB}, ss[1] = {R};
    tritter_dl_tensor_t wt = {w, {TRITTER_DL_CPU, 0}, 2, F32, ws, NULL, 0};
    tritter_dl_tensor_t pt = {packed, {TRITTER_DL_CPU, 0}, 2, U8, ps, NULL, 0};
    tritter_dl_tensor_t st = {scales, {TRITTER_DL_CPU, 0}, 1, F32, ss, NULL, 0};
    CHECK_OK(tritter_quantize_pack_dlpack(&wt, NULL, &pt, &st, NULL));
    CHECK_OK(tritter_ternary_matrix_export_packed(m, TRITTER_LAYOUT_2BIT, packed2, sizeof packed2));
    CHECK(memcmp(packed, packed2, sizeof packed) == 0);
    CHECK_ERR(tritter_quantize_pack_dlpack(NULL, NULL, &pt, &st, NULL), TRITTER_ERR_NULL_POINTER, "weights");
    int64_t ps_bad[2] = {R, RB + 1};
    tritter_dl_tensor_t pbad = {packed, {TRITTER_DL_CPU, 0}, 2, U8, ps_bad, NULL, 0};
    CHECK_ERR(tritter_quantize_pack_dlpack(&wt, NULL, &pbad, &st, NULL), TRITTER_ERR_SHAPE_MISMATCH, "packed_out");
    tritter_dl_tensor_t pdt = {packed, {TRITTER_DL_CPU, 0}, 2, I8, ps, NULL, 0};
    CHECK_ERR(tritter_quantize_pack_dlpack(&wt, NULL, &pdt, &st, NULL), TRITTER_ERR_UNSUPPORTED_DTYPE, "packed_out");
    int64_t ss_bad[1] = {R - 1};
    tritter_dl_tensor_t sbad = {scales, {TRITTER_DL_CPU, 0}, 1, F32, ss_bad, NULL, 0};
    CHECK_ERR(tritter_quantize_pack_dlpack(&wt, NULL, &pt, &sbad, NULL), TRITTER_ERR_SHAPE_MISMATCH, "scales_out");
    w[13] = 0.0f / 0.0f;
    CHECK_ERR(tritter_quantize_pack_dlpack(&wt, NULL, &pt, &st, NULL), TRITTER_ERR_NON_FINITE, "weights");
    w[13] = 0.5f;
    if (!gpu) {
        tritter_dl_tensor_t wc = wt;
        wc.device.device_type = TRITTER_DL_CUDA;
        CHECK_ERR(tritter_quantize_pack_dlpack(&wc, NULL, &pt, &st, NULL), TRITTER_ERR_CUDA_UNAVAILABLE, "weights");
    }

    /* int8 activations */
    int8_t q[B * C], q2[B * C];
    float qs[B], qs2[B];
    int64_t qsh[2] = {B, C}, qss[1] = {B};
    tritter_dl_tensor_t qt = {q, {TRITTER_DL_CPU, 0}, 2, I8, qsh, NULL, 0};
    tritter_dl_tensor_t qst = {qs, {TRITTER_DL_CPU, 0}, 1, F32, qss, NULL, 0};
    CHECK_OK(tritter_quantize_activations_i8_dlpack(&xt, &qt, &qst, NULL));
    CHECK_OK(tritter_quantize_activations_i8(x, B, C, q2, sizeof q2, qs2, B));
    CHECK(memcmp(q, q2, sizeof q) == 0 && memcmp(qs, qs2, sizeof qs) == 0);
    CHECK_ERR(tritter_quantize_activations_i8_dlpack(&xt, &qt, NULL, NULL), TRITTER_ERR_NULL_POINTER, "scales_out");
    tritter_dl_tensor_t qbad = qt;
    qbad.dtype.code = TRITTER_DL_UINT;
    CHECK_ERR(tritter_quantize_activations_i8_dlpack(&xt, &qbad, &qst, NULL), TRITTER_ERR_UNSUPPORTED_DTYPE, "q_out");

    /* conversion */
    uint16_t h[B * C], h2[B * C];
    float back[B * C];
    tritter_dl_tensor_t ht = {h, {TRITTER_DL_CPU, 0}, 2, BF16, xs, NULL, 0};
    tritter_dl_tensor_t bt = {back, {TRITTER_DL_CPU, 0}, 2, F32, xs, NULL, 0};
    CHECK_OK(tritter_convert_dlpack(&xt, &ht, NULL));
    CHECK_OK(tritter_f32_to_bf16(x, B * C, h2, B * C));
    CHECK(memcmp(h, h2, sizeof h) == 0);
    CHECK_OK(tritter_convert_dlpack(&ht, &bt, NULL));
    for (int i = 0; i < B * C; i++) {
        uint32_t bits;
        memcpy(&bits, &back[i], 4);
        CHECK(bits == (uint32_t)h[i] << 16);
    }
    CHECK_ERR(tritter_convert_dlpack(&xt, &bt, NULL), TRITTER_ERR_UNSUPPORTED_DTYPE, "dst");
    CHECK_ERR(tritter_convert_dlpack(NULL, &bt, NULL), TRITTER_ERR_NULL_POINTER, "src");
    int64_t short_shape[2] = {B, C - 1};
    tritter_dl_tensor_t hshort = {h, {TRITTER_DL_CPU, 0}, 2, BF16, short_shape, NULL, 0};
    CHECK_ERR(tritter_convert_dlpack(&xt, &hshort, NULL), TRITTER_ERR_SHAPE_MISMATCH, "dst");
    int64_t strided[2] = {2 * C, 2};
    tritter_dl_tensor_t xstr = {x, {TRITTER_DL_CPU, 0}, 2, F32, (int64_t[2]){1, C / 2}, strided, 0};
    tritter_dl_tensor_t hs2 = {h, {TRITTER_DL_CPU, 0}, 2, BF16, (int64_t[2]){1, C / 2}, NULL, 0};
    CHECK_ERR(tritter_convert_dlpack(&xstr, &hs2, NULL), TRITTER_ERR_INVALID_ARGUMENT, "src");
    if (!gpu) {
        tritter_dl_tensor_t hc = ht;
        hc.device.device_type = TRITTER_DL_CUDA;
        CHECK_ERR(tritter_convert_dlpack(&xt, &hc, NULL), TRITTER_ERR_CUDA_UNAVAILABLE, "dst");
    }

    tritter_ternary_matrix_free(m);
    CHECK_DONE("cuda");
}
