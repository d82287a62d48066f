//! C entry points for gradient compression ([`crate::grad::compress`]) and
//! ternary gradient accumulation ([`crate::grad::accumulate`]).
//!
//! Gradients cross as plain `const float *` + length (contiguous f32);
//! payloads as `uint8_t` buffers in the documented wire format.

use super::args;
use super::handle;
use super::status::{guard, tritter_status_t};
use crate::grad::accumulate::TernaryAccumulator;
use crate::grad::compress::{
    payload, projection::Projection, Compressed, Compressor, CompressorConfig, CountSketch,
    FetchSgd, Method, RegionExchange,
};
use crate::{Error, Result};

/// `method`: count sketch (linear; decoded by the median-of-rows estimate).
pub const TRITTER_GRAD_SKETCH: u32 = 1;
/// `method`: ternary stochastic quantization (TernGrad), 2 bits + a scale per block.
pub const TRITTER_GRAD_TERNARY: u32 = 2;
/// `method`: top-k sparsification (u32 index + f32 value per kept coordinate).
pub const TRITTER_GRAD_TOPK: u32 = 3;
/// `method`: sparse ternary random projection (linear; decoded by the transpose).
pub const TRITTER_GRAD_PROJECTION: u32 = 4;
/// `method`: quantized top-k: Golomb-Rice coded positions, a sign and a
/// `value_bits`-bit magnitude code per kept coordinate (about 1 in 8
/// coordinates kept at 32x with 2-bit codes, where top-k keeps 1 in 64); use
/// it with error feedback.
pub const TRITTER_GRAD_QTOPK: u32 = 5;
super::status::c_constants!(Method, Method::ALL, {
    Method::CountSketch => TRITTER_GRAD_SKETCH,
    Method::Ternary => TRITTER_GRAD_TERNARY,
    Method::TopK => TRITTER_GRAD_TOPK,
    Method::Projection => TRITTER_GRAD_PROJECTION,
    Method::QTopK => TRITTER_GRAD_QTOPK,
});
/// Bytes of payload header plus checksum.
pub const TRITTER_GRAD_PAYLOAD_OVERHEAD: usize = 44;
const _: () = assert!(TRITTER_GRAD_PAYLOAD_OVERHEAD == payload::OVERHEAD);

/// Compressor settings. Get defaults from [`tritter_grad_config_default`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tritter_grad_config_t {
    /// `TRITTER_GRAD_*`.
    pub method: u32,
    /// Compression factor >= 1 (f32 bytes / body bytes) for sketch, top-k,
    /// projection and quantized top-k; ternary ignores it (its factor is `32 / (2 + 32 / block)`).
    pub ratio: f64,
    /// Count-sketch rows, 1..=15.
    pub rows: usize,
    /// Ternary coordinates per scale (multiple of 4, 4..=2^20).
    pub block: usize,
    /// Quantized top-k magnitude-code width, 0..=4 (default 2).
    pub value_bits: usize,
    /// Base seed (step `t` uses a seed derived from it and `t`).
    pub seed: u64,
    /// Worker id, mixed into the ternary rounding seed only.
    pub worker: u64,
    /// Keep an error-feedback residual.
    pub error_feedback: bool,
}

impl From<&CompressorConfig> for tritter_grad_config_t {
    fn from(c: &CompressorConfig) -> Self {
        tritter_grad_config_t {
            method: c.method.code(),
            ratio: c.ratio,
            rows: c.rows,
            block: c.block,
            value_bits: c.value_bits,
            seed: c.seed,
            worker: c.worker,
            error_feedback: c.error_feedback,
        }
    }
}

fn to_config(c: &tritter_grad_config_t) -> Result<CompressorConfig> {
    Ok(CompressorConfig {
        method: Method::from_code(c.method)?,
        ratio: c.ratio,
        rows: c.rows,
        block: c.block,
        value_bits: c.value_bits,
        seed: c.seed,
        worker: c.worker,
        error_feedback: c.error_feedback,
    })
}

/// What a payload's header says (after full validation).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tritter_grad_payload_info_t {
    /// `TRITTER_GRAD_*`.
    pub method: u32,
    /// Gradient length.
    pub dim: usize,
    /// Seed the payload was made with.
    pub seed: u64,
    /// Sketch rows / ternary block / top-k k / projection m / quantized top-k k.
    pub param_a: usize,
    /// Sketch cols / quantized top-k `rice | value_bits << 8` (0 otherwise).
    pub param_b: usize,
    /// Total payload bytes.
    pub wire_bytes: usize,
}

