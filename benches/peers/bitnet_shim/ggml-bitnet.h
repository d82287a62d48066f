// Shim for compiling bitnet.cpp's src/ggml-bitnet-mad.cpp alone (our code).
// That file needs only GGML_TYPE_I2_S and ggml_row_size from ggml; the
// llama.cpp fork it normally builds inside is not needed for its I2_S
// kernels. I2_S rows are one byte per element in ggml's type table
// (blck_size 1, type_size 1); the value only enters quantize_i2_s's
// returned size, never the kernels.
#pragma once
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
enum { GGML_TYPE_I2_S = 36 };
static inline size_t ggml_row_size(int type, int64_t n) { (void)type; return (size_t)n; }
size_t quantize_i2_s(const float *src, void *dst, int64_t nrow, int64_t n_per_row, const float *quant_weights);
void ggml_vec_dot_i2_i8_s(int n, float *s, size_t bs, const void *vx, size_t bx, const void *vy, size_t by, int nrc);
#ifdef __cplusplus
}
#endif
