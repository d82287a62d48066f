// tritter-accel: header-only C++17 RAII wrapper over tritter_accel.h.
// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Handles are move-only classes that free themselves; every failing status
// becomes a tritter::Error carrying the status and the library's message.
#ifndef TRITTER_ACCEL_HPP
#define TRITTER_ACCEL_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tritter_accel.h"

namespace tritter {

/// A failed call: `status()` is the tritter_status_t, `what()` the message.
class Error : public std::runtime_error {
  public:
    Error(uint32_t status, const std::string &message)
        : std::runtime_error(std::string(tritter_status_name(status)) + ": " + message), status_(status) {}
    uint32_t status() const noexcept { return status_; }

  private:
    uint32_t status_;
};

/// Throws tritter::Error unless `status` is TRITTER_OK.
inline void check(tritter_status_t status) {
    if (status != TRITTER_OK) throw Error(static_cast<uint32_t>(status), tritter_last_error());
}

/// Library version string ("MAJOR.MINOR.PATCH").
inline std::string version() { return tritter_version(); }

/// Throws unless the loaded library's ABI matches this header's.
inline void check_abi() {
    if (tritter_abi_version() != TRITTER_ABI_VERSION)
        throw Error(TRITTER_ERR_INVALID_STATE, "library ABI version differs from the header's");
}

/// Sets the number of worker threads (0 = default).
inline void set_num_threads(std::size_t n) { check(tritter_set_num_threads(n)); }

/// Default quantization settings (AbsMean, per row).
inline tritter_quant_config_t default_quant_config() {
    tritter_quant_config_t c;
    check(tritter_quant_config_default(&c));
    return c;
}

namespace detail {
template <class T, void (*Free)(T *)>
struct Deleter {
    void operator()(T *p) const noexcept { Free(p); }
};
}  // namespace detail

class Checkpoint;

/// An owned tritter_ternary_matrix_t. Immutable: const methods may be called
/// from several threads at once.
class TernaryMatrix {
  public:
    /// Quantizes and packs row-major f32 weights [rows, cols].
    static TernaryMatrix from_f32(const float *weights, std::size_t rows, std::size_t cols,
                                  const tritter_quant_config_t *config = nullptr) {
        tritter_ternary_matrix_t *m = nullptr;
        check(tritter_ternary_matrix_from_f32(weights, rows, cols, config, &m));
        return TernaryMatrix(m);
    }
    /// From ternary values and scales (see tritter_ternary_matrix_from_ternary).
    static TernaryMatrix from_ternary(const int8_t *ternary, std::size_t rows, std::size_t cols,
                                      const std::vector<float> &scales, uint32_t granularity,
                                      std::size_t group_size = 0) {
        tritter_ternary_matrix_t *m = nullptr;
        check(tritter_ternary_matrix_from_ternary(ternary, rows, cols, scales.data(), scales.size(), granularity,
                                                  group_size, &m));
        return TernaryMatrix(m);
    }
    /// From packed bytes (validated) and scales.
    static TernaryMatrix from_packed(const std::vector<uint8_t> &packed, std::size_t rows, std::size_t cols,
                                     uint32_t layout, const std::vector<float> &scales, uint32_t granularity,
                                     std::size_t group_size = 0) {
        tritter_ternary_matrix_t *m = nullptr;
        check(tritter_ternary_matrix_from_packed(packed.data(), packed.size(), rows, cols, layout, scales.data(),
                                                 scales.size(), granularity, group_size, &m));
        return TernaryMatrix(m);
    }

    tritter_matrix_info_t info() const {
        tritter_matrix_info_t i;
        check(tritter_ternary_matrix_info(get(), &i));
        return i;
    }
    std::size_t rows() const { return info().rows; }
    std::size_t cols() const { return info().cols; }

    std::vector<float> scales() const {
        std::vector<float> s(info().num_scales);
        check(tritter_ternary_matrix_scales(get(), s.data(), s.size()));
        return s;
    }
    std::vector<uint8_t> export_packed(uint32_t layout = TRITTER_LAYOUT_2BIT) const {
        auto i = info();
        std::vector<uint8_t> p(layout == TRITTER_LAYOUT_BASE3 ? i.packed_bytes_base3 : i.packed_bytes_2bit);
        check(tritter_ternary_matrix_export_packed(get(), layout, p.data(), p.size()));
        return p;
    }
    std::vector<int8_t> to_ternary() const {
        auto i = info();
        std::vector<int8_t> t(i.rows * i.cols);
        check(tritter_ternary_matrix_to_ternary(get(), t.data(), t.size()));
        return t;
    }
    std::vector<float> to_f32() const {
        auto i = info();
        std::vector<float> w(i.rows * i.cols);
        check(tritter_ternary_matrix_to_f32(get(), w.data(), w.size()));
        return w;
    }
    /// y[batch, rows] = x[batch, cols] · Wᵀ (+ bias).
    std::vector<float> matmul(const std::vector<float> &x, std::size_t batch, const std::vector<float> *bias = nullptr,
                              uint32_t act_mode = TRITTER_ACT_F32) const {
        auto i = info();
        if (x.size() != batch * i.cols) throw Error(TRITTER_ERR_SHAPE_MISMATCH, "x.size() != batch * cols");
        std::vector<float> y(batch * i.rows);
        check(tritter_ternary_matrix_matmul(get(), x.data(), batch, i.cols, bias ? bias->data() : nullptr,
                                            bias ? bias->size() : 0, act_mode, y.data(), y.size()));
        return y;
    }

