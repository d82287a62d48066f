//! C entry points for VSA hypervectors: stateless operations on packed
//! vectors passed as plain `uint64_t` buffers, the streaming bundle
//! accumulator and the item (cleanup) memory.
//!
//! A packed vector of `dim` trits is `tritter_hv_packed_words(dim)` =
//! `2 * ceil(dim / 64)` words: the plus plane (bit `i % 64` of word `i / 64`
//! set iff trit `i` is +1), then the minus plane (set iff -1). Inputs must
//! have exactly that many words (`TRITTER_ERR_SHAPE_MISMATCH` otherwise), no
//! trit with both bits set and zero padding bits (`TRITTER_ERR_INVALID_DATA`);
//! outputs need at least that many (`TRITTER_ERR_BUFFER_TOO_SMALL`).
//! The algebra is documented in the Rust module `tritter_accel::vsa`.

use super::args::{self, elems};
use super::handle;
use super::status::{guard, guard_value, tritter_status_t};
use crate::vsa::packed::{packed_words, validate_words, PackedHv};
use crate::vsa::{bundle, dense, ops, Algebra, BundleAccumulator, ItemMemory, Metric, TieRule};
use crate::{Error, Result};

/// `algebra`: multiplicative (MAP), `c_i = a_i * b_i`; self-inverse on bipolar keys.
pub const TRITTER_VSA_ALGEBRA_MAP: u32 = 0;
/// `algebra`: balanced ternary addition mod 3; unbind subtracts mod 3.
pub const TRITTER_VSA_ALGEBRA_MODULAR: u32 = 1;
/// `metric`: `Σ a_i b_i` (larger is nearer).
pub const TRITTER_VSA_METRIC_DOT: u32 = 0;
/// `metric`: `dot / sqrt(nnz(a) nnz(b))`, 0 for an all-zero operand (larger is nearer).
pub const TRITTER_VSA_METRIC_COSINE: u32 = 1;
/// `metric`: number of differing trits (smaller is nearer).
pub const TRITTER_VSA_METRIC_HAMMING: u32 = 2;
/// `tie_rule`: a zero sum gives trit 0 (ternary result).
pub const TRITTER_VSA_TIE_ZERO: u32 = 0;
/// `tie_rule`: a zero sum at trit `i` gives trit `i` of `random(dim, tie_seed, 1)` (bipolar result).
pub const TRITTER_VSA_TIE_RANDOM: u32 = 1;

super::status::c_constants!(Algebra, Algebra::ALL, {
    Algebra::Map => TRITTER_VSA_ALGEBRA_MAP,
    Algebra::Modular => TRITTER_VSA_ALGEBRA_MODULAR,
});
super::status::c_constants!(Metric, Metric::ALL, {
    Metric::Dot => TRITTER_VSA_METRIC_DOT,
    Metric::Cosine => TRITTER_VSA_METRIC_COSINE,
    Metric::Hamming => TRITTER_VSA_METRIC_HAMMING,
});
super::status::c_constants!(TieRule, &[TieRule::Zero, TieRule::Random(0)], {
    TieRule::Zero => TRITTER_VSA_TIE_ZERO,
    TieRule::Random(_) => TRITTER_VSA_TIE_RANDOM,
});

/// A streaming bundle: `int64` counters per trit, fed one vector at a time.
/// Owns its memory; free with [`tritter_bundle_accumulator_free`]. Adding
/// mutates it: do not share one accumulator across threads without a lock.
pub struct tritter_bundle_accumulator_t(BundleAccumulator);

/// An item (cleanup) memory: labelled packed hypervectors of one dimension
/// and top-k queries. Owns its memory; free with [`tritter_item_memory_free`].
/// Queries only read it (any number of threads may query at once); adding
/// needs exclusive access.
pub struct tritter_item_memory_t(ItemMemory);

