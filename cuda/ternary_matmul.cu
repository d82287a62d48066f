// Ternary matmul y = x . W^T (+ bias): the CUDA twin of src/ternary/matmul.
//
// Weights are in the device layout of src/cuda/layout.rs (mma.sync A
// fragments, 2 bits a weight, 512 contiguous bytes per 16 rows x 128 columns).
// Activations are first prepared by one of the act_* kernels below into a
// zero-padded scratch buffer: int8 per-token absmax (with the per-group sums
// of q that the decode's "+2" offset needs), or bf16/f16 halves in the
// permuted order of layout.rs (f32 input becomes three bf16 parts hi+mid+lo
// whose sum is the f32 value to 2^-24 relative).
//
// Two matmul kernels, each instantiated for int8, bf16 and f16:
//   tmm_small_*: up to 32 tokens per block column (decode, small batches);
//     each warp streams its 32 rows' weights once with 16-byte loads (4 warps
//     split K when the scale is per tensor / per row, or for float modes).
//   tmm_gemm_*: 128x128 output tiles, activations staged through shared
//     memory with cp.async (double buffer) and read with ldmatrix; per-tensor
//     and per-row scales only (per-group matrices use tmm_small for every
//     batch size).
// int8 results equal the CPU reference bit for bit: integer sums are exact,
// and the f32 epilogue is the reference's sequence of roundings (per-group:
// groups folded in order by one warp). Float modes differ from the CPU only
// in summation order and are within the documented bound.
#include "common.cuh"

