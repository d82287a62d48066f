//! C entry points for the phase trainer (deterministic gradient prediction).
//!
//! Call order per step: `tritter_phase_trainer_begin_step` (says whether the
//! step needs a backward pass), then for a backward step
//! `tritter_phase_trainer_record` for every parameter, or for a Predict step
//! `tritter_phase_trainer_predict` for the parameters you need, then
//! `tritter_phase_trainer_end_step`. Parameters are registered before the
//! first step with `tritter_phase_trainer_add_param`.

use super::args;
use super::handle;
use super::status::{guard, tritter_status_t};
use crate::grad::predict::{Phase, PhaseConfig, PhaseStats, PhaseTrainer};
use crate::Error;

/// Phase code: warmup (backward pass).
pub const TRITTER_PHASE_WARMUP: u32 = 0;
/// Phase code: full (backward pass).
pub const TRITTER_PHASE_FULL: u32 = 1;
/// Phase code: predict (no backward pass; fetch predicted gradients).
pub const TRITTER_PHASE_PREDICT: u32 = 2;
/// Phase code: correct (backward pass inside a prediction segment).
pub const TRITTER_PHASE_CORRECT: u32 = 3;

/// Largest rank `tritter_phase_trainer_add_param` accepts.
pub const TRITTER_PHASE_MAX_NDIM: usize = 32;

super::status::c_constants!(Phase, Phase::ALL, {
    Phase::Warmup => TRITTER_PHASE_WARMUP,
    Phase::Full => TRITTER_PHASE_FULL,
    Phase::Predict => TRITTER_PHASE_PREDICT,
    Phase::Correct => TRITTER_PHASE_CORRECT,
});

/// Phase-trainer settings. Get defaults from [`tritter_phase_config_default`]
/// (or [`tritter_phase_config_conservative`]); the fields are documented in
/// `docs/predict.md`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tritter_phase_config_t {
    /// Backward steps before the first cycle (default 10).
    pub warmup_steps: usize,
    /// Full steps at the start of each cycle (default 5).
    pub full_steps: usize,
    /// Prediction-segment length (default 20; 0 = never predict).
    pub predict_steps: usize,
    /// Every k-th segment step is a Correct (backward) step (default 5; 0 = none).
    pub correct_every: usize,
    /// Back off prediction when the loss rises (default true).
    pub adaptive_phases: bool,
    /// Relative loss rise that triggers the back-off (finite, >= 0; default 0.1).
    pub loss_increase_threshold: f32,
    /// Recorded gradients kept per element (1..=256; default 8).
    pub history_window: usize,
    /// Steps past the newest record the linear trend is extrapolated (default 1).
    pub prediction_horizon: usize,
    /// Exponential weight per step of age (in (0, 1]; default 0.95).
    pub history_decay: f32,
    /// Relative residual norm above which the residual is added (>= 0, INFINITY = never; default 0.1).
    pub residual_threshold: f32,
    /// Keep the history in bf16 (half the memory; default false).
    pub history_bf16: bool,
}

impl From<PhaseConfig> for tritter_phase_config_t {
    fn from(c: PhaseConfig) -> Self {
        tritter_phase_config_t {
            warmup_steps: c.warmup_steps,
            full_steps: c.full_steps,
            predict_steps: c.predict_steps,
            correct_every: c.correct_every,
            adaptive_phases: c.adaptive_phases,
            loss_increase_threshold: c.loss_increase_threshold,
            history_window: c.history_window,
            prediction_horizon: c.prediction_horizon,
            history_decay: c.history_decay,
            residual_threshold: c.residual_threshold,
            history_bf16: c.history_bf16,
        }
    }
}

impl From<&tritter_phase_config_t> for PhaseConfig {
    fn from(c: &tritter_phase_config_t) -> Self {
        PhaseConfig {
            warmup_steps: c.warmup_steps,
            full_steps: c.full_steps,
            predict_steps: c.predict_steps,
            correct_every: c.correct_every,
            adaptive_phases: c.adaptive_phases,
            loss_increase_threshold: c.loss_increase_threshold,
            history_window: c.history_window,
            prediction_horizon: c.prediction_horizon,
            history_decay: c.history_decay,
            residual_threshold: c.residual_threshold,
            history_bf16: c.history_bf16,
        }
    }
}

/// What `begin_step` decided.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tritter_step_info_t {
    /// 0-based step number.
    pub step: u64,
    /// `TRITTER_PHASE_*`.
    pub phase: u32,
    /// Whether the caller must back-propagate and record gradients.
    pub needs_backward: bool,
}

