//! C entry points for the phase trainer (deterministic gradient prediction).
//!
//! Call order per step: `tritter_phase_trainer_begin_step` (says whether the
//! step needs a backward pass, and why), then for a backward step
//! `tritter_phase_trainer_record` for every parameter (which also checks every
//! predictor against the real gradient), or for a Predict step
//! `tritter_phase_trainer_predict` for the parameters you need, then
//! `tritter_phase_trainer_end_step`. Parameters are registered before the
//! first step with `tritter_phase_trainer_add_param`.

use super::args;
use super::handle;
use super::status::{guard, tritter_status_t};
use std::ffi::c_char;

use crate::grad::predict::{
    ParamStats, Phase, PhaseConfig, PhaseStats, PhaseTrainer, Predictor, Reason, Schedule,
};
use crate::Error;

/// Phase code: warmup (backward pass).
pub const TRITTER_PHASE_WARMUP: u32 = 0;
/// Phase code: full (backward pass).
pub const TRITTER_PHASE_FULL: u32 = 1;
/// Phase code: predict (no backward pass; fetch predicted gradients).
pub const TRITTER_PHASE_PREDICT: u32 = 2;
/// Phase code: correct (backward pass that ends a predicted run or segment).
pub const TRITTER_PHASE_CORRECT: u32 = 3;

/// Schedule code: predict only while the measured error is at most `max_error` (default).
pub const TRITTER_SCHEDULE_GUARDED: u32 = 0;
/// Schedule code: the seed's fixed cycles.
pub const TRITTER_SCHEDULE_FIXED: u32 = 1;

/// Predictor code: repeat the newest gradient (mask bit `1 << 0`).
pub const TRITTER_PREDICTOR_LAST: u32 = 0;
/// Predictor code: exponentially weighted mean of the history (mask bit `1 << 1`).
pub const TRITTER_PREDICTOR_EMA: u32 = 1;
/// Predictor code: weighted least-squares line, extrapolated (mask bit `1 << 2`).
pub const TRITTER_PREDICTOR_WLS: u32 = 2;

/// Reason code: collecting history (warmup).
pub const TRITTER_REASON_WARMUP: u32 = 0;
/// Reason code: placed by the fixed schedule.
pub const TRITTER_REASON_SCHEDULE: u32 = 1;
/// Reason code: measured error at most `max_error`: predicting.
pub const TRITTER_REASON_ERROR_BELOW_THRESHOLD: u32 = 2;
/// Reason code: measured error above `max_error`: backward passes continue.
pub const TRITTER_REASON_ERROR_ABOVE_THRESHOLD: u32 = 3;
/// Reason code: error below `max_error` but not yet at enough consecutive checks.
pub const TRITTER_REASON_PROBING: u32 = 4;
/// Reason code: a backward step that checks the predicted run before it.
pub const TRITTER_REASON_CHECK: u32 = 5;
/// Reason code: a backward step reported a non-finite loss: prediction stopped.
pub const TRITTER_REASON_NON_FINITE_LOSS: u32 = 6;
/// Reason code: fixed schedule, the segment's loss rose (segment cut short).
pub const TRITTER_REASON_LOSS_RISE: u32 = 7;
/// Reason code: `predict_steps` is 0 (prediction off).
pub const TRITTER_REASON_DISABLED: u32 = 8;

/// Largest rank `tritter_phase_trainer_add_param` accepts.
pub const TRITTER_PHASE_MAX_NDIM: usize = 32;

super::status::c_constants!(Phase, Phase::ALL, {
    Phase::Warmup => TRITTER_PHASE_WARMUP,
    Phase::Full => TRITTER_PHASE_FULL,
    Phase::Predict => TRITTER_PHASE_PREDICT,
    Phase::Correct => TRITTER_PHASE_CORRECT,
});

super::status::c_constants!(Schedule, Schedule::ALL, {
    Schedule::Guarded => TRITTER_SCHEDULE_GUARDED,
    Schedule::Fixed => TRITTER_SCHEDULE_FIXED,
});

