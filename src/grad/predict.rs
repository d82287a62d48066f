//! Deterministic gradient prediction: the phase trainer.
//!
//! A training loop asks [`PhaseTrainer::begin_step`] *before* computing
//! gradients whether this step needs a backward pass. If it does, the loop
//! back-propagates and hands every parameter's gradient to
//! [`PhaseTrainer::record_gradient`]; if not, it fetches predicted gradients
//! with [`PhaseTrainer::predict_gradient`]. [`PhaseTrainer::end_step`] closes
//! the step with its loss.
//!
//! # Schedule
//! Steps run through four phases:
//!
//! | phase | backward pass | what happens |
//! |---|---|---|
//! | `Warmup` | yes | the first `warmup_steps` steps fill the history |
//! | `Full` | yes | `full_steps` steps at the start of each cycle |
//! | `Predict` | no | gradients come from the model below |
//! | `Correct` | yes | every `correct_every`-th step of the prediction segment (0 = never) |
//!
//! After warmup each cycle is `full_steps` Full steps followed by a
//! prediction segment of `P` steps (initially `predict_steps`); step `k`
//! (1-based) of the segment is Correct when `correct_every > 0` and
//! `k % correct_every == 0`, else Predict. With the defaults a cycle is 5
//! Full + 16 Predict + 4 Correct steps: 16 of 25 backward passes saved.
//! `predict_steps = 0` disables prediction. A Predict step is never issued
//! before at least one gradient has been recorded.
//!
//! **Adaptive back-off** (`adaptive_phases`): the mean loss of the segment's
//! steps so far is compared after each segment step with the mean loss of the
//! cycle's Full steps; if it exceeds it by more than
//! `loss_increase_threshold * |reference|` (or the loss is not finite), the
//! segment ends at once, `P` is halved (at least 1) and the next step is
//! Full. Each segment that completes without a rise doubles `P` again, up to
//! `predict_steps`.
//!
//! # Model
//! For every element the trainer keeps the last `history_window` recorded
//! gradients `g_i` with their step numbers `t_i` (in f32, or in bf16 with
//! `history_bf16`). With `s_i = t_i - t_new` (`t_new` the newest record) and
//! weights `w_i = history_decay^(t_new - t_i)`, it fits `g(s) = b + v s` by
//! weighted least squares in closed form:
//!
//! ```text
//! [S0 S1] [b]   [Σ w g  ]      S0 = Σ w, S1 = Σ w s, S2 = Σ w s²
//! [S1 S2] [v] = [Σ w s g]      det = S0 S2 - S1²
//! ```
//!
//! and predicts step `t` as `b + v τ` with `τ = min(t - t_new,
//! prediction_horizon)`: the trend is extrapolated at most
//! `prediction_horizon` steps past the newest record (0 = the fitted value at
//! the newest record). Since the times are shared by all elements, the
//! prediction is a fixed linear combination `Σ c_i g_i` of the history; the
//! `c_i` are computed once per step in f64 ([`wls_coefficients`]). With one
//! record, or `det` below `1e-12 S0 S2`, the model is the weighted mean.
//!
//! **Residual correction.** At every backward step with a non-empty history
//! the model's prediction `p` for that step is compared with the real
//! gradient: the residual `r = g - p` enters an exponential average
//! `R <- d R + (1 - d) r` (`d = history_decay`, bias-corrected by `1 - d^n`).
//! Predictions add the corrected `R` for a parameter when its norm exceeded
//! `residual_threshold` times the norm of `p` at the last update (small
//! residuals are noise and are left out).
//!
//! # Determinism
//! Every element's arithmetic is independent of the others and norms are
//! summed over fixed blocks in a fixed order, so predictions and statistics
//! are bit-identical for any thread count.

use std::collections::VecDeque;

use rayon::prelude::*;

use crate::precision::convert::{bf16_bits_to_f32, f32_to_bf16_bits};
use crate::{check_finite, Error, Result};

/// A step's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Initial gradient collection (backward pass).
    Warmup,
    /// Regular backward step at the start of a cycle.
    Full,
    /// Gradients predicted, no backward pass.
    Predict,
    /// Backward step inside a prediction segment (updates the residual).
    Correct,
}

impl Phase {
    /// Whether the step needs a backward pass.
    pub fn needs_backward(self) -> bool {
        self != Phase::Predict
    }
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Full => "full",
            Phase::Predict => "predict",
            Phase::Correct => "correct",
        }
    }
}

crate::c_codes!(Phase, "phase", "phase code" {
    Warmup = 0 => "warmup",
    Full = 1 => "full",
    Predict = 2 => "predict",
    Correct = 3 => "correct",
});

/// Phase-trainer settings (the seed's `DeterministicPhaseConfig` fields).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseConfig {
    /// Backward steps before the first cycle (default 10).
    pub warmup_steps: usize,
    /// Full steps at the start of each cycle (default 5).
    pub full_steps: usize,
    /// Length of a prediction segment (default 20; 0 = never predict).
    pub predict_steps: usize,
    /// Every k-th segment step is a Correct (backward) step (default 5; 0 = none).
    pub correct_every: usize,
    /// Back off prediction when the loss rises (default true).
    pub adaptive_phases: bool,
    /// Relative loss rise that triggers the back-off (finite, >= 0; default 0.1).
    pub loss_increase_threshold: f32,
    /// Recorded gradients kept for the fit (1..=256; default 8).
    pub history_window: usize,
    /// Steps past the newest record the trend is extrapolated (default 1).
    pub prediction_horizon: usize,
    /// Weight decay per step of age, also the residual average's decay (in (0, 1]; default 0.95).
    pub history_decay: f32,
    /// Relative residual norm above which the residual is added (>= 0, may be +inf = never; default 0.1).
    pub residual_threshold: f32,
    /// Keep the history in bf16 (half the memory, ~2^-9 relative rounding; default false).
    pub history_bf16: bool,
}

impl Default for PhaseConfig {
    fn default() -> Self {
        PhaseConfig {
            warmup_steps: 10,
            full_steps: 5,
            predict_steps: 20,
            correct_every: 5,
            adaptive_phases: true,
            loss_increase_threshold: 0.1,
            history_window: 8,
            prediction_horizon: 1,
            history_decay: 0.95,
            residual_threshold: 0.1,
            history_bf16: false,
        }
    }
}