/// A compressor with per-parameter state (error-feedback residual, step
/// counter). Owns its memory; free with [`tritter_grad_compressor_free`].
/// Mutated by compress: not shareable across threads without a lock.
pub struct tritter_grad_compressor_t(Compressor);

/// FetchSGD state (momentum and error tables in sketch space). Owns its
/// memory; free with [`tritter_fetchsgd_free`]. Mutated by step: not
/// shareable across threads without a lock.
pub struct tritter_fetchsgd_t(FetchSgd);

/// One rank's state of the two-phase region exchange of one gradient
/// bucket (see [`tritter_grad_regions_new`]). Owns its memory; free with
/// [`tritter_grad_regions_free`]. Mutated by compress and reduce: not
/// shareable across threads without a lock.
pub struct tritter_grad_regions_t(RegionExchange);

/// A packed ternary gradient accumulator. Owns its memory; free with
/// [`tritter_ternary_accumulator_free`]. Mutated by add: not shareable across
/// threads without a lock.
pub struct tritter_ternary_accumulator_t(TernaryAccumulator);

/// Writes the default configuration (top-k, ratio 32, rows 1, block 256,
/// seed 0, worker 0, error feedback on).
///
/// # Safety
/// `config_out` must be valid for writing one `tritter_grad_config_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_config_default(
    config_out: *mut tritter_grad_config_t,
) -> tritter_status_t {
    guard(|| unsafe {
        args::write(
            config_out,
            (&CompressorConfig::default()).into(),
            "config_out",
        )
    })
}

/// Creates a compressor for gradients of `dim` floats.
/// Errors: NULL `config`/`compressor_out`, `dim` zero or >= 2^32, invalid
/// method code, ratio < 1 or non-finite, bad rows/block;
/// `TRITTER_ERR_OUT_OF_MEMORY` naming `dim` when the error-feedback residual
/// (`4 dim` bytes) cannot be allocated.
///
/// # Safety
/// `config` must point to a valid config; `compressor_out` must be valid for
/// writing one pointer. The caller owns the new handle.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_compressor_new(
    dim: usize,
    config: *const tritter_grad_config_t,
    compressor_out: *mut *mut tritter_grad_compressor_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(compressor_out, "compressor_out")?;
        let cfg = to_config(unsafe { args::reference(config, "config")? })?;
        let c = Compressor::new(dim, cfg)?;
        unsafe {
            handle::store(
                compressor_out,
                tritter_grad_compressor_t(c),
                "compressor_out",
            )
        }
    })
}

/// Frees a compressor; NULL is a no-op.
///
/// # Safety
/// `compressor` must be NULL or a live handle not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_compressor_free(compressor: *mut tritter_grad_compressor_t) {
    unsafe { handle::free(compressor) }
}

/// Exact payload bytes of every compress call of this compressor.
///
/// # Safety
/// `compressor` must be a live handle; `bytes_out` valid for one `size_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_compressor_wire_bytes(
    compressor: *const tritter_grad_compressor_t,
    bytes_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get(compressor, "compressor")? };
        unsafe { args::write(bytes_out, c.0.wire_bytes(), "bytes_out") }
    })
}

/// Compresses `grad` (`n` floats, `n == dim`) into `payload_out`
/// (`payload_cap >= wire_bytes`), writes the payload length to
/// `written_out`, updates the error-feedback residual and advances the step.
/// Errors: NULL, length mismatch, non-finite gradient
/// (`TRITTER_ERR_NON_FINITE`), buffer too small; the state is unchanged on
/// error.
///
/// # Safety
/// Pointers valid for their lengths; `payload_out` must not overlap `grad`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_compressor_compress(
    compressor: *mut tritter_grad_compressor_t,
    grad: *const f32,
    n: usize,
    payload_out: *mut u8,
    payload_cap: usize,
    written_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get_mut(compressor, "compressor")? };
        let g = unsafe { args::slice(grad, n, "grad")? };
        args::check_out(written_out, "written_out")?;
        let need = c.0.wire_bytes();
        let out = unsafe { args::out_slice(payload_out, payload_cap, need, "payload_out")? };
        if n != c.0.dim() {
            return Err(Error::shape(
                "grad",
                format!("expected {} elements, got {n}", c.0.dim()),
            ));
        }
        let p = c.0.compress(g)?;
        payload::encode_into(&p, out)?;
        unsafe { args::write(written_out, need, "written_out") }
    })
}