/// Phase-trainer counters and measurements.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tritter_phase_stats_t {
    /// Completed steps.
    pub steps: u64,
    /// Completed Warmup steps.
    pub warmup_steps: u64,
    /// Completed Full steps.
    pub full_steps: u64,
    /// Completed Predict steps (= backward passes saved).
    pub predict_steps: u64,
    /// Completed Correct steps.
    pub correct_steps: u64,
    /// Steps with a backward pass.
    pub backward_passes: u64,
    /// Adaptive back-offs.
    pub backoffs: u64,
    /// Current prediction-segment length.
    pub current_predict_steps: u64,
    /// Post-warmup backward steps at which the prediction error was measured.
    pub error_samples: u64,
    /// Mean relative prediction error ‖pred − g‖/‖g‖ over those steps (NaN before any).
    pub mean_prediction_error: f64,
    /// The same for "repeat the newest recorded gradient" (a baseline; NaN before any).
    pub mean_last_gradient_error: f64,
    /// Bytes of history and residuals.
    pub memory_bytes: u64,
    /// Backward steps whose wall time was reported.
    pub timed_backward_steps: u64,
    /// Their total seconds.
    pub backward_seconds: f64,
    /// Predict steps whose wall time was reported.
    pub timed_predict_steps: u64,
    /// Their total seconds.
    pub predict_seconds: f64,
    /// steps / backward_passes.
    pub step_ratio: f64,
    /// Measured speedup from reported times (NaN unless both kinds were timed).
    pub measured_speedup: f64,
}

impl From<PhaseStats> for tritter_phase_stats_t {
    fn from(s: PhaseStats) -> Self {
        tritter_phase_stats_t {
            steps: s.steps,
            warmup_steps: s.warmup_steps,
            full_steps: s.full_steps,
            predict_steps: s.predict_steps,
            correct_steps: s.correct_steps,
            backward_passes: s.backward_passes,
            backoffs: s.backoffs,
            current_predict_steps: s.current_predict_steps,
            error_samples: s.error_samples,
            mean_prediction_error: s.mean_prediction_error,
            mean_last_gradient_error: s.mean_last_gradient_error,
            memory_bytes: s.memory_bytes,
            timed_backward_steps: s.timed_backward_steps,
            backward_seconds: s.backward_seconds,
            timed_predict_steps: s.timed_predict_steps,
            predict_seconds: s.predict_seconds,
            step_ratio: s.step_ratio(),
            measured_speedup: s.measured_speedup(),
        }
    }
}

/// A phase trainer: registered parameters, their gradient history (f32 or
/// bf16) and residuals, the schedule and statistics. Owns its memory; free
/// with [`tritter_phase_trainer_free`]. Mutated by most calls: not shareable
/// across threads without a lock.
pub struct tritter_phase_trainer_t(PhaseTrainer);

/// Writes the default settings (the seed's: 10/5/20/5, adaptive, 0.1, 8, 1, 0.95, 0.1, f32 history).
///
/// # Safety
/// `config_out` must be valid for writing one `tritter_phase_config_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_config_default(
    config_out: *mut tritter_phase_config_t,
) -> tritter_status_t {
    guard(|| unsafe { args::write(config_out, PhaseConfig::default().into(), "config_out") })
}

/// Writes the conservative settings (20 warmup, 10 full, 6-step segments with
/// every 3rd a Correct step, back-off at a 5% rise).
///
/// # Safety
/// `config_out` must be valid for writing one `tritter_phase_config_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_config_conservative(
    config_out: *mut tritter_phase_config_t,
) -> tritter_status_t {
    guard(|| unsafe { args::write(config_out, PhaseConfig::conservative().into(), "config_out") })
}

/// Creates a phase trainer with no parameters. `config` may be NULL
/// (defaults). Errors name the invalid field.
///
/// # Safety
/// `config` must be NULL or valid; `trainer_out` valid for writing a pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_trainer_new(
    config: *const tritter_phase_config_t,
    trainer_out: *mut *mut tritter_phase_trainer_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(trainer_out, "trainer_out")?;
        let cfg = match unsafe { args::optional(config, "config")? } {
            Some(c) => PhaseConfig::from(c),
            None => PhaseConfig::default(),
        };
        let t = PhaseTrainer::new(cfg)?;
        unsafe { handle::store(trainer_out, tritter_phase_trainer_t(t), "trainer_out") }
    })
}

/// Frees a phase trainer; NULL is a no-op.
///
/// # Safety
/// `trainer` must be NULL or a live handle not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_trainer_free(trainer: *mut tritter_phase_trainer_t) {
    super::status::guard_value((), || unsafe { handle::free(trainer) });
}

/// Registers a parameter of shape `shape[0..ndim]` (any rank up to
/// `TRITTER_PHASE_MAX_NDIM`; `ndim = 0` is a scalar) and writes its id
/// (0, 1, ... in order). Gradients cross flattened row-major.
///
/// Errors: after the first step (`TRITTER_ERR_INVALID_STATE`); a zero
/// dimension or `ndim` too large (names `shape` / `ndim`); overflowing sizes;
/// `TRITTER_ERR_OUT_OF_MEMORY` naming `shape` when its history cannot be
/// allocated (nothing is registered then).
///
/// # Safety
/// `trainer` must be a live handle; `shape` valid for `ndim` reads;
/// `id_out` valid for one write.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_trainer_add_param(
    trainer: *mut tritter_phase_trainer_t,
    shape: *const usize,
    ndim: usize,
    id_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let t = &mut unsafe { handle::get_mut(trainer, "trainer")? }.0;
        args::check_out(id_out, "id_out")?;
        if ndim > TRITTER_PHASE_MAX_NDIM {
            return Err(Error::invalid(
                "ndim",
                format!("{ndim} is more than {TRITTER_PHASE_MAX_NDIM}"),
            ));
        }
        let dims = unsafe { args::slice(shape, ndim, "shape")? };
        let id = t.add_parameter(dims)?;
        unsafe { args::write(id_out, id, "id_out") }
    })
}

