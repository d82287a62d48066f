//! C entry points for mixed precision: f32 <-> bf16/f16 conversion,
//! stochastic rounding to bf16, and the dynamic loss scaler.
//!
//! Half-precision values cross as `uint16_t` bit patterns.

use super::args;
use super::handle;
use super::status::{guard, tritter_status_t};
use crate::precision::{convert, loss_scale::LossScalerConfig, stochastic, LossScaler};
use crate::{Error, Result};

/// Shared body of the four conversion exports.
///
/// # Safety
/// As the exports.
unsafe fn convert_slices<S, D>(
    src: *const S,
    n: usize,
    dst: *mut D,
    dst_len: usize,
    core: fn(&[S], &mut [D]) -> Result<()>,
) -> tritter_status_t {
    guard(|| {
        let s = unsafe { args::slice(src, n, "src")? };
        let d = unsafe { args::out_slice(dst, dst_len, n, "dst")? };
        core(s, d)
    })
}

/// Converts `n` f32 values to bf16 bit patterns, round to nearest even
/// (overflow to ±inf; NaN stays NaN with its sign, quiet bit set).
///
/// `dst` has room for `dst_len >= n` values, of which the first `n` are
/// written (`TRITTER_ERR_BUFFER_TOO_SMALL` otherwise). `(NULL, 0)` is a valid
/// empty buffer.
///
/// # Safety
/// `src` must be valid for `n` reads and `dst` for `dst_len` writes; they
/// must not overlap.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_f32_to_bf16(
    src: *const f32,
    n: usize,
    dst: *mut u16,
    dst_len: usize,
) -> tritter_status_t {
    unsafe { convert_slices(src, n, dst, dst_len, convert::f32_to_bf16) }
}

/// Converts `n` bf16 bit patterns to f32 (exact, NaN payloads kept).
/// Buffers as in [`tritter_f32_to_bf16`].
///
/// # Safety
/// As [`tritter_f32_to_bf16`].
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_bf16_to_f32(
    src: *const u16,
    n: usize,
    dst: *mut f32,
    dst_len: usize,
) -> tritter_status_t {
    unsafe { convert_slices(src, n, dst, dst_len, convert::bf16_to_f32) }
}

/// Converts `n` f32 values to IEEE binary16 bit patterns, round to nearest
/// even (subnormals, overflow to ±inf; NaN stays NaN with its sign, quiet bit
/// set). Buffers as in [`tritter_f32_to_bf16`].
///
/// # Safety
/// As [`tritter_f32_to_bf16`].
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_f32_to_f16(
    src: *const f32,
    n: usize,
    dst: *mut u16,
    dst_len: usize,
) -> tritter_status_t {
    unsafe { convert_slices(src, n, dst, dst_len, convert::f32_to_f16) }
}

/// Converts `n` IEEE binary16 bit patterns to f32 (exact; NaNs keep sign and
/// payload and get the quiet bit). Buffers as in [`tritter_f32_to_bf16`].
///
/// # Safety
/// As [`tritter_f32_to_bf16`].
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_f16_to_f32(
    src: *const u16,
    n: usize,
    dst: *mut f32,
    dst_len: usize,
) -> tritter_status_t {
    unsafe { convert_slices(src, n, dst, dst_len, convert::f16_to_f32) }
}

/// Rounds `n` f32 values to bf16 stochastically: unbiased, a pure function of
/// `(seed, offset + i, src[i])`, so a tensor rounded in pieces (each with its
/// own `offset`, the global index of its first element) equals the tensor
/// rounded at once, for any thread count. ±inf and NaN round as in
/// `tritter_f32_to_bf16`; finite values past the largest bf16 may become ±inf.
///
/// Errors: NULL pointers with `n > 0`; `dst_len < n`; `offset + n`
/// overflowing (`TRITTER_ERR_SIZE_OVERFLOW`, names `offset`).
///
/// # Safety
/// As `tritter_f32_to_bf16`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_f32_to_bf16_stochastic(
    src: *const f32,
    n: usize,
    seed: u64,
    offset: u64,
    dst: *mut u16,
    dst_len: usize,
) -> tritter_status_t {
    guard(|| {
        let s = unsafe { args::slice(src, n, "src")? };
        let d = unsafe { args::out_slice(dst, dst_len, n, "dst")? };
        stochastic::f32_to_bf16_stochastic(s, d, seed, offset)
    })
}

