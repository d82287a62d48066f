// Packed ternary hypervectors on the GPU: the twins of src/vsa/ops.rs, bit
// for bit. A vector of `dim` trits is two bit planes of w = ceil(dim / 64)
// u64 words (+1 plane, then -1 plane). Not yet: bundle, permute, top-k.
#include "common.cuh"

using namespace tritter;

// out[r] = bind(a[r], b[r or 0]): MAP (element-wise product) or modular
// (balanced ternary sum mod 3; unbind adds -b, i.e. b's planes swapped).
TRITTER_KERNEL void hv_bind(const uint64_t* a, const uint64_t* b, uint64_t* out, long long n, int w,
                            long long b_stride, int modular, int unbind) {
    const long long total = n * w;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const long long r = idx / w;
        const int i = (int)(idx % w);
        const uint64_t* ar = a + r * 2 * w;
        const uint64_t* br = b + r * b_stride;
        const uint64_t ap = __ldg(ar + i), am = __ldg(ar + w + i);
        uint64_t bp = __ldg(br + i), bm = __ldg(br + w + i);
        uint64_t p, m;
        if (modular) {
            if (unbind) {
                const uint64_t t = bp;
                bp = bm;
                bm = t;
            }
            const uint64_t az = ~(ap | am), bz = ~(bp | bm);
            p = (ap & bz) | (bp & az) | (am & bm);
            m = (am & bz) | (bm & az) | (ap & bp);
        } else {
            p = (ap & bp) | (am & bm);
            m = (ap & bm) | (am & bp);
        }
        out[r * 2 * w + i] = p;
        out[r * 2 * w + w + i] = m;
    }
}

// One warp per row: the popcounts of the reference (agree, disagree,
// nnz(q), nnz(row)), then Metric::score in f64 (0 dot, 1 cosine, 2 Hamming).
TRITTER_KERNEL void hv_similarity_many(const uint64_t* q, const uint64_t* rows, long long n, int w,
                                       int metric, double* out) {
    const long long r = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (r >= n) return;
    const uint64_t* row = rows + r * 2 * w;
    unsigned long long agree = 0, dis = 0, na = 0, nb = 0;
    for (int i = lane; i < w; i += 32) {
        const uint64_t qp = __ldg(q + i), qm = __ldg(q + w + i);
        const uint64_t rp = __ldg(row + i), rm = __ldg(row + w + i);
        agree += __popcll(qp & rp) + __popcll(qm & rm);
        dis += __popcll(qp & rm) + __popcll(qm & rp);
        na += __popcll(qp) + __popcll(qm);
        nb += __popcll(rp) + __popcll(rm);
    }
    auto add = [](unsigned long long x, unsigned long long y) { return x + y; };
    agree = warp_reduce(agree, add);
    dis = warp_reduce(dis, add);
    na = warp_reduce(na, add);
    nb = warp_reduce(nb, add);
    if (lane != 0) return;
    double s;
    if (metric == 0) {
        s = __dsub_rn((double)agree, (double)dis);
    } else if (metric == 1) {
        s = (na == 0 || nb == 0) ? 0.0
                                 : __ddiv_rn(__dsub_rn((double)agree, (double)dis),
                                             __dsqrt_rn(__dmul_rn((double)na, (double)nb)));
    } else {
        s = (double)(na + nb - 2 * agree - dis);
    }
    out[r] = s;
}