/// Phase-trainer settings. Get them from [`tritter_phase_config_default`]
/// (guarded), [`tritter_phase_config_seed`] or
/// [`tritter_phase_config_conservative`] (fixed), then change fields; they are
/// documented in `docs/predict.md`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tritter_phase_config_t {
    /// `TRITTER_SCHEDULE_GUARDED` (default) or `TRITTER_SCHEDULE_FIXED`.
    pub schedule: u32,
    /// Backward steps before any prediction (default 10).
    pub warmup_steps: usize,
    /// Fixed: Full steps at the start of each cycle (default 5).
    pub full_steps: usize,
    /// Fixed: segment length; guarded: longest predicted run (0 = never predict; default 8, seed 20).
    pub predict_steps: usize,
    /// Fixed: every k-th segment step is a Correct (backward) step (default 5; 0 = none).
    pub correct_every: usize,
    /// Fixed: cut a segment short when the loss rises (default true).
    pub adaptive_phases: bool,
    /// Fixed: relative loss rise that cuts a segment (finite, >= 0; default 0.1).
    pub loss_increase_threshold: f32,
    /// Recorded gradients kept (1..=256; default 8).
    pub history_window: usize,
    /// WLS: steps past the newest record the line is extrapolated (default 1).
    pub prediction_horizon: usize,
    /// WLS: weight per step of age (in (0, 1]; default 0.95).
    pub history_decay: f32,
    /// EMA: weight per step of age (in (0, 1]; default 0.9).
    pub ema_decay: f32,
    /// Enabled predictors: mask of `1 << TRITTER_PREDICTOR_*` (1..=7; default 7 = all; seed 4 = WLS).
    pub predictors: u32,
    /// Guarded: largest overall relative error |p - g| / |g| at which prediction starts or continues (default 0.3).
    pub max_error: f32,
    /// Guarded: consecutive checks at most `max_error` before a run starts (>= 1; default 3).
    pub min_checks: usize,
    /// Keep the history in bf16 (half the memory; default false).
    pub history_bf16: bool,
}

impl From<PhaseConfig> for tritter_phase_config_t {
    fn from(c: PhaseConfig) -> Self {
        tritter_phase_config_t {
            schedule: c.schedule.code(),
            warmup_steps: c.warmup_steps,
            full_steps: c.full_steps,
            predict_steps: c.predict_steps,
            correct_every: c.correct_every,
            adaptive_phases: c.adaptive_phases,
            loss_increase_threshold: c.loss_increase_threshold,
            history_window: c.history_window,
            prediction_horizon: c.prediction_horizon,
            history_decay: c.history_decay,
            ema_decay: c.ema_decay,
            predictors: c.predictors,
            max_error: c.max_error,
            min_checks: c.min_checks,
            history_bf16: c.history_bf16,
        }
    }
}

