// Gradient compression on the GPU. Today: ternary stochastic quantization
// (TernGrad), the twin of src/grad/compress/ternary.rs, bit for bit: the
// same per-block key (hash2(seed, block)), the same per-element 24-bit
// uniform (MurmurHash3's finalizer of j * 0x9E3779B9 + key), the same f32
// threshold arithmetic, the same 2-bit codes (01 = +1, 10 = -1).
// Not yet: count sketch and quantized top-k.
#include "common.cuh"

namespace {

__device__ __forceinline__ uint32_t fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    return h ^ (h >> 16);
}

}  // namespace

using namespace tritter;

// One warp per block of `block` coordinates (block % 4 == 0): the scale is
// max |g| (an integer max of the magnitude bits, as on the CPU), then each
// lane writes whole bytes of 4 codes. A block holding NaN/inf gets that
// non-finite scale and zero codes (the CPU reports an error instead).
TRITTER_KERNEL void terngrad_quantize(const float* g, long long n, int block, unsigned long long seed,
                                      float* scales, uint8_t* packed) {
    const long long b = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    const long long nb = (n + block - 1) / block;
    if (b >= nb) return;
    const long long b0 = b * block;
    const int len = (int)min((long long)block, n - b0);
    const float* gb = g + b0;
    uint32_t m = 0;
    for (int j = lane; j < len; j += 32) m = max(m, __float_as_uint(__ldg(gb + j)) & 0x7fffffffu);
    m = warp_reduce(m, [](uint32_t x, uint32_t y) { return max(x, y); });
    const float s = __uint_as_float(m);
    if (lane == 0) scales[b] = s;
    uint8_t* out = packed + b0 / 4;
    const int nbytes = (len + 3) / 4;
    if (!isfinite(s) || s == 0.0f) {
        for (int jb = lane; jb < nbytes; jb += 32) out[jb] = 0;
        return;
    }
    const float pre = isfinite(fdiv(16777216.0f, s)) ? 1.0f : 18446744073709551616.0f;
    const float inv = fdiv(16777216.0f, fmul(s, pre));
    const uint32_t key = (uint32_t)hash2(seed, (uint64_t)b);
    for (int jb = lane; jb < nbytes; jb += 32) {
        uint32_t byte = 0;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int j = 4 * jb + e;
            if (j < len) {
                const uint32_t bits = __float_as_uint(__ldg(gb + j));
                const float a = __uint_as_float(bits & 0x7fffffffu);
                const uint32_t r = fmix32((uint32_t)j * 0x9E3779B9u + key) >> 8;
                const uint32_t nz = (float)r < fmul(fmul(a, pre), inv) ? 1u : 0u;
                const uint32_t code = nz + (nz & (bits >> 31));
                byte |= code << (2 * e);
            }
        }
        out[jb] = (uint8_t)byte;
    }
}
