/* A tiny Hugging Face BitNet checkpoint written from C (config.json +
 * model.safetensors in transformers' packed layout) for the engine's C and
 * C++ tests. Header-only; include after check.h. */
#ifndef TRITTER_TINY_BITNET_H
#define TRITTER_TINY_BITNET_H

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

enum { V = 13, H = 8, I = 12, NH = 2, NKV = 1, HD = 4, L = 1, KV = NKV * HD };

static uint64_t state = 0x12345678u;
static inline uint32_t rnd(void) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(state >> 33);
}
static inline float frnd(float lo, float hi) { return lo + (hi - lo) * (float)(rnd() % 100000) / 100000.0f; }

/* ---- a minimal safetensors writer ---- */
typedef struct {
    char name[96];
    const char *dtype;
    size_t shape[2];
    int ndim;
    unsigned char *data;
    size_t nbytes;
} tensor_t;

static tensor_t tensors[32];
static int n_tensors = 0;

static inline void add(const char *name, const char *dtype, int ndim, size_t d0, size_t d1, size_t elem) {
    tensor_t *t = &tensors[n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->nbytes = d0 * (ndim == 2 ? d1 : 1) * elem;
    t->data = (unsigned char *)calloc(t->nbytes ? t->nbytes : 1, 1);
}

static inline void add_f32(const char *name, int ndim, size_t d0, size_t d1, float lo, float hi) {
    add(name, "F32", ndim, d0, d1, 4);
    float *f = (float *)tensors[n_tensors - 1].data;
    for (size_t i = 0; i < tensors[n_tensors - 1].nbytes / 4; i++) f[i] = frnd(lo, hi);
}

/* transformers' pack_weights: byte [r, c] bit 2j holds W[j*R + r, c] + 1, R = out/4. */
static inline void add_ternary(const char *name, size_t out, size_t in) {
    size_t R = out / 4;
    add(name, "U8", 2, R, in, 1);
    unsigned char *p = tensors[n_tensors - 1].data;
    for (size_t o = 0; o < out; o++)
        for (size_t c = 0; c < in; c++) p[(o % R) * in + c] |= (unsigned char)((rnd() % 3) << (2 * (o / R)));
    char s[128];
    snprintf(s, sizeof s, "%s_scale", name);
    add(s, "F32", 1, 1, 0, 4);
    float v = frnd(0.5f, 1.5f);
    memcpy(tensors[n_tensors - 1].data, &v, 4);
}

static inline void build_model(int tied) {
    for (int i = 0; i < n_tensors; i++) free(tensors[i].data);
    n_tensors = 0;
    state = 0x12345678u;
    add_f32("model.embed_tokens.weight", 2, V, H, -1, 1);
    add_f32("model.norm.weight", 1, H, 0, 0.5f, 1.5f);
    if (!tied) add_f32("lm_head.weight", 2, V, H, -0.3f, 0.3f);
    add_f32("model.layers.0.input_layernorm.weight", 1, H, 0, 0.5f, 1.5f);
    add_f32("model.layers.0.post_attention_layernorm.weight", 1, H, 0, 0.5f, 1.5f);
    add_f32("model.layers.0.self_attn.attn_sub_norm.weight", 1, H, 0, 0.5f, 1.5f);
    add_f32("model.layers.0.mlp.ffn_sub_norm.weight", 1, I, 0, 0.5f, 1.5f);
    add_ternary("model.layers.0.self_attn.q_proj.weight", H, H);
    add_ternary("model.layers.0.self_attn.k_proj.weight", KV, H);
    add_ternary("model.layers.0.self_attn.v_proj.weight", KV, H);
    add_ternary("model.layers.0.self_attn.o_proj.weight", H, H);
    add_ternary("model.layers.0.mlp.gate_proj.weight", I, H);
    add_ternary("model.layers.0.mlp.up_proj.weight", I, H);
    add_ternary("model.layers.0.mlp.down_proj.weight", H, I);
}

static inline tensor_t *find(const char *name) {
    for (int i = 0; i < n_tensors; i++)
        if (strcmp(tensors[i].name, name) == 0) return &tensors[i];
    return NULL;
}

static inline void write_safetensors(const char *path, const char *skip, size_t truncate_to) {
    char header[8192];
    size_t off = 0, n = 0;
    n += (size_t)snprintf(header + n, sizeof header - n, "{");
    int first = 1;
    for (int i = 0; i < n_tensors; i++) {
        tensor_t *t = &tensors[i];
        if (skip && strcmp(t->name, skip) == 0) continue;
        n += (size_t)snprintf(header + n, sizeof header - n, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%zu", first ? "" : ",",
                              t->name, t->dtype, t->shape[0]);
        if (t->ndim == 2) n += (size_t)snprintf(header + n, sizeof header - n, ",%zu", t->shape[1]);
        n += (size_t)snprintf(header + n, sizeof header - n, "],\"data_offsets\":[%zu,%zu]}", off, off + t->nbytes);
        off += t->nbytes;
        first = 0;
    }
    n += (size_t)snprintf(header + n, sizeof header - n, "}");
    while (n % 8) header[n++] = ' ';
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    uint64_t hl = n;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl >> (8 * i));
    size_t written = 0, limit = truncate_to ? truncate_to : (size_t)-1;
#define PUT(ptr, len)                                                                  \
    do {                                                                               \
        size_t k_ = (len);                                                             \
        if (written + k_ > limit) k_ = limit > written ? limit - written : 0;          \
        CHECK(fwrite((ptr), 1, k_, f) == k_);                                          \
        written += k_;                                                                 \
    } while (0)
    PUT(le, 8);
    PUT(header, n);
    for (int i = 0; i < n_tensors; i++)
        if (!(skip && strcmp(tensors[i].name, skip) == 0)) PUT(tensors[i].data, tensors[i].nbytes);
    fclose(f);
}

static inline void write_config(const char *dir, int tied, const char *act, const char *rope) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    CHECK(f != NULL);
    fprintf(f,
            "{\"model_type\":\"bitnet\",\"vocab_size\":%d,\"hidden_size\":%d,\"intermediate_size\":%d,"
            "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
            "\"hidden_act\":\"%s\",\"rms_norm_eps\":1e-5,\"max_position_embeddings\":32,"
            "\"tie_word_embeddings\":%s,\"rope_parameters\":%s,\"eos_token_id\":3,"
            "\"quantization_config\":{\"quant_method\":\"bitnet\",\"linear_class\":\"bitlinear\","
            "\"quantization_mode\":\"offline\"}}",
            V, H, I, L, NH, NKV, act, tied ? "true" : "false", rope);
    fclose(f);
}

static const char *const DEFAULT_ROPE = "{\"rope_type\":\"default\",\"rope_theta\":10000.0}";

static inline void make_dir(const char *dir, int tied, const char *skip, size_t truncate_to, const char *act,
                     const char *rope) {
    mkdir(dir, 0700);
    build_model(tied);
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_safetensors(p, skip, truncate_to);
    write_config(dir, tied, act, rope);
}

static inline void remove_dir(const char *base, const char *name) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s/config.json", base, name);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s/model.safetensors", base, name);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s", base, name);
    rmdir(p);
}

#endif