impl TryFrom<&tritter_phase_config_t> for PhaseConfig {
    type Error = Error;
    fn try_from(c: &tritter_phase_config_t) -> Result<Self, Error> {
        Ok(PhaseConfig {
            schedule: Schedule::from_code(c.schedule)?,
            warmup_steps: c.warmup_steps,
            full_steps: c.full_steps,
            predict_steps: c.predict_steps,
            correct_every: c.correct_every,
            adaptive_phases: c.adaptive_phases,
            loss_increase_threshold: c.loss_increase_threshold,
            history_window: c.history_window,
            prediction_horizon: c.prediction_horizon,
            history_decay: c.history_decay,
            ema_decay: c.ema_decay,
            predictors: c.predictors,
            max_error: c.max_error,
            min_checks: c.min_checks,
            history_bf16: c.history_bf16,
        })
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
    /// Why the step has this phase (`TRITTER_REASON_*`; see `tritter_phase_reason_name`).
    pub reason: u32,
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
    /// Back-offs: failed checks after a run (guarded) or loss rises (fixed).
    pub backoffs: u64,
    /// Predicted runs (guarded) or segments (fixed) started.
    pub runs: u64,
    /// Current run length (guarded) or segment length (fixed).
    pub current_predict_steps: u64,
    /// Checks after warmup (backward steps with a history).
    pub error_samples: u64,
    /// Of those, checks whose error was above `max_error`.
    pub failed_checks: u64,
    /// Mean overall relative error |p - g| / |g| of the chosen predictors over the checks (NaN before any).
    pub mean_prediction_error: f64,
    /// The same for "repeat the newest recorded gradient" (a baseline; NaN before any).
    pub mean_last_gradient_error: f64,
    /// The last check's overall relative error (NaN before any check).
    pub last_error: f64,
    /// The last check's overall cosine between prediction and gradient (NaN before any).
    pub last_cosine: f64,
    /// The latest decision's reason (`TRITTER_REASON_*`).
    pub last_reason: u32,
    /// How many parameters use the last-gradient predictor now.
    pub params_last: u64,
    /// How many parameters use the EMA predictor now.
    pub params_ema: u64,
    /// How many parameters use the WLS predictor now.
    pub params_wls: u64,
    /// Bytes of gradient history.
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
            runs: s.runs,
            current_predict_steps: s.current_predict_steps,
            error_samples: s.error_samples,
            failed_checks: s.failed_checks,
            mean_prediction_error: s.mean_prediction_error,
            mean_last_gradient_error: s.mean_last_gradient_error,
            last_error: s.last_error,
            last_cosine: s.last_cosine,
            last_reason: s.last_reason.code(),
            params_last: s.predictor_params[0],
            params_ema: s.predictor_params[1],
            params_wls: s.predictor_params[2],
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

/// One parameter's measurements at the last check. Relative error is
/// |p - g| / |g|, cosine is <p, g> / (|p| |g|), score the running average of
/// the squared relative error (lower is better) over all checks, run score
/// the same over the checks that ended a predicted run (the choice follows it
/// once there is one); NaN: not measured (no check yet, or the predictor is
/// disabled).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tritter_phase_param_stats_t {
    /// The predictor the parameter uses now (`TRITTER_PREDICTOR_*`).
    pub predictor: u32,
    /// Checks that measured it.
    pub checks: u64,
    /// Relative error of the last-gradient predictor.
    pub rel_error_last: f64,
    /// Relative error of the EMA predictor.
    pub rel_error_ema: f64,
    /// Relative error of the WLS predictor.
    pub rel_error_wls: f64,
    /// Cosine of the last-gradient predictor.
    pub cosine_last: f64,
    /// Cosine of the EMA predictor.
    pub cosine_ema: f64,
    /// Cosine of the WLS predictor.
    pub cosine_wls: f64,
    /// Score of the last-gradient predictor.
    pub score_last: f64,
    /// Score of the EMA predictor.
    pub score_ema: f64,
    /// Score of the WLS predictor.
    pub score_wls: f64,
    /// Score of the last-gradient predictor over the checks that ended a run.
    pub run_score_last: f64,
    /// Score of the EMA predictor over the checks that ended a run.
    pub run_score_ema: f64,
    /// Score of the WLS predictor over the checks that ended a run.
    pub run_score_wls: f64,
}

impl From<ParamStats> for tritter_phase_param_stats_t {
    fn from(s: ParamStats) -> Self {
        tritter_phase_param_stats_t {
            predictor: s.predictor.code(),
            checks: s.checks,
            rel_error_last: s.rel_error[0],
            rel_error_ema: s.rel_error[1],
            rel_error_wls: s.rel_error[2],
            cosine_last: s.cosine[0],
            cosine_ema: s.cosine[1],
            cosine_wls: s.cosine[2],
            score_last: s.score[0],
            score_ema: s.score[1],
            score_wls: s.score[2],
            run_score_last: s.run_score[0],
            run_score_ema: s.run_score[1],
            run_score_wls: s.run_score[2],
        }
    }
}

/// A phase trainer: registered parameters, their gradient history (f32 or
/// bf16) and residuals, the schedule and statistics. Owns its memory; free
/// with [`tritter_phase_trainer_free`]. Mutated by most calls: not shareable
/// across threads without a lock.
pub struct tritter_phase_trainer_t(PhaseTrainer);

/// Writes the default settings: the guarded schedule (warmup 10, runs of at
/// most 8 predicted steps, max_error 0.3, 3 clean checks, all predictors,
/// window 8, f32 history).
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

/// Writes the seed's settings: fixed schedule 10 warmup / 5 full / 20-step
/// segments with every 5th a Correct step, loss back-off at a 10% rise, WLS
/// only. It broke training on every task measured (docs/predict.md).
///
/// # Safety
/// `config_out` must be valid for writing one `tritter_phase_config_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_config_seed(
    config_out: *mut tritter_phase_config_t,
) -> tritter_status_t {
    guard(|| unsafe { args::write(config_out, PhaseConfig::seed().into(), "config_out") })
}

