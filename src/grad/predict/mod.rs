//! Gradient prediction that checks itself: the phase trainer.
//!
//! A training loop asks [`PhaseTrainer::begin_step`] *before* computing
//! gradients whether this step needs a backward pass. If it does, the loop
//! back-propagates and hands every parameter's gradient to
//! [`PhaseTrainer::record_gradient`]; if not, it takes predicted gradients
//! from [`PhaseTrainer::predict_gradient`] (and may skip the forward pass
//! too). [`PhaseTrainer::end_step`] closes the step.
//!
//! # The check on every backward pass
//! Each recorded gradient `g` is first compared with what every enabled
//! predictor would have predicted for this step from the history as it
//! stands (before `g` enters it): per parameter the relative error
//! `‖p − g‖ / ‖g‖` and the cosine `⟨p, g⟩ / (‖p‖ ‖g‖)`, and over all
//! parameters together the same for the predictors currently chosen. After a
//! predicted run of `L` steps the history ends `L + 1` steps back, so the
//! check measures exactly the extrapolation the run relied on (one step
//! further).
//!
//! # Predictors (chosen per parameter by measurement)
//! | predictor | prediction |
//! |---|---|
//! | [`Predictor::Last`] | the newest recorded gradient |
//! | [`Predictor::Ema`] | mean of the history weighted `ema_decay^age` |
//! | [`Predictor::Wls`] | the seed's weighted least-squares line, extrapolated at most `prediction_horizon` steps |
//!
//! Each parameter keeps a score per predictor, an exponential average (factor
//! 0.5) of its squared relative error at the checks, and the same over the
//! checks that end a predicted run (the horizons runs rely on). It uses the
//! enabled predictor with the lowest score, by the run checks once there is
//! one (ties: the simpler predictor, in the order of the table).
//!
//! # Schedules
//! **Guarded** ([`Schedule::Guarded`], the default). The first
//! `warmup_steps` steps run backward passes. After that, every backward step
//! is a check; the *overall* relative error `e` of the chosen predictors
//! decides:
//!
//! * `e ≤ max_error` at `min_checks` consecutive checks (×2 after each failed
//!   run, at most ×64; reset by a run that passes): a run of `L` predicted
//!   steps starts (`L` = 1 at first). A run ends with a backward step, the
//!   **Correct** step, which checks it: if it passes, `L` doubles (at most
//!   `predict_steps`) and the next run starts at once.
//! * `e > max_error`, or a non-finite loss on a backward step: back off at
//!   once. No prediction until the clean checks are collected again; if the
//!   failed check ended a run, `L` halves (at least 1).
//!
//! While the error stays far above the threshold (`e > 2 · max_error`),
//! checking every backward pass is pure cost, so the checks are spaced out:
//! after such a check the next 1, 2, 4, 8, then at most 16 backward steps
//! only record their gradient (no predictor is evaluated; they keep the
//! reason [`Reason::ErrorAboveThreshold`] and count in neither
//! `error_samples` nor `failed_checks`). Any check at most `2 · max_error`
//! (or a non-finite loss) returns to checking every backward pass. Skipped
//! steps only delay the start of prediction (a run still needs `min_checks`
//! consecutive passing checks), so they cannot make a run less safe.
//!
//! Every step carries a [`Reason`] (why it has its phase), and the stats say
//! what the last decision was and what it was based on. On tasks whose
//! gradients cannot be predicted (minibatch noise larger than the signal,
//! `e` near or above 1) the guarded schedule keeps every backward pass.
//!
//! **Fixed** ([`Schedule::Fixed`], the seed's schedule, [`PhaseConfig::seed`]):
//! `warmup_steps` Warmup steps, then cycles of `full_steps` Full steps and a
//! segment of `predict_steps` steps in which every `correct_every`-th step is
//! a Correct step (0 = none). With `adaptive_phases`, the segment ends when
//! its mean loss exceeds the mean loss of the cycle's Full steps by more than
//! `loss_increase_threshold × |reference|` (or a loss is not finite), and
//! its length halves (at least 1); a segment that completes doubles it again,
//! up to `predict_steps`. The checks are made and reported, but do not change
//! the schedule.
//!
//! # Cost
//! History is kept per parameter as `history_window` buffers of `numel`
//! values (f32, or bf16 with `history_bf16`), one per recorded step, in a
//! ring. Predicting is one pass over the buffers the chosen predictor uses.
//!
//! Recording checks every predictor in its **Gram form**: every prediction is
//! a linear combination `p = Σ_i c_i h_i` of the history, so with the dot
//! products `d_i = ⟨h_i, g⟩`, `gg = ⟨g, g⟩` and the history's Gram matrix
//! `G_ij = ⟨h_i, h_j⟩` (kept per parameter, `history_window²` f64), a
//! predictor's sums are `⟨p, g⟩ = Σ c_i d_i`, `‖p‖² = cᵀ G c` and
//! `‖p − g‖² = ‖p‖² − 2⟨p, g⟩ + gg` (f64, after the pass). The pass over the
//! history computes only the `d_i` and `gg` (one multiply-add per history
//! element); the new gradient's dot products are then its row of `G`. `g`
//! here is the gradient as stored (bf16 history: rounded to bf16, so `G` is
//! exactly the stored history's Gram matrix and the check measures against
//! the stored gradient, at most `2^-9` relative from the real one). A
//! backward step that skips the check still computes the dot products (`G`
//! must follow the history). Being a difference of large terms, `‖p − g‖²`
//! carries the f32 lane sums' rounding of the terms (up to about `10^-6
//! ‖g‖²`), so relative errors below about `10^-3` are not resolved (a
//! straight-line history measured `8·10^-5` instead of 0); near the decision
//! threshold (0.3) the relative error is off by less than `10^-4` (tested;
//! `3·10^-6` measured). Nothing is written before `g`
//! is known to be finite (a non-finite `g` makes `gg` non-finite). See
//! [`kernels`] for the arithmetic, which is identical at every CPU level and
//! thread count.

pub mod coef;
pub mod kernels;

use std::collections::VecDeque;

use rayon::prelude::*;

pub use coef::{ema_coefficients, last_coefficients, wls_coefficients, Predictor};
use kernels::Slot;

use crate::cpu::CpuLevel;
use crate::{check_finite, Error, Result};

#[cfg(test)]
mod tests;

/// Per-check factor of the per-parameter predictor scores (an exponential
/// average of the squared relative error).
const SCORE_DECAY: f64 = 0.5;