impl PhaseConfig {
    /// A cautious schedule: 20 warmup steps, cycles of 10 Full + 6 segment
    /// steps with every 3rd a Correct step (4 of 16 backward passes saved),
    /// back-off at a 5% loss rise.
    pub fn conservative() -> Self {
        PhaseConfig {
            warmup_steps: 20,
            full_steps: 10,
            predict_steps: 6,
            correct_every: 3,
            loss_increase_threshold: 0.05,
            ..Default::default()
        }
    }

    /// Checks every field (errors name the field).
    pub fn validate(&self) -> Result<()> {
        if !(1..=256).contains(&self.history_window) {
            return Err(Error::invalid("history_window", "must be in 1..=256"));
        }
        if !(self.history_decay > 0.0 && self.history_decay <= 1.0) {
            return Err(Error::invalid("history_decay", "must be in (0, 1]"));
        }
        if !(self.loss_increase_threshold.is_finite() && self.loss_increase_threshold >= 0.0) {
            return Err(Error::invalid(
                "loss_increase_threshold",
                "must be finite and >= 0",
            ));
        }
        if self.residual_threshold.is_nan() || self.residual_threshold < 0.0 {
            return Err(Error::invalid(
                "residual_threshold",
                "must be >= 0 (inf = never)",
            ));
        }
        let big = 1usize << 40;
        for (v, name) in [
            (self.warmup_steps, "warmup_steps"),
            (self.full_steps, "full_steps"),
            (self.predict_steps, "predict_steps"),
            (self.correct_every, "correct_every"),
            (self.prediction_horizon, "prediction_horizon"),
        ] {
            if v > big {
                return Err(Error::invalid(name, "must be <= 2^40"));
            }
        }
        Ok(())
    }
}

/// What [`PhaseTrainer::begin_step`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepInfo {
    /// 0-based step number.
    pub step: u64,
    /// The step's phase.
    pub phase: Phase,
    /// Whether the caller must back-propagate and record gradients.
    pub needs_backward: bool,
}

/// Counters and measurements.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PhaseStats {
    /// Completed steps.
    pub steps: u64,
    /// Completed steps per phase.
    pub warmup_steps: u64,
    /// Full steps.
    pub full_steps: u64,
    /// Predict steps (= backward passes saved).
    pub predict_steps: u64,
    /// Correct steps.
    pub correct_steps: u64,
    /// Steps with a backward pass.
    pub backward_passes: u64,
    /// Adaptive back-offs so far.
    pub backoffs: u64,
    /// Current prediction-segment length.
    pub current_predict_steps: u64,
    /// Backward steps after warmup at which the prediction error was measured.
    pub error_samples: u64,
    /// Mean over those steps of ‖prediction − gradient‖ / ‖gradient‖ (all
    /// parameters together); NaN before any sample.
    pub mean_prediction_error: f64,
    /// The same for the naive predictor "repeat the newest recorded gradient"
    /// (a baseline; NaN before any sample).
    pub mean_last_gradient_error: f64,
    /// Bytes held for history and residuals.
    pub memory_bytes: u64,
    /// Steps with a backward pass whose wall time was reported, and their total seconds.
    pub timed_backward_steps: u64,
    /// Total reported seconds of backward steps.
    pub backward_seconds: f64,
    /// Predict steps whose wall time was reported.
    pub timed_predict_steps: u64,
    /// Total reported seconds of predict steps.
    pub predict_seconds: f64,
}

impl PhaseStats {
    /// Steps per backward pass (`steps / backward_passes`; 1 before any step).
    pub fn step_ratio(&self) -> f64 {
        if self.backward_passes == 0 {
            1.0
        } else {
            self.steps as f64 / self.backward_passes as f64
        }
    }

    /// Measured speedup: (timed steps × mean backward-step time) / their
    /// total time; NaN unless both kinds of steps were timed.
    pub fn measured_speedup(&self) -> f64 {
        if self.timed_backward_steps == 0 || self.timed_predict_steps == 0 {
            return f64::NAN;
        }
        let mean_b = self.backward_seconds / self.timed_backward_steps as f64;
        let n = (self.timed_backward_steps + self.timed_predict_steps) as f64;
        n * mean_b / (self.backward_seconds + self.predict_seconds)
    }
}

/// Weighted-least-squares prediction coefficients: the prediction for step
/// `target` is `Σ c_i g_i` over history entries recorded at `times` (oldest
/// first, strictly increasing), with weights `decay^(t_new - t_i)` and the
/// trend extrapolated at most `horizon` steps past the newest time.
///
/// Errors: empty or non-increasing `times`, `target` before the newest time,
/// `decay` outside (0, 1].
pub fn wls_coefficients(times: &[u64], target: u64, decay: f64, horizon: u64) -> Result<Vec<f64>> {
    let Some(&newest) = times.last() else {
        return Err(Error::invalid("times", "history is empty"));
    };
    if times.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::invalid("times", "must be strictly increasing"));
    }
    if target < newest {
        return Err(Error::invalid("target", "is before the newest record"));
    }
    if !(decay > 0.0 && decay <= 1.0) {
        return Err(Error::invalid("decay", "must be in (0, 1]"));
    }
    let tau = (target - newest).min(horizon) as f64;
    let s: Vec<f64> = times.iter().map(|&t| t as f64 - newest as f64).collect();
    let w: Vec<f64> = times
        .iter()
        .map(|&t| decay.powf((newest - t) as f64))
        .collect();
    let s0: f64 = w.iter().sum();
    let s1: f64 = w.iter().zip(&s).map(|(w, s)| w * s).sum();
    let s2: f64 = w.iter().zip(&s).map(|(w, s)| w * s * s).sum();
    let det = s0 * s2 - s1 * s1;
    if times.len() < 2 || det <= 1e-12 * s0 * s2 {
        return Ok(w.iter().map(|w| w / s0).collect());
    }
    Ok(w.iter()
        .zip(&s)
        .map(|(w, s)| w * ((s2 - s1 * s) + tau * (s0 * s - s1)) / det)
        .collect())
}

/// Elements per block for parallel work and for the fixed-order norm sums.
const BLOCK: usize = 4096;

/// History storage of one parameter, element-major: `[numel, window]`.
#[derive(Debug, Clone)]
enum History {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
}