/// Writes the number of elements of parameter `param`.
///
/// # Safety
/// `trainer` must be a live handle; `numel_out` valid for one write.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_trainer_param_numel(
    trainer: *const tritter_phase_trainer_t,
    param: usize,
    numel_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let t = &unsafe { handle::get(trainer, "trainer")? }.0;
        let n = t.parameter_numel(param)?;
        unsafe { args::write(numel_out, n, "numel_out") }
    })
}

/// Starts a step; writes its number, phase and whether it needs a backward
/// pass. Call it *before* computing gradients.
///
/// Errors: a step already open, or no parameters (`TRITTER_ERR_INVALID_STATE`).
///
/// # Safety
/// `trainer` must be a live handle; `info_out` valid for one write.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_trainer_begin_step(
    trainer: *mut tritter_phase_trainer_t,
    info_out: *mut tritter_step_info_t,
) -> tritter_status_t {
    guard(|| {
        let t = &mut unsafe { handle::get_mut(trainer, "trainer")? }.0;
        args::check_out(info_out, "info_out")?;
        let i = t.begin_step()?;
        let info = tritter_step_info_t {
            step: i.step,
            phase: i.phase.code(),
            needs_backward: i.needs_backward,
        };
        unsafe { args::write(info_out, info, "info_out") }
    })
}

/// Records the real gradient of parameter `param` (`len` = its element
/// count, row-major) in a step that needs a backward pass.
///
/// Errors: no open step, a Predict step, or the parameter already recorded
/// (`TRITTER_ERR_INVALID_STATE`); unknown `param`; `len` different from the
/// element count (`TRITTER_ERR_SHAPE_MISMATCH`, names `grad`); NaN/inf
/// (`TRITTER_ERR_NON_FINITE`, nothing recorded).
///
/// # Safety
/// `trainer` must be a live handle; `grad` valid for `len` reads.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_trainer_record(
    trainer: *mut tritter_phase_trainer_t,
    param: usize,
    grad: *const f32,
    len: usize,
) -> tritter_status_t {
    guard(|| {
        let t = &mut unsafe { handle::get_mut(trainer, "trainer")? }.0;
        let g = unsafe { args::slice(grad, len, "grad")? };
        t.record_gradient(param, g)
    })
}

/// Writes the predicted gradient of parameter `param` into `out` (room for
/// `out_len >= numel` floats; the first `numel` are written) in a Predict step.
///
/// Errors: no open step or not a Predict step (`TRITTER_ERR_INVALID_STATE`);
/// unknown `param`; `out_len` too small (`TRITTER_ERR_BUFFER_TOO_SMALL`).
///
/// # Safety
/// `trainer` must be a live handle; `out` valid for `out_len` writes.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_trainer_predict(
    trainer: *const tritter_phase_trainer_t,
    param: usize,
    out: *mut f32,
    out_len: usize,
) -> tritter_status_t {
    guard(|| {
        let t = &unsafe { handle::get(trainer, "trainer")? }.0;
        let n = t.parameter_numel(param)?;
        let o = unsafe { args::out_slice(out, out_len, n, "out")? };
        t.predict_gradient(param, o)
    })
}

/// Ends the step with its loss (a non-finite loss counts as a rise for the
/// adaptive schedule) and its measured wall time in seconds (`seconds < 0`:
/// not measured).
///
/// Errors: no open step, or a backward step with an unrecorded parameter
/// (`TRITTER_ERR_INVALID_STATE`; the step stays open); `seconds` NaN or
/// infinite (`TRITTER_ERR_INVALID_ARGUMENT`).
///
/// # Safety
/// `trainer` must be a live handle.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_trainer_end_step(
    trainer: *mut tritter_phase_trainer_t,
    loss: f32,
    seconds: f64,
) -> tritter_status_t {
    guard(|| {
        let t = &mut unsafe { handle::get_mut(trainer, "trainer")? }.0;
        let secs = if seconds < 0.0 { None } else { Some(seconds) };
        t.end_step(loss, secs).map(|_: Phase| ())
    })
}

/// Writes the trainer's counters and measurements.
///
/// # Safety
/// `trainer` must be a live handle; `stats_out` valid for one write.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_trainer_stats(
    trainer: *const tritter_phase_trainer_t,
    stats_out: *mut tritter_phase_stats_t,
) -> tritter_status_t {
    guard(|| {
        let t = &unsafe { handle::get(trainer, "trainer")? }.0;
        unsafe { args::write(stats_out, t.stats().into(), "stats_out") }
    })
}