namespace tritter {

enum Mode : int { MODE_I8 = 0, MODE_BF16 = 1, MODE_F16 = 2 };

// Matches `TmmParams` in src/cuda/ternary.rs field for field.
struct TmmParams {
    const uint4* w;        // device layout
    const float* scales;   // the matrix's scales
    const void* x;         // prepared activations (see the act_* kernels)
    const int* xsum;       // int8: sum of q per token and group, [tok_pad][ngroups]
    const float* xscale;   // int8: activation scale per token, [tokens]
    const float* bias;     // [rows] or NULL
    void* y;               // [tokens][ldy] in ydtype
    long long ldy;         // row stride of y, in elements
    int rows;              // output features
    int cols;              // input features
    int tokens;            // batch
    int tok_pad;           // tokens padded (rows of the activation scratch)
    int kp;                // columns padded to 128 (row length of the scratch)
    int nsb;               // superblocks per row tile (kp / 128)
    int used_row_tiles;    // ceil(rows / 16)
    int gkind;             // 0 per tensor, 1 per row, 2 per group
    int group_len;         // weights per group (a multiple of 32 when gkind == 2)
    int ngroups;           // scale groups per row (1 unless per group)
    int parts;             // activation parts: 1, or 3 (f32 split into bf16)
    int ydtype;            // Dtype of y
    int split;             // tmm_small: warps of a block that split K (1 or 4)
    int pad_;
};

__device__ __forceinline__ float scale_of(const TmmParams& p, int row, int gidx) {
    if (row >= p.rows) return 0.0f;
    if (p.gkind == 0) return __ldg(p.scales);
    if (p.gkind == 1) return __ldg(p.scales + row);
    return __ldg(p.scales + (long long)row * p.ngroups + gidx);
}

// Folds an accumulator element into the output sum: the reference's
// `acc += s * part` (int8: part = D - 2 sum(q), exact; floats: D / 2).
template <int MODE, typename Acc>
__device__ __forceinline__ void fold(const TmmParams& p, float& ya, Acc& d, int row, int tok,
                                     int gidx) {
    float s = scale_of(p, row, gidx);
    if constexpr (MODE == MODE_I8) {
        int part = (int)d - 2 * __ldg(p.xsum + (long long)tok * p.ngroups + gidx);
        ya = fadd(ya, fmul(s, __int2float_rn(part)));
    } else {
        ya = fadd(ya, fmul(s, 0.5f * (float)d));
    }
    d = 0;
}

// The reference's last steps: int8 divides by the activation scale, then the
// bias (or 0.0) is added; stored in ydtype.
template <int MODE>
__device__ __forceinline__ void store_out(const TmmParams& p, float ya, int row, int tok) {
    if (row >= p.rows || tok >= p.tokens) return;
    if (MODE == MODE_I8) ya = fdiv(ya, __ldg(p.xscale + tok));
    ya = fadd(ya, p.bias ? __ldg(p.bias + row) : 0.0f);
    store_from_f32(p.y, (long long)tok * p.ldy + row, ya, p.ydtype);
}

template <int MODE>
struct AccT {
    typedef float T;
};
template <>
struct AccT<MODE_I8> {
    typedef int T;
};

// ------------------------------------------------------------ tmm_small
constexpr int SMALL_WARPS = 4;
constexpr int SMALL_MT = 2;  // row tiles (16 rows) per warp
constexpr int SMALL_NT = 4;  // token tiles (8 tokens) per block column

template <int MODE>
__device__ __forceinline__ void small_block(const TmmParams& p, const uint4 (&wv)[SMALL_MT],
                                            typename AccT<MODE>::T (&d)[SMALL_MT][SMALL_NT][4],
                                            float (&ya)[SMALL_MT][SMALL_NT][4], int sb, int rt0,
                                            int tok0, int ntiles, int lane) {
    const int g = lane >> 2, t = lane & 3;
    const bool grouped = p.gkind == 2;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        const int k0 = sb * 128 + q * 32;
        uint32_t word[SMALL_MT];
#pragma unroll
        for (int i = 0; i < SMALL_MT; ++i)
            word[i] = q == 0 ? wv[i].x : q == 1 ? wv[i].y : q == 2 ? wv[i].z : wv[i].w;
        if constexpr (MODE == MODE_I8) {
            uint32_t a[SMALL_MT][4];
#pragma unroll
            for (int i = 0; i < SMALL_MT; ++i) {
                a[i][0] = dec_i8<0>(word[i]);
                a[i][1] = dec_i8<1>(word[i]);
                a[i][2] = dec_i8<2>(word[i]);
                a[i][3] = dec_i8<3>(word[i]);
            }
            const int8_t* xb = static_cast<const int8_t*>(p.x) + k0 + 4 * t;
#pragma unroll
            for (int nt = 0; nt < SMALL_NT; ++nt) {
                if (nt < ntiles) {
                    // Padding tokens are zero: skip their loads (batch 1
                    // reads one token's activations, not eight).
                    const int tok = tok0 + nt * 8 + g;
                    const int8_t* xr = xb + (long long)tok * p.kp;
                    uint32_t b0 = 0, b1 = 0;
                    if (tok < p.tokens) {
                        b0 = ld_u32(xr);
                        b1 = ld_u32(xr + 16);
                    }
#pragma unroll
                    for (int i = 0; i < SMALL_MT; ++i) mma_s8(d[i][nt], a[i], b0, b1);
                }
            }
        } else {
#pragma unroll
            for (int s = 0; s < 2; ++s) {
                uint32_t a[SMALL_MT][4];
#pragma unroll
                for (int i = 0; i < SMALL_MT; ++i) {
                    if (s == 0) {
                        a[i][0] = dec_h<0, 0>(word[i]);
                        a[i][1] = dec_h<0, 1>(word[i]);
                        a[i][2] = dec_h<0, 2>(word[i]);
                        a[i][3] = dec_h<0, 3>(word[i]);
                    } else {
                        a[i][0] = dec_h<1, 0>(word[i]);
                        a[i][1] = dec_h<1, 1>(word[i]);
                        a[i][2] = dec_h<1, 2>(word[i]);
                        a[i][3] = dec_h<1, 3>(word[i]);
                    }
                }
                const uint16_t* xb = static_cast<const uint16_t*>(p.x) + k0 + 16 * s + 2 * t;
                for (int part = 0; part < p.parts; ++part) {
#pragma unroll
                    for (int nt = 0; nt < SMALL_NT; ++nt) {
                        if (nt < ntiles) {
                            const int tok = tok0 + nt * 8 + g;
                            const uint16_t* xr = xb + ((long long)part * p.tok_pad + tok) * p.kp;
                            uint32_t b0 = 0, b1 = 0;
                            if (tok < p.tokens) {
                                b0 = ld_u32(xr);
                                b1 = ld_u32(xr + 8);
                            }
#pragma unroll
                            for (int i = 0; i < SMALL_MT; ++i)
                                mma_h<MODE == MODE_F16>(d[i][nt], a[i], b0, b1);
                        }
                    }
                }
            }
        }
        // Per-group scales: fold at the end of each group (a block never
        // straddles two: group_len % 32 == 0), and, when warps split K, at the
        // end of each superblock (float modes only; linear, so exactness is
        // not at stake).
        if (grouped && k0 < p.cols &&
            ((k0 + 32) % p.group_len == 0 || k0 + 32 >= p.cols || (q == 3 && p.split > 1))) {
            const int gidx = k0 / p.group_len;
#pragma unroll
            for (int i = 0; i < SMALL_MT; ++i)
#pragma unroll
                for (int nt = 0; nt < SMALL_NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int row = (rt0 + i) * 16 + g + 8 * (e >> 1);
                        const int tok = tok0 + nt * 8 + 2 * t + (e & 1);
                        if (nt < ntiles) fold<MODE>(p, ya[i][nt][e], d[i][nt][e], row, tok, gidx);
                    }
        }
    }
}