/// Copies the error-feedback residual (`dim` floats; zeros-length compressors
/// without error feedback report `TRITTER_ERR_INVALID_STATE`).
///
/// # Safety
/// `residual_out` valid for `out_len` floats.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_compressor_residual(
    compressor: *const tritter_grad_compressor_t,
    residual_out: *mut f32,
    out_len: usize,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get(compressor, "compressor")? };
        if !c.0.config().error_feedback {
            return Err(Error::InvalidState(
                "`compressor` has no residual (error feedback is off)".into(),
            ));
        }
        let out = unsafe { args::out_slice(residual_out, out_len, c.0.dim(), "residual_out")? };
        out.copy_from_slice(c.0.residual());
        Ok(())
    })
}

/// Zeroes the residual and the step counter.
///
/// # Safety
/// `compressor` must be a live handle.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_compressor_reset(
    compressor: *mut tritter_grad_compressor_t,
) -> tritter_status_t {
    guard(|| {
        unsafe { handle::get_mut(compressor, "compressor")? }
            .0
            .reset();
        Ok(())
    })
}

/// Steps compressed so far.
///
/// # Safety
/// `compressor` must be a live handle; `step_out` valid for one `uint64_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_compressor_step(
    compressor: *const tritter_grad_compressor_t,
    step_out: *mut u64,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get(compressor, "compressor")? };
        unsafe { args::write(step_out, c.0.step(), "step_out") }
    })
}

/// Validates a payload completely (header, sizes, checksum, body) and
/// describes it. Errors: `TRITTER_ERR_INVALID_DATA` naming `payload`.
///
/// # Safety
/// `payload` valid for `payload_len` bytes; `info_out` for one struct.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_payload_info(
    payload: *const u8,
    payload_len: usize,
    info_out: *mut tritter_grad_payload_info_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(info_out, "info_out")?;
        let b = unsafe { args::slice(payload, payload_len, "payload")? };
        let c = Compressed::from_bytes(b)?;
        let (a, bb) = c.params();
        let info = tritter_grad_payload_info_t {
            method: c.method().code(),
            dim: c.dim,
            seed: c.seed,
            param_a: a,
            param_b: bb,
            wire_bytes: c.wire_bytes(),
        };
        unsafe { args::write(info_out, info, "info_out") }
    })
}

/// Decodes a payload into `out` (`out_len` must equal its dim), validating
/// it as it goes (header, CRC, body; a quantized top-k stream in the same
/// pass that decodes it). Errors: invalid payload
/// (`TRITTER_ERR_INVALID_DATA`; if the body is found invalid part-way, `out`
/// is set to zeros), `out` length mismatch (`TRITTER_ERR_SHAPE_MISMATCH`,
/// `out` unchanged).
///
/// # Safety
/// `payload` valid for `payload_len` bytes; `out` for `out_len` floats.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_decompress(
    payload: *const u8,
    payload_len: usize,
    out: *mut f32,
    out_len: usize,
) -> tritter_status_t {
    guard(|| {
        let b = unsafe { args::slice(payload, payload_len, "payload")? };
        let o = unsafe { args::slice_mut(out, out_len, "out")? };
        Compressed::decompress_bytes_into(b, o)
    })
}

