/* The inference engine through the C ABI only. Writes tiny Hugging Face
 * BitNet checkpoints itself (config.json + model.safetensors in
 * transformers' packed layout), loads them, and checks: prefill + decode
 * equal one forward over the whole sequence, batches, truncate/reset,
 * sampling, generation; and every bad input (NULLs, ids >= vocab, empty and
 * too-long prompts, missing / misshapen tensors, unsupported configs,
 * corrupt files, huge sizes) gives its status while the session stays usable. */
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "tiny_bitnet.h"

static float maxdiff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static tritter_model_t *load_ok(const char *dir) {
    tritter_model_t *m = NULL;
    CHECK_OK(tritter_model_load(dir, NULL, &m));
    return m;
}

int main(void) {
    char base[256], dir[320];
    snprintf(base, sizeof base, "/tmp/tritter-infer-test-%d", (int)getpid());
    mkdir(base, 0700);

    /* ---- a good checkpoint ---- */
    snprintf(dir, sizeof dir, "%s/good", base);
    make_dir(dir, 0, NULL, 0, "relu2", DEFAULT_ROPE);
    tritter_model_t *model = load_ok(dir);
    tritter_model_info_t info;
    CHECK_OK(tritter_model_info(model, &info));
    CHECK(info.vocab_size == V && info.hidden_size == H && info.num_kv_heads == NKV && info.head_dim == HD);
    CHECK(info.eos_token_id == 3 && info.bos_token_id == UINT32_MAX && !info.tie_word_embeddings);

    tritter_session_options_t opts;
    CHECK_OK(tritter_session_options_default(model, &opts));
    CHECK(opts.max_seq_len == 32 && opts.max_batch == 1);
    opts.max_batch = 2;
    opts.max_seq_len = 10;
    tritter_memory_report_t mem;
    CHECK_OK(tritter_session_memory(model, &opts, &mem));
    CHECK(mem.kv_cache == (size_t)2 * L * 2 * NKV * 10 * HD * 4);
    CHECK(mem.weights > 0 && mem.activations > 0);
    tritter_session_t *s = NULL;
    CHECK_OK(tritter_session_new(model, &opts, &s));

    /* forward of 6 tokens, all logits */
    uint32_t toks[6] = {1, 7, 2, 12, 0, 5};
    size_t seq0 = 0, len6 = 6;
    float all[6 * V], out[2 * V];
    CHECK_OK(tritter_session_forward(s, &seq0, &len6, 1, toks, 6, TRITTER_LOGITS_ALL, all, 6 * V));
    size_t n;
    CHECK_OK(tritter_session_seq_len(s, 0, &n));
    CHECK(n == 6);
    /* sequence 1: prefill 3, decode 3 -> same logits */
    CHECK_OK(tritter_session_prefill(s, 1, toks, 3, out, V));
    CHECK(maxdiff(out, all + 2 * V, V) < 1e-4f);
    size_t seq1 = 1;
    for (int p = 3; p < 6; p++) {
        CHECK_OK(tritter_session_decode(s, &seq1, &toks[p], 1, out, V));
        CHECK(maxdiff(out, all + p * V, V) < 1e-4f);
    }
    /* truncate to 4, decode position 4 again */
    CHECK_OK(tritter_session_truncate(s, 1, 4));
    CHECK_OK(tritter_session_decode(s, &seq1, &toks[4], 1, out, V));
    CHECK(maxdiff(out, all + 4 * V, V) < 1e-4f);

    /* ---- bad input: each refused, nothing changes ---- */
    uint32_t bad_id = V;
    CHECK_ERR(tritter_session_prefill(s, 1, &bad_id, 1, out, V), TRITTER_ERR_INVALID_ARGUMENT, "vocab");
    CHECK_ERR(tritter_session_prefill(s, 1, toks, 0, out, V), TRITTER_ERR_INVALID_ARGUMENT, "empty");
    CHECK_ERR(tritter_session_prefill(s, 1, toks, 6, out, V), TRITTER_ERR_INVALID_ARGUMENT, "max_seq_len");
    CHECK_ERR(tritter_session_prefill(s, 2, toks, 1, out, V), TRITTER_ERR_INVALID_ARGUMENT, "seq");
    CHECK_ERR(tritter_session_prefill(s, 1, toks, 1, out, V - 1), TRITTER_ERR_BUFFER_TOO_SMALL, "logits");
    CHECK_ERR(tritter_session_prefill(s, 1, NULL, 1, out, V), TRITTER_ERR_NULL_POINTER, "tokens");
    CHECK_ERR(tritter_session_prefill(NULL, 1, toks, 1, out, V), TRITTER_ERR_NULL_POINTER, "session");
    size_t two[2] = {1, 1};
    uint32_t tt[2] = {1, 2};
    CHECK_ERR(tritter_session_decode(s, two, tt, 2, out, 2 * V), TRITTER_ERR_INVALID_ARGUMENT, "twice");
    size_t lens_bad[1] = {3};
    CHECK_ERR(tritter_session_forward(s, &seq1, lens_bad, 1, toks, 2, TRITTER_LOGITS_LAST, out, V),
              TRITTER_ERR_SHAPE_MISMATCH, "tokens");
    CHECK_ERR(tritter_session_forward(s, &seq1, &len6, 1, toks, 6, 7, out, V), TRITTER_ERR_INVALID_ARGUMENT,
              "logits_mode");
    size_t huge[2] = {SIZE_MAX, 2};
    CHECK_ERR(tritter_session_forward(s, two, huge, 2, toks, 1, TRITTER_LOGITS_LAST, out, V),
              TRITTER_ERR_SIZE_OVERFLOW, "lengths");
    CHECK_ERR(tritter_session_truncate(s, 1, 9), TRITTER_ERR_INVALID_ARGUMENT, "len");
    CHECK_ERR(tritter_session_reset(s, 5), TRITTER_ERR_INVALID_ARGUMENT, "seq");
    CHECK_ERR(tritter_session_seq_len(s, 0, NULL), TRITTER_ERR_NULL_POINTER, "len_out");
    CHECK_OK(tritter_session_seq_len(s, 1, &n));
    CHECK(n == 5);
    /* still usable: the next token matches a clean recomputation */
    CHECK_OK(tritter_session_decode(s, &seq1, &toks[5], 1, out, V));
    CHECK(maxdiff(out, all + 5 * V, V) < 1e-4f);
    /* full sequence: 10 positions */
    CHECK_OK(tritter_session_reset(s, 1));
    uint32_t ten[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    CHECK_OK(tritter_session_prefill(s, 1, ten, 10, out, V));
    CHECK_ERR(tritter_session_decode(s, &seq1, ten, 1, out, V), TRITTER_ERR_INVALID_ARGUMENT, "max_seq_len");

    /* ---- sampling ---- */
    tritter_sampling_params_t sp;
    CHECK_OK(tritter_sampling_params_default(&sp));
    uint32_t t1, t2;
    CHECK_OK(tritter_sample(all, V, &sp, 0, 0, &t1));
    size_t arg = 0;
    for (size_t i = 1; i < V; i++)
        if (all[i] > all[arg]) arg = i;
    CHECK(t1 == arg);
    sp.temperature = 1.0f;
    sp.top_k = 5;
    sp.top_p = 0.9f;
    CHECK_OK(tritter_sample(all, V, &sp, 42, 3, &t1));
    CHECK_OK(tritter_sample(all, V, &sp, 42, 3, &t2));
    CHECK(t1 == t2 && t1 < V);
    sp.temperature = -1.0f;
    CHECK_ERR(tritter_sample(all, V, &sp, 0, 0, &t1), TRITTER_ERR_INVALID_ARGUMENT, "temperature");
    sp.temperature = 1.0f;
    sp.top_p = 0.0f;
    CHECK_ERR(tritter_sample(all, V, &sp, 0, 0, &t1), TRITTER_ERR_INVALID_ARGUMENT, "top_p");
    CHECK_ERR(tritter_sample(all, 0, NULL, 0, 0, &t1), TRITTER_ERR_INVALID_ARGUMENT, "logits");
    float nan_l[2] = {0.0f, NAN};
    CHECK_ERR(tritter_sample(nan_l, 2, NULL, 0, 0, &t1), TRITTER_ERR_NON_FINITE, "logits");
    CHECK_ERR(tritter_sample(all, V, NULL, 0, 0, NULL), TRITTER_ERR_NULL_POINTER, "token_out");

    /* ---- generate: greedy continuation equals the session loop ---- */
    uint32_t gen[2 * 12];
    size_t glens[2], plens[2] = {3, 2};
    uint32_t prompts[5] = {1, 7, 2, 4, 4};
    CHECK_OK(tritter_model_generate(model, prompts, 5, plens, 2, 8, NULL, 0, NULL, 0, TRITTER_CACHE_F32, gen, 12,
                                    glens));
    CHECK(glens[0] == 11 && glens[1] == 10);
    CHECK(gen[0] == 1 && gen[1] == 7 && gen[2] == 2 && gen[12] == 4 && gen[13] == 4);
    {
        tritter_session_t *g = NULL;
        tritter_session_options_t o1 = opts;
        o1.max_batch = 1;
        o1.max_seq_len = 11;
        CHECK_OK(tritter_session_new(model, &o1, &g));
        CHECK_OK(tritter_session_prefill(g, 0, prompts, 3, out, V));
        for (int p = 3; p < 11; p++) {
            uint32_t nx;
            CHECK_OK(tritter_sample(out, V, NULL, 0, 0, &nx));
            CHECK(nx == gen[p]);
            if (p < 10) CHECK_OK(tritter_session_decode(g, &seq0, &nx, 1, out, V));
        }
        tritter_session_free(g);
    }
    /* stop at eos-like token: the third generated token of sequence 0 */
    uint32_t stop_tok = gen[5];
    CHECK_OK(tritter_model_generate(model, prompts, 3, plens, 1, 8, NULL, 0, &stop_tok, 1, TRITTER_CACHE_F32, gen,
                                    12, glens));
    CHECK(glens[0] <= 6 && gen[glens[0] - 1] == stop_tok);
    CHECK_OK(tritter_model_generate(model, prompts, 3, plens, 1, 8, NULL, 0, NULL, 0, TRITTER_CACHE_BF16, gen, 12,
                                    glens));
    CHECK(glens[0] == 11);
    CHECK_ERR(tritter_model_generate(model, prompts, 5, plens, 2, 8, NULL, 0, NULL, 0, TRITTER_CACHE_F32, gen, 5,
                                     glens),
              TRITTER_ERR_INVALID_ARGUMENT, "stride");
    CHECK_ERR(tritter_model_generate(model, prompts, 5, plens, 2, 8, NULL, 0, NULL, 0, 9, gen, 12, glens),
              TRITTER_ERR_INVALID_ARGUMENT, "cache_dtype");

    /* ---- session options ---- */
    tritter_session_t *s2 = NULL;
    tritter_session_options_t o2 = opts;
    o2.cache_dtype = 7;
    CHECK_ERR(tritter_session_new(model, &o2, &s2), TRITTER_ERR_INVALID_ARGUMENT, "cache_dtype");
    o2 = opts;
    o2.max_seq_len = 0;
    CHECK_ERR(tritter_session_new(model, &o2, &s2), TRITTER_ERR_INVALID_ARGUMENT, "max_seq_len");
    o2 = opts;
    o2.max_batch = SIZE_MAX / 4;
    o2.max_seq_len = SIZE_MAX / 4;
    CHECK_ERR(tritter_session_new(model, &o2, &s2), TRITTER_ERR_SIZE_OVERFLOW, "kv cache");
    o2 = opts;
    o2.max_batch = 1u << 16;
    o2.max_seq_len = 1u << 20; /* 2^36 values x 2 x 4 bytes: far beyond this machine */
    CHECK_ERR(tritter_session_memory(model, &o2, NULL), TRITTER_ERR_NULL_POINTER, "report_out");
    CHECK_OK(tritter_session_memory(model, &o2, &mem));
    CHECK(mem.kv_cache == (size_t)2 * L * (1u << 16) * NKV * (1u << 20) * HD * 4);
    CHECK(s2 == NULL);
    CHECK_ERR(tritter_session_new(NULL, &opts, &s2), TRITTER_ERR_NULL_POINTER, "model");
    CHECK_ERR(tritter_session_new(model, NULL, &s2), TRITTER_ERR_NULL_POINTER, "options");
    CHECK_ERR(tritter_session_new(model, &opts, NULL), TRITTER_ERR_NULL_POINTER, "session_out");

    /* the model outlives its handle through the session */
    tritter_model_free(model);
    CHECK_OK(tritter_session_reset(s, 0));
    CHECK_OK(tritter_session_prefill(s, 0, toks, 6, out, V));
    CHECK(maxdiff(out, all + 5 * V, V) < 1e-4f);
    tritter_session_free(s);
    tritter_session_free(NULL);
    tritter_model_free(NULL);

    /* ---- int8 lm_head ---- */
    {
        tritter_load_options_t lo;
        CHECK_OK(tritter_load_options_default(&lo));
        CHECK(!lo.lm_head_int8);
        lo.lm_head_int8 = true;
        tritter_model_t *m8 = NULL;
        CHECK_OK(tritter_model_load(dir, &lo, &m8));
        tritter_model_info_t i8;
        CHECK_OK(tritter_model_info(m8, &i8));
        CHECK(i8.weight_bytes < info.weight_bytes);
        tritter_model_free(m8);
    }

    /* ---- bad checkpoints ---- */
    tritter_model_t *bad = NULL;
    CHECK_ERR(tritter_model_load(NULL, NULL, &bad), TRITTER_ERR_NULL_POINTER, "path");
    CHECK_ERR(tritter_model_load(dir, NULL, NULL), TRITTER_ERR_NULL_POINTER, "model_out");
    snprintf(dir, sizeof dir, "%s/nonexistent", base);
    CHECK_ERR(tritter_model_load(dir, NULL, &bad), TRITTER_ERR_IO, "config.json");
    snprintf(dir, sizeof dir, "%s/missing", base);
    make_dir(dir, 0, "model.layers.0.mlp.up_proj.weight", 0, "relu2", DEFAULT_ROPE);
    CHECK_ERR(tritter_model_load(dir, NULL, &bad), TRITTER_ERR_INVALID_DATA, "model.layers.0.mlp.up_proj.weight");
    snprintf(dir, sizeof dir, "%s/missing_head", base);
    make_dir(dir, 0, "lm_head.weight", 0, "relu2", DEFAULT_ROPE);
    CHECK_ERR(tritter_model_load(dir, NULL, &bad), TRITTER_ERR_INVALID_DATA, "lm_head.weight");
    snprintf(dir, sizeof dir, "%s/tied", base); /* tied: no lm_head needed */
    make_dir(dir, 1, "lm_head.weight", 0, "relu2", DEFAULT_ROPE);
    {
        tritter_model_t *t = load_ok(dir);
        tritter_model_free(t);
    }
    snprintf(dir, sizeof dir, "%s/misshapen", base);
    mkdir(dir, 0700);
    build_model(0);
    find("model.norm.weight")->shape[0] = H / 2; /* the same bytes, declared [4]: size mismatch */
    find("model.norm.weight")->nbytes = 4 * (H / 2);
    {
        char p[512];
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        write_safetensors(p, NULL, 0);
        write_config(dir, 0, "relu2", DEFAULT_ROPE);
    }
    CHECK_ERR(tritter_model_load(dir, NULL, &bad), TRITTER_ERR_INVALID_DATA, "model.norm.weight");
    snprintf(dir, sizeof dir, "%s/badact", base);
    make_dir(dir, 0, NULL, 0, "mish", DEFAULT_ROPE);
    CHECK_ERR(tritter_model_load(dir, NULL, &bad), TRITTER_ERR_INVALID_ARGUMENT, "hidden_act");
    snprintf(dir, sizeof dir, "%s/badrope", base);
    make_dir(dir, 0, NULL, 0, "relu2", "{\"rope_type\":\"yarn\",\"factor\":4.0}");
    CHECK_ERR(tritter_model_load(dir, NULL, &bad), TRITTER_ERR_INVALID_ARGUMENT, "rope");
    snprintf(dir, sizeof dir, "%s/truncated", base);
    make_dir(dir, 0, NULL, 300, "relu2", DEFAULT_ROPE);
    CHECK(tritter_model_load(dir, NULL, &bad) == TRITTER_ERR_INVALID_DATA);
    CHECK(bad == NULL);

    /* ---- the standalone KV cache ---- */
    size_t bytes;
    CHECK_OK(tritter_kv_cache_memory(2, 1, 2, 4, 3, TRITTER_CACHE_F16, &bytes));
    CHECK(bytes == 2 * 2 * 1 * 2 * 4 * 3 * 2);
    CHECK_ERR(tritter_kv_cache_memory(0, 1, 2, 4, 3, TRITTER_CACHE_F16, &bytes), TRITTER_ERR_INVALID_ARGUMENT,
              "layers");
    CHECK_ERR(tritter_kv_cache_memory(SIZE_MAX, 2, 2, 4, 3, TRITTER_CACHE_F32, &bytes), TRITTER_ERR_SIZE_OVERFLOW,
              "kv cache");
    tritter_kv_cache_t *kc = NULL;
    CHECK_ERR(tritter_kv_cache_new(2, 1, 2, 4, 3, 5, &kc), TRITTER_ERR_INVALID_ARGUMENT, "cache_dtype");
    CHECK_OK(tritter_kv_cache_new(2, 1, 2, 4, 3, TRITTER_CACHE_F32, &kc));
    float k[12], v[12], kr[6], vr[6];
    for (int i = 0; i < 12; i++) {
        k[i] = (float)i;
        v[i] = (float)-i;
    }
    CHECK_OK(tritter_kv_cache_append(kc, 0, k, v, 12));
    CHECK_ERR(tritter_kv_cache_append(kc, 0, k, v, 11), TRITTER_ERR_SHAPE_MISMATCH, "k");
    CHECK_ERR(tritter_kv_cache_append(kc, 1, k, v, 12), TRITTER_ERR_INVALID_ARGUMENT, "seq");
    CHECK_OK(tritter_kv_cache_read(kc, 1, 0, 0, kr, vr, 6));
    CHECK(kr[0] == 6.0f && vr[5] == -11.0f);
    CHECK_ERR(tritter_kv_cache_read(kc, 1, 0, 1, kr, vr, 6), TRITTER_ERR_INVALID_ARGUMENT, "pos");
    for (int i = 0; i < 3; i++) CHECK_OK(tritter_kv_cache_append(kc, 0, k, v, 12));
    CHECK_ERR(tritter_kv_cache_append(kc, 0, k, v, 12), TRITTER_ERR_INVALID_STATE, "full");
    CHECK_OK(tritter_kv_cache_len(kc, 0, &n));
    CHECK(n == 4);
    CHECK_OK(tritter_kv_cache_truncate(kc, 0, 1));
    CHECK_OK(tritter_kv_cache_len(kc, 0, &n));
    CHECK(n == 1);
    k[0] = NAN;
    CHECK_ERR(tritter_kv_cache_append(kc, 0, k, v, 12), TRITTER_ERR_NON_FINITE, "k");
    tritter_kv_cache_free(kc);
    tritter_kv_cache_free(NULL);

    for (int i = 0; i < n_tensors; i++) free(tensors[i].data);
    const char *dirs[] = {"good", "missing", "missing_head", "tied", "misshapen", "badact", "badrope", "truncated"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) remove_dir(base, dirs[i]);
    rmdir(base);
    CHECK_DONE("infer");
}