template <int MODE>
__device__ __forceinline__ void tmm_small(const TmmParams& p) {
    typedef typename AccT<MODE>::T Acc;
    __shared__ uint32_t red[SMALL_WARPS - 1][SMALL_MT * SMALL_NT * 4][32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int split = p.split;
    const int rg = split == 1 ? blockIdx.x * SMALL_WARPS + warp : blockIdx.x;
    const int kw = split == 1 ? 0 : warp;
    const int rt0 = rg * SMALL_MT;
    const int tok0 = blockIdx.y * SMALL_NT * 8;
    const int ntiles = min(SMALL_NT, (p.tok_pad - tok0) / 8);
    const bool active = rt0 < p.used_row_tiles;
    const bool grouped = p.gkind == 2;

    Acc d[SMALL_MT][SMALL_NT][4];
    float ya[SMALL_MT][SMALL_NT][4];
#pragma unroll
    for (int i = 0; i < SMALL_MT; ++i)
#pragma unroll
        for (int nt = 0; nt < SMALL_NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                d[i][nt][e] = 0;
                ya[i][nt][e] = 0.0f;
            }

    if (active) {
        const uint4* wrow[SMALL_MT];
#pragma unroll
        for (int i = 0; i < SMALL_MT; ++i)
            wrow[i] = p.w + (long long)(rt0 + i) * p.nsb * 32 + lane;
        // Software pipeline: the next two superblocks' 64 bytes a lane are
        // in flight while this one is multiplied.
        uint4 cur[SMALL_MT], nx1[SMALL_MT], nx2[SMALL_MT];
        int sb = kw;
#pragma unroll
        for (int i = 0; i < SMALL_MT; ++i) {
            if (sb < p.nsb) cur[i] = ld_stream(wrow[i] + (long long)sb * 32);
            if (sb + split < p.nsb) nx1[i] = ld_stream(wrow[i] + (long long)(sb + split) * 32);
        }
        for (; sb < p.nsb; sb += split) {
            const int sn = sb + 2 * split;
            if (sn < p.nsb) {
#pragma unroll
                for (int i = 0; i < SMALL_MT; ++i) nx2[i] = ld_stream(wrow[i] + (long long)sn * 32);
            }
            small_block<MODE>(p, cur, d, ya, sb, rt0, tok0, ntiles, lane);
#pragma unroll
            for (int i = 0; i < SMALL_MT; ++i) {
                cur[i] = nx1[i];
                nx1[i] = nx2[i];
            }
        }
    }

    // Warps that split K combine in warp order (int8: integer sums, exact).
    if (split > 1) {
        if (warp > 0) {
#pragma unroll
            for (int i = 0; i < SMALL_MT; ++i)
#pragma unroll
                for (int nt = 0; nt < SMALL_NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        uint32_t v;
                        if (grouped) {
                            v = __float_as_uint(ya[i][nt][e]);
                        } else if constexpr (MODE == MODE_I8) {
                            v = (uint32_t)d[i][nt][e];
                        } else {
                            v = __float_as_uint(d[i][nt][e]);
                        }
                        red[warp - 1][(i * SMALL_NT + nt) * 4 + e][lane] = v;
                    }
        }
        __syncthreads();
        if (warp > 0) return;
#pragma unroll
        for (int w = 0; w < SMALL_WARPS - 1; ++w)
#pragma unroll
            for (int i = 0; i < SMALL_MT; ++i)
#pragma unroll
                for (int nt = 0; nt < SMALL_NT; ++nt)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const uint32_t v = red[w][(i * SMALL_NT + nt) * 4 + e][lane];
                        if (grouped) {
                            ya[i][nt][e] += __uint_as_float(v);
                        } else if constexpr (MODE == MODE_I8) {
                            d[i][nt][e] += (int)v;
                        } else {
                            d[i][nt][e] += __uint_as_float(v);
                        }
                    }
    }
    if (!active) return;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int i = 0; i < SMALL_MT; ++i)