/// Borrows and validates one packed input vector.
unsafe fn hv_in<'a>(
    p: *const u64,
    len: usize,
    dim: usize,
    name: &'static str,
) -> Result<&'a [u64]> {
    let need = packed_words(dim);
    if len != need {
        return Err(Error::shape(
            name,
            format!("a packed vector of dim {dim} has {need} words, got {len}"),
        ));
    }
    let s = unsafe { args::slice(p, len, name)? };
    validate_words(dim, s, name)?;
    Ok(s)
}

/// Borrows one packed output vector (exactly the needed words).
unsafe fn hv_out<'a>(
    p: *mut u64,
    len: usize,
    dim: usize,
    name: &'static str,
) -> Result<&'a mut [u64]> {
    unsafe { args::out_slice(p, len, packed_words(dim), name) }
}

/// Writes `2 * ceil(dim / 64)`, the words of one packed vector, to `*words_out`.
///
/// # Safety
/// `words_out` must be valid for writing one `size_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_packed_words(
    dim: usize,
    words_out: *mut usize,
) -> tritter_status_t {
    guard(|| unsafe { args::write(words_out, packed_words(dim), "words_out") })
}

/// Writes `random(dim, seed, density)` packed: trit `i` is non-zero iff
/// `(h >> 11) / 2^53 < density` with `h = hash(seed, i)`, +1 if `h` is even.
/// `density` must be finite in [0, 1] (1 = bipolar). A pure function of
/// `(seed, i)`: the same on every machine and thread count.
///
/// # Safety
/// `words_out` must be NULL or valid for `words_len` words.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_random(
    dim: usize,
    seed: u64,
    density: f64,
    words_out: *mut u64,
    words_len: usize,
) -> tritter_status_t {
    guard(|| {
        let out = unsafe { hv_out(words_out, words_len, dim, "words_out")? };
        out.copy_from_slice(PackedHv::random(dim, seed, density)?.words());
        Ok(())
    })
}

/// Writes `random(dim, seed, density)` as `dim` int8 trits (the same vector as
/// [`tritter_hv_random`]).
///
/// # Safety
/// `trits_out` must be NULL or valid for `trits_len` bytes.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_random_dense(
    dim: usize,
    seed: u64,
    density: f64,
    trits_out: *mut i8,
    trits_len: usize,
) -> tritter_status_t {
    guard(|| {
        let out = unsafe { args::out_slice(trits_out, trits_len, dim, "trits_out")? };
        out.copy_from_slice(&dense::random(dim, seed, density)?);
        Ok(())
    })
}

/// Packs `dim` int8 trits (each in {-1, 0, 1}, else `TRITTER_ERR_INVALID_DATA`)
/// into `tritter_hv_packed_words(dim)` words.
///
/// # Safety
/// `trits` NULL or valid for `dim` bytes; `words_out` NULL or valid for `words_len` words.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_pack(
    trits: *const i8,
    dim: usize,
    words_out: *mut u64,
    words_len: usize,
) -> tritter_status_t {
    guard(|| {
        let t = unsafe { args::slice(trits, dim, "trits")? };
        let out = unsafe { hv_out(words_out, words_len, dim, "words_out")? };
        out.copy_from_slice(PackedHv::from_trits(t)?.words());
        Ok(())
    })
}

/// Unpacks a packed vector (validated) into `dim` int8 trits.
///
/// # Safety
/// `words` NULL or valid for `words_len` words; `trits_out` NULL or valid for `trits_len` bytes.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_unpack(
    words: *const u64,
    words_len: usize,
    dim: usize,
    trits_out: *mut i8,
    trits_len: usize,
) -> tritter_status_t {
    guard(|| {
        let w = unsafe { hv_in(words, words_len, dim, "words")? };
        let out = unsafe { args::out_slice(trits_out, trits_len, dim, "trits_out")? };
        PackedHv::from_words_unchecked(dim, w.to_vec()).write_trits(out);
        Ok(())
    })
}