/// Sums two payloads of a linear method (sketch or projection) with the same
/// dim, seed and geometry into `sum_out` (`sum_cap >= a_len`); the result
/// decodes the sum of the two gradients. Errors: invalid payloads, non-linear
/// method or mismatch (`TRITTER_ERR_INVALID_ARGUMENT` naming `other`), buffer
/// too small, and `TRITTER_ERR_NON_FINITE` naming `sum` when the sum leaves
/// the range a payload may hold (an element overflows to ±inf, or a
/// projection value exceeds ±f32::MAX/2): every payload this returns
/// validates and decodes to finite values.
///
/// Aliasing: `sum_out` may be the same buffer as `a` or `b` (an in-place
/// sum, e.g. `tritter_grad_payload_sum(acc, n, p, n, acc, n)`): both inputs
/// are read and validated completely before anything is written. Any other
/// partial overlap is undefined. Nothing is written on error.
///
/// # Safety
/// Inputs valid for their lengths; `sum_out` valid for `sum_cap` bytes and
/// either disjoint from the inputs or starting at the same address as one
/// of them.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_payload_sum(
    a: *const u8,
    a_len: usize,
    b: *const u8,
    b_len: usize,
    sum_out: *mut u8,
    sum_cap: usize,
) -> tritter_status_t {
    guard(|| {
        // Decode (copying) both inputs in a scope of their own: their borrows
        // end before the output, which may alias one of them, is borrowed.
        let sum = {
            let pa = unsafe { args::slice(a, a_len, "a")? };
            let pb = unsafe { args::slice(b, b_len, "b")? };
            let mut ca = Compressed::from_bytes(pa)?;
            let cb = Compressed::from_bytes(pb)?;
            ca.add_assign(&cb)?;
            ca
        };
        let out = unsafe { args::out_slice(sum_out, sum_cap, sum.wire_bytes(), "sum_out")? };
        payload::encode_into(&sum, out)
    })
}

/// Creates rank `rank`'s state of a two-phase region exchange for gradient
/// buckets of `dim` floats over `world` ranks: traffic per rank about
/// `(world-1)/world * 4 dim * (1/ratio + 1/owner ratio)`, flat in `world`
/// (an all_gather of whole payloads grows with `world`).
///
/// The bucket is split into `world` regions, region `j` =
/// `[j L, min(dim, (j+1) L))`, `L = ceil(dim / world)`; rank `j` owns region
/// `j`. Per step: [`tritter_grad_regions_compress`] (every rank; send slot
/// `j` to rank `j`, an all-to-all), [`tritter_grad_regions_reduce`] (every
/// rank, on the `world` slots it received; all-gather its result), then
/// [`tritter_grad_regions_decode`] (every rank, on the gathered owner
/// payloads; the averaged update, the same on every rank). Region `j` is
/// compressed with `local` and seed `region_seeds[j]` (`region_seeds` NULL
/// with `seeds_len` 0: seeds derived from `local->seed` and `j`); the owned
/// region's sum with `owner` (its own seed and ratio). With error feedback,
/// every rank keeps what its regional payloads lost and every owner what
/// re-compression lost ([`tritter_grad_regions_residuals`]).
///
/// Errors: NULL `local`/`owner`/`regions_out`, `dim` zero or >= 2^32,
/// `world` zero or above 2^20, `rank >= world`, `seeds_len` not 0 or
/// `world`, an invalid configuration (named as by
/// [`tritter_grad_compressor_new`]), out of memory.
///
/// # Safety
/// `local` and `owner` must point to valid configs; `region_seeds` valid
/// for `seeds_len` values; `regions_out` valid for writing one pointer. The
/// caller owns the new handle.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_regions_new(
    dim: usize,
    world: usize,
    rank: usize,
    local: *const tritter_grad_config_t,
    owner: *const tritter_grad_config_t,
    region_seeds: *const u64,
    seeds_len: usize,
    regions_out: *mut *mut tritter_grad_regions_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(regions_out, "regions_out")?;
        let l = to_config(unsafe { args::reference(local, "local")? })?;
        let o = to_config(unsafe { args::reference(owner, "owner")? })?;
        let seeds = unsafe { args::slice(region_seeds, seeds_len, "region_seeds")? };
        let seeds = (seeds_len > 0).then_some(seeds);
        let x = RegionExchange::new(dim, world, rank, l, o, seeds)?;
        unsafe { handle::store(regions_out, tritter_grad_regions_t(x), "regions_out") }
    })
}

/// Frees a region exchange; NULL is a no-op.
///
/// # Safety
/// `regions` must be NULL or a live handle not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_regions_free(regions: *mut tritter_grad_regions_t) {
    unsafe { handle::free(regions) }
}

/// Slot sizes: `slot_out` = bytes of one phase-1 slot (the buffers of
/// compress and reduce are `world * slot` bytes), `owner_slot_out` = bytes
/// of one owner payload (the gathered buffer is `world * owner_slot`).
///
/// # Safety
/// `regions` must be a live handle; the outputs valid for one `size_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_regions_slot_bytes(
    regions: *const tritter_grad_regions_t,
    slot_out: *mut usize,
    owner_slot_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let r = unsafe { handle::get(regions, "regions")? };
        args::check_out(owner_slot_out, "owner_slot_out")?;
        unsafe { args::write(slot_out, r.0.slot_bytes(), "slot_out")? };
        unsafe { args::write(owner_slot_out, r.0.owner_slot_bytes(), "owner_slot_out") }
    })
}