/// Longest back-off multiplier of `min_checks` is `1 << MAX_FAIL_SHIFT`.
const MAX_FAIL_SHIFT: u32 = 6;

/// Guarded: a check whose error exceeds `FAR_FACTOR × max_error` is far from
/// passing; the checks that follow it are spaced out (see [`MAX_CHECK_GAP`]).
const FAR_FACTOR: f64 = 2.0;

/// Guarded: the most backward steps in a row that skip the check while the
/// error stays far above `max_error` (the gap doubles from 1 at each far
/// check: 1, 2, 4, 8, 16, 16, ...).
const MAX_CHECK_GAP: usize = 16;

/// Elements per block for parallel work and for the fixed-order sums.
const BLOCK: usize = 4096;

/// One check's sums per predictor (by position in `PhaseTrainer::combos`;
/// entries past the number of predictors are 0), from the Gram form.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sums {
    /// `Σ (p_m − g)²`.
    err: [f64; 3],
    /// `Σ p_m g`.
    dot: [f64; 3],
    /// `Σ p_m²`.
    pp: [f64; 3],
    /// `Σ g²`.
    gg: f64,
}

/// A step's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Initial gradient collection (backward pass).
    Warmup,
    /// A backward step outside prediction (checks the predictors).
    Full,
    /// Gradients predicted, no backward pass.
    Predict,
    /// A backward step that ends or interrupts a prediction run/segment.
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

/// Which schedule decides the phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Schedule {
    /// Predict only while the measured error stays below `max_error` (default).
    Guarded,
    /// The seed's fixed cycles (Full, then Predict with periodic Correct steps).
    Fixed,
}

crate::c_codes!(Schedule, "schedule", "schedule code" {
    Guarded = 0 => "guarded",
    Fixed = 1 => "fixed",
});

/// Why a step has its phase (and what the latest decision was based on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Collecting history: fewer than `warmup_steps` backward steps so far.
    Warmup,
    /// The fixed schedule placed this step.
    Schedule,
    /// The measured error was at most `max_error`: predicting.
    ErrorBelowThreshold,
    /// The measured error was above `max_error`: backward passes continue.
    ErrorAboveThreshold,
    /// The error is below `max_error`, but not yet at enough consecutive checks.
    Probing,
    /// A backward step that checks the predicted run before it.
    Check,
    /// A backward step reported a non-finite loss: prediction stopped.
    NonFiniteLoss,
    /// Fixed schedule: the segment's loss rose, the segment was cut short.
    LossRise,
    /// `predict_steps` is 0: prediction is off.
    Disabled,
}

impl Reason {
    /// Every reason, in code order.
    pub fn all() -> [Reason; 9] {
        [
            Reason::Warmup,
            Reason::Schedule,
            Reason::ErrorBelowThreshold,
            Reason::ErrorAboveThreshold,
            Reason::Probing,
            Reason::Check,
            Reason::NonFiniteLoss,
            Reason::LossRise,
            Reason::Disabled,
        ]
    }
    /// The C code (`TRITTER_REASON_*`, 0..=8 in the order of [`Reason::all`]).
    pub fn code(self) -> u32 {
        Reason::all().iter().position(|&r| r == self).unwrap_or(0) as u32
    }
    /// The reason with this code.
    pub fn from_code(c: u32) -> Option<Reason> {
        Reason::all().get(c as usize).copied()
    }
    /// Short snake-case name (`error_above_threshold`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Reason::Warmup => "warmup",
            Reason::Schedule => "schedule",
            Reason::ErrorBelowThreshold => "error_below_threshold",
            Reason::ErrorAboveThreshold => "error_above_threshold",
            Reason::Probing => "probing",
            Reason::Check => "check",
            Reason::NonFiniteLoss => "non_finite_loss",
            Reason::LossRise => "loss_rise",
            Reason::Disabled => "disabled",
        }
    }
    /// One sentence for logs.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Warmup => "collecting gradient history (warmup)",
            Reason::Schedule => "placed by the fixed schedule",
            Reason::ErrorBelowThreshold => {
                "measured prediction error at most max_error: predicting"
            }
            Reason::ErrorAboveThreshold => {
                "measured prediction error above max_error: every step runs a backward pass"
            }
            Reason::Probing => {
                "prediction error below max_error, waiting for enough consecutive checks"
            }
            Reason::Check => "backward pass that checks the predicted run before it",
            Reason::NonFiniteLoss => "non-finite loss on a backward step: prediction stopped",
            Reason::LossRise => "loss rose during the predicted segment: segment cut short",
            Reason::Disabled => "predict_steps is 0: prediction is off",
        }
    }
}

/// Phase-trainer settings. [`PhaseConfig::default`] is the guarded schedule;
/// [`PhaseConfig::seed`] and [`PhaseConfig::conservative`] are fixed ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseConfig {
    /// Guarded (default) or the seed's fixed schedule.
    pub schedule: Schedule,
    /// Backward steps before any prediction (default 10).
    pub warmup_steps: usize,
    /// Fixed: Full steps at the start of each cycle (default 5).
    pub full_steps: usize,
    /// Fixed: segment length; guarded: the longest predicted run (0 = never
    /// predict; default 8 guarded, 20 seed).
    pub predict_steps: usize,
    /// Fixed: every k-th segment step is a Correct step (default 5; 0 = none).
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
    /// Enabled predictors, a mask of [`Predictor::bit`] (non-zero, <= 7;
    /// default 7 = all).
    pub predictors: u32,
    /// Guarded: largest overall relative error `‖p − g‖/‖g‖` at which
    /// prediction starts or continues (finite, >= 0; default 0.3).
    pub max_error: f32,
    /// Guarded: consecutive checks at most `max_error` before a run starts
    /// (>= 1; default 3).
    pub min_checks: usize,
    /// Keep the history in bf16 (half the memory and traffic, ~2^-9 relative
    /// rounding; default false).
    pub history_bf16: bool,
}

impl Default for PhaseConfig {
    fn default() -> Self {
        PhaseConfig {
            schedule: Schedule::Guarded,
            warmup_steps: 10,
            full_steps: 5,
            predict_steps: 8,
            correct_every: 5,
            adaptive_phases: true,
            loss_increase_threshold: 0.1,
            history_window: 8,
            prediction_horizon: 1,
            history_decay: 0.95,
            ema_decay: 0.9,
            predictors: 7,
            max_error: 0.3,
            min_checks: 3,
            history_bf16: false,
        }
    }
}

