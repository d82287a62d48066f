/* VSA hypervectors through the C ABI only: every operation against a plain C
 * reference on dense int8 trits (written from the documented definitions),
 * and every bad input of each export against its status. */
#include <math.h>
#include <stdint.h>

#include "check.h"

/* ---- the documented random(dim, seed, density), re-implemented in C ---- */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t hash2(uint64_t seed, uint64_t index) {
    return mix64(mix64((seed * 0x9E3779B97F4A7C15ull) ^ 0xD1B54A32D192ED03ull) + index * 0x9E3779B97F4A7C15ull);
}
static void ref_random(size_t dim, uint64_t seed, double density, int8_t *t) {
    for (size_t i = 0; i < dim; i++) {
        uint64_t h = hash2(seed, i);
        double u = (double)(h >> 11) * (1.0 / 9007199254740992.0);
        t[i] = u < density ? ((h & 1) == 0 ? 1 : -1) : 0;
    }
}

static size_t words_of(size_t dim) { return 2 * ((dim + 63) / 64); }

static void ref_pack(const int8_t *t, size_t dim, uint64_t *w) {
    size_t W = (dim + 63) / 64;
    memset(w, 0, 2 * W * sizeof(uint64_t));
    for (size_t i = 0; i < dim; i++) {
        if (t[i] == 1) w[i / 64] |= 1ull << (i % 64);
        if (t[i] == -1) w[W + i / 64] |= 1ull << (i % 64);
    }
}

static int8_t mod3(int v) { return (int8_t)(v == 2 ? -1 : (v == -2 ? 1 : v)); }

static void *xmalloc(size_t n) { return malloc(n ? n : 1); }

static void test_ops(size_t dim) {
    size_t nw = words_of(dim);
    int8_t *a = xmalloc(dim), *b = xmalloc(dim), *r = xmalloc(dim), *got = xmalloc(dim);
    uint64_t *pa = xmalloc(nw * 8), *pb = xmalloc(nw * 8), *pr = xmalloc(nw * 8), *po = xmalloc(nw * 8);
    size_t w = 0;
    CHECK_OK(tritter_hv_packed_words(dim, &w));
    CHECK(w == nw);

    /* random: packed and dense agree with the C re-implementation */
    const double dens[3] = {1.0, 0.5, 0.1};
    for (int di = 0; di < 3; di++) {
        ref_random(dim, 42 + (uint64_t)di, dens[di], r);
        CHECK_OK(tritter_hv_random_dense(dim, 42 + (uint64_t)di, dens[di], got, dim));
        CHECK(dim == 0 || memcmp(r, got, dim) == 0);
        ref_pack(r, dim, pr);
        CHECK_OK(tritter_hv_random(dim, 42 + (uint64_t)di, dens[di], po, nw));
        CHECK(nw == 0 || memcmp(pr, po, nw * 8) == 0);
    }
    ref_random(dim, 1, 0.7, a);
    ref_random(dim, 2, 1.0, b);
    /* pack / unpack */
    CHECK_OK(tritter_hv_pack(a, dim, pa, nw));
    ref_pack(a, dim, pr);
    CHECK(nw == 0 || memcmp(pa, pr, nw * 8) == 0);
    CHECK_OK(tritter_hv_unpack(pa, nw, dim, got, dim));
    CHECK(dim == 0 || memcmp(a, got, dim) == 0);
    CHECK_OK(tritter_hv_pack(b, dim, pb, nw));

    /* bind / unbind, both algebras */
    for (uint32_t alg = 0; alg < 2; alg++) {
        CHECK_OK(tritter_hv_bind(pa, pb, nw, dim, alg, po, nw));
        CHECK_OK(tritter_hv_unpack(po, nw, dim, got, dim));
        for (size_t i = 0; i < dim; i++) CHECK(got[i] == (alg == 0 ? a[i] * b[i] : mod3(a[i] + b[i])));
        /* unbind(bind(a, b), b) = a: exactly for modular, and for MAP since b is bipolar */
        CHECK_OK(tritter_hv_unbind(po, pb, nw, dim, alg, pr, nw));
        CHECK(nw == 0 || memcmp(pr, pa, nw * 8) == 0);
    }
    CHECK_OK(tritter_hv_unbind(pa, pb, nw, dim, TRITTER_VSA_ALGEBRA_MODULAR, po, nw));
    CHECK_OK(tritter_hv_unpack(po, nw, dim, got, dim));
    for (size_t i = 0; i < dim; i++) CHECK(got[i] == mod3(a[i] - b[i]));

    /* permute: out[(i + k) mod dim] = a[i] */
    const int64_t shifts[5] = {0, 1, -3, 64, 1000003};
    for (int s = 0; s < 5 && dim; s++) {
        CHECK_OK(tritter_hv_permute(pa, nw, dim, shifts[s], po, nw));
        CHECK_OK(tritter_hv_unpack(po, nw, dim, got, dim));
        int64_t k = ((shifts[s] % (int64_t)dim) + (int64_t)dim) % (int64_t)dim;
        for (size_t i = 0; i < dim; i++) CHECK(got[(i + (size_t)k) % dim] == a[i]);
        CHECK_OK(tritter_hv_permute(po, nw, dim, -shifts[s], pr, nw));
        CHECK(memcmp(pr, pa, nw * 8) == 0);
    }

    /* similarity */
    long dot = 0, na = 0, nb = 0, ham = 0;
    for (size_t i = 0; i < dim; i++) {
        dot += a[i] * b[i];
        na += a[i] != 0;
        nb += b[i] != 0;
        ham += a[i] != b[i];
    }
    double s;
    CHECK_OK(tritter_hv_similarity(pa, pb, nw, dim, TRITTER_VSA_METRIC_DOT, &s));
    CHECK(s == (double)dot);
    CHECK_OK(tritter_hv_similarity(pa, pb, nw, dim, TRITTER_VSA_METRIC_COSINE, &s));
    CHECK(s == (na && nb ? (double)dot / sqrt((double)na * (double)nb) : 0.0));
    CHECK_OK(tritter_hv_similarity(pa, pb, nw, dim, TRITTER_VSA_METRIC_HAMMING, &s));
    CHECK(s == (double)ham);

    free(a); free(b); free(r); free(got); free(pa); free(pb); free(pr); free(po);
}