/// Phase 1: compresses each region of `grad` (`n == dim` floats) plus its
/// residual into `slots_out` (`slots_len == world * slot` bytes; slot `j`
/// holds region `j`'s checksummed payload, zero-padded). Errors: NULL,
/// lengths, non-finite gradient (`TRITTER_ERR_NON_FINITE` naming `grad`,
/// checked before any state changes: the state is unchanged on error).
///
/// # Safety
/// Pointers valid for their lengths; `slots_out` must not overlap `grad`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_regions_compress(
    regions: *mut tritter_grad_regions_t,
    grad: *const f32,
    n: usize,
    slots_out: *mut u8,
    slots_len: usize,
) -> tritter_status_t {
    guard(|| {
        let r = unsafe { handle::get_mut(regions, "regions")? };
        let g = unsafe { args::slice(grad, n, "grad")? };
        let out = unsafe { args::slice_mut(slots_out, slots_len, "slots_out")? };
        r.0.compress(g, out)
    })
}

/// Phase 2, the owner's part: validates and decodes the `world` payloads
/// of this rank's region in `received` (`received_len == world * slot`
/// bytes, row `i` = the slot received from rank `i`), sums them in rank
/// order, and re-compresses the sum (plus the owner residual) into
/// `owner_out` (`owner_len == owner_slot` bytes, zero-padded). Errors:
/// NULL, lengths, a row that is not a valid payload of this region
/// (`TRITTER_ERR_INVALID_DATA` naming `received` and the row), a sum that
/// is not finite (also naming `received`); the state and `owner_out` are
/// unchanged on error.
///
/// # Safety
/// Pointers valid for their lengths; no overlap.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_regions_reduce(
    regions: *mut tritter_grad_regions_t,
    received: *const u8,
    received_len: usize,
    owner_out: *mut u8,
    owner_len: usize,
) -> tritter_status_t {
    guard(|| {
        let r = unsafe { handle::get_mut(regions, "regions")? };
        let rx = unsafe { args::slice(received, received_len, "received")? };
        let out = unsafe { args::slice_mut(owner_out, owner_len, "owner_out")? };
        r.0.reduce(rx, out)
    })
}

/// Phase 2, every rank: decodes the `world` owner payloads in `gathered`
/// (`gathered_len == world * owner_slot` bytes, row `j` from rank `j`) into
/// `out` (`n == dim` floats): region `j` = owner `j`'s decoded sum divided
/// by `world` (the averaged update; the same bits on every rank). Errors:
/// NULL, lengths (`out` unchanged), a row that is not a valid owner payload
/// of its region (`TRITTER_ERR_INVALID_DATA` naming `gathered` and the row;
/// `out` is then zeroed).
///
/// # Safety
/// Pointers valid for their lengths; no overlap.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_regions_decode(
    regions: *const tritter_grad_regions_t,
    gathered: *const u8,
    gathered_len: usize,
    out: *mut f32,
    n: usize,
) -> tritter_status_t {
    guard(|| {
        let r = unsafe { handle::get(regions, "regions")? };
        let g = unsafe { args::slice(gathered, gathered_len, "gathered")? };
        let o = unsafe { args::slice_mut(out, n, "out")? };
        r.0.decode(g, o)
    })
}

/// Copies this rank's regional residuals into `local_out` (`dim` floats)
/// and its owner residual, placed at the owned region, into `owner_out`
/// (`dim` floats, zero elsewhere). Errors: NULL, lengths,
/// `TRITTER_ERR_INVALID_STATE` when error feedback is off.
///
/// # Safety
/// `local_out` and `owner_out` valid for their lengths; no overlap.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_regions_residuals(
    regions: *const tritter_grad_regions_t,
    local_out: *mut f32,
    local_len: usize,
    owner_out: *mut f32,
    owner_len: usize,
) -> tritter_status_t {
    guard(|| {
        let r = unsafe { handle::get(regions, "regions")? };
        let l = unsafe { args::slice_mut(local_out, local_len, "local_out")? };
        let o = unsafe { args::slice_mut(owner_out, owner_len, "owner_out")? };
        r.0.residuals(l, o)
    })
}

