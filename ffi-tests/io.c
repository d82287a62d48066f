/* Checkpoint I/O through the C ABI only: a Hugging Face-layout safetensors
 * file built byte by byte here (packed uint8 [out/4, in] + bf16
 * weight_scale), save/load round trips (safetensors, GGUF TQ2_0/TQ1_0), and
 * bad input: NULLs, unknown names, truncated, garbage and lying files. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <unistd.h>

#include "check.h"

static char dir[256];

static const char *path_of(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static void write_file(const char *name, const void *data, size_t n) {
    FILE *f = fopen(path_of(name), "wb");
    CHECK(f != NULL);
    CHECK(n == 0 || fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* A safetensors file: 8-byte header length, JSON header, data. */
static size_t safetensors(uint8_t *out, const char *header, const uint8_t *data, size_t n) {
    uint64_t h = strlen(header);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(h >> (8 * i));
    memcpy(out + 8, header, h);
    memcpy(out + 8 + h, data, n);
    return 8 + h + n;
}

static void test_hf_layout(void) {
    /* W [8, 3] (out 8 = 4 slabs of R = 2 rows): W[o][c] = ((o + c) % 3) - 1.
     * transformers' pack_weights: byte [r, c] bit 2j holds W[j*R + r][c] + 1. */
    int8_t w[8][3];
    uint8_t data[6 + 2] = {0};
    for (int o = 0; o < 8; o++)
        for (int c = 0; c < 3; c++) {
            w[o][c] = (int8_t)(((o + c) % 3) - 1);
            data[(o % 2) * 3 + c] |= (uint8_t)((w[o][c] + 1) << (2 * (o / 2)));
        }
    data[6] = 0x00; /* bf16 2.0 = 0x4000, little-endian */
    data[7] = 0x40;
    const char *hdr = "{\"p.weight\":{\"dtype\":\"U8\",\"shape\":[2,3],\"data_offsets\":[0,6]},"
                      "\"p.weight_scale\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[6,8]}}";
    uint8_t file[512];
    size_t n = safetensors(file, hdr, data, sizeof data);
    write_file("hf.safetensors", file, n);

    tritter_checkpoint_t *ck = NULL;
    CHECK_OK(tritter_checkpoint_open(path_of("hf.safetensors"), &ck));
    uint32_t kind = 99;
    CHECK_OK(tritter_checkpoint_kind(ck, &kind));
    CHECK(kind == TRITTER_CHECKPOINT_SAFETENSORS);
    size_t count = 0;
    CHECK_OK(tritter_checkpoint_num_tensors(ck, &count));
    CHECK(count == 2);
    const char *name = NULL;
    CHECK_OK(tritter_checkpoint_tensor_name(ck, 0, &name));
    CHECK(strcmp(name, "p.weight") == 0);
    tritter_tensor_info_t info;
    CHECK_OK(tritter_checkpoint_tensor_info(ck, "p.weight", &info));
    CHECK(info.dtype == TRITTER_DTYPE_U8 && info.ndim == 2 && info.nbytes == 6 && info.is_ternary);
    size_t shape[2] = {0, 0};
    CHECK_OK(tritter_checkpoint_tensor_shape(ck, "p.weight", shape, 2));
    CHECK(shape[0] == 2 && shape[1] == 3);
    float scale = 0;
    CHECK_OK(tritter_checkpoint_tensor_f32(ck, "p.weight_scale", &scale, 1));
    CHECK(scale == 2.0f);

    tritter_ternary_matrix_t *m = NULL;
    CHECK_OK(tritter_checkpoint_ternary(ck, "p.weight", &m));
    tritter_checkpoint_free(ck); /* the matrix outlives the checkpoint */
    int8_t t[24];
    CHECK_OK(tritter_ternary_matrix_to_ternary(m, t, 24));
    CHECK(memcmp(t, w, 24) == 0);
    float deq[24];
    CHECK_OK(tritter_ternary_matrix_to_f32(m, deq, 24));
    for (int i = 0; i < 24; i++) CHECK(deq[i] == (float)t[i] / 2.0f); /* y = W_t / weight_scale */

    /* Save both ways and read back. */
    tritter_checkpoint_writer_t *wr = NULL;
    CHECK_OK(tritter_checkpoint_writer_new(&wr));
    CHECK_OK(tritter_checkpoint_writer_add_ternary(wr, "m", m));
    float arr[6] = {1, 2, 3, 4, 5, 6};
    size_t ash[2] = {2, 3};
    CHECK_OK(tritter_checkpoint_writer_add_f32(wr, "a", arr, ash, 2, TRITTER_DTYPE_BF16));
    CHECK_OK(tritter_checkpoint_writer_add_metadata(wr, "k", "v"));
    CHECK_OK(tritter_checkpoint_writer_save(wr, path_of("own.safetensors"), TRITTER_SAVE_SAFETENSORS));
    /* 3 columns do not make a 256-weight block: GGUF refuses, naming it. */
    CHECK_ERR(tritter_checkpoint_writer_save(wr, path_of("own.gguf"), TRITTER_SAVE_GGUF_TQ2_0),
              TRITTER_ERR_INVALID_ARGUMENT, "`m`");
    CHECK_ERR(tritter_checkpoint_writer_save(wr, path_of("x"), 7), TRITTER_ERR_INVALID_ARGUMENT, "format");
    CHECK_ERR(tritter_checkpoint_writer_add_f32(wr, "b", arr, ash, 2, TRITTER_DTYPE_U8),
              TRITTER_ERR_INVALID_ARGUMENT, "dtype");
    CHECK_ERR(tritter_checkpoint_writer_add_f32(wr, "b", NULL, ash, 2, TRITTER_DTYPE_F32),
              TRITTER_ERR_NULL_POINTER, "data");
    CHECK_ERR(tritter_checkpoint_writer_add_ternary(wr, "b", NULL), TRITTER_ERR_NULL_POINTER, "matrix");
    tritter_checkpoint_writer_free(wr);

    CHECK_OK(tritter_checkpoint_open(path_of("own.safetensors"), &ck));
    tritter_ternary_matrix_t *m2 = NULL;
    CHECK_OK(tritter_checkpoint_ternary(ck, "m", &m2));
    int8_t t2[24];
    CHECK_OK(tritter_ternary_matrix_to_ternary(m2, t2, 24));
    CHECK(memcmp(t, t2, 24) == 0);
    float a2[6];
    CHECK_OK(tritter_checkpoint_tensor_f32(ck, "a", a2, 6));
    CHECK(memcmp(arr, a2, sizeof arr) == 0);
    CHECK_ERR(tritter_checkpoint_tensor_f32(ck, "a", a2, 5), TRITTER_ERR_BUFFER_TOO_SMALL, "out");
    CHECK_ERR(tritter_checkpoint_tensor_f32(ck, "nope", a2, 6), TRITTER_ERR_INVALID_ARGUMENT, "nope");
    CHECK_ERR(tritter_checkpoint_ternary(ck, "a", &m2), TRITTER_ERR_INVALID_ARGUMENT, "`a`");
    const char *cfg = NULL;
    CHECK_OK(tritter_checkpoint_config_json(ck, &cfg));
    CHECK(cfg != NULL && cfg[0] == '\0');
    tritter_ternary_matrix_free(m2);
    tritter_checkpoint_free(ck);
    tritter_ternary_matrix_free(m);

    /* An invalid code 3 names the tensor. */
    data[1] |= 0x03 << 4;
    n = safetensors(file, hdr, data, sizeof data);
    write_file("bad.safetensors", file, n);
    CHECK_OK(tritter_checkpoint_open(path_of("bad.safetensors"), &ck));
    CHECK_ERR(tritter_checkpoint_ternary(ck, "p.weight", &m), TRITTER_ERR_INVALID_DATA, "p.weight");
    tritter_checkpoint_free(ck);
}