impl PhaseConfig {
    /// The seed's method: fixed schedule 10 warmup / 5 full / 20-step
    /// segments with every 5th a Correct step, loss back-off at a 10% rise,
    /// WLS only. (It broke training on every task measured; see docs/predict.md.)
    pub fn seed() -> Self {
        PhaseConfig {
            schedule: Schedule::Fixed,
            predict_steps: 20,
            predictors: Predictor::Wls.bit(),
            ..Default::default()
        }
    }

    /// A cautious fixed schedule: 20 warmup steps, cycles of 10 Full + 6
    /// segment steps with every 3rd a Correct step, back-off at a 5% rise, WLS.
    pub fn conservative() -> Self {
        PhaseConfig {
            warmup_steps: 20,
            full_steps: 10,
            predict_steps: 6,
            correct_every: 3,
            loss_increase_threshold: 0.05,
            ..PhaseConfig::seed()
        }
    }

    /// Checks every field (errors name the field).
    pub fn validate(&self) -> Result<()> {
        if !(1..=256).contains(&self.history_window) {
            return Err(Error::invalid("history_window", "must be in 1..=256"));
        }
        for (v, name) in [
            (self.history_decay, "history_decay"),
            (self.ema_decay, "ema_decay"),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err(Error::invalid(name, "must be in (0, 1]"));
            }
        }
        for (v, name) in [
            (self.loss_increase_threshold, "loss_increase_threshold"),
            (self.max_error, "max_error"),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(name, "must be finite and >= 0"));
            }
        }
        if self.predictors == 0 || self.predictors > 7 {
            return Err(Error::invalid(
                "predictors",
                format!(
                    "mask {} must be a non-empty combination of 1 (last), 2 (ema), 4 (wls)",
                    self.predictors
                ),
            ));
        }
        if self.min_checks == 0 {
            return Err(Error::invalid("min_checks", "must be >= 1"));
        }
        let big = 1usize << 40;
        for (v, name) in [
            (self.warmup_steps, "warmup_steps"),
            (self.full_steps, "full_steps"),
            (self.predict_steps, "predict_steps"),
            (self.correct_every, "correct_every"),
            (self.prediction_horizon, "prediction_horizon"),
            (self.min_checks, "min_checks"),
        ] {
            if v > big {
                return Err(Error::invalid(name, "must be <= 2^40"));
            }
        }
        Ok(())
    }

    fn enabled(&self, p: Predictor) -> bool {
        self.predictors & p.bit() != 0
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
    /// Why the step has this phase.
    pub reason: Reason,
}

/// Counters and measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseStats {
    /// Completed steps.
    pub steps: u64,
    /// Completed Warmup steps.
    pub warmup_steps: u64,
    /// Full steps.
    pub full_steps: u64,
    /// Predict steps (= backward passes saved).
    pub predict_steps: u64,
    /// Correct steps.
    pub correct_steps: u64,
    /// Steps with a backward pass.
    pub backward_passes: u64,
    /// Back-offs: failed checks after a run (guarded) or loss rises (fixed).
    pub backoffs: u64,
    /// Predicted runs (guarded) or segments (fixed) started.
    pub runs: u64,
    /// Current run length `L` (guarded) or segment length (fixed).
    pub current_predict_steps: u64,
    /// Checks after warmup (backward steps with a history).
    pub error_samples: u64,
    /// Of those, checks whose error was above `max_error`.
    pub failed_checks: u64,
    /// Mean over the checks of the overall relative error of the chosen
    /// predictors, `sqrt(Σ‖p − g‖² / Σ‖g‖²)`; NaN before any.
    pub mean_prediction_error: f64,
    /// The same for repeating the newest gradient (a baseline; NaN before any).
    pub mean_last_gradient_error: f64,
    /// The last check's overall relative error (NaN before any check).
    pub last_error: f64,
    /// The last check's overall cosine `Σ⟨p, g⟩ / (‖p‖ ‖g‖)` (NaN before any).
    pub last_cosine: f64,
    /// The latest decision's reason.
    pub last_reason: Reason,
    /// How many parameters currently use each predictor (by code).
    pub predictor_params: [u64; 3],
    /// Bytes held for history (see [`PhaseTrainer::memory_bytes`]).
    pub memory_bytes: u64,
    /// Steps with a backward pass whose wall time was reported.
    pub timed_backward_steps: u64,
    /// Total reported seconds of backward steps.
    pub backward_seconds: f64,
    /// Predict steps whose wall time was reported.
    pub timed_predict_steps: u64,
    /// Total reported seconds of predict steps.
    pub predict_seconds: f64,
}

impl Default for PhaseStats {
    fn default() -> Self {
        PhaseStats {
            steps: 0,
            warmup_steps: 0,
            full_steps: 0,
            predict_steps: 0,
            correct_steps: 0,
            backward_passes: 0,
            backoffs: 0,
            runs: 0,
            current_predict_steps: 0,
            error_samples: 0,
            failed_checks: 0,
            mean_prediction_error: f64::NAN,
            mean_last_gradient_error: f64::NAN,
            last_error: f64::NAN,
            last_cosine: f64::NAN,
            last_reason: Reason::Warmup,
            predictor_params: [0; 3],
            memory_bytes: 0,
            timed_backward_steps: 0,
            backward_seconds: 0.0,
            timed_predict_steps: 0,
            predict_seconds: 0.0,
        }
    }
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

/// One parameter's measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamStats {
    /// The predictor it uses now.
    pub predictor: Predictor,
    /// Checks that measured it (backward steps with a history).
    pub checks: u64,
    /// Relative error `‖p − g‖/‖g‖` of each predictor (by code) at the last
    /// check; NaN if not measured (disabled, or no check yet).
    pub rel_error: [f64; 3],
    /// Cosine of each predictor's prediction with the gradient at the last check.
    pub cosine: [f64; 3],
    /// Each predictor's score: the running average of its squared relative
    /// error over all checks (lower is better; NaN if disabled or unmeasured).
    pub score: [f64; 3],
    /// The same over the checks that ended a predicted run only (the
    /// horizons runs need); once there is one, the choice follows it.
    pub run_score: [f64; 3],
}

/// History storage of one parameter: `history_window` buffers of `numel`.
#[derive(Debug, Clone)]
enum History {
    F32(Vec<Buf<f32>>),
    Bf16(Vec<Buf<u16>>),
}