/// Count sketch of `grad` (`n` floats) into `table_out` (`rows * cols`
/// floats, row-major, overwritten). Linear: tables of several workers made
/// with the same `(rows, cols, seed)` may be summed before decoding.
/// Errors: NULL, `n` zero, rows not in 1..=15, cols zero, table length,
/// non-finite gradient, and a table that overflows f32 (finite values too
/// large; `TRITTER_ERR_INVALID_ARGUMENT` naming `grad`, the table's content
/// is then unspecified).
///
/// # Safety
/// Pointers valid for their lengths; no overlap.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_count_sketch(
    grad: *const f32,
    n: usize,
    rows: usize,
    cols: usize,
    seed: u64,
    table_out: *mut f32,
    table_len: usize,
) -> tritter_status_t {
    guard(|| {
        let cs = CountSketch::new(n, rows, cols, seed)?;
        let g = unsafe { args::slice(grad, n, "grad")? };
        let t = unsafe { args::out_slice(table_out, table_len, cs.table_len(), "table_out")? };
        t.fill(0.0);
        cs.accumulate(g, t)?;
        if let Some(i) = t.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "grad",
                format!("its sketch overflows f32 at table element {i} (values too large)"),
            ));
        }
        Ok(())
    })
}

/// Median-of-rows estimate of all `n` coordinates from a sketch table.
///
/// # Safety
/// Pointers valid for their lengths; no overlap.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_count_sketch_estimate(
    table: *const f32,
    table_len: usize,
    rows: usize,
    cols: usize,
    seed: u64,
    out: *mut f32,
    n: usize,
) -> tritter_status_t {
    guard(|| {
        let cs = CountSketch::new(n, rows, cols, seed)?;
        let t = unsafe { args::slice(table, table_len, "table")? };
        let o = unsafe { args::slice_mut(out, n, "out")? };
        if t.len() != cs.table_len() {
            return Err(Error::shape(
                "table",
                format!(
                    "expected rows * cols = {} floats, got {}",
                    cs.table_len(),
                    t.len()
                ),
            ));
        }
        crate::check_finite(t, "table")?;
        cs.estimate(t, o)
    })
}

/// Creates FetchSGD state for `dim`-gradients sketched into `rows x cols`
/// with `seed`, applying `k` coordinates per step, with momentum in
/// `[0, 1)`. Errors: as [`tritter_count_sketch`], `dim` >= 2^32, `k` not in
/// 1..=dim, momentum out of range; `TRITTER_ERR_OUT_OF_MEMORY` naming `cols`
/// when the two `rows * cols` f32 tables cannot be allocated.
///
/// # Safety
/// `fetchsgd_out` valid for writing one pointer; the caller owns the handle.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_fetchsgd_new(
    dim: usize,
    rows: usize,
    cols: usize,
    seed: u64,
    k: usize,
    momentum: f32,
    fetchsgd_out: *mut *mut tritter_fetchsgd_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(fetchsgd_out, "fetchsgd_out")?;
        if dim > u32::MAX as usize {
            return Err(Error::invalid("dim", "must be < 2^32"));
        }
        let f = FetchSgd::new(CountSketch::new(dim, rows, cols, seed)?, k, momentum)?;
        unsafe { handle::store(fetchsgd_out, tritter_fetchsgd_t(f), "fetchsgd_out") }
    })
}

/// Frees FetchSGD state; NULL is a no-op.
///
/// # Safety
/// NULL or a live handle not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tritter_fetchsgd_free(fetchsgd: *mut tritter_fetchsgd_t) {
    unsafe { handle::free(fetchsgd) }
}

/// One FetchSGD step on the summed (or averaged) workers' sketch tables
/// (`rows * cols` floats); writes the dense update `Δ` (`dim` floats, `k`
/// non-zeros) to `update_out`, to be applied as `w -= lr · Δ` by
/// momentum-free SGD. Errors: NULL, lengths, non-finite table.
///
/// # Safety
/// Pointers valid for their lengths; no overlap.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_fetchsgd_step(
    fetchsgd: *mut tritter_fetchsgd_t,
    summed: *const f32,
    summed_len: usize,
    update_out: *mut f32,
    update_len: usize,
) -> tritter_status_t {
    guard(|| {
        let f = unsafe { handle::get_mut(fetchsgd, "fetchsgd")? };
        let s = unsafe { args::slice(summed, summed_len, "summed")? };
        let dim = f.0.sketch().dim();
        let o = unsafe { args::out_slice(update_out, update_len, dim, "update_out")? };
        let (idx, vals) = f.0.step(s)?;
        o.fill(0.0);
        for (&i, &v) in idx.iter().zip(&vals) {
            o[i as usize] = v;
        }
        Ok(())
    })
}

