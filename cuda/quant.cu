// Ternary weight quantization (AbsMean / AbsMax, per tensor / row / group,
// optional threshold) and canonical 2-bit packing: the CUDA twin of
// src/ternary/quant.rs::quantize_pack_2bit, bit for bit.
//
// Scales follow the reference's fixed order: a group's |w| are summed in 16
// f32 lanes (lane i takes elements i, i+16, ... of the group), the lanes are
// added in f64 in lane order; a per-tensor mean adds the per-row sums in row
// order in f64. Here one half-warp plays the 16 lanes of one group.
#include "common.cuh"

namespace tritter {

// Flat index of the first non-finite weight (atomicMin), left at ~0 if none.
__device__ __forceinline__ void note_bad(unsigned long long* bad, unsigned long long idx) {
    atomicMin(bad, idx);
}

}  // namespace tritter

using namespace tritter;

// One half-warp per (row, group). method 0 AbsMean, 1 AbsMax.
// gkind 0 (per tensor): row_stat[row] = the row's statistic (f64; groups are
// whole rows). Otherwise scales[row * ngroups + g] = the group's scale.
TRITTER_KERNEL void quant_scales(const float* w, long long ldw, int rows, int cols, int glen,
                                 int ngroups, int method, int gkind, float* scales,
                                 double* row_stat, unsigned long long* bad) {
    const long long hw = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 4;
    const int li = threadIdx.x & 15;
    const unsigned mask = (threadIdx.x & 16) ? 0xffff0000u : 0x0000ffffu;
    const long long total = (long long)rows * ngroups;
    // Whole half-warps are in or out (total is uniform), so the shuffles below
    // always see all 16 lanes of the group.
    if (hw >= total) return;
    const int row = (int)(hw / ngroups), gi = (int)(hw % ngroups);
    const int k0 = gi * glen, len = min(glen, cols - k0);
    const float* src = w + (long long)row * ldw + k0;
    float acc = 0.0f;
#pragma unroll 4
    for (int k = li; k < len; k += 16) {
        const float v = __ldg(src + k);
        if (!isfinite(v)) note_bad(bad, (unsigned long long)row * cols + k0 + k);
        const float a = fabsf(v);
        acc = method == 0 ? fadd(acc, a) : fmaxf(acc, a);
    }
    double stat = 0.0;
    const int base = threadIdx.x & 16;
    if (method == 0) {
        for (int j = 0; j < 16; ++j) stat = __dadd_rn(stat, (double)__shfl_sync(mask, acc, base + j));
    } else {
        float m = 0.0f;
        for (int j = 0; j < 16; ++j) m = fmaxf(m, __shfl_sync(mask, acc, base + j));
        stat = (double)m;
    }
    if (li != 0) return;
    if (gkind == 0) {
        row_stat[row] = stat;
    } else {
        scales[(long long)row * ngroups + gi] =
            method == 0 ? __double2float_rn(__ddiv_rn(stat, (double)len)) : __double2float_rn(stat);
    }
}

// Per tensor: the row statistics combined in row order (one thread).
TRITTER_KERNEL void quant_scale_tensor(const double* row_stat, int rows, int cols, int method,
                                       float* scale) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double acc = 0.0;
    for (int r = 0; r < rows; ++r)
        acc = method == 0 ? __dadd_rn(acc, row_stat[r]) : fmax(acc, row_stat[r]);
    if (method == 0) acc = __ddiv_rn(acc, __dmul_rn((double)rows, (double)cols));
    scale[0] = __double2float_rn(acc);
}

// One thread per packed byte (4 weights): t = +1 iff w / (s + eps) > 0.5,
// -1 iff < -0.5 (or |w| > f s with a threshold); codes 01 = +1, 10 = -1.
TRITTER_KERNEL void quant_pack(const float* w, long long ldw, int rows, int cols, int glen,
                               int ngroups, int gkind, const float* scales, int use_threshold,
                               float thr_factor, float eps, uint8_t* out, int row_bytes) {
    const long long total = (long long)rows * row_bytes;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int row = (int)(idx / row_bytes), jb = (int)(idx % row_bytes);
        uint32_t byte = 0;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int k = 4 * jb + e;
            if (k < cols) {
                const float s = gkind == 0   ? __ldg(scales)
                                : gkind == 1 ? __ldg(scales + row)
                                             : __ldg(scales + (long long)row * ngroups + k / glen);
                const float v = __ldg(w + (long long)row * ldw + k);
                int t;
                if (use_threshold) {
                    const float thr = fmul(thr_factor, s);
                    t = (v > thr) - (v < -thr);
                } else {
                    const float q = fdiv(v, fadd(s, eps));
                    t = (q > 0.5f) - (q < -0.5f);
                }
                byte |= (t == 1 ? 1u : t == -1 ? 2u : 0u) << (2 * e);
            }
        }
        out[idx] = (uint8_t)byte;
    }
}