/// `out = bind(a, b)` in `algebra` (`TRITTER_VSA_ALGEBRA_*`): MAP
/// `a_i * b_i`, modular `(a_i + b_i) mod 3` in {-1, 0, 1}. `a` and `b` have
/// `words_len = tritter_hv_packed_words(dim)` words each.
///
/// # Safety
/// Inputs NULL or valid for `words_len` words; `out` NULL or valid for
/// `out_len` words and not overlapping the inputs.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_bind(
    a: *const u64,
    b: *const u64,
    words_len: usize,
    dim: usize,
    algebra: u32,
    out: *mut u64,
    out_len: usize,
) -> tritter_status_t {
    guard(|| {
        let alg = Algebra::from_code(algebra)?;
        let o = unsafe { hv_out(out, out_len, dim, "out")? };
        let a = unsafe { hv_in(a, words_len, dim, "a")? };
        let b = unsafe { hv_in(b, words_len, dim, "b")? };
        ops::bind_words(a, b, alg, o);
        Ok(())
    })
}

/// `out = unbind(c, b)` in `algebra`: MAP `c_i * b_i` (= bind), modular
/// `(c_i - b_i) mod 3` (exactly inverts bind).
///
/// # Safety
/// As [`tritter_hv_bind`].
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_unbind(
    c: *const u64,
    b: *const u64,
    words_len: usize,
    dim: usize,
    algebra: u32,
    out: *mut u64,
    out_len: usize,
) -> tritter_status_t {
    guard(|| {
        let alg = Algebra::from_code(algebra)?;
        let o = unsafe { hv_out(out, out_len, dim, "out")? };
        let c = unsafe { hv_in(c, words_len, dim, "c")? };
        let b = unsafe { hv_in(b, words_len, dim, "b")? };
        ops::unbind_words(c, b, alg, o);
        Ok(())
    })
}

/// `out = bundle` of `n` packed vectors stored back to back in `vectors`
/// (`vectors_len = n * tritter_hv_packed_words(dim)` words): `sign(Σ w_k x_k)`
/// with `weights` (NULL = all 1; else `weights_len = n` int32) and the tie
/// rule `TRITTER_VSA_TIE_ZERO` or `TRITTER_VSA_TIE_RANDOM` (ties take trit `i`
/// of `random(dim, tie_seed, 1)`; `tie_seed` is ignored for ZERO). `n = 0`
/// gives the all-tie result.
///
/// # Safety
/// Pointers NULL or valid for their lengths; `out` not overlapping the inputs.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_bundle(
    vectors: *const u64,
    vectors_len: usize,
    n: usize,
    dim: usize,
    weights: *const i32,
    weights_len: usize,
    tie_rule: u32,
    tie_seed: u64,
    out: *mut u64,
    out_len: usize,
) -> tritter_status_t {
    guard(|| {
        let tie = TieRule::from_code(tie_rule, tie_seed)?;
        let stride = packed_words(dim);
        let need = elems(n, stride, "n * packed words")?;
        if vectors_len != need {
            return Err(Error::shape(
                "vectors_len",
                format!("{n} vectors of dim {dim} have {need} words, got {vectors_len}"),
            ));
        }
        let v = unsafe { args::slice(vectors, vectors_len, "vectors")? };
        let w = if weights.is_null() && weights_len == 0 {
            None
        } else {
            if weights_len != n {
                return Err(Error::shape(
                    "weights_len",
                    format!("{weights_len} weights for {n} vectors"),
                ));
            }
            Some(unsafe { args::slice(weights, weights_len, "weights")? })
        };
        let o = unsafe { hv_out(out, out_len, dim, "out")? };
        let rows: Vec<&[u64]> = if stride == 0 {
            vec![&[][..]; n]
        } else {
            v.chunks_exact(stride).collect()
        };
        o.copy_from_slice(&bundle::bundle_rows(dim, &rows, w, tie)?);
        Ok(())
    })
}

