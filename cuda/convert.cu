// f32 <-> bf16 / f16 slice conversion: the CUDA twin of
// src/precision/convert.rs (round to nearest even, the same NaN rules), bit
// for bit. Each thread converts 8 consecutive elements (two 16-byte loads of
// f32 or one of halves) when both pointers are 16-byte aligned, else one at
// a time; the launcher passes `vec` accordingly.
#include "common.cuh"

using namespace tritter;

namespace {

template <bool BF16>
__device__ __forceinline__ uint16_t narrow(float x) {
    return BF16 ? f32_to_bf16_bits(x) : f32_to_f16_bits(x);
}
template <bool BF16>
__device__ __forceinline__ float widen(uint16_t h) {
    return BF16 ? bf16_bits_to_f32(h) : f16_bits_to_f32(h);
}

template <bool BF16>
__device__ __forceinline__ void f32_to_half(const float* src, uint16_t* dst, long long n, int vec) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (vec) {
        const long long n8 = n / 8;
        for (long long v = i; v < n8; v += stride) {
            const float4 a = __ldg(reinterpret_cast<const float4*>(src) + 2 * v);
            const float4 b = __ldg(reinterpret_cast<const float4*>(src) + 2 * v + 1);
            uint4 o;
            o.x = narrow<BF16>(a.x) | ((uint32_t)narrow<BF16>(a.y) << 16);
            o.y = narrow<BF16>(a.z) | ((uint32_t)narrow<BF16>(a.w) << 16);
            o.z = narrow<BF16>(b.x) | ((uint32_t)narrow<BF16>(b.y) << 16);
            o.w = narrow<BF16>(b.z) | ((uint32_t)narrow<BF16>(b.w) << 16);
            reinterpret_cast<uint4*>(dst)[v] = o;
        }
        i += n8 * 8;  // the tail, one element a thread
    }
    for (; i < n; i += stride) dst[i] = narrow<BF16>(__ldg(src + i));
}

template <bool BF16>
__device__ __forceinline__ void half_to_f32(const uint16_t* src, float* dst, long long n, int vec) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (vec) {
        const long long n8 = n / 8;
        for (long long v = i; v < n8; v += stride) {
            const uint4 h = __ldg(reinterpret_cast<const uint4*>(src) + v);
            float4 a, b;
            a.x = widen<BF16>((uint16_t)h.x);
            a.y = widen<BF16>((uint16_t)(h.x >> 16));
            a.z = widen<BF16>((uint16_t)h.y);
            a.w = widen<BF16>((uint16_t)(h.y >> 16));
            b.x = widen<BF16>((uint16_t)h.z);
            b.y = widen<BF16>((uint16_t)(h.z >> 16));
            b.z = widen<BF16>((uint16_t)h.w);
            b.w = widen<BF16>((uint16_t)(h.w >> 16));
            reinterpret_cast<float4*>(dst)[2 * v] = a;
            reinterpret_cast<float4*>(dst)[2 * v + 1] = b;
        }
        i += n8 * 8;
    }
    for (; i < n; i += stride) dst[i] = widen<BF16>(__ldg(reinterpret_cast<const unsigned short*>(src) + i));
}

}  // namespace

TRITTER_KERNEL void cvt_f32_to_bf16(const float* src, uint16_t* dst, long long n, int vec) {
    f32_to_half<true>(src, dst, n, vec);
}
TRITTER_KERNEL void cvt_f32_to_f16(const float* src, uint16_t* dst, long long n, int vec) {
    f32_to_half<false>(src, dst, n, vec);
}
TRITTER_KERNEL void cvt_bf16_to_f32(const uint16_t* src, float* dst, long long n, int vec) {
    half_to_f32<true>(src, dst, n, vec);
}
TRITTER_KERNEL void cvt_f16_to_f32(const uint16_t* src, float* dst, long long n, int vec) {
    half_to_f32<false>(src, dst, n, vec);
}