    tritter_ternary_matrix_t *get() const noexcept { return ptr_.get(); }

  private:
    friend class Checkpoint;
    explicit TernaryMatrix(tritter_ternary_matrix_t *m) : ptr_(m) {}
    std::unique_ptr<tritter_ternary_matrix_t, detail::Deleter<tritter_ternary_matrix_t, tritter_ternary_matrix_free>> ptr_;
};

// ---- inference engine (src/ffi/infer.rs) -------------------------------------------------

/// An owned, shareable BitNet b1.58 model (tritter_model_t): const methods and
/// sessions may be used from several threads at once.
class Model {
  public:
    /// Loads a Hugging Face BitNet checkpoint directory.
    static Model load(const std::string &dir, bool lm_head_int8 = false) {
        tritter_load_options_t o;
        check(tritter_load_options_default(&o));
        o.lm_head_int8 = lm_head_int8;
        tritter_model_t *m = nullptr;
        check(tritter_model_load(dir.c_str(), &o, &m));
        return Model(m);
    }
    tritter_model_info_t info() const {
        tritter_model_info_t i;
        check(tritter_model_info(p_.get(), &i));
        return i;
    }
    /// Default session options (one sequence of max_position_embeddings, f32 cache).
    tritter_session_options_t session_options() const {
        tritter_session_options_t o;
        check(tritter_session_options_default(p_.get(), &o));
        return o;
    }
    /// Bytes of weights, KV cache and activations a session would take (nothing allocated).
    tritter_memory_report_t memory(const tritter_session_options_t &o) const {
        tritter_memory_report_t r;
        check(tritter_session_memory(p_.get(), &o, &r));
        return r;
    }
    /// Prompt + up to max_new_tokens tokens (greedy unless params say otherwise).
    std::vector<uint32_t> generate(const std::vector<uint32_t> &prompt, std::size_t max_new_tokens,
                                   const tritter_sampling_params_t *params = nullptr, uint64_t seed = 0,
                                   const std::vector<uint32_t> &stop = {}) const {
        std::size_t stride = prompt.size() + max_new_tokens, len = 0, n = prompt.size();
        std::vector<uint32_t> out(stride ? stride : 1);
        check(tritter_model_generate(p_.get(), prompt.data(), n, &n, 1, max_new_tokens, params, seed, stop.data(),
                                     stop.size(), TRITTER_CACHE_F32, out.data(), out.size(), &len));
        out.resize(len);
        return out;
    }
    const tritter_model_t *get() const noexcept { return p_.get(); }

  private:
    explicit Model(tritter_model_t *m) : p_(m) {}
    std::unique_ptr<tritter_model_t, detail::Deleter<tritter_model_t, tritter_model_free>> p_;
};

/// An owned session (tritter_session_t): a KV cache over a model (which it
/// keeps alive). One call at a time.
class Session {
  public:
    Session(const Model &model, const tritter_session_options_t &o) : vocab_(model.info().vocab_size) {
        tritter_session_t *s = nullptr;
        check(tritter_session_new(model.get(), &o, &s));
        p_.reset(s);
    }
    /// Runs a prompt for sequence `seq`; returns the logits of its last token.
    std::vector<float> prefill(const std::vector<uint32_t> &tokens, std::size_t seq = 0) {
        std::vector<float> l(vocab_);
        check(tritter_session_prefill(p_.get(), seq, tokens.data(), tokens.size(), l.data(), l.size()));
        return l;
    }
    /// One token for sequence `seq`; returns its logits.
    std::vector<float> decode(uint32_t token, std::size_t seq = 0) {
        std::vector<float> l(vocab_);
        check(tritter_session_decode(p_.get(), &seq, &token, 1, l.data(), l.size()));
        return l;
    }
    std::size_t seq_len(std::size_t seq = 0) const {
        std::size_t n = 0;
        check(tritter_session_seq_len(p_.get(), seq, &n));
        return n;
    }
    void reset(std::size_t seq = 0) { check(tritter_session_reset(p_.get(), seq)); }
    void truncate(std::size_t seq, std::size_t len) { check(tritter_session_truncate(p_.get(), seq, len)); }
    tritter_session_t *get() noexcept { return p_.get(); }