/// `out = permute(a, shift)`: `out[(i + shift) mod dim] = a[i]` (NumPy's
/// `np.roll`); a negative shift rotates the other way, so `-shift` inverts it.
///
/// # Safety
/// As [`tritter_hv_bind`].
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_permute(
    a: *const u64,
    words_len: usize,
    dim: usize,
    shift: i64,
    out: *mut u64,
    out_len: usize,
) -> tritter_status_t {
    guard(|| {
        let o = unsafe { hv_out(out, out_len, dim, "out")? };
        let a = unsafe { hv_in(a, words_len, dim, "a")? };
        ops::permute_words(dim, a, shift, o);
        Ok(())
    })
}

/// Writes the similarity of `a` and `b` by `metric` (`TRITTER_VSA_METRIC_*`)
/// to `*score_out`: dot, cosine (0 if either is all zero) or Hamming distance.
///
/// # Safety
/// Inputs NULL or valid for `words_len` words; `score_out` valid for one double.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_similarity(
    a: *const u64,
    b: *const u64,
    words_len: usize,
    dim: usize,
    metric: u32,
    score_out: *mut f64,
) -> tritter_status_t {
    guard(|| {
        let m = Metric::from_code(metric)?;
        let a = unsafe { hv_in(a, words_len, dim, "a")? };
        let b = unsafe { hv_in(b, words_len, dim, "b")? };
        args::check_out(score_out, "score_out")?;
        let s = ops::similarity_words_at(crate::vsa::simd::best_level(), a, b, m);
        unsafe { args::write(score_out, s, "score_out") }
    })
}

/// One-vs-many: scores `query` against `n` packed vectors stored back to back
/// in `rows` (`rows_len = n * tritter_hv_packed_words(dim)`), writing `n`
/// doubles to `scores_out`.
///
/// # Safety
/// Pointers NULL or valid for their lengths; `scores_out` not overlapping the inputs.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_hv_similarity_many(
    query: *const u64,
    query_len: usize,
    rows: *const u64,
    rows_len: usize,
    n: usize,
    dim: usize,
    metric: u32,
    scores_out: *mut f64,
    scores_len: usize,
) -> tritter_status_t {
    guard(|| {
        let m = Metric::from_code(metric)?;
        let q = unsafe { hv_in(query, query_len, dim, "query")? };
        let need = elems(n, packed_words(dim), "n * packed words")?;
        if rows_len != need {
            return Err(Error::shape(
                "rows_len",
                format!("{n} vectors of dim {dim} have {need} words, got {rows_len}"),
            ));
        }
        let r = unsafe { args::slice(rows, rows_len, "rows")? };
        let o = unsafe { args::out_slice(scores_out, scores_len, n, "scores_out")? };
        let qv = PackedHv::from_words_unchecked(dim, q.to_vec());
        ops::similarity_many(&qv, r, m, o)
    })
}

/// Creates an empty bundle accumulator for `dim` trits in `*acc_out` (8
/// bytes a trit; `TRITTER_ERR_OUT_OF_MEMORY` / `TRITTER_ERR_SIZE_OVERFLOW`
/// naming `dim` when that cannot be allocated).
///
/// # Safety
/// `acc_out` valid for writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_bundle_accumulator_new(
    dim: usize,
    acc_out: *mut *mut tritter_bundle_accumulator_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(acc_out, "acc_out")?;
        let a = BundleAccumulator::new(dim)?;
        unsafe { handle::store(acc_out, tritter_bundle_accumulator_t(a), "acc_out") }
    })
}

/// Adds `weight *` a packed vector of the accumulator's dim.
/// Errors: wrong length or corrupt words (`vector`).
///
/// # Safety
/// `acc` NULL or live (not used by another thread meanwhile); `vector` NULL or
/// valid for `words_len` words.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_bundle_accumulator_add(
    acc: *mut tritter_bundle_accumulator_t,
    vector: *const u64,
    words_len: usize,
    weight: i32,
) -> tritter_status_t {
    guard(|| {
        let a = &mut unsafe { handle::get_mut(acc, "acc")? }.0;
        let v = unsafe { hv_in(vector, words_len, a.dim(), "vector")? };
        a.add_words(v, weight)
    })
}