#pragma unroll
        for (int nt = 0; nt < SMALL_NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int row = (rt0 + i) * 16 + g + 8 * (e >> 1);
                const int tok = tok0 + nt * 8 + 2 * t + (e & 1);
                if (nt < ntiles) {
                    if (!grouped) fold<MODE>(p, ya[i][nt][e], d[i][nt][e], row, tok, 0);
                    store_out<MODE>(p, ya[i][nt][e], row, tok);
                }
            }
}

// ------------------------------------------------------------- tmm_gemm
constexpr int GEMM_WARPS = 8;  // 4 (rows) x 2 (tokens)
constexpr int GEMM_MT = 2;     // row tiles per warp: 4 x 2 x 16 = 128 rows a block
constexpr int GEMM_NT = 8;     // token tiles per warp: 2 x 8 x 8 = 128 tokens a block
constexpr int GEMM_BN = 128;
constexpr int GEMM_PAD = 16;   // bytes after each staged token row (no bank conflicts)

template <int MODE>
__device__ __forceinline__ void tmm_gemm(const TmmParams& p) {
    typedef typename AccT<MODE>::T Acc;
    extern __shared__ __align__(16) unsigned char smem[];
    constexpr int ESZ = MODE == MODE_I8 ? 1 : 2;
    constexpr int ROWB = 128 * ESZ;            // bytes of one token's superblock
    constexpr int STRIDE = ROWB + GEMM_PAD;    // staged row stride
    constexpr int STAGE = GEMM_BN * STRIDE;    // bytes of one stage
    constexpr int CHUNKS = GEMM_BN * ROWB / 16;  // 16-byte copies per stage

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp >> 1, wn = warp & 1;
    const int g = lane >> 2, t = lane & 3;
    const int rt0 = blockIdx.x * (GEMM_MT * 4) + wm * GEMM_MT;
    const int tok0 = blockIdx.y * GEMM_BN;
    const int iters = p.parts * p.nsb;

    const unsigned char* xg = static_cast<const unsigned char*>(p.x);
    auto stage_load = [&](int it, int buf) {
        const int part = it / p.nsb, sb = it - part * p.nsb;
        const unsigned char* src =
            xg + (((long long)part * p.tok_pad + tok0) * p.kp + (long long)sb * 128) * ESZ;
        unsigned char* dst = smem + buf * STAGE;
#pragma unroll
        for (int c = tid; c < CHUNKS; c += GEMM_WARPS * 32) {
            const int row = c / (ROWB / 16), col = c % (ROWB / 16);
            cp_async16(dst + row * STRIDE + col * 16, src + (long long)row * p.kp * ESZ + col * 16);
        }
        cp_async_commit();
    };

    Acc d[GEMM_MT][GEMM_NT][4];
#pragma unroll
    for (int i = 0; i < GEMM_MT; ++i)
#pragma unroll
        for (int nt = 0; nt < GEMM_NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) d[i][nt][e] = 0;

    const uint4* wrow[GEMM_MT];
#pragma unroll
    for (int i = 0; i < GEMM_MT; ++i) wrow[i] = p.w + (long long)(rt0 + i) * p.nsb * 32 + lane;
    uint4 wcur[GEMM_MT], wnxt[GEMM_MT];
    if (iters > 0) {
        stage_load(0, 0);
#pragma unroll
        for (int i = 0; i < GEMM_MT; ++i) wcur[i] = ld_stream(wrow[i]);
    }
    // ldmatrix row addresses: lane l gives row (l % 8) of matrix l / 8;
    // matrices (token tile 2j, low 16 bytes), (2j, high), (2j+1, low), (2j+1, high).
    const int lrow = wn * (GEMM_NT * 8) + ((lane >> 4) * 8) + (lane & 7);
    const int lcol = ((lane >> 3) & 1) * 16;

    for (int it = 0; it < iters; ++it) {
        const int buf = it & 1;
        if (it + 1 < iters) {
            stage_load(it + 1, buf ^ 1);
            const int sbn = (it + 1) % p.nsb;
#pragma unroll
            for (int i = 0; i < GEMM_MT; ++i) wnxt[i] = ld_stream(wrow[i] + (long long)sbn * 32);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const unsigned char* sb_base = smem + buf * STAGE + lrow * STRIDE + lcol;
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            uint32_t word[GEMM_MT];
#pragma unroll
            for (int i = 0; i < GEMM_MT; ++i)
                word[i] = q == 0 ? wcur[i].x : q == 1 ? wcur[i].y : q == 2 ? wcur[i].z : wcur[i].w;
            if constexpr (MODE == MODE_I8) {
                uint32_t a[GEMM_MT][4];
#pragma unroll
                for (int i = 0; i < GEMM_MT; ++i) {
                    a[i][0] = dec_i8<0>(word[i]);
                    a[i][1] = dec_i8<1>(word[i]);
                    a[i][2] = dec_i8<2>(word[i]);
                    a[i][3] = dec_i8<3>(word[i]);
                }
#pragma unroll
                for (int j = 0; j < GEMM_NT / 2; ++j) {
                    uint32_t b0, b1, b2, b3;
                    ldmatrix_x4(b0, b1, b2, b3, sb_base + j * 16 * STRIDE + q * 32);
#pragma unroll
                    for (int i = 0; i < GEMM_MT; ++i) {
                        mma_s8(d[i][2 * j], a[i], b0, b1);
                        mma_s8(d[i][2 * j + 1], a[i], b2, b3);
                    }
                }
            } else {
#pragma unroll
                for (int s = 0; s < 2; ++s) {
                    uint32_t a[GEMM_MT][4];
#pragma unroll
                    for (int i = 0; i < GEMM_MT; ++i) {
                        if (s == 0) {
                            a[i][0] = dec_h<0, 0>(word[i]);
                            a[i][1] = dec_h<0, 1>(word[i]);
                            a[i][2] = dec_h<0, 2>(word[i]);
                            a[i][3] = dec_h<0, 3>(word[i]);
                        } else {
                            a[i][0] = dec_h<1, 0>(word[i]);
                            a[i][1] = dec_h<1, 1>(word[i]);
                            a[i][2] = dec_h<1, 2>(word[i]);
                            a[i][3] = dec_h<1, 3>(word[i]);
                        }
                    }
#pragma unroll
                    for (int j = 0; j < GEMM_NT / 2; ++j) {
                        uint32_t b0, b1, b2, b3;
                        ldmatrix_x4(b0, b1, b2, b3, sb_base + j * 16 * STRIDE + q * 64 + s * 32);
#pragma unroll
                        for (int i = 0; i < GEMM_MT; ++i) {
                            mma_h<MODE == MODE_F16>(d[i][2 * j], a[i], b0, b1);
                            mma_h<MODE == MODE_F16>(d[i][2 * j + 1], a[i], b2, b3);
                        }
                    }
                }
            }
        }
        __syncthreads();  // the buffer is refilled two iterations from now
#pragma unroll
        for (int i = 0; i < GEMM_MT; ++i) wcur[i] = wnxt[i];
    }

#pragma unroll
    for (int i = 0; i < GEMM_MT; ++i)
#pragma unroll
        for (int nt = 0; nt < GEMM_NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int row = (rt0 + i) * 16 + g + 8 * (e >> 1);
                const int tok = tok0 + wn * (GEMM_NT * 8) + nt * 8 + 2 * t + (e & 1);
                float ya = 0.0f;
                fold<MODE>(p, ya, d[i][nt][e], row, tok, 0);
                store_out<MODE>(p, ya, row, tok);
            }
}