/// One history buffer (`numel` values, read as a slice). Buffer `i` of a
/// parameter starts `i · 448` bytes (seven cache lines) past a page
/// boundary, modulo 4096: the kernels stream every buffer at the same index
/// at once, and buffers that all start at the same page offset (as large
/// allocations do) compete for the same few L1 sets (measured: a third
/// slower). Up to 4 KiB of padding per buffer.
#[derive(Debug, Clone, Default)]
struct Buf<T> {
    v: Vec<T>,
    /// Index of the first value in `v`.
    lead: usize,
    /// `numel`.
    len: usize,
}

impl<T: Slot + crate::error::Zeroable> Buf<T> {
    fn new(numel: usize, i: usize) -> Result<Self> {
        let size = std::mem::size_of::<T>();
        let pad = 4096 / size;
        let v: Vec<T> = crate::try_zeroed(
            numel.checked_add(pad).ok_or_else(|| {
                Error::overflow("shape", "history would exceed the address space")
            })?,
            "shape",
        )?;
        let want = (i * 448) % 4096;
        let at = v.as_ptr() as usize % 4096;
        // Both are multiples of `size` (alignment), so the lead is exact.
        let lead = ((want + 4096 - at) % 4096) / size;
        Ok(Buf {
            v,
            lead,
            len: numel,
        })
    }
}

impl<T> std::ops::Deref for Buf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.v[self.lead..self.lead + self.len]
    }
}

impl<T> std::ops::DerefMut for Buf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.v[self.lead..self.lead + self.len]
    }
}

#[derive(Debug, Clone)]
struct Param {
    shape: Vec<usize>,
    numel: usize,
    hist: History,
    /// Gram matrix of the history, `history_window²` values indexed by ring
    /// slot: `gram[a · w + b] = ⟨h_a, h_b⟩` (as [`kernels::dots`] computes
    /// it) for the slots that hold entries.
    gram: Vec<f64>,
    /// Whether `gram` matches the stored history (false while a record is
    /// writing, so an interrupted one leaves it to be rebuilt).
    gram_ok: bool,
    /// bf16 history: the next buffer of the ring (the gradient rounded to
    /// bf16 is staged here, then swapped with the slot it replaces); empty
    /// for f32 history.
    spare: Buf<u16>,
    stats: ParamStats,
    /// This step's sums per combo (see `PhaseTrainer::combos`).
    sums: Option<Sums>,
}

/// Position in the fixed schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    Warmup(usize),
    Full(usize),
    Segment(usize),
}

/// State of the guarded schedule.
#[derive(Debug, Clone, Copy, Default)]
struct Guard {
    /// Current run length `L` (>= 1).
    run_len: usize,
    /// Predicted steps left in the current run.
    remaining: usize,
    /// The next backward step checks a run.
    after_run: bool,
    /// Consecutive passing checks outside runs.
    clean: usize,
    /// Failed runs since the last passing one.
    fails: u32,
    /// Backward steps left that skip the check (error far above threshold).
    skip: usize,
    /// Length of the last skip (0: checking every backward pass).
    gap: usize,
}

/// The phase trainer (see the module docs). Not shareable across threads
/// while being mutated; all methods take `&mut self` except the read-only ones.
#[derive(Debug, Clone)]
pub struct PhaseTrainer {
    cfg: PhaseConfig,
    level: CpuLevel,
    params: Vec<Param>,
    /// (step, ring slot) of the history entries, oldest first (shared by all parameters).
    entries: VecDeque<(u64, usize)>,
    step: u64,
    current: Option<StepInfo>,
    /// Predictors measured at each check: Last (always, for the baseline stat) then the enabled ones.
    combos: Vec<Predictor>,
    /// This step's coefficients, `combos.len()` rows of `entries.len()` (f32).
    coef: Vec<f32>,
    recorded: Vec<bool>,
    /// Whether this backward step evaluates the predictors (false while the
    /// guard spaces out its checks).
    checking: bool,
    backward_done: usize,
    cursor: Cursor,
    predict_len: usize,
    full_loss: (f64, u64),
    seg_loss: (f64, u64),
    guard: Guard,
    stats: PhaseStats,
    err_sum: f64,
    last_err_sum: f64,
}

impl PhaseTrainer {
    /// A trainer with no parameters yet, running its kernels at
    /// [`crate::cpu::active`].
    pub fn new(cfg: PhaseConfig) -> Result<Self> {
        cfg.validate()?;
        // Last first (the kernels get it without arithmetic), then the others enabled.
        let combos: Vec<Predictor> = Predictor::all()
            .into_iter()
            .filter(|&p| p == Predictor::Last || cfg.enabled(p))
            .collect();
        debug_assert!(combos.len() <= 3);
        Ok(PhaseTrainer {
            cfg,
            level: crate::cpu::active(),
            params: Vec::new(),
            entries: VecDeque::new(),
            step: 0,
            current: None,
            combos,
            coef: Vec::new(),
            recorded: Vec::new(),
            checking: true,
            backward_done: 0,
            cursor: Cursor::Warmup(0),
            predict_len: cfg.predict_steps,
            full_loss: (0.0, 0),
            seg_loss: (0.0, 0),
            guard: Guard {
                run_len: 1,
                ..Default::default()
            },
            stats: PhaseStats {
                current_predict_steps: match cfg.schedule {
                    Schedule::Guarded => 1.min(cfg.predict_steps as u64),
                    Schedule::Fixed => cfg.predict_steps as u64,
                },
                ..Default::default()
            },
            err_sum: 0.0,
            last_err_sum: 0.0,
        })
    }

    /// Runs the kernels at `level` instead (tests and benches; the result is
    /// the same at every level). Errors: a level this CPU lacks (InvalidArgument `level`).
    pub fn set_cpu_level(&mut self, level: CpuLevel) -> Result<()> {
        if !level.is_supported() {
            return Err(Error::invalid(
                "level",
                format!("{level} is not supported by this CPU"),
            ));
        }
        self.level = level;
        Ok(())
    }

    /// The settings.
    pub fn config(&self) -> &PhaseConfig {
        &self.cfg
    }