/// Writes `sign(counts)` with the tie rule (as [`tritter_hv_bundle`]) to `out`;
/// the accumulator keeps its counts (add more and finish again).
///
/// # Safety
/// `acc` NULL or live; `out` NULL or valid for `out_len` words.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_bundle_accumulator_finish(
    acc: *const tritter_bundle_accumulator_t,
    tie_rule: u32,
    tie_seed: u64,
    out: *mut u64,
    out_len: usize,
) -> tritter_status_t {
    guard(|| {
        let a = &unsafe { handle::get(acc, "acc")? }.0;
        let tie = TieRule::from_code(tie_rule, tie_seed)?;
        let o = unsafe { hv_out(out, out_len, a.dim(), "out")? };
        o.copy_from_slice(a.finish(tie).words());
        Ok(())
    })
}

/// Writes the number of vectors added since creation or reset to `*len_out`.
///
/// # Safety
/// `acc` NULL or live; `len_out` valid for writing one `uint64_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_bundle_accumulator_len(
    acc: *const tritter_bundle_accumulator_t,
    len_out: *mut u64,
) -> tritter_status_t {
    guard(|| {
        let a = &unsafe { handle::get(acc, "acc")? }.0;
        unsafe { args::write(len_out, a.len(), "len_out") }
    })
}

/// Clears the counts.
///
/// # Safety
/// `acc` NULL or live (not used by another thread meanwhile).
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_bundle_accumulator_reset(
    acc: *mut tritter_bundle_accumulator_t,
) -> tritter_status_t {
    guard(|| {
        unsafe { handle::get_mut(acc, "acc")? }.0.reset();
        Ok(())
    })
}

/// Frees an accumulator; NULL is a no-op.
///
/// # Safety
/// `acc` NULL or a live handle not used again.
#[no_mangle]
pub unsafe extern "C" fn tritter_bundle_accumulator_free(acc: *mut tritter_bundle_accumulator_t) {
    guard_value((), || unsafe { handle::free(acc) })
}

/// Creates an empty item memory for vectors of `dim` trits (`dim == 0` is
/// valid, as for every VSA call). Storage grows with each add; a refused
/// allocation is `TRITTER_ERR_OUT_OF_MEMORY` and leaves the memory unchanged.
///
/// # Safety
/// `memory_out` valid for writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_item_memory_new(
    dim: usize,
    memory_out: *mut *mut tritter_item_memory_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(memory_out, "memory_out")?;
        let m = ItemMemory::new(dim)?;
        unsafe { handle::store(memory_out, tritter_item_memory_t(m), "memory_out") }
    })
}

/// Stores a packed vector (validated) with `label`; writes its 0-based index
/// to `*index_out` unless `index_out` is NULL.
///
/// # Safety
/// `memory` NULL or live (exclusive access); `vector` NULL or valid for
/// `words_len` words; `index_out` NULL or valid for one `size_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_item_memory_add(
    memory: *mut tritter_item_memory_t,
    vector: *const u64,
    words_len: usize,
    label: u64,
    index_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let m = &mut unsafe { handle::get_mut(memory, "memory")? }.0;
        let v = unsafe { hv_in(vector, words_len, m.dim(), "vector")? };
        let i = m.add_words(v, label)?;
        if !index_out.is_null() {
            unsafe { args::write(index_out, i, "index_out")? };
        }
        Ok(())
    })
}

/// Writes the number of stored vectors to `*len_out`.
///
/// # Safety
/// `memory` NULL or live; `len_out` valid for one `size_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_item_memory_len(
    memory: *const tritter_item_memory_t,
    len_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(memory, "memory")? }.0;
        unsafe { args::write(len_out, m.len(), "len_out") }
    })
}