static void test_bundle(size_t dim, size_t n) {
    size_t nw = words_of(dim);
    int8_t *t = xmalloc(n * dim), *tv = xmalloc(dim), *got = xmalloc(dim);
    uint64_t *v = xmalloc(n * nw * 8), *out = xmalloc(nw * 8), *out2 = xmalloc(nw * 8);
    int32_t *wt = xmalloc(n * 4);
    for (size_t k = 0; k < n; k++) {
        ref_random(dim, 100 + k, k % 2 ? 0.5 : 1.0, t + k * dim);
        ref_pack(t + k * dim, dim, v + k * nw);
        wt[k] = (int32_t)(k % 5) - 2;
    }
    ref_random(dim, 9, 1.0, tv);
    tritter_bundle_accumulator_t *acc = NULL;
    CHECK_OK(tritter_bundle_accumulator_new(dim, &acc));
    for (int weighted = 0; weighted < 2; weighted++) {
        CHECK_OK(tritter_bundle_accumulator_reset(acc));
        for (size_t k = 0; k < n; k++) CHECK_OK(tritter_bundle_accumulator_add(acc, v + k * nw, nw, weighted ? wt[k] : 1));
        uint64_t len = 99;
        CHECK_OK(tritter_bundle_accumulator_len(acc, &len));
        CHECK(len == n);
        for (uint32_t tie = 0; tie < 2; tie++) {
            CHECK_OK(tritter_hv_bundle(v, n * nw, n, dim, weighted ? wt : NULL, weighted ? n : 0, tie, 9, out, nw));
            CHECK_OK(tritter_hv_unpack(out, nw, dim, got, dim));
            for (size_t i = 0; i < dim; i++) {
                long sum = 0;
                for (size_t k = 0; k < n; k++) sum += (long)(weighted ? wt[k] : 1) * t[k * dim + i];
                int8_t want = sum > 0 ? 1 : (sum < 0 ? -1 : (tie ? tv[i] : 0));
                CHECK(got[i] == want);
            }
            CHECK_OK(tritter_bundle_accumulator_finish(acc, tie, 9, out2, nw));
            CHECK(nw == 0 || memcmp(out, out2, nw * 8) == 0);
        }
    }
    tritter_bundle_accumulator_free(acc);
    free(t); free(tv); free(got); free(v); free(out); free(out2); free(wt);
}

