/* Quantize, pack and multiply through the C ABI (README example).
 * Build: cc -std=c11 -Iinclude examples/quickstart.c -Ltarget/release -ltritter_accel -Wl,-rpath,target/release */
#include <stdio.h>
#include <stdlib.h>

#include "tritter_accel.h"

#define TRY(call)                                                                      \
    do {                                                                               \
        tritter_status_t st = (call);                                                  \
        if (st != TRITTER_OK) {                                                        \
            fprintf(stderr, "%s: %s\n", tritter_status_name(st), tritter_last_error()); \
            return 1;                                                                  \
        }                                                                              \
    } while (0)

int main(void) {
    enum { OUT = 3, IN = 8 };
    float w[OUT * IN], x[IN], y[OUT];
    for (int i = 0; i < OUT * IN; i++) w[i] = (float)((i * 7) % 11) - 5.0f;
    for (int i = 0; i < IN; i++) x[i] = 0.5f * (float)i;

    if (tritter_abi_version() != TRITTER_ABI_VERSION) return 1;
    tritter_quant_config_t cfg;
    TRY(tritter_quant_config_default(&cfg)); /* AbsMean, one scale per output row */

    tritter_ternary_matrix_t *m = NULL;
    TRY(tritter_ternary_matrix_from_f32(w, OUT, IN, &cfg, &m));
    tritter_matrix_info_t info;
    TRY(tritter_ternary_matrix_info(m, &info));
    TRY(tritter_ternary_matrix_matmul(m, x, 1, IN, NULL, 0, TRITTER_ACT_F32, y, OUT));
    printf("tritter-accel %s: %zux%zu weights in %zu bytes; y = [%.3f, %.3f, %.3f]\n", tritter_version(), info.rows,
           info.cols, info.memory_bytes, y[0], y[1], y[2]);

    /* Errors come back as a status plus a message naming the argument. */
    tritter_status_t st = tritter_ternary_matrix_matmul(m, x, 1, IN - 1, NULL, 0, TRITTER_ACT_F32, y, OUT);
    printf("wrong shape -> %s: %s\n", tritter_status_name(st), tritter_last_error());
    tritter_ternary_matrix_free(m);
    return st == TRITTER_ERR_SHAPE_MISMATCH ? 0 : 1;
}