// ------------------------------------------------- activation preparation
// int8 per-token absmax (the reference's quantize_act_row): one block a
// token; writes q [tok_pad][ldq] (zero past cols and for padding tokens),
// the scale 127 / max(max|x|, 1e-5) per token (NaN if the row is not
// finite, so the output is NaN), and, if xsum is given, sum(q) per group of
// group_len columns (group_len % 32 == 0, or >= kp for one group).
template <int DT>
__device__ __forceinline__ void act_quant_i8(const void* x, long long ldx, int tokens, int cols,
                                             int kp, int8_t* q, long long ldq, float* xscale,
                                             int* xsum, int group_len, int ngroups) {
    extern __shared__ int gsum[];  // ngroups ints when xsum != NULL
    __shared__ float wmax[32];
    __shared__ int wbad[32];
    const int n = blockIdx.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int nw = blockDim.x >> 5;
    int8_t* qr = q + (long long)n * ldq;
    if (n >= tokens) {
        for (int k = tid; k < kp; k += blockDim.x) qr[k] = 0;
        if (xsum)
            for (int gi = tid; gi < ngroups; gi += blockDim.x) xsum[(long long)n * ngroups + gi] = 0;
        return;
    }
    if (xsum)
        for (int gi = tid; gi < ngroups; gi += blockDim.x) gsum[gi] = 0;
    const long long base = (long long)n * ldx;
    float m = 0.0f;
    int bad = 0;
    for (int k = tid; k < cols; k += blockDim.x) {
        const float v = load_as_f32<DT>(x, base + k);
        bad |= !isfinite(v);
        m = fmaxf(m, fabsf(v));
    }
    m = warp_reduce(m, [](float a, float b) { return fmaxf(a, b); });
    bad = warp_reduce(bad, [](int a, int b) { return a | b; });
    if (lane == 0) {
        wmax[warp] = m;
        wbad[warp] = bad;
    }
    __syncthreads();
    m = 0.0f;
    bad = 0;
    for (int w = 0; w < nw; ++w) {
        m = fmaxf(m, wmax[w]);
        bad |= wbad[w];
    }
    const float s = bad ? __int_as_float(0x7fc00000) : fdiv(127.0f, fmaxf(m, 1e-5f));
    if (tid == 0 && xscale) xscale[n] = s;
    for (int k0 = 0; k0 < kp; k0 += blockDim.x) {
        const int k = k0 + tid;
        int qi = 0;
        if (k < cols) {
            float r = rintf(fmul(load_as_f32<DT>(x, base + k), s));
            r = fminf(fmaxf(r, -128.0f), 127.0f);
            qi = (int)r;
        }
        if (k < kp) qr[k] = (int8_t)qi;
        if (xsum) {
            // The warp's 32 columns lie in one group (group_len % 32 == 0).
            const int sum = __reduce_add_sync(0xffffffffu, qi);
            const int kw = k0 + warp * 32;
            if (lane == 0 && kw < kp) atomicAdd(&gsum[min(kw / group_len, ngroups - 1)], sum);
        }
    }
    if (xsum) {
        __syncthreads();
        for (int gi = tid; gi < ngroups; gi += blockDim.x) xsum[(long long)n * ngroups + gi] = gsum[gi];
    }
}