/// Zeroes the FetchSGD momentum and error tables.
///
/// # Safety
/// A live handle.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_fetchsgd_reset(
    fetchsgd: *mut tritter_fetchsgd_t,
) -> tritter_status_t {
    guard(|| {
        unsafe { handle::get_mut(fetchsgd, "fetchsgd")? }.0.reset();
        Ok(())
    })
}

/// Output length of the random projection of `dim` floats keeping the
/// fraction `ratio` in (0, 1]: `max(ceil(dim / 4096), round(ratio · dim))`.
///
/// # Safety
/// `m_out` valid for one `size_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_projection_len(
    dim: usize,
    ratio: f64,
    m_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        if dim == 0 {
            return Err(Error::invalid("dim", "must be > 0"));
        }
        let m = crate::grad::compress::projection::output_len(dim, ratio)?;
        unsafe { args::write(m_out, m, "m_out") }
    })
}

/// `y = P grad`: the sparse ternary random projection of `n` floats into `m`
/// (see the Rust docs of `grad::compress::projection`); linear, O(n).
///
/// # Safety
/// Pointers valid for their lengths; no overlap.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_project(
    grad: *const f32,
    n: usize,
    seed: u64,
    out: *mut f32,
    m: usize,
) -> tritter_status_t {
    guard(|| {
        let p = Projection::new(n, m, seed)?;
        let g = unsafe { args::slice(grad, n, "grad")? };
        let o = unsafe { args::slice_mut(out, m, "out")? };
        p.project(g, o)
    })
}

/// `ĝ = Pᵀ y`: the unbiased decompression of [`tritter_grad_project`].
///
/// # Safety
/// Pointers valid for their lengths; no overlap.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_unproject(
    compressed: *const f32,
    m: usize,
    seed: u64,
    out: *mut f32,
    n: usize,
) -> tritter_status_t {
    guard(|| {
        let p = Projection::new(n, m, seed)?;
        let y = unsafe { args::slice(compressed, m, "compressed")? };
        let o = unsafe { args::slice_mut(out, n, "out")? };
        p.unproject(y, o)
    })
}

/// Creates a packed ternary accumulator for `dim`-gradients (2 bits a
/// coordinate + one f32 scale per `block`). Errors: `dim` zero, bad block,
/// `TRITTER_ERR_OUT_OF_MEMORY` naming `dim` when the state cannot be allocated.
///
/// # Safety
/// `accumulator_out` valid for writing one pointer; the caller owns it.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_accumulator_new(
    dim: usize,
    block: usize,
    seed: u64,
    accumulator_out: *mut *mut tritter_ternary_accumulator_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(accumulator_out, "accumulator_out")?;
        let a = TernaryAccumulator::new(dim, block, seed)?;
        unsafe {
            handle::store(
                accumulator_out,
                tritter_ternary_accumulator_t(a),
                "accumulator_out",
            )
        }
    })
}

/// Frees an accumulator; NULL is a no-op.
///
/// # Safety
/// NULL or a live handle not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_accumulator_free(
    accumulator: *mut tritter_ternary_accumulator_t,
) {
    unsafe { handle::free(accumulator) }
}

/// Adds `alpha · grad` (`n == dim` floats) with unbiased stochastic
/// re-quantization. Errors: NULL, length, non-finite grad or alpha; the
/// state is unchanged on error.
///
/// # Safety
/// `grad` valid for `n` floats.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_accumulator_add(
    accumulator: *mut tritter_ternary_accumulator_t,
    grad: *const f32,
    n: usize,
    alpha: f32,
) -> tritter_status_t {
    guard(|| {
        let a = unsafe { handle::get_mut(accumulator, "accumulator")? };
        let g = unsafe { args::slice(grad, n, "grad")? };
        a.0.add(g, alpha)
    })
}

