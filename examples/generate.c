/* Loads a Hugging Face BitNet b1.58 checkpoint directory and prints a greedy
 * (or sampled) continuation of a prompt given as token ids.
 *
 *   generate CHECKPOINT_DIR [-n NEW_TOKENS] [-t TEMPERATURE] [-k TOP_K] [-p TOP_P] [-s SEED] ID...
 *
 * Prints the memory report, then one line: the prompt and new token ids.
 * python-ctypes/tests/test_infer.py runs it on checkpoints written by
 * transformers and compares the ids with transformers' own generation.
 * Run without arguments (as `cargo test --test ffi` does) it only prints its
 * usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tritter_accel.h"

#define CHECK(call)                                                              \
    do {                                                                         \
        tritter_status_t st_ = (call);                                           \
        if (st_ != TRITTER_OK) {                                                 \
            fprintf(stderr, "%s failed: %s\n", #call, tritter_last_error());     \
            goto fail;                                                           \
        }                                                                        \
    } while (0)

int main(int argc, char **argv) {
    if (argc < 2) {
        printf("usage: %s CHECKPOINT_DIR [-n NEW] [-t TEMP] [-k TOP_K] [-p TOP_P] [-s SEED] ID...\n", argv[0]);
        return 0;
    }
    const char *dir = argv[1];
    size_t n_new = 16;
    tritter_sampling_params_t params;
    uint64_t seed = 0;
    uint32_t *prompt = calloc((size_t)argc, sizeof(uint32_t));
    size_t n_prompt = 0;
    tritter_model_t *model = NULL;
    tritter_session_t *session = NULL;
    float *logits = NULL;
    int rc = 1;
    if (!prompt) return 1;
    if (tritter_sampling_params_default(&params) != TRITTER_OK) goto fail;
    for (int i = 2; i < argc; i++) {
        if (i + 1 < argc && argv[i][0] == '-' && argv[i][1] && !argv[i][2]) {
            const char *v = argv[++i];
            switch (argv[i - 1][1]) {
            case 'n': n_new = strtoull(v, NULL, 10); break;
            case 't': params.temperature = strtof(v, NULL); break;
            case 'k': params.top_k = strtoull(v, NULL, 10); break;
            case 'p': params.top_p = strtof(v, NULL); break;
            case 's': seed = strtoull(v, NULL, 10); break;
            default: fprintf(stderr, "unknown option %s\n", argv[i - 1]); goto fail;
            }
        } else {
            prompt[n_prompt++] = (uint32_t)strtoul(argv[i], NULL, 10);
        }
    }

    CHECK(tritter_model_load(dir, NULL, &model));
    tritter_model_info_t info;
    CHECK(tritter_model_info(model, &info));

    tritter_session_options_t opts;
    CHECK(tritter_session_options_default(model, &opts));
    opts.max_seq_len = n_prompt + n_new;          /* one sequence, exactly long enough */
    tritter_memory_report_t mem;
    CHECK(tritter_session_memory(model, &opts, &mem)); /* known before allocating */
    printf("weights %zu bytes, kv cache %zu bytes, activations %zu bytes\n", mem.weights, mem.kv_cache,
           mem.activations);
    CHECK(tritter_session_new(model, &opts, &session));

    logits = malloc(info.vocab_size * sizeof(float));
    if (!logits) goto fail;
    CHECK(tritter_session_prefill(session, 0, prompt, n_prompt, logits, info.vocab_size));
    for (size_t i = 0; i < n_prompt; i++) printf("%u ", prompt[i]);
    for (size_t step = 0; step < n_new; step++) {
        uint32_t next;
        CHECK(tritter_sample(logits, info.vocab_size, &params, seed, step, &next));
        printf("%u%s", next, step + 1 < n_new ? " " : "");
        if (step + 1 == n_new) break;
        size_t seq = 0;
        CHECK(tritter_session_decode(session, &seq, &next, 1, logits, info.vocab_size));
    }
    printf("\n");
    rc = 0;
fail:
    free(logits);
    free(prompt);
    tritter_session_free(session);
    tritter_model_free(model);
    return rc;
}