    /// Registers a parameter of any rank (`[]` is a scalar) and returns its
    /// id (0, 1, ... in order). Only before the first step. Allocates its
    /// history (`history_window × numel` values) at once.
    ///
    /// Errors: called after the first `begin_step` (InvalidState); a zero
    /// dimension (InvalidArgument `shape`); sizes that overflow (SizeOverflow
    /// `shape`); history that cannot be allocated (OutOfMemory `shape`;
    /// nothing is registered then).
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
        let per = if self.cfg.history_bf16 { 2 } else { 4 };
        let bytes = crate::checked_mul(crate::checked_mul(numel, w, "shape")?, per, "shape")?;
        if bytes > isize::MAX as usize {
            return Err(Error::overflow(
                "shape",
                "history would exceed the address space",
            ));
        }
        let hist = if self.cfg.history_bf16 {
            History::Bf16((0..w).map(|i| Buf::new(numel, i)).collect::<Result<_>>()?)
        } else {
            History::F32((0..w).map(|i| Buf::new(numel, i)).collect::<Result<_>>()?)
        };
        let gram = crate::try_zeroed(w * w, "shape")?;
        let spare = if self.cfg.history_bf16 {
            Buf::new(numel, w)?
        } else {
            Buf::default()
        };
        crate::try_reserve(&mut self.recorded, 1, "shape")?;
        crate::try_reserve(&mut self.params, 1, "shape")?;
        let first = Predictor::all()
            .into_iter()
            .find(|&p| self.cfg.enabled(p))
            .unwrap_or(Predictor::Wls);
        self.params.push(Param {
            shape: shape.to_vec(),
            numel,
            hist,
            gram,
            gram_ok: true,
            spare,
            stats: ParamStats {
                predictor: first,
                checks: 0,
                rel_error: [f64::NAN; 3],
                cosine: [f64::NAN; 3],
                score: [f64::NAN; 3],
                run_score: [f64::NAN; 3],
            },
            sums: None,
        });
        self.recorded.push(false);
        self.stats.predictor_params[first.code() as usize] += 1;
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

    /// Measurements of parameter `id`.
    pub fn parameter_stats(&self, id: usize) -> Result<ParamStats> {
        Ok(self.param(id)?.stats)
    }

    fn param(&self, id: usize) -> Result<&Param> {
        self.params.get(id).ok_or_else(|| {
            Error::invalid(
                "param",
                format!("id {id} out of range ({} registered)", self.params.len()),
            )
        })
    }

    /// Bytes held for history: `history_window × numel` values per
    /// parameter. Not counted: per parameter the Gram matrix
    /// (`history_window²` f64) and, with bf16 history, one more buffer of
    /// `numel` bf16 values (where the next gradient is staged).
    pub fn memory_bytes(&self) -> usize {
        let per = if self.cfg.history_bf16 { 2 } else { 4 };
        self.params
            .iter()
            .map(|p| p.numel * self.cfg.history_window * per)
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
        let (phase, reason) = match self.cfg.schedule {
            Schedule::Guarded => self.guarded_phase(),
            Schedule::Fixed => self.fixed_phase(),
        };
        let info = StepInfo {
            step: self.step,
            phase,
            needs_backward: phase.needs_backward(),
            reason,
        };
        self.checking = !(self.cfg.schedule == Schedule::Guarded
            && phase == Phase::Full
            && self.guard.skip > 0);
        self.compute_coefficients(info.step);
        self.current = Some(info);
        self.recorded.iter_mut().for_each(|r| *r = false);
        for p in &mut self.params {
            p.sums = None;
        }
        Ok(info)
    }

    fn guarded_phase(&self) -> (Phase, Reason) {
        let g = &self.guard;
        if self.backward_done < self.cfg.warmup_steps {
            (Phase::Warmup, Reason::Warmup)
        } else if g.remaining > 0 && !self.entries.is_empty() {
            (Phase::Predict, Reason::ErrorBelowThreshold)
        } else if g.after_run {
            (Phase::Correct, Reason::Check)
        } else {
            (Phase::Full, self.stats.last_reason)
        }
    }

    fn fixed_phase(&mut self) -> (Phase, Reason) {
        loop {
            match self.cursor {
                Cursor::Warmup(d) if d < self.cfg.warmup_steps => {
                    return (Phase::Warmup, Reason::Warmup)
                }
                Cursor::Warmup(_) => self.enter_full(),
                Cursor::Full(d) if self.cfg.predict_steps == 0 => {
                    let _ = d;
                    return (Phase::Full, Reason::Disabled);
                }
                Cursor::Full(d) if d < self.cfg.full_steps => {
                    let r = if self.stats.last_reason == Reason::LossRise {
                        Reason::LossRise
                    } else {
                        Reason::Schedule
                    };
                    return (Phase::Full, r);
                }
                Cursor::Full(_) => {
                    self.cursor = Cursor::Segment(0);
                    self.seg_loss = (0.0, 0);
                    self.stats.runs += 1;
                    self.stats.last_reason = Reason::Schedule;
                }
                Cursor::Segment(d) if d < self.predict_len => {
                    let k = d + 1;
                    let ce = self.cfg.correct_every;
                    return if ce > 0 && k % ce == 0 {
                        (Phase::Correct, Reason::Schedule)
                    } else if self.entries.is_empty() {
                        (Phase::Full, Reason::Warmup) // nothing to predict from yet
                    } else {
                        (Phase::Predict, Reason::Schedule)
                    };
                }
                Cursor::Segment(_) => {
                    self.predict_len = (self.predict_len * 2).min(self.cfg.predict_steps);
                    self.enter_full();
                }
            }
        }
    }

    fn enter_full(&mut self) {
        self.cursor = Cursor::Full(0);
        self.full_loss = (0.0, 0);
    }

    /// Fills `self.coef` with every combo's coefficients for predicting `target`.
    fn compute_coefficients(&mut self, target: u64) {
        self.coef.clear();
        if self.entries.is_empty() {
            return;
        }
        let times: Vec<u64> = self.entries.iter().map(|e| e.0).collect();
        for &p in &self.combos {
            let c = self.coefficients(p, &times, target);
            self.coef.extend(c.iter().map(|&x| x as f32));
        }
    }

    fn coefficients(&self, p: Predictor, times: &[u64], target: u64) -> Vec<f64> {
        let c = match p {
            Predictor::Last => last_coefficients(times, target),
            Predictor::Ema => ema_coefficients(times, target, self.cfg.ema_decay as f64),
            Predictor::Wls => wls_coefficients(
                times,
                target,
                self.cfg.history_decay as f64,
                self.cfg.prediction_horizon as u64,
            ),
        };
        c.expect("history times are increasing and in the past; decays validated")
    }