static void test_gguf(void) {
    enum { R = 3, K = 512 };
    static int8_t t[R * K];
    for (int i = 0; i < R * K; i++) t[i] = (int8_t)((i * 7 % 5) % 3 - 1);
    float scales[R] = {0.5f, 1.25f, 3.0f}; /* f16-exact */
    tritter_ternary_matrix_t *m = NULL;
    CHECK_OK(tritter_ternary_matrix_from_ternary(t, R, K, scales, R, TRITTER_GRANULARITY_PER_ROW, 0, &m));
    const uint32_t fmts[2] = {TRITTER_SAVE_GGUF_TQ2_0, TRITTER_SAVE_GGUF_TQ1_0};
    const uint32_t dts[2] = {TRITTER_DTYPE_TQ2_0, TRITTER_DTYPE_TQ1_0};
    for (int f = 0; f < 2; f++) {
        tritter_checkpoint_writer_t *wr = NULL;
        CHECK_OK(tritter_checkpoint_writer_new(&wr));
        CHECK_OK(tritter_checkpoint_writer_add_ternary(wr, "blk.0.w", m));
        CHECK_OK(tritter_checkpoint_writer_save(wr, path_of("m.gguf"), fmts[f]));
        tritter_checkpoint_writer_free(wr);
        tritter_checkpoint_t *ck = NULL;
        CHECK_OK(tritter_checkpoint_open(path_of("m.gguf"), &ck));
        uint32_t kind = 0;
        CHECK_OK(tritter_checkpoint_kind(ck, &kind));
        CHECK(kind == TRITTER_CHECKPOINT_GGUF);
        tritter_tensor_info_t info;
        CHECK_OK(tritter_checkpoint_tensor_info(ck, "blk.0.w", &info));
        CHECK(info.dtype == dts[f] && info.is_ternary && info.ggml_type == (f == 0 ? 35u : 34u));
        tritter_ternary_matrix_t *b = NULL;
        CHECK_OK(tritter_checkpoint_ternary(ck, "blk.0.w", &b));
        static float x[R * K], y[R * K];
        CHECK_OK(tritter_ternary_matrix_to_f32(m, x, R * K));
        CHECK_OK(tritter_ternary_matrix_to_f32(b, y, R * K));
        CHECK(memcmp(x, y, sizeof x) == 0);
        CHECK_OK(tritter_checkpoint_tensor_f32(ck, "blk.0.w", y, R * K));
        CHECK(memcmp(x, y, sizeof x) == 0);
        tritter_ternary_matrix_free(b);
        tritter_checkpoint_free(ck);
    }
    tritter_ternary_matrix_free(m);

    /* Truncated copies of a valid GGUF file: every one is refused or (only
     * the trailing padding cut) still reads the same. */
    FILE *f = fopen(path_of("m.gguf"), "rb");
    CHECK(f != NULL);
    static uint8_t buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    CHECK(n > 64 && n < sizeof buf);
    for (size_t cut = 0; cut < n; cut += 7) {
        write_file("cut.gguf", buf, cut);
        tritter_checkpoint_t *ck = NULL;
        tritter_status_t st = tritter_checkpoint_open(path_of("cut.gguf"), &ck);
        CHECK(st != TRITTER_OK || cut + 32 >= n);
        tritter_checkpoint_free(ck);
    }
    /* A lying tensor count. */
    memset(buf + 8, 0xff, 8);
    write_file("lie.gguf", buf, n);
    tritter_checkpoint_t *ck = NULL;
    CHECK_ERR(tritter_checkpoint_open(path_of("lie.gguf"), &ck), TRITTER_ERR_INVALID_DATA, "tensor count");
    CHECK(ck == NULL);
}

