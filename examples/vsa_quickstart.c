/* VSA from C (docs/vsa.md example): bind, bundle, and a cleanup-memory query.
 * Built and run by `cargo test --test ffi` like the programs in ffi-tests/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tritter_accel.h"

#define OK(call)                                                                      \
    do {                                                                              \
        if ((call) != TRITTER_OK) {                                                   \
            fprintf(stderr, "%s failed: %s\n", #call, tritter_last_error());          \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

int main(void) {
    const size_t dim = 10000;
    size_t nw = 0;
    OK(tritter_hv_packed_words(dim, &nw)); /* 2 * ceil(dim / 64) = 314 words */
    uint64_t *key = malloc(nw * 8), *val = malloc(nw * 8), *pair = malloc(nw * 8), *back = malloc(nw * 8);
    uint64_t *items = malloc(3 * nw * 8), *bundle = malloc(nw * 8);
    OK(tritter_hv_random(dim, 1, 1.0, key, nw)); /* bipolar: density 1 */
    OK(tritter_hv_random(dim, 2, 1.0, val, nw));

    /* MAP bind is self-inverse on bipolar keys: unbind(bind(v, k), k) == v */
    OK(tritter_hv_bind(val, key, nw, dim, TRITTER_VSA_ALGEBRA_MAP, pair, nw));
    OK(tritter_hv_unbind(pair, key, nw, dim, TRITTER_VSA_ALGEBRA_MAP, back, nw));
    double cos = 0;
    OK(tritter_hv_similarity(back, val, nw, dim, TRITTER_VSA_METRIC_COSINE, &cos));
    printf("cos(unbind(bind(v, k), k), v) = %.3f\n", cos);

    /* A cleanup memory of 3 items, queried with their bundle: all 3 come back on top. */
    tritter_item_memory_t *mem = NULL;
    OK(tritter_item_memory_new(dim, &mem));
    for (uint64_t i = 0; i < 3; i++) {
        OK(tritter_hv_random(dim, 100 + i, 1.0, items + i * nw, nw));
        OK(tritter_item_memory_add(mem, items + i * nw, nw, 100 + i, NULL));
    }
    for (uint64_t i = 0; i < 1000; i++) { /* distractors */
        OK(tritter_hv_random(dim, 5000 + i, 1.0, bundle, nw));
        OK(tritter_item_memory_add(mem, bundle, nw, 5000 + i, NULL));
    }
    OK(tritter_hv_bundle(items, 3 * nw, 3, dim, NULL, 0, TRITTER_VSA_TIE_ZERO, 0, bundle, nw));
    uint64_t labels[4];
    double scores[4];
    size_t found = 0;
    OK(tritter_item_memory_query_topk(mem, bundle, nw, 4, TRITTER_VSA_METRIC_COSINE, labels, scores, 4, &found));
    for (size_t j = 0; j < found; j++) printf("#%zu: label %llu, cosine %.3f\n", j + 1, (unsigned long long)labels[j], scores[j]);
    int ok = cos == 1.0 && labels[0] >= 100 && labels[0] <= 102 && labels[1] >= 100 && labels[1] <= 102 &&
             labels[2] >= 100 && labels[2] <= 102 && labels[3] >= 5000;
    tritter_item_memory_free(mem);
    free(key); free(val); free(pair); free(back); free(items); free(bundle);
    return ok ? 0 : 1;
}