/// Writes the conservative fixed settings (20 warmup, 10 full, 6-step
/// segments with every 3rd a Correct step, back-off at a 5% rise, WLS only).
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

/// The name of a reason code (`"warmup"`, `"error_above_threshold"`, ...) as
/// a static NUL-terminated string, or NULL for an unknown code. Never fails.
#[no_mangle]
pub extern "C" fn tritter_phase_reason_name(reason: u32) -> *const c_char {
    match Reason::from_code(reason) {
        Some(Reason::Warmup) => c"warmup".as_ptr(),
        Some(Reason::Schedule) => c"schedule".as_ptr(),
        Some(Reason::ErrorBelowThreshold) => c"error_below_threshold".as_ptr(),
        Some(Reason::ErrorAboveThreshold) => c"error_above_threshold".as_ptr(),
        Some(Reason::Probing) => c"probing".as_ptr(),
        Some(Reason::Check) => c"check".as_ptr(),
        Some(Reason::NonFiniteLoss) => c"non_finite_loss".as_ptr(),
        Some(Reason::LossRise) => c"loss_rise".as_ptr(),
        Some(Reason::Disabled) => c"disabled".as_ptr(),
        None => std::ptr::null(),
    }
}

/// The name of a predictor code (`"last"`, `"ema"`, `"wls"`) as a static
/// NUL-terminated string, or NULL for an unknown code. Never fails.
#[no_mangle]
pub extern "C" fn tritter_phase_predictor_name(predictor: u32) -> *const c_char {
    match Predictor::from_code(predictor) {
        Some(Predictor::Last) => c"last".as_ptr(),
        Some(Predictor::Ema) => c"ema".as_ptr(),
        Some(Predictor::Wls) => c"wls".as_ptr(),
        None => std::ptr::null(),
    }
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
            Some(c) => PhaseConfig::try_from(c)?,
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
            reason: i.reason.code(),
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

/// Ends the step with its loss and its measured wall time in seconds
/// (`seconds < 0`: not measured). On a backward step a non-finite loss stops
/// prediction. On a Predict step the guarded schedule ignores the loss (pass
/// NAN when the forward pass was skipped); the fixed schedule with
/// `adaptive_phases` counts a non-finite loss as a rise.
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

/// Writes parameter `param`'s measurements: the predictor it uses, and each
/// predictor's relative error, cosine and score at the last check.
///
/// Errors: unknown `param` (`TRITTER_ERR_INVALID_ARGUMENT`).
///
/// # Safety
/// `trainer` must be a live handle; `stats_out` valid for one write.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_phase_trainer_param_stats(
    trainer: *const tritter_phase_trainer_t,
    param: usize,
    stats_out: *mut tritter_phase_param_stats_t,
) -> tritter_status_t {
    guard(|| {
        let t = &unsafe { handle::get(trainer, "trainer")? }.0;
        args::check_out(stats_out, "stats_out")?;
        let s = t.parameter_stats(param)?;
        unsafe { args::write(stats_out, s.into(), "stats_out") }
    })
}