static void test_bad_arguments(void) {
    tritter_checkpoint_t *ck = NULL;
    CHECK_ERR(tritter_checkpoint_open(NULL, &ck), TRITTER_ERR_NULL_POINTER, "path");
    CHECK_ERR(tritter_checkpoint_open(path_of("missing"), NULL), TRITTER_ERR_NULL_POINTER, "checkpoint_out");
    CHECK_ERR(tritter_checkpoint_open(path_of("missing"), &ck), TRITTER_ERR_IO, "missing");
    write_file("empty.safetensors", "", 0);
    CHECK_ERR(tritter_checkpoint_open(path_of("empty.safetensors"), &ck), TRITTER_ERR_INVALID_DATA, "truncated");
    /* A header length of 2^60 bytes must not allocate it. */
    uint8_t lie[16] = {0, 0, 0, 0, 0, 0, 0, 0x10, '{', '}'};
    write_file("lie.safetensors", lie, sizeof lie);
    CHECK_ERR(tritter_checkpoint_open(path_of("lie.safetensors"), &ck), TRITTER_ERR_INVALID_DATA, "header length");
    write_file("junk.gguf", "GGUF\x03\x00\x00\x00garbage", 15);
    CHECK_ERR(tritter_checkpoint_open(path_of("junk.gguf"), &ck), TRITTER_ERR_INVALID_DATA, "truncated");
    CHECK(ck == NULL);
    size_t n = 0;
    CHECK_ERR(tritter_checkpoint_num_tensors(NULL, &n), TRITTER_ERR_NULL_POINTER, "checkpoint");
    CHECK_ERR(tritter_checkpoint_tensor_info(NULL, "x", NULL), TRITTER_ERR_NULL_POINTER, "checkpoint");
    tritter_checkpoint_free(NULL);
    tritter_checkpoint_writer_free(NULL);
    CHECK_ERR(tritter_checkpoint_writer_new(NULL), TRITTER_ERR_NULL_POINTER, "writer_out");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/tritter-io-c-%ld", (long)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    CHECK(system(cmd) == 0);
    test_bad_arguments();
    test_hf_layout();
    test_gguf();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    CHECK_DONE("io");
}
