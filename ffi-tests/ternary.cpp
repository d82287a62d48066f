// The C++ RAII wrapper: values, move semantics, and errors as exceptions.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "tritter_accel.hpp"

#define REQUIRE(cond)                                                              \
    do {                                                                           \
        if (!(cond)) {                                                             \
            std::fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                              \
        }                                                                          \
    } while (0)

int main() {
    tritter::check_abi();
    REQUIRE(tritter::version() == std::to_string(TRITTER_VERSION_MAJOR) + "." + std::to_string(TRITTER_VERSION_MINOR) + "." +
                                      std::to_string(TRITTER_VERSION_PATCH));

    const std::size_t rows = 37, cols = 129;
    std::vector<float> w(rows * cols);
    for (std::size_t i = 0; i < w.size(); i++) w[i] = std::sin(0.37 * (double)i) * 0.8f;
    auto m = tritter::TernaryMatrix::from_f32(w.data(), rows, cols);
    REQUIRE(m.rows() == rows && m.cols() == cols);

    // Round trip through both packed layouts.
    auto t = m.to_ternary();
    auto s = m.scales();
    for (uint32_t layout : {TRITTER_LAYOUT_2BIT, TRITTER_LAYOUT_BASE3}) {
        auto p = m.export_packed(layout);
        auto m2 = tritter::TernaryMatrix::from_packed(p, rows, cols, layout, s, TRITTER_GRANULARITY_PER_ROW);
        REQUIRE(m2.to_ternary() == t);
    }

    // matmul against a plain loop over the dequantized weights.
    std::vector<float> x(2 * cols);
    for (std::size_t i = 0; i < x.size(); i++) x[i] = std::cos(0.11 * (double)i);
    auto y = m.matmul(x, 2);
    auto wd = m.to_f32();
    for (std::size_t b = 0; b < 2; b++)
        for (std::size_t o = 0; o < rows; o++) {
            double acc = 0;
            for (std::size_t k = 0; k < cols; k++) acc += (double)x[b * cols + k] * wd[o * cols + k];
            REQUIRE(std::fabs(y[b * rows + o] - acc) < 1e-3);
        }

    // A shared const matrix used from several threads gives identical results.
    std::vector<std::vector<float>> outs(4);
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; i++) threads.emplace_back([&, i] { outs[i] = m.matmul(x, 2); });
    for (auto &th : threads) th.join();
    for (auto &o : outs) REQUIRE(o == y);

    // Move-only ownership.
    tritter::TernaryMatrix moved = std::move(m);
    REQUIRE(moved.rows() == rows);

    // Errors become exceptions carrying the status and the argument name.
    bool threw = false;
    try {
        std::vector<uint8_t> corrupt(rows * ((cols + 3) / 4), 0xFF);
        tritter::TernaryMatrix::from_packed(corrupt, rows, cols, TRITTER_LAYOUT_2BIT, s, TRITTER_GRANULARITY_PER_ROW);
    } catch (const tritter::Error &e) {
        threw = e.status() == TRITTER_ERR_INVALID_DATA && std::strstr(e.what(), "packed") != nullptr;
    }
    REQUIRE(threw);
    threw = false;
    try {
        moved.matmul(std::vector<float>(cols - 1), 1);
    } catch (const tritter::Error &e) {
        threw = e.status() == TRITTER_ERR_SHAPE_MISMATCH;
    }
    REQUIRE(threw);
    threw = false;
    try {
        tritter::TernaryMatrix::from_f32(nullptr, 2, 2);
    } catch (const tritter::Error &e) {
        threw = e.status() == TRITTER_ERR_NULL_POINTER && std::strstr(e.what(), "weights") != nullptr;
    }
    REQUIRE(threw);
    std::printf("ternary.cpp: ok\n");
    return 0;
}