    /// Records the real gradient of parameter `id` (flat, row-major,
    /// `numel` values) in a step that needs a backward pass, and measures
    /// every predictor against it.
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
        let w = self.cfg.history_window;
        let target = if self.entries.len() < w {
            self.entries.len()
        } else {
            self.entries[0].1
        };
        let slots: Vec<usize> = self.entries.iter().map(|e| e.1).collect();
        let m = if slots.is_empty() || !self.checking {
            0
        } else {
            self.combos.len()
        };
        let level = self.level;
        let p = &mut self.params[id];
        if !p.gram_ok {
            p.rebuild_gram(level, &slots, w);
        }
        // The dot products of g with the history: every entry for a check;
        // for the Gram matrix only the entries that stay (not `target`).
        let srcs: Vec<usize> = slots
            .iter()
            .copied()
            .filter(|&s| m > 0 || s != target)
            .collect();
        // Nothing is written before g is known to be finite: the dot
        // products first (a non-finite g makes Σ g² non-finite, and only
        // then is g scanned for the error), then the store.
        let (d, gg) = match &p.hist {
            History::F32(h) => dot_blocks(level, h, &srcs, grad, &mut []),
            History::Bf16(h) => dot_blocks(level, h, &srcs, grad, &mut p.spare),
        };
        if !gg.is_finite() {
            // Finite values can overflow the sums; only non-finite ones are refused.
            check_finite(grad, "grad")?;
        }
        p.gram_ok = false;
        match &mut p.hist {
            History::F32(h) => copy_blocks(&mut h[target], grad),
            History::Bf16(h) => std::mem::swap(&mut h[target], &mut p.spare),
        }
        if m > 0 {
            // srcs == slots here.
            p.sums = Some(gram_sums(
                &self.coef[..m * slots.len()],
                m,
                &slots,
                &d,
                &p.gram,
                w,
                gg,
            ));
        }
        // The stored g's row and column of the Gram matrix.
        for (&s, &v) in srcs.iter().zip(&d) {
            if s != target {
                p.gram[target * w + s] = v;
                p.gram[s * w + target] = v;
            }
        }
        p.gram[target * w + target] = gg;
        p.gram_ok = true;
        self.recorded[id] = true;
        Ok(())
    }

    /// Writes the predicted gradient of parameter `id` into `out` (`numel`
    /// values) during a Predict step, from the predictor the parameter uses.
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
        let k = self.entries.len();
        let row = self
            .combos
            .iter()
            .position(|&c| c == p.stats.predictor)
            .expect("the chosen predictor is measured");
        let slots: Vec<usize> = self.entries.iter().map(|e| e.1).collect();
        let (order, coef) = used_sources(&slots, &self.coef[row * k..(row + 1) * k], 1);
        match &p.hist {
            History::F32(h) => predict_blocks(self.level, h, &order, &coef, out),
            History::Bf16(h) => predict_blocks(self.level, h, &order, &coef, out),
        }
        Ok(())
    }

    /// Ends the step with its loss and, optionally, its measured wall time in
    /// seconds. Returns the ended step's phase.
    ///
    /// The loss: on a backward step a non-finite loss stops prediction
    /// (both schedules). On a Predict step the guarded schedule ignores it
    /// (pass NaN when the forward pass was skipped); the fixed schedule with
    /// `adaptive_phases` uses it (a non-finite loss counts as a rise).
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
        let mut check = None;
        if info.needs_backward {
            if let Some(missing) = self.recorded.iter().position(|r| !r) {
                return Err(Error::InvalidState(format!(
                    "end_step: parameter {missing} has no recorded gradient in this {} step",
                    info.phase.name()
                )));
            }
            check = self.finish_check(info.phase);
            // History bookkeeping: the new entry went into the ring's next slot.
            let w = self.cfg.history_window;
            let slot = if self.entries.len() < w {
                self.entries.len()
            } else {
                self.entries.pop_front().expect("window >= 1").1
            };
            self.entries.push_back((info.step, slot));
            self.backward_done += 1;
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
        match self.cfg.schedule {
            Schedule::Guarded => self.advance_guarded(info, loss, check),
            Schedule::Fixed => self.advance_fixed(info, loss),
        }
        self.step += 1;
        self.current = None;
        Ok(info.phase)
    }

    /// Updates every parameter's scores and choice from this step's sums;
    /// returns the overall error of the (new) choices, or None without a check.
    fn finish_check(&mut self, phase: Phase) -> Option<f64> {
        let combos = self.combos.clone();
        let mut total = (0.0f64, 0.0f64, 0.0f64, 0.0f64); // err, dot, pp, gg of the choices
        let mut last = 0.0f64;
        let mut any = false;
        let cfg = self.cfg;
        let mut counts = [0u64; 3];
        for p in &mut self.params {
            let Some(s) = p.sums.take() else {
                counts[p.stats.predictor.code() as usize] += 1;
                continue;
            };
            any = true;
            p.stats.checks += 1;
            for (m, &pr) in combos.iter().enumerate() {
                let c = pr.code() as usize;
                let rel2 = ratio(s.err[m], s.gg);
                p.stats.rel_error[c] = rel2.sqrt();
                p.stats.cosine[c] = cosine(s.dot[m], s.pp[m], s.gg);
                if cfg.enabled(pr) {
                    let avg = |old: f64| {
                        if old.is_nan() {
                            rel2
                        } else {
                            SCORE_DECAY * old + (1.0 - SCORE_DECAY) * rel2
                        }
                    };
                    p.stats.score[c] = avg(p.stats.score[c]);
                    if phase == Phase::Correct {
                        p.stats.run_score[c] = avg(p.stats.run_score[c]);
                    }
                }
                if pr == Predictor::Last {
                    last += s.err[m];
                }
            }
            // The enabled predictor with the lowest score (ties: the simpler),
            // by the run checks once there are any.
            let scores = if p.stats.run_score.iter().any(|x| !x.is_nan()) {
                p.stats.run_score
            } else {
                p.stats.score
            };
            let mut best: Option<(Predictor, f64)> = None;
            for &pr in &combos {
                if !cfg.enabled(pr) {
                    continue;
                }
                let sc = scores[pr.code() as usize];
                let sc = if sc.is_nan() { f64::INFINITY } else { sc };
                if best.is_none_or(|(_, b)| sc < b) {
                    best = Some((pr, sc));
                }
            }
            if let Some((pr, _)) = best {
                p.stats.predictor = pr;
            }
            counts[p.stats.predictor.code() as usize] += 1;
            let m = combos
                .iter()
                .position(|&c| c == p.stats.predictor)
                .expect("chosen among the combos");
            total.0 += s.err[m];
            total.1 += s.dot[m];
            total.2 += s.pp[m];
            total.3 += s.gg;
        }
        self.stats.predictor_params = counts;
        if !any {
            return None;
        }
        let e = ratio(total.0, total.3).sqrt();
        self.stats.last_error = e;
        self.stats.last_cosine = cosine(total.1, total.2, total.3);
        if phase != Phase::Warmup {
            self.stats.error_samples += 1;
            if e.is_nan() || e > self.cfg.max_error as f64 {
                self.stats.failed_checks += 1;
            }
            self.err_sum += e;
            self.last_err_sum += ratio(last, total.3).sqrt();
            let n = self.stats.error_samples as f64;
            self.stats.mean_prediction_error = self.err_sum / n;
            self.stats.mean_last_gradient_error = self.last_err_sum / n;
        }
        Some(e)
    }

    fn advance_guarded(&mut self, info: StepInfo, loss: f32, check: Option<f64>) {
        let cfg = self.cfg;
        let g = &mut self.guard;
        if !info.needs_backward {
            g.remaining = g.remaining.saturating_sub(1);
            if g.remaining == 0 {
                g.after_run = true;
            }
            return;
        }
        let was_run = g.after_run;
        g.after_run = false;
        if !self.checking {
            // A backward step that skipped the check: the error was far
            // above max_error at the last check; nothing new is known.
            g.skip -= 1;
            g.clean = 0;
            self.stats.last_reason = Reason::ErrorAboveThreshold;
            return;
        }
        let reason = if info.phase == Phase::Warmup {
            Reason::Warmup
        } else if cfg.predict_steps == 0 {
            Reason::Disabled
        } else if !loss.is_finite() {
            Reason::NonFiniteLoss
        } else {
            match check {
                Some(e) if e <= cfg.max_error as f64 => Reason::ErrorBelowThreshold,
                Some(_) => Reason::ErrorAboveThreshold,
                None => Reason::Warmup,
            }
        };
        match reason {
            Reason::ErrorBelowThreshold if was_run => {
                g.fails = 0;
                g.gap = 0;
                g.run_len = (g.run_len * 2).min(cfg.predict_steps).max(1);
                g.remaining = g.run_len;
                self.stats.runs += 1;
                self.stats.last_reason = reason;
            }
            Reason::ErrorBelowThreshold => {
                g.gap = 0;
                g.clean += 1;
                let need = cfg
                    .min_checks
                    .saturating_mul(1 << g.fails.min(MAX_FAIL_SHIFT));
                if g.clean >= need {
                    g.clean = 0;
                    g.run_len = g.run_len.clamp(1, cfg.predict_steps);
                    g.remaining = g.run_len;
                    self.stats.runs += 1;
                    self.stats.last_reason = reason;
                } else {
                    self.stats.last_reason = Reason::Probing;
                }
            }
            Reason::ErrorAboveThreshold | Reason::NonFiniteLoss => {
                g.clean = 0;
                let far = matches!(check, Some(e) if e > FAR_FACTOR * cfg.max_error as f64);
                if reason == Reason::ErrorAboveThreshold && far {
                    g.gap = (g.gap * 2).clamp(1, MAX_CHECK_GAP);
                    g.skip = g.gap;
                } else {
                    g.gap = 0;
                }
                if was_run || reason == Reason::NonFiniteLoss {
                    self.stats.backoffs += 1;
                    g.fails = g.fails.saturating_add(1);
                    g.run_len = (g.run_len / 2).max(1);
                }
                self.stats.last_reason = reason;
            }
            r => {
                g.clean = 0;
                self.stats.last_reason = r;
            }
        }
        self.stats.current_predict_steps = g.run_len.min(cfg.predict_steps) as u64;
    }

    fn advance_fixed(&mut self, info: StepInfo, loss: f32) {
        let l = loss as f64;
        if info.needs_backward && !l.is_finite() {
            self.stats.last_reason = Reason::NonFiniteLoss;
        }
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
                        self.stats.last_reason = Reason::LossRise;
                        self.predict_len = (self.predict_len / 2).max(1);
                        self.enter_full();
                    } else {
                        self.cursor = Cursor::Segment(d + 1);
                    }
                }
            }
        }
        self.stats.current_predict_steps = self.predict_len as u64;
    }

    /// Counters and measurements so far.
    pub fn stats(&self) -> PhaseStats {
        let mut s = self.stats;
        s.memory_bytes = self.memory_bytes() as u64;
        s
    }
}

