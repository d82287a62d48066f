//! The fast matmul driver: plan → strategy → prepared activations →
//! execution → epilogue.
//!
//! * [`Plan`]: shapes, K ranges (scale groups cut into kernel-sized chunks),
//!   the thread split ([`plan`](super::plan)).
//! * [`Strategy`]: which execution runs the plan, picked by [`choose`] from
//!   the mode, the batch and the kernels the level has. Each strategy names
//!   the [`ActsKind`] it reads and fills the tile-major accumulator; a new
//!   kernel family adds a variant, a line in [`choose`] and a file beside
//!   the others.
//! * [`Acts`]: the activations prepared once per call ([`acts`](super::acts)).
//! * the [epilogue](super::epilogue): `/ a[b]`, `+ bias`, into `y`.
//!
//! Every output element is computed by one task in a fixed order, so results
//! do not depend on the thread count.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use super::acts::{Acts, ActsKind};
use super::layout::ComputeFormat;
use super::plan::{fj_tiles_per_chunk, Plan};
use super::{decoded, direct, epilogue, gemv, lut, reference, train, ActivationMode};
use crate::cpu::CpuLevel;
use crate::ternary::TernaryMatrix;

pub(crate) use super::plan::MAX_CHUNK_BLOCKS;

/// How a plan is executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// f32, 2-bit: pair tables and `vpermps` (AVX-512), any batch.
    LutF32,
    /// Int8, batch 1: multi-tile kernels on the packed tiles.
    GemvI8,
    /// f32, batch 1: three int8 digits through the multi-row int8 kernels.
    DigitsF32,
    /// f32: direct kernels on the packed tiles, any batch.
    DirectF32,
    /// Decode each tile once per batch block, GEMM kernels on the codes.
    Decoded,
    /// f32, 2-bit, batch >= [`train::MIN_BATCH`](super::train::MIN_BATCH):
    /// tiles decoded into `s·t` and the AVX2 FMA micro-kernel of
    /// [`train`](super::train) (writes `y` itself; no accumulator).
    TrainF32,
}

impl Strategy {
    /// The activation preparation the strategy reads.
    pub fn acts(self) -> ActsKind {
        match self {
            Strategy::LutF32 => ActsKind::F32Lut,
            Strategy::GemvI8 => ActsKind::I8,
            Strategy::DigitsF32 => ActsKind::F32Digits,
            Strategy::DirectF32 => ActsKind::F32Permuted,
            Strategy::Decoded | Strategy::TrainF32 => ActsKind::F32,
        }
    }

    fn run(self, p: &Plan, acts: &Acts, acc: &mut [f32]) {
        match self {
            Strategy::LutF32 => lut::run(p, acts, acc),
            Strategy::GemvI8 => gemv::run_i8(p, acts, acc),
            Strategy::DigitsF32 => gemv::run_digits(p, acts, acc),
            Strategy::DirectF32 => direct::run(p, acts, acc),
            Strategy::Decoded => decoded::run(p, acts, acc),
            Strategy::TrainF32 => unreachable!("TrainF32 runs before the accumulator"),
        }
    }
}

/// The strategy for a plan: the first that applies, fastest first.
pub(crate) fn choose(p: &Plan) -> Strategy {
    let k = &p.k;
    match p.mode {
        ActivationMode::F32 => {
            if p.format == ComputeFormat::TwoBit && k.lut_f32_2bit.is_some() {
                // AVX-512: the tables stay (the FMA tiles are AVX2 code and
                // were not measured against them on an AVX-512 machine)
                Strategy::LutF32
            } else if p.train && train::handles(p.m, p.batch, p.mode, p.level) {
                // AVX2 from batch 4 (1.8-4.5x the direct kernels at 4096²,
                // batch 64, in one loaded run: docs/torch.md)
                Strategy::TrainF32
            } else if p.batch == 1 && k.gemv_n(p.format).is_some() {
                Strategy::DigitsF32
            } else if k.gemv_f32(p.format).is_some() {
                Strategy::DirectF32
            } else {
                Strategy::Decoded
            }
        }
        ActivationMode::Int8 => {
            if p.batch == 1 && (k.gemv_n(p.format).is_some() || k.gemv_tiles(p.format).is_some()) {
                Strategy::GemvI8
            } else {
                Strategy::Decoded
            }
        }
    }
}

/// `y = x · Wᵀ (+ bias)` with `level`'s kernels (the level must be supported;
/// shapes and finiteness already checked). Falls back to the reference where
/// the kernels do not apply (scalar level, an empty dimension). `max_chunk`
/// (clamped to `1..=MAX_CHUNK_BLOCKS`) bounds the K blocks of one kernel
/// call; tests lower it to exercise the chunk-combining path.
pub(crate) fn gemm(
    level: CpuLevel,
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    y: ArrayViewMut2<f32>,
    max_chunk: usize,
) -> crate::Result<()> {
    gemm_opts(level, m, x, bias, mode, y, max_chunk, true)
}

/// [`gemm`], `train = false` keeping the [`train`] tiles out.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_opts(
    level: CpuLevel,
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    y: ArrayViewMut2<f32>,
    max_chunk: usize,
    train: bool,
) -> crate::Result<()> {
    let Some(mut p) = Plan::new(level, m, x.nrows(), mode, max_chunk) else {
        if x.nrows() > 0 && m.rows() > 0 {
            reference::gemm(m, x, bias, mode, y);
        }
        return Ok(());
    };
    p.train = train;
    let s = choose(&p);
    if s == Strategy::TrainF32 {
        return train::gemm_matrix(m, x, bias, y, level);
    }
    let kind = match (s, mode) {
        (Strategy::Decoded, ActivationMode::Int8) => ActsKind::I8,
        _ => s.acts(),
    };
    let acts = Acts::prepare(&p, kind, x);
    let mut acc = vec![0f32; p.ntiles * p.tile_out()];
    s.run(&p, &acts, &mut acc);
    epilogue::write(&p, &mut acc, acts.int8_scales(), bias, y);
    Ok(())
}

/// See [`super::read_floor_probe`].
pub(crate) fn read_floor_probe(m: &TernaryMatrix) -> u64 {
    let lay = m.compute_layout();
    let ntiles = lay.ntiles();
    let tb = lay.tile_bytes();
    if ntiles == 0 || tb == 0 {
        return 0;
    }
    let threads = crate::parallel::num_threads();
    let per = fj_tiles_per_chunk(ntiles, threads);
    let mut sums = vec![0u64; ntiles.div_ceil(per)];
    crate::parallel::for_each_chunk_mut(&mut sums, 1, |i, out| {
        let t0 = i * per;
        let nt = per.min(ntiles - t0);
        let bytes = lay.tiles(t0, nt);
        let mut acc = [0u64; 8];
        for c in bytes.chunks_exact(64) {
            for (a, w) in acc.iter_mut().zip(c.chunks_exact(8)) {
                *a ^= u64::from_le_bytes(w.try_into().expect("8 bytes"));
            }
        }
        out[0] = acc.iter().fold(0, |x, &y| x ^ y);
    });
    sums.iter().fold(0, |x, &y| x ^ y)
}