// bf16/f16 activations in the permuted layout; f32 input becomes three bf16
// parts (hi + mid + lo) in planes [3][tok_pad][kp].
template <int DT>
__device__ __forceinline__ void act_prep_half(const void* x, long long ldx, int tokens, int cols,
                                              int tok_pad, int kp, uint16_t* out) {
    const long long total = (long long)tok_pad * kp;
    const long long plane = total;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const int n = (int)(idx / kp), i = (int)(idx % kp);
        const int k = (i & ~15) + perm16(i & 15);
        if (DT == DT_F32) {
            float v = (n < tokens && k < cols) ? load_as_f32<DT_F32>(x, (long long)n * ldx + k) : 0.0f;
            uint16_t hi = f32_to_bf16_bits(v);
            if (isfinite(v) && !isfinite(bf16_bits_to_f32(hi)))  // rounded past bf16's max
                hi = (uint16_t)((__float_as_uint(v) >> 16));     // truncate instead
            const float r1 = v - bf16_bits_to_f32(hi);           // exact
            const uint16_t mid = f32_to_bf16_bits(r1);
            const float r2 = r1 - bf16_bits_to_f32(mid);         // exact
            const uint16_t lo = f32_to_bf16_bits(r2);
            out[idx] = hi;
            out[plane + idx] = mid;
            out[2 * plane + idx] = lo;
        } else {
            uint16_t h = 0;
            if (n < tokens && k < cols) h = __ldg(static_cast<const unsigned short*>(x) + (long long)n * ldx + k);
            out[idx] = h;
        }
    }
}

}  // namespace tritter