/// `a / b` with 0/0 = 0 and x/0 = inf.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else if a > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// `dot / sqrt(pp gg)` within [-1, 1] (rounding of the Gram form can take
/// it a little past); 1 when both vectors are zero, 0 when one is.
fn cosine(dot: f64, pp: f64, gg: f64) -> f64 {
    if pp > 0.0 && gg > 0.0 {
        (dot / (pp * gg).sqrt()).clamp(-1.0, 1.0)
    } else if pp == 0.0 && gg == 0.0 {
        1.0
    } else {
        0.0
    }
}

/// Keeps only the history entries some of the `m` coefficient rows use:
/// returns their ring slots (oldest first) and the coefficient rows
/// restricted to them.
fn used_sources(slots: &[usize], coef: &[f32], m: usize) -> (Vec<usize>, Vec<f32>) {
    let k = slots.len();
    let keep: Vec<usize> = (0..k)
        .filter(|&i| (0..m).any(|q| coef[q * k + i] != 0.0))
        .collect();
    let order = keep.iter().map(|&i| slots[i]).collect();
    let mut c = Vec::with_capacity(m * keep.len());
    for q in 0..m {
        c.extend(keep.iter().map(|&i| coef[q * k + i]));
    }
    (order, c)
}

/// The sums of the check from the Gram form: for each of the `m`
/// coefficient rows `c` over the history entries (ring slots `slots`, oldest
/// first), `dot = Σ_i c_i d_i`, `pp = cᵀ G c` and
/// `err = pp − 2 dot + gg` (in f64; `pp` and `err` at least 0, NaN kept),
/// with `d` the dot products of the gradient with the entries and `G` the
/// history's Gram matrix (`w × w`, by ring slot). The coefficients are the
/// f32 values the prediction uses.
fn gram_sums(
    coef: &[f32],
    m: usize,
    slots: &[usize],
    d: &[f64],
    gram: &[f64],
    w: usize,
    gg: f64,
) -> Sums {
    let k = slots.len();
    let mut s = Sums {
        gg,
        ..Default::default()
    };
    for q in 0..m {
        let c = &coef[q * k..(q + 1) * k];
        let (mut dot, mut pp) = (0.0f64, 0.0f64);
        for (i, (&ci, &si)) in c.iter().zip(slots).enumerate() {
            if ci == 0.0 {
                continue;
            }
            let ci = ci as f64;
            dot += ci * d[i];
            let mut row = 0.0f64;
            for (&cj, &sj) in c.iter().zip(slots) {
                if cj != 0.0 {
                    row += cj as f64 * gram[si * w + sj];
                }
            }
            pp += ci * row;
        }
        // A difference of large terms: rounding can take it a little below
        // 0 for a near-perfect predictor (a NaN stays NaN: the check fails).
        let err = pp - 2.0 * dot + gg;
        s.err[q] = if err < 0.0 { 0.0 } else { err };
        s.pp[q] = if pp < 0.0 { 0.0 } else { pp };
        s.dot[q] = dot;
    }
    s
}