/// Decodes the accumulated sum (or the mean over the additions when `mean`)
/// into `out` (`n == dim`).
///
/// # Safety
/// `out` valid for `n` floats.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_accumulator_read(
    accumulator: *const tritter_ternary_accumulator_t,
    out: *mut f32,
    n: usize,
    mean: bool,
) -> tritter_status_t {
    guard(|| {
        let a = unsafe { handle::get(accumulator, "accumulator")? };
        let o = unsafe { args::slice_mut(out, n, "out")? };
        a.0.read(o, mean)
    })
}

/// Bytes of stored state and number of additions since the last reset.
///
/// # Safety
/// Out-pointers valid for one value each.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_accumulator_info(
    accumulator: *const tritter_ternary_accumulator_t,
    memory_bytes_out: *mut usize,
    count_out: *mut u64,
) -> tritter_status_t {
    guard(|| {
        let a = unsafe { handle::get(accumulator, "accumulator")? };
        args::check_out(count_out, "count_out")?;
        unsafe { args::write(memory_bytes_out, a.0.memory_bytes(), "memory_bytes_out")? };
        unsafe { args::write(count_out, a.0.count(), "count_out") }
    })
}

/// Resets the accumulator to zero.
///
/// # Safety
/// A live handle.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_accumulator_reset(
    accumulator: *mut tritter_ternary_accumulator_t,
) -> tritter_status_t {
    guard(|| {
        unsafe { handle::get_mut(accumulator, "accumulator")? }
            .0
            .reset();
        Ok(())
    })
}

/// TernGrad (ternary stochastic quantization) of a gradient on DLPack
/// tensors: `grad` float32 `[n]`, `scales_out` float32 `[ceil(n / block)]`,
/// `packed_out` uint8 `[ceil(n / 4)]` (canonical 2-bit codes), `block` a
/// multiple of 4, counter-based randomness from `seed`. Host tensors run on
/// the CPU; CUDA tensors (one device) on the GPU, queued on `stream` (a
/// `cudaStream_t`, NULL = legacy default), bit for bit the same. On the GPU
/// a block holding NaN/inf gets a non-finite scale instead of the CPU's
/// `TRITTER_ERR_NON_FINITE` (no host synchronization). Contiguous tensors.
///
/// # Safety
/// Tensors must be NULL or valid and must not overlap; `stream` NULL or a
/// live stream of their device.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_grad_ternary_quantize_dlpack(
    grad: *const super::dlpack::tritter_dl_tensor_t,
    block: usize,
    seed: u64,
    scales_out: *const super::dlpack::tritter_dl_tensor_t,
    packed_out: *const super::dlpack::tritter_dl_tensor_t,
    stream: *mut std::ffi::c_void,
) -> tritter_status_t {
    use super::dlpack;
    use crate::cuda::Dtype;
    guard(|| {
        let devs = [
            (unsafe { dlpack::device_of(grad, "grad")? }, "grad"),
            (
                unsafe { dlpack::device_of(scales_out, "scales_out")? },
                "scales_out",
            ),
            (
                unsafe { dlpack::device_of(packed_out, "packed_out")? },
                "packed_out",
            ),
        ];
        if dlpack::common_device(&devs)?.is_some() {
            let g = unsafe { dlpack::cuda_vector(grad, "grad", &[Dtype::F32], Some(1), false)? };
            let s = unsafe {
                dlpack::cuda_vector(scales_out, "scales_out", &[Dtype::F32], Some(1), true)?
            };
            let p = unsafe {
                dlpack::cuda_vector(packed_out, "packed_out", &[Dtype::U8], Some(1), true)?
            };
            // SAFETY: validated views of the caller's tensors.
            return unsafe {
                crate::cuda::ternary_stochastic_quantize(
                    g,
                    block,
                    seed,
                    s,
                    p,
                    crate::cuda::Stream(stream as usize),
                )
            };
        }
        let not_contig = |n: &'static str| Error::invalid(n, "must be contiguous");
        let gv = unsafe { dlpack::view1::<f32>(grad, "grad")? };
        let mut sv = unsafe { dlpack::view1_mut::<f32>(scales_out, "scales_out")? };
        let mut pv = unsafe { dlpack::view1_mut::<u8>(packed_out, "packed_out")? };
        let g = gv.as_slice().ok_or_else(|| not_contig("grad"))?;
        let s = sv.as_slice_mut().ok_or_else(|| not_contig("scales_out"))?;
        let p = pv.as_slice_mut().ok_or_else(|| not_contig("packed_out"))?;
        crate::grad::compress::ternary::quantize_into(g, block, seed, s, p)
    })
}