using namespace tritter;

// --------------------------------------------------------- entry points
// Every kernel name is listed in src/cuda/ternary.rs.
#define TMM_SMALL(NAME, MODE) \
    TRITTER_KERNEL void __launch_bounds__(SMALL_WARPS * 32, 3) NAME(const TmmParams p) { tmm_small<MODE>(p); }
TMM_SMALL(tmm_small_i8, MODE_I8)
TMM_SMALL(tmm_small_bf16, MODE_BF16)
TMM_SMALL(tmm_small_f16, MODE_F16)

#define TMM_GEMM(NAME, MODE) \
    TRITTER_KERNEL void __launch_bounds__(GEMM_WARPS * 32) NAME(const TmmParams p) { tmm_gemm<MODE>(p); }
TMM_GEMM(tmm_gemm_i8, MODE_I8)
TMM_GEMM(tmm_gemm_bf16, MODE_BF16)
TMM_GEMM(tmm_gemm_f16, MODE_F16)

#define ACT_QUANT(NAME, DT)                                                                        \
    TRITTER_KERNEL void NAME(const void* x, long long ldx, int tokens, int cols, int kp, int8_t* q, \
                             long long ldq, float* xscale, int* xsum, int group_len, int ngroups) {    \
        act_quant_i8<DT>(x, ldx, tokens, cols, kp, q, ldq, xscale, xsum, group_len, ngroups);        \
    }
ACT_QUANT(act_quant_i8_f32, DT_F32)
ACT_QUANT(act_quant_i8_bf16, DT_BF16)
ACT_QUANT(act_quant_i8_f16, DT_F16)

#define ACT_PREP(NAME, DT)                                                                     \
    TRITTER_KERNEL void NAME(const void* x, long long ldx, int tokens, int cols, int tok_pad, \
                             int kp, uint16_t* out) {                                          \
        act_prep_half<DT>(x, ldx, tokens, cols, tok_pad, kp, out);                             \
    }
ACT_PREP(act_prep_f32, DT_F32)
ACT_PREP(act_prep_bf16, DT_BF16)
ACT_PREP(act_prep_f16, DT_F16)
