// The C++ Checkpoint / CheckpointWriter wrappers: save, reopen, read, and
// errors as tritter::Error carrying the status and the tensor's name.
#include <cstdio>
#include <string>
#include <unistd.h>
#include <vector>

#include "tritter_accel.hpp"

#define REQUIRE(cond)                                                                       \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            std::fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                                       \
        }                                                                                   \
    } while (0)

int main() {
    const std::string base = "/tmp/tritter-io-cpp-" + std::to_string((long)getpid());
    const std::size_t rows = 4, cols = 256;
    std::vector<int8_t> t(rows * cols);
    for (std::size_t i = 0; i < t.size(); i++) t[i] = (int8_t)(int)(i % 3) - 1;
    auto m = tritter::TernaryMatrix::from_ternary(t.data(), rows, cols, {0.5f, 1.0f, 2.0f, 4.0f},
                                                  TRITTER_GRANULARITY_PER_ROW);
    std::vector<float> norm = {1.f, 2.f, 3.f};
    for (uint32_t fmt : {TRITTER_SAVE_SAFETENSORS, TRITTER_SAVE_GGUF_TQ2_0, TRITTER_SAVE_GGUF_TQ1_0}) {
        std::string path = base + (fmt == TRITTER_SAVE_SAFETENSORS ? ".safetensors" : ".gguf");
        tritter::CheckpointWriter().add("w", m).add("norm", norm, {3}).metadata("k", "v").save(path, fmt);
        tritter::Checkpoint ck(path);
        auto names = ck.names();
        REQUIRE(names.size() == (fmt == TRITTER_SAVE_SAFETENSORS ? 3u : 2u));
        auto info = ck.info("w");
        REQUIRE(info.is_ternary);
        auto back = ck.ternary("w");
        REQUIRE(back.to_f32() == m.to_f32());
        REQUIRE(ck.tensor_f32("norm") == norm);
        bool threw = false;
        try {
            ck.ternary("norm");
        } catch (const tritter::Error &e) {
            threw = std::string(e.what()).find("norm") != std::string::npos;
        }
        REQUIRE(threw);
        std::remove(path.c_str());
    }
    bool threw = false;
    try {
        tritter::Checkpoint missing(base + ".missing");
    } catch (const tritter::Error &e) {
        threw = e.status() == TRITTER_ERR_IO;
    }
    REQUIRE(threw);
    std::printf("io-cpp: ok\n");
    return 0;
}