  private:
    std::size_t vocab_;
    std::unique_ptr<tritter_session_t, detail::Deleter<tritter_session_t, tritter_session_free>> p_;
};

/// A token from logits (greedy by default; see tritter_sample).
inline uint32_t sample(const std::vector<float> &logits, const tritter_sampling_params_t *params = nullptr,
                       uint64_t seed = 0, uint64_t index = 0) {
    uint32_t t = 0;
    check(tritter_sample(logits.data(), logits.size(), params, seed, index, &t));
    return t;
}

// ---- end of inference engine -------------------------------------------------------------

/// What a checkpoint says about one tensor.
struct TensorInfo {
    uint32_t dtype;                  ///< TRITTER_DTYPE_*
    std::vector<std::size_t> shape;  ///< outermost first
    std::size_t nbytes;              ///< bytes stored
    bool is_ternary;                 ///< ternary() applies
};

/// An open checkpoint (tritter_checkpoint_t): a Hugging Face checkpoint
/// directory, a .safetensors file or a .gguf file, memory-mapped. Move-only;
/// closes on destruction. Matrices and vectors read from it are copies that
/// outlive it. Const methods may be called from several threads at once.
class Checkpoint {
  public:
    explicit Checkpoint(const std::string &path) {
        tritter_checkpoint_t *c = nullptr;
        check(tritter_checkpoint_open(path.c_str(), &c));
        ptr_.reset(c);
    }
    /// Tensor names (sorted for safetensors/HF, file order for GGUF).
    std::vector<std::string> names() const {
        std::size_t n = 0;
        check(tritter_checkpoint_num_tensors(get(), &n));
        std::vector<std::string> out;
        for (std::size_t i = 0; i < n; i++) {
            const char *s = nullptr;
            check(tritter_checkpoint_tensor_name(get(), i, &s));
            out.emplace_back(s);
        }
        return out;
    }
    /// config.json as JSON text ("" when absent).
    std::string config_json() const {
        const char *s = nullptr;
        check(tritter_checkpoint_config_json(get(), &s));
        return s;
    }
    TensorInfo info(const std::string &name) const {
        tritter_tensor_info_t i;
        check(tritter_checkpoint_tensor_info(get(), name.c_str(), &i));
        std::vector<std::size_t> shape(i.ndim);
        check(tritter_checkpoint_tensor_shape(get(), name.c_str(), shape.data(), shape.size()));
        return TensorInfo{i.dtype, shape, i.nbytes, i.is_ternary};
    }
    /// The tensor as f32, row-major.
    std::vector<float> tensor_f32(const std::string &name) const {
        tritter_tensor_info_t i;
        check(tritter_checkpoint_tensor_info(get(), name.c_str(), &i));
        std::vector<float> v(i.numel);
        check(tritter_checkpoint_tensor_f32(get(), name.c_str(), v.data(), v.size()));
        return v;
    }
    /// A ternary matrix (HF packed weight, TQ1_0/TQ2_0, or saved by this library).
    TernaryMatrix ternary(const std::string &name) const {
        tritter_ternary_matrix_t *m = nullptr;
        check(tritter_checkpoint_ternary(get(), name.c_str(), &m));
        return TernaryMatrix(m);
    }
    /// A 2-D float tensor quantized on load (config NULL: defaults).
    TernaryMatrix ternary_quantized(const std::string &name, const tritter_quant_config_t *config = nullptr) const {
        tritter_ternary_matrix_t *m = nullptr;
        check(tritter_checkpoint_ternary_quantized(get(), name.c_str(), config, &m));
        return TernaryMatrix(m);
    }
    tritter_checkpoint_t *get() const noexcept { return ptr_.get(); }

  private:
    std::unique_ptr<tritter_checkpoint_t, detail::Deleter<tritter_checkpoint_t, tritter_checkpoint_free>> ptr_;
};

/// Collects named matrices and arrays, then saves them
/// (TRITTER_SAVE_SAFETENSORS, TRITTER_SAVE_GGUF_TQ2_0, TRITTER_SAVE_GGUF_TQ1_0).
class CheckpointWriter {
  public:
    CheckpointWriter() {
        tritter_checkpoint_writer_t *w = nullptr;
        check(tritter_checkpoint_writer_new(&w));
        ptr_.reset(w);
    }
    CheckpointWriter &add(const std::string &name, const TernaryMatrix &m) {
        check(tritter_checkpoint_writer_add_ternary(get(), name.c_str(), m.get()));
        return *this;
    }
    CheckpointWriter &add(const std::string &name, const std::vector<float> &data,
                          const std::vector<std::size_t> &shape, uint32_t dtype = TRITTER_DTYPE_F32) {
        check(tritter_checkpoint_writer_add_f32(get(), name.c_str(), data.data(), shape.data(), shape.size(), dtype));
        return *this;
    }
    CheckpointWriter &metadata(const std::string &key, const std::string &value) {
        check(tritter_checkpoint_writer_add_metadata(get(), key.c_str(), value.c_str()));
        return *this;
    }
    void save(const std::string &path, uint32_t format = TRITTER_SAVE_SAFETENSORS) const {
        check(tritter_checkpoint_writer_save(get(), path.c_str(), format));
    }
    tritter_checkpoint_writer_t *get() const noexcept { return ptr_.get(); }

  private:
    std::unique_ptr<tritter_checkpoint_writer_t,
                    detail::Deleter<tritter_checkpoint_writer_t, tritter_checkpoint_writer_free>>
        ptr_;
};

}  // namespace tritter

#endif  // TRITTER_ACCEL_HPP