trait Slot: Copy + Send + Sync {
    fn load(self) -> f64;
    fn store(x: f32) -> Self;
}
impl Slot for f32 {
    #[inline(always)]
    fn load(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn store(x: f32) -> Self {
        x
    }
}
impl Slot for u16 {
    #[inline(always)]
    fn load(self) -> f64 {
        bf16_bits_to_f32(self) as f64
    }
    #[inline(always)]
    fn store(x: f32) -> Self {
        f32_to_bf16_bits(x)
    }
}

#[derive(Debug, Clone)]
struct Param {
    shape: Vec<usize>,
    numel: usize,
    hist: History,
    residual: Vec<f32>,
    residual_updates: u32,
    apply_residual: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    Warmup(usize),
    Full(usize),
    Segment(usize),
}

/// Per-block sums gathered while recording.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    err: f64,
    last_err: f64,
    grad: f64,
    res: f64,
    pred: f64,
}

/// The phase trainer (see the module docs). Not shareable across threads
/// while being mutated; all methods take `&mut self` except the read-only ones.
#[derive(Debug, Clone)]
pub struct PhaseTrainer {
    cfg: PhaseConfig,
    params: Vec<Param>,
    /// Step numbers of the history entries, oldest first (shared by all parameters).
    times: VecDeque<u64>,
    /// Ring position of each entry of `times` (same order).
    slots: VecDeque<usize>,
    step: u64,
    current: Option<StepInfo>,
    cursor: Cursor,
    predict_len: usize,
    recorded: Vec<bool>,
    step_err: (f64, f64, f64),
    full_loss: (f64, u64),
    seg_loss: (f64, u64),
    stats: PhaseStats,
    err_sum: f64,
    last_err_sum: f64,
}