/// Writes the memory's vector dimension to `*dim_out`.
///
/// # Safety
/// `memory` NULL or live; `dim_out` valid for one `size_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_item_memory_dim(
    memory: *const tritter_item_memory_t,
    dim_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(memory, "memory")? }.0;
        unsafe { args::write(dim_out, m.dim(), "dim_out") }
    })
}

/// Copies stored vector `index` (packed) to `out` and its label to
/// `*label_out` (NULL to skip). Errors: `index >= len` (`index`).
///
/// # Safety
/// `memory` NULL or live; `out` NULL or valid for `out_len` words.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_item_memory_get(
    memory: *const tritter_item_memory_t,
    index: usize,
    out: *mut u64,
    out_len: usize,
    label_out: *mut u64,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(memory, "memory")? }.0;
        let v = m.get(index)?;
        let o = unsafe { hv_out(out, out_len, m.dim(), "out")? };
        o.copy_from_slice(v.words());
        if !label_out.is_null() {
            unsafe { args::write(label_out, m.label(index)?, "label_out")? };
        }
        Ok(())
    })
}

/// The `k` stored vectors nearest to `query` by `metric` (largest dot or
/// cosine, smallest Hamming distance), nearest first, ties to the lower
/// insertion index; identical for any thread count. Writes `found =
/// min(k, len)` labels to `labels_out` and scores to `scores_out` (both need
/// `capacity >= found`; `scores_out` may be NULL) and `found` to `*found_out`.
///
/// # Safety
/// `memory` NULL or live; `query` NULL or valid for `query_len` words;
/// outputs valid for `capacity` elements; `found_out` valid for one `size_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_item_memory_query_topk(
    memory: *const tritter_item_memory_t,
    query: *const u64,
    query_len: usize,
    k: usize,
    metric: u32,
    labels_out: *mut u64,
    scores_out: *mut f64,
    capacity: usize,
    found_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(memory, "memory")? }.0;
        let met = Metric::from_code(metric)?;
        let q = unsafe { hv_in(query, query_len, m.dim(), "query")? };
        args::check_out(found_out, "found_out")?;
        let found = k.min(m.len());
        let labels = unsafe { args::out_slice(labels_out, capacity, found, "labels_out")? };
        let scores = if scores_out.is_null() {
            None
        } else {
            Some(unsafe { args::out_slice(scores_out, capacity, found, "scores_out")? })
        };
        let qv = PackedHv::from_words_unchecked(m.dim(), q.to_vec());
        let hits = m.query(&qv, k, met)?;
        for (i, h) in hits.iter().enumerate() {
            labels[i] = h.label;
        }
        if let Some(s) = scores {
            for (i, h) in hits.iter().enumerate() {
                s[i] = h.score;
            }
        }
        unsafe { args::write(found_out, hits.len(), "found_out") }
    })
}

/// Scores `query` against every stored vector (insertion order), writing
/// `len` doubles to `scores_out`.
///
/// # Safety
/// `memory` NULL or live; `query` NULL or valid for `query_len` words;
/// `scores_out` NULL or valid for `scores_len` doubles.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_item_memory_similarities(
    memory: *const tritter_item_memory_t,
    query: *const u64,
    query_len: usize,
    metric: u32,
    scores_out: *mut f64,
    scores_len: usize,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(memory, "memory")? }.0;
        let met = Metric::from_code(metric)?;
        let q = unsafe { hv_in(query, query_len, m.dim(), "query")? };
        let o = unsafe { args::out_slice(scores_out, scores_len, m.len(), "scores_out")? };
        let qv = PackedHv::from_words_unchecked(m.dim(), q.to_vec());
        o.copy_from_slice(&m.similarities(&qv, met)?);
        Ok(())
    })
}

/// Frees an item memory; NULL is a no-op.
///
/// # Safety
/// `memory` NULL or a live handle not used again.
#[no_mangle]
pub unsafe extern "C" fn tritter_item_memory_free(memory: *mut tritter_item_memory_t) {
    guard_value((), || unsafe { handle::free(memory) })
}