impl Param {
    /// Recomputes the Gram matrix of the entries in ring slots `slots` from
    /// the stored history (the same kernel and blocks as the incremental
    /// updates, so the same bits).
    fn rebuild_gram(&mut self, level: CpuLevel, slots: &[usize], w: usize) {
        for &t in slots {
            let row = match &self.hist {
                History::F32(h) => gram_row(level, h, slots, t),
                History::Bf16(h) => gram_row(level, h, slots, t),
            };
            for (&s, &v) in slots.iter().zip(&row) {
                self.gram[t * w + s] = v;
            }
        }
        self.gram_ok = true;
    }
}

/// `⟨bufs[t], bufs[s]⟩` for every `s` in `slots`, block by block (blocks
/// summed in order, as [`dot_blocks`] does).
fn gram_row<T: Slot>(level: CpuLevel, bufs: &[Buf<T>], slots: &[usize], t: usize) -> Vec<f64> {
    let mut total = vec![0.0f64; slots.len()];
    let mut part = vec![0.0f64; slots.len()];
    let n = bufs[t].len();
    for start in (0..n).step_by(BLOCK) {
        let r = start..(start + BLOCK).min(n);
        let srcs: Vec<&[T]> = slots.iter().map(|&s| &bufs[s][r.clone()]).collect();
        kernels::dots(level, &srcs, &bufs[t][r], &mut part);
        for (a, &b) in total.iter_mut().zip(&part) {
            *a += b;
        }
    }
    total
}

/// Block by block: the dot products of `grad` as it will be stored with
/// the ring slots `srcs`, and `Σ grad²`, the blocks summed in f64 in order.
/// Returns the dot products (in `srcs` order) and `Σ grad²`. For bf16,
/// `staged` (as long as `grad`) receives `grad` rounded, as it is then
/// stored; for f32 it is empty (`grad` is used as it is).
fn dot_blocks<T: Slot>(
    level: CpuLevel,
    bufs: &[Buf<T>],
    srcs: &[usize],
    grad: &[f32],
    staged: &mut [T],
) -> (Vec<f64>, f64) {
    let k = srcs.len();
    let n = grad.len();
    let nb = n.div_ceil(BLOCK);
    // Per block: k dot products, then Σ g².
    let mut parts = vec![0.0f64; nb * (k + 1)];
    let mut stage: Vec<&mut [T]> = if T::BF16 {
        staged.chunks_mut(BLOCK).collect()
    } else {
        (0..nb).map(|_| Default::default()).collect()
    };
    let task = |b: usize, out: &mut [f64], st: &mut [T]| {
        let r = b * BLOCK..(b * BLOCK + BLOCK).min(n);
        let src: Vec<&[T]> = srcs.iter().map(|&s| &bufs[s][r.clone()]).collect();
        // bf16: rounds the block into `st` within the dot pass.
        out[k] = T::stage_dots(level, &src, &grad[r], st, &mut out[..k]);
    };
    // One thread: stay on the caller (handing work to a pool thread costs a
    // wake-up, milliseconds on a loaded machine). Same blocks, same result.
    if n < 2 * BLOCK || crate::parallel::num_threads() == 1 {
        for (b, (out, st)) in parts.chunks_mut(k + 1).zip(&mut stage).enumerate() {
            task(b, out, st);
        }
    } else {
        crate::parallel::install(|| {
            parts
                .par_chunks_mut(k + 1)
                .zip(stage.par_iter_mut())
                .enumerate()
                .for_each(|(b, (out, st))| task(b, out, st));
        });
    }
    let mut total = vec![0.0f64; k + 1];
    for p in parts.chunks(k + 1) {
        for (a, &b) in total.iter_mut().zip(p) {
            *a += b;
        }
    }
    let gg = total.pop().unwrap_or(0.0);
    (total, gg)
}

/// Writes `src` into a history buffer (f32 history: the gradient; bf16:
/// the staged values), block by block.
fn copy_blocks<T: Copy + Send + Sync>(dst: &mut [T], src: &[T]) {
    if src.len() < 2 * BLOCK || crate::parallel::num_threads() == 1 {
        dst.copy_from_slice(src);
    } else {
        crate::parallel::install(|| {
            dst.par_chunks_mut(BLOCK)
                .zip(src.par_chunks(BLOCK))
                .for_each(|(d, s)| d.copy_from_slice(s));
        });
    }
}

/// `out = Σ coef[i] · bufs[order[i]]`, block by block.
fn predict_blocks<T: Slot>(
    level: CpuLevel,
    bufs: &[Buf<T>],
    order: &[usize],
    coef: &[f32],
    out: &mut [f32],
) {
    let task = |b: usize, o: &mut [f32]| {
        let r = b * BLOCK..b * BLOCK + o.len();
        let srcs: Vec<&[T]> = order.iter().map(|&s| &bufs[s][r.clone()]).collect();
        kernels::combine(level, &srcs, coef, o);
    };
    if out.len() < 2 * BLOCK || crate::parallel::num_threads() == 1 {
        out.chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(b, o)| task(b, o));
    } else {
        crate::parallel::install(|| {
            out.par_chunks_mut(BLOCK)
                .enumerate()
                .for_each(|(b, o)| task(b, o));
        });
    }
}