impl PhaseTrainer {
    /// A trainer with no parameters yet.
    pub fn new(cfg: PhaseConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(PhaseTrainer {
            cfg,
            params: Vec::new(),
            times: VecDeque::new(),
            slots: VecDeque::new(),
            step: 0,
            current: None,
            cursor: Cursor::Warmup(0),
            predict_len: cfg.predict_steps,
            recorded: Vec::new(),
            step_err: (0.0, 0.0, 0.0),
            full_loss: (0.0, 0),
            seg_loss: (0.0, 0),
            stats: PhaseStats {
                mean_prediction_error: f64::NAN,
                mean_last_gradient_error: f64::NAN,
                current_predict_steps: cfg.predict_steps as u64,
                ..Default::default()
            },
            err_sum: 0.0,
            last_err_sum: 0.0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &PhaseConfig {
        &self.cfg
    }

    /// Registers a parameter of any rank (`[]` is a scalar) and returns its
    /// id (0, 1, ... in order). Only before the first step.
    ///
    /// Errors: called after the first `begin_step` (InvalidState); a zero
    /// dimension (InvalidArgument `shape`); sizes that overflow (SizeOverflow);
    /// history or residual that cannot be allocated (OutOfMemory `shape`).
    pub fn add_parameter(&mut self, shape: &[usize]) -> Result<usize> {
        if self.step > 0 || self.current.is_some() {
            return Err(Error::InvalidState(
                "add_parameter: parameters must be registered before the first begin_step".into(),
            ));
        }
        let mut numel = 1usize;
        for &d in shape {
            if d == 0 {
                return Err(Error::invalid("shape", "dimensions must be > 0"));
            }
            numel = crate::checked_mul(numel, d, "shape")?;
        }
        let w = self.cfg.history_window;
        let cells = crate::checked_mul(numel, w, "shape")?;
        if cells > isize::MAX as usize / 4 {
            return Err(Error::overflow(
                "shape",
                "history would exceed the address space",
            ));
        }
        // Fallible: the sizes come from the caller's shape (nothing is
        // registered when an allocation is refused).
        let hist = if self.cfg.history_bf16 {
            History::Bf16(crate::try_zeroed(cells, "shape")?)
        } else {
            History::F32(crate::try_zeroed(cells, "shape")?)
        };
        let residual = crate::try_zeroed(numel, "shape")?;
        crate::try_reserve(&mut self.params, 1, "shape")?;
        crate::try_reserve(&mut self.recorded, 1, "shape")?;
        self.params.push(Param {
            shape: shape.to_vec(),
            numel,
            hist,
            residual,
            residual_updates: 0,
            apply_residual: false,
        });
        self.recorded.push(false);
        self.stats.memory_bytes = self.memory_bytes() as u64;
        Ok(self.params.len() - 1)
    }

    /// Number of registered parameters.
    pub fn num_parameters(&self) -> usize {
        self.params.len()
    }

    /// Shape of parameter `id` (InvalidArgument `param` if out of range).
    pub fn parameter_shape(&self, id: usize) -> Result<&[usize]> {
        Ok(&self.param(id)?.shape)
    }

    /// Number of elements of parameter `id`.
    pub fn parameter_numel(&self, id: usize) -> Result<usize> {
        Ok(self.param(id)?.numel)
    }

    fn param(&self, id: usize) -> Result<&Param> {
        self.params.get(id).ok_or_else(|| {
            Error::invalid(
                "param",
                format!("id {id} out of range ({} registered)", self.params.len()),
            )
        })
    }

    /// Bytes held for history and residuals.
    pub fn memory_bytes(&self) -> usize {
        let per = if self.cfg.history_bf16 { 2 } else { 4 };
        self.params
            .iter()
            .map(|p| p.numel * (self.cfg.history_window * per + 4))
            .sum()
    }

    /// The step in progress, if any.
    pub fn current_step(&self) -> Option<StepInfo> {
        self.current
    }

    /// Starts a step and says whether it needs a backward pass.
    ///
    /// Errors: a step already in progress, or no parameters (InvalidState).
    pub fn begin_step(&mut self) -> Result<StepInfo> {
        if self.current.is_some() {
            return Err(Error::InvalidState(
                "begin_step: the previous step was not ended with end_step".into(),
            ));
        }
        if self.params.is_empty() {
            return Err(Error::InvalidState(
                "begin_step: no parameters registered".into(),
            ));
        }
        let phase = loop {
            match self.cursor {
                Cursor::Warmup(d) if d < self.cfg.warmup_steps => break Phase::Warmup,
                Cursor::Warmup(_) => self.enter_full(),
                Cursor::Full(d) if d < self.cfg.full_steps || self.cfg.predict_steps == 0 => {
                    break Phase::Full
                }
                Cursor::Full(_) => {
                    self.cursor = Cursor::Segment(0);
                    self.seg_loss = (0.0, 0);
                }
                Cursor::Segment(d) if d < self.predict_len => {
                    let k = d + 1;
                    let ce = self.cfg.correct_every;
                    break if ce > 0 && k % ce == 0 {
                        Phase::Correct
                    } else if self.times.is_empty() {
                        Phase::Full // nothing to predict from yet
                    } else {
                        Phase::Predict
                    };
                }
                Cursor::Segment(_) => {
                    self.predict_len = (self.predict_len * 2).min(self.cfg.predict_steps);
                    self.enter_full();
                }
            }
        };
        let info = StepInfo {
            step: self.step,
            phase,
            needs_backward: phase.needs_backward(),
        };
        self.current = Some(info);
        self.recorded.iter_mut().for_each(|r| *r = false);
        self.step_err = (0.0, 0.0, 0.0);
        Ok(info)
    }

    fn enter_full(&mut self) {
        self.cursor = Cursor::Full(0);
        self.full_loss = (0.0, 0);
    }

    fn coefficients(&self, target: u64) -> Vec<f64> {
        let times: Vec<u64> = self.times.iter().copied().collect();
        wls_coefficients(
            &times,
            target,
            self.cfg.history_decay as f64,
            self.cfg.prediction_horizon as u64,
        )
        .expect("history times are increasing and in the past")
    }

    /// Records the real gradient of parameter `id` (flat, row-major,
    /// `numel` values) in a step that needs a backward pass.
    ///
    /// Errors: no step in progress, a Predict step, or the parameter already
    /// recorded this step (InvalidState); bad `param` id; `grad` of the wrong
    /// length (ShapeMismatch); a non-finite value (NonFinite `grad`; nothing
    /// is recorded, so skip such steps or unscale first).
    pub fn record_gradient(&mut self, id: usize, grad: &[f32]) -> Result<()> {
        let info = self
            .current
            .ok_or_else(|| Error::InvalidState("record_gradient: no step in progress".into()))?;
        if !info.needs_backward {
            return Err(Error::InvalidState(
                "record_gradient: this step is a Predict step (no backward pass)".into(),
            ));
        }
        let numel = self.param(id)?.numel;
        if self.recorded[id] {
            return Err(Error::InvalidState(format!(
                "record_gradient: parameter {id} was already recorded this step"
            )));
        }
        if grad.len() != numel {
            return Err(Error::shape(
                "grad",
                format!(
                    "parameter {id} has {numel} elements, grad has {}",
                    grad.len()
                ),
            ));
        }
        check_finite(grad, "grad")?;

        let w = self.cfg.history_window;
        let have = self.times.len();
        let coeff = if have > 0 {
            self.coefficients(info.step)
        } else {
            Vec::new()
        };
        let slots: Vec<usize> = self.slots.iter().copied().collect();
        let newest = slots.last().copied();
        let target = if have < w { have } else { slots[0] };
        let by_slot = coefficients_by_slot(&coeff, &slots, w);
        let decay = self.cfg.history_decay;
        let p = &mut self.params[id];
        let bias = 1.0 - (decay as f64).powi(p.residual_updates as i32 + 1);
        let old_bias = 1.0 - (decay as f64).powi(p.residual_updates as i32);
        let apply = p.apply_residual && p.residual_updates > 0 && old_bias > 0.0;
        let ctx = RecordCtx {
            w,
            by_slot: &by_slot,
            newest,
            target,
            decay,
            bias,
            old_bias,
            apply,
        };
        let sums = match &mut p.hist {
            History::F32(h) => record_blocks(h, &mut p.residual, grad, &ctx),
            History::Bf16(h) => record_blocks(h, &mut p.residual, grad, &ctx),
        };
        if have > 0 {
            p.residual_updates += 1;
            p.apply_residual =
                sums.res.sqrt() > self.cfg.residual_threshold as f64 * sums.pred.sqrt();
            self.step_err.0 += sums.err;
            self.step_err.1 += sums.last_err;
        }
        self.step_err.2 += sums.grad;
        self.recorded[id] = true;
        Ok(())
    }

    /// Writes the predicted gradient of parameter `id` into `out` (`numel`
    /// values) during a Predict step.
    ///
    /// Errors: no step in progress or not a Predict step (InvalidState); bad
    /// `param` id; `out` of the wrong length (ShapeMismatch).
    pub fn predict_gradient(&self, id: usize, out: &mut [f32]) -> Result<()> {
        let info = self
            .current
            .ok_or_else(|| Error::InvalidState("predict_gradient: no step in progress".into()))?;
        if info.needs_backward {
            return Err(Error::InvalidState(format!(
                "predict_gradient: step {} is a {} step; record real gradients instead",
                info.step,
                info.phase.name()
            )));
        }
        let p = self.param(id)?;
        if out.len() != p.numel {
            return Err(Error::shape(
                "out",
                format!(
                    "parameter {id} has {} elements, out has {}",
                    p.numel,
                    out.len()
                ),
            ));
        }
        let coeff = self.coefficients(info.step);
        let slots: Vec<usize> = self.slots.iter().copied().collect();
        let w = self.cfg.history_window;
        let by_slot = coefficients_by_slot(&coeff, &slots, w);
        let bias = 1.0 - (self.cfg.history_decay as f64).powi(p.residual_updates as i32);
        let res_scale = if p.apply_residual && p.residual_updates > 0 && bias > 0.0 {
            Some(1.0 / bias)
        } else {
            None
        };
        match &p.hist {
            History::F32(h) => predict_blocks(h, &p.residual, out, w, &by_slot, res_scale),
            History::Bf16(h) => predict_blocks(h, &p.residual, out, w, &by_slot, res_scale),
        }
        Ok(())
    }

    /// Ends the step with its loss (any finite value; a non-finite loss
    /// counts as a rise) and, optionally, its measured wall time in seconds.
    /// Returns the ended step's phase.
    ///
    /// Errors: no step in progress, or a backward step in which some
    /// parameter was not recorded (InvalidState; the step stays open);
    /// `seconds` negative or not finite (InvalidArgument).
    pub fn end_step(&mut self, loss: f32, seconds: Option<f64>) -> Result<Phase> {
        let info = self
            .current
            .ok_or_else(|| Error::InvalidState("end_step: no step in progress".into()))?;
        if let Some(s) = seconds {
            if !(s.is_finite() && s >= 0.0) {
                return Err(Error::invalid("seconds", "must be finite and >= 0"));
            }
        }
        if info.needs_backward {
            if let Some(missing) = self.recorded.iter().position(|r| !r) {
                return Err(Error::InvalidState(format!(
                    "end_step: parameter {missing} has no recorded gradient in this {} step",
                    info.phase.name()
                )));
            }
            // History bookkeeping: the new entry went into the ring's next slot.
            let measured = !self.times.is_empty();
            let w = self.cfg.history_window;
            let slot = if self.times.len() < w {
                self.times.len()
            } else {
                self.times.pop_front();
                self.slots.pop_front().expect("same length as times")
            };
            self.times.push_back(info.step);
            self.slots.push_back(slot);
            if measured && info.phase != Phase::Warmup && self.step_err.2 > 0.0 {
                self.stats.error_samples += 1;
                self.err_sum += (self.step_err.0 / self.step_err.2).sqrt();
                self.last_err_sum += (self.step_err.1 / self.step_err.2).sqrt();
                let n = self.stats.error_samples as f64;
                self.stats.mean_prediction_error = self.err_sum / n;
                self.stats.mean_last_gradient_error = self.last_err_sum / n;
            }
            self.stats.backward_passes += 1;
            if let Some(s) = seconds {
                self.stats.timed_backward_steps += 1;
                self.stats.backward_seconds += s;
            }
        } else if let Some(s) = seconds {
            self.stats.timed_predict_steps += 1;
            self.stats.predict_seconds += s;
        }
        match info.phase {
            Phase::Warmup => self.stats.warmup_steps += 1,
            Phase::Full => self.stats.full_steps += 1,
            Phase::Predict => self.stats.predict_steps += 1,
            Phase::Correct => self.stats.correct_steps += 1,
        }
        self.stats.steps += 1;

        // Advance the schedule.
        let l = loss as f64;
        match self.cursor {
            Cursor::Warmup(d) => self.cursor = Cursor::Warmup(d + 1),
            Cursor::Full(d) => {
                if l.is_finite() {
                    self.full_loss.0 += l;
                    self.full_loss.1 += 1;
                }
                self.cursor = Cursor::Full(d + 1);
            }
            Cursor::Segment(d) => {
                if info.phase == Phase::Full {
                    // A forced Full step (no history yet) does not advance the segment.
                } else {
                    self.seg_loss.0 += l;
                    self.seg_loss.1 += 1;
                    let rise = self.cfg.adaptive_phases && {
                        let mean = self.seg_loss.0 / self.seg_loss.1 as f64;
                        if !mean.is_finite() {
                            true
                        } else if self.full_loss.1 > 0 {
                            let r = self.full_loss.0 / self.full_loss.1 as f64;
                            mean - r > self.cfg.loss_increase_threshold as f64 * r.abs()
                        } else {
                            false
                        }
                    };
                    if rise {
                        self.stats.backoffs += 1;
                        self.predict_len = (self.predict_len / 2).max(1);
                        self.enter_full();
                    } else {
                        self.cursor = Cursor::Segment(d + 1);
                    }
                }
            }
        }
        self.stats.current_predict_steps = self.predict_len as u64;
        self.step += 1;
        self.current = None;
        Ok(info.phase)
    }

    /// Counters and measurements so far.
    pub fn stats(&self) -> PhaseStats {
        let mut s = self.stats;
        s.memory_bytes = self.memory_bytes() as u64;
        s
    }
}

/// The coefficients laid out by ring slot (0 for empty slots), so the
/// per-element sum runs over the element's contiguous history.
fn coefficients_by_slot(coeff: &[f64], slots: &[usize], w: usize) -> Vec<f64> {
    let mut v = vec![0.0; w];
    for (&c, &s) in coeff.iter().zip(slots) {
        v[s] = c;
    }
    v
}

struct RecordCtx<'a> {
    w: usize,
    by_slot: &'a [f64],
    newest: Option<usize>,
    target: usize,
    decay: f32,
    bias: f64,
    old_bias: f64,
    apply: bool,
}

fn record_blocks<T: Slot>(
    hist: &mut [T],
    residual: &mut [f32],
    grad: &[f32],
    c: &RecordCtx,
) -> Sums {
    let w = c.w;
    let kernel = |h: &mut [T], r: &mut [f32], g: &[f32]| -> Sums {
        let mut s = Sums::default();
        let d = c.decay as f64;
        for e in 0..g.len() {
            let he = &mut h[e * w..(e + 1) * w];
            let ge = g[e] as f64;
            s.grad += ge * ge;
            if let Some(nw) = c.newest {
                let mut p = 0.0f64;
                for (ci, hv) in c.by_slot.iter().zip(he.iter()) {
                    p += ci * hv.load();
                }
                let q = if c.apply {
                    p + r[e] as f64 / c.old_bias
                } else {
                    p
                };
                s.err += (ge - q) * (ge - q);
                let last = he[nw].load();
                s.last_err += (ge - last) * (ge - last);
                s.pred += p * p;
                let rn = d * r[e] as f64 + (1.0 - d) * (ge - p);
                r[e] = rn as f32;
                let rc = if c.bias > 0.0 { rn / c.bias } else { 0.0 };
                s.res += rc * rc;
            }
            he[c.target] = T::store(g[e]);
        }
        s
    };
    let parts: Vec<Sums> = if grad.len() < 2 * BLOCK {
        vec![kernel(hist, residual, grad)]
    } else {
        crate::parallel::install(|| {
            hist.par_chunks_mut(BLOCK * w)
                .zip(residual.par_chunks_mut(BLOCK))
                .zip(grad.par_chunks(BLOCK))
                .map(|((h, r), g)| kernel(h, r, g))
                .collect()
        })
    };
    parts.iter().fold(Sums::default(), |a, b| Sums {
        err: a.err + b.err,
        last_err: a.last_err + b.last_err,
        grad: a.grad + b.grad,
        res: a.res + b.res,
        pred: a.pred + b.pred,
    })
}

fn predict_blocks<T: Slot>(
    hist: &[T],
    residual: &[f32],
    out: &mut [f32],
    w: usize,
    by_slot: &[f64],
    res_scale: Option<f64>,
) {
    let kernel = |h: &[T], r: &[f32], o: &mut [f32]| {
        for e in 0..o.len() {
            let he = &h[e * w..(e + 1) * w];
            let mut p = 0.0f64;
            for (ci, hv) in by_slot.iter().zip(he.iter()) {
                p += ci * hv.load();
            }
            if let Some(k) = res_scale {
                p += r[e] as f64 * k;
            }
            o[e] = p as f32;
        }
    };
    if out.len() < 2 * BLOCK {
        kernel(hist, residual, out);
    } else {
        crate::parallel::install(|| {
            hist.par_chunks(BLOCK * w)
                .zip(residual.par_chunks(BLOCK))
                .zip(out.par_chunks_mut(BLOCK))
                .for_each(|((h, r), o)| kernel(h, r, o));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{hash2, uniform_f32};

    /// Independent WLS: normal equations in absolute time, solved by Cramer
    /// on the un-centred sums, evaluated at the extrapolation point.
    fn direct(times: &[u64], vals: &[f64], decay: f64, target: u64, horizon: u64) -> f64 {
        let newest = *times.last().unwrap();
        let (mut a, mut b, mut c, mut y0, mut y1) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&t, &g) in times.iter().zip(vals) {
            let w = decay.powi((newest - t) as i32);
            let t = t as f64;
            a += w;
            b += w * t;
            c += w * t * t;
            y0 += w * g;
            y1 += w * t * g;
        }
        let det = a * c - b * b;
        let icept = (c * y0 - b * y1) / det;
        let slope = (a * y1 - b * y0) / det;
        let at = newest + (target - newest).min(horizon);
        icept + slope * at as f64
    }

    #[test]
    fn coefficients_equal_a_direct_solve() {
        for case in 0..200u64 {
            let n = 2 + (hash2(1, case) % 7) as usize;
            let mut t = hash2(2, case) % 50;
            let mut times = vec![];
            for i in 0..n {
                t += 1 + hash2(3, case * 16 + i as u64) % 4;
                times.push(t);
            }
            let vals: Vec<f64> = (0..n)
                .map(|i| uniform_f32(4, case * 16 + i as u64) as f64 * 2.0 - 1.0)
                .collect();
            let decay = 0.5 + 0.5 * uniform_f32(5, case) as f64;
            let target = t + hash2(6, case) % 5;
            let horizon = hash2(7, case) % 4;
            let c = wls_coefficients(&times, target, decay, horizon).unwrap();
            let got: f64 = c.iter().zip(&vals).map(|(c, v)| c * v).sum();
            let want = direct(&times, &vals, decay, target, horizon);
            assert!(
                (got - want).abs() < 1e-9 * (1.0 + want.abs()),
                "case {case}: {got} vs {want}"
            );
        }
        // One record: the value itself; a constant history predicts the constant.
        assert_eq!(wls_coefficients(&[7], 9, 0.9, 3).unwrap(), vec![1.0]);
        let c = wls_coefficients(&[1, 2, 4], 10, 0.8, 100).unwrap();
        assert!((c.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    fn cfg(warmup: usize, full: usize, predict: usize, ce: usize) -> PhaseConfig {
        PhaseConfig {
            warmup_steps: warmup,
            full_steps: full,
            predict_steps: predict,
            correct_every: ce,
            ..Default::default()
        }
    }

    /// Runs `steps` steps feeding `grad(step, id)` and `loss(step)`; returns the phases.
    fn drive(
        tr: &mut PhaseTrainer,
        steps: usize,
        grad: impl Fn(u64, usize, usize) -> f32,
        loss: impl Fn(u64) -> f32,
        mut on_predict: impl FnMut(u64, usize, &[f32]),
    ) -> Vec<Phase> {
        let mut phases = vec![];
        for _ in 0..steps {
            let info = tr.begin_step().unwrap();
            for id in 0..tr.num_parameters() {
                let n = tr.parameter_numel(id).unwrap();
                if info.needs_backward {
                    let g: Vec<f32> = (0..n).map(|e| grad(info.step, id, e)).collect();
                    tr.record_gradient(id, &g).unwrap();
                } else {
                    let mut out = vec![0f32; n];
                    tr.predict_gradient(id, &mut out).unwrap();
                    on_predict(info.step, id, &out);
                }
            }
            phases.push(tr.end_step(loss(info.step), None).unwrap());
        }
        phases
    }

    #[test]
    fn linear_sequences_are_predicted_exactly() {
        for bf16 in [false, true] {
            let mut c = cfg(8, 2, 12, 0);
            c.prediction_horizon = 1000;
            c.history_bf16 = bf16;
            let mut tr = PhaseTrainer::new(c).unwrap();
            tr.add_parameter(&[3, 5]).unwrap();
            tr.add_parameter(&[7]).unwrap();
            tr.add_parameter(&[]).unwrap();
            // bf16-exact values: small integers and slopes keep every g exact in bf16.
            let g = |t: u64, id: usize, e: usize| -> f32 {
                let a = (e as f32 - 3.0) * (id as f32 + 1.0);
                let s = [0.25f32, -0.5, 1.0][id] * ((e % 3) as f32 - 1.0);
                a + s * t as f32
            };
            let mut checked = 0;
            let phases = drive(
                &mut tr,
                60,
                g,
                |_| 1.0,
                |t, id, out| {
                    for (e, &v) in out.iter().enumerate() {
                        let want = g(t, id, e);
                        assert!(
                            (v - want).abs() <= want.abs() * 2e-7 + 1e-6,
                            "t {t} id {id} e {e}: {v} vs {want}"
                        );
                    }
                    checked += 1;
                },
            );
            assert!(phases.contains(&Phase::Predict));
            assert!(checked > 20);
            assert!(tr.stats().mean_prediction_error < 1e-6);
        }
    }

    /// The schedule written out independently from the documented rules.
    fn expected_schedule(c: &PhaseConfig, steps: usize) -> Vec<Phase> {
        let mut v: Vec<Phase> = vec![Phase::Warmup; c.warmup_steps.min(steps)];
        while v.len() < steps {
            v.extend(std::iter::repeat_n(Phase::Full, c.full_steps));
            for k in 1..=c.predict_steps {
                v.push(if c.correct_every > 0 && k % c.correct_every == 0 {
                    Phase::Correct
                } else {
                    Phase::Predict
                });
            }
        }
        v.truncate(steps);
        v
    }

    #[test]
    fn schedule_follows_the_documented_rules() {
        for c in [
            PhaseConfig::default(),
            PhaseConfig::conservative(),
            cfg(0, 1, 3, 0),
            cfg(3, 0, 4, 2),
            cfg(2, 3, 1, 1),
        ] {
            let mut tr = PhaseTrainer::new(c).unwrap();
            tr.add_parameter(&[4]).unwrap();
            let got = drive(
                &mut tr,
                137,
                |t, _, e| (t + e as u64) as f32,
                |_| 1.0,
                |_, _, _| {},
            );
            assert_eq!(got, expected_schedule(&c, 137), "{c:?}");
            let s = tr.stats();
            let count = |p| got.iter().filter(|&&x| x == p).count() as u64;
            assert_eq!(s.predict_steps, count(Phase::Predict));
            assert_eq!(s.correct_steps, count(Phase::Correct));
            assert_eq!(s.backward_passes, 137 - count(Phase::Predict));
            assert_eq!(s.backoffs, 0);
        }
        // Default: 10 warmup, then per 25-step cycle 5 full + 16 predict + 4 correct.
        let mut tr = PhaseTrainer::new(PhaseConfig::default()).unwrap();
        tr.add_parameter(&[1]).unwrap();
        drive(&mut tr, 110, |t, _, _| t as f32, |_| 1.0, |_, _, _| {});
        assert_eq!(tr.stats().predict_steps, 64);
        // No prediction at all with predict_steps = 0.
        let mut tr = PhaseTrainer::new(cfg(2, 3, 0, 5)).unwrap();
        tr.add_parameter(&[1]).unwrap();
        let got = drive(&mut tr, 20, |t, _, _| t as f32, |_| 1.0, |_, _, _| {});
        assert!(got[2..].iter().all(|&p| p == Phase::Full));
    }

    #[test]
    fn adaptive_backoff_halves_then_regrows() {
        let c = cfg(2, 2, 8, 0);
        let mut tr = PhaseTrainer::new(c).unwrap();
        tr.add_parameter(&[2]).unwrap();
        // Loss 1 on backward steps; during segments 1.5 (a 50% rise) until step 40, then 1.
        let phases = std::cell::RefCell::new(vec![]);
        for _ in 0..80 {
            let info = tr.begin_step().unwrap();
            if info.needs_backward {
                tr.record_gradient(0, &[1.0, 2.0]).unwrap();
            }
            let loss = if info.phase == Phase::Predict && info.step < 40 {
                1.5
            } else {
                1.0
            };
            tr.end_step(loss, None).unwrap();
            phases
                .borrow_mut()
                .push((info.phase, tr.stats().current_predict_steps));
        }
        let p = phases.into_inner();
        // Warmup 2, Full 2, Predict -> rise -> P = 4, Full 2, Predict -> P = 2, ...
        let seq: Vec<Phase> = p.iter().map(|x| x.0).collect();
        assert_eq!(
            &seq[..6],
            &[
                Phase::Warmup,
                Phase::Warmup,
                Phase::Full,
                Phase::Full,
                Phase::Predict,
                Phase::Full
            ]
        );
        assert_eq!(p[4].1, 4);
        assert_eq!(&seq[6..9], &[Phase::Full, Phase::Predict, Phase::Full]);
        assert_eq!(p[7].1, 2);
        assert_eq!(p[10].1, 1);
        // Never below 1; after step 40 segments complete and P doubles back to 8.
        assert!(p.iter().all(|x| x.1 >= 1));
        assert_eq!(p.last().unwrap().1, 8);
        let tail: Vec<Phase> = seq[60..].to_vec();
        assert!(tail
            .windows(8)
            .any(|w| w.iter().all(|&x| x == Phase::Predict)));
        // Non-adaptive: no back-off at all.
        let mut c2 = c;
        c2.adaptive_phases = false;
        let mut tr = PhaseTrainer::new(c2).unwrap();
        tr.add_parameter(&[1]).unwrap();
        drive(
            &mut tr,
            40,
            |_, _, _| 1.0,
            |t| t as f32 * 10.0,
            |_, _, _| {},
        );
        assert_eq!(tr.stats().backoffs, 0);
        // A NaN loss in a segment backs off too.
        let mut tr = PhaseTrainer::new(c).unwrap();
        tr.add_parameter(&[1]).unwrap();
        drive(
            &mut tr,
            6,
            |_, _, _| 1.0,
            |t| if t == 4 { f32::NAN } else { 1.0 },
            |_, _, _| {},
        );
        assert_eq!(tr.stats().backoffs, 1);
    }

    #[test]
    fn residual_corrects_systematic_curvature() {
        // g(t) = t^2 / 100: the linear fit lags systematically (by an amount that
        // depends on the gap to the newest record); the residual average removes part of it.
        let run = |thr: f32| {
            let mut c = cfg(10, 1, 3, 0);
            c.residual_threshold = thr;
            c.history_window = 4;
            c.adaptive_phases = false;
            let mut tr = PhaseTrainer::new(c).unwrap();
            tr.add_parameter(&[3]).unwrap();
            let g = |t: u64, _: usize, e: usize| (t * t) as f32 / 100.0 + e as f32;
            let mut err = 0.0f64;
            drive(
                &mut tr,
                200,
                g,
                |_| 1.0,
                |t, _, out| {
                    if t > 100 {
                        for (e, &v) in out.iter().enumerate() {
                            err += (v as f64 - g(t, 0, e) as f64).abs();
                        }
                    }
                },
            );
            (err, tr.stats())
        };
        let (with, s_with) = run(0.0);
        let (without, s_without) = run(f32::INFINITY);
        assert!(
            with < 0.95 * without,
            "with residual {with}, without {without}"
        );
        assert!(s_with.mean_prediction_error < s_without.mean_prediction_error);
    }

    #[test]
    fn bf16_history_error_is_bounded() {
        let mk = |bf16: bool| {
            let mut c = cfg(8, 0, 50, 0);
            c.history_bf16 = bf16;
            c.adaptive_phases = false;
            c.residual_threshold = f32::INFINITY;
            let mut tr = PhaseTrainer::new(c).unwrap();
            tr.add_parameter(&[300]).unwrap();
            tr
        };
        let g = |t: u64, _: usize, e: usize| uniform_f32(t, e as u64) * 4.0 - 2.0;
        let (mut a, mut b) = (mk(false), mk(true));
        assert_eq!(a.memory_bytes(), 300 * (8 * 4 + 4));
        assert_eq!(b.memory_bytes(), 300 * (8 * 2 + 4));
        let mut pa = vec![];
        drive(&mut a, 12, g, |_| 1.0, |_, _, o| pa.push(o.to_vec()));
        let mut pb = vec![];
        drive(&mut b, 12, g, |_| 1.0, |_, _, o| pb.push(o.to_vec()));
        let c = wls_coefficients(&(0..8).collect::<Vec<_>>(), 8, 0.95, 1).unwrap();
        let bound: f64 = c.iter().map(|c| c.abs()).sum::<f64>() * 2.0 * 2f64.powi(-9);
        for (x, y) in pa.iter().flatten().zip(pb.iter().flatten()) {
            assert!(
                ((x - y) as f64).abs() <= bound + 1e-6,
                "{x} {y} bound {bound}"
            );
        }
        assert_ne!(pa, pb);
    }

    #[test]
    fn identical_for_any_thread_count() {
        let run = |threads: usize| {
            crate::parallel::set_num_threads(threads);
            let mut c = PhaseConfig {
                residual_threshold: 0.0,
                ..cfg(4, 1, 6, 3)
            };
            c.history_window = 5;
            let mut tr = PhaseTrainer::new(c).unwrap();
            tr.add_parameter(&[3 * BLOCK + 5]).unwrap();
            tr.add_parameter(&[17]).unwrap();
            let mut preds = vec![];
            drive(
                &mut tr,
                30,
                |t, id, e| uniform_f32(t * 7 + id as u64, e as u64) - 0.5 + t as f32 * 0.01,
                |t| 1.0 / (1.0 + t as f32),
                |_, _, o| preds.push(o.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
            );
            let s = tr.stats();
            (
                preds,
                s.mean_prediction_error.to_bits(),
                s.mean_last_gradient_error.to_bits(),
            )
        };
        let one = run(1);
        let three = run(3);
        crate::parallel::set_num_threads(0);
        assert!(!one.0.is_empty());
        assert_eq!(one, three);
    }

    #[test]
    fn call_order_and_argument_errors() {
        let mut tr = PhaseTrainer::new(cfg(1, 0, 2, 0)).unwrap();
        assert!(matches!(tr.begin_step(), Err(Error::InvalidState(_))));
        assert!(matches!(
            tr.add_parameter(&[2, 0]),
            Err(Error::InvalidArgument { arg: "shape", .. })
        ));
        assert!(matches!(
            tr.add_parameter(&[usize::MAX, 2]),
            Err(Error::SizeOverflow { arg: "shape", .. })
        ));
        tr.add_parameter(&[2]).unwrap();
        tr.add_parameter(&[1]).unwrap();
        assert!(matches!(
            tr.end_step(1.0, None),
            Err(Error::InvalidState(_))
        ));
        assert!(matches!(
            tr.record_gradient(0, &[1.0, 2.0]),
            Err(Error::InvalidState(_))
        ));
        let info = tr.begin_step().unwrap();
        assert_eq!(info.phase, Phase::Warmup);
        assert!(matches!(tr.begin_step(), Err(Error::InvalidState(_))));
        assert!(matches!(
            tr.add_parameter(&[1]),
            Err(Error::InvalidState(_))
        ));
        assert!(matches!(
            tr.predict_gradient(0, &mut [0.0; 2]),
            Err(Error::InvalidState(_))
        ));
        assert!(matches!(
            tr.record_gradient(2, &[1.0]),
            Err(Error::InvalidArgument { arg: "param", .. })
        ));
        assert!(matches!(
            tr.record_gradient(0, &[1.0]),
            Err(Error::ShapeMismatch { arg: "grad", .. })
        ));
        assert!(matches!(
            tr.record_gradient(0, &[1.0, f32::NAN]),
            Err(Error::NonFinite {
                arg: "grad",
                index: 1
            })
        ));
        tr.record_gradient(0, &[1.0, 2.0]).unwrap();
        assert!(matches!(
            tr.record_gradient(0, &[1.0, 2.0]),
            Err(Error::InvalidState(_))
        ));
        assert!(matches!(
            tr.end_step(1.0, None),
            Err(Error::InvalidState(_))
        )); // param 1 missing
        tr.record_gradient(1, &[3.0]).unwrap();
        assert!(matches!(
            tr.end_step(1.0, Some(-1.0)),
            Err(Error::InvalidArgument { arg: "seconds", .. })
        ));
        tr.end_step(1.0, Some(0.5)).unwrap();
        let info = tr.begin_step().unwrap();
        assert_eq!(info.phase, Phase::Predict);
        assert!(matches!(
            tr.record_gradient(0, &[1.0, 2.0]),
            Err(Error::InvalidState(_))
        ));
        assert!(matches!(
            tr.predict_gradient(0, &mut [0.0; 3]),
            Err(Error::ShapeMismatch { arg: "out", .. })
        ));
        let mut out = [0f32; 2];
        tr.predict_gradient(0, &mut out).unwrap();
        assert_eq!(out, [1.0, 2.0]);
        tr.end_step(1.0, Some(0.1)).unwrap();
        let s = tr.stats();
        assert_eq!((s.timed_backward_steps, s.timed_predict_steps), (1, 1));
        assert!((s.measured_speedup() - 2.0 * 0.5 / 0.6).abs() < 1e-12);
        for (c, arg) in [
            (
                PhaseConfig {
                    history_window: 0,
                    ..Default::default()
                },
                "history_window",
            ),
            (
                PhaseConfig {
                    history_decay: 0.0,
                    ..Default::default()
                },
                "history_decay",
            ),
            (
                PhaseConfig {
                    loss_increase_threshold: f32::NAN,
                    ..Default::default()
                },
                "loss_increase_threshold",
            ),
            (
                PhaseConfig {
                    residual_threshold: -1.0,
                    ..Default::default()
                },
                "residual_threshold",
            ),
        ] {
            match PhaseTrainer::new(c).unwrap_err() {
                Error::InvalidArgument { arg: a, .. } => assert_eq!(a, arg),
                e => panic!("{e:?}"),
            }
        }
    }
}
