// The C++ RAII wrapper of the inference engine: Model, Session, sample,
// generate, and errors as exceptions (on a tiny checkpoint written in C).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tritter_accel.hpp"
#include "check.h"
#include "tiny_bitnet.h"

int main() {
    char dir[256];
    std::snprintf(dir, sizeof dir, "/tmp/tritter-infer-cpp-%d", (int)getpid());
    mkdir(dir, 0700);
    make_dir((std::string(dir) + "/m").c_str(), 0, nullptr, 0, "relu2", DEFAULT_ROPE);
    {
        auto model = tritter::Model::load(std::string(dir) + "/m");
        auto info = model.info();
        CHECK(info.vocab_size == V && info.num_layers == L);
        auto opts = model.session_options();
        opts.max_seq_len = 12;
        CHECK(model.memory(opts).kv_cache == (size_t)2 * L * NKV * 12 * HD * 4);
        tritter::Session s(model, opts);
        std::vector<uint32_t> prompt = {1, 7, 2};
        auto logits = s.prefill(prompt);
        CHECK(logits.size() == (size_t)V);
        std::vector<uint32_t> seq = prompt;
        for (int i = 0; i < 6; i++) {
            uint32_t t = tritter::sample(logits);
            seq.push_back(t);
            logits = s.decode(t);
        }
        CHECK(s.seq_len() == 9);
        // generate() is the same greedy loop
        auto g = model.generate(prompt, 6);
        CHECK(g.size() == 9);
        for (size_t i = 0; i < g.size(); i++) CHECK(g[i] == seq[i]);
        // errors become exceptions; the session goes on
        bool threw = false;
        try {
            s.decode(V);
        } catch (const tritter::Error &e) {
            threw = e.status() == TRITTER_ERR_INVALID_ARGUMENT && std::string(e.what()).find("vocab") != std::string::npos;
        }
        CHECK(threw);
        s.truncate(0, 3);
        auto again = s.decode(seq[3]);
        CHECK(again.size() == (size_t)V);
        threw = false;
        try {
            tritter::Model::load(std::string(dir) + "/nowhere");
        } catch (const tritter::Error &e) {
            threw = e.status() == TRITTER_ERR_IO;
        }
        CHECK(threw);
    }
    for (int i = 0; i < n_tensors; i++) free(tensors[i].data);
    remove_dir(dir, "m");
    rmdir(dir);
    CHECK_DONE("infer (C++)");
}