/// Loss-scaler settings; defaults (torch's, plus a floor) from
/// [`tritter_loss_scaler_config_default`]. Above `min_scale` the scale
/// follows `torch.amp.GradScaler` step for step; the floor keeps a long run
/// of overflows from driving it to 0, where torch's would stay for good.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tritter_loss_scaler_config_t {
    /// Initial scale (finite, > 0; default 65536).
    pub init_scale: f32,
    /// Growth factor (finite, > 1; default 2).
    pub growth_factor: f32,
    /// Backoff factor (in (0, 1); default 0.5).
    pub backoff_factor: f32,
    /// Overflow-free steps between growths (>= 1; default 2000).
    pub growth_interval: u32,
    /// Lower bound of the scale (finite, >= FLT_MIN = 2^-126 so that 1/scale
    /// is finite; default 2^-24, the smallest positive f16).
    pub min_scale: f32,
    /// Upper bound of the scale (>= min_scale, may be INFINITY; default INFINITY).
    pub max_scale: f32,
}

impl From<LossScalerConfig> for tritter_loss_scaler_config_t {
    fn from(c: LossScalerConfig) -> Self {
        tritter_loss_scaler_config_t {
            init_scale: c.init_scale,
            growth_factor: c.growth_factor,
            backoff_factor: c.backoff_factor,
            growth_interval: c.growth_interval,
            min_scale: c.min_scale,
            max_scale: c.max_scale,
        }
    }
}

impl From<&tritter_loss_scaler_config_t> for LossScalerConfig {
    fn from(c: &tritter_loss_scaler_config_t) -> Self {
        LossScalerConfig {
            init_scale: c.init_scale,
            growth_factor: c.growth_factor,
            backoff_factor: c.backoff_factor,
            growth_interval: c.growth_interval,
            min_scale: c.min_scale,
            max_scale: c.max_scale,
        }
    }
}

/// A loss scaler's state.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tritter_loss_scaler_state_t {
    /// Current scale.
    pub scale: f32,
    /// Consecutive overflow-free updates since the last growth or backoff.
    pub growth_tracker: u32,
    /// Updates so far.
    pub updates: u64,
    /// Updates that found an overflow.
    pub overflows: u64,
}

/// A dynamic loss scaler with `torch.amp.GradScaler` semantics (scale,
/// growth tracker). Owns its state; free with [`tritter_loss_scaler_free`].
/// Mutated by `update`/`set_scale`: not shareable across threads without a lock.
pub struct tritter_loss_scaler_t(LossScaler);

/// Writes torch's defaults (65536, 2, 0.5, 2000) with no bounds (0, INFINITY).
///
/// # Safety
/// `config_out` must be valid for writing one `tritter_loss_scaler_config_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_loss_scaler_config_default(
    config_out: *mut tritter_loss_scaler_config_t,
) -> tritter_status_t {
    guard(|| unsafe { args::write(config_out, LossScalerConfig::default().into(), "config_out") })
}

/// Creates a loss scaler. `config` may be NULL (defaults). Errors name the
/// invalid field (`init_scale`, `growth_factor`, ...).
///
/// # Safety
/// `config` must be NULL or valid; `scaler_out` valid for writing a pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_loss_scaler_new(
    config: *const tritter_loss_scaler_config_t,
    scaler_out: *mut *mut tritter_loss_scaler_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(scaler_out, "scaler_out")?;
        let cfg = match unsafe { args::optional(config, "config")? } {
            Some(c) => LossScalerConfig::from(c),
            None => LossScalerConfig::default(),
        };
        let s = LossScaler::new(cfg)?;
        unsafe { handle::store(scaler_out, tritter_loss_scaler_t(s), "scaler_out") }
    })
}

/// Frees a loss scaler; NULL is a no-op.
///
/// # Safety
/// `scaler` must be NULL or a live handle not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tritter_loss_scaler_free(scaler: *mut tritter_loss_scaler_t) {
    super::status::guard_value((), || unsafe { handle::free(scaler) });
}

/// Writes the scaler's state (scale, growth tracker, counts).
///
/// # Safety
/// `scaler` must be a live handle; `state_out` valid for one write.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_loss_scaler_state(
    scaler: *const tritter_loss_scaler_t,
    state_out: *mut tritter_loss_scaler_state_t,
) -> tritter_status_t {
    guard(|| {
        let s = &unsafe { handle::get(scaler, "scaler")? }.0;
        let (updates, overflows) = s.counts();
        let st = tritter_loss_scaler_state_t {
            scale: s.scale(),
            growth_tracker: s.growth_tracker(),
            updates,
            overflows,
        };
        unsafe { args::write(state_out, st, "state_out") }
    })
}