static void test_item_memory(void) {
    const size_t dim = 333, n = 500, nw = words_of(333);
    int8_t *t = xmalloc(n * dim), q[333];
    uint64_t *v = xmalloc(n * nw * 8), pq[12], row[12];
    tritter_item_memory_t *m = NULL;
    CHECK_OK(tritter_item_memory_new(dim, &m));
    for (size_t k = 0; k < n; k++) {
        ref_random(dim, 7000 + k, k % 3 ? 1.0 : 0.3, t + k * dim);
        ref_pack(t + k * dim, dim, v + k * nw);
        size_t idx = 99;
        CHECK_OK(tritter_item_memory_add(m, v + k * nw, nw, 1000 + k, &idx));
        CHECK(idx == k);
    }
    CHECK_OK(tritter_item_memory_add(m, v + 17 * nw, nw, 1500, NULL)); /* a duplicate of row 17 */
    size_t len = 0, d = 0;
    CHECK_OK(tritter_item_memory_len(m, &len));
    CHECK_OK(tritter_item_memory_dim(m, &d));
    CHECK(len == n + 1 && d == dim);
    uint64_t label = 0;
    CHECK_OK(tritter_item_memory_get(m, 17, row, nw, &label));
    CHECK(label == 1017 && memcmp(row, v + 17 * nw, nw * 8) == 0);

    /* query: a noisy copy of row 17 (every 5th trit zeroed) */
    memcpy(q, t + 17 * dim, dim);
    for (size_t i = 0; i < dim; i += 5) q[i] = 0;
    CHECK_OK(tritter_hv_pack(q, dim, pq, nw));
    for (uint32_t metric = 0; metric < 3; metric++) {
        /* brute force in C: scores for all rows (row n is the duplicate of 17) */
        double sc[501];
        for (size_t k = 0; k <= n; k++) {
            const int8_t *r = t + (k == n ? 17 : k) * dim;
            long dot = 0, na = 0, nb = 0, ham = 0;
            for (size_t i = 0; i < dim; i++) {
                dot += q[i] * r[i];
                na += q[i] != 0;
                nb += r[i] != 0;
                ham += q[i] != r[i];
            }
            sc[k] = metric == 0 ? (double)dot
                  : metric == 1 ? (na && nb ? (double)dot / sqrt((double)na * (double)nb) : 0.0)
                                : (double)ham;
        }
        uint64_t labels[8];
        double scores[8];
        size_t found = 0;
        CHECK_OK(tritter_item_memory_query_topk(m, pq, nw, 8, metric, labels, scores, 8, &found));
        CHECK(found == 8);
        /* selection by repeated scans: nearest first, ties to the lower index */
        int used[501] = {0};
        for (size_t j = 0; j < 8; j++) {
            size_t best = 0;
            int have = 0;
            for (size_t k = 0; k <= n; k++) {
                if (used[k]) continue;
                int better = !have || (metric == 2 ? sc[k] < sc[best] : sc[k] > sc[best]);
                if (better) { best = k; have = 1; }
            }
            used[best] = 1;
            CHECK(labels[j] == (best == n ? 1500 : 1000 + best));
            CHECK(scores[j] == sc[best]);
        }
        CHECK(labels[0] == 1017 && labels[1] == 1500);
        double all[501];
        CHECK_OK(tritter_item_memory_similarities(m, pq, nw, metric, all, n + 1));
        for (size_t k = 0; k <= n; k++) CHECK(all[k] == sc[k]);
        /* one-vs-many over the same rows */
        CHECK_OK(tritter_hv_similarity_many(pq, nw, v, n * nw, n, dim, metric, all, n));
        for (size_t k = 0; k < n; k++) CHECK(all[k] == sc[k]);
    }
    /* k larger than the memory; scores optional */
    uint64_t many[600];
    size_t found = 0;
    CHECK_OK(tritter_item_memory_query_topk(m, pq, nw, 600, TRITTER_VSA_METRIC_DOT, many, NULL, 600, &found));
    CHECK(found == n + 1);
    CHECK_OK(tritter_item_memory_query_topk(m, pq, nw, 0, TRITTER_VSA_METRIC_DOT, NULL, NULL, 0, &found));
    CHECK(found == 0);

    /* bad inputs */
    uint64_t l8[8];
    double s8[8];
    CHECK_ERR(tritter_item_memory_new(10, NULL), TRITTER_ERR_NULL_POINTER, "memory_out");
    CHECK_ERR(tritter_item_memory_add(NULL, pq, nw, 0, NULL), TRITTER_ERR_NULL_POINTER, "memory");
    CHECK_ERR(tritter_item_memory_add(m, NULL, nw, 0, NULL), TRITTER_ERR_NULL_POINTER, "vector");
    CHECK_ERR(tritter_item_memory_add(m, pq, nw - 1, 0, NULL), TRITTER_ERR_SHAPE_MISMATCH, "vector");
    CHECK_ERR(tritter_item_memory_add(m, pq, SIZE_MAX, 0, NULL), TRITTER_ERR_SHAPE_MISMATCH, "vector");
    uint64_t bad[12];
    memcpy(bad, pq, sizeof bad);
    bad[0] |= 1;
    bad[6] |= 1; /* trit 0 both + and - */
    CHECK_ERR(tritter_item_memory_add(m, bad, nw, 0, NULL), TRITTER_ERR_INVALID_DATA, "vector");
    memcpy(bad, pq, sizeof bad);
    bad[5] |= 1ull << 63; /* padding bit past dim 333 */
    CHECK_ERR(tritter_item_memory_query_topk(m, bad, nw, 8, 0, l8, s8, 8, &found), TRITTER_ERR_INVALID_DATA, "query");
    CHECK_ERR(tritter_item_memory_query_topk(m, pq, nw, 8, 3, l8, s8, 8, &found), TRITTER_ERR_INVALID_ARGUMENT, "metric");
    CHECK_ERR(tritter_item_memory_query_topk(m, pq, nw, 8, 0, l8, s8, 7, &found), TRITTER_ERR_BUFFER_TOO_SMALL, "labels_out");
    CHECK_ERR(tritter_item_memory_query_topk(m, pq, nw, 8, 0, NULL, s8, 8, &found), TRITTER_ERR_NULL_POINTER, "labels_out");
    CHECK_ERR(tritter_item_memory_query_topk(m, pq, nw, 8, 0, l8, s8, 8, NULL), TRITTER_ERR_NULL_POINTER, "found_out");
    CHECK_ERR(tritter_item_memory_query_topk(NULL, pq, nw, 8, 0, l8, s8, 8, &found), TRITTER_ERR_NULL_POINTER, "memory");
    CHECK_ERR(tritter_item_memory_query_topk(m, pq, 3, 8, 0, l8, s8, 8, &found), TRITTER_ERR_SHAPE_MISMATCH, "query");
    CHECK_ERR(tritter_item_memory_similarities(m, pq, nw, 0, s8, 8), TRITTER_ERR_BUFFER_TOO_SMALL, "scores_out");
    CHECK_ERR(tritter_item_memory_similarities(m, pq, nw, 9, s8, 8), TRITTER_ERR_INVALID_ARGUMENT, "metric");
    CHECK_ERR(tritter_item_memory_get(m, n + 1, row, nw, NULL), TRITTER_ERR_INVALID_ARGUMENT, "index");
    CHECK_ERR(tritter_item_memory_get(m, 0, row, nw - 1, NULL), TRITTER_ERR_BUFFER_TOO_SMALL, "out");
    CHECK_ERR(tritter_item_memory_len(m, NULL), TRITTER_ERR_NULL_POINTER, "len_out");
    CHECK_ERR(tritter_item_memory_len(NULL, &len), TRITTER_ERR_NULL_POINTER, "memory");
    CHECK_ERR(tritter_item_memory_dim(m, NULL), TRITTER_ERR_NULL_POINTER, "dim_out");
    /* a huge dim is accepted lazily (nothing allocated) but no vector fits it */
    tritter_item_memory_t *huge = NULL;
    CHECK_OK(tritter_item_memory_new(SIZE_MAX, &huge));
    CHECK_ERR(tritter_item_memory_add(huge, pq, nw, 0, NULL), TRITTER_ERR_SHAPE_MISMATCH, "vector");
    tritter_item_memory_free(huge);
    tritter_item_memory_free(m);
    tritter_item_memory_free(NULL);
    free(t); free(v);
}

