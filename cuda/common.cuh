// Shared helpers of tritter-accel's CUDA kernels (one file per domain
// includes this). Everything here is the twin of a host function in
// src/ and must give the same bits: exact f32 arithmetic is written with
// the _rn intrinsics (the build also passes -fmad=false), the half formats
// are converted with the integer algorithms of src/precision/convert.rs,
// and randomness is the counter-based hash of src/rng.rs.
#pragma once

#include <stdint.h>

#define TRITTER_KERNEL extern "C" __global__

namespace tritter {

// ---------------------------------------------------------------- f32 ops
__device__ __forceinline__ float fadd(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float fmul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float fdiv(float a, float b) { return __fdiv_rn(a, b); }

// ------------------------------------------- half formats (bit patterns)
// f32 -> bf16, nearest even; NaN keeps sign and top payload, gets the quiet bit.
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float x) {
    uint32_t b = __float_as_uint(x);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x0040u);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}
__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) {
    return __uint_as_float(((uint32_t)h) << 16);
}
// f32 -> f16, nearest even, subnormals, overflow to inf (as convert.rs).
__device__ __forceinline__ uint16_t f32_to_f16_bits(float x) {
    uint32_t b = __float_as_uint(x);
    uint32_t sign = (b >> 16) & 0x8000u;
    uint32_t a = b & 0x7fffffffu;
    if (a >= 0x7f800000u) {
        if (a == 0x7f800000u) return (uint16_t)(sign | 0x7c00u);
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    }
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    uint32_t e = a >> 23;
    if (e < 113) {
        if (e < 102) return (uint16_t)sign;
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t s = 126 - e;
        uint32_t q = m >> s;
        uint32_t rem = m & ((1u << s) - 1);
        uint32_t half = 1u << (s - 1);
        uint32_t up = (rem > half || (rem == half && (q & 1u))) ? 1u : 0u;
        return (uint16_t)(sign | (q + up));
    }
    uint32_t h = (a - (112u << 23)) >> 13;
    uint32_t rem = a & 0x1fffu;
    uint32_t up = (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ? 1u : 0u;
    return (uint16_t)(sign | (h + up));
}
// f16 -> f32, exact; NaNs get the quiet bit.
__device__ __forceinline__ float f16_bits_to_f32(uint16_t hb) {
    uint32_t h = hb;
    uint32_t sign = (h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t bits;
    if (e == 0) {
        if (m == 0) {
            bits = sign;
        } else {
            uint32_t shift = __clz(m) - 21;  // 1..=10
            uint32_t mm = (m << shift) & 0x3ffu;
            uint32_t ee = 113 - shift;
            bits = sign | (ee << 23) | (mm << 13);
        }
    } else if (e == 31) {
        bits = m == 0 ? (sign | 0x7f800000u) : (sign | 0x7fc00000u | (m << 13));
    } else {
        bits = sign | ((e + 112) << 23) | (m << 13);
    }
    return __uint_as_float(bits);
}

// Element types of tensors crossing the C ABI (DLPack dtypes).
enum Dtype : int { DT_F32 = 0, DT_BF16 = 1, DT_F16 = 2 };

template <int DT>
__device__ __forceinline__ float load_as_f32(const void* p, long long i) {
    if (DT == DT_F32) return __ldg(static_cast<const float*>(p) + i);
    uint16_t h = __ldg(static_cast<const unsigned short*>(p) + i);
    return DT == DT_BF16 ? bf16_bits_to_f32(h) : f16_bits_to_f32(h);
}

__device__ __forceinline__ void store_from_f32(void* p, long long i, float v, int dt) {
    if (dt == DT_F32) {
        static_cast<float*>(p)[i] = v;
    } else if (dt == DT_BF16) {
        static_cast<uint16_t*>(p)[i] = f32_to_bf16_bits(v);
    } else {
        static_cast<uint16_t*>(p)[i] = f32_to_f16_bits(v);
    }
}

// ----------------------------------------------------------------- random
// src/rng.rs: SplitMix64's finalizer over a Weyl sequence.
__device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
__device__ __forceinline__ uint64_t hash2(uint64_t seed, uint64_t index) {
    const uint64_t GOLDEN = 0x9E3779B97F4A7C15ull, STREAM = 0xD1B54A32D192ED03ull;
    return mix64(mix64(seed * GOLDEN ^ STREAM) + index * GOLDEN);
}
__device__ __forceinline__ float uniform_f32(uint64_t seed, uint64_t index) {
    return (float)(uint32_t)(hash2(seed, index) >> 40) * (1.0f / 16777216.0f);
}

// ----------------------------------------------------------- memory ops
// 16-byte streaming load that bypasses L1 (weights are read once).
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}
__device__ __forceinline__ uint32_t ld_u32(const void* p) {
    return __ldg(static_cast<const unsigned int*>(p));
}
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(smem)), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                            const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_addr(smem)));
}

// ------------------------------------------------------ tensor-core MMA
// D += A * B, m16n8k32, int8 x int8 -> int32 (exact).
__device__ __forceinline__ void mma_s8(int (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                       uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// D += A * B, m16n8k16, bf16 or f16 -> f32.
template <bool F16>
__device__ __forceinline__ void mma_h(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                      uint32_t b1) {
    if (F16) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
            "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
            "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

// -------------------------------------------- weight decode (layout.rs)
// int8 A register r of a 32-column block: t + 2 in each byte.
template <int R>
__device__ __forceinline__ uint32_t dec_i8(uint32_t w) {
    return ((w >> (2 * R)) & 0x03030303u) ^ 0x02020202u;
}
// bf16/f16 A register rho of k16 step s: halves of +-2.0 or 0.
template <int S, int RHO>
__device__ __forceinline__ uint32_t dec_h(uint32_t w) {
    constexpr int r = 2 * S + (RHO & 1);
    constexpr int o = 2 * r + 8 * (RHO >> 1);
    return (w << (14 - o)) & 0xC000C000u;
}
// Column of position i of a 16-column chunk of the half activation layout.
__device__ __forceinline__ int perm16(int i) { return 4 * ((i & 7) >> 1) + (i >> 3) + 2 * (i & 1); }

// ------------------------------------------------------- block reduce
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

}  // namespace tritter