/// Borrows `count` buffers (`buffers[i]` with `lens[i]` floats), checking
/// that no two overlap.
unsafe fn buffers<'a>(
    buffers: *const *mut f32,
    lens: *const usize,
    count: usize,
) -> Result<Vec<&'a mut [f32]>> {
    let ptrs = unsafe { args::slice(buffers, count, "buffers")? };
    let lens = unsafe { args::slice(lens, count, "lens")? };
    let mut spans: Vec<(usize, usize)> = ptrs
        .iter()
        .zip(lens)
        .filter(|(p, &n)| n > 0 && !p.is_null())
        .map(|(&p, &n)| (p as usize, (p as usize).saturating_add(n.saturating_mul(4))))
        .collect();
    spans.sort_unstable();
    if spans.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(Error::invalid("buffers", "two buffers overlap"));
    }
    // No two overlap, so the mutable borrows are disjoint.
    let mut out = Vec::with_capacity(count);
    for (&p, &n) in ptrs.iter().zip(lens) {
        out.push(unsafe { args::slice_mut(p, n, "buffers")? });
    }
    Ok(out)
}

/// Multiplies every buffer by `1/scale` (the reciprocal computed in double
/// and rounded to float, as `GradScaler.unscale_`) and writes whether any
/// input value was inf or NaN to `*found_inf_out`. `buffers[i]` holds
/// `lens[i]` floats; `(NULL, 0)` entries are allowed. The scale is not
/// changed: call [`tritter_loss_scaler_update`] next.
///
/// Errors: NULL arrays with `count > 0`; a NULL buffer with a non-zero length
/// (names `buffers`); overlapping buffers (`TRITTER_ERR_INVALID_ARGUMENT`).
///
/// # Safety
/// `buffers` and `lens` must hold `count` entries; each buffer must be valid
/// for `lens[i]` reads and writes.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_loss_scaler_unscale(
    scaler: *const tritter_loss_scaler_t,
    buffers: *const *mut f32,
    lens: *const usize,
    count: usize,
    found_inf_out: *mut bool,
) -> tritter_status_t {
    guard(|| {
        let s = &unsafe { handle::get(scaler, "scaler")? }.0;
        args::check_out(found_inf_out, "found_inf_out")?;
        let mut bufs = unsafe { self::buffers(buffers, lens, count)? };
        let found = s.unscale(&mut bufs);
        unsafe { args::write(found_inf_out, found, "found_inf_out") }
    })
}

/// Writes whether any of `count` buffers holds an inf or NaN (reads only).
///
/// # Safety
/// As [`tritter_loss_scaler_unscale`] (the buffers are only read).
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_found_inf(
    buffers: *const *const f32,
    lens: *const usize,
    count: usize,
    found_inf_out: *mut bool,
) -> tritter_status_t {
    guard(|| {
        args::check_out(found_inf_out, "found_inf_out")?;
        let ptrs = unsafe { args::slice(buffers, count, "buffers")? };
        let lens = unsafe { args::slice(lens, count, "lens")? };
        let bufs: Vec<&[f32]> = ptrs
            .iter()
            .zip(lens)
            .map(|(&p, &n)| unsafe { args::slice(p, n, "buffers") })
            .collect::<Result<_>>()?;
        unsafe { args::write(found_inf_out, LossScaler::found_inf(&bufs), "found_inf_out") }
    })
}

/// Updates the scale after a step: backoff if `found_inf`, else growth every
/// `growth_interval` clean steps (kept only if finite); then clamps to the
/// bounds. `new_scale_out` may be NULL.
///
/// # Safety
/// `scaler` must be a live handle not used concurrently; `new_scale_out`
/// NULL or valid for one write.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_loss_scaler_update(
    scaler: *mut tritter_loss_scaler_t,
    found_inf: bool,
    new_scale_out: *mut f32,
) -> tritter_status_t {
    guard(|| {
        let s = &mut unsafe { handle::get_mut(scaler, "scaler")? }.0;
        let v = s.update(found_inf);
        if !new_scale_out.is_null() {
            unsafe { args::write(new_scale_out, v, "new_scale_out")? };
        }
        Ok(())
    })
}

/// Replaces the scale (finite, > 0; clamped to the bounds) and resets the
/// growth tracker, like `GradScaler.update(new_scale)`.
///
/// # Safety
/// `scaler` must be a live handle not used concurrently.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_loss_scaler_set_scale(
    scaler: *mut tritter_loss_scaler_t,
    scale: f32,
) -> tritter_status_t {
    guard(|| {
        unsafe { handle::get_mut(scaler, "scaler")? }
            .0
            .set_scale(scale)
    })
}