static void test_bad_inputs(void) {
    const size_t dim = 100, nw = words_of(100);
    uint64_t a[4], b[4], o[4], bad[4];
    int8_t t[100];
    double s;
    size_t w;
    CHECK_OK(tritter_hv_random(dim, 1, 1.0, a, nw));
    CHECK_OK(tritter_hv_random(dim, 2, 0.5, b, nw));
    memcpy(bad, a, sizeof bad);
    bad[2] |= a[0] & (0ull - a[0]); /* the lowest + bit also set in the minus plane */

    CHECK_ERR(tritter_hv_packed_words(dim, NULL), TRITTER_ERR_NULL_POINTER, "words_out");
    CHECK_OK(tritter_hv_packed_words(SIZE_MAX, &w));
    CHECK(w == 2 * (SIZE_MAX / 64 + 1));

    CHECK_ERR(tritter_hv_random(dim, 1, 1.5, o, nw), TRITTER_ERR_INVALID_ARGUMENT, "density");
    CHECK_ERR(tritter_hv_random(dim, 1, -0.1, o, nw), TRITTER_ERR_INVALID_ARGUMENT, "density");
    CHECK_ERR(tritter_hv_random(dim, 1, NAN, o, nw), TRITTER_ERR_INVALID_ARGUMENT, "density");
    CHECK_ERR(tritter_hv_random(dim, 1, 1.0, o, nw - 1), TRITTER_ERR_BUFFER_TOO_SMALL, "words_out");
    CHECK_ERR(tritter_hv_random(dim, 1, 1.0, NULL, nw), TRITTER_ERR_NULL_POINTER, "words_out");
    CHECK_ERR(tritter_hv_random(SIZE_MAX, 1, 1.0, o, nw), TRITTER_ERR_BUFFER_TOO_SMALL, "words_out");
    CHECK_ERR(tritter_hv_random_dense(dim, 1, 1.0, t, 99), TRITTER_ERR_BUFFER_TOO_SMALL, "trits_out");
    CHECK_ERR(tritter_hv_random_dense(dim, 1, 2.0, t, 100), TRITTER_ERR_INVALID_ARGUMENT, "density");
    CHECK_OK(tritter_hv_random(0, 1, 1.0, NULL, 0)); /* dim 0: an empty vector */

    CHECK_ERR(tritter_hv_pack(NULL, dim, o, nw), TRITTER_ERR_NULL_POINTER, "trits");
    CHECK_ERR(tritter_hv_pack(t, SIZE_MAX, o, nw), TRITTER_ERR_SIZE_OVERFLOW, "trits");
    CHECK_OK(tritter_hv_random_dense(dim, 1, 1.0, t, dim));
    t[50] = 2;
    CHECK_ERR(tritter_hv_pack(t, dim, o, nw), TRITTER_ERR_INVALID_DATA, "trits");
    t[50] = 1;
    CHECK_ERR(tritter_hv_pack(t, dim, o, 3), TRITTER_ERR_BUFFER_TOO_SMALL, "words_out");
    CHECK_ERR(tritter_hv_unpack(bad, nw, dim, t, dim), TRITTER_ERR_INVALID_DATA, "words");
    CHECK_ERR(tritter_hv_unpack(a, nw + 1, dim, t, dim), TRITTER_ERR_SHAPE_MISMATCH, "words");
    CHECK_ERR(tritter_hv_unpack(a, nw, dim, t, 10), TRITTER_ERR_BUFFER_TOO_SMALL, "trits_out");

    CHECK_ERR(tritter_hv_bind(a, b, nw, dim, 2, o, nw), TRITTER_ERR_INVALID_ARGUMENT, "algebra");
    CHECK_ERR(tritter_hv_bind(NULL, b, nw, dim, 0, o, nw), TRITTER_ERR_NULL_POINTER, "a");
    CHECK_ERR(tritter_hv_bind(a, NULL, nw, dim, 0, o, nw), TRITTER_ERR_NULL_POINTER, "b");
    CHECK_ERR(tritter_hv_bind(a, b, nw, dim, 0, NULL, nw), TRITTER_ERR_NULL_POINTER, "out");
    CHECK_ERR(tritter_hv_bind(a, b, nw, dim, 0, o, 1), TRITTER_ERR_BUFFER_TOO_SMALL, "out");
    CHECK_ERR(tritter_hv_bind(a, b, nw, 30, 0, o, nw), TRITTER_ERR_SHAPE_MISMATCH, "a");
    CHECK_ERR(tritter_hv_bind(a, bad, nw, dim, 1, o, nw), TRITTER_ERR_INVALID_DATA, "b");
    CHECK_ERR(tritter_hv_bind(a, b, w, SIZE_MAX, 0, o, nw), TRITTER_ERR_BUFFER_TOO_SMALL, "out");
    CHECK_ERR(tritter_hv_bind(a, b, SIZE_MAX, dim, 0, o, nw), TRITTER_ERR_SHAPE_MISMATCH, "a");
    CHECK_ERR(tritter_hv_unbind(bad, b, nw, dim, 0, o, nw), TRITTER_ERR_INVALID_DATA, "c");
    CHECK_ERR(tritter_hv_unbind(a, b, nw, dim, 7, o, nw), TRITTER_ERR_INVALID_ARGUMENT, "algebra");

    CHECK_ERR(tritter_hv_permute(bad, nw, dim, 1, o, nw), TRITTER_ERR_INVALID_DATA, "a");
    CHECK_ERR(tritter_hv_permute(a, nw, dim, 1, o, 0), TRITTER_ERR_BUFFER_TOO_SMALL, "out");
    CHECK_ERR(tritter_hv_permute(a, 0, dim, 1, o, nw), TRITTER_ERR_SHAPE_MISMATCH, "a");

    CHECK_ERR(tritter_hv_similarity(a, b, nw, dim, 3, &s), TRITTER_ERR_INVALID_ARGUMENT, "metric");
    CHECK_ERR(tritter_hv_similarity(a, b, nw, dim, 0, NULL), TRITTER_ERR_NULL_POINTER, "score_out");
    CHECK_ERR(tritter_hv_similarity(a, bad, nw, dim, 0, &s), TRITTER_ERR_INVALID_DATA, "b");
    CHECK_ERR(tritter_hv_similarity(a, b, nw - 1, dim, 0, &s), TRITTER_ERR_SHAPE_MISMATCH, "a");

    uint64_t rows[8];
    double sc[2];
    memcpy(rows, a, 32);
    memcpy(rows + 4, b, 32);
    CHECK_ERR(tritter_hv_similarity_many(a, nw, rows, 7, 2, dim, 0, sc, 2), TRITTER_ERR_SHAPE_MISMATCH, "rows_len");
    CHECK_ERR(tritter_hv_similarity_many(a, nw, rows, 8, 2, dim, 0, sc, 1), TRITTER_ERR_BUFFER_TOO_SMALL, "scores_out");
    CHECK_ERR(tritter_hv_similarity_many(a, nw, NULL, 8, 2, dim, 0, sc, 2), TRITTER_ERR_NULL_POINTER, "rows");
    CHECK_ERR(tritter_hv_similarity_many(a, nw, rows, 8, SIZE_MAX, dim, 0, sc, 2), TRITTER_ERR_SIZE_OVERFLOW, "n");
    CHECK_ERR(tritter_hv_similarity_many(a, nw, rows, 8, 2, dim, 5, sc, 2), TRITTER_ERR_INVALID_ARGUMENT, "metric");
    memcpy(rows + 4, bad, 32);
    CHECK_ERR(tritter_hv_similarity_many(a, nw, rows, 8, 2, dim, 0, sc, 2), TRITTER_ERR_INVALID_DATA, "rows");

    int32_t wts[2] = {1, 2};
    CHECK_ERR(tritter_hv_bundle(rows, 8, 2, dim, NULL, 0, 0, 0, o, nw), TRITTER_ERR_INVALID_DATA, "vectors");
    memcpy(rows + 4, b, 32);
    CHECK_ERR(tritter_hv_bundle(rows, 8, 2, dim, NULL, 0, 2, 0, o, nw), TRITTER_ERR_INVALID_ARGUMENT, "tie_rule");
    CHECK_ERR(tritter_hv_bundle(rows, 7, 2, dim, NULL, 0, 0, 0, o, nw), TRITTER_ERR_SHAPE_MISMATCH, "vectors_len");
    CHECK_ERR(tritter_hv_bundle(rows, 8, 2, dim, wts, 1, 0, 0, o, nw), TRITTER_ERR_SHAPE_MISMATCH, "weights_len");
    CHECK_ERR(tritter_hv_bundle(rows, 8, 2, dim, NULL, 2, 0, 0, o, nw), TRITTER_ERR_NULL_POINTER, "weights");
    CHECK_ERR(tritter_hv_bundle(NULL, 8, 2, dim, NULL, 0, 0, 0, o, nw), TRITTER_ERR_NULL_POINTER, "vectors");
    CHECK_ERR(tritter_hv_bundle(rows, 8, 2, dim, NULL, 0, 0, 0, o, 2), TRITTER_ERR_BUFFER_TOO_SMALL, "out");
    CHECK_ERR(tritter_hv_bundle(rows, 8, SIZE_MAX / 2, dim, NULL, 0, 0, 0, o, nw), TRITTER_ERR_SIZE_OVERFLOW, "n");
    /* n = 0: all ties -> zero vector, or the tie vector */
    CHECK_OK(tritter_hv_bundle(NULL, 0, 0, dim, NULL, 0, TRITTER_VSA_TIE_ZERO, 0, o, nw));
    CHECK(o[0] == 0 && o[1] == 0 && o[2] == 0 && o[3] == 0);
    CHECK_OK(tritter_hv_bundle(NULL, 0, 0, dim, NULL, 0, TRITTER_VSA_TIE_RANDOM, 1, o, nw));
    CHECK(memcmp(o, a, 32) == 0); /* random(dim, 1, 1.0) */

    tritter_bundle_accumulator_t *acc = NULL;
    CHECK_ERR(tritter_bundle_accumulator_new(dim, NULL), TRITTER_ERR_NULL_POINTER, "acc_out");
    CHECK_ERR(tritter_bundle_accumulator_new(SIZE_MAX, &acc), TRITTER_ERR_SIZE_OVERFLOW, "dim");
    CHECK_OK(tritter_bundle_accumulator_new(dim, &acc));
    CHECK_ERR(tritter_bundle_accumulator_add(NULL, a, nw, 1), TRITTER_ERR_NULL_POINTER, "acc");
    CHECK_ERR(tritter_bundle_accumulator_add(acc, bad, nw, 1), TRITTER_ERR_INVALID_DATA, "vector");
    CHECK_ERR(tritter_bundle_accumulator_add(acc, a, 2, 1), TRITTER_ERR_SHAPE_MISMATCH, "vector");
    CHECK_ERR(tritter_bundle_accumulator_add(acc, NULL, nw, 1), TRITTER_ERR_NULL_POINTER, "vector");
    CHECK_ERR(tritter_bundle_accumulator_finish(acc, 5, 0, o, nw), TRITTER_ERR_INVALID_ARGUMENT, "tie_rule");
    CHECK_ERR(tritter_bundle_accumulator_finish(acc, 0, 0, o, 3), TRITTER_ERR_BUFFER_TOO_SMALL, "out");
    CHECK_ERR(tritter_bundle_accumulator_finish(NULL, 0, 0, o, nw), TRITTER_ERR_NULL_POINTER, "acc");
    CHECK_ERR(tritter_bundle_accumulator_len(acc, NULL), TRITTER_ERR_NULL_POINTER, "len_out");
    CHECK_ERR(tritter_bundle_accumulator_reset(NULL), TRITTER_ERR_NULL_POINTER, "acc");
    /* finish before any add: all ties (a valid call, not an error) */
    CHECK_OK(tritter_bundle_accumulator_finish(acc, TRITTER_VSA_TIE_ZERO, 0, o, nw));
    CHECK(o[0] == 0 && o[3] == 0);
    /* the most negative weight negates the vector */
    CHECK_OK(tritter_bundle_accumulator_add(acc, a, nw, INT32_MIN));
    CHECK_OK(tritter_bundle_accumulator_finish(acc, TRITTER_VSA_TIE_ZERO, 0, o, nw));
    CHECK(o[0] == a[2] && o[2] == a[0]); /* negated */
    tritter_bundle_accumulator_free(acc);
    tritter_bundle_accumulator_free(NULL);
}

int main(void) {
    const size_t dims[] = {0, 1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 255, 256, 257, 1000};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        test_ops(dims[i]);
        test_bundle(dims[i], 0);
        test_bundle(dims[i], 1);
        test_bundle(dims[i], 4);
        test_bundle(dims[i], 37);
    }
    test_item_memory();
    test_bad_inputs();
    CHECK_DONE("vsa");
}
